/* Causal grouped-query attention, CUDA, the tensor-core path (HD 64 and 128, 16-byte aligned tensors, sm_80+):
 * FlashAttention-2 style tiles (mma.sync m16n8k16 bf16, fp32 accumulate), online softmax in the log2 domain.
 * Backward: D = rowsum(dO*O) into scratch, then one kernel computing dK,dV per key tile (looping over the group's query
 * heads and the query tiles in order) and one computing dQ per query tile (looping over key tiles in order): ldmatrix,
 * swizzled shared memory, cp.async double buffering (benchmarks/gpu/fa2_lane_model.py models them lane by lane). The
 * first, simpler tensor-core kernels were replaced by these after measuring on an H100 (2.4x faster); git history
 * keeps them. Deterministic: no atomics, fixed summation orders. The entry points are in attention.cu. */
#include "attention.cuh"

/* ================================================================================================ helpers */

/* D[m16 x n8] += A[m16 x k16] * B[k16 x n8], bf16 inputs, fp32 accumulators. Fragment layouts (PTX ISA, lane =
 * 4*g + tig, g = lane/4, tig = lane%4):
 *   A: a0 = (row g,   k 2tig..2tig+1)  a1 = (row g+8, k 2tig..)  a2 = (row g, k 2tig+8..)  a3 = (row g+8, k 2tig+8..)
 *   B: b0 = (k 2tig..2tig+1, col g)    b1 = (k 2tig+8..2tig+9, col g)
 *   C: c0 = (row g, col 2tig)  c1 = (row g, col 2tig+1)  c2 = (row g+8, col 2tig)  c3 = (row g+8, col 2tig+1)
 * A register holds two bf16, the lower k index in the low half (the order of a 32-bit load from memory). */
__device__ __forceinline__ void mt_mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t mt_pack_bf16(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
}

/* ========================================================================================== kernels */

/* Compile-time switch (no environment knob); the simple path stays selectable at run time with MT_CUDA_ATTN=simple. */
#ifndef MT_ATTN_FWD_KS64
#define MT_ATTN_FWD_KS64 1    /* 1 = 64-key softmax steps at HD 128 (see MtFa2Fwd::KS), 0 = 32-key steps */
#endif
#if MT_ATTN_FWD_KS64 && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900)
#define MT_FWD_KS_WIDE 1
#else
#define MT_FWD_KS_WIDE 0
#endif

/* Shared-memory tiles of the FA2 kernels are row-major [rows][HD] bf16 without padding, in 16-byte chunks of 8
 * elements (HD/8 chunks per row), with the XOR swizzle  physical chunk = chunk ^ (row & 7).  Every access below is
 * one of: an ldmatrix phase (8 lanes reading one 16-byte chunk column of 8 consecutive rows r..r+7, r % 8 == 0),
 * a 16-byte cp.async/vector access of a warp running along a row, or a 4-byte store of 8 rows x 4 lanes in one chunk
 * column. The swizzle maps the 8 rows of a chunk column to 8 distinct chunk positions modulo 8, i.e. to all 32 banks,
 * so none of them has bank conflicts. Requires HD >= 64 (at least 8 chunks per row). */
template <int HD>
__device__ __forceinline__ int mt_swz(int row, int chunk) {
    return row * HD + ((chunk ^ (row & 7)) << 3);
}

__device__ __forceinline__ uint32_t mt_smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 2^x in one MUFU.EX2 (exp2f adds range scaling for subnormal results; here those flush to 0, which a softmax
 * probability < 2^-126 may: P is rounded to bf16 for the MMAs anyway). exp2(-inf) = 0. */
__device__ __forceinline__ float mt_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* ldmatrix addressing in a swizzled tile, in bytes. A lane reads row R (with R % 8 == lane % 8 for every access pattern
 * used here) and chunk 2k + x (x = 0/1 per lane, k a compile-time step). Because 32k and 16x occupy disjoint bits and
 * the swizzle (R % 8) * 16 occupies bits 4..6:  ((2k + x) ^ (R % 8)) * 16 = ((k % 4) * 32 ^ c) + (k / 4) * 128 with the
 * per-lane constant c = 16x ^ 16(R % 8). MtSwzLane holds the four values (k%4)*32 ^ c, so that every ldmatrix address
 * is a register plus an immediate and no address arithmetic sits in the inner loops. */
struct MtSwzLane {
    uint32_t v[4];
    __device__ __forceinline__ MtSwzLane(int x, int lane) {
        const uint32_t c = (uint32_t)((x << 4) ^ ((lane & 7) << 4));
#pragma unroll
        for (int i = 0; i < 4; i++) v[i] = ((uint32_t)i * 32u) ^ c;
    }
    /* byte offset of chunk 2k + x within the row */
    __device__ __forceinline__ uint32_t at(int k) const { return v[k & 3] + (uint32_t)(k >> 2) * 128u; }
};

/* ldmatrix .x4: lanes 8i..8i+7 give the row addresses (16 bytes each) of 8x8 bf16 matrix i; register i of lane l
 * receives row l/4, columns 2(l%4), 2(l%4)+1 of matrix i (low half = lower column).  .trans: register i of lane l
 * receives rows 2(l%4), 2(l%4)+1 of column l/4 (low half = lower row). */
