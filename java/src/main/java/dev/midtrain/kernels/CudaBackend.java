package dev.midtrain.kernels;

import org.bytedeco.cuda.cublas.cublasContext;
import org.bytedeco.cuda.cudart.CUevent_st;
import org.bytedeco.cuda.cudart.CUstream_st;
import org.bytedeco.cuda.cudart.cudaDeviceProp;
import org.bytedeco.cuda.global.cublas;
import org.bytedeco.cuda.global.cudart;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;

import java.util.HashSet;
import java.util.Set;

import static dev.midtrain.kernels.Backend.check;
import static dev.midtrain.kernels.CudaNative.*;
import static org.bytedeco.cuda.global.cublas.*;
import static org.bytedeco.cuda.global.cudart.*;

/**
 * The CUDA backend: bf16 compute tensors (floatX = __nv_bfloat16), fp32 master weights/gradients/statistics, device
 * memory, cuBLAS GEMMs and the kernels of libmidtrain_cuda.so, all on one non-blocking stream owned by this backend.
 *
 * <p>Kernel and GEMM calls only enqueue work; host copies and {@link #synchronize()} wait for the stream. Open it
 * with {@link #open(int)}, which turns every missing piece (driver, device, cuBLAS, our library) into a one-line
 * {@link KernelException}; there is no fallback to the CPU.
 */
public final class CudaBackend extends CudaKernels implements Backend {
    /** cuBLAS workspace (NVIDIA recommends 32 MiB on Hopper). */
    private static final long CUBLAS_WORKSPACE_BYTES = 32L << 20;

    private final int device;
    private final String deviceName;
    private final CUstream_st stream;
    private final long streamAddress;
    private final cublasContext cublasHandle;
    private final long workspace;
    private final FloatPointer alpha = new FloatPointer(1);
    private final FloatPointer beta = new FloatPointer(1);
    private final Set<Long> allocations = new HashSet<>();
    private boolean closed;

    /**
     * Opens device {@code device}: checks the CUDA runtime, the device count, cuBLAS and libmidtrain_cuda.so, in that
     * order, and fails with a one-line message naming the first missing piece.
     */
    public static CudaBackend open(int device) {
        try {
            org.bytedeco.javacpp.Loader.load(cudart.class);
        } catch (Throwable t) {
            throw new KernelException("--backend cuda: the CUDA runtime could not be loaded (libcuda.so.1 from the driver"
                    + " and libcudart.so.13 are needed): " + oneLine(t));
        }
        int[] count = {0};
        int rc = cudaGetDeviceCount(count);
        if (rc != cudaSuccess || count[0] <= 0)
            throw new KernelException("--backend cuda: no CUDA device available (cudaGetDeviceCount: "
                    + (rc != cudaSuccess ? errorName(rc) : "0 devices") + ")");
        if (device < 0 || device >= count[0])
            throw new KernelException("--backend cuda: device " + device + " does not exist (" + count[0] + " visible)");
        try {
            org.bytedeco.javacpp.Loader.load(cublas.class);
        } catch (Throwable t) {
            throw new KernelException("--backend cuda: libcublas.so.13 not found: set LD_LIBRARY_PATH to the nvidia wheels'"
                    + " lib dirs (site-packages/nvidia/cu13/lib), see benchmarks/gpu/README.md (" + oneLine(t) + ")");
        }
        try {
            if (mt_cuda_backend_id() != 1 || mt_cuda_floatx_bytes() != 2)
                throw new KernelException("--backend cuda: libmidtrain_cuda reports an unexpected ABI identity");
        } catch (KernelException e) {
            throw e;
        } catch (Throwable t) {
            throw new KernelException("--backend cuda: libmidtrain_cuda.so could not be loaded (build with the cuda Maven"
                    + " profile on a machine with nvcc): " + oneLine(t));
        }
        return new CudaBackend(device);
    }

