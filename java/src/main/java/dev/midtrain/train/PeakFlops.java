package dev.midtrain.train;

import dev.midtrain.kernels.Backend;

/**
 * The device's measured GEMM rate, the denominator of MFU on CPU (where no datasheet peak applies): the best of a few
 * timed n x n x n GEMMs through the backend (OpenBLAS sgemm on CPU), after one warm-up call. n = 1024 takes ~0.1 s
 * on two cores.
 */
public final class PeakFlops {
    private PeakFlops() {}

    /** FLOP/s of the best of {@code reps} GEMMs of size n (2 n^3 FLOPs each). */
    public static double gemm(Backend be, int n, int reps) {
        long bytes = (long) be.floatxBytes() * n * n;
        long a = be.alloc(bytes), b = be.alloc(bytes), c = be.alloc(bytes);
        try {
            be.fillX(a, 0.5f, (long) n * n);
            be.fillX(b, 0.25f, (long) n * n);
            be.gemm(false, true, n, n, n, 1f, a, b, 0f, c, false);
            be.synchronize();
            double best = Double.MAX_VALUE;
            for (int r = 0; r < reps; r++) {
                long t0 = System.nanoTime();
                be.gemm(false, true, n, n, n, 1f, a, b, 0f, c, false);
                be.synchronize();
                best = Math.min(best, (System.nanoTime() - t0) / 1e9);
            }
            return 2.0 * n * n * (double) n / best;
        } finally {
            be.free(a);
            be.free(b);
            be.free(c);
        }
    }
}
