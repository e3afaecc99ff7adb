package dev.midtrain.bench;

import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.KernelAbi;
import dev.midtrain.kernels.CudaBackend;
import dev.midtrain.kernels.KernelException;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * Kernel benchmarks for one backend ({@code cpu} or {@code cuda}): median time of N runs after warm-up (CUDA events on
 * the GPU, System.nanoTime on the CPU), achieved GB/s for the memory-bound kernels (bytes = each input read once +
 * each output written once, the minimum any implementation must move) and TFLOP/s for attention and GEMMs, each as a
 * percentage of a ceiling measured in the same run: a large device-to-device copy (GB/s, read + write counted) and a
 * large GEMM (bf16 cuBLAS 8192^3 on the GPU, fp32 OpenBLAS 1024^3 on the CPU).
 *
 * <p>GPU sizes are Llama-3-8B-like (N = 8192 tokens, C = 4096, F = 14336, V = 128256, attention B=1 T=8192 NH=32
 * NKV=8 HD=128, AdamW over 200M parameters); CPU sizes are small so that CI runs it in seconds. Attention FLOPs use
 * the causal convention: forward 4*B*T*T*NH*HD/2, backward 2.5x forward. Output rows are markdown table lines.
 */
public final class KernelBench {
    private final Backend be;
    private final CudaBackend cuda;     // null on CPU
    private final PrintStream out;
    private final int warmup, reps;
    private final List<Long> live = new ArrayList<>();
    private double copyGBs = Double.NaN, gemmTFs = Double.NaN;

    private KernelBench(Backend be, PrintStream out) {
        this.be = be;
        this.cuda = be instanceof CudaBackend c ? c : null;
        this.out = out;
        this.warmup = cuda != null ? 3 : 1;
        this.reps = cuda != null ? 20 : 3;
    }

    public static void main(String[] args) {
        System.exit(run(args.length > 0 ? args[0] : "cpu", System.out));
    }

    /** Entry point of {@code midtrain bench kernels --backend cpu|cuda}. Returns the exit status. */
    public static int run(String backend, PrintStream out) {
        Backend be;
        try {
            be = Backend.open(backend, 0);
        } catch (KernelException | IllegalArgumentException e) {
            out.println("bench kernels: " + e.getMessage());
            return 2;
        }
        try (be) {
            KernelBench kb = new KernelBench(be, out);
            kb.runAll();
            return 0;
        } catch (KernelException e) {
            out.println("bench kernels: " + e.getMessage());
            return 1;
        }
    }