    private CudaBackend(int device) {
        this.device = device;
        ck(cudaSetDevice(device), "cudaSetDevice(" + device + ")");
        try (cudaDeviceProp prop = new cudaDeviceProp()) {
            ck(cudaGetDeviceProperties(prop, device), "cudaGetDeviceProperties");
            this.deviceName = prop.name().getString().trim();
        }
        stream = new CUstream_st();
        ck(cudaStreamCreateWithFlags(stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
        streamAddress = stream.address();
        cublasHandle = new cublasContext();
        ckBlas(cublasCreate_v2(cublasHandle), "cublasCreate");
        ckBlas(cublasSetStream_v2(cublasHandle, stream), "cublasSetStream");
        workspace = alloc(CUBLAS_WORKSPACE_BYTES);
        ckBlas(cublasSetWorkspace_v2(cublasHandle, raw(workspace), CUBLAS_WORKSPACE_BYTES), "cublasSetWorkspace");
    }

    /**
     * Which attention kernels attention_forward/backward run for this model on the engine's (256-byte aligned)
     * tensors, as the kernels decide it (the header's {@code attention_path}, which also reads MT_CUDA_ATTN):
     * "tensor-core", or "simple" with the reason. Needs libmidtrain_cuda loaded (after a successful {@link #open}).
     */
    public static String attentionPath(int heads, int kvHeads, int headDim) {
        int path = mt_cuda_attention_path(heads, kvHeads, headDim, 1);
        if (path == KernelAbi.ATTN_PATH_TENSOR_CORE) return "tensor-core";
        if (path == KernelAbi.ATTN_PATH_SIMPLE)
            return "simple (" + ("simple".equals(System.getenv("MT_CUDA_ATTN")) ? "MT_CUDA_ATTN=simple" : "head dim " + headDim) + ")";
        throw new KernelException("attention_path", path);
    }

    @Override public String name() { return "cuda"; }

    @Override public String describe() {
        try (org.bytedeco.javacpp.BytePointer buf = new org.bytedeco.javacpp.BytePointer(512)) {
            check(mt_cuda_describe(buf.address(), 512), "describe");
            return Backend.cString(buf) + "; attention " + attentionPath(32, 8, 128) + " at 32 heads, 8 KV heads, head dim 128";
        }
    }
    @Override public int floatxBytes() { return 2; }

    /** The device's name as the driver reports it, e.g. "NVIDIA H100 80GB HBM3". */
    public String deviceName() { return deviceName; }

    public int device() { return device; }

    /** Total memory of this backend's device, in bytes (cudaMemGetInfo); the trainer's default fit-check budget. */
    @Override
    public long deviceMemoryBytes() {
        try (org.bytedeco.javacpp.SizeTPointer free = new org.bytedeco.javacpp.SizeTPointer(1);
             org.bytedeco.javacpp.SizeTPointer total = new org.bytedeco.javacpp.SizeTPointer(1)) {
            int rc = cudart.cudaMemGetInfo(free, total);
            if (rc != 0) throw new KernelException("cudaMemGetInfo", rc);
            return total.get();
        }
    }

    /** This backend's stream (for NCCL calls that must be ordered with the kernels). */
    public CUstream_st stream() { return stream; }

    public long streamAddress() { return streamAddress; }

    // ---------------------------------------------------------------------------------------------------- memory

    @Override
    public synchronized long alloc(long bytes) {
        if (bytes < 0) throw new IllegalArgumentException("alloc: negative size " + bytes);
        Pointer p = new Pointer();
        int rc = cudaMalloc(p, Math.max(256, bytes));                 // cudaMalloc returns >= 256-byte aligned memory
        if (rc != cudaSuccess) {
            cudaGetLastError();
            throw new KernelException("cudaMalloc(" + bytes + " bytes) failed: " + errorName(rc));
        }
        allocations.add(p.address());
        return p.address();
    }

    @Override
    public synchronized void free(long ptr) {
        if (!allocations.remove(ptr)) throw new IllegalArgumentException("free of an address this backend did not allocate: " + ptr);
        ck(cudaFree(raw(ptr)), "cudaFree");
    }

    @Override
    public void copyHostToDevice(long dst, long hostSrc, long bytes) {
        if (bytes == 0) return;
        ck(cudaMemcpyAsync(raw(dst), raw(hostSrc), bytes, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync(H2D)");
        synchronize();                                                // the host buffer may be freed right after
    }

    @Override
    public void copyDeviceToHost(long hostDst, long src, long bytes) {
        if (bytes == 0) return;
        ck(cudaMemcpyAsync(raw(hostDst), raw(src), bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync(D2H)");
        synchronize();
    }

    @Override
    public void synchronize() {
        ck(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        cudaStreamSynchronize(stream);
        cublasDestroy_v2(cublasHandle);
        for (long p : allocations) cudaFree(raw(p));
        allocations.clear();
        cudaStreamDestroy(stream);
        alpha.close();
        beta.close();
    }

    /** Milliseconds of device time that {@code work} enqueues on this stream (CUDA events around it; synchronises). */
    public float elapsedMs(Runnable work) {
        CUevent_st start = new CUevent_st(), stop = new CUevent_st();
        ck(cudaEventCreate(start), "cudaEventCreate");
        ck(cudaEventCreate(stop), "cudaEventCreate");
        try {
            ck(cudaEventRecord(start, stream), "cudaEventRecord");
            work.run();
            ck(cudaEventRecord(stop, stream), "cudaEventRecord");
            ck(cudaEventSynchronize(stop), "cudaEventSynchronize");
            float[] ms = {0f};
            ck(cudaEventElapsedTime(ms, start, stop), "cudaEventElapsedTime");
            return ms[0];
        } finally {
            cudaEventDestroy(start);
            cudaEventDestroy(stop);
        }
    }

    // ------------------------------------------------------------------------------------------------------ GEMM

    /**
     * Row-major C[M,N] = alpha op(A) op(B) + beta C through column-major cuBLAS: C^T = op(B)^T op(A)^T, i.e. cuBLAS
     * computes an N x M product with B as its first operand. bf16 A/B, C bf16 or fp32, fp32 compute.
     */
    /**
     * Decoding shapes (M up to {@code MT_LINEAR_DOT_MAX_M} rows) run on {@code linear_forward}, whose out[m,n] does
     * not depend on M: a sequence decoded in a batch gets the logits it gets alone, as on the CPU. Larger M on cuBLAS.
     */
    @Override
    public void linear(long out, long inp, long weight, int M, int N, int K) {
        if (M <= KernelAbi.LINEAR_DOT_MAX_M) linearForward(out, inp, weight, M, N, K);
        else gemm(false, true, M, N, K, 1f, inp, weight, 0f, out, false);
    }

    @Override
    public void gemm(boolean transA, boolean transB, int M, int N, int K, float alphaValue, long A, long B, float betaValue,
                     long C, boolean cF32) {
        if (M == 0 || N == 0) return;
        alpha.put(0, alphaValue);
        beta.put(0, betaValue);
        int lda = transA ? M : K, ldb = transB ? K : N;
        ckBlas(cublasGemmEx(cublasHandle, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N,
                N, M, K, alpha, raw(B), CUDA_R_16BF, ldb, raw(A), CUDA_R_16BF, lda,
                beta, raw(C), cF32 ? CUDA_R_32F : CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT), "cublasGemmEx");
    }

    // ------------------------------------------------------------------------------------------------ kernels

    @Override protected long kernelStream() { return streamAddress; }

    // ------------------------------------------------------------------------------------------------ helpers

    /** A Pointer view of a raw address (no ownership), for the presets' Pointer-typed parameters. */
    public static Pointer raw(long address) {
        return new RawPointer(address);
    }

    private static final class RawPointer extends Pointer {
        RawPointer(long address) { this.address = address; }
    }

    private static void ck(int rc, String what) {
        if (rc != cudaSuccess) {
            cudaGetLastError();
            throw new KernelException(what + " failed: " + errorName(rc));
        }
    }

    private static void ckBlas(int rc, String what) {
        if (rc != CUBLAS_STATUS_SUCCESS) {
            BytePointer p = cublasGetStatusString(rc);
            String s = p == null || p.isNull() ? "status " + rc : p.getString();
            throw new KernelException(what + " failed: " + s + " (" + rc + ")");
        }
    }

    static String errorName(int rc) {
        try {
            BytePointer n = cudaGetErrorName(rc), s = cudaGetErrorString(rc);
            return (n == null ? "error " + rc : n.getString()) + (s == null ? "" : " (" + s.getString() + ")");
        } catch (Throwable t) {
            return "error " + rc;
        }
    }

    private static String oneLine(Throwable t) {
        String m = t.getClass().getSimpleName() + ": " + t.getMessage();
        int nl = m.indexOf('\n');
        return nl < 0 ? m : m.substring(0, nl);
    }
}
