/* Meta, fill, copy and cast kernels of the CUDA implementation (floatX = bf16). */
#include "mt_cuda.cuh"
#include <cstdio>

extern "C" int MT_FN(backend_id)(void) { return 1; }
extern "C" int MT_FN(floatx_bytes)(void) { return (int)sizeof(floatX); }
extern "C" int MT_FN(set_num_threads)(int n) { return n < 1 ? MT_ERR_ARG : MT_OK; }   /* host threads: nothing to set */

extern "C" int MT_FN(describe)(char* out, int64_t n) {
    if (!out || n < 1) return MT_ERR_ARG;
    int dev = 0;
    cudaDeviceProp p;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
        snprintf(out, (size_t)n, "CUDA: no usable device");
        return MT_OK;
    }
    snprintf(out, (size_t)n, "CUDA device %d: %s, compute capability %d.%d, %d SMs", dev, p.name, p.major, p.minor,
             p.multiProcessorCount);
    return MT_OK;
}

/* x[n] = value, grid-stride. */
__global__ void mt_fill_f32_kernel(float* x, float value, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = value;
}

__global__ void mt_fill_x_kernel(floatX* x, floatX value, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = value;
}

extern "C" int MT_FN(fill_f32)(float* x, float value, int64_t n, void* stream) {
    if (n < 0 || (n > 0 && !x)) return MT_ERR_ARG;
    if (n == 0) return MT_OK;
    mt_fill_f32_kernel<<<mt_grid_for(n, 256), 256, 0, MT_STREAM(stream)>>>(x, value, n);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

extern "C" int MT_FN(fill_x)(floatX* x, float value, int64_t n, void* stream) {
    if (n < 0 || (n > 0 && !x)) return MT_ERR_ARG;
    if (n == 0) return MT_OK;
    mt_fill_x_kernel<<<mt_grid_for(n, 256), 256, 0, MT_STREAM(stream)>>>(x, __float2bfloat16_rn(value), n);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

extern "C" int MT_FN(copy_bytes)(void* dst, const void* src, int64_t bytes, void* stream) {
    if (bytes < 0 || (bytes > 0 && (!dst || !src))) return MT_ERR_ARG;
    if (bytes == 0) return MT_OK;
    if (cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToDevice, MT_STREAM(stream)) != cudaSuccess) {
        cudaGetLastError();   /* clear the non-sticky error so the next launch check is not misattributed */
        return MT_ERR_LAUNCH;
    }
    return MT_OK;
}

/* out[n] = bf16(inp[n]); VEC: 4 floats in (16 B), 4 bf16 out (8 B) per step, then a scalar tail. */
template <bool VEC>
__global__ void mt_cast_f32_to_x_kernel(floatX* out, const float* inp, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (VEC) {
        const int64_t nv = n / 4;
        for (int64_t i = tid; i < nv; i += stride) {
            float4 f = reinterpret_cast<const float4*>(inp)[i];
            __nv_bfloat162 lo = __floats2bfloat162_rn(f.x, f.y), hi = __floats2bfloat162_rn(f.z, f.w);
            uint2 u;
            u.x = *reinterpret_cast<uint32_t*>(&lo);
            u.y = *reinterpret_cast<uint32_t*>(&hi);
            reinterpret_cast<uint2*>(out)[i] = u;
        }
        done = nv * 4;
    }
    for (int64_t i = done + tid; i < n; i += stride) out[i] = __float2bfloat16_rn(inp[i]);
}

/* out[n] = float(inp[n]); VEC: 8 bf16 in (16 B), 8 floats out (2 x 16 B). */
template <bool VEC>
__global__ void mt_cast_x_to_f32_kernel(float* out, const floatX* inp, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (VEC) {
        const int64_t nv = n / 8;
        for (int64_t i = tid; i < nv; i += stride) {
            float f[8];
            mt_load8(inp + 8 * i, f);
            reinterpret_cast<float4*>(out)[2 * i] = make_float4(f[0], f[1], f[2], f[3]);
            reinterpret_cast<float4*>(out)[2 * i + 1] = make_float4(f[4], f[5], f[6], f[7]);
        }
        done = nv * 8;
    }
    for (int64_t i = done + tid; i < n; i += stride) out[i] = __bfloat162float(inp[i]);
}

extern "C" int MT_FN(cast_f32_to_x)(floatX* out, const float* inp, int64_t n, void* stream) {
    if (n < 0 || (n > 0 && (!out || !inp))) return MT_ERR_ARG;
    if (n == 0) return MT_OK;
    if (mt_aligned16(inp) && mt_aligned8(out))
        mt_cast_f32_to_x_kernel<true><<<mt_grid_for(n / 4 + 1, 256), 256, 0, MT_STREAM(stream)>>>(out, inp, n);
    else
        mt_cast_f32_to_x_kernel<false><<<mt_grid_for(n, 256), 256, 0, MT_STREAM(stream)>>>(out, inp, n);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

extern "C" int MT_FN(cast_x_to_f32)(float* out, const floatX* inp, int64_t n, void* stream) {
    if (n < 0 || (n > 0 && (!out || !inp))) return MT_ERR_ARG;
    if (n == 0) return MT_OK;
    if (mt_aligned16(inp) && mt_aligned16(out))
        mt_cast_x_to_f32_kernel<true><<<mt_grid_for(n / 8 + 1, 256), 256, 0, MT_STREAM(stream)>>>(out, inp, n);
    else
        mt_cast_x_to_f32_kernel<false><<<mt_grid_for(n, 256), 256, 0, MT_STREAM(stream)>>>(out, inp, n);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