__device__ __forceinline__ void mt_ldsm_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void mt_ldsm_x4_t(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

/* 16-byte global -> shared copy that bypasses the registers (and L1); valid == false writes 16 zero bytes (src-size 0,
 * nothing is read: the caller still passes an in-bounds address). */
__device__ __forceinline__ void mt_cp_async16(uint32_t dst, const void* src, bool valid) {
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
}
__device__ __forceinline__ void mt_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void mt_cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

/* Copies rows [row0, row0+ROWS) (sequence positions) of one head into a swizzled [ROWS][HD] tile; rows >= T are
 * zero-filled. base points at position 0 of the head, rstride is the element distance between positions. Thread i
 * of THREADS copies chunk i % NCH of rows i / NCH + k * (THREADS / NCH): consecutive threads run along a row
 * (coalesced 16-byte reads); the row step is a multiple of 8, so the swizzled chunk is the same for all of a thread's
 * rows and the shared addresses are one register plus immediates. */
template <int HD, int ROWS, int THREADS>
__device__ __forceinline__ void mt_tile_async(floatX* tile, const floatX* base, int64_t rstride, int row0, int T, int tid) {
    constexpr int NCH = HD / 8, RSTEP = THREADS / NCH;
    static_assert(THREADS % NCH == 0 && RSTEP % 8 == 0 && ROWS % RSTEP == 0, "tile copy shape");
    const int r = tid / NCH, ch = tid % NCH;
    const floatX* p = base + (int64_t)(row0 + r) * rstride + ch * 8;
    const uint32_t dst = mt_smem_u32(tile + mt_swz<HD>(r, ch));
#pragma unroll
    for (int k = 0; k < ROWS / RSTEP; k++) {
        const bool valid = row0 + r + k * RSTEP < T;
        mt_cp_async16(dst + (uint32_t)(k * RSTEP * HD * 2), valid ? p : base, valid);   /* base: an in-bounds address */
        p += (int64_t)RSTEP * rstride;
    }
}

/* Forward, FlashAttention-2 schedule. Block = BM = 128 query rows of one (b, h), 4 warps; warp w owns the 32 rows
 * 32w..32w+31 as two m16 tiles (mt = 0, 1), so every K/V fragment loaded from shared memory feeds two MMAs.
 * Key tiles of BN = 64 in order kt = 0 .. (last key the tile's rows can see)/64; causal: the kernel never visits a
 * tile wholly after the block's rows, a warp skips a tile wholly after its own rows, and only tiles that straddle
 * the diagonal are masked.
 * Shared (dynamic, swizzled): Qs [128][HD], then 2 stages of Ks [64][HD] and 2 of Vs [64][HD] (96 KB at HD 128, two
 * blocks per SM). Pipeline: at the top of iteration kt one wait + __syncthreads publishes tile kt (and proves every
 * warp is done with tile kt-1), then the cp.async of tile kt+1 into the other stage is issued and overlaps the whole
 * compute of tile kt.
 * Per tile, per warp (fragment layouts at mt_mma16816 and mt_ldsm_x4):
 *   S[32 x 64] = Q K^T: A = Q via ldmatrix.x4 (lane l addresses row l%16, chunk 2kc + l/16 -> a0..a3);
 *     B = K rows via ldmatrix.x4 (lane l addresses key 16jp + l%8 + 8(l/16), chunk 2kc + (l/8)%2 ->
 *     b0, b1 of n-tile 2jp and b0, b1 of n-tile 2jp+1).
 *   online softmax in the log2 domain (scale_log2 = log2(e)/sqrt(HD) folded into one FMA before exp2), fp32.
 *   O[32 x HD] += P V: A = P from the S accumulators (n-tiles 2kk, 2kk+1 = the A fragment of keys 16kk..16kk+15);
 *     B = V via ldmatrix.x4.trans (lane l addresses key 16kk + l%16, chunk 2dp + l/16 -> b0, b1 of d-tile 2dp and
 *     b0, b1 of d-tile 2dp+1).
 * Epilogue: O / l is staged through the warp's own Q rows (only this warp ever reads them) and written with coalesced
 * 16-byte stores; lse = ln2 * (m + log2 l). Rows >= T are computed on zero-filled Q and never stored. */
template <int HD>
struct MtFa2Fwd {
    static constexpr int BM = 128, BN = 64, THREADS = 128;
    /* keys per softmax step. 64 (the whole key tile): Q fragments are read from shared memory once per key tile and
     * the max/rescale work runs once per 64 keys. S (64 regs) + O (128) fit in 255 registers at HD 128 only with the
     * kc loop of QK^T unrolled by 2 and the O rescale done per m16 tile (0 spills, -Xptxas -v). MT_ATTN_FWD_KS64 = 0
     * restores the 32-key steps at HD 128 of the first FA2 version (Q read twice per tile). The sm_80 pass keeps 32-key
     * steps: its ptxas spills 4 bytes with 64 (KS is only used in device code). */
    static constexpr int KS = (MT_FWD_KS_WIDE || HD <= 64) ? 64 : 32;
    static constexpr size_t SMEM = sizeof(floatX) * (size_t)(BM + 4 * BN) * HD;
};

template <int HD>
__global__ void __launch_bounds__(128, 2)
mt_attn_fwd_fa2_kernel(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, float scale_log2) {
    typedef MtFa2Fwd<HD> L;
    constexpr int BM = L::BM, BN = L::BN, KS = L::KS, NT = KS / 8, DT = HD / 8, KC = HD / 16;
    extern __shared__ __align__(128) unsigned char mt_fa2_smem[];
    floatX* Qs = reinterpret_cast<floatX*>(mt_fa2_smem);
    floatX* Ks = Qs + BM * HD;                                        /* stage s at Ks + s * BN * HD */
    floatX* Vs = Ks + 2 * BN * HD;

    const int BNH = B * NH;
    const int numQT = (T + BM - 1) / BM;
    const int qt = numQT - 1 - (int)(blockIdx.x / BNH);              /* heaviest (last) query tiles first */
    const int bh = (int)(blockIdx.x % BNH);
    const int h = bh % NH, b = bh / NH;
    const int kh = h / (NH / NKV);
    const int64_t rs = (int64_t)(NH + 2 * NKV) * HD;
    const floatX* qbase = qkv + (int64_t)b * T * rs + (int64_t)h * HD;
    const floatX* kbase = qkv + (int64_t)b * T * rs + (int64_t)(NH + kh) * HD;
    const floatX* vbase = kbase + (int64_t)NKV * HD;
    const int q0 = qt * BM;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const int wr = warp * 32;                                         /* first row of this warp within the tile */
    const int wrow0 = q0 + wr;
    const int nkt = min(T - 1, q0 + BM - 1) / BN + 1;                 /* key tiles 0..nkt-1 */

    /* per-lane ldmatrix bases (bytes): every x4 load here has lane l address row l%16 (of a 16-row block) at chunk
     * 2k + l/16, i.e. matrices (rows 0-7, chunk 2k), (rows 8-15, 2k), (rows 0-7, 2k+1), (rows 8-15, 2k+1). */
    constexpr uint32_t RB = HD * 2;                                   /* bytes per tile row */
    const MtSwzLane swA(lane >> 4, lane);
    const uint32_t swc0 = (uint32_t)(((lane >> 4) ^ (lane & 7)) << 4);
    const uint32_t q_lds = mt_smem_u32(Qs) + (uint32_t)(wr + (lane & 15)) * RB;
    const uint32_t k_lane = mt_smem_u32(Ks) + (uint32_t)(lane & 15) * RB;
    const uint32_t v_lane = k_lane + 2 * BN * RB;                     /* Vs = Ks + 2 stages */

    mt_tile_async<HD, BM, 128>(Qs, qbase, rs, q0, T, tid);
    mt_tile_async<HD, BN, 128>(Ks, kbase, rs, 0, T, tid);
    mt_tile_async<HD, BN, 128>(Vs, vbase, rs, 0, T, tid);
    mt_cp_async_commit();

    float o[2][DT][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int d = 0; d < DT; d++) o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.0f;
    float m[2][2] = {{-INFINITY, -INFINITY}, {-INFINITY, -INFINITY}};   /* running max of raw scores, rows g / g+8 */
    float l[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};                       /* this lane's partial row sums */

    for (int kt = 0; kt < nkt; kt++) {
        mt_cp_async_wait_all();
        __syncthreads();                                              /* tile kt visible; stage (kt+1)&1 free */
        if (kt + 1 < nkt) {
            const int st = (kt + 1) & 1;
            mt_tile_async<HD, BN, 128>(Ks + st * BN * HD, kbase, rs, (kt + 1) * BN, T, tid);
            mt_tile_async<HD, BN, 128>(Vs + st * BN * HD, vbase, rs, (kt + 1) * BN, T, tid);
            mt_cp_async_commit();
        }
        const uint32_t k_lds = k_lane + (kt & 1) * BN * RB;           /* this stage's ldmatrix bases */
        const uint32_t v_lds = v_lane + (kt & 1) * BN * RB;
#pragma unroll
        for (int sub = 0; sub < BN / KS; sub++) {
            const int k0 = kt * BN + sub * KS;                        /* first key of this sub-tile */
            if (k0 > wrow0 + 31) break;                               /* every key after every row of this warp */
            float s[2][NT][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int j = 0; j < NT; j++) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
            /* S = Q K^T */
#pragma unroll 2
            for (int kc = 0; kc < KC; kc++) {
                uint32_t qa[2][4];
                const uint32_t swc = ((uint32_t)kc << 5) ^ swc0;
#pragma unroll
                for (int mt = 0; mt < 2; mt++) mt_ldsm_x4(qa[mt], q_lds + mt * 16 * RB + swc);
#pragma unroll
                for (int jp = 0; jp < NT / 2; jp++) {
                    uint32_t kb[4];                                   /* b0(2jp), b0(2jp+1), b1(2jp), b1(2jp+1) */
                    mt_ldsm_x4(kb, k_lds + (sub * KS + jp * 16) * RB + swc);
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        mt_mma16816(s[mt][2 * jp], qa[mt], kb[0], kb[2]);
                        mt_mma16816(s[mt][2 * jp + 1], qa[mt], kb[1], kb[3]);
                    }
                }
            }
            /* causal mask where the sub-tile straddles this warp's diagonal (keys >= T only occur in the last tile
             * and lie after every row < T, so they are masked too) */
            if (k0 + KS - 1 > wrow0) {
                const int diag = wrow0 + g - k0 - 2 * tig;           /* col > row  <=>  (col - k0 - 2tig) - (row - wrow0 - g) > diag */
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
#pragma unroll
                    for (int j = 0; j < NT; j++)
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            if (j * 8 + (e & 1) - mt * 16 - ((e >> 1) << 3) > diag) s[mt][j][e] = -INFINITY;
            }
            /* online softmax: new row max (4 lanes share a row), rescale l and O, p = exp2(s*scale_log2 - max) */
            float corr[2][2];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                float mx[2] = {m[mt][0], m[mt][1]};
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    mx[0] = fmaxf(mx[0], fmaxf(s[mt][j][0], s[mt][j][1]));
                    mx[1] = fmaxf(mx[1], fmaxf(s[mt][j][2], s[mt][j][3]));
                }
                float msub[2];
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
                    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
                    msub[i] = (mx[i] == -INFINITY) ? 0.0f : mx[i] * scale_log2;   /* fully masked so far: p = 0 */
                    corr[mt][i] = mt_exp2(m[mt][i] * scale_log2 - msub[i]);          /* m = -inf -> 0; same max -> 1 */
                    m[mt][i] = mx[i];
                }
                float rsum[2] = {0.0f, 0.0f};
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    s[mt][j][0] = mt_exp2(fmaf(s[mt][j][0], scale_log2, -msub[0]));
                    s[mt][j][1] = mt_exp2(fmaf(s[mt][j][1], scale_log2, -msub[0]));
                    s[mt][j][2] = mt_exp2(fmaf(s[mt][j][2], scale_log2, -msub[1]));
                    s[mt][j][3] = mt_exp2(fmaf(s[mt][j][3], scale_log2, -msub[1]));
                    rsum[0] += s[mt][j][0] + s[mt][j][1];
                    rsum[1] += s[mt][j][2] + s[mt][j][3];
                }
                l[mt][0] = l[mt][0] * corr[mt][0] + rsum[0];
                l[mt][1] = l[mt][1] * corr[mt][1] + rsum[1];
                /* O *= corr, skipped when no row of these 16 changed its max (x * 1.0f is exact: same result) */
                if (__any_sync(0xffffffffu, corr[mt][0] != 1.0f || corr[mt][1] != 1.0f)) {
#pragma unroll
                    for (int d = 0; d < DT; d++) {
                        o[mt][d][0] *= corr[mt][0];
                        o[mt][d][1] *= corr[mt][0];
                        o[mt][d][2] *= corr[mt][1];
                        o[mt][d][3] *= corr[mt][1];
                    }
                }
            }
            /* O += P V */
