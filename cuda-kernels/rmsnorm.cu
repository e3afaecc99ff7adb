/* RMSNorm forward/backward, CUDA: fp32 statistics; dweight through fixed-order partials.
 *
 * Fast paths (C % 8 == 0, 16-byte aligned tensors, C <= MT_RMS_FAST_MAXC), one pass over memory each:
 *   forward:  a group of RW warps owns one row, holds it in registers (NCH 16-byte chunks per lane), reduces the sum of
 *             squares (lane -> warp butterfly -> the RW warp partials in warp order) and writes out from registers:
 *             inp is read once, out written once.
 *   backward: a block of 256 threads owns a chunk of consecutive rows (at most 256 chunks = the scratch size) and walks
 *             them in order, one row at a time across the whole block, prefetching the next row's dout/inp/dinp into
 *             registers while the current row reduces. Each thread owns fixed columns, so it accumulates its dweight
 *             partials in registers over the chunk's rows (in row order) and writes them once to scratch[chunk, c];
 *             a second small kernel sums the chunks per column in a fixed tree order. dout/inp/dinp are read once and
 *             dinp written once.
 * General path (any C, any alignment): one warp per row, looping over the columns.
 * All sums have a fixed order that depends only on (N, C): bitwise reproducible, no atomics. */
#include "mt_cuda.cuh"

#define MT_RMS_WARPS 8   /* rows (warps) per block of the general row kernels */

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

/* ============================================================================================ fast paths */

#define MT_RMS_FAST_THREADS 256                        /* 8 warps, both fast kernels */
#define MT_RMS_FAST_MAXC (8 * 8 * 32 * 8)              /* forward: NCH 8 x 32 lanes x RW 8 warps x 8 bf16 = 16384 */
#define MT_RMS_BWD_MAXC (4 * MT_RMS_FAST_THREADS * 8)  /* backward: NCH 4 chunks per thread x 256 threads x 8 = 8192 */

__device__ __forceinline__ void mt_unpack8(const uint4& u, float f[8]) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

__device__ __forceinline__ uint4 mt_pack8(const float f[8]) {
    uint4 u;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    return u;
}

/* Streaming 16-byte load (read once: do not keep in L1). */
__device__ __forceinline__ uint4 mt_ldg_stream(const floatX* p) { return __ldcs(reinterpret_cast<const uint4*>(p)); }

/* Forward fast path. Block = 8 warps = 8/RW rows; warp w serves row blockIdx.x*(8/RW) + w/RW as member w%RW of its
 * group. Lane `lane` of member `m` holds the 16-byte chunks (i*RW + m)*32 + lane, i < NCH, of the row (chunk = 8
 * consecutive bf16; chunks >= C/8 are zeros and never stored), so every load/store instruction of a group covers
 * 32*RW consecutive chunks (coalesced). Requires C/8 <= NCH*32*RW. */
template <int NCH, int RW>
__global__ void __launch_bounds__(MT_RMS_FAST_THREADS)
mt_rmsnorm_forward_fast_kernel(floatX* out, float* rstd, const floatX* inp, const floatX* weight, int N, int C, float eps) {
    static_assert(8 % RW == 0, "RW divides the 8 warps of a block");
    __shared__ float red[8];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, m = warp % RW;
    const int row = blockIdx.x * (8 / RW) + warp / RW;
    const bool live = row < N;                       /* no early return: the RW > 1 reduction has a __syncthreads */
    const int C8 = C >> 3;
    const floatX* x = inp + (int64_t)row * C;
    uint4 xr[NCH];
#pragma unroll
    for (int i = 0; i < NCH; i++) {                  /* all NCH loads in flight before the first use */
        const int ch = (i * RW + m) * 32 + lane;
        xr[i] = (live && ch < C8) ? mt_ldg_stream(x + ch * 8) : make_uint4(0u, 0u, 0u, 0u);
    }
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < NCH; i++) {
        float f[8];
        mt_unpack8(xr[i], f);
#pragma unroll
        for (int k = 0; k < 8; k++) ss += f[k] * f[k];
    }
    ss = mt_warp_sum(ss);
    if (RW > 1) {
        if (lane == 0) red[warp] = ss;
        __syncthreads();
        ss = 0.0f;
#pragma unroll
        for (int k = 0; k < RW; k++) ss += red[(warp / RW) * RW + k];   /* group members in order */
    }
    if (!live) return;
    const float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (m == 0 && lane == 0) rstd[row] = r;
    floatX* o = out + (int64_t)row * C;
