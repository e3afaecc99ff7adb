/* Residual add, CUDA. */
#include "mt_cuda.cuh"

/* out[i] = a[i] + b[i]; VEC: 8 elements (16 B) per step, then a scalar tail. Elementwise, so out may alias a or b. */
template <bool VEC>
__global__ void mt_add_kernel(floatX* out, const floatX* a, const floatX* b, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (VEC) {
        const int64_t nv = n / 8;
        for (int64_t i = tid; i < nv; i += stride) {
            float x[8], y[8];
            mt_load8(a + 8 * i, x);
            mt_load8(b + 8 * i, y);
#pragma unroll
            for (int k = 0; k < 8; k++) x[k] += y[k];
            mt_store8(out + 8 * i, x);
        }
        done = nv * 8;
    }
    for (int64_t i = done + tid; i < n; i += stride)
        out[i] = __float2bfloat16_rn(__bfloat162float(a[i]) + __bfloat162float(b[i]));
}

extern "C" int MT_FN(add)(floatX* out, const floatX* a, const floatX* b, int64_t n, void* stream) {
    if (n < 0 || (n > 0 && (!out || !a || !b))) return MT_ERR_ARG;
    if (n == 0) return MT_OK;
    if (mt_aligned16(out) && mt_aligned16(a) && mt_aligned16(b))
        mt_add_kernel<true><<<mt_grid_for(n / 8 + 1, 256), 256, 0, MT_STREAM(stream)>>>(out, a, b, n);
    else
        mt_add_kernel<false><<<mt_grid_for(n, 256), 256, 0, MT_STREAM(stream)>>>(out, a, b, n);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
