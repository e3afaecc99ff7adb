/* RMSNorm forward/backward, CUDA: one warp per row, fp32 statistics; dweight through fixed-order partials. */
#include "mt_cuda.cuh"

#define MT_RMS_WARPS 8   /* rows (warps) per block of the row kernels */

/* out[n,:] = inp[n,:] * rstd[n] * weight;  rstd[n] = 1/sqrt(mean(inp[n,:]^2) + eps).
 * One warp per row. VEC: C % 8 == 0 and out/inp/weight 16-byte aligned (then every row start is aligned). */
template <bool VEC>
__global__ void mt_rmsnorm_forward_kernel(floatX* out, float* rstd, const floatX* inp, const floatX* weight,
                                          int N, int C, float eps) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= N) return;                          /* uniform per warp: the shuffles below stay full-warp */
    const floatX* x = inp + (int64_t)row * C;
    floatX* o = out + (int64_t)row * C;
    float ss = 0.0f;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 32 * 8) {
            float f[8];
            mt_load8(x + c, f);
#pragma unroll
            for (int i = 0; i < 8; i++) ss += f[i] * f[i];
        }
    } else {
        for (int c = lane; c < C; c += 32) {
            float f = __bfloat162float(x[c]);
            ss += f * f;
        }
    }
    ss = mt_warp_sum(ss);
    const float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (lane == 0) rstd[row] = r;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 32 * 8) {
            float f[8], w[8], y[8];
            mt_load8(x + c, f);
            mt_load8(weight + c, w);
#pragma unroll
            for (int i = 0; i < 8; i++) y[i] = f[i] * r * w[i];
            mt_store8(o + c, y);
        }
    } else {
        for (int c = lane; c < C; c += 32)
            o[c] = __float2bfloat16_rn(__bfloat162float(x[c]) * r * __bfloat162float(weight[c]));
    }
}

/* dinp[n,:] += rstd * g - rstd^3 * x * mean(g * x), g = dout * weight.  One warp per row; same VEC rule. */
template <bool VEC>
__global__ void mt_rmsnorm_backward_dinp_kernel(floatX* dinp, const floatX* dout, const floatX* inp, const floatX* weight,
                                                const float* rstd, int N, int C) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= N) return;
    const floatX* x = inp + (int64_t)row * C;
    const floatX* d = dout + (int64_t)row * C;
    floatX* dx = dinp + (int64_t)row * C;
    const float r = rstd[row];
    float gx = 0.0f;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 32 * 8) {
            float xf[8], df[8], wf[8];
            mt_load8(x + c, xf);
            mt_load8(d + c, df);
            mt_load8(weight + c, wf);
#pragma unroll
            for (int i = 0; i < 8; i++) gx += df[i] * wf[i] * xf[i];
        }
    } else {
        for (int c = lane; c < C; c += 32)
            gx += __bfloat162float(d[c]) * __bfloat162float(weight[c]) * __bfloat162float(x[c]);
    }
    gx = mt_warp_sum(gx);
    const float k3 = r * r * r * gx / (float)C;
    if (VEC) {
        for (int c = lane * 8; c < C; c += 32 * 8) {
            float xf[8], df[8], wf[8], of[8];
            mt_load8(x + c, xf);
            mt_load8(d + c, df);
            mt_load8(weight + c, wf);
            mt_load8(dx + c, of);
#pragma unroll
            for (int i = 0; i < 8; i++) of[i] += r * df[i] * wf[i] - k3 * xf[i];
            mt_store8(dx + c, of);
        }
    } else {
        for (int c = lane; c < C; c += 32) {
            float v = __bfloat162float(dx[c]) + r * __bfloat162float(d[c]) * __bfloat162float(weight[c])
                      - k3 * __bfloat162float(x[c]);
            dx[c] = __float2bfloat16_rn(v);
        }
    }
}

/* scratch[k, c] = sum over rows n of chunk k of dout[n,c] * inp[n,c] * rstd[n].
 * grid = (ceil(C/32), chunks), block = (32, 8): threadIdx.x is the column, threadIdx.y a row lane; the 8 lane partials
 * are summed in lane order, so the result depends only on N and C. */
