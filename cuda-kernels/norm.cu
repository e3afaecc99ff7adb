/* Squared L2 norm (fixed-order block partials, then a one-block finalize) and in-place scaling, CUDA. */
#include "mt_cuda.cuh"

#define MT_NORM_THREADS 256
#define MT_NORM_FINAL_THREADS 1024

/* scratch[blockIdx.x] = sum of x[i]^2 over the indices this block visits (grid-stride with a fixed grid, so the
 * assignment of elements to threads and the summation order depend on n only).
 * VEC: x 16-byte aligned, float4 loads for the first n/4*4 elements. */
template <bool VEC>
__global__ void mt_norm_partial_kernel(float* scratch, const float* x, int64_t n) {
    __shared__ float sh[32];
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    float acc = 0.0f;
    int64_t done = 0;
    if (VEC) {
        const int64_t nv = n / 4;
        for (int64_t i = tid; i < nv; i += stride) {
            const float4 f = reinterpret_cast<const float4*>(x)[i];
            acc += f.x * f.x + f.y * f.y + f.z * f.z + f.w * f.w;
        }
        done = nv * 4;
    }
    for (int64_t i = done + tid; i < n; i += stride) acc += x[i] * x[i];
    const float total = mt_block_sum(acc, sh);
    if (threadIdx.x == 0) scratch[blockIdx.x] = total;
}

/* out[0] += sum_{b < blocks} scratch[b]; one block, fixed tree order. */
__global__ void mt_norm_final_kernel(float* out, const float* scratch, int blocks) {
    __shared__ float sh[32];
    float acc = 0.0f;
    for (int b = threadIdx.x; b < blocks; b += blockDim.x) acc += scratch[b];
    const float total = mt_block_sum(acc, sh);
    if (threadIdx.x == 0) out[0] += total;
}

extern "C" int MT_FN(global_norm_squared)(float* out, float* scratch, const float* x, int64_t n, void* stream) {
    if (n < 0) return MT_ERR_ARG;
    if (n == 0) return MT_OK;
    if (!out || !scratch || !x) return MT_ERR_ARG;
    /* the grid depends on n only (never on the device), and never exceeds the MT_NORM_SCRATCH_FLOATS partials */
    int64_t blocks = (n + 4 * MT_NORM_THREADS - 1) / (4 * MT_NORM_THREADS);
    if (blocks > (int64_t)MT_NORM_SCRATCH_FLOATS) blocks = (int64_t)MT_NORM_SCRATCH_FLOATS;
    cudaStream_t s = MT_STREAM(stream);
    if (mt_aligned16(x))
        mt_norm_partial_kernel<true><<<(int)blocks, MT_NORM_THREADS, 0, s>>>(scratch, x, n);
    else
        mt_norm_partial_kernel<false><<<(int)blocks, MT_NORM_THREADS, 0, s>>>(scratch, x, n);
    MT_CHECK_LAUNCH();
    mt_norm_final_kernel<<<1, MT_NORM_FINAL_THREADS, 0, s>>>(out, scratch, (int)blocks);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

template <bool VEC>
__global__ void mt_scale_f32_kernel(float* x, float s, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (VEC) {
        const int64_t nv = n / 4;
        for (int64_t i = tid; i < nv; i += stride) {
            float4 f = reinterpret_cast<float4*>(x)[i];
            f.x *= s; f.y *= s; f.z *= s; f.w *= s;
            reinterpret_cast<float4*>(x)[i] = f;
        }
        done = nv * 4;
    }
    for (int64_t i = done + tid; i < n; i += stride) x[i] *= s;
}

extern "C" int MT_FN(scale_f32)(float* x, float s, int64_t n, void* stream) {
    if (n < 0 || (n > 0 && !x)) return MT_ERR_ARG;
    if (n == 0) return MT_OK;
    if (mt_aligned16(x))
        mt_scale_f32_kernel<true><<<mt_grid_for(n / 4 + 1, 256), 256, 0, MT_STREAM(stream)>>>(x, s, n);
    else
        mt_scale_f32_kernel<false><<<mt_grid_for(n, 256), 256, 0, MT_STREAM(stream)>>>(x, s, n);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
