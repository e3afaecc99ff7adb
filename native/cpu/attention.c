/* Causal grouped-query attention forward/backward of the CPU implementation (floatX = float).
 *
 * qkv: [B,T,H,HD] with H = NH + 2*NKV (q heads, then k heads, then v heads); query head h reads kv head
 * h / (NH/NKV). Scores are scaled by 1/sqrt(HD).
 *
 * Structure (flash-attention on a CPU): work is cut into tiles that share one kv head, so a block of ATTN_KB keys is
 * transposed once into a small [HD, ATTN_KB] buffer and reused by every query row of the tile; the scores of one row
 * against the block are then a loop over HD of vector updates across the block (no horizontal reductions), and the
 * P.V / dS.K products are vector updates along HD of contiguous rows. Memory is O(tile * HD) per thread; the T x T
 * score matrix is never stored, the backward recomputes the probabilities from the saved log-sum-exp.
 *
 * Determinism: every output row is produced by exactly one thread, and its sum runs in a fixed order (key blocks
 * ascending; for dk/dv: heads of the group ascending, then query positions ascending), independent of the thread
 * count and of the schedule. No atomics.
 *
 * Per-thread buffers are stack arrays of about (max(ATTN_QROWS, group) + 2*ATTN_KT + 2*ATTN_KB) * HD floats:
 * 48 KB at HD 64, 192 KB at HD 256 (the calling Java thread takes part: keep its stack at the 1 MB default or more). */
#include "mt_cpu.h"
#include <math.h>
#include <string.h>

#define ATTN_KB 32      /* keys per block (forward, dq pass) and queries per block (dk/dv pass): 4 registers */
#ifndef ATTN_QROWS
#define ATTN_QROWS 64   /* query rows per forward/dq tile, over the group's heads */
#endif
#ifndef ATTN_KT
#define ATTN_KT 64      /* key rows per dk/dv tile (32 to 128 measured within 5%; 64 amortises the Q/dO transposes) */
#endif

static int attn_check(int B, int T, int NH, int NKV, int HD) {
    return B >= 0 && T >= 0 && NH > 0 && NKV > 0 && NH % NKV == 0 && HD > 0 && HD % 2 == 0;
}

/* dst[i*ATTN_KB + j] = rows[j*stride + i] for j < n, 0 for n <= j < ATTN_KB. */
static void transpose_block(float* dst, const floatX* rows, size_t stride, int n, int HD) {
    for (int i = 0; i < HD; i++) {
        float* d = dst + (size_t)i * ATTN_KB;
        for (int j = 0; j < n; j++) d[j] = rows[(size_t)j * stride + i];
        for (int j = n; j < ATTN_KB; j++) d[j] = 0.0f;
    }
}

/* 8 floats, one AVX register (GCC/Clang vector extension); aligned(4): loads and stores may be unaligned. With
 * -ffp-contract=fast, a += b * c becomes one FMA. The explicit accumulators keep sums in registers, which GCC does
 * not do for small local arrays. */
typedef float v8 __attribute__((vector_size(32), aligned(4)));
#define V8(p) (*(const v8*)(p))

_Static_assert(ATTN_KB == 32, "row_times_block holds a block in 4 registers");

/* sc[j] = sum_i x[i] * xT[i*ATTN_KB + j] for j < 32: one row against a transposed block. HD is even: two sets of
 * accumulators (even and odd i) give 8 independent FMA chains; fixed order, so deterministic. */
static inline void row_times_block(float* restrict sc, const floatX* restrict x, const float* restrict xT, int HD) {
    v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
    for (int i = 0; i < HD; i += 2) {
        const float* c = xT + (size_t)i * ATTN_KB;
        const float* d = c + ATTN_KB;
        const v8 xi = (v8){0} + x[i], xj = (v8){0} + x[i + 1];
        a0 += xi * V8(c);      a1 += xi * V8(c + 8);  a2 += xi * V8(c + 16); a3 += xi * V8(c + 24);
        b0 += xj * V8(d);      b1 += xj * V8(d + 8);  b2 += xj * V8(d + 16); b3 += xj * V8(d + 24);
    }
    *(v8*)sc = a0 + b0; *(v8*)(sc + 8) = a1 + b1; *(v8*)(sc + 16) = a2 + b2; *(v8*)(sc + 24) = a3 + b3;
}

