/* Inference attention against a key/value cache (prefill and decode), CUDA (bf16 storage, fp32 math).
 *
 * Two launches on the caller's stream: (1) RoPE of the new q and k heads at their absolute positions, in place, and
 * the k|v heads written into the cache; (2) one block per query row (b, i, h): scores of KC keys at a time into shared
 * memory (one key per thread), block max and sum in a fixed order, and the weighted value sum with each thread owning
 * head dimensions d = threadIdx.x, threadIdx.x + blockDim.x. Keys ascending in fixed blocks from position 0: bitwise
 * deterministic, and one row's result does not depend on Tq. Written for decode (Tq small); a long prefill works but
 * does not use tensor cores. */
#include "mt_cuda.cuh"

#define MT_KV_THREADS 128
#define MT_KV_KC 128            /* keys per block of the online softmax (one per thread) */
#define MT_KV_MAX_HD 256

__global__ void mt_kv_rope_write_kernel(floatX* kv, floatX* qkv, const float* cosv, const float* sinv, const int32_t* pos,
                                        int B, int Tq, int Tmax, int NH, int NKV, int HD) {
    const int H = NH + 2 * NKV, half = HD / 2, KV = 2 * NKV;
    const int64_t total = (int64_t)B * Tq * H * half;
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < total; j += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(j % half);
        const int64_t rest = j / half;                             /* (b*Tq + t)*H + h */
        const int h = (int)(rest % H);
        const int64_t bt = rest / H;
        const int b = (int)(bt / Tq);
        const int p = pos[b] + (int)(bt % Tq);
        if (pos[b] < 0 || p >= Tmax) continue;
        floatX* x = qkv + rest * HD;
        float x1 = __bfloat162float(x[i]), x2 = __bfloat162float(x[i + half]);
        if (h < NH + NKV) {                                        /* q or k head: rotate in place */
            const float c = cosv[(int64_t)p * half + i], s = sinv[(int64_t)p * half + i];
            const float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
            x[i] = __float2bfloat16_rn(y1);
            x[i + half] = __float2bfloat16_rn(y2);
        }
        if (h >= NH) {                                             /* k or v head: into the cache row */
            floatX* dst = kv + (((int64_t)b * Tmax + p) * KV + (h - NH)) * HD;
            dst[i] = x[i];
            dst[i + half] = x[i + half];
        }
    }
}

__global__ void __launch_bounds__(MT_KV_THREADS)
mt_kv_attention_kernel(floatX* out, const floatX* kv, const floatX* qkv, const int32_t* pos,
                       int Tq, int Tmax, int NH, int NKV, int HD) {
    __shared__ float qs[MT_KV_MAX_HD];
    __shared__ float ps[MT_KV_KC];
    __shared__ float red[32];
    const int H = NH + 2 * NKV, KV = 2 * NKV, G = NH / NKV;
    const int64_t row = blockIdx.x;                                /* (b*Tq + i)*NH + h */
    const int h = (int)(row % NH);
    const int64_t bi = row / NH;
    const int b = (int)(bi / Tq);
    const int p = pos[b] + (int)(bi % Tq);
    if (pos[b] < 0 || p >= Tmax) return;
    const int g = h / G, tid = threadIdx.x;
    const float scale = rsqrtf((float)HD);
    const floatX* q = qkv + (bi * H + h) * HD;
    for (int d = tid; d < HD; d += blockDim.x) qs[d] = __bfloat162float(q[d]) * scale;
    const floatX* kbase = kv + (int64_t)b * Tmax * KV * HD + (int64_t)g * HD;
    const floatX* vbase = kbase + (int64_t)NKV * HD;
    float acc0 = 0.0f, acc1 = 0.0f, m = -INFINITY, l = 0.0f;
    __syncthreads();
    for (int j0 = 0; j0 <= p; j0 += MT_KV_KC) {
        const int n = min(MT_KV_KC, p + 1 - j0);
        float s = -INFINITY;
        if (tid < n) {
            const floatX* k = kbase + (int64_t)(j0 + tid) * KV * HD;
            float dot = 0.0f;
            for (int d = 0; d < HD; d++) dot += qs[d] * __bfloat162float(k[d]);
            s = dot;
        }
        /* block max: warp butterflies, then over the warp maxima (fixed order) */
        float bm = mt_warp_max(s);
        __syncthreads();
        if ((tid & 31) == 0) red[tid >> 5] = bm;
        __syncthreads();
        bm = red[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) bm = fmaxf(bm, red[w]);
        const float mnew = fmaxf(m, bm);
        const float e = tid < n ? __expf(s - mnew) : 0.0f;
        ps[tid] = e;
        const float bsum = mt_block_sum(e, red);                  /* its __syncthreads also publishes ps */
        const float corr = __expf(m - mnew);                      /* 0 on the first block (m = -inf) */
        l = l * corr + bsum;
        float a0 = 0.0f, a1 = 0.0f;
        for (int j = 0; j < n; j++) {
            const floatX* v = vbase + (int64_t)(j0 + j) * KV * HD;
            const float pj = ps[j];
            if (tid < HD) a0 += pj * __bfloat162float(v[tid]);
            if (tid + MT_KV_THREADS < HD) a1 += pj * __bfloat162float(v[tid + MT_KV_THREADS]);
        }
        acc0 = acc0 * corr + a0;
        acc1 = acc1 * corr + a1;
        m = mnew;
        __syncthreads();                                           /* ps is rewritten by the next block */
    }
    floatX* o = out + row * HD;
    const float inv = 1.0f / l;
    if (tid < HD) o[tid] = __float2bfloat16_rn(acc0 * inv);
    if (tid + MT_KV_THREADS < HD) o[tid + MT_KV_THREADS] = __float2bfloat16_rn(acc1 * inv);
}

extern "C" int MT_FN(kvcache_attention_forward)(floatX* out, floatX* kv, floatX* qkv, const float* cos, const float* sin,
                                                const int32_t* pos, int B, int Tq, int Tmax, int NH, int NKV, int HD,
                                                void* stream) {
    if (B < 0 || Tq < 0 || Tmax < 0 || NH <= 0 || NKV <= 0 || NH % NKV != 0 || HD <= 0 || HD % 2 != 0) return MT_ERR_ARG;
    if (B == 0 || Tq == 0) return MT_OK;
    if (!out || !kv || !qkv || !cos || !sin || !pos) return MT_ERR_ARG;
    if (HD > MT_KV_MAX_HD) return MT_ERR_UNSUPPORTED;
    const int64_t total = (int64_t)B * Tq * (NH + 2 * NKV) * (HD / 2);
    mt_kv_rope_write_kernel<<<mt_grid_for(total, 256), 256, 0, MT_STREAM(stream)>>>(kv, qkv, cos, sin, pos, B, Tq, Tmax, NH, NKV, HD);
    MT_CHECK_LAUNCH();
    const int64_t rows = (int64_t)B * Tq * NH;
    if (rows > 2147483647LL) return MT_ERR_ARG;
    mt_kv_attention_kernel<<<(unsigned)rows, MT_KV_THREADS, 0, MT_STREAM(stream)>>>(out, kv, qkv, pos, Tq, Tmax, NH, NKV, HD);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
