package dev.midtrain.infer;

import dev.midtrain.ckpt.HostFloats;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.DeviceBuffers;
import dev.midtrain.model.Llama;
import dev.midtrain.model.MemoryPlan;
import dev.midtrain.model.ParamLayout;

import java.util.ArrayList;
import java.util.List;

/**
 * Llama-3 forward only, for inference: no gradients, no optimizer state, one set of activation buffers reused by
 * every layer. Two paths through the same kernel ABI (CPU and CUDA):
 * <ul>
 *   <li>{@link #tokenLogprobs}: a batch of token sequences of different lengths, right-padded to the longest; causal
 *       attention never lets a position see the padding after it, and padded positions are excluded from the result
 *       (their targets are ignored), so each sequence's log-probabilities equal those of an unpadded pass.</li>
 *   <li>{@link #prefill} / {@link #decode}: one sequence with a key/value cache (kernel
 *       {@code kvcache_attention_forward}: RoPE at absolute positions, cache append, GQA attention over the cache);
 *       the prompt is prefilled in chunks of at most {@code maxTokens}, then one token per call.</li>
 * </ul>
 * Weights: the fp32 layout of {@link ParamLayout} (tp = 1), held as floatX (fp32 on CPU, bf16 on CUDA).
 * A model is used by one thread at a time.
 *
 * <p>Dimension legend: B sequences, T padded length, N = B*T tokens (at most maxTokens), C model dim, NH/NKV heads,
 * HD head dim, QKV = (NH+2NKV)*HD, A = NH*HD, F FFN size, V vocabulary, Tmax = cache length (model.max_seq_len).
 */
public final class InferenceModel implements AutoCloseable {
    private final Backend be;
    private final ModelConfig cfg;
    private final ParamLayout layout;
    private final int xb, maxTokens, C, L, NH, NKV, HD, QKV, A, F, V, Tmax, chunk;
    private final float eps;
    private final long paramsX;
    private final long oEmbed, oNormF, oHead;
    private final long[] oQkv, oO, oGateUp, oDown, oLn1, oLn2;
    // activations for up to maxTokens tokens, shared by all layers
    private final long x, ln, qkv, att, tmp, gateup, swi, rstd, attLse, logits, ceLse, ceTarget, tokens, targets, pos;
    private final long ropeCos, ropeSin;                 // float[Tmax, HD/2]
    private final long[] kv;                             // per layer floatX[Tmax, 2*NKV, HD]
    private int cached;                                  // positions held by the cache
    private final DeviceBuffers buffers;
    // host staging, allocated once: a JavaCPP Pointer per call would cost a System.gc() whenever the process is over
    // JavaCPP's physical-memory mark (measured: 0.5 s per decoded token on the 30m config)
    private final org.bytedeco.javacpp.IntPointer hostInts;
    private final org.bytedeco.javacpp.FloatPointer hostFloats;
    private final long logitsF32;                        // float[V]: the last row's logits cast to fp32 (CUDA)

    /**
     * @param params    fp32 weights in {@code layout}'s order (host memory; copied, the caller keeps ownership)
     * @param maxTokens tokens of one forward call (B*T of a scoring batch, a prefill chunk); sizes the activations
     */
    public InferenceModel(Backend be, ParamLayout layout, HostFloats params, int maxTokens) {
        if (layout.tp() != 1) throw new IllegalArgumentException("inference runs one rank (tp 1), layout has tp " + layout.tp());
        if (maxTokens < 1) throw new IllegalArgumentException("maxTokens must be >= 1, got " + maxTokens);
        this.be = be;
        this.buffers = new DeviceBuffers(be);
        this.layout = layout;
        this.cfg = layout.model();
        this.maxTokens = maxTokens;
        xb = be.floatxBytes();
        C = cfg.dim(); L = cfg.nLayers(); NH = cfg.nHeads(); NKV = cfg.nKvHeads(); HD = cfg.headDim();
        QKV = (NH + 2 * NKV) * HD; A = NH * HD; F = cfg.ffnDim(); V = cfg.vocabSize(); Tmax = cfg.maxSeqLen();
        eps = (float) cfg.normEps();
        chunk = Math.min(maxTokens, MemoryPlan.LOGITS_CHUNK_TOKENS);

        long numel = layout.numel();
        paramsX = allocX(numel);
        if (xb == 4) be.copyHostToDevice(paramsX, addressOf(params), 4L * numel);
        else {                                           // fp32 host -> fp32 device staging -> floatX
            long stage = be.alloc(4L * numel);
            try { be.copyHostToDevice(stage, addressOf(params), 4L * numel); be.castF32ToX(paramsX, stage, numel); be.synchronize(); }
            finally { be.free(stage); }
        }
        ParamLayout.Offsets off = layout.offsets();                    // q|k|v: one [QKV, C] matrix; gate|up: one [2F, C]
        oEmbed = off.embed(); oNormF = off.normF(); oHead = off.head();
        oQkv = off.qkv(); oO = off.o(); oGateUp = off.gateUp(); oDown = off.down(); oLn1 = off.ln1(); oLn2 = off.ln2();
        long N = maxTokens;
        x = allocX(N * C); ln = allocX(N * C); tmp = allocX(N * C);
        qkv = allocX(N * QKV); att = allocX(N * A);
        gateup = allocX(2 * N * F); swi = allocX(N * F);
        rstd = allocF(N); attLse = allocF(N * NH);
        logits = allocX((long) chunk * V);
        ceLse = allocF(N); ceTarget = allocF(N);
        tokens = allocF(N); targets = allocF(N); pos = allocF(1);
        logitsF32 = xb == 4 ? logits : allocF(V);
        hostInts = new org.bytedeco.javacpp.IntPointer(Math.max(N, 1));
        hostFloats = new org.bytedeco.javacpp.FloatPointer(Math.max(Math.max(N, V), 1));
        kv = new long[L];
        for (int l = 0; l < L; l++) kv[l] = allocX((long) Tmax * 2 * NKV * HD);

        // RoPE tables float[Tmax, HD/2], as model.Llama's (ModelConfig.ropeTables)
        float[][] rope = cfg.ropeTables(Tmax);
        ropeCos = allocF(rope[0].length);
        ropeSin = allocF(rope[1].length);
        be.upload(ropeCos, rope[0]);
        be.upload(ropeSin, rope[1]);
    }

