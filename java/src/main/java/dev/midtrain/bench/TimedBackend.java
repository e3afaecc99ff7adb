package dev.midtrain.bench;

import dev.midtrain.kernels.Backend;

import java.util.Map;
import java.util.TreeMap;

/**
 * A backend that times every kernel and GEMM of a delegate (synchronizing after each call, so on CUDA the numbers
 * are per-kernel wall times, not overlapped ones): where a training step's time goes. For benchmarks and
 * `midtrain train --profile`; never used in normal training.
 */
public final class TimedBackend implements Backend {
    private final Backend d;
    private final Map<String, long[]> stats = new TreeMap<>();     // name -> {calls, nanos, flops}

    public TimedBackend(Backend delegate) { this.d = delegate; }

    private long t0() { return System.nanoTime(); }

    private void done(String name, long t0, double flops) {
        d.synchronize();
        long[] s = stats.computeIfAbsent(name, k -> new long[3]);
        s[0]++;
        s[1] += System.nanoTime() - t0;
        s[2] += (long) flops;
    }

    public void reset() { stats.clear(); }

    /** A table: op, calls, total ms, share of the timed total, GFLOP/s for GEMMs. */
    public String report() {
        long total = stats.values().stream().mapToLong(s -> s[1]).sum();
        StringBuilder sb = new StringBuilder(String.format("%-28s %8s %10s %7s %9s%n", "op", "calls", "ms", "share", "GFLOP/s"));
        stats.entrySet().stream().sorted((a, b) -> Long.compare(b.getValue()[1], a.getValue()[1])).forEach(e -> {
            long[] s = e.getValue();
            sb.append(String.format("%-28s %8d %10.1f %6.1f%% %9s%n", e.getKey(), s[0], s[1] / 1e6, 100.0 * s[1] / total,
                    s[2] > 0 ? String.format("%.1f", s[2] / (double) s[1]) : ""));
        });
        long gemm = 0, attn = 0;
        for (var e : stats.entrySet()) {
            if (e.getKey().startsWith("gemm")) gemm += e.getValue()[1];
            if (e.getKey().startsWith("attention")) attn += e.getValue()[1];
        }
        sb.append(String.format("%-28s %8s %10.1f%n", "total", "", total / 1e6));
        sb.append(String.format("by kind: GEMM %.1f%% | attention %.1f%% | other kernels and copies %.1f%%%n",
                100.0 * gemm / total, 100.0 * attn / total, 100.0 * (total - gemm - attn) / total));
        return sb.toString();
    }

    @Override public String name() { return d.name(); }
    @Override public int floatxBytes() { return d.floatxBytes(); }
    @Override public long alloc(long bytes) { return d.alloc(bytes); }
    @Override public void free(long ptr) { d.free(ptr); }
    @Override public void copyHostToDevice(long dst, long hostSrc, long bytes) { long t = t0(); d.copyHostToDevice(dst, hostSrc, bytes); done("copy_h2d", t, 0); }
    @Override public void copyDeviceToHost(long hostDst, long src, long bytes) { long t = t0(); d.copyDeviceToHost(hostDst, src, bytes); done("copy_d2h", t, 0); }
    @Override public void synchronize() { d.synchronize(); }
    @Override public void close() { d.close(); }

