/* Token embedding forward (gather) and backward (deterministic scatter-add), CUDA. */
#include "mt_cuda.cuh"

/* Bad ids cannot be reported from the device (header contract): they are clamped into [0, V). */
__device__ __forceinline__ int mt_clamp_token(int t, int V) { return t < 0 ? 0 : (t >= V ? V - 1 : t); }

/* out[n, :] = wte[tokens[n], :].  grid.x = N rows (grid-stride over rows), block strides over the row.
 * VEC: C % 8 == 0 and both tensors 16-byte aligned, so every row start is aligned too. */
template <bool VEC>
__global__ void mt_embedding_forward_kernel(floatX* out, const int32_t* tokens, const floatX* wte, int N, int C, int V) {
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const int t = mt_clamp_token(tokens[n], V);
        const floatX* src = wte + (int64_t)t * C;
        floatX* dst = out + (int64_t)n * C;
        if (VEC) {
            for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8)
                *reinterpret_cast<uint4*>(dst + c) = *reinterpret_cast<const uint4*>(src + c);
        } else {
            for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
        }
    }
}

#define MT_EMB_BWD_PARTS 64   /* vocabulary partitions: block (x, y) owns rows v with v % PARTS == y */
#define MT_EMB_BWD_CHUNK 1024 /* tokens staged in shared memory at a time */

/* dwte[tokens[n], c] += dout[n, c], deterministic: element (v, c) is owned by exactly one thread (the one with column c
 * in the block whose blockIdx.y == v % PARTS), which adds its contributions in token order n = 0..N-1.
 * grid = (ceil(C / blockDim.x), PARTS); each block scans all tokens (staged in shared memory) and acts on its own. */
__global__ void mt_embedding_backward_kernel(float* dwte, const int32_t* tokens, const floatX* dout, int N, int C, int V) {
    __shared__ int tok[MT_EMB_BWD_CHUNK];
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    const int part = blockIdx.y;
    for (int n0 = 0; n0 < N; n0 += MT_EMB_BWD_CHUNK) {
        const int len = min(MT_EMB_BWD_CHUNK, N - n0);
        __syncthreads();   /* the previous chunk has been consumed */
        for (int i = threadIdx.x; i < len; i += blockDim.x) tok[i] = mt_clamp_token(tokens[n0 + i], V);
        __syncthreads();
        if (c < C) {
            for (int i = 0; i < len; i++) {
                const int t = tok[i];
                if (t % MT_EMB_BWD_PARTS != part) continue;
                float* w = dwte + (int64_t)t * C + c;
                *w += __bfloat162float(dout[(int64_t)(n0 + i) * C + c]);
            }
        }
    }
}

extern "C" int MT_FN(embedding_forward)(floatX* out, const int32_t* tokens, const floatX* wte, int N, int C, int V, void* stream) {
    if (N < 0 || C < 0 || V < 0 || (N > 0 && V == 0) || ((int64_t)N * C > 0 && (!out || !tokens || !wte))) return MT_ERR_ARG;
    if (N == 0 || C == 0) return MT_OK;
    const int grid = N < MT_MAX_BLOCKS ? N : MT_MAX_BLOCKS;
    if (C % 8 == 0 && mt_aligned16(out) && mt_aligned16(wte))
        mt_embedding_forward_kernel<true><<<grid, 128, 0, MT_STREAM(stream)>>>(out, tokens, wte, N, C, V);
    else
        mt_embedding_forward_kernel<false><<<grid, 128, 0, MT_STREAM(stream)>>>(out, tokens, wte, N, C, V);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

extern "C" int MT_FN(embedding_backward)(float* dwte, const int32_t* tokens, const floatX* dout, int N, int C, int V, void* stream) {
    if (N < 0 || C < 0 || V < 0 || (N > 0 && V == 0) || ((int64_t)N * C > 0 && (!dwte || !tokens || !dout))) return MT_ERR_ARG;
    if (N == 0 || C == 0) return MT_OK;
    const int threads = 256;
    dim3 grid((C + threads - 1) / threads, MT_EMB_BWD_PARTS);
    mt_embedding_backward_kernel<<<grid, threads, 0, MT_STREAM(stream)>>>(dwte, tokens, dout, N, C, V);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
