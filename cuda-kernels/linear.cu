/* Small-M linear layer, CUDA: out[M,N] = inp[M,K] @ weight[N,K]^T (bf16 storage, fp32 accumulation).
 * One warp per output element (m, n): lane l sums k = l, l + 32, ... in order, then a fixed butterfly over the
 * warp (mt_warp_sum). The order depends only on K, so out[m,n] does not depend on M, N or the launch shape. */
#include "mt_cuda.cuh"

__global__ void mt_linear_kernel(floatX* out, const floatX* inp, const floatX* weight, int M, int N, int K) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    const int64_t total = (int64_t)M * N;
    for (int64_t e = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); e < total; e += warps) {
        const int64_t m = e / N, n = e % N;
        const floatX* x = inp + m * K;
        const floatX* w = weight + n * K;
        float acc = 0.0f;
        for (int k = lane; k < K; k += 32) acc += __bfloat162float(x[k]) * __bfloat162float(w[k]);
        acc = mt_warp_sum(acc);
        if (lane == 0) out[m * N + n] = __float2bfloat16_rn(acc);
    }
}

extern "C" int MT_FN(linear_forward)(floatX* out, const floatX* inp, const floatX* weight, int M, int N, int K, void* stream) {
    if (M < 0 || N < 0 || K < 0) return MT_ERR_ARG;
    const int64_t total = (int64_t)M * N;
    if (total == 0) return MT_OK;
    if (!out || !inp || (K > 0 && !weight)) return MT_ERR_ARG;
    mt_linear_kernel<<<mt_grid_for(total, 8), 256, 0, MT_STREAM(stream)>>>(out, inp, weight, M, N, K);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
