/* Causal grouped-query attention, CUDA, the simple path (any even HD <= 256; forced for every HD by
 * MT_CUDA_ATTN=simple): one warp per query row (forward, dQ) or key row (dK, dV), lanes split the head dimension.
 * Deterministic: every sum has a fixed order, no atomics. The entry points are in attention.cu. */
#include "attention.cuh"

#define MT_SIMPLE_WARPS 4    /* rows (warps) per block */

/* One warp per query row (b, h, t), warp index = (b*NH + h)*T + t. Lane l holds dims l, l+32, ... < HD. */
__global__ void mt_attn_fwd_simple_kernel(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, int HD,
                                          float scale) {
    const int lane = threadIdx.x & 31;
    const int64_t w = (int64_t)blockIdx.x * MT_SIMPLE_WARPS + (threadIdx.x >> 5);
    if (w >= (int64_t)B * NH * T) return;                       /* uniform per warp */
    const int t = (int)(w % T);
    const int h = (int)((w / T) % NH);
    const int b = (int)(w / ((int64_t)T * NH));
    const int kh = h / (NH / NKV);
    const int H3 = NH + 2 * NKV;
    const floatX* q = qkv + ((int64_t)b * T + t) * H3 * HD + (int64_t)h * HD;
    float qr[MT_SIMPLE_MAXD], o[MT_SIMPLE_MAXD];
#pragma unroll
    for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
        const int d = lane + 32 * i;
        qr[i] = d < HD ? __bfloat162float(q[d]) : 0.0f;
        o[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j <= t; j++) {
        const floatX* k = qkv + ((int64_t)b * T + j) * H3 * HD + (int64_t)(NH + kh) * HD;
        const floatX* v = k + (int64_t)NKV * HD;
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
            const int d = lane + 32 * i;
            if (d < HD) dot += qr[i] * __bfloat162float(k[d]);
        }
        const float s = mt_warp_sum(dot) * scale;
        const float mn = fmaxf(m, s);
        const float corr = expf(m - mn);                         /* m = -inf on the first key: corr = 0 */
        const float p = expf(s - mn);
        l = l * corr + p;
#pragma unroll
        for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
            const int d = lane + 32 * i;
            if (d < HD) o[i] = o[i] * corr + p * __bfloat162float(v[d]);
        }
        m = mn;
    }
    floatX* op = out + (((int64_t)b * T + t) * NH + h) * HD;
    const float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
        const int d = lane + 32 * i;
        if (d < HD) op[d] = __float2bfloat16_rn(o[i] * inv);
    }
    if (lane == 0) lse[((int64_t)b * NH + h) * T + t] = m + logf(l);
}

/* D[b,h,t] = sum_d dout[b,t,h,d] * out[b,t,h,d] (fp32). One warp per row, D laid out like lse [B,NH,T]. */
__global__ void mt_attn_bwd_d_kernel(float* D, const floatX* dout, const floatX* out, int B, int T, int NH, int HD) {
    const int lane = threadIdx.x & 31;
    const int64_t w = (int64_t)blockIdx.x * MT_SIMPLE_WARPS + (threadIdx.x >> 5);
    if (w >= (int64_t)B * NH * T) return;
    const int t = (int)(w % T);
    const int h = (int)((w / T) % NH);
    const int b = (int)(w / ((int64_t)T * NH));
    const int64_t off = (((int64_t)b * T + t) * NH + h) * HD;
    float acc = 0.0f;
    for (int d = lane; d < HD; d += 32) acc += __bfloat162float(dout[off + d]) * __bfloat162float(out[off + d]);
    acc = mt_warp_sum(acc);
    if (lane == 0) D[((int64_t)b * NH + h) * T + t] = acc;
}

/* dq[b,t,h,:] = scale * sum_{j<=t} p_tj (dO_t.v_j - D_t) k_j, p_tj = exp(scale q_t.k_j - lse_t). Warp per query row. */
__global__ void mt_attn_bwd_dq_simple_kernel(floatX* dqkv, const floatX* dout, const floatX* qkv, const float* lse,
                                             const float* D, int B, int T, int NH, int NKV, int HD, float scale) {
    const int lane = threadIdx.x & 31;
    const int64_t w = (int64_t)blockIdx.x * MT_SIMPLE_WARPS + (threadIdx.x >> 5);
    if (w >= (int64_t)B * NH * T) return;
    const int t = (int)(w % T);
    const int h = (int)((w / T) % NH);
    const int b = (int)(w / ((int64_t)T * NH));
    const int kh = h / (NH / NKV);
    const int H3 = NH + 2 * NKV;
    const int64_t qoff = ((int64_t)b * T + t) * H3 * HD + (int64_t)h * HD;
    const floatX* q = qkv + qoff;
    const floatX* dO = dout + (((int64_t)b * T + t) * NH + h) * HD;
    const float lse_t = lse[((int64_t)b * NH + h) * T + t];
    const float D_t = D[((int64_t)b * NH + h) * T + t];
    float qr[MT_SIMPLE_MAXD], dor[MT_SIMPLE_MAXD], dq[MT_SIMPLE_MAXD];
#pragma unroll
    for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
        const int d = lane + 32 * i;
        qr[i] = d < HD ? __bfloat162float(q[d]) : 0.0f;
        dor[i] = d < HD ? __bfloat162float(dO[d]) : 0.0f;
        dq[i] = 0.0f;
    }
    for (int j = 0; j <= t; j++) {
        const floatX* k = qkv + ((int64_t)b * T + j) * H3 * HD + (int64_t)(NH + kh) * HD;
        const floatX* v = k + (int64_t)NKV * HD;
        float s = 0.0f, dp = 0.0f;
#pragma unroll
        for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
            const int d = lane + 32 * i;
            if (d < HD) {
                s += qr[i] * __bfloat162float(k[d]);
                dp += dor[i] * __bfloat162float(v[d]);
            }
        }
        s = mt_warp_sum(s);
        dp = mt_warp_sum(dp);
        const float p = expf(s * scale - lse_t);
        const float ds = p * (dp - D_t);
