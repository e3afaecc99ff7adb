package dev.midtrain.model;

import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.Placement;
import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.KernelAbi;
import dev.midtrain.kernels.DeviceBuffers;

/**
 * One Llama-3 decoder block, forward and backward, written once (llm.c style: the backward calls the forward's
 * kernels' backwards in exact reverse order). Training ({@link Llama}) and inference ({@code infer.InferenceModel})
 * both run {@link #forward}; inference is the same forward with one set of activations reused by every layer and a
 * key/value-cache {@link Attention} in place of {@link Causal}. A pipeline stage runs a contiguous range of layers by
 * calling {@link #forward} / {@link #backward} on each with its own {@link Weights} and {@link Activations}.
 *
 * <pre>
 *   resMid = x + o_proj(attention(rope(rmsnorm(x; ln1) @ Wqkv^T)))
 *   out    = resMid + down_proj(swiglu(rmsnorm(resMid; ln2) @ Wgu^T))
 * </pre>
 *
 * <p>Tensor parallelism: the dimensions are this rank's {@link Placement} shares, and {@link TpHooks#allReduceX} is
 * called after the row-parallel GEMMs of the forward (o_proj, down_proj) and after the input-gradient GEMMs of the
 * column-parallel ones in the backward (q|k|v, gate|up).
 *
 * <p>Dimension legend: N tokens (B sequences of T), C model dim, NH/NKV query/kv heads (rank's share), HD head dim,
 * QKV = (NH+2NKV)*HD, A = NH*HD, F FFN size (rank's share).
 */
public final class Block {

    /** How the forward's weight products run. */
    public enum Products {
        /** {@link Backend#gemm}: training (OpenBLAS / cuBLAS, as the backward's GEMMs). */
        GEMM,
        /** {@link Backend#linear}: inference (the CPU backend's {@code linear_forward} for few rows). */
        LINEAR
    }

    /**
     * Addresses of one layer's tensors in a slab with {@link ParamLayout}'s layout: the floatX compute weights, or
     * (same record) the fp32 gradients. q|k|v is one [QKV, C] matrix, gate|up one [2F, C].
     */
    public record Weights(long ln1, long qkv, long o, long ln2, long gateUp, long down) {
        /** Layer {@code l} of the slab at {@code base}, {@code elemBytes} per element. */
        public static Weights of(ParamLayout.Offsets off, int l, long base, int elemBytes) {
            return new Weights(base + off.ln1()[l] * elemBytes, base + off.qkv()[l] * elemBytes, base + off.o()[l] * elemBytes,
                    base + off.ln2()[l] * elemBytes, base + off.gateUp()[l] * elemBytes, base + off.down()[l] * elemBytes);
        }
    }

    /**
     * One block's activations over N tokens, written by {@link #forward} and read by {@link #backward}. ln1, resMid,
     * ln2: floatX[N,C]; rstd1, rstd2: float[N]; qkv: floatX[N,QKV]; atty: floatX[N,A]; lse: float[N*NH] (attention
     * log-sum-exp, [B,NH,T]); gateup: floatX[N,2F]; swi: floatX[N,F].
     */
    public record Activations(long ln1, long rstd1, long qkv, long atty, long lse, long resMid, long ln2, long rstd2, long gateup, long swi) {}

    /** The attention step of {@link #forward}: from a.qkv (q, k not yet rotated) into a.atty (and a.lse if it keeps one). */
    @FunctionalInterface
    public interface Attention {
        void forward(Activations a);
    }

    /** Causal self-attention of B sequences of T tokens at positions 0..T-1 (RoPE tables float[>=T, HD/2]). */
    public final class Causal implements Attention {
        private final long cos, sin;
        private final int B, T;

        private Causal(long cos, long sin, int B, int T) { this.cos = cos; this.sin = sin; this.B = B; this.T = T; }

        @Override
        public void forward(Activations a) {
            be.ropeForward(a.qkv(), a.qkv(), cos, sin, B, T, NH, NKV, HD);               // rotate q,k in place
            be.attentionForward(a.atty(), a.lse(), a.qkv(), B, T, NH, NKV, HD);         // atty[N,A], lse[B,NH,T]
        }

        /** dqkv[N,QKV] (=) from datty[N,A], then back through the rotation. */
        void backward(long dqkv, long scratch, long datty, Activations a) {
            be.attentionBackward(dqkv, scratch, datty, a.qkv(), a.atty(), a.lse(), B, T, NH, NKV, HD);
            be.ropeBackward(dqkv, dqkv, cos, sin, B, T, NH, NKV, HD);
        }
    }