#pragma unroll
            for (int kk = 0; kk < KS / 16; kk++) {
                uint32_t pa[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    pa[mt][0] = mt_pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    pa[mt][1] = mt_pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    pa[mt][2] = mt_pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    pa[mt][3] = mt_pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < DT / 2; dp++) {
                    uint32_t vb[4];                                   /* b0(2dp), b1(2dp), b0(2dp+1), b1(2dp+1) */
                    mt_ldsm_x4_t(vb, v_lds + (sub * KS + kk * 16) * RB + swA.at(dp));
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        mt_mma16816(o[mt][2 * dp], pa[mt], vb[0], vb[1]);
                        mt_mma16816(o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
                    }
                }
            }
        }
    }

    /* epilogue: full row sums over the 4 lanes of a row, normalise, stage in this warp's Q rows, store */
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
#pragma unroll
        for (int i = 0; i < 2; i++) {
            l[mt][i] += __shfl_xor_sync(0xffffffffu, l[mt][i], 1);
            l[mt][i] += __shfl_xor_sync(0xffffffffu, l[mt][i], 2);
            const int row = wrow0 + mt * 16 + g + 8 * i;
            if (tig == 0 && row < T) lse[((int64_t)b * NH + h) * T + row] = (m[mt][i] * scale_log2 + log2f(l[mt][i])) * MT_LN2;
        }
        const float inv0 = 1.0f / l[mt][0], inv1 = 1.0f / l[mt][1];
        const int r0 = wr + mt * 16 + g;