#pragma unroll
        for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
            const int d = lane + 32 * i;
            if (d < HD) dq[i] += ds * __bfloat162float(k[d]);
        }
    }
#pragma unroll
    for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
        const int d = lane + 32 * i;
        if (d < HD) dqkv[qoff + d] = __float2bfloat16_rn(dq[i] * scale);
    }
}

/* dk/dv of key row (b, kh, j), summed over the group's query heads h (in order) and queries t >= j (in order):
 *   dv += p_tj dO_t;  dk += scale * p_tj (dO_t.v_j - D_t) q_t.   One warp per key row, warp = (b*NKV + kh)*T + j. */
__global__ void mt_attn_bwd_dkdv_simple_kernel(floatX* dqkv, const floatX* dout, const floatX* qkv, const float* lse,
                                               const float* D, int B, int T, int NH, int NKV, int HD, float scale) {
    const int lane = threadIdx.x & 31;
    const int64_t w = (int64_t)blockIdx.x * MT_SIMPLE_WARPS + (threadIdx.x >> 5);
    if (w >= (int64_t)B * NKV * T) return;
    const int j = (int)(w % T);
    const int kh = (int)((w / T) % NKV);
    const int b = (int)(w / ((int64_t)T * NKV));
    const int G = NH / NKV;
    const int H3 = NH + 2 * NKV;
    const int64_t koff = ((int64_t)b * T + j) * H3 * HD + (int64_t)(NH + kh) * HD;
    const int64_t voff = koff + (int64_t)NKV * HD;
    float kr[MT_SIMPLE_MAXD], vr[MT_SIMPLE_MAXD], dk[MT_SIMPLE_MAXD], dv[MT_SIMPLE_MAXD];
#pragma unroll
    for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
        const int d = lane + 32 * i;
        kr[i] = d < HD ? __bfloat162float(qkv[koff + d]) : 0.0f;
        vr[i] = d < HD ? __bfloat162float(qkv[voff + d]) : 0.0f;
        dk[i] = 0.0f;
        dv[i] = 0.0f;
    }
    for (int h = kh * G; h < (kh + 1) * G; h++) {
        for (int t = j; t < T; t++) {
            const floatX* q = qkv + ((int64_t)b * T + t) * H3 * HD + (int64_t)h * HD;
            const floatX* dO = dout + (((int64_t)b * T + t) * NH + h) * HD;
            float s = 0.0f, dp = 0.0f;
#pragma unroll
            for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
                const int d = lane + 32 * i;
                if (d < HD) {
                    s += kr[i] * __bfloat162float(q[d]);
                    dp += vr[i] * __bfloat162float(dO[d]);
                }
            }
            s = mt_warp_sum(s);
            dp = mt_warp_sum(dp);
            const int64_t r = ((int64_t)b * NH + h) * T + t;
            const float p = expf(s * scale - lse[r]);
            const float ds = p * (dp - D[r]);
#pragma unroll
            for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
                const int d = lane + 32 * i;
                if (d < HD) {
                    dv[i] += p * __bfloat162float(dO[d]);
                    dk[i] += ds * __bfloat162float(q[d]);
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < MT_SIMPLE_MAXD; i++) {
        const int d = lane + 32 * i;
        if (d < HD) {
            dqkv[koff + d] = __float2bfloat16_rn(dk[i] * scale);
            dqkv[voff + d] = __float2bfloat16_rn(dv[i]);
        }
    }
}

int mt_attn_fwd_simple(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, int HD, float scale,
                       cudaStream_t s) {
    const int64_t rows = (int64_t)B * NH * T;
    mt_attn_fwd_simple_kernel<<<(unsigned)((rows + MT_SIMPLE_WARPS - 1) / MT_SIMPLE_WARPS), 32 * MT_SIMPLE_WARPS, 0, s>>>(
        out, lse, qkv, B, T, NH, NKV, HD, scale);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

int mt_attn_bwd_simple(floatX* dqkv, float* D, const floatX* dout, const floatX* qkv, const floatX* out, const float* lse,
                       int B, int T, int NH, int NKV, int HD, float scale, cudaStream_t s) {
    const int64_t rows = (int64_t)B * NH * T;
    const unsigned row_blocks = (unsigned)((rows + MT_SIMPLE_WARPS - 1) / MT_SIMPLE_WARPS);
    mt_attn_bwd_d_kernel<<<row_blocks, 32 * MT_SIMPLE_WARPS, 0, s>>>(D, dout, out, B, T, NH, HD);
    MT_CHECK_LAUNCH();
    const int64_t kv_rows = (int64_t)B * NKV * T;
    mt_attn_bwd_dkdv_simple_kernel<<<(unsigned)((kv_rows + MT_SIMPLE_WARPS - 1) / MT_SIMPLE_WARPS), 32 * MT_SIMPLE_WARPS, 0, s>>>(
        dqkv, dout, qkv, lse, D, B, T, NH, NKV, HD, scale);
    mt_attn_bwd_dq_simple_kernel<<<row_blocks, 32 * MT_SIMPLE_WARPS, 0, s>>>(dqkv, dout, qkv, lse, D, B, T, NH, NKV, HD, scale);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
