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

#define MT_EMB_BWD_PARTS 64   /* (general path) vocabulary partitions: block (x, y) owns rows v with v % PARTS == y */
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

/* Fast deterministic backward (C % 8 == 0, dout and dwte 16-byte aligned). Vocabulary parts as above, but each block
 * first compacts the positions of its own part's tokens into a list in token order (a fixed-order block prefix sum,
 * no atomics), so no thread scans all N tokens per column. grid = (ceil(C / 1024), MT_EMB_VEC_PARTS), 128 threads;
 * thread i owns the 8 columns c = (blockIdx.x*128 + i)*8 .. +7 of every vocabulary row of the block's part, and
 * element (v, c) is therefore updated by exactly one thread, in token order: bitwise the CPU's sequential result.
 * The list is processed MT_EMB_VEC_U entries at a time: all their dout/dwte loads are issued before the adds; a group
 * that holds the same id twice (block-uniform test) is processed one entry at a time, load-add-store in order. */
#define MT_EMB_VEC_PARTS 128    /* power of two: part = id & (PARTS - 1) */
#define MT_EMB_VEC_THREADS 128
#define MT_EMB_VEC_PER 16       /* tokens per thread per compaction pass */
#define MT_EMB_VEC_TCH (MT_EMB_VEC_THREADS * MT_EMB_VEC_PER)
#define MT_EMB_VEC_U 8          /* list entries in flight per thread */

__device__ __forceinline__ void mt_emb_add_row(float* w, const floatX* d) {
    float4* wp = reinterpret_cast<float4*>(w);
    float f[8];
    mt_load8(d, f);
    float4 a = wp[0], b = wp[1];
    a.x += f[0]; a.y += f[1]; a.z += f[2]; a.w += f[3];
    b.x += f[4]; b.y += f[5]; b.z += f[6]; b.w += f[7];
    wp[0] = a;
    wp[1] = b;
}

