/* SwiGLU forward/backward on the fused gate|up GEMM output, CUDA. */
#include "mt_cuda.cuh"

__device__ __forceinline__ float mt_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* One thread handles K consecutive columns f..f+K-1 (< F) of one row n.
 * K = 8 needs F % 8 == 0 and every tensor 16-byte aligned (then the gate and up halves of each row are aligned). */
template <int K, bool BACKWARD>
__global__ void mt_swiglu_kernel(floatX* outp, const floatX* dout, const floatX* gateup, int N, int F) {
    const int groups = F / K;
    const int64_t total = (int64_t)N * groups;
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < total; j += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = j / groups;
        const int f = (int)(j % groups) * K;
        const floatX* gp = gateup + n * 2 * F + f;        /* gate[n, f..] */
        const floatX* up = gp + F;                        /* up[n, f..]   */
        float g[K], u[K], d[K], y[K], y2[K];
        if (K == 8) {
            mt_load8(gp, g);
            mt_load8(up, u);
            if (BACKWARD) mt_load8(dout + n * F + f, d);
        } else {
#pragma unroll
            for (int k = 0; k < K; k++) {
                g[k] = __bfloat162float(gp[k]);
                u[k] = __bfloat162float(up[k]);
                if (BACKWARD) d[k] = __bfloat162float(dout[n * F + f + k]);
            }
        }
#pragma unroll
        for (int k = 0; k < K; k++) {
            const float sg = mt_sigmoid(g[k]);
            const float silu = g[k] * sg;
            if (BACKWARD) {
                y[k] = d[k] * u[k] * sg * (1.0f + g[k] * (1.0f - sg));   /* dgate = dout * up * silu'(gate) */
                y2[k] = d[k] * silu;                                       /* dup = dout * silu(gate) */
            } else {
                y[k] = silu * u[k];
            }
        }
        if (BACKWARD) {
            floatX* dg = outp + n * 2 * F + f;
            if (K == 8) {
                mt_store8(dg, y);
                mt_store8(dg + F, y2);
            } else {
#pragma unroll
                for (int k = 0; k < K; k++) { dg[k] = __float2bfloat16_rn(y[k]); dg[F + k] = __float2bfloat16_rn(y2[k]); }
            }
        } else {
            floatX* o = outp + n * F + f;
            if (K == 8) mt_store8(o, y);
            else {
#pragma unroll
                for (int k = 0; k < K; k++) o[k] = __float2bfloat16_rn(y[k]);
            }
        }
    }
}

extern "C" int MT_FN(swiglu_forward)(floatX* out, const floatX* gateup, int N, int F, void* stream) {
    if (N < 0 || F < 0) return MT_ERR_ARG;
    const int64_t total = (int64_t)N * F;
    if (total == 0) return MT_OK;
    if (!out || !gateup) return MT_ERR_ARG;
    if (F % 8 == 0 && mt_aligned16(out) && mt_aligned16(gateup))
        mt_swiglu_kernel<8, false><<<mt_grid_for(total / 8, 256), 256, 0, MT_STREAM(stream)>>>(out, nullptr, gateup, N, F);
    else
        mt_swiglu_kernel<1, false><<<mt_grid_for(total, 256), 256, 0, MT_STREAM(stream)>>>(out, nullptr, gateup, N, F);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

extern "C" int MT_FN(swiglu_backward)(floatX* dgateup, const floatX* dout, const floatX* gateup, int N, int F, void* stream) {
    if (N < 0 || F < 0) return MT_ERR_ARG;
    const int64_t total = (int64_t)N * F;
    if (total == 0) return MT_OK;
    if (!dgateup || !dout || !gateup) return MT_ERR_ARG;
    if (F % 8 == 0 && mt_aligned16(dgateup) && mt_aligned16(dout) && mt_aligned16(gateup))
        mt_swiglu_kernel<8, true><<<mt_grid_for(total / 8, 256), 256, 0, MT_STREAM(stream)>>>(dgateup, dout, gateup, N, F);
    else
        mt_swiglu_kernel<1, true><<<mt_grid_for(total, 256), 256, 0, MT_STREAM(stream)>>>(dgateup, dout, gateup, N, F);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