#pragma unroll
    for (int i = 0; i < NCH; i++) {
        const int ch = (i * RW + m) * 32 + lane;
        if (ch < C8) {
            float f[8], w[8];
            mt_unpack8(xr[i], f);
            mt_load8(weight + ch * 8, w);            /* weight: 2C bytes shared by every row, stays in L1/L2 */
#pragma unroll
            for (int k = 0; k < 8; k++) f[k] = f[k] * r * w[k];
            __stcs(reinterpret_cast<uint4*>(o + ch * 8), mt_pack8(f));
        }
    }
}

/* Backward fast path, part 1. grid = chunks (<= 256) blocks of 256 threads; block k walks rows [k*rows, min(N,
 * (k+1)*rows)) in order. Thread tid owns chunks i*256 + tid (i < NCH) of every row (requires C/8 <= NCH*256).
 * Per row, with g = dout*weight:  dinp += rstd*g - rstd^3 * x * mean(g*x);  dw_partial[c] += dout*x*rstd (registers,
 * row order). The row sum of g*x: lane partials (chunk order) -> warp butterfly -> the 8 warp sums in warp order.
 * At the end scratch[k, c] = dw_partial[c] (=). */
template <int NCH>
__global__ void __launch_bounds__(MT_RMS_FAST_THREADS)
mt_rmsnorm_backward_fast_kernel(floatX* dinp, float* scratch, const floatX* dout, const floatX* inp, const floatX* weight,
                                const float* rstd, int N, int C, int rows_per_chunk) {
    __shared__ float red[2][8];                      /* double-buffered by row parity: one __syncthreads per row */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int C8 = C >> 3;
    const int r0 = blockIdx.x * rows_per_chunk;
    const int r1 = min(N, r0 + rows_per_chunk);
    float w[NCH][8], dw[NCH][8];
#pragma unroll
    for (int i = 0; i < NCH; i++) {
        const int ch = i * MT_RMS_FAST_THREADS + tid;
        if (ch < C8) mt_load8(weight + ch * 8, w[i]);
        else {
#pragma unroll
            for (int k = 0; k < 8; k++) w[i][k] = 0.0f;
        }
#pragma unroll
        for (int k = 0; k < 8; k++) dw[i][k] = 0.0f;
    }
    /* current row's raw data; the next row's is loaded at the top of each iteration */
    uint4 dr[NCH], xr[NCH], gr[NCH];
    float rs = 0.0f;
    const uint4 z = make_uint4(0u, 0u, 0u, 0u);
    if (r0 < r1) {
        rs = rstd[r0];
#pragma unroll
        for (int i = 0; i < NCH; i++) {
            const int ch = i * MT_RMS_FAST_THREADS + tid;
            const int64_t off = (int64_t)r0 * C + ch * 8;
            dr[i] = ch < C8 ? mt_ldg_stream(dout + off) : z;
            xr[i] = ch < C8 ? mt_ldg_stream(inp + off) : z;
            gr[i] = ch < C8 ? mt_ldg_stream(dinp + off) : z;
        }
    }
    for (int n = r0; n < r1; n++) {
        /* prefetch row n+1 (zeros past the chunk) */
        uint4 dn[NCH], xn[NCH], gn[NCH];
        float rn = 0.0f;
        const bool more = n + 1 < r1;
        if (more) rn = rstd[n + 1];
#pragma unroll
        for (int i = 0; i < NCH; i++) {
            const int ch = i * MT_RMS_FAST_THREADS + tid;
            const int64_t off = (int64_t)(n + 1) * C + ch * 8;
            const bool ok = more && ch < C8;
            dn[i] = ok ? mt_ldg_stream(dout + off) : z;
            xn[i] = ok ? mt_ldg_stream(inp + off) : z;
            gn[i] = ok ? mt_ldg_stream(dinp + off) : z;
        }
        /* row sum of dout*weight*x */
        float gx = 0.0f;
#pragma unroll
        for (int i = 0; i < NCH; i++) {
            float d[8], x[8];
            mt_unpack8(dr[i], d);
            mt_unpack8(xr[i], x);
#pragma unroll
            for (int k = 0; k < 8; k++) gx += d[k] * w[i][k] * x[k];
        }
        gx = mt_warp_sum(gx);
        if (lane == 0) red[n & 1][warp] = gx;
        __syncthreads();      /* also orders this row's red[] reads before row n+2 overwrites the same buffer */
        gx = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) gx += red[n & 1][k];
        const float k3 = rs * rs * rs * gx / (float)C;
#pragma unroll
        for (int i = 0; i < NCH; i++) {
            const int ch = i * MT_RMS_FAST_THREADS + tid;
            if (ch < C8) {
                float d[8], x[8], g[8];
                mt_unpack8(dr[i], d);
                mt_unpack8(xr[i], x);
                mt_unpack8(gr[i], g);
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    g[k] += rs * d[k] * w[i][k] - k3 * x[k];
                    dw[i][k] += d[k] * x[k] * rs;
                }
                __stcs(reinterpret_cast<uint4*>(dinp + (int64_t)n * C + ch * 8), mt_pack8(g));
            }
        }
