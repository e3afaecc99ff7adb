package dev.midtrain.train;

import dev.midtrain.kernels.Backend;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

/**
 * The MFU denominator. MFU is model FLOPs per second over the device's peak; a peak that is too low gives an MFU
 * above 100% (a start-up sgemm measured on a busy machine once gave 237%), so the peak is never taken from a
 * measurement alone:
 * <ul>
 *   <li>CPU: the datasheet-style peak from a table, threads x clock x FP32 FLOPs per cycle per core (AVX-512: 64, two
 *       512-bit FMA pipes; AVX2 + FMA: 32; otherwise 8), with the clock from cpufreq's cpuinfo_max_freq or else the
 *       highest "cpu MHz" in /proc/cpuinfo; the larger of that and a measured sgemm (which can only be low), so a
 *       busy machine never lowers it.</li>
 *   <li>CUDA: the dense bf16 tensor-core peak of the datasheet for known devices ({@link #gpuTable}); the measured
 *       cuBLAS GEMM otherwise, said so in the log.</li>
 * </ul>
 * {@code --peak-tflops} overrides both. {@link Peak#source} says which was used; the train log prints it.
 */
public final class PeakFlops {
    private PeakFlops() {}

    /** A peak FLOP/s and where it came from (printed beside MFU's denominator). */
    public record Peak(double flops, String source) {}

    /** CPU peak for {@code threads} cores: max(table, measured sgemm 1024^3 best of 10). */
    public static Peak cpu(Backend be, int threads) {
        double measured = gemm(be, 1024, 10);
        double[] t = cpuTable(threads, Path.of("/proc/cpuinfo"), Path.of("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"));
        return choose(measured, t, threads);
    }

    /** The table's peak {@code t} (see {@link #cpuTable}), or the measured GEMM rate where that is higher or no table applies. */
    public static Peak choose(double measured, double[] t, int threads) {
        if (Double.isNaN(t[0]) || measured > t[0])
            return new Peak(measured, String.format(Locale.ROOT, "measured sgemm 1024^3 (%s)",
                    Double.isNaN(t[0]) ? "no clock or SIMD width known" : "above the table's " + fmt(t[0])));
        return new Peak(t[0], String.format(Locale.ROOT, "table: %d threads x %.2f GHz x %d FP32 FLOP/cycle; measured sgemm %s",
                threads, t[1] / 1e9, (int) t[2], fmt(measured)));
    }

    /**
     * {peak FLOP/s, clock Hz, FLOPs per cycle per core} from the CPU's SIMD flags and clock; NaN peak when either is
     * unknown.
     */
    public static double[] cpuTable(int threads, Path cpuinfo, Path maxFreqKhz) {
        String info;
        try {
            info = Files.readString(cpuinfo);
        } catch (IOException e) {
            return new double[]{Double.NaN, Double.NaN, Double.NaN};
        }
        String flags = info.lines().filter(l -> l.startsWith("flags")).findFirst().orElse("");
        int perCycle = flags.contains(" avx512f") ? 64 : flags.contains(" avx2") && flags.contains(" fma") ? 32 : 8;
        double hz = Double.NaN;
        try {
            if (Files.isRegularFile(maxFreqKhz)) hz = Double.parseDouble(Files.readString(maxFreqKhz).trim()) * 1e3;
        } catch (IOException | NumberFormatException ignored) {
            // fall through to /proc/cpuinfo
        }
        if (Double.isNaN(hz)) hz = info.lines().filter(l -> l.startsWith("cpu MHz")).mapToDouble(l -> {
            try { return Double.parseDouble(l.substring(l.indexOf(':') + 1).trim()) * 1e6; } catch (NumberFormatException e) { return Double.NaN; }
        }).filter(v -> !Double.isNaN(v)).max().orElse(Double.NaN);
        return new double[]{threads * hz * perCycle, hz, perCycle};
    }

    /** Dense bf16 tensor-core peak FLOP/s of a known device name (datasheet, SXM boards), or NaN. */
    public static double gpuTable(String deviceName) {
        String n = deviceName.toUpperCase(Locale.ROOT);
        if (n.contains("H200") || n.contains("H100") && !n.contains("PCIE")) return 989e12;
        if (n.contains("H100")) return 756e12;                                  // H100 PCIe
        if (n.contains("A100")) return 312e12;
        if (n.contains("L40S")) return 362e12;
        if (n.contains("B200")) return 2250e12;
        return Double.NaN;
    }

    /** GPU peak: the datasheet table for known devices, else the measured cuBLAS bf16 GEMM 8192^3. */
    public static Peak gpu(Backend be, String deviceName) {
        double t = gpuTable(deviceName);
        if (!Double.isNaN(t)) return new Peak(t, "table: " + deviceName + " dense bf16 datasheet");
        return new Peak(gemm(be, 8192, 3), "measured cuBLAS bf16 GEMM 8192^3 (" + deviceName + " not in the table)");
    }

    private static String fmt(double flops) { return String.format(Locale.ROOT, "%.1f GFLOP/s", flops / 1e9); }

    /** FLOP/s of the best of {@code reps} GEMMs of size n (2 n^3 FLOPs each), after one warm-up call. */
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
