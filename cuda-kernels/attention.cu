/* Causal grouped-query attention forward/backward, CUDA: the entry points of the header and the choice between the
 * two implementations (attention_path).
 *
 * Layout (header): qkv [B,T,NH+2*NKV,HD] with q heads 0..NH-1, k heads NH..NH+NKV-1, v heads NH+NKV..;
 * out [B,T,NH,HD]; lse [B,NH,T] natural log of sum_j exp(scale * q.k_j), scale = 1/sqrt(HD).
 *
 * Two implementations, both deterministic (no atomics; every sum has a fixed order), same math, same passes:
 *   - attention_fa2.cu, "tensor-core" (HD 64 and 128, 16-byte aligned tensors): FlashAttention-2 tiles;
 *   - attention_simple.cu, "simple" (any even HD <= 256): one warp per row, lanes split the head dimension.
 * The environment variable MT_CUDA_ATTN=simple forces the simple path (validation of one against the other, and an
 * escape hatch); HD outside those sets returns MT_ERR_UNSUPPORTED. */
#include "attention.cuh"
#include <stdlib.h>
#include <string.h>

static bool mt_attn_force_simple(void) {
    const char* e = getenv("MT_CUDA_ATTN");
    return e != NULL && strcmp(e, "simple") == 0;
}

extern "C" int MT_FN(attention_path)(int NH, int NKV, int HD, int aligned16) {
    if (NH <= 0 || NKV <= 0 || NH % NKV != 0 || HD <= 0 || HD % 2 != 0) return MT_ERR_ARG;
    if (HD > 32 * MT_SIMPLE_MAXD) return MT_ERR_UNSUPPORTED;
    if ((HD == 64 || HD == 128) && aligned16 && !mt_attn_force_simple()) return MT_ATTN_PATH_TENSOR_CORE;
    return MT_ATTN_PATH_SIMPLE;
}

/* attention_path for these tensors: the tensor-core path needs 16-byte aligned tensors (every row start is then
 * aligned, HD being a multiple of 8). */
static int mt_attn_choose(int B, int T, int NH, int NKV, int HD, const void* p0, const void* p1, const void* p2,
                          const void* p3) {
    if (B < 0 || T < 0) return MT_ERR_ARG;
    const bool aligned = mt_aligned16(p0) && mt_aligned16(p1) && mt_aligned16(p2) && (p3 == NULL || mt_aligned16(p3));
    return MT_FN(attention_path)(NH, NKV, HD, aligned ? 1 : 0);
}

extern "C" int MT_FN(attention_forward)(floatX* out, float* lse, const floatX* qkv,
                                        int B, int T, int NH, int NKV, int HD, void* stream) {
    const int path = mt_attn_choose(B, T, NH, NKV, HD, out, qkv, qkv, NULL);
    if (path < 0) return path;
    if ((int64_t)B * T == 0) return MT_OK;
    if (!out || !lse || !qkv) return MT_ERR_ARG;
    const float scale = 1.0f / sqrtf((float)HD);
    if (path == MT_ATTN_PATH_TENSOR_CORE) return mt_attn_fwd_fa2(out, lse, qkv, B, T, NH, NKV, HD, scale, MT_STREAM(stream));
    return mt_attn_fwd_simple(out, lse, qkv, B, T, NH, NKV, HD, scale, MT_STREAM(stream));
}

extern "C" int MT_FN(attention_backward)(floatX* dqkv, float* scratch, const floatX* dout, const floatX* qkv,
                                         const floatX* out, const float* lse,
                                         int B, int T, int NH, int NKV, int HD, void* stream) {
    const int path = mt_attn_choose(B, T, NH, NKV, HD, dqkv, dout, qkv, out);
    if (path < 0) return path;
    if ((int64_t)B * T == 0) return MT_OK;
    if (!dqkv || !scratch || !dout || !qkv || !out || !lse) return MT_ERR_ARG;
    const float scale = 1.0f / sqrtf((float)HD);
    float* D = scratch;                                               /* [B,NH,T] = MT_ATTN_BWD_SCRATCH_FLOATS */
    if (path == MT_ATTN_PATH_TENSOR_CORE) return mt_attn_bwd_fa2(dqkv, D, dout, qkv, out, lse, B, T, NH, NKV, HD, scale, MT_STREAM(stream));
    return mt_attn_bwd_simple(dqkv, D, dout, qkv, out, lse, B, T, NH, NKV, HD, scale, MT_STREAM(stream));
}
