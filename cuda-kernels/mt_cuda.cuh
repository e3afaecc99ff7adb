/* Private header of the CUDA implementation: floatX = __nv_bfloat16 (storage), fp32 math and accumulation.
 *
 * Rules every launcher in cuda-kernels/ follows:
 *   - validate sizes/pointers first (MT_ERR_ARG), return MT_OK without launching when there is no work
 *     (a zero-sized grid is itself a launch error);
 *   - enqueue on the caller's stream only (MT_STREAM), never synchronise;
 *   - check cudaGetLastError after the launches (MT_ERR_LAUNCH);
 *   - 128-bit vector paths only when every pointer is 16-byte aligned and the row length allows it, with a scalar
 *     path for everything else (odd C, offset views);
 *   - no atomics: every reduction has a fixed order, so results are bitwise reproducible for fixed sizes. */
#ifndef MT_CUDA_CUH
#define MT_CUDA_CUH

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <stdint.h>
#include <math.h>

typedef __nv_bfloat16 floatX;
#define MT_FLOATX_DEFINED
#include "midtrain_kernels.h"

#define MT_STREAM(s) ((cudaStream_t)(s))

/* Returns MT_ERR_LAUNCH from the enclosing launcher when the last launch failed. */
#define MT_CHECK_LAUNCH()                                                   \
    do {                                                                    \
        if (cudaGetLastError() != cudaSuccess) return MT_ERR_LAUNCH;        \
    } while (0)

/* Grid-stride launches are capped at this many blocks (enough to fill any current GPU several times). */
#define MT_MAX_BLOCKS 65535

static inline int mt_grid_for(int64_t work_items, int threads) {
    int64_t blocks = (work_items + threads - 1) / threads;
    if (blocks < 1) blocks = 1;
    if (blocks > MT_MAX_BLOCKS) blocks = MT_MAX_BLOCKS;
    return (int)blocks;
}

static inline bool mt_aligned16(const void* p) { return ((uintptr_t)p & 15u) == 0; }
static inline bool mt_aligned8(const void* p) { return ((uintptr_t)p & 7u) == 0; }

/* ------------------------------------------------------------------------------------------- device helpers */

/* 8 bf16 <-> 8 floats through one 128-bit access. p must be 16-byte aligned. */
__device__ __forceinline__ void mt_load8(const floatX* p, float out[8]) {
    uint4 u = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(h[i]);
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}

__device__ __forceinline__ void mt_store8(floatX* p, const float in[8]) {
    uint4 u;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
    *reinterpret_cast<uint4*>(p) = u;
}

__device__ __forceinline__ float mt_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float mt_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide sum, fixed order (warp butterflies, then warp 0 over the warp partials). Every thread of the block
 * must call it; blockDim.x must be a multiple of 32 and at most 1024. The result is returned to every thread.
 * `shared32` is caller-provided __shared__ float[32]. */
__device__ __forceinline__ float mt_block_sum(float v, float* shared32) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = mt_warp_sum(v);
    __syncthreads();                       /* shared32 may still be read by a previous call */
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    float t = (lane < nwarps) ? shared32[lane] : 0.0f;
    t = mt_warp_sum(t);
    return t;
}

#endif /* MT_CUDA_CUH */