    public ModelConfig config() { return cfg; }
    public Backend backend() { return be; }
    /** Tokens one forward call may hold (B*T of a scoring batch). */
    public int maxTokens() { return maxTokens; }
    /** Positions currently in the key/value cache. */
    public int cachedPositions() { return cached; }

    // ============================================================================================ batched scoring

    /**
     * Log-probabilities of each next token: for sequence s of length n >= 2, element t (0..n-2) is
     * log p(seq[t+1] | seq[0..t]). The sequences are right-padded to the longest and run as one batch
     * [B, T]; B*T must be at most {@link #maxTokens} and T at most model.max_seq_len.
     */
    public float[][] tokenLogprobs(List<int[]> seqs) {
        int B = seqs.size(), T = 0;
        for (int[] s : seqs) {
            if (s.length < 2) throw new IllegalArgumentException("a scored sequence needs at least 2 tokens, got " + s.length);
            T = Math.max(T, s.length - 1);
        }
        if (B == 0) return new float[0][];
        if (T > Tmax) throw new IllegalArgumentException("sequence of " + (T + 1) + " tokens exceeds max_seq_len + 1 = " + (Tmax + 1));
        if ((long) B * T > maxTokens) throw new IllegalArgumentException(B + " x " + T + " tokens exceed the batch capacity " + maxTokens);
        int N = B * T;
        int[] in = new int[N], tg = new int[N];
        for (int b = 0; b < B; b++) {
            int[] s = seqs.get(b);
            for (int t = 0; t < T; t++) {
                boolean real = t < s.length - 1;
                in[b * T + t] = real ? checkId(s[t]) : 0;                     // padding: any valid id, never seen by real rows
                tg[b * T + t] = real ? checkId(s[t + 1]) : Llama.IGNORE_INDEX;
            }
        }
        putInts(targets, tg, N);
        forwardFull(in, B, T);
        be.rmsnormForward(ln, rstd, x, wX(oNormF), N, C, eps);
        for (int c0 = 0; c0 < N; c0 += chunk) {
            int n = Math.min(chunk, N - c0);
            be.gemm(false, true, n, V, C, 1f, ln + (long) c0 * C * xb, wX(oHead), 0f, logits, false); // logits[n,V]
            be.crossentropyForward(ceLse + 4L * c0, ceTarget + 4L * c0, logits, targets + 4L * c0, n, V, 0, Llama.IGNORE_INDEX);
        }
        float[] lse = new float[N], tl = new float[N];
        getFloats(lse, ceLse, N);
        getFloats(tl, ceTarget, N);
        float[][] out = new float[B][];
        for (int b = 0; b < B; b++) {
            int n = seqs.get(b).length - 1;
            out[b] = new float[n];
            for (int t = 0; t < n; t++) out[b][t] = tl[b * T + t] - lse[b * T + t];  // log softmax at the target
        }
        return out;
    }

    /**
     * Logits float[V] after the last token of {@code seq}, recomputing the whole sequence without the cache (one
     * causal pass; the cache is not touched). The reference that cached decoding is tested against.
     */
    public float[] recomputeLogits(int[] seq) {
        if (seq.length == 0 || seq.length > Math.min(Tmax, maxTokens))
            throw new IllegalArgumentException("sequence of " + seq.length + " tokens: need 1.." + Math.min(Tmax, maxTokens));
        for (int t : seq) checkId(t);
        forwardFull(seq, 1, seq.length);
        return lastLogits(seq.length);
    }