#pragma unroll
        for (int i = 0; i < NCH; i++) {
            dr[i] = dn[i];
            xr[i] = xn[i];
            gr[i] = gn[i];
        }
        rs = rn;
    }
    float* part = scratch + (int64_t)blockIdx.x * C;
#pragma unroll
    for (int i = 0; i < NCH; i++) {
        const int ch = i * MT_RMS_FAST_THREADS + tid;
        if (ch < C8) {
            float4* p = reinterpret_cast<float4*>(part + ch * 8);   /* C % 8 == 0 and scratch from cudaMalloc: aligned */
            p[0] = make_float4(dw[i][0], dw[i][1], dw[i][2], dw[i][3]);
            p[1] = make_float4(dw[i][4], dw[i][5], dw[i][6], dw[i][7]);
        }
    }
}

/* Backward part 2: dweight[c] += sum_k scratch[k, c] over k = 0..chunks-1. grid = ceil(C/32), block = (32, 16):
 * threadIdx.x is the column, thread row y sums k = y, y+16, y+32, ... in order, then row 0 adds the 16 partials in
 * y order. The order depends only on `chunks`; all loads of a thread are independent (latency overlaps). */
__global__ void __launch_bounds__(512)
mt_rmsnorm_dweight_reduce_kernel(float* dweight, const float* scratch, int C, int chunks) {
    __shared__ float part[16][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (c < C) {
#pragma unroll 4
        for (int k = threadIdx.y; k < chunks; k += 16) s += scratch[(int64_t)k * C + c];
    }
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float t = 0.0f;
#pragma unroll
        for (int i = 0; i < 16; i++) t += part[i][threadIdx.x];
        dweight[c] += t;
    }
}

/* ============================================================================================== launchers */

/* Forward fast path dispatch: the smallest (NCH, RW) whose NCH*32*RW chunks cover the row. */
static bool mt_rmsnorm_forward_fast(floatX* out, float* rstd, const floatX* inp, const floatX* weight, int N, int C,
                                    float eps, cudaStream_t s) {
    const int C8 = C / 8;
#define MT_RMS_FWD(NCH, RW)                                                                                      \
    mt_rmsnorm_forward_fast_kernel<NCH, RW><<<(N + (8 / RW) - 1) / (8 / RW), MT_RMS_FAST_THREADS, 0, s>>>(      \
        out, rstd, inp, weight, N, C, eps)
    if (C8 <= 32) MT_RMS_FWD(1, 1);
    else if (C8 <= 64) MT_RMS_FWD(2, 1);
    else if (C8 <= 128) MT_RMS_FWD(4, 1);
    else if (C8 <= 256) MT_RMS_FWD(8, 1);
    else if (C8 <= 512) MT_RMS_FWD(8, 2);      /* C = 4096: 2 warps per row, 8 chunks (128 B) per lane */
    else if (C8 <= 1024) MT_RMS_FWD(8, 4);
    else if (C8 <= 2048) MT_RMS_FWD(8, 8);
    else return false;
#undef MT_RMS_FWD
    return true;
}