    private void runAll() {
        boolean gpu = cuda != null;
        out.println("KernelBench on " + (gpu ? cuda.deviceName() : "cpu (" + Runtime.getRuntime().availableProcessors() + " threads)")
                + ", median of " + reps + " after " + warmup + " warm-up");
        out.println("machine: " + be.describe());
        out.println();
        out.println("| kernel | shape | time ms | achieved | % of ceiling |");
        out.println("|---|---|---:|---:|---:|");
        int xb = be.floatxBytes();

        // ---- ceilings
        long copyBytes = gpu ? 1L << 30 : 64L << 20;
        {
            long a = alloc(copyBytes), b = alloc(copyBytes);
            be.fillF32(a, 1f, copyBytes / 4);
            double ms = time(() -> be.copyBytes(b, a, copyBytes));
            copyGBs = 2.0 * copyBytes / (ms * 1e6);
            row("ceiling: copy", (copyBytes >> 20) + " MiB", ms, String.format("%.0f GB/s", copyGBs), "100");
            freeAll();
        }
        {
            int n = gpu ? 8192 : 1024;
            double tf = gemmRow("ceiling: gemm", n, n, n, false, false, null);
            gemmTFs = tf;
        }

        // ---- sizes
        int N = gpu ? 8192 : 256, C = gpu ? 4096 : 512, F = gpu ? 14336 : 1024, V = gpu ? 128256 : 4096;
        int aB = 1, aT = gpu ? 8192 : 256, aNH = gpu ? 32 : 8, aNKV = gpu ? 8 : 2, aHD = gpu ? 128 : 64;
        long nParams = gpu ? 200_000_000L : 1_000_000L;
        int ceN = gpu ? 8192 : 32;

        // ---- model GEMMs (bf16 on GPU, fp32 on CPU): QKV, FFN up, FFN down, weight gradient with fp32 accumulation
        int qkvOut = (aNH + 2 * aNKV) * aHD;
        gemmRow("gemm qkv", N, qkvOut, C, false, true, null);
        gemmRow("gemm ffn up (gate|up)", N, 2 * F, C, false, true, null);
        gemmRow("gemm ffn down", N, C, F, false, true, null);
        gemmRow("gemm dW ffn down (fp32 +=)", C, F, N, true, false, Boolean.TRUE);

        // ---- rmsnorm
        {
            long x = alloc((long) N * C * xb), w = alloc((long) C * xb), o = alloc((long) N * C * xb), r = alloc(4L * N);
            long dx = alloc((long) N * C * xb), dw = alloc(4L * C), s = alloc(4L * KernelAbi.rmsnormBwdScratchFloats(N, C));
            be.fillX(x, 0.5f, (long) N * C); be.fillX(w, 1f, C); be.fillX(dx, 0f, (long) N * C); be.fillF32(dw, 0f, C);
            double ms = time(() -> be.rmsnormForward(o, r, x, w, N, C, 1e-5f));
            bwRow("rmsnorm_forward", "N" + N + " C" + C, ms, 2.0 * N * C * xb + (double) C * xb + 4.0 * N);
            ms = time(() -> be.rmsnormBackward(dx, dw, s, o, x, w, r, N, C));
            bwRow("rmsnorm_backward", "N" + N + " C" + C, ms, 4.0 * N * C * xb + (double) C * xb + 4.0 * N + 8.0 * C);
            freeAll();
        }
        // ---- swiglu, add
        {
            long gu = alloc(2L * N * F * xb), o = alloc((long) N * F * xb), dgu = alloc(2L * N * F * xb);
            be.fillX(gu, 0.5f, 2L * N * F);
            double ms = time(() -> be.swigluForward(o, gu, N, F));
            bwRow("swiglu_forward", "N" + N + " F" + F, ms, 3.0 * N * F * xb);
            ms = time(() -> be.swigluBackward(dgu, o, gu, N, F));
            bwRow("swiglu_backward", "N" + N + " F" + F, ms, 5.0 * N * F * xb);
            long n = (long) N * C;
            ms = time(() -> be.add(o, gu, dgu, n));
            bwRow("add", "n" + n, ms, 3.0 * n * xb);
            freeAll();
        }
        // ---- rope
        {
            long n = (long) aB * aT * (aNH + 2 * aNKV) * aHD;
            long q = alloc(n * xb), q2 = alloc(n * xb), cs = alloc(4L * aT * aHD / 2), sn = alloc(4L * aT * aHD / 2);
            be.fillX(q, 0.5f, n); be.fillF32(cs, 0.5f, (long) aT * aHD / 2); be.fillF32(sn, 0.5f, (long) aT * aHD / 2);
            String shape = "B" + aB + " T" + aT + " NH" + aNH + " NKV" + aNKV + " HD" + aHD;
            double ms = time(() -> be.ropeForward(q2, q, cs, sn, aB, aT, aNH, aNKV, aHD));
            bwRow("rope_forward", shape, ms, 2.0 * n * xb);
            ms = time(() -> be.ropeBackward(q2, q, cs, sn, aB, aT, aNH, aNKV, aHD));
            bwRow("rope_backward", shape, ms, 2.0 * n * xb);
            freeAll();
        }
        // ---- attention
        {
            long n = (long) aB * aT * (aNH + 2 * aNKV) * aHD, no = (long) aB * aT * aNH * aHD, nl = (long) aB * aNH * aT;
            long qkv = alloc(n * xb), o = alloc(no * xb), lse = alloc(4 * nl), dqkv = alloc(n * xb), dout = alloc(no * xb);
            long sc = alloc(4L * KernelAbi.attnBwdScratchFloats(aB, aNH, aT));
            fillRandomX(qkv, n, 1);
            fillRandomX(dout, no, 2);
            String shape = "B" + aB + " T" + aT + " NH" + aNH + " NKV" + aNKV + " HD" + aHD;
            double flops = 4.0 * aB * aT * (double) aT * aNH * aHD / 2;
            double ms = time(() -> be.attentionForward(o, lse, qkv, aB, aT, aNH, aNKV, aHD));
            flopRow("attention_forward", shape, ms, flops);
            ms = time(() -> be.attentionBackward(dqkv, sc, dout, qkv, o, lse, aB, aT, aNH, aNKV, aHD));
            flopRow("attention_backward", shape, ms, 2.5 * flops);
            freeAll();
        }
        // ---- cross-entropy
        {
            long lg = alloc((long) ceN * V * xb), lse = alloc(4L * ceN), tl = alloc(4L * ceN), loss = alloc(4L * ceN), tg = alloc(4L * ceN);
            fillRandomX(lg, (long) ceN * V, 3);
            be.upload(tg, randomTokens(ceN, V));
            String shape = "N" + ceN + " V" + V;
            double ms = time(() -> be.crossentropyForward(lse, tl, lg, tg, ceN, V, 0, -100));
            bwRow("crossentropy_forward", shape, ms, (double) ceN * V * xb);
            // in place on the logits (the training usage); the values drift run to run, which does not change timing
            ms = time(() -> be.crossentropyBackward(lg, loss, lg, lse, tl, tg, 1f / ceN, ceN, V, 0, -100));
            bwRow("crossentropy_backward", shape, ms, 2.0 * ceN * V * xb);
            freeAll();
        }
        // ---- embedding
        {
            int eV = gpu ? V : 4096;
            long wte = alloc((long) eV * C * xb), dwte = alloc(4L * eV * C), o = alloc((long) N * C * xb), tg = alloc(4L * N);
            be.fillX(wte, 0.5f, (long) eV * C); be.fillF32(dwte, 0f, (long) eV * C); be.fillX(o, 0.5f, (long) N * C);
            be.upload(tg, randomTokens(N, eV));
            double ms = time(() -> be.embeddingForward(o, tg, wte, N, C, eV));
            bwRow("embedding_forward", "N" + N + " C" + C + " V" + eV, ms, 2.0 * N * C * xb + 4.0 * N);
            ms = time(() -> be.embeddingBackward(dwte, tg, o, N, C, eV));
            bwRow("embedding_backward", "N" + N + " C" + C + " V" + eV, ms, (double) N * C * xb + 8.0 * N * C + 4.0 * N);
            freeAll();
        }
        // ---- AdamW, global norm
        {
            long p = alloc(4 * nParams), g = alloc(4 * nParams), m = alloc(4 * nParams), v = alloc(4 * nParams), px = alloc(xb * nParams);
            long o = alloc(4), s = alloc(4L * KernelAbi.NORM_SCRATCH_FLOATS);
            be.fillF32(p, 0.1f, nParams); be.fillF32(g, 0.01f, nParams); be.fillF32(m, 0f, nParams); be.fillF32(v, 0f, nParams);
            be.fillF32(o, 0f, 1);
            double ms = time(() -> be.adamwUpdate(p, px, g, m, v, nParams, 3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.5f, 1f));
            bwRow("adamw_update (+param_x)", "n" + nParams, ms, (28.0 + xb) * nParams);
            ms = time(() -> be.globalNormSquared(o, s, g, nParams));
            bwRow("global_norm_squared", "n" + nParams, ms, 4.0 * nParams);
            freeAll();
        }
    }

