/* Rotary embedding (Hugging Face rotate-half) forward/backward on packed qkv, CUDA. */
#include "mt_cuda.cuh"

/* One thread handles K consecutive pair indices i..i+K-1 (< HD/2) of one (b, t, head): it reads x[i] and x[i+HD/2],
 * then writes out[i] and out[i+HD/2]; nothing else touches those elements, so out may alias inp.
 * Heads h < NH+NKV (q and k) are rotated; v heads are copied.  BACKWARD applies the transpose rotation R^T.
 * K = 8 needs (HD/2) % 8 == 0 and out/inp 16-byte aligned, cos/sin 16-byte aligned. */
template <int K, bool BACKWARD>
__global__ void mt_rope_kernel(floatX* out, const floatX* inp, const float* cosv, const float* sinv,
                               int B, int T, int NH, int NKV, int HD) {
    const int H = NH + 2 * NKV;
    const int half = HD / 2;
    const int groups = half / K;                                  /* thread work items per head row */
    const int64_t total = (int64_t)B * T * H * groups;
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < total; j += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(j % groups) * K;
        const int64_t rest = j / groups;                          /* (b*T + t)*H + h */
        const int h = (int)(rest % H);
        const int t = (int)((rest / H) % T);
        const int64_t base = rest * HD;
        const floatX* x = inp + base;
        floatX* o = out + base;
        if (h >= NH + NKV) {                                      /* v head: copy (skipped when in place) */
            if (o != x) {
                if (K == 8) {
                    *reinterpret_cast<uint4*>(o + i) = *reinterpret_cast<const uint4*>(x + i);
                    *reinterpret_cast<uint4*>(o + i + half) = *reinterpret_cast<const uint4*>(x + i + half);
                } else {
#pragma unroll
                    for (int k = 0; k < K; k++) { o[i + k] = x[i + k]; o[i + k + half] = x[i + k + half]; }
                }
            }
            continue;
        }
        float x1[K], x2[K], c[K], s[K], y1[K], y2[K];
        const float* cp = cosv + (int64_t)t * half + i;
        const float* sp = sinv + (int64_t)t * half + i;
        if (K == 8) {
            mt_load8(x + i, x1);
            mt_load8(x + i + half, x2);
            float4 c0 = reinterpret_cast<const float4*>(cp)[0], c1 = reinterpret_cast<const float4*>(cp)[1];
            float4 s0 = reinterpret_cast<const float4*>(sp)[0], s1 = reinterpret_cast<const float4*>(sp)[1];
            c[0] = c0.x; c[1] = c0.y; c[2] = c0.z; c[3] = c0.w; c[4] = c1.x; c[5] = c1.y; c[6] = c1.z; c[7] = c1.w;
            s[0] = s0.x; s[1] = s0.y; s[2] = s0.z; s[3] = s0.w; s[4] = s1.x; s[5] = s1.y; s[6] = s1.z; s[7] = s1.w;
        } else {
#pragma unroll
            for (int k = 0; k < K; k++) {
                x1[k] = __bfloat162float(x[i + k]);
                x2[k] = __bfloat162float(x[i + k + half]);
                c[k] = cp[k];
                s[k] = sp[k];
            }
        }
#pragma unroll
        for (int k = 0; k < K; k++) {
            if (BACKWARD) {                                       /* R^T = [[c, s], [-s, c]] */
                y1[k] = x1[k] * c[k] + x2[k] * s[k];
                y2[k] = x2[k] * c[k] - x1[k] * s[k];
            } else {                                              /* R = [[c, -s], [s, c]] */
                y1[k] = x1[k] * c[k] - x2[k] * s[k];
                y2[k] = x2[k] * c[k] + x1[k] * s[k];
            }
        }
        if (K == 8) {
            mt_store8(o + i, y1);
            mt_store8(o + i + half, y2);
        } else {
#pragma unroll
            for (int k = 0; k < K; k++) {
                o[i + k] = __float2bfloat16_rn(y1[k]);
                o[i + k + half] = __float2bfloat16_rn(y2[k]);
            }
        }
    }
}

template <bool BACKWARD>
static int mt_rope_launch(floatX* out, const floatX* inp, const float* cosv, const float* sinv,
                          int B, int T, int NH, int NKV, int HD, void* stream) {
    if (B < 0 || T < 0 || NH <= 0 || NKV <= 0 || NH % NKV != 0 || HD <= 0 || HD % 2 != 0) return MT_ERR_ARG;
    const int64_t total = (int64_t)B * T * (NH + 2 * NKV) * (HD / 2);
    if (total == 0) return MT_OK;
    if (!out || !inp || !cosv || !sinv) return MT_ERR_ARG;
    const int half = HD / 2;
    if (half % 8 == 0 && mt_aligned16(out) && mt_aligned16(inp) && mt_aligned16(cosv) && mt_aligned16(sinv))
        mt_rope_kernel<8, BACKWARD><<<mt_grid_for(total / 8, 256), 256, 0, MT_STREAM(stream)>>>(out, inp, cosv, sinv, B, T, NH, NKV, HD);
    else
        mt_rope_kernel<1, BACKWARD><<<mt_grid_for(total, 256), 256, 0, MT_STREAM(stream)>>>(out, inp, cosv, sinv, B, T, NH, NKV, HD);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

extern "C" int MT_FN(rope_forward)(floatX* out, const floatX* inp, const float* cos, const float* sin,
                                   int B, int T, int NH, int NKV, int HD, void* stream) {
    return mt_rope_launch<false>(out, inp, cos, sin, B, T, NH, NKV, HD, stream);
}

extern "C" int MT_FN(rope_backward)(floatX* dinp, const floatX* dout, const float* cos, const float* sin,
                                    int B, int T, int NH, int NKV, int HD, void* stream) {
    return mt_rope_launch<true>(dinp, dout, cos, sin, B, T, NH, NKV, HD, stream);
}
