package dev.midtrain.bench;

import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.CpuBackend;

/**
 * GEMM rates of the shapes one training step of a preset issues (best of 5 each), to tell OpenBLAS's rate per shape
 * from the engine's overhead. {@code java ... dev.midtrain.bench.GemmBench M N K [tA tB] ...} or no arguments for
 * the 3m preset's shapes.
 */
public final class GemmBench {
    public static void main(String[] args) {
        int threads = Integer.parseInt(System.getenv().getOrDefault("MT_THREADS", "2"));
        CpuBackend.setThreads(threads);
        String[] shapes = args.length > 0 ? args : new String[]{
                "1024:1024:1024:N:T",
                "2048:384:256:N:T", "2048:256:384:N:N", "384:256:2048:T:N",       // qkv fwd, dinp, dW
                "2048:1376:256:N:T", "2048:256:1376:N:N", "1376:256:2048:T:N",    // gate|up
                "2048:256:688:N:T", "2048:688:256:N:N", "256:688:2048:T:N",       // down
                "2048:256:256:N:T", "2048:256:256:N:N", "256:256:2048:T:N",       // o
                "1024:512:256:N:T", "1024:256:512:N:N", "512:256:1024:T:N"};      // head (chunk 1024)
        int reps = Integer.parseInt(System.getenv().getOrDefault("MT_REPS", "5"));
        try (Backend be = Backend.open("cpu", 0)) {
            for (String s : shapes) {
                String[] p = s.split(":");
                int M = Integer.parseInt(p[0]), N = Integer.parseInt(p[1]), K = Integer.parseInt(p[2]);
                boolean tA = p.length > 3 && p[3].equals("T"), tB = p.length > 4 && p[4].equals("T");
                long a = be.alloc(4L * M * K), b = be.alloc(4L * K * N), c = be.alloc(4L * M * N);
                be.fillF32(a, 0.01f, (long) M * K);
                be.fillF32(b, 0.02f, (long) K * N);
                be.fillF32(c, 0f, (long) M * N);
                be.gemm(tA, tB, M, N, K, 1f, a, b, 0f, c, true);
                double best = 1e9;
                for (int r = 0; r < reps; r++) {
                    long t0 = System.nanoTime();
                    be.gemm(tA, tB, M, N, K, 1f, a, b, 1f, c, true);
                    best = Math.min(best, (System.nanoTime() - t0) / 1e9);
                }
                System.out.printf("%-24s %8.2f ms %8.1f GFLOP/s (%d threads)%n", s, best * 1e3, 2.0 * M * N * K / best / 1e9, threads);
                be.free(a); be.free(b); be.free(c);
            }
        }
    }
}
