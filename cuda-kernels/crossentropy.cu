/* Softmax cross-entropy over a (vocabulary-sharded) row of bf16 logits, CUDA: one block per row, online max/sum. */
#include "mt_cuda.cuh"

#define MT_CE_THREADS 512

/* Merges the running (max, sum of exp(x - max)) pair (m2, s2) into (m, s). Symmetric in its two operands (so a
 * butterfly gives every lane the same bits) and safe when either side is still empty (m = -inf, s = 0). */
__device__ __forceinline__ void mt_ms_merge(float& m, float& s, float m2, float s2) {
    if (m2 == -INFINITY) return;
    if (m == -INFINITY) { m = m2; s = s2; return; }
    const float M = fmaxf(m, m2);
    s = s * expf(m - M) + s2 * expf(m2 - M);
    m = M;
}

__device__ __forceinline__ void mt_ms_add(float& m, float& s, float x) {
    if (x > m) { s = s * expf(m - x) + 1.0f; m = x; }
    else if (x != -INFINITY) s += expf(x - m);
}

/* lse[n] = log(sum_j exp(logits[n, j])), target_logit[n] = logits[n, target - vocab_start] or 0.
 * grid = N rows (grid-stride), block = MT_CE_THREADS. VEC: V % 8 == 0 and logits 16-byte aligned. */
template <bool VEC>
__global__ void mt_crossentropy_forward_kernel(float* lse, float* target_logit, const floatX* logits, const int32_t* targets,
                                               int N, int V, int vocab_start, int ignore_index) {
    __shared__ float sm[32], ss[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const floatX* row = logits + (int64_t)n * V;
        float m = -INFINITY, s = 0.0f;
        if (VEC) {
            for (int j = threadIdx.x * 8; j < V; j += blockDim.x * 8) {
                float f[8];
                mt_load8(row + j, f);
#pragma unroll
                for (int k = 0; k < 8; k++) mt_ms_add(m, s, f[k]);
            }
        } else {
            for (int j = threadIdx.x; j < V; j += blockDim.x) mt_ms_add(m, s, __bfloat162float(row[j]));
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
            mt_ms_merge(m, s, m2, s2);
        }
        __syncthreads();                           /* sm/ss of the previous row have been read */
        if (lane == 0) { sm[warp] = m; ss[warp] = s; }
        __syncthreads();
        if (warp == 0) {
            m = lane < nwarps ? sm[lane] : -INFINITY;
            s = lane < nwarps ? ss[lane] : 0.0f;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
                mt_ms_merge(m, s, m2, s2);
            }
            if (lane == 0) {
                lse[n] = m + logf(s);
                const int t = targets[n];
                float tl = 0.0f;
                if (t != ignore_index && t >= vocab_start && t - vocab_start < V) tl = __bfloat162float(row[t - vocab_start]);
                target_logit[n] = tl;
            }
        }
    }
}

/* losses[n] = lse - target_logit (0 if ignored); dlogits[n, j] = (exp(x - lse) - [j + vocab_start == t]) * dloss.
 * dlogits may alias logits: each element is read and then written by the same thread. Same VEC rule (both tensors). */
template <bool VEC>
__global__ void mt_crossentropy_backward_kernel(floatX* dlogits, float* losses, const floatX* logits, const float* lse,
                                                const float* target_logit, const int32_t* targets, float dloss,
                                                int N, int V, int vocab_start, int ignore_index) {
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const int t = targets[n];
        const bool ignored = (t == ignore_index);
        const float l = lse[n];
        const int tj = t - vocab_start;                /* the target's column in this shard, if in [0, V) */
        if (threadIdx.x == 0) losses[n] = ignored ? 0.0f : l - target_logit[n];
        const floatX* row = logits + (int64_t)n * V;
        floatX* drow = dlogits + (int64_t)n * V;
        if (VEC) {
            for (int j = threadIdx.x * 8; j < V; j += blockDim.x * 8) {
                float f[8];
                mt_load8(row + j, f);
#pragma unroll
                for (int k = 0; k < 8; k++)
                    f[k] = ignored ? 0.0f : (expf(f[k] - l) - (j + k == tj ? 1.0f : 0.0f)) * dloss;
                mt_store8(drow + j, f);
            }
        } else {
            for (int j = threadIdx.x; j < V; j += blockDim.x) {
                const float x = __bfloat162float(row[j]);
                drow[j] = __float2bfloat16_rn(ignored ? 0.0f : (expf(x - l) - (j == tj ? 1.0f : 0.0f)) * dloss);
            }
        }
    }
}

