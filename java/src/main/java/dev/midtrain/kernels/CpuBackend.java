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
public final class CpuBackend implements Backend {
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

    @Override public void copyHostToDevice(long dst, long hostSrc, long bytes) { copyBytes(dst, hostSrc, bytes); }
    @Override public void copyDeviceToHost(long hostDst, long src, long bytes) { copyBytes(hostDst, src, bytes); }
    @Override public void synchronize() {}

    @Override
    public synchronized void close() {
        for (Pointer p : allocations.values()) Pointer.free(p);
        allocations.clear();
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

    @Override public void fillF32(long x, float value, long n) { check(mt_cpu_fill_f32(x, value, n, NULL_STREAM), "fill_f32"); }
    @Override public void fillX(long x, float value, long n) { check(mt_cpu_fill_x(x, value, n, NULL_STREAM), "fill_x"); }
    @Override public void copyBytes(long dst, long src, long bytes) { check(mt_cpu_copy_bytes(dst, src, bytes, NULL_STREAM), "copy_bytes"); }
    @Override public void castF32ToX(long out, long inp, long n) { check(mt_cpu_cast_f32_to_x(out, inp, n, NULL_STREAM), "cast_f32_to_x"); }
    @Override public void castXToF32(long out, long inp, long n) { check(mt_cpu_cast_x_to_f32(out, inp, n, NULL_STREAM), "cast_x_to_f32"); }

    @Override public void embeddingForward(long out, long tokens, long wte, int N, int C, int V) {
        check(mt_cpu_embedding_forward(out, tokens, wte, N, C, V, NULL_STREAM), "embedding_forward");
    }
    @Override public void embeddingBackward(long dwte, long tokens, long dout, int N, int C, int V) {
        check(mt_cpu_embedding_backward(dwte, tokens, dout, N, C, V, NULL_STREAM), "embedding_backward");
    }
    @Override public void rmsnormForward(long out, long rstd, long inp, long weight, int N, int C, float eps) {
        check(mt_cpu_rmsnorm_forward(out, rstd, inp, weight, N, C, eps, NULL_STREAM), "rmsnorm_forward");
    }
    @Override public void rmsnormBackward(long dinp, long dweight, long scratch, long dout, long inp, long weight, long rstd, int N, int C) {
        check(mt_cpu_rmsnorm_backward(dinp, dweight, scratch, dout, inp, weight, rstd, N, C, NULL_STREAM), "rmsnorm_backward");
    }
    @Override public void ropeForward(long out, long inp, long cos, long sin, int B, int T, int NH, int NKV, int HD) {
        check(mt_cpu_rope_forward(out, inp, cos, sin, B, T, NH, NKV, HD, NULL_STREAM), "rope_forward");
    }
    @Override public void ropeBackward(long dinp, long dout, long cos, long sin, int B, int T, int NH, int NKV, int HD) {
        check(mt_cpu_rope_backward(dinp, dout, cos, sin, B, T, NH, NKV, HD, NULL_STREAM), "rope_backward");
    }
    @Override public void attentionForward(long out, long lse, long qkv, int B, int T, int NH, int NKV, int HD) {
        check(mt_cpu_attention_forward(out, lse, qkv, B, T, NH, NKV, HD, NULL_STREAM), "attention_forward");
    }
    @Override public void attentionBackward(long dqkv, long scratch, long dout, long qkv, long out, long lse, int B, int T, int NH, int NKV, int HD) {
        check(mt_cpu_attention_backward(dqkv, scratch, dout, qkv, out, lse, B, T, NH, NKV, HD, NULL_STREAM), "attention_backward");
    }
    @Override public void kvcacheAttentionForward(long out, long kv, long qkv, long cos, long sin, long pos, int B, int Tq, int Tmax, int NH, int NKV, int HD) {
        check(mt_cpu_kvcache_attention_forward(out, kv, qkv, cos, sin, pos, B, Tq, Tmax, NH, NKV, HD, NULL_STREAM), "kvcache_attention_forward");
    }
    @Override public void swigluForward(long out, long gateup, int N, int F) {
        check(mt_cpu_swiglu_forward(out, gateup, N, F, NULL_STREAM), "swiglu_forward");
    }
    @Override public void swigluBackward(long dgateup, long dout, long gateup, int N, int F) {
        check(mt_cpu_swiglu_backward(dgateup, dout, gateup, N, F, NULL_STREAM), "swiglu_backward");
    }
    @Override public void add(long out, long a, long b, long n) { check(mt_cpu_add(out, a, b, n, NULL_STREAM), "add"); }
    @Override public void crossentropyForward(long lse, long targetLogit, long logits, long targets, int N, int V, int vocabStart, int ignoreIndex) {
        check(mt_cpu_crossentropy_forward(lse, targetLogit, logits, targets, N, V, vocabStart, ignoreIndex, NULL_STREAM), "crossentropy_forward");
    }
    @Override public void crossentropyBackward(long dlogits, long losses, long logits, long lse, long targetLogit, long targets, float dloss,
                                               int N, int V, int vocabStart, int ignoreIndex) {
        check(mt_cpu_crossentropy_backward(dlogits, losses, logits, lse, targetLogit, targets, dloss, N, V, vocabStart, ignoreIndex, NULL_STREAM),
                "crossentropy_backward");
    }
    @Override public void lseCombine(long lse, long lseParts, int P, int N) { check(mt_cpu_lse_combine(lse, lseParts, P, N, NULL_STREAM), "lse_combine"); }
    @Override public void adamwUpdate(long param, long paramX, long grad, long m, long v, long n, float lr, float beta1, float beta2, float eps,
                                      float weightDecay, float biasCorr1, float biasCorr2, float gradScale) {
        check(mt_cpu_adamw_update(param, paramX, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, biasCorr1, biasCorr2, gradScale, NULL_STREAM),
                "adamw_update");
    }
    @Override public void globalNormSquared(long out, long scratch, long x, long n) {
        check(mt_cpu_global_norm_squared(out, scratch, x, n, NULL_STREAM), "global_norm_squared");
    }
    @Override public void scaleF32(long x, float s, long n) { check(mt_cpu_scale_f32(x, s, n, NULL_STREAM), "scale_f32"); }
}