    /** Embedding and every block for in = int32[B,T] (positions 0..T-1 per sequence); hidden states left in x. */
    private void forwardFull(int[] in, int B, int T) {
        int N = B * T;
        putInts(tokens, in, N);
        be.embeddingForward(x, tokens, wX(oEmbed), N, C, V);                   // x[N,C] = wte[tokens]
        for (int l = 0; l < L; l++) {
            blockPre(l, N);
            be.ropeForward(qkv, qkv, ropeCos, ropeSin, B, T, NH, NKV, HD);        // rotate q,k in place (positions 0..T-1)
            be.attentionForward(att, attLse, qkv, B, T, NH, NKV, HD);           // causal: padding sits after every real row
            blockPost(l, N);
        }
    }

    // ====================================================================================== key/value cache decoding

    /** Empties the cache (a new sequence). */
    public void reset() { cached = 0; }

    /**
     * Appends {@code toks} to the cached sequence (in chunks of at most {@link #maxTokens}) and returns the logits
     * float[V] after the last one.
     */
    public float[] prefill(int[] toks) {
        if (toks.length == 0) throw new IllegalArgumentException("prefill of no tokens");
        if (cached + toks.length > Tmax)
            throw new IllegalArgumentException((cached + toks.length) + " positions exceed max_seq_len " + Tmax);
        int n = 0;
        for (int c0 = 0; c0 < toks.length; c0 += maxTokens) {
            n = Math.min(maxTokens, toks.length - c0);
            int[] part = new int[n];
            System.arraycopy(toks, c0, part, 0, n);
            forwardCached(part);
        }
        return lastLogits(n);
    }

    /** Appends one token and returns the logits float[V] of the next. */
    public float[] decode(int token) { return prefill(new int[]{token}); }

    /** One chunk of Tq new tokens through every layer with the cache; leaves the final hidden states in x. */
    private void forwardCached(int[] toks) {
        int Tq = toks.length;
        for (int t : toks) checkId(t);
        putInts(tokens, toks, Tq);
        putInts(pos, new int[]{cached}, 1);
        be.embeddingForward(x, tokens, wX(oEmbed), Tq, C, V);
        for (int l = 0; l < L; l++) {
            blockPre(l, Tq);
            be.kvcacheAttentionForward(att, kv[l], qkv, ropeCos, ropeSin, pos, 1, Tq, Tmax, NH, NKV, HD); // RoPE, append, attend
            blockPost(l, Tq);
        }
        cached += Tq;
    }

    /** Final norm and LM head of row n-1 of x: logits float[V]. */
    private float[] lastLogits(int n) {
        long last = x + (long) (n - 1) * C * xb;
        be.rmsnormForward(ln, rstd, last, wX(oNormF), 1, C, eps);
        be.gemm(false, true, 1, V, C, 1f, ln, wX(oHead), 0f, logits, false);    // logits[1,V] = ln[1,C] @ W[V,C]^T
        float[] out = new float[V];
        if (xb != 4) be.castXToF32(logitsF32, logits, V);
        getFloats(out, logitsF32, V);
        return out;
    }

    // ================================================================================================== layers

    /** Attention input: ln = rmsnorm(x), qkv[N,QKV] = ln @ Wqkv^T. */
    private void blockPre(int l, int N) {
        be.rmsnormForward(ln, rstd, x, wX(oLn1[l]), N, C, eps);
        be.gemm(false, true, N, QKV, C, 1f, ln, wX(oQkv[l]), 0f, qkv, false);
    }

    /** After attention: x += att @ Wo^T; x += down(swiglu(rmsnorm(x) @ Wgu^T)). */
    private void blockPost(int l, int N) {
        long NC = (long) N * C;
        be.gemm(false, true, N, C, A, 1f, att, wX(oO[l]), 0f, tmp, false);       // o[N,C] = att @ Wo[C,A]^T
        be.add(x, x, tmp, NC);
        be.rmsnormForward(ln, rstd, x, wX(oLn2[l]), N, C, eps);
        be.gemm(false, true, N, 2 * F, C, 1f, ln, wX(oGateUp[l]), 0f, gateup, false);
        be.swigluForward(swi, gateup, N, F);
        be.gemm(false, true, N, C, F, 1f, swi, wX(oDown[l]), 0f, tmp, false);    // d[N,C] = swi @ Wdown[C,F]^T
        be.add(x, x, tmp, NC);
    }

    private int checkId(int id) {
        if (id < 0 || id >= V) throw new IllegalArgumentException("token id " + id + " outside [0, " + V + ")");
        return id;
    }

    private static long addressOf(HostFloats h) {
        if (h.address() == 0) throw new IllegalArgumentException("weights must be off-heap HostFloats");
        return h.address();
    }

    private long wX(long offset) { return paramsX + offset * xb; }
    private void putInts(long dst, int[] src, int n) {
        hostInts.put(src, 0, n);
        be.copyHostToDevice(dst, hostInts.address(), 4L * n);
    }

    private void getFloats(float[] dst, long src, int n) {
        be.copyDeviceToHost(hostFloats.address(), src, 4L * n);       // synchronous on both backends
        hostFloats.get(dst, 0, n);
    }

    private long allocF(long floats) { return buffers.f32(floats); }
    private long allocX(long elems) { return buffers.x(elems); }

    @Override
    public void close() {
        buffers.close();
        hostInts.close();
        hostFloats.close();
    }
}
