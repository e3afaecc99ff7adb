/* Causal grouped-query attention, CUDA: what the entry points (attention.cu) need from the two implementations,
 * attention_simple.cu (one warp per row, any even HD <= 256) and attention_fa2.cu (FlashAttention-2 tiles on the
 * tensor cores, HD 64 and 128). Each launcher enqueues its kernels on s and returns MT_OK, MT_ERR_LAUNCH or
 * MT_ERR_UNSUPPORTED (a grid too large); the caller has checked the arguments and chosen the path
 * (attention_path in the header). Layouts: qkv [B,T,NH+2*NKV,HD], out [B,T,NH,HD], lse and D [B,NH,T]. */
#pragma once
#include "mt_cuda.cuh"

#define MT_LOG2E 1.4426950408889634f
#define MT_LN2 0.6931471805599453f
#define MT_SIMPLE_MAXD 8     /* simple path: head-dim elements per lane, HD <= 32 * 8 = 256 */

/* out (=), lse (=, natural log); scale = 1/sqrt(HD). */
int mt_attn_fwd_simple(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, int HD, float scale,
                       cudaStream_t s);
/* dqkv (=); D: float[B,NH,T] scratch (MT_ATTN_BWD_SCRATCH_FLOATS). */
int mt_attn_bwd_simple(floatX* dqkv, float* D, const floatX* dout, const floatX* qkv, const floatX* out, const float* lse,
                       int B, int T, int NH, int NKV, int HD, float scale, cudaStream_t s);
/* As mt_attn_fwd_simple; HD must be 64 or 128 and every tensor 16-byte aligned. */
int mt_attn_fwd_fa2(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, int HD, float scale,
                    cudaStream_t s);
/* As mt_attn_bwd_simple; HD must be 64 or 128 and every tensor 16-byte aligned. */
int mt_attn_bwd_fa2(floatX* dqkv, float* D, const floatX* dout, const floatX* qkv, const floatX* out, const float* lse,
                    int B, int T, int NH, int NKV, int HD, float scale, cudaStream_t s);