__global__ void __launch_bounds__(MT_EMB_VEC_THREADS)
mt_embedding_backward_vec_kernel(float* dwte, const int32_t* tokens, const floatX* __restrict__ dout, int N, int C, int V) {
    __shared__ int lpos[MT_EMB_VEC_TCH];
    __shared__ int lid[MT_EMB_VEC_TCH];
    __shared__ int wsum[MT_EMB_VEC_THREADS / 32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int part = blockIdx.y;
    const int c = (blockIdx.x * MT_EMB_VEC_THREADS + tid) * 8;
    const bool live = c < C;
    for (int n0 = 0; n0 < N; n0 += MT_EMB_VEC_TCH) {
        const int n1 = min(N, n0 + MT_EMB_VEC_TCH);
        /* 1. this thread's tokens n0 + tid*PER .. +PER-1 (in order); -1 = not ours */
        int ids[MT_EMB_VEC_PER];
        int cnt = 0;
#pragma unroll
        for (int k = 0; k < MT_EMB_VEC_PER; k++) {
            const int n = n0 + tid * MT_EMB_VEC_PER + k;
            int t = n < n1 ? mt_clamp_token(tokens[n], V) : -1;
            if (t >= 0 && (t & (MT_EMB_VEC_PARTS - 1)) != part) t = -1;
            ids[k] = t;
            cnt += t >= 0;
        }
        /* 2. exclusive prefix sum of cnt in thread order: warp inclusive scan, then the warp totals in warp order */
        int incl = cnt;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const int v = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += v;
        }
        if (lane == 31) wsum[warp] = incl;
        __syncthreads();
        int pos = incl - cnt, total = 0;
#pragma unroll
        for (int w = 0; w < MT_EMB_VEC_THREADS / 32; w++) {
            if (w < warp) pos += wsum[w];
            total += wsum[w];
        }
        /* 3. the block's list, in token order */
#pragma unroll
        for (int k = 0; k < MT_EMB_VEC_PER; k++) {
            if (ids[k] >= 0) {
                lpos[pos] = n0 + tid * MT_EMB_VEC_PER + k;
                lid[pos] = ids[k];
                pos++;
            }
        }
        __syncthreads();
        /* 4. dwte[id, c..c+7] += dout[n, c..c+7] for the list entries in order */
        if (live) {
            for (int i0 = 0; i0 < total; i0 += MT_EMB_VEC_U) {
                const int u = min(MT_EMB_VEC_U, total - i0);
                int tk[MT_EMB_VEC_U], pn[MT_EMB_VEC_U];
                bool dup = false;
#pragma unroll
                for (int j = 0; j < MT_EMB_VEC_U; j++) {
                    tk[j] = j < u ? lid[i0 + j] : -1 - j;             /* distinct dummies past u */
                    pn[j] = j < u ? lpos[i0 + j] : 0;
#pragma unroll
                    for (int i = 0; i < j; i++) dup |= tk[i] == tk[j];
                }
                if (!dup) {                                           /* distinct rows: all loads in flight together */
                    uint4 d[MT_EMB_VEC_U];
                    float4 wa[MT_EMB_VEC_U], wb[MT_EMB_VEC_U];
#pragma unroll
                    for (int j = 0; j < MT_EMB_VEC_U; j++) {
                        if (j < u) {
                            d[j] = __ldg(reinterpret_cast<const uint4*>(dout + (int64_t)pn[j] * C + c));
                            const float4* wp = reinterpret_cast<const float4*>(dwte + (int64_t)tk[j] * C + c);
                            wa[j] = wp[0];
                            wb[j] = wp[1];
                        }
                    }
#pragma unroll
                    for (int j = 0; j < MT_EMB_VEC_U; j++) {
                        if (j < u) {
                            float f[8];
                            const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&d[j]);
#pragma unroll
                            for (int q = 0; q < 4; q++) {
                                const float2 t2 = __bfloat1622float2(h[q]);
                                f[2 * q] = t2.x;
                                f[2 * q + 1] = t2.y;
                            }
                            wa[j].x += f[0]; wa[j].y += f[1]; wa[j].z += f[2]; wa[j].w += f[3];
                            wb[j].x += f[4]; wb[j].y += f[5]; wb[j].z += f[6]; wb[j].w += f[7];
                            float4* wp = reinterpret_cast<float4*>(dwte + (int64_t)tk[j] * C + c);
                            wp[0] = wa[j];
                            wp[1] = wb[j];
                        }
                    }
                } else {                                              /* a repeated id: strictly sequential */
                    for (int j = 0; j < u; j++)
                        mt_emb_add_row(dwte + (int64_t)lid[i0 + j] * C + c, dout + (int64_t)lpos[i0 + j] * C + c);
                }
            }
        }
        __syncthreads();                                              /* the list and wsum are rebuilt next pass */
    }
}

extern "C" int MT_FN(embedding_backward)(float* dwte, const int32_t* tokens, const floatX* dout, int N, int C, int V, void* stream) {
    if (N < 0 || C < 0 || V < 0 || (N > 0 && V == 0) || ((int64_t)N * C > 0 && (!dwte || !tokens || !dout))) return MT_ERR_ARG;
    if (N == 0 || C == 0) return MT_OK;
    if (C % 8 == 0 && mt_aligned16(dwte) && mt_aligned16(dout)) {
        dim3 grid((C / 8 + MT_EMB_VEC_THREADS - 1) / MT_EMB_VEC_THREADS, MT_EMB_VEC_PARTS);
        mt_embedding_backward_vec_kernel<<<grid, MT_EMB_VEC_THREADS, 0, MT_STREAM(stream)>>>(dwte, tokens, dout, N, C, V);
    } else {
        const int threads = 256;
        dim3 grid((C + threads - 1) / threads, MT_EMB_BWD_PARTS);
        mt_embedding_backward_kernel<<<grid, threads, 0, MT_STREAM(stream)>>>(dwte, tokens, dout, N, C, V);
    }
    MT_CHECK_LAUNCH();
    return MT_OK;
}