/* acc[0:HD] += sum_{j = j0..j1-1, in order} w[j] * rows[j*stride + 0:HD]. Columns in chunks of 64 (8 register
 * accumulators), then 8, then one by one; every element sums its j terms in increasing j. */
static inline void accumulate_rows(float* restrict acc, const float* restrict w, const floatX* restrict rows,
                                   size_t stride, int j0, int j1, int HD) {
    int i0 = 0;
    for (; i0 + 64 <= HD; i0 += 64) {
        float* a = acc + i0;
        v8 a0 = V8(a), a1 = V8(a + 8), a2 = V8(a + 16), a3 = V8(a + 24);
        v8 a4 = V8(a + 32), a5 = V8(a + 40), a6 = V8(a + 48), a7 = V8(a + 56);
        for (int j = j0; j < j1; j++) {
            const floatX* r = rows + (size_t)j * stride + i0;
            const v8 wj = (v8){0} + w[j];
            a0 += wj * V8(r);      a1 += wj * V8(r + 8);  a2 += wj * V8(r + 16); a3 += wj * V8(r + 24);
            a4 += wj * V8(r + 32); a5 += wj * V8(r + 40); a6 += wj * V8(r + 48); a7 += wj * V8(r + 56);
        }
        *(v8*)a = a0; *(v8*)(a + 8) = a1; *(v8*)(a + 16) = a2; *(v8*)(a + 24) = a3;
        *(v8*)(a + 32) = a4; *(v8*)(a + 40) = a5; *(v8*)(a + 48) = a6; *(v8*)(a + 56) = a7;
    }
    for (; i0 + 8 <= HD; i0 += 8) {
        v8 a0 = V8(acc + i0);
        for (int j = j0; j < j1; j++) a0 += ((v8){0} + w[j]) * V8(rows + (size_t)j * stride + i0);
        *(v8*)(acc + i0) = a0;
    }
    for (; i0 < HD; i0++) {
        float a = acc[i0];
        for (int j = j0; j < j1; j++) a += w[j] * rows[(size_t)j * stride + i0];
        acc[i0] = a;
    }
}

/* Query tile of the forward and dq passes: QT consecutive positions of all `group` heads of one kv head. */
static int attn_tile_positions(int group) { return group >= ATTN_QROWS ? 1 : ATTN_QROWS / group; }