    // ------------------------------------------------------------------------------------------------ helpers

    /** Median milliseconds of {@code reps} runs after {@code warmup} runs. */
    private double time(Runnable op) {
        for (int i = 0; i < warmup; i++) op.run();
        be.synchronize();
        double[] t = new double[reps];
        for (int i = 0; i < reps; i++) {
            if (cuda != null) t[i] = cuda.elapsedMs(op);
            else {
                long t0 = System.nanoTime();
                op.run();
                t[i] = (System.nanoTime() - t0) / 1e6;
            }
        }
        Arrays.sort(t);
        return reps % 2 == 1 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    }

    private double gemmRow(String name, int M, int N, int K, boolean ta, boolean tb, Boolean cF32) {
        int xb = be.floatxBytes();
        boolean f32 = cF32 != null && cF32;
        long a = alloc((long) M * K * xb), b = alloc((long) K * N * xb), c = alloc((long) M * N * (f32 ? 4 : xb));
        fillRandomX(a, (long) M * K, 4);
        fillRandomX(b, (long) K * N, 5);
        if (f32) be.fillF32(c, 0f, (long) M * N);
        double ms = time(() -> be.gemm(ta, tb, M, N, K, 1f, a, b, f32 ? 1f : 0f, c, f32));
        double tf = 2.0 * M * N * K / (ms * 1e9);
        row(name, "M" + M + " N" + N + " K" + K + (ta ? " tA" : "") + (tb ? " tB" : ""), ms, fmtFlops(tf), pct(tf, gemmTFs));
        freeAll();
        return tf;
    }