/* lse[n] = log(sum_p exp(parts[p, n])), max-stabilised, p in order. */
__global__ void mt_lse_combine_kernel(float* lse, const float* parts, int P, int N) {
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    float m = -INFINITY;
    for (int p = 0; p < P; p++) m = fmaxf(m, parts[(int64_t)p * N + n]);
    if (m == -INFINITY) { lse[n] = -INFINITY; return; }
    float s = 0.0f;
    for (int p = 0; p < P; p++) s += expf(parts[(int64_t)p * N + n] - m);
    lse[n] = m + logf(s);
}

extern "C" int MT_FN(crossentropy_forward)(float* lse, float* target_logit, const floatX* logits, const int32_t* targets,
                                           int N, int V, int vocab_start, int ignore_index, void* stream) {
    if (N < 0 || V <= 0 || vocab_start < 0) return MT_ERR_ARG;
    if (N == 0) return MT_OK;
    if (!lse || !target_logit || !logits || !targets) return MT_ERR_ARG;
    const int grid = N < MT_MAX_BLOCKS ? N : MT_MAX_BLOCKS;
    if (V % 8 == 0 && mt_aligned16(logits))
        mt_crossentropy_forward_kernel<true><<<grid, MT_CE_THREADS, 0, MT_STREAM(stream)>>>(lse, target_logit, logits, targets, N, V, vocab_start, ignore_index);
    else
        mt_crossentropy_forward_kernel<false><<<grid, MT_CE_THREADS, 0, MT_STREAM(stream)>>>(lse, target_logit, logits, targets, N, V, vocab_start, ignore_index);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

extern "C" int MT_FN(crossentropy_backward)(floatX* dlogits, float* losses, const floatX* logits, const float* lse,
                                            const float* target_logit, const int32_t* targets, float dloss,
                                            int N, int V, int vocab_start, int ignore_index, void* stream) {
    if (N < 0 || V <= 0 || vocab_start < 0) return MT_ERR_ARG;
    if (N == 0) return MT_OK;
    if (!dlogits || !losses || !logits || !lse || !target_logit || !targets) return MT_ERR_ARG;
    const int grid = N < MT_MAX_BLOCKS ? N : MT_MAX_BLOCKS;
    if (V % 8 == 0 && mt_aligned16(logits) && mt_aligned16(dlogits))
        mt_crossentropy_backward_kernel<true><<<grid, MT_CE_THREADS, 0, MT_STREAM(stream)>>>(dlogits, losses, logits, lse, target_logit, targets, dloss, N, V, vocab_start, ignore_index);
    else
        mt_crossentropy_backward_kernel<false><<<grid, MT_CE_THREADS, 0, MT_STREAM(stream)>>>(dlogits, losses, logits, lse, target_logit, targets, dloss, N, V, vocab_start, ignore_index);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

extern "C" int MT_FN(lse_combine)(float* lse, const float* lse_parts, int P, int N, void* stream) {
    if (P <= 0 || N < 0) return MT_ERR_ARG;
    if (N == 0) return MT_OK;
    if (!lse || !lse_parts) return MT_ERR_ARG;
    mt_lse_combine_kernel<<<(N + 255) / 256, 256, 0, MT_STREAM(stream)>>>(lse, lse_parts, P, N);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