    /** Gradient buffers of {@link #backward} for N = B*T tokens, shared by all layers. */
    public record Scratch(long dtmp, long dmid, long dwide, long norm, long attn) {}

    private final Backend be;
    private final TpHooks tp;
    private final Products products;
    private final int C, NH, NKV, HD, QKV, A, F;
    private final float eps;

    /** @param layout this rank's parameter layout (its {@link Placement} gives the head and FFN shares) */
    public Block(Backend be, ParamLayout layout, TpHooks tp, Products products) {
        this.be = be;
        this.tp = tp;
        this.products = products;
        ModelConfig cfg = layout.model();
        Placement p = layout.placement();
        C = cfg.dim(); HD = cfg.headDim();
        NH = p.heads(); NKV = p.kvHeads(); F = p.ffn();
        QKV = (NH + 2 * NKV) * HD; A = NH * HD;
        eps = (float) cfg.normEps();
    }

    /** Causal attention for B sequences of T tokens with RoPE tables cos, sin. */
    public Causal causal(long cos, long sin, int B, int T) { return new Causal(cos, sin, B, T); }

    /** One set of activations for N tokens. */
    public Activations activations(DeviceBuffers buf, long N) {
        long NC = N * C;
        return new Activations(buf.x(NC), buf.f32(N), buf.x(N * QKV), buf.x(N * A), buf.f32(N * NH),
                buf.x(NC), buf.x(NC), buf.f32(N), buf.x(2 * N * F), buf.x(N * F));
    }

    /**
     * One set of activations for N tokens that only a forward reads (inference): the second norm's output and rstd
     * share the first's buffers, which the forward no longer needs when it writes them.
     */
    public Activations forwardOnlyActivations(DeviceBuffers buf, long N) {
        long NC = N * C, ln = buf.x(NC), rstd = buf.f32(N);
        return new Activations(ln, rstd, buf.x(N * QKV), buf.x(N * A), buf.f32(N * NH),
                buf.x(NC), ln, rstd, buf.x(2 * N * F), buf.x(N * F));
    }

    /**
     * Activations for selective recomputation: this layer's own q|k|v, attention output, log-sum-exp, residual,
     * gate|up and the two rstd; the two RMSNorm outputs and the SwiGLU output live in {@code shared}'s buffers (one set
     * for all layers), which {@link #recomputeCheap} rebuilds before the layer's backward.
     */
    public Activations selectiveActivations(DeviceBuffers buf, long N, Activations shared) {
        long NC = N * C;
        return new Activations(shared.ln1(), buf.f32(N), buf.x(N * QKV), buf.x(N * A), buf.f32(N * NH),
                buf.x(NC), shared.ln2(), buf.f32(N), buf.x(2 * N * F), shared.swi());
    }

    /**
     * Selective recomputation: ln1 from the block input {@code x}, ln2 from the residual, swi from gate|up (elementwise
     * and norm kernels only, no GEMM). The kernels are deterministic, so the values equal what the forward wrote.
     */
    public void recomputeCheap(Weights w, Activations a, long x, int N) {
        be.rmsnormForward(a.ln1(), a.rstd1(), x, w.ln1(), N, C, eps);                   // ln1[N,C], rstd1[N]
        be.rmsnormForward(a.ln2(), a.rstd2(), a.resMid(), w.ln2(), N, C, eps);          // ln2[N,C], rstd2[N]
        be.swigluForward(a.swi(), a.gateup(), N, F);                                    // swi[N,F]
    }

    /** Backward scratch for B sequences of T tokens. */
    public Scratch scratch(DeviceBuffers buf, int B, int T) {
        long N = (long) B * T, NC = N * C;
        return new Scratch(buf.x(NC), buf.x(N * Math.max(A, F)), buf.x(N * Math.max(QKV, 2 * F)),
                buf.f32(Math.max(KernelAbi.rmsnormBwdScratchFloats((int) N, C), KernelAbi.NORM_SCRATCH_FLOATS)),
                buf.f32(KernelAbi.attnBwdScratchFloats(B, NH, T)));
    }

    // ================================================================================================ forward