    private void bwRow(String name, String shape, double ms, double bytes) {
        double gbs = bytes / (ms * 1e6);
        row(name, shape, ms, String.format("%.0f GB/s", gbs), pct(gbs, copyGBs));
    }

    private void flopRow(String name, String shape, double ms, double flops) {
        double tf = flops / (ms * 1e9);
        row(name, shape, ms, fmtFlops(tf), pct(tf, gemmTFs));
    }

    private static String fmtFlops(double tflops) {
        return tflops >= 1 ? String.format("%.1f TFLOP/s", tflops) : String.format("%.1f GFLOP/s", tflops * 1e3);
    }

    private static String pct(double v, double ceiling) {
        return Double.isNaN(ceiling) || ceiling <= 0 ? "-" : String.format("%.0f", 100 * v / ceiling);
    }

    private void row(String name, String shape, double ms, String achieved, String pct) {
        out.printf("| %s | %s | %.3f | %s | %s |%n", name, shape, ms, achieved, pct);
        out.flush();
    }

    private long alloc(long bytes) {
        long p = be.alloc(bytes);
        live.add(p);
        return p;
    }

    private void freeAll() {
        be.synchronize();
        for (long p : live) be.free(p);
        live.clear();
    }

    /** Pseudo-random bf16/fp32 values in [-1, 1) uploaded through a modest host buffer, chunk by chunk. */
    private void fillRandomX(long dst, long n, long seed) {
        Random r = new Random(seed);
        int chunk = (int) Math.min(n, 1 << 22);
        float[] h = new float[chunk];
        for (int i = 0; i < chunk; i++) h[i] = r.nextFloat() * 2 - 1;
        long tmp = be.alloc(4L * chunk);
        try {
            be.upload(tmp, h);
            for (long off = 0; off < n; off += chunk) {
                long len = Math.min(chunk, n - off);
                be.castF32ToX(dst + off * be.floatxBytes(), tmp, len);   // the same chunk repeated: fine for timing
            }
            be.synchronize();
        } finally {
            be.free(tmp);
        }
    }

    private static int[] randomTokens(int n, int V) {
        Random r = new Random(7);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = r.nextInt(V);
        return t;
    }
}