#pragma unroll
        for (int d = 0; d < DT; d++) {
            *reinterpret_cast<uint32_t*>(Qs + mt_swz<HD>(r0, d) + 2 * tig) = mt_pack_bf16(o[mt][d][0] * inv0, o[mt][d][1] * inv0);
            *reinterpret_cast<uint32_t*>(Qs + mt_swz<HD>(r0 + 8, d) + 2 * tig) = mt_pack_bf16(o[mt][d][2] * inv1, o[mt][d][3] * inv1);
        }
    }
    __syncwarp();
#pragma unroll
    for (int c = lane; c < 32 * DT; c += 32) {
        const int r = c / DT, ch = c % DT;
        const int row = wrow0 + r;
        if (row < T)
            *reinterpret_cast<uint4*>(out + (((int64_t)b * T + row) * NH + h) * HD + ch * 8) =
                *reinterpret_cast<const uint4*>(Qs + mt_swz<HD>(wr + r, ch));
    }
}

__device__ __forceinline__ void mt_cp_async4(uint32_t dst, const void* src, bool valid) {
    const int n = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
}

/* D[b,h,t] = sum_d dout[b,t,h,d] * out[b,t,h,d] (fp32), HD in {64, 128}, 16-byte aligned tensors. Thread = one
 * 16-byte chunk; the HD/8 consecutive threads of a row reduce with xor shuffles (fixed order). */