/* out[B,T,NH,HD] (=), lse[B,NH,T] (=). Online softmax per query row, one rescale per key block. */
int MT_FN(attention_forward)(floatX* out, float* lse, const floatX* qkv,
                             int B, int T, int NH, int NKV, int HD, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(attn_check(B, T, NH, NKV, HD));
    if (B == 0 || T == 0) return MT_OK;
    MT_REQUIRE(out && lse && qkv);
    const int H = NH + 2 * NKV, group = NH / NKV;
    const size_t tstride = (size_t)H * HD;              /* floats between positions t and t+1 */
    const float scale = 1.0f / sqrtf((float)HD);
    const int QT = attn_tile_positions(group), ntiles = (T + QT - 1) / QT;
    const int64_t units = (int64_t)B * NKV * ntiles;
    const int64_t work = (int64_t)B * NH * T * (T + 1) / 2 * HD;
    const int RMAX = group * QT;
    #pragma omp parallel if(work > MT_OMP_MIN_WORK)
    {
        float kT[HD * ATTN_KB], sc[ATTN_KB];
        float acc[RMAX * HD], m[RMAX], l[RMAX];
        #pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < units; u++) {
            /* the last tiles (most keys) first, for the dynamic schedule */
            const int tile = ntiles - 1 - (int)(u % ntiles), kh = (int)(u / ntiles % NKV), b = (int)(u / ntiles / NKV);
            const int t0 = tile * QT, t1 = t0 + QT < T ? t0 + QT : T, nt = t1 - t0, R = group * nt;
            const floatX* base = qkv + (size_t)b * T * tstride;
            const floatX* k0 = base + (size_t)(NH + kh) * HD;
            const floatX* v0 = base + (size_t)(NH + NKV + kh) * HD;
            for (int r = 0; r < R; r++) { m[r] = -INFINITY; l[r] = 0.0f; }
            memset(acc, 0, sizeof(float) * (size_t)R * HD);
            for (int s0 = 0; s0 < t1; s0 += ATTN_KB) {
                const int nk = s0 + ATTN_KB < t1 ? ATTN_KB : t1 - s0;
                transpose_block(kT, k0 + (size_t)s0 * tstride, tstride, nk, HD);
                for (int r = 0; r < R; r++) {
                    const int h = kh * group + r / nt, t = t0 + r % nt;
                    if (s0 > t) continue;
                    const int valid = t - s0 + 1 < nk ? t - s0 + 1 : nk;   /* keys s0 .. s0+valid-1 are <= t */
                    row_times_block(sc, base + (size_t)t * tstride + (size_t)h * HD, kT, HD);
                    float bm = -INFINITY;
                    for (int j = 0; j < ATTN_KB; j++) {
                        sc[j] = j < valid ? sc[j] * scale : -INFINITY;
                        bm = sc[j] > bm ? sc[j] : bm;
                    }
                    float* a = acc + (size_t)r * HD;
                    if (bm > m[r]) {                       /* new running max: rescale what is accumulated */
                        const float c = mt_expf(m[r] - bm);  /* m = -inf on the first block: c = 0 */
                        l[r] *= c;
                        #pragma omp simd
                        for (int i = 0; i < HD; i++) a[i] *= c;
                        m[r] = bm;
                    }
                    const float mr = m[r];
                    float ls = 0.0f;
                    #pragma omp simd reduction(+:ls)
                    for (int j = 0; j < ATTN_KB; j++) { sc[j] = mt_expf(sc[j] - mr); ls += sc[j]; }
                    l[r] += ls;
                    accumulate_rows(a, sc, v0 + (size_t)s0 * tstride, tstride, 0, valid, HD);
                }
            }
            for (int r = 0; r < R; r++) {
                const int h = kh * group + r / nt, t = t0 + r % nt;
                floatX* o = out + ((size_t)(b * T + t) * NH + h) * HD;
                const float inv = 1.0f / l[r];
                #pragma omp simd
                for (int i = 0; i < HD; i++) o[i] = acc[(size_t)r * HD + i] * inv;
                lse[((size_t)b * NH + h) * T + t] = m[r] + logf(l[r]);
            }
        }
    }
    return MT_OK;
}

/* With P[t,s] = exp(scale*q_t.k_s - lse_t) (s <= t), dP[t,s] = dout_t.v_s, D_t = dout_t.out_t and
 * dS[t,s] = P[t,s] * (dP[t,s] - D_t):
 *   dq_t = scale * sum_s dS[t,s] k_s                                   (pass 2, query tiles)
 *   dk_s = scale * sum_{h in group} sum_{t>=s} dS[t,s] q_t             (pass 3, key tiles)
 *   dv_s =         sum_{h in group} sum_{t>=s} P[t,s] dout_t
 * dqkv (=): all three parts are written. scratch[B,NH,T] holds D. */