    @Override
    public void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha, long A, long B, float beta, long C, boolean cF32) {
        long t = t0();
        d.gemm(transA, transB, M, N, K, alpha, A, B, beta, C, cF32);
        done("gemm_" + (transA ? "T" : "N") + (transB ? "T" : "N") + " " + M + "x" + N + "x" + K, t, 2.0 * M * N * K);
    }

    @Override public void fillF32(long x, float value, long n) { long t = t0(); d.fillF32(x, value, n); done("fill_f32", t, 0); }
    @Override public void fillX(long x, float value, long n) { long t = t0(); d.fillX(x, value, n); done("fill_x", t, 0); }
    @Override public void copyBytes(long dst, long src, long bytes) { long t = t0(); d.copyBytes(dst, src, bytes); done("copy_bytes", t, 0); }
    @Override public void castF32ToX(long out, long inp, long n) { long t = t0(); d.castF32ToX(out, inp, n); done("cast_f32_to_x", t, 0); }
    @Override public void castXToF32(long out, long inp, long n) { long t = t0(); d.castXToF32(out, inp, n); done("cast_x_to_f32", t, 0); }
    @Override public void embeddingForward(long out, long tokens, long wte, int N, int C, int V) { long t = t0(); d.embeddingForward(out, tokens, wte, N, C, V); done("embedding_forward", t, 0); }
    @Override public void embeddingBackward(long dwte, long tokens, long dout, int N, int C, int V) { long t = t0(); d.embeddingBackward(dwte, tokens, dout, N, C, V); done("embedding_backward", t, 0); }
    @Override public void rmsnormForward(long out, long rstd, long inp, long weight, int N, int C, float eps) { long t = t0(); d.rmsnormForward(out, rstd, inp, weight, N, C, eps); done("rmsnorm_forward", t, 0); }
    @Override public void rmsnormBackward(long dinp, long dweight, long scratch, long dout, long inp, long weight, long rstd, int N, int C) { long t = t0(); d.rmsnormBackward(dinp, dweight, scratch, dout, inp, weight, rstd, N, C); done("rmsnorm_backward", t, 0); }
    @Override public void ropeForward(long out, long inp, long cos, long sin, int B, int T, int NH, int NKV, int HD) { long t = t0(); d.ropeForward(out, inp, cos, sin, B, T, NH, NKV, HD); done("rope_forward", t, 0); }
    @Override public void ropeBackward(long dinp, long dout, long cos, long sin, int B, int T, int NH, int NKV, int HD) { long t = t0(); d.ropeBackward(dinp, dout, cos, sin, B, T, NH, NKV, HD); done("rope_backward", t, 0); }
    @Override public void attentionForward(long out, long lse, long qkv, int B, int T, int NH, int NKV, int HD) {
        long t = t0(); d.attentionForward(out, lse, qkv, B, T, NH, NKV, HD); done("attention_forward", t, 2.0 * B * NH * (double) T * (T + 1) * HD);
    }
    @Override public void attentionBackward(long dqkv, long scratch, long dout, long qkv, long out, long lse, int B, int T, int NH, int NKV, int HD) {
        long t = t0(); d.attentionBackward(dqkv, scratch, dout, qkv, out, lse, B, T, NH, NKV, HD); done("attention_backward", t, 4.0 * B * NH * (double) T * (T + 1) * HD);
    }
    @Override public void kvcacheAttentionForward(long out, long kv, long qkv, long cos, long sin, long pos, int B, int Tq, int Tmax, int NH, int NKV, int HD) {
        long t = t0(); d.kvcacheAttentionForward(out, kv, qkv, cos, sin, pos, B, Tq, Tmax, NH, NKV, HD); done("kvcache_attention_forward", t, 0);
    }
    @Override public void swigluForward(long out, long gateup, int N, int F) { long t = t0(); d.swigluForward(out, gateup, N, F); done("swiglu_forward", t, 0); }
    @Override public void swigluBackward(long dgateup, long dout, long gateup, int N, int F) { long t = t0(); d.swigluBackward(dgateup, dout, gateup, N, F); done("swiglu_backward", t, 0); }
    @Override public void add(long out, long a, long b, long n) { long t = t0(); d.add(out, a, b, n); done("add", t, 0); }
    @Override public void crossentropyForward(long lse, long targetLogit, long logits, long targets, int N, int V, int vocabStart, int ignoreIndex) {
        long t = t0(); d.crossentropyForward(lse, targetLogit, logits, targets, N, V, vocabStart, ignoreIndex); done("crossentropy_forward", t, 0);
    }
    @Override public void crossentropyBackward(long dlogits, long losses, long logits, long lse, long targetLogit, long targets, float dloss, int N, int V, int vocabStart, int ignoreIndex) {
        long t = t0(); d.crossentropyBackward(dlogits, losses, logits, lse, targetLogit, targets, dloss, N, V, vocabStart, ignoreIndex); done("crossentropy_backward", t, 0);
    }
    @Override public void lseCombine(long lse, long lseParts, int P, int N) { long t = t0(); d.lseCombine(lse, lseParts, P, N); done("lse_combine", t, 0); }
    @Override public void adamwUpdate(long param, long paramX, long grad, long m, long v, long n, float lr, float beta1, float beta2, float eps, float weightDecay, float biasCorr1, float biasCorr2, float gradScale) {
        long t = t0(); d.adamwUpdate(param, paramX, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, biasCorr1, biasCorr2, gradScale); done("adamw_update", t, 0);
    }
    @Override public void globalNormSquared(long out, long scratch, long x, long n) { long t = t0(); d.globalNormSquared(out, scratch, x, n); done("global_norm_squared", t, 0); }
    @Override public void scaleF32(long x, float s, long n) { long t = t0(); d.scaleF32(x, s, n); done("scale_f32", t, 0); }
}