template <int HD>
__global__ void __launch_bounds__(256) mt_attn_bwd_d_vec_kernel(float* D, const floatX* dout, const floatX* out, int B, int T, int NH) {
    constexpr int NCH = HD / 8;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t rowi = i / NCH;                                      /* row in [B,T,NH] order */
    const bool live = rowi < (int64_t)B * T * NH;
    float acc = 0.0f;
    if (live) {
        float a[8], c[8];
        mt_load8(dout + i * 8, a);
        mt_load8(out + i * 8, c);
#pragma unroll
        for (int k = 0; k < 8; k++) acc += a[k] * c[k];
    }
#pragma unroll
    for (int o = NCH / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (live && (threadIdx.x % NCH) == 0) {
        const int h = (int)(rowi % NH);
        const int64_t bt = rowi / NH;
        const int t = (int)(bt % T), b = (int)(bt / T);
        D[((int64_t)b * NH + h) * T + t] = acc;
    }
}

/* Backward dQ, FA2 schedule. Block = BM = 128 query rows of one (b, h), 4 warps x 32 rows (two m16 tiles) as in the
 * forward; key tiles of BN = 32 in order 0..(last key the rows see)/32, K and V double-buffered with cp.async (one
 * wait + __syncthreads per tile, the next tile's copy overlapping this tile's compute).
 *   S = Q K^T, P = exp2(S*scale_log2 - lse*log2e) (0 where key > query), dP = dO V^T, dS = P (dP - D),
 *   dQ += dS K;  finally dQ *= scale.
 * Fragments (layouts at mt_mma16816 / mt_ldsm_x4; every x4 here addresses row l%16 of a 16-row block at chunk
 * 2k + l/16): A of S and dP = Q / dO rows via ldmatrix.x4 (a0..a3); B of S and dP = K / V rows via ldmatrix.x4
 * (b0(2jp), b0(2jp+1), b1(2jp), b1(2jp+1)); A of dQ = the dS accumulators of n-tiles 2kk, 2kk+1; B of dQ
 * (k = key, n = dim) = K rows via ldmatrix.x4.trans (b0(2dp), b1(2dp), b0(2dp+1), b1(2dp+1)).
 * Shared (swizzled, see mt_swz): Qs, dOs [128][HD], 2 stages of Ks, Vs [32][HD] (96 KB at HD 128: two blocks/SM).
 * Rows >= T: zero-filled Q/dO, lse = +inf (P = 0), never stored. */
template <int HD>
struct MtFa2Dq {
    static constexpr int BM = 128, BN = 32, THREADS = 128;
    static constexpr size_t SMEM = sizeof(floatX) * (size_t)(2 * BM + 4 * BN) * HD;
};

template <int HD>
__global__ void __launch_bounds__(128, 2)
mt_attn_bwd_dq_fa2_kernel(floatX* dqkv, const floatX* dout, const floatX* qkv, const float* lse, const float* Dv,
                          int B, int T, int NH, int NKV, float scale, float scale_log2) {
    typedef MtFa2Dq<HD> L;
    constexpr int BM = L::BM, BN = L::BN, NT = BN / 8, DT = HD / 8, KC = HD / 16;
    constexpr uint32_t RB = HD * 2;
    extern __shared__ __align__(128) unsigned char mt_fa2_smem[];
    floatX* Qs = reinterpret_cast<floatX*>(mt_fa2_smem);
    floatX* dOs = Qs + BM * HD;
    floatX* Ks = dOs + BM * HD;                                       /* stage s at Ks + s * BN * HD */
    floatX* Vs = Ks + 2 * BN * HD;

    const int BNH = B * NH;
    const int numQT = (T + BM - 1) / BM;
    const int qt = numQT - 1 - (int)(blockIdx.x / BNH);              /* heaviest first */
    const int bh = (int)(blockIdx.x % BNH);
    const int h = bh % NH, b = bh / NH;
    const int kh = h / (NH / NKV);
    const int64_t rs = (int64_t)(NH + 2 * NKV) * HD;
    const int64_t ors = (int64_t)NH * HD;
    const floatX* qbase = qkv + (int64_t)b * T * rs + (int64_t)h * HD;
    const floatX* kbase = qkv + (int64_t)b * T * rs + (int64_t)(NH + kh) * HD;
    const floatX* vbase = kbase + (int64_t)NKV * HD;
    const floatX* dobase = dout + (int64_t)b * T * ors + (int64_t)h * HD;
    const int q0 = qt * BM;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const int wr = warp * 32, wrow0 = q0 + wr;
    const int nkt = min(T - 1, q0 + BM - 1) / BN + 1;

    const MtSwzLane sw(lane >> 4, lane);
    const uint32_t q_lds = mt_smem_u32(Qs) + (uint32_t)(wr + (lane & 15)) * RB;
    const uint32_t do_lds = q_lds + BM * RB;                          /* dOs = Qs + BM rows */
    const uint32_t k_lane = mt_smem_u32(Ks) + (uint32_t)(lane & 15) * RB;
    const uint32_t v_lane = k_lane + 2 * BN * RB;

    mt_tile_async<HD, BM, 128>(Qs, qbase, rs, q0, T, tid);
    mt_tile_async<HD, BM, 128>(dOs, dobase, ors, q0, T, tid);
    mt_tile_async<HD, BN, 128>(Ks, kbase, rs, 0, T, tid);
    mt_tile_async<HD, BN, 128>(Vs, vbase, rs, 0, T, tid);
    mt_cp_async_commit();

    /* per-row statistics of this lane's 4 rows (mt, half) */
    const int64_t lrow = ((int64_t)b * NH + h) * T;
    float lse2[2][2], Dr[2][2];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int row = wrow0 + mt * 16 + g + 8 * i;
            lse2[mt][i] = row < T ? lse[lrow + row] * MT_LOG2E : INFINITY;
            Dr[mt][i] = row < T ? Dv[lrow + row] : 0.0f;
        }

    float dq[2][DT][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int d = 0; d < DT; d++) dq[mt][d][0] = dq[mt][d][1] = dq[mt][d][2] = dq[mt][d][3] = 0.0f;

    for (int kt = 0; kt < nkt; kt++) {
        mt_cp_async_wait_all();
        __syncthreads();                                              /* tile kt visible; stage (kt+1)&1 free */
        if (kt + 1 < nkt) {
            const int st = (kt + 1) & 1;
            mt_tile_async<HD, BN, 128>(Ks + st * BN * HD, kbase, rs, (kt + 1) * BN, T, tid);
            mt_tile_async<HD, BN, 128>(Vs + st * BN * HD, vbase, rs, (kt + 1) * BN, T, tid);
            mt_cp_async_commit();
        }
        const int k0 = kt * BN;
        if (k0 > wrow0 + 31) continue;                                /* every key after every row of this warp */
        const uint32_t k_lds = k_lane + (kt & 1) * BN * RB;
        const uint32_t v_lds = v_lane + (kt & 1) * BN * RB;

        float s[2][NT][4], dp[2][NT][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int j = 0; j < NT; j++) {
                s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
                dp[mt][j][0] = dp[mt][j][1] = dp[mt][j][2] = dp[mt][j][3] = 0.0f;
            }
        /* S = Q K^T */
#pragma unroll
        for (int kc = 0; kc < KC; kc++) {
            uint32_t a[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) mt_ldsm_x4(a[mt], q_lds + mt * 16 * RB + sw.at(kc));
#pragma unroll
            for (int jp = 0; jp < NT / 2; jp++) {
                uint32_t kb[4];
                mt_ldsm_x4(kb, k_lds + jp * 16 * RB + sw.at(kc));
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    mt_mma16816(s[mt][2 * jp], a[mt], kb[0], kb[2]);
                    mt_mma16816(s[mt][2 * jp + 1], a[mt], kb[1], kb[3]);
                }
            }
        }
        /* dP = dO V^T */
#pragma unroll
        for (int kc = 0; kc < KC; kc++) {
            uint32_t a[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) mt_ldsm_x4(a[mt], do_lds + mt * 16 * RB + sw.at(kc));
#pragma unroll
            for (int jp = 0; jp < NT / 2; jp++) {
                uint32_t vb[4];
                mt_ldsm_x4(vb, v_lds + jp * 16 * RB + sw.at(kc));
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    mt_mma16816(dp[mt][2 * jp], a[mt], vb[0], vb[2]);
                    mt_mma16816(dp[mt][2 * jp + 1], a[mt], vb[1], vb[3]);
                }
            }
        }
        /* dS = P (dP - D), P = 0 where key > query (keys >= T only in the last tile, after every row < T) */
        const bool diag = k0 + BN - 1 > wrow0;
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = e >> 1;
                    const int row = wrow0 + mt * 16 + g + 8 * i;
                    const int col = k0 + j * 8 + 2 * tig + (e & 1);
                    float p = mt_exp2(fmaf(s[mt][j][e], scale_log2, -lse2[mt][i]));
                    if (diag && col > row) p = 0.0f;
                    s[mt][j][e] = p * (dp[mt][j][e] - Dr[mt][i]);
                }
        /* dQ += dS K */
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t a[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                a[mt][0] = mt_pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                a[mt][1] = mt_pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                a[mt][2] = mt_pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                a[mt][3] = mt_pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp2 = 0; dp2 < DT / 2; dp2++) {
                uint32_t kb[4];
                mt_ldsm_x4_t(kb, k_lds + kk * 16 * RB + sw.at(dp2));
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    mt_mma16816(dq[mt][2 * dp2], a[mt], kb[0], kb[1]);
                    mt_mma16816(dq[mt][2 * dp2 + 1], a[mt], kb[2], kb[3]);
                }
            }
        }
    }

    /* epilogue: dQ * scale staged in this warp's own Q rows (no other warp reads them), coalesced 16-byte stores */
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        const int r0 = wr + mt * 16 + g;
#pragma unroll
        for (int d = 0; d < DT; d++) {
            *reinterpret_cast<uint32_t*>(Qs + mt_swz<HD>(r0, d) + 2 * tig) = mt_pack_bf16(dq[mt][d][0] * scale, dq[mt][d][1] * scale);
            *reinterpret_cast<uint32_t*>(Qs + mt_swz<HD>(r0 + 8, d) + 2 * tig) = mt_pack_bf16(dq[mt][d][2] * scale, dq[mt][d][3] * scale);
        }
    }
    __syncwarp();
    floatX* dqbase = dqkv + (int64_t)b * T * rs + (int64_t)h * HD;
