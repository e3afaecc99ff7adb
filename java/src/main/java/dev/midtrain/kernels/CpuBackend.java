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

    @Override public void copyHostToDevice(long dst, long hostSrc, long bytes) { copyBytes(dst, hostSrc, bytes); }
    @Override public void copyDeviceToHost(long hostDst, long src, long bytes) { copyBytes(hostDst, src, bytes); }
    @Override public void synchronize() {}

    @Override
    public synchronized void close() {
        for (Pointer p : allocations.values()) Pointer.free(p);
        allocations.clear();
    }

    /**
     * Row counts up to which a plain product {@code A[M,K] @ B[N,K]^T} (alpha 1, beta 0: a linear layer's forward)
     * runs on the {@code linear_forward} kernel instead of OpenBLAS: KV-cache decoding (M = sequences decoded
     * together), where sgemm's packing and its thread-pool hand-off cost more than the product (30m shapes, 2 threads,
     * loaded host: 1x2752x512 in 0.96 ms instead of 9.1 ms, 16x2752x512 in 2.2 ms instead of 6.1 ms; with one thread
     * OpenBLAS catches up near M = 32). Training products have M = tokens per micro-batch, far above.
     */
    static final int SMALL_M = 16;

    @Override
    public void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha, long A, long B, float beta, long C, boolean cF32) {
        if (M <= SMALL_M && !transA && transB && alpha == 1f && beta == 0f) {
            linearForward(C, A, B, M, N, K);
            return;
        }
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