extern "C" int MT_FN(rmsnorm_forward)(floatX* out, float* rstd, const floatX* inp, const floatX* weight,
                                      int N, int C, float eps, void* stream) {
    if (N < 0 || C <= 0) return MT_ERR_ARG;
    if (N == 0) return MT_OK;
    if (!out || !rstd || !inp || !weight) return MT_ERR_ARG;
    cudaStream_t s = MT_STREAM(stream);
    const bool vec = C % 8 == 0 && mt_aligned16(out) && mt_aligned16(inp) && mt_aligned16(weight);
    if (!(vec && C <= MT_RMS_FAST_MAXC && mt_rmsnorm_forward_fast(out, rstd, inp, weight, N, C, eps, s))) {
        const int grid = (N + MT_RMS_WARPS - 1) / MT_RMS_WARPS;
        if (vec) mt_rmsnorm_forward_kernel<true><<<grid, 32 * MT_RMS_WARPS, 0, s>>>(out, rstd, inp, weight, N, C, eps);
        else mt_rmsnorm_forward_kernel<false><<<grid, 32 * MT_RMS_WARPS, 0, s>>>(out, rstd, inp, weight, N, C, eps);
    }
    MT_CHECK_LAUNCH();
    return MT_OK;
}

extern "C" int MT_FN(rmsnorm_backward)(floatX* dinp, float* dweight, float* scratch, const floatX* dout, const floatX* inp,
                                       const floatX* weight, const float* rstd, int N, int C, void* stream) {
    if (N < 0 || C <= 0) return MT_ERR_ARG;
    if (N == 0) return MT_OK;
    if (!dinp || !dweight || !scratch || !dout || !inp || !weight || !rstd) return MT_ERR_ARG;
    cudaStream_t s = MT_STREAM(stream);
    /* at most 256 chunks: the scratch holds MT_RMSNORM_BWD_SCRATCH_FLOATS = 256 * C floats */
    const int rows = (N + 255) / 256;
    const int chunks = (N + rows - 1) / rows;
    const bool vec = C % 8 == 0 && mt_aligned16(dinp) && mt_aligned16(dout) && mt_aligned16(inp) && mt_aligned16(weight)
                     && mt_aligned16(scratch);
    if (vec && C <= MT_RMS_BWD_MAXC) {
        const int C8 = C / 8;
        if (C8 <= MT_RMS_FAST_THREADS)
            mt_rmsnorm_backward_fast_kernel<1><<<chunks, MT_RMS_FAST_THREADS, 0, s>>>(dinp, scratch, dout, inp, weight, rstd, N, C, rows);
        else if (C8 <= 2 * MT_RMS_FAST_THREADS)   /* C = 4096: 2 chunks (16 columns) per thread */
            mt_rmsnorm_backward_fast_kernel<2><<<chunks, MT_RMS_FAST_THREADS, 0, s>>>(dinp, scratch, dout, inp, weight, rstd, N, C, rows);
        else
            mt_rmsnorm_backward_fast_kernel<4><<<chunks, MT_RMS_FAST_THREADS, 0, s>>>(dinp, scratch, dout, inp, weight, rstd, N, C, rows);
        MT_CHECK_LAUNCH();
    } else {
        const int grid = (N + MT_RMS_WARPS - 1) / MT_RMS_WARPS;
        if (vec) mt_rmsnorm_backward_dinp_kernel<true><<<grid, 32 * MT_RMS_WARPS, 0, s>>>(dinp, dout, inp, weight, rstd, N, C);
        else mt_rmsnorm_backward_dinp_kernel<false><<<grid, 32 * MT_RMS_WARPS, 0, s>>>(dinp, dout, inp, weight, rstd, N, C);
        MT_CHECK_LAUNCH();
        mt_rmsnorm_dweight_partial_kernel<<<dim3((C + 31) / 32, chunks), dim3(32, 8), 0, s>>>(scratch, dout, inp, rstd, N, C, rows);
        MT_CHECK_LAUNCH();
    }
    mt_rmsnorm_dweight_reduce_kernel<<<(C + 31) / 32, dim3(32, 16), 0, s>>>(dweight, scratch, C, chunks);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