#pragma unroll
    for (int c = lane; c < 32 * DT; c += 32) {
        const int r = c / DT, ch = c % DT;
        const int row = wrow0 + r;
        if (row < T)
            *reinterpret_cast<uint4*>(dqbase + (int64_t)row * rs + ch * 8) = *reinterpret_cast<const uint4*>(Qs + mt_swz<HD>(wr + r, ch));
    }
}

/* Backward dK, dV, FA2 schedule without atomics. Block = BK = 64 keys of one (b, kh), 4 warps x 16 keys (one m16
 * tile each); loops over the group's query heads h (in order) and, per head, the query tiles of BQ = 64 from the
 * tile holding key k0 to the end (in order) — the flat iteration index it = (h - kh*G) * nq + tile, so the sums
 * have a fixed order. Q, dO, lse, D of the next iteration are copied (cp.async, two stages) during this one.
 * Per iteration, in query sub-steps of QS (32 at HD 128 to keep the accumulators in registers, 64 at HD 64):
 *   S^T = K Q^T, P^T = exp2(S^T*scale_log2 - lse*log2e) (0 where query < key), dP^T = V dO^T,
 *   dS^T = P^T (dP^T - D), dV += P^T dO, dK += dS^T Q;  finally dK *= scale.
 * Fragments (every x4 addresses row l%16 of a 16-row block at chunk 2k + l/16): A of S^T and dP^T = the warp's K / V
 * rows via ldmatrix.x4; B (k = dim, n = query) = Q / dO rows via ldmatrix.x4 (b0(2jp), b0(2jp+1), b1(2jp),
 * b1(2jp+1)); A of dV / dK = the P^T / dS^T accumulators of n-tiles 2kk, 2kk+1; B (k = query, n = dim) = dO / Q rows
 * via ldmatrix.x4.trans (b0(2dp), b1(2dp), b0(2dp+1), b1(2dp+1)).
 * Shared (swizzled): Ks, Vs [64][HD], 2 stages of Qs, dOs [64][HD], lse and D [64] floats per stage (97 KB at HD 128).
 * Queries >= T are zero-filled (Q = dO = 0, lse = D = 0), which makes their P^T dO and dS^T Q terms exactly 0;
 * keys >= T are zero rows whose results are never stored. */
template <int HD>
struct MtFa2Dkv {
    static constexpr int BK = 64, BQ = 64, THREADS = 128;
    static constexpr int QS = HD > 64 ? 32 : 64;
    static constexpr size_t SMEM = sizeof(floatX) * (size_t)(2 * BK + 4 * BQ) * HD + sizeof(float) * 4 * BQ;
};