int MT_FN(attention_backward)(floatX* dqkv, float* scratch, const floatX* dout, const floatX* qkv,
                              const floatX* out, const float* lse,
                              int B, int T, int NH, int NKV, int HD, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(attn_check(B, T, NH, NKV, HD));
    if (B == 0 || T == 0) return MT_OK;
    MT_REQUIRE(dqkv && scratch && dout && qkv && out && lse);
    const int H = NH + 2 * NKV, group = NH / NKV;
    const size_t tstride = (size_t)H * HD, ostride = (size_t)NH * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    const int64_t rows = (int64_t)B * NH * T;
    const int64_t work = rows * (T + 1) / 2 * HD;
    const int QT = attn_tile_positions(group), nqtiles = (T + QT - 1) / QT, RMAX = group * QT;
    const int nktiles = (T + ATTN_KT - 1) / ATTN_KT;
    float* D = scratch;
    #pragma omp parallel if(work > MT_OMP_MIN_WORK)
    {
        float xT[HD * ATTN_KB], yT[HD * ATTN_KB], sc[ATTN_KB], dp[ATTN_KB];
        float acc[(RMAX > ATTN_KT ? RMAX : ATTN_KT) * HD], acc2[ATTN_KT * HD];

        /* pass 1: D[b,h,t] = dout_t . out_t */
        #pragma omp for schedule(static)
        for (int64_t row = 0; row < rows; row++) {
            const int t = (int)(row % T), h = (int)(row / T % NH), b = (int)(row / T / NH);
            const size_t o = (size_t)(b * T + t) * ostride + (size_t)h * HD;
            float d = 0.0f;
            #pragma omp simd reduction(+:d)
            for (int i = 0; i < HD; i++) d += dout[o + i] * out[o + i];
            D[row] = d;
        }

        /* pass 2: dq, one query tile (QT positions x the group's heads) per unit */
        const int64_t qunits = (int64_t)B * NKV * nqtiles;
        #pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < qunits; u++) {
            const int tile = nqtiles - 1 - (int)(u % nqtiles), kh = (int)(u / nqtiles % NKV), b = (int)(u / nqtiles / NKV);
            const int t0 = tile * QT, t1 = t0 + QT < T ? t0 + QT : T, nt = t1 - t0, R = group * nt;
            const floatX* base = qkv + (size_t)b * T * tstride;
            const floatX* k0 = base + (size_t)(NH + kh) * HD;
            const floatX* v0 = base + (size_t)(NH + NKV + kh) * HD;
            memset(acc, 0, sizeof(float) * (size_t)R * HD);
            for (int s0 = 0; s0 < t1; s0 += ATTN_KB) {
                const int nk = s0 + ATTN_KB < t1 ? ATTN_KB : t1 - s0;
                transpose_block(xT, k0 + (size_t)s0 * tstride, tstride, nk, HD);
                transpose_block(yT, v0 + (size_t)s0 * tstride, tstride, nk, HD);
                for (int r = 0; r < R; r++) {
                    const int h = kh * group + r / nt, t = t0 + r % nt;
                    if (s0 > t) continue;
                    const int valid = t - s0 + 1 < nk ? t - s0 + 1 : nk;
                    const size_t lrow = ((size_t)b * NH + h) * T + t;
                    const float lt = lse[lrow], dt = D[lrow];
                    row_times_block(sc, base + (size_t)t * tstride + (size_t)h * HD, xT, HD);
                    row_times_block(dp, dout + (size_t)(b * T + t) * ostride + (size_t)h * HD, yT, HD);
                    #pragma omp simd
                    for (int j = 0; j < ATTN_KB; j++) {
                        const float p = mt_expf(sc[j] * scale - lt);
                        sc[j] = j < valid ? p * (dp[j] - dt) : 0.0f;      /* dS */
                    }
                    float* a = acc + (size_t)r * HD;
                    accumulate_rows(a, sc, k0 + (size_t)s0 * tstride, tstride, 0, valid, HD);
                }
            }
            for (int r = 0; r < R; r++) {
                const int h = kh * group + r / nt, t = t0 + r % nt;
                floatX* dq = dqkv + (size_t)(b * T + t) * tstride + (size_t)h * HD;
                #pragma omp simd
                for (int i = 0; i < HD; i++) dq[i] = acc[(size_t)r * HD + i] * scale;
            }
        }

        /* pass 3: dk and dv, one tile of ATTN_KT key positions of one kv head per unit */
        const int64_t kunits = (int64_t)B * NKV * nktiles;
        #pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < kunits; u++) {
            /* the first tiles (most queries) first, for the dynamic schedule */
            const int tile = (int)(u % nktiles), kh = (int)(u / nktiles % NKV), b = (int)(u / nktiles / NKV);
            const int s0 = tile * ATTN_KT, s1 = s0 + ATTN_KT < T ? s0 + ATTN_KT : T, ns = s1 - s0;
            const floatX* base = qkv + (size_t)b * T * tstride;
            float* dk = acc;
            float* dv = acc2;
            memset(dk, 0, sizeof(float) * (size_t)ns * HD);
            memset(dv, 0, sizeof(float) * (size_t)ns * HD);
            for (int h = kh * group; h < (kh + 1) * group; h++) {
                const float* lrow = lse + ((size_t)b * NH + h) * T;
                const float* drow = D + ((size_t)b * NH + h) * T;
                const floatX* q0 = base + (size_t)h * HD;
                const floatX* do0 = dout + (size_t)b * T * ostride + (size_t)h * HD;
                for (int t0 = s0; t0 < T; t0 += ATTN_KB) {                /* query blocks from the tile's first key */
                    const int nq = t0 + ATTN_KB < T ? ATTN_KB : T - t0;
                    transpose_block(xT, q0 + (size_t)t0 * tstride, tstride, nq, HD);
                    transpose_block(yT, do0 + (size_t)t0 * ostride, ostride, nq, HD);
                    float lb[ATTN_KB], db[ATTN_KB];                        /* lse and D of the block, padded */
                    for (int j = 0; j < ATTN_KB; j++) {
                        lb[j] = j < nq ? lrow[t0 + j] : 0.0f;
                        db[j] = j < nq ? drow[t0 + j] : 0.0f;
                    }
                    for (int s = s0; s < s1; s++) {
                        const int jstart = s > t0 ? s - t0 : 0;             /* queries t0+j >= s */
                        if (jstart >= nq) continue;
                        const floatX* k = base + (size_t)s * tstride + (size_t)(NH + kh) * HD;
                        const floatX* v = base + (size_t)s * tstride + (size_t)(NH + NKV + kh) * HD;
                        row_times_block(sc, k, xT, HD);
                        row_times_block(dp, v, yT, HD);
                        float pj[ATTN_KB];
                        #pragma omp simd
                        for (int j = 0; j < ATTN_KB; j++) {
                            const float p = j >= jstart && j < nq ? mt_expf(sc[j] * scale - lb[j]) : 0.0f;
                            pj[j] = p;
                            sc[j] = p * (dp[j] - db[j]);                    /* dS */
                        }
                        float* dks = dk + (size_t)(s - s0) * HD;
                        float* dvs = dv + (size_t)(s - s0) * HD;
                        accumulate_rows(dks, sc, q0 + (size_t)t0 * tstride, tstride, jstart, nq, HD);
                        accumulate_rows(dvs, pj, do0 + (size_t)t0 * ostride, ostride, jstart, nq, HD);
                    }
                }
            }
            for (int s = s0; s < s1; s++) {
                floatX* dk_out = dqkv + (size_t)(b * T + s) * tstride + (size_t)(NH + kh) * HD;
                floatX* dv_out = dqkv + (size_t)(b * T + s) * tstride + (size_t)(NH + NKV + kh) * HD;
                #pragma omp simd
                for (int i = 0; i < HD; i++) {
                    dk_out[i] = dk[(size_t)(s - s0) * HD + i] * scale;
                    dv_out[i] = dv[(size_t)(s - s0) * HD + i];
                }
            }
        }
    }
    return MT_OK;
}
