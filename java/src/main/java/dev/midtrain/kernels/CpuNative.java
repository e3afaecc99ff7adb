package dev.midtrain.kernels;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.NoException;
import org.bytedeco.javacpp.annotation.Platform;

/**
 * JavaCPP binding of libmidtrain_cpu.so, the C/OpenMP implementation of native/include/midtrain_kernels.h.
 * Every pointer is a raw host address. Contracts (shapes, = or +=, determinism) are documented in the header;
 * {@link CpuBackend} is the only caller. Method names are the C symbols.
 */
@Platform(define = "MT_BACKEND_CPU", include = "midtrain_kernels.h", link = "midtrain_cpu")
@NoException
public final class CpuNative {
    static { Loader.load(); }
    private CpuNative() {}

    public static native int mt_cpu_backend_id();
    public static native int mt_cpu_floatx_bytes();
    public static native int mt_cpu_set_num_threads(int n);

    public static native int mt_cpu_fill_f32(@Cast("float*") long x, float value, long n, @Cast("void*") long stream);
    public static native int mt_cpu_fill_x(@Cast("floatX*") long x, float value, long n, @Cast("void*") long stream);
    public static native int mt_cpu_copy_bytes(@Cast("void*") long dst, @Cast("const void*") long src, long bytes, @Cast("void*") long stream);
    public static native int mt_cpu_cast_f32_to_x(@Cast("floatX*") long out, @Cast("const float*") long inp, long n, @Cast("void*") long stream);
    public static native int mt_cpu_cast_x_to_f32(@Cast("float*") long out, @Cast("const floatX*") long inp, long n, @Cast("void*") long stream);

    public static native int mt_cpu_embedding_forward(@Cast("floatX*") long out, @Cast("const int32_t*") long tokens, @Cast("const floatX*") long wte,
                                                      int N, int C, int V, @Cast("void*") long stream);
    public static native int mt_cpu_embedding_backward(@Cast("float*") long dwte, @Cast("const int32_t*") long tokens, @Cast("const floatX*") long dout,
                                                       int N, int C, int V, @Cast("void*") long stream);

    public static native int mt_cpu_rmsnorm_forward(@Cast("floatX*") long out, @Cast("float*") long rstd, @Cast("const floatX*") long inp,
                                                    @Cast("const floatX*") long weight, int N, int C, float eps, @Cast("void*") long stream);
    public static native int mt_cpu_rmsnorm_backward(@Cast("floatX*") long dinp, @Cast("float*") long dweight, @Cast("float*") long scratch,
                                                     @Cast("const floatX*") long dout, @Cast("const floatX*") long inp, @Cast("const floatX*") long weight,
                                                     @Cast("const float*") long rstd, int N, int C, @Cast("void*") long stream);

    public static native int mt_cpu_rope_forward(@Cast("floatX*") long out, @Cast("const floatX*") long inp, @Cast("const float*") long cos,
                                                 @Cast("const float*") long sin, int B, int T, int NH, int NKV, int HD, @Cast("void*") long stream);
    public static native int mt_cpu_rope_backward(@Cast("floatX*") long dinp, @Cast("const floatX*") long dout, @Cast("const float*") long cos,
                                                  @Cast("const float*") long sin, int B, int T, int NH, int NKV, int HD, @Cast("void*") long stream);

    public static native int mt_cpu_attention_forward(@Cast("floatX*") long out, @Cast("float*") long lse, @Cast("const floatX*") long qkv,
                                                      int B, int T, int NH, int NKV, int HD, @Cast("void*") long stream);
    public static native int mt_cpu_attention_backward(@Cast("floatX*") long dqkv, @Cast("float*") long scratch, @Cast("const floatX*") long dout,
                                                       @Cast("const floatX*") long qkv, @Cast("const floatX*") long out, @Cast("const float*") long lse,
                                                       int B, int T, int NH, int NKV, int HD, @Cast("void*") long stream);
    public static native int mt_cpu_kvcache_attention_forward(@Cast("floatX*") long out, @Cast("floatX*") long kv, @Cast("floatX*") long qkv,
                                                              @Cast("const float*") long cos, @Cast("const float*") long sin,
                                                              @Cast("const int32_t*") long pos, int B, int Tq, int Tmax, int NH, int NKV, int HD,
                                                              @Cast("void*") long stream);

    public static native int mt_cpu_swiglu_forward(@Cast("floatX*") long out, @Cast("const floatX*") long gateup, int N, int F, @Cast("void*") long stream);
    public static native int mt_cpu_swiglu_backward(@Cast("floatX*") long dgateup, @Cast("const floatX*") long dout, @Cast("const floatX*") long gateup,
                                                    int N, int F, @Cast("void*") long stream);

    public static native int mt_cpu_add(@Cast("floatX*") long out, @Cast("const floatX*") long a, @Cast("const floatX*") long b, long n, @Cast("void*") long stream);

    public static native int mt_cpu_crossentropy_forward(@Cast("float*") long lse, @Cast("float*") long targetLogit, @Cast("const floatX*") long logits,
                                                         @Cast("const int32_t*") long targets, int N, int V, int vocabStart, int ignoreIndex,
                                                         @Cast("void*") long stream);
    public static native int mt_cpu_crossentropy_backward(@Cast("floatX*") long dlogits, @Cast("float*") long losses, @Cast("const floatX*") long logits,
                                                          @Cast("const float*") long lse, @Cast("const float*") long targetLogit,
                                                          @Cast("const int32_t*") long targets, float dloss, int N, int V, int vocabStart,
                                                          int ignoreIndex, @Cast("void*") long stream);
    public static native int mt_cpu_lse_combine(@Cast("float*") long lse, @Cast("const float*") long lseParts, int P, int N, @Cast("void*") long stream);

    public static native int mt_cpu_adamw_update(@Cast("float*") long param, @Cast("floatX*") long paramX, @Cast("const float*") long grad,
                                                 @Cast("float*") long m, @Cast("float*") long v, long n, float lr, float beta1, float beta2,
                                                 float eps, float weightDecay, float biasCorr1, float biasCorr2, float gradScale,
                                                 @Cast("void*") long stream);

    public static native int mt_cpu_global_norm_squared(@Cast("float*") long out, @Cast("float*") long scratch, @Cast("const float*") long x, long n,
                                                        @Cast("void*") long stream);
    public static native int mt_cpu_scale_f32(@Cast("float*") long x, float s, long n, @Cast("void*") long stream);
}