template <int HD>
__global__ void __launch_bounds__(128, 2)
mt_attn_bwd_dkdv_fa2_kernel(floatX* dqkv, const floatX* dout, const floatX* qkv, const float* lse, const float* Dv,
                            int B, int T, int NH, int NKV, float scale, float scale_log2) {
    typedef MtFa2Dkv<HD> L;
    constexpr int BK = L::BK, BQ = L::BQ, QS = L::QS, NT = QS / 8, DT = HD / 8, KC = HD / 16;
    constexpr uint32_t RB = HD * 2;
    extern __shared__ __align__(128) unsigned char mt_fa2_smem[];
    floatX* Ks = reinterpret_cast<floatX*>(mt_fa2_smem);
    floatX* Vs = Ks + BK * HD;
    floatX* Qs = Vs + BK * HD;                                        /* stage s at Qs + s * BQ * HD */
    floatX* dOs = Qs + 2 * BQ * HD;
    float* lses = reinterpret_cast<float*>(dOs + 2 * BQ * HD);       /* stage s at lses + s * BQ */
    float* Ds = lses + 2 * BQ;

    const int BKV = B * NKV;
    const int kt = (int)(blockIdx.x / BKV);                          /* small kt (most queries) first */
    const int bkv = (int)(blockIdx.x % BKV);
    const int kh = bkv % NKV, b = bkv / NKV;
    const int G = NH / NKV;
    const int64_t rs = (int64_t)(NH + 2 * NKV) * HD;
    const int64_t ors = (int64_t)NH * HD;
    const floatX* kbase = qkv + (int64_t)b * T * rs + (int64_t)(NH + kh) * HD;
    const floatX* vbase = kbase + (int64_t)NKV * HD;
    const int k0 = kt * BK;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const int kw = k0 + warp * 16;                                    /* this warp's first key */
    const int nit = G * ((T - k0 + BQ - 1) / BQ);                     /* heads x query tiles q0 = k0, k0+BQ, ... < T */

    const MtSwzLane sw(lane >> 4, lane);
    const uint32_t k_lds = mt_smem_u32(Ks) + (uint32_t)(warp * 16 + (lane & 15)) * RB;
    const uint32_t v_lds = k_lds + BK * RB;                           /* Vs = Ks + BK rows */
    const uint32_t q_lane = mt_smem_u32(Qs) + (uint32_t)(lane & 15) * RB;
    const uint32_t do_lane = q_lane + 2 * BQ * RB;                    /* dOs = Qs + 2 stages */

    /* copies of one iteration (head h, query tile at q0) into stage st */
    auto issue = [&](int h, int q0, int st) {
        mt_tile_async<HD, BQ, 128>(Qs + st * BQ * HD, qkv + (int64_t)b * T * rs + (int64_t)h * HD, rs, q0, T, tid);
        mt_tile_async<HD, BQ, 128>(dOs + st * BQ * HD, dout + (int64_t)b * T * ors + (int64_t)h * HD, ors, q0, T, tid);
        const int j = tid & (BQ - 1);                                 /* threads 0..63: lse, 64..127: D */
        const bool valid = q0 + j < T;
        const float* src = (tid < BQ ? lse : Dv) + ((int64_t)b * NH + h) * T + (valid ? q0 + j : 0);
        mt_cp_async4(mt_smem_u32((tid < BQ ? lses : Ds) + st * BQ + j), src, valid);
    };

    mt_tile_async<HD, BK, 128>(Ks, kbase, rs, k0, T, tid);
    mt_tile_async<HD, BK, 128>(Vs, vbase, rs, k0, T, tid);
    issue(kh * G, k0, 0);
    mt_cp_async_commit();
    int nh = kh * G, nq0 = k0;                                        /* (head, q0) of the iteration last issued */

    float dk[DT][4], dv[DT][4];
#pragma unroll
    for (int d = 0; d < DT; d++) {
        dk[d][0] = dk[d][1] = dk[d][2] = dk[d][3] = 0.0f;
        dv[d][0] = dv[d][1] = dv[d][2] = dv[d][3] = 0.0f;
    }

    for (int it = 0; it < nit; it++) {
        mt_cp_async_wait_all();
        __syncthreads();                                              /* stage it&1 visible; stage (it+1)&1 free */
        const int q0 = nq0;                                           /* this iteration's query tile */
        if (it + 1 < nit) {
            nq0 += BQ;
            if (nq0 >= T) { nq0 = k0; nh++; }                         /* next head of the group */
            issue(nh, nq0, (it + 1) & 1);
            mt_cp_async_commit();
        }
        const int st = it & 1;
        const uint32_t q_lds = q_lane + st * BQ * RB;
        const uint32_t do_lds = do_lane + st * BQ * RB;
        const float* lq = lses + st * BQ;
        const float* Dq = Ds + st * BQ;
#pragma unroll
        for (int sub = 0; sub < BQ / QS; sub++) {
            const int qs0 = sub * QS;                                 /* first query of the sub-step, in the tile */
            float s[NT][4], dp[NT][4];
#pragma unroll
            for (int j = 0; j < NT; j++) {
                s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
                dp[j][0] = dp[j][1] = dp[j][2] = dp[j][3] = 0.0f;
            }
            /* S^T = K Q^T, dP^T = V dO^T */
#pragma unroll
            for (int kc = 0; kc < KC; kc++) {
                uint32_t ka[4], va[4];
                mt_ldsm_x4(ka, k_lds + sw.at(kc));
                mt_ldsm_x4(va, v_lds + sw.at(kc));
#pragma unroll
                for (int jp = 0; jp < NT / 2; jp++) {
                    uint32_t qb[4], ob[4];
                    mt_ldsm_x4(qb, q_lds + (qs0 + jp * 16) * RB + sw.at(kc));
                    mt_ldsm_x4(ob, do_lds + (qs0 + jp * 16) * RB + sw.at(kc));
                    mt_mma16816(s[2 * jp], ka, qb[0], qb[2]);
                    mt_mma16816(s[2 * jp + 1], ka, qb[1], qb[3]);
                    mt_mma16816(dp[2 * jp], va, ob[0], ob[2]);
                    mt_mma16816(dp[2 * jp + 1], va, ob[1], ob[3]);
                }
            }
            /* P^T and dS^T; element (key = row g / g+8 of the warp, query = column), packed to bf16 pairs at once:
             * pp[j][i] / dsp[j][i] = (columns 2tig, 2tig+1 of n-tile j, row g + 8i) = the A-fragment registers */
            const bool diag = q0 + qs0 < kw + 15;                     /* some query of the sub-step < some key */
            uint32_t pp[NT][2], dsp[NT][2];
#pragma unroll
            for (int j = 0; j < NT; j++) {
                const int qc = qs0 + j * 8 + 2 * tig;                 /* query index in the tile (and qc + 1) */
                const float l2a = lq[qc] * MT_LOG2E, l2b = lq[qc + 1] * MT_LOG2E, Da = Dq[qc], Db = Dq[qc + 1];
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    const int key = kw + g + 8 * i;
                    float pa = mt_exp2(fmaf(s[j][2 * i], scale_log2, -l2a));
                    float pb = mt_exp2(fmaf(s[j][2 * i + 1], scale_log2, -l2b));
                    if (diag && q0 + qc < key) pa = 0.0f;
                    if (diag && q0 + qc + 1 < key) pb = 0.0f;
                    pp[j][i] = mt_pack_bf16(pa, pb);
                    dsp[j][i] = mt_pack_bf16(pa * (dp[j][2 * i] - Da), pb * (dp[j][2 * i + 1] - Db));
                }
            }
            /* dV += P^T dO, dK += dS^T Q */
#pragma unroll
            for (int kk = 0; kk < QS / 16; kk++) {
                const uint32_t pa[4] = {pp[2 * kk][0], pp[2 * kk][1], pp[2 * kk + 1][0], pp[2 * kk + 1][1]};
                const uint32_t sa[4] = {dsp[2 * kk][0], dsp[2 * kk][1], dsp[2 * kk + 1][0], dsp[2 * kk + 1][1]};
#pragma unroll
                for (int dp2 = 0; dp2 < DT / 2; dp2++) {
                    uint32_t ob[4], qb[4];
                    mt_ldsm_x4_t(ob, do_lds + (qs0 + kk * 16) * RB + sw.at(dp2));
                    mt_ldsm_x4_t(qb, q_lds + (qs0 + kk * 16) * RB + sw.at(dp2));
                    mt_mma16816(dv[2 * dp2], pa, ob[0], ob[1]);
                    mt_mma16816(dv[2 * dp2 + 1], pa, ob[2], ob[3]);
                    mt_mma16816(dk[2 * dp2], sa, qb[0], qb[1]);
                    mt_mma16816(dk[2 * dp2 + 1], sa, qb[2], qb[3]);
                }
            }
        }
    }

    /* epilogue: dK * scale and dV staged in this warp's own K / V rows (no other warp reads them), then coalesced
     * 16-byte stores of the warp's 16 keys */
    {
        const int r0 = warp * 16 + g;
#pragma unroll
        for (int d = 0; d < DT; d++) {
            *reinterpret_cast<uint32_t*>(Ks + mt_swz<HD>(r0, d) + 2 * tig) = mt_pack_bf16(dk[d][0] * scale, dk[d][1] * scale);
            *reinterpret_cast<uint32_t*>(Ks + mt_swz<HD>(r0 + 8, d) + 2 * tig) = mt_pack_bf16(dk[d][2] * scale, dk[d][3] * scale);
            *reinterpret_cast<uint32_t*>(Vs + mt_swz<HD>(r0, d) + 2 * tig) = mt_pack_bf16(dv[d][0], dv[d][1]);
            *reinterpret_cast<uint32_t*>(Vs + mt_swz<HD>(r0 + 8, d) + 2 * tig) = mt_pack_bf16(dv[d][2], dv[d][3]);
        }
    }
    __syncwarp();
    floatX* dkbase = dqkv + (int64_t)b * T * rs + (int64_t)(NH + kh) * HD;
    floatX* dvbase = dkbase + (int64_t)NKV * HD;
