package dev.midtrain.kernels;

import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.IntPointer;

/**
 * One device: its memory, its stream, its GEMM handle and the kernel ABI (native/include/midtrain_kernels.h).
 *
 * <p>Two implementations: {@link CpuBackend} (fp32, OpenBLAS, synchronous) and {@code CudaBackend} (bf16 compute,
 * cuBLAS, one stream). All tensors are raw addresses in this backend's memory space; the kernel methods
 * ({@link Kernels}, generated from native/include/midtrain_kernels.h with {@code CpuKernels}/{@code CudaKernels})
 * take the C arguments in the same order, minus the stream, which the backend owns. Contracts (shapes, "=" or "+=",
 * determinism) are the header's. A non-zero kernel status becomes a {@link KernelException} naming the kernel.
 *
 * <p>A backend is used by one thread at a time (one per tensor-parallel rank).
 */
public interface Backend extends Kernels, AutoCloseable {

    /**
     * Opens a backend by its {@link #name()}, the one way the engine opens one (training ranks, inference, the
     * benchmarks): "cpu" (fp32, OpenBLAS; {@code device} is ignored) or "cuda" (CUDA device {@code device}). A CUDA
     * backend that cannot open (no GPU, runtime, cuBLAS or kernel library) is a one-line {@link KernelException},
     * never a fallback to the CPU.
     */
    static Backend open(String name, int device) {
        return switch (name) {
            case "cpu" -> new CpuBackend();
            case "cuda" -> CudaBackend.open(device);
            default -> throw new KernelException("--backend: must be cpu or cuda, got " + name);
        };
    }

    /** "cpu" or "cuda". */
    String name();

    /** Memory of the backend's own device in bytes (CUDA: the GPU's), 0 on the CPU, whose memory is the host's. */
    long deviceMemoryBytes();

    /** Bytes of one compute element (floatX): 4 on CPU, 2 on CUDA. */
    int floatxBytes();

    /**
     * One line naming what computes here (the kernel ABI's {@code describe}): on CPU the OpenBLAS kernel set chosen
     * for this processor and the thread counts, on CUDA the device. Logged by tests and benchmarks, since the last
     * bits of a result depend on it.
     */
    String describe();

    /** The NUL-terminated string at the start of {@code buf} (BytePointer.getString reads to its limit instead). */
    static String cString(org.bytedeco.javacpp.BytePointer buf) {
        byte[] b = new byte[(int) buf.capacity()];
        buf.get(b);
        int n = 0;
        while (n < b.length && b[n] != 0) n++;
        return new String(b, 0, n, java.nio.charset.StandardCharsets.UTF_8);
    }

    // ------------------------------------------------------------------------------------------------ memory

    /** Allocates {@code bytes} in this backend's memory, 256-byte aligned, contents undefined. */
    long alloc(long bytes);

    void free(long ptr);

    void copyHostToDevice(long dst, long hostSrc, long bytes);

    void copyDeviceToHost(long hostDst, long src, long bytes);

    /** Waits for all work queued on this backend's stream (no-op on CPU). */
    void synchronize();

    @Override
    void close();

    default void upload(long dst, float[] src) {
        try (FloatPointer h = new FloatPointer(src)) { copyHostToDevice(dst, h.address(), 4L * src.length); }
    }

    default void upload(long dst, int[] src) {
        try (IntPointer h = new IntPointer(src)) { copyHostToDevice(dst, h.address(), 4L * src.length); }
    }

    default void download(float[] dst, long src) {
        try (FloatPointer h = new FloatPointer(dst.length)) {
            copyDeviceToHost(h.address(), src, 4L * dst.length);
            h.get(dst);
        }
    }

    /** Uploads fp32 values into a floatX tensor (converting on the device). */
    default void uploadX(long dstX, float[] src) {
        long tmp = alloc(4L * src.length);
        try { upload(tmp, src); castF32ToX(dstX, tmp, src.length); synchronize(); } finally { free(tmp); }
    }

    /** Downloads a floatX tensor as fp32 values. */
    default void downloadX(float[] dst, long srcX) {
        long tmp = alloc(4L * dst.length);
        try { castXToF32(tmp, srcX, dst.length); download(dst, tmp); } finally { free(tmp); }
    }

    // -------------------------------------------------------------------------------------------------- GEMM

    /**
     * Row-major C[M,N] = alpha * op(A) * op(B) + beta * C, with op(A) [M,K] and op(B) [K,N].
     * A and B are floatX; C is fp32 when {@code cF32} (weight gradients, accumulated with beta = 1) else floatX.
     * Accumulation is fp32. Deterministic for fixed sizes.
     */
    void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha, long A, long B, float beta, long C, boolean cF32);

    /**
     * A linear layer's forward pass in inference: out[M,N] = inp[M,K] @ weight[N,K]^T (floatX, overwritten). The
     * same product as {@code gemm(false, true, M, N, K, 1, inp, weight, 0, out, false)}; each backend sends the shapes
     * of decoding (and, on the CPU, prefill) to the {@code linear_forward} kernel and the rest to its BLAS.
     */
    void linear(long out, long inp, long weight, int M, int N, int K);

    // ------------------------------------------------------------------------------------------- kernels
    // Every kernel of the header is a method of {@link Kernels}, generated from it at build time.

    // Scratch sizes, status codes and limits: KernelAbi, generated from the header's macros.

    static void check(int status, String kernel) {
        if (status != 0) throw new KernelException(kernel, status);
    }
}
