package dev.midtrain.bench;

import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.Kernels;
import dev.midtrain.kernels.TimedKernels;

import java.util.Map;
import java.util.TreeMap;

/**
 * A backend that times every kernel and GEMM of a delegate (synchronizing after each call, so on CUDA the numbers
 * are per-kernel wall times, not overlapped ones): where a training step's time goes. For benchmarks and
 * `midtrain train --profile`; never used in normal training. The kernels are timed by the generated
 * {@link TimedKernels}; attention is overridden here to count its FLOPs.
 */
public final class TimedBackend extends TimedKernels implements Backend {
    private final Backend d;
    private final Map<String, long[]> stats = new TreeMap<>();     // name -> {calls, nanos, flops}

    public TimedBackend(Backend delegate) { this.d = delegate; }

    private long t0() { return System.nanoTime(); }

    @Override protected Kernels timedTarget() { return d; }

    @Override protected void timed(String kernel, long startNanos) { done(kernel, startNanos, 0); }

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
    @Override public String describe() { return d.describe(); }
    @Override public long deviceMemoryBytes() { return d.deviceMemoryBytes(); }
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

    @Override
    public void linear(long out, long inp, long weight, int M, int N, int K) {
        long t = t0();
        d.linear(out, inp, weight, M, N, K);
        done("gemm_linear " + M + "x" + N + "x" + K, t, 2.0 * M * N * K);
    }

    @Override public void attentionForward(long out, long lse, long qkv, int B, int T, int NH, int NKV, int HD) {
        long t = t0(); d.attentionForward(out, lse, qkv, B, T, NH, NKV, HD); done("attention_forward", t, 2.0 * B * NH * (double) T * (T + 1) * HD);
    }
    @Override public void attentionBackward(long dqkv, long scratch, long dout, long qkv, long out, long lse, int B, int T, int NH, int NKV, int HD) {
        long t = t0(); d.attentionBackward(dqkv, scratch, dout, qkv, out, lse, B, T, NH, NKV, HD); done("attention_backward", t, 4.0 * B * NH * (double) T * (T + 1) * HD);
    }
}