#pragma unroll
    for (int c = lane; c < 16 * DT; c += 32) {
        const int r = c / DT, ch = c % DT;
        const int key = kw + r;
        if (key < T) {
            *reinterpret_cast<uint4*>(dkbase + (int64_t)key * rs + ch * 8) =
                *reinterpret_cast<const uint4*>(Ks + mt_swz<HD>(warp * 16 + r, ch));
            *reinterpret_cast<uint4*>(dvbase + (int64_t)key * rs + ch * 8) =
                *reinterpret_cast<const uint4*>(Vs + mt_swz<HD>(warp * 16 + r, ch));
        }
    }
}

template <int HD>
static void mt_attn_bwd_fa2_launch(floatX* dqkv, const float* D, const floatX* dout, const floatX* qkv, const float* lse,
                                   int B, int T, int NH, int NKV, float scale, cudaStream_t s) {
    const int64_t kv_blocks = (int64_t)((T + MtFa2Dkv<HD>::BK - 1) / MtFa2Dkv<HD>::BK) * B * NKV;
    cudaFuncSetAttribute(mt_attn_bwd_dkdv_fa2_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)MtFa2Dkv<HD>::SMEM);
    mt_attn_bwd_dkdv_fa2_kernel<HD><<<(unsigned)kv_blocks, MtFa2Dkv<HD>::THREADS, MtFa2Dkv<HD>::SMEM, s>>>(
        dqkv, dout, qkv, lse, D, B, T, NH, NKV, scale, scale * MT_LOG2E);
    const int64_t q_blocks = (int64_t)((T + MtFa2Dq<HD>::BM - 1) / MtFa2Dq<HD>::BM) * B * NH;
    cudaFuncSetAttribute(mt_attn_bwd_dq_fa2_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)MtFa2Dq<HD>::SMEM);
    mt_attn_bwd_dq_fa2_kernel<HD><<<(unsigned)q_blocks, MtFa2Dq<HD>::THREADS, MtFa2Dq<HD>::SMEM, s>>>(
        dqkv, dout, qkv, lse, D, B, T, NH, NKV, scale, scale * MT_LOG2E);
}

template <int HD>
static void mt_attn_fwd_fa2_launch(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, float scale_log2,
                                   unsigned blocks, cudaStream_t s) {
    const size_t smem = MtFa2Fwd<HD>::SMEM;
    cudaFuncSetAttribute(mt_attn_fwd_fa2_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    mt_attn_fwd_fa2_kernel<HD><<<blocks, MtFa2Fwd<HD>::THREADS, smem, s>>>(out, lse, qkv, B, T, NH, NKV, scale_log2);
}

int mt_attn_fwd_fa2(floatX* out, float* lse, const floatX* qkv, int B, int T, int NH, int NKV, int HD, float scale,
                    cudaStream_t s) {
    const int64_t blocks = (int64_t)((T + 127) / 128) * B * NH;
    if (blocks > 0x7fffffffLL) return MT_ERR_UNSUPPORTED;
    if (HD == 64) mt_attn_fwd_fa2_launch<64>(out, lse, qkv, B, T, NH, NKV, scale * MT_LOG2E, (unsigned)blocks, s);
    else mt_attn_fwd_fa2_launch<128>(out, lse, qkv, B, T, NH, NKV, scale * MT_LOG2E, (unsigned)blocks, s);
    MT_CHECK_LAUNCH();
    return MT_OK;
}

int mt_attn_bwd_fa2(floatX* dqkv, float* D, const floatX* dout, const floatX* qkv, const floatX* out, const float* lse,
                    int B, int T, int NH, int NKV, int HD, float scale, cudaStream_t s) {
    const int64_t rows = (int64_t)B * NH * T;
    if ((int64_t)((T + 63) / 64) * B * NH > 0x7fffffffLL || rows * (HD / 8) > 0x7fffffffLL * 256LL) return MT_ERR_UNSUPPORTED;
    const unsigned d_blocks = (unsigned)((rows * (HD / 8) + 255) / 256);
    if (HD == 64) {
        mt_attn_bwd_d_vec_kernel<64><<<d_blocks, 256, 0, s>>>(D, dout, out, B, T, NH);
        mt_attn_bwd_fa2_launch<64>(dqkv, D, dout, qkv, lse, B, T, NH, NKV, scale, s);
    } else {
        mt_attn_bwd_d_vec_kernel<128><<<d_blocks, 256, 0, s>>>(D, dout, out, B, T, NH);
        mt_attn_bwd_fa2_launch<128>(dqkv, D, dout, qkv, lse, B, T, NH, NKV, scale, s);
    }
    MT_CHECK_LAUNCH();
    return MT_OK;
}