__global__ void mt_rmsnorm_dweight_partial_kernel(float* scratch, const floatX* dout, const floatX* inp, const float* rstd,
                                                  int N, int C, int rows_per_chunk) {
    __shared__ float part[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    const int k = blockIdx.y;
    const int r0 = k * rows_per_chunk;
    const int r1 = min(N, r0 + rows_per_chunk);
    float acc = 0.0f;
    if (c < C) {
        for (int n = r0 + threadIdx.y; n < r1; n += 8) {
            const int64_t i = (int64_t)n * C + c;
            acc += __bfloat162float(dout[i]) * __bfloat162float(inp[i]) * rstd[n];
        }
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) s += part[i][threadIdx.x];
        scratch[(int64_t)k * C + c] = s;
    }
}

/* dweight[c] += sum_k scratch[k, c], k = 0..chunks-1 in order. */
__global__ void mt_rmsnorm_dweight_final_kernel(float* dweight, const float* scratch, int C, int chunks) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += scratch[(int64_t)k * C + c];
    dweight[c] += s;
}

extern "C" int MT_FN(rmsnorm_forward)(floatX* out, float* rstd, const floatX* inp, const floatX* weight,
                                      int N, int C, float eps, void* stream) {
    if (N < 0 || C <= 0) return MT_ERR_ARG;
    if (N == 0) return MT_OK;
    if (!out || !rstd || !inp || !weight) return MT_ERR_ARG;
    const int grid = (N + MT_RMS_WARPS - 1) / MT_RMS_WARPS;
    if (C % 8 == 0 && mt_aligned16(out) && mt_aligned16(inp) && mt_aligned16(weight))
        mt_rmsnorm_forward_kernel<true><<<grid, 32 * MT_RMS_WARPS, 0, MT_STREAM(stream)>>>(out, rstd, inp, weight, N, C, eps);
    else
        mt_rmsnorm_forward_kernel<false><<<grid, 32 * MT_RMS_WARPS, 0, MT_STREAM(stream)>>>(out, rstd, inp, weight, N, C, eps);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

extern "C" int MT_FN(rmsnorm_backward)(floatX* dinp, float* dweight, float* scratch, const floatX* dout, const floatX* inp,
                                       const floatX* weight, const float* rstd, int N, int C, void* stream) {
    if (N < 0 || C <= 0) return MT_ERR_ARG;
    if (N == 0) return MT_OK;
    if (!dinp || !dweight || !scratch || !dout || !inp || !weight || !rstd) return MT_ERR_ARG;
    cudaStream_t s = MT_STREAM(stream);
    const int grid = (N + MT_RMS_WARPS - 1) / MT_RMS_WARPS;
    if (C % 8 == 0 && mt_aligned16(dinp) && mt_aligned16(dout) && mt_aligned16(inp) && mt_aligned16(weight))
        mt_rmsnorm_backward_dinp_kernel<true><<<grid, 32 * MT_RMS_WARPS, 0, s>>>(dinp, dout, inp, weight, rstd, N, C);
    else
        mt_rmsnorm_backward_dinp_kernel<false><<<grid, 32 * MT_RMS_WARPS, 0, s>>>(dinp, dout, inp, weight, rstd, N, C);
    MT_CHECK_LAUNCH();
    /* at most 256 chunks: the scratch holds MT_RMSNORM_BWD_SCRATCH_FLOATS = 256 * C floats */
    const int rows = (N + 255) / 256;
    const int chunks = (N + rows - 1) / rows;
    mt_rmsnorm_dweight_partial_kernel<<<dim3((C + 31) / 32, chunks), dim3(32, 8), 0, s>>>(scratch, dout, inp, rstd, N, C, rows);
    MT_CHECK_LAUNCH();
    mt_rmsnorm_dweight_final_kernel<<<(C + 255) / 256, 256, 0, s>>>(dweight, scratch, C, chunks);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