    /**
     * out[N,C] = block(x[N,C]), writing {@code a}. {@code out} may be {@code x} (the input is last read before the
     * down projection writes out), never one of a's buffers.
     */
    public void forward(Weights w, Activations a, Attention attention, long x, long out, int N) {
        long NC = (long) N * C;
        be.rmsnormForward(a.ln1(), a.rstd1(), x, w.ln1(), N, C, eps);                   // ln1[N,C], rstd1[N]
        product(a.qkv(), a.ln1(), w.qkv(), N, QKV, C);                                   // qkv[N,QKV] = ln1 @ Wqkv[QKV,C]^T
        attention.forward(a);                                                            // atty[N,A] (rope inside)
        product(a.resMid(), a.atty(), w.o(), N, C, A);                                   // o[N,C] = atty @ Wo[C,A]^T
        tp.allReduceX(a.resMid(), NC);                                                   // row-parallel o_proj
        be.add(a.resMid(), a.resMid(), x, NC);                                           // resMid = x + o
        be.rmsnormForward(a.ln2(), a.rstd2(), a.resMid(), w.ln2(), N, C, eps);          // ln2[N,C], rstd2[N]
        product(a.gateup(), a.ln2(), w.gateUp(), N, 2 * F, C);                           // gateup[N,2F] = ln2 @ Wgu[2F,C]^T
        be.swigluForward(a.swi(), a.gateup(), N, F);                                    // swi[N,F] = silu(gate) * up
        product(out, a.swi(), w.down(), N, C, F);                                        // d[N,C] = swi @ Wdown[C,F]^T
        tp.allReduceX(out, NC);                                                          // row-parallel down_proj
        be.add(out, out, a.resMid(), NC);                                                // out = resMid + d
    }

    /** out[M,N] = inp[M,K] @ w[N,K]^T (floatX, =). */
    private void product(long out, long inp, long w, int M, int N, int K) {
        if (products == Products.LINEAR) be.linear(out, inp, w, M, N, K);
        else be.gemm(false, true, M, N, K, 1f, inp, w, 0f, out, false);
    }

    // =============================================================================================== backward

    /**
     * The block in reverse, from the activations {@code a} of its forward on input {@code x}[N,C]: {@code dres}[N,C]
     * holds d/d out on entry and d/d x on exit; the weight gradients {@code g} (fp32) are accumulated (+=).
     */
    public void backward(Weights w, Weights g, Activations a, Causal attention, long x, long dres, Scratch s, int N) {
        long NC = (long) N * C;
        // MLP: out = resMid + down(swiglu(ln2 @ Wgu^T))
        be.gemm(false, false, N, F, C, 1f, dres, w.down(), 0f, s.dmid(), false);         // dswi[N,F] = dres @ Wdown[C,F]
        be.gemm(true, false, C, F, N, 1f, dres, a.swi(), 1f, g.down(), true);            // dWdown[C,F] += dres^T @ swi
        be.swigluBackward(s.dwide(), s.dmid(), a.gateup(), N, F);                        // dgateup[N,2F]
        be.gemm(true, false, 2 * F, C, N, 1f, s.dwide(), a.ln2(), 1f, g.gateUp(), true); // dWgu[2F,C] += dgateup^T @ ln2
        be.gemm(false, false, N, C, 2 * F, 1f, s.dwide(), w.gateUp(), 0f, s.dtmp(), false); // dln2[N,C] = dgateup @ Wgu
        tp.allReduceX(s.dtmp(), NC);                                                     // column-parallel gate|up
        be.rmsnormBackward(dres, g.ln2(), s.norm(), s.dtmp(), a.resMid(), w.ln2(), a.rstd2(), N, C); // dres += (residual)
        // attention: resMid = x + o_proj(attention(rope(ln1 @ Wqkv^T)))
        be.gemm(false, false, N, A, C, 1f, dres, w.o(), 0f, s.dmid(), false);            // datty[N,A] = dres @ Wo[C,A]
        be.gemm(true, false, C, A, N, 1f, dres, a.atty(), 1f, g.o(), true);              // dWo[C,A] += dres^T @ atty
        attention.backward(s.dwide(), s.attn(), s.dmid(), a);                            // dqkv[N,QKV] (=)
        be.gemm(true, false, QKV, C, N, 1f, s.dwide(), a.ln1(), 1f, g.qkv(), true);      // dWqkv[QKV,C] += dqkv^T @ ln1
        be.gemm(false, false, N, C, QKV, 1f, s.dwide(), w.qkv(), 0f, s.dtmp(), false);   // dln1[N,C] = dqkv @ Wqkv
        tp.allReduceX(s.dtmp(), NC);                                                     // column-parallel q|k|v
        be.rmsnormBackward(dres, g.ln1(), s.norm(), s.dtmp(), x, w.ln1(), a.rstd1(), N, C); // dres += (residual)
    }
}
