package dev.midtrain.kernels;

import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.openblas.global.openblas;

import java.util.HashMap;
import java.util.Map;

import static dev.midtrain.kernels.Backend.check;
import static dev.midtrain.kernels.CpuNative.*;

/**
 * The CPU backend: fp32 everywhere (floatX = float), host memory, OpenBLAS sgemm through the org.bytedeco preset,
 * and the C/OpenMP kernels of libmidtrain_cpu.so. Synchronous: every call has finished when it returns.
 */
public final class CpuBackend extends CpuKernels implements Backend {
    private static final long ALIGN = 256;
    private static final long NULL_STREAM = 0L;
    /** aligned address -> the Pointer that owns the allocation */
    private final Map<Long, Pointer> allocations = new HashMap<>();

    public CpuBackend() {
        Loader.ensureLoaded();
    }

    /** Loads the native libraries once (the JavaCPP static initialisers) and checks the ABI identity. */
    static final class Loader {
        private static volatile boolean loaded;

        static void ensureLoaded() {
            if (loaded) return;
            synchronized (Loader.class) {
                if (loaded) return;
                org.bytedeco.javacpp.Loader.load(openblas.class);
                if (mt_cpu_backend_id() != 0 || mt_cpu_floatx_bytes() != 4)
                    throw new KernelException("libmidtrain_cpu reports an unexpected ABI identity");
                loaded = true;
            }
        }
    }

    /**
     * Limits the OpenBLAS pool (process-wide) and the OpenMP team of the calling thread's kernels: call it on every
     * thread that runs kernels (each tensor-parallel rank thread), since OpenMP's setting is per thread.
     */
    public static void setThreads(int threads) {
        Loader.ensureLoaded();
        openblas.blas_set_num_threads(threads);
        check(mt_cpu_set_num_threads(threads), "set_num_threads");
    }

    @Override public String name() { return "cpu"; }

    @Override public String describe() { return describeCpu(); }

    /**
     * The processor (model name from /proc/cpuinfo, cores, AVX2/AVX-512) and the kernel ABI's description of the
     * CPU implementation (OpenBLAS version, the core type whose sgemm kernels it runs, threads), with
     * OPENBLAS_CORETYPE when it is set. One line, for test logs and benchmark records.
     */
    public static String describeCpu() {
        Loader.ensureLoaded();
        String model = "unknown processor", flags = "";
        try {
            for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("model name") && model.startsWith("unknown")) model = line.substring(line.indexOf(':') + 1).trim();
                if (line.startsWith("flags") && flags.isEmpty()) flags = " " + line.substring(line.indexOf(':') + 1).trim() + " ";
            }
        } catch (java.io.IOException | RuntimeException e) {
            model = "unknown processor (/proc/cpuinfo unreadable)";
        }
        String isa = flags.contains(" avx512f ") ? "AVX-512" : flags.contains(" avx2 ") ? "AVX2" : flags.isEmpty() ? "?" : "no AVX2";
        try (org.bytedeco.javacpp.BytePointer buf = new org.bytedeco.javacpp.BytePointer(512)) {
            check(mt_cpu_describe(buf.address(), 512), "describe");
            String env = System.getenv("OPENBLAS_CORETYPE");
            return model + " (" + Runtime.getRuntime().availableProcessors() + " cores, " + isa + "); " + Backend.cString(buf)
                    + (env == null || env.isEmpty() ? "" : " (OPENBLAS_CORETYPE=" + env + ")");
        }
    }
    @Override public int floatxBytes() { return 4; }

    @Override
    public synchronized long alloc(long bytes) {
        if (bytes < 0) throw new IllegalArgumentException("alloc: negative size " + bytes);
        Pointer p = Pointer.malloc(Math.max(1, bytes) + ALIGN);
        if (p == null || p.isNull()) throw new OutOfMemoryError("host alloc of " + bytes + " bytes failed");
        long aligned = (p.address() + ALIGN - 1) & ~(ALIGN - 1);
        allocations.put(aligned, p);
        return aligned;
    }

    @Override
    public synchronized void free(long ptr) {
        Pointer p = allocations.remove(ptr);
        if (p == null) throw new IllegalArgumentException("free of an address this backend did not allocate: " + ptr);
        Pointer.free(p);
    }

    @Override protected long kernelStream() { return NULL_STREAM; }

    @Override public long deviceMemoryBytes() { return 0; }

    @Override public void copyHostToDevice(long dst, long hostSrc, long bytes) { copyBytes(dst, hostSrc, bytes); }
    @Override public void copyDeviceToHost(long hostDst, long src, long bytes) { copyBytes(hostDst, src, bytes); }
    @Override public void synchronize() {}

    @Override
    public synchronized void close() {
        for (Pointer p : allocations.values()) Pointer.free(p);
        allocations.clear();
    }

    /**
     * Row counts up to which {@link #linear} runs on the {@code linear_forward} kernel (OpenMP, dynamic schedule)
     * rather than OpenBLAS: decoding (M = sequences decoded together) and prefill chunks. OpenBLAS packs even a
     * 1-row product and hands it to its thread pool, whose spinning hand-offs collapse when the cores are shared
     * (30m shapes, 2 threads, load ~4 on 2 cores: 1x2752x512 at 0.2 GFLOP/s vs 3.0, 128x512x512 at 4.2 vs 49;
     * single-threaded it does 88). Above this (scoring batches of ~2000 rows) OpenBLAS's AVX-512 kernels win.
     * Training never calls {@link #linear}: its products stay on OpenBLAS.
     */
    static final int LINEAR_MAX_M = 512;

    @Override
    public void linear(long out, long inp, long weight, int M, int N, int K) {
        if (M <= LINEAR_MAX_M) linearForward(out, inp, weight, M, N, K);
        else gemm(false, true, M, N, K, 1f, inp, weight, 0f, out, false);
    }

    @Override
    public void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha, long A, long B, float beta, long C, boolean cF32) {
        int lda = transA ? M : K, ldb = transB ? K : N;
        openblas.cblas_sgemm(openblas.CblasRowMajor, transA ? openblas.CblasTrans : openblas.CblasNoTrans,
                transB ? openblas.CblasTrans : openblas.CblasNoTrans, M, N, K, alpha,
                at(A), lda, at(B), ldb, beta, at(C), N);
    }

    /** A FloatPointer view of a raw address (no ownership). */
    private static FloatPointer at(long address) {
        return new FloatPointer(new RawPointer(address));
    }

    private static final class RawPointer extends Pointer {
        RawPointer(long address) { this.address = address; }
    }
}
