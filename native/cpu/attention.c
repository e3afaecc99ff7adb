/* Causal grouped-query attention forward/backward of the CPU implementation (floatX = float).
 *
 * qkv: [B,T,H,HD] with H = NH + 2*NKV (q heads, then k heads, then v heads); query head h reads kv head
 * h / (NH/NKV). Scores are scaled by 1/sqrt(HD).
 *
 * Structure (flash-attention on a CPU, every product a small GEMM): work is cut into tiles that share one kv head.
 * A tile copies its rows once into contiguous buffers (queries pre-scaled by 1/sqrt(HD)); each block of BK keys (or,
 * in the dk/dv pass, queries) is copied once per tile in the two layouts the products need: transposed [HD, BK] for
 * the score products and row-major [BK, HDP] (HDP = HD rounded up to 16, zero columns) for the P.V / dS.K products.
 * Scores of a whole tile against a block go to a [rows, BK] buffer; all products run through one register-blocked
 * micro-kernel (mm_acc: 6 rows x 16 columns of accumulators, AVX2 FMA). The T x T score matrix is never stored; the
 * backward recomputes the probabilities from the saved log-sum-exp.
 *
 * Determinism: every output row is produced by exactly one thread, and each of its sums runs in a fixed order (keys
 * ascending inside a product, key blocks ascending; for dk/dv: heads of the group ascending, then query blocks
 * ascending); tile and block sizes depend on HD and the group size only, never on the thread count. No atomics.
 *
 * Per-thread buffers are stack arrays, at most about 160 KB (HD 64), 140 KB (HD 128), 200 KB (HD 256): the calling
 * Java thread takes part, keep its stack at the 1 MB default or more. */
#include "mt_cpu.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

static int attn_check(int B, int T, int NH, int NKV, int HD) {
    return B >= 0 && T >= 0 && NH > 0 && NKV > 0 && NH % NKV == 0 && HD > 0 && HD % 2 == 0;
}

/* 8 floats, one AVX register (GCC/Clang vector extension); aligned(4): loads and stores may be unaligned. With
 * -ffp-contract=fast, a += b * c becomes one FMA. */
typedef float v8 __attribute__((vector_size(32), aligned(4)));
#define V8(p) (*(const v8*)(p))
/* x in all 8 lanes: one vbroadcastss ((v8){0} + x would add an extra vaddss: -0.0 + 0 is not an identity). */
static inline v8 bcast(float x) { return (v8){x, x, x, x, x, x, x, x}; }

/* C[r, 0:16] (+)= sum_{k = 0..K-1, in order} A[r*lda + k] * B[k*ldb + 0:16] for r < MR (MR constant after inlining:
 * 2*MR accumulators stay in registers). acc = 0: C is overwritten. */
static inline __attribute__((always_inline)) void mm_tile(const int MR, float* restrict C, int ldc, const float* restrict A,
                                                          int lda, const float* restrict B, int ldb, int K, int acc) {
    v8 c0[6], c1[6];
    #pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        c0[r] = acc ? V8(C + (size_t)r * ldc) : (v8){0};
        c1[r] = acc ? V8(C + (size_t)r * ldc + 8) : (v8){0};
    }
    for (int k = 0; k < K; k++) {
        const v8 b0 = V8(B + (size_t)k * ldb), b1 = V8(B + (size_t)k * ldb + 8);
        #pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const v8 a = bcast(A[(size_t)r * lda + k]);
            c0[r] += a * b0;
            c1[r] += a * b1;
        }
    }
    #pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        *(v8*)(C + (size_t)r * ldc) = c0[r];
        *(v8*)(C + (size_t)r * ldc + 8) = c1[r];
    }
}

/* C[M, N] (+)= A[M, K] B[K, N] (acc = 1: +=, 0: =), row-major with leading dimensions lda, ldb, ldc; N % 16 == 0.
 * Every element sums its K products in increasing k, whatever its row's position in the 6-row tiling. */
static void mm_acc(float* restrict C, int ldc, const float* restrict A, int lda, const float* restrict B, int ldb,
                   int M, int N, int K, int acc) {
    for (int c0 = 0; c0 < N; c0 += 16) {
        int r = 0;
        for (; r + 6 <= M; r += 6) mm_tile(6, C + (size_t)r * ldc + c0, ldc, A + (size_t)r * lda, lda, B + c0, ldb, K, acc);
        float* Cr = C + (size_t)r * ldc + c0;
        const float* Ar = A + (size_t)r * lda;
        switch (M - r) {
            case 5: mm_tile(5, Cr, ldc, Ar, lda, B + c0, ldb, K, acc); break;
            case 4: mm_tile(4, Cr, ldc, Ar, lda, B + c0, ldb, K, acc); break;
            case 3: mm_tile(3, Cr, ldc, Ar, lda, B + c0, ldb, K, acc); break;
            case 2: mm_tile(2, Cr, ldc, Ar, lda, B + c0, ldb, K, acc); break;
            case 1: mm_tile(1, Cr, ldc, Ar, lda, B + c0, ldb, K, acc); break;
            default: break;
        }
    }
}

/* dst[i*ld + j] = rows[j*stride + i] for j < n, 0 for n <= j < npad (i < HD): n rows transposed, zero-padded.
 * Exact copies, so the 8x8 blocks and the scalar edges give the same result. */
static void transpose_rows(float* restrict dst, int ld, const floatX* restrict rows, size_t stride, int n, int npad, int HD) {
    for (int i = 0; i < HD; i++) memset(dst + (size_t)i * ld + n, 0, sizeof(float) * (size_t)(npad - n));
    const int n8 = n & ~7, hd8 = HD & ~7;
    for (int j = 0; j < n8; j += 8)
        for (int i = 0; i < hd8; i += 8) transpose8x8(dst + (size_t)i * ld + j, ld, rows + (size_t)j * stride + i, stride);
    for (int j = 0; j < n; j++) {
        const floatX* r = rows + (size_t)j * stride;
        for (int i = j < n8 ? hd8 : 0; i < HD; i++) dst[(size_t)i * ld + j] = r[i];
    }
}

/* dst[j*HDP + 0:HDP] = s * rows[j*stride + 0:HD] followed by HDP-HD zeros, j < n. */
static void copy_rows(float* restrict dst, int HDP, const floatX* restrict rows, size_t stride, int n, int HD, float s) {
    for (int j = 0; j < n; j++) {
        float* d = dst + (size_t)j * HDP;
        const floatX* r = rows + (size_t)j * stride;
        #pragma omp simd
        for (int i = 0; i < HD; i++) d[i] = s * r[i];
        for (int i = HD; i < HDP; i++) d[i] = 0.0f;
    }
}

/* Tile sizes, functions of HD only (determinism): BK keys per block (queries per block in the dk/dv pass) and RT
 * rows per tile; smaller for large heads to bound the stack buffers. */
static int attn_bk(int HD) { return HD <= 64 ? 64 : 32; }
static int attn_rt(int HD) { return HD <= 64 ? 64 : HD <= 128 ? 32 : 16; }
/* Query tile of the forward and dq passes: QT consecutive positions of all `group` heads of one kv head. */
static int attn_tile_positions(int group, int HD) { return group >= attn_rt(HD) ? 1 : attn_rt(HD) / group; }
static int round16(int n) { return (n + 15) & ~15; }

/* Copies the R = group*nt query rows of a tile (row r: head kh*group + r/nt, position t0 + r%nt) into dst[R, ld],
 * scaled by s, zero-padded to ld columns. */
static void gather_tile_rows(float* dst, int ld, const floatX* src, size_t tstride, size_t hstride_base, int kh,
                             int group, int t0, int nt, int HD, float s) {
    for (int g = 0; g < group; g++)
        copy_rows(dst + (size_t)g * nt * ld, ld, src + (size_t)t0 * tstride + hstride_base + (size_t)(kh * group + g) * HD,
                  tstride, nt, HD, s);
}

int MT_FN(attention_path)(int NH, int NKV, int HD, int aligned16) {
    (void)aligned16;
    return attn_check(0, 0, NH, NKV, HD) ? MT_ATTN_PATH_ONE : MT_ERR_ARG;
}

/* out[B,T,NH,HD] (=), lse[B,NH,T] (=). Online softmax per query row, one rescale per key block. */
int MT_FN(attention_forward)(floatX* out, float* lse, const floatX* qkv,
                             int B, int T, int NH, int NKV, int HD, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(attn_check(B, T, NH, NKV, HD));
    if (B == 0 || T == 0) return MT_OK;
    MT_REQUIRE(out && lse && qkv);
    const int H = NH + 2 * NKV, group = NH / NKV, HDP = round16(HD), BK = attn_bk(HD);
    const size_t tstride = (size_t)H * HD;              /* floats between positions t and t+1 */
    const float scale = 1.0f / sqrtf((float)HD);
    const int QT = attn_tile_positions(group, HD), ntiles = (T + QT - 1) / QT, RMAX = group * QT;
    const int64_t units = (int64_t)B * NKV * ntiles;
    const int64_t work = (int64_t)B * NH * T * (T + 1) / 2 * HD;
    #pragma omp parallel if(work > MT_OMP_MIN_WORK)
    {
        float qs[RMAX * HDP], acc[RMAX * HDP], S[RMAX * BK], kT[HD * BK], vb[BK * HDP], m[RMAX], l[RMAX];
        #pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < units; u++) {
            /* the last tiles (most keys) first, for the dynamic schedule */
            const int tile = ntiles - 1 - (int)(u % ntiles), kh = (int)(u / ntiles % NKV), b = (int)(u / ntiles / NKV);
            const int t0 = tile * QT, t1 = t0 + QT < T ? t0 + QT : T, nt = t1 - t0, R = group * nt;
            const floatX* base = qkv + (size_t)b * T * tstride;
            const floatX* k0 = base + (size_t)(NH + kh) * HD;
            const floatX* v0 = base + (size_t)(NH + NKV + kh) * HD;
            gather_tile_rows(qs, HDP, base, tstride, 0, kh, group, t0, nt, HD, scale);
            for (int r = 0; r < R; r++) { m[r] = -INFINITY; l[r] = 0.0f; }
            memset(acc, 0, sizeof(float) * (size_t)R * HDP);
            for (int s0 = 0; s0 < t1; s0 += BK) {
                const int nk = s0 + BK < t1 ? BK : t1 - s0, nk16 = round16(nk);
                transpose_rows(kT, BK, k0 + (size_t)s0 * tstride, tstride, nk, nk16, HD);
                copy_rows(vb, HDP, v0 + (size_t)s0 * tstride, tstride, nk, HD, 1.0f);
                mm_acc(S, BK, qs, HDP, kT, BK, R, nk16, HD, 0);          /* S[R, nk16] = (scale q) . k */
                for (int r = 0; r < R; r++) {
                    const int t = t0 + r % nt;
                    float* s = S + (size_t)r * BK;
                    const int valid = t - s0 + 1 < nk ? t - s0 + 1 : nk;   /* keys s0 .. s0+valid-1 are <= t */
                    if (valid <= 0) { memset(s, 0, sizeof(float) * (size_t)nk16); continue; }
                    float bm = -INFINITY;
                    #pragma omp simd reduction(max:bm)
                    for (int j = 0; j < valid; j++) bm = s[j] > bm ? s[j] : bm;
                    float* a = acc + (size_t)r * HDP;
                    if (bm > m[r]) {                       /* new running max: rescale what is accumulated */
                        const float c = mt_expf(m[r] - bm);  /* m = -inf on the first block: c = 0 */
                        l[r] *= c;
                        #pragma omp simd
                        for (int i = 0; i < HDP; i++) a[i] *= c;
                        m[r] = bm;
                    }
                    const float mr = m[r];
                    float ls = 0.0f;
                    #pragma omp simd reduction(+:ls)
                    for (int j = 0; j < nk16; j++) {
                        const float p = j < valid ? mt_expf(s[j] - mr) : 0.0f;
                        s[j] = p;
                        ls += p;
                    }
                    l[r] += ls;
                }
                mm_acc(acc, HDP, S, BK, vb, HDP, R, HDP, nk, 1);        /* acc[R, HDP] += P . v */
            }
            for (int r = 0; r < R; r++) {
                const int h = kh * group + r / nt, t = t0 + r % nt;
                floatX* o = out + ((size_t)(b * T + t) * NH + h) * HD;
                const float inv = 1.0f / l[r];
                #pragma omp simd
                for (int i = 0; i < HD; i++) o[i] = acc[(size_t)r * HDP + i] * inv;
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
    const int H = NH + 2 * NKV, group = NH / NKV, HDP = round16(HD), BK = attn_bk(HD), KT = attn_rt(HD);
    const size_t tstride = (size_t)H * HD, ostride = (size_t)NH * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    const int64_t rows = (int64_t)B * NH * T;
    const int64_t work = rows * (T + 1) / 2 * HD;
    const int QT = attn_tile_positions(group, HD), nqtiles = (T + QT - 1) / QT, RMAX = group * QT;
    const int nktiles = (T + KT - 1) / KT;
    float* D = scratch;
    #pragma omp parallel if(work > MT_OMP_MIN_WORK)
    {
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
        {
            float qs[RMAX * HDP], dob[RMAX * HDP], acc[RMAX * HDP], S[RMAX * BK], dP[RMAX * BK];
            float kT[HD * BK], vT[HD * BK], kb[BK * HDP], lr[RMAX], dr[RMAX];
            const int64_t qunits = (int64_t)B * NKV * nqtiles;
            #pragma omp for schedule(dynamic, 1)
            for (int64_t u = 0; u < qunits; u++) {
                const int tile = nqtiles - 1 - (int)(u % nqtiles), kh = (int)(u / nqtiles % NKV), b = (int)(u / nqtiles / NKV);
                const int t0 = tile * QT, t1 = t0 + QT < T ? t0 + QT : T, nt = t1 - t0, R = group * nt;
                const floatX* base = qkv + (size_t)b * T * tstride;
                const floatX* k0 = base + (size_t)(NH + kh) * HD;
                const floatX* v0 = base + (size_t)(NH + NKV + kh) * HD;
                gather_tile_rows(qs, HDP, base, tstride, 0, kh, group, t0, nt, HD, scale);
                gather_tile_rows(dob, HDP, dout + (size_t)b * T * ostride, ostride, 0, kh, group, t0, nt, HD, 1.0f);
                for (int r = 0; r < R; r++) {
                    const size_t lrow = ((size_t)b * NH + kh * group + r / nt) * T + t0 + r % nt;
                    lr[r] = lse[lrow];
                    dr[r] = D[lrow];
                }
                memset(acc, 0, sizeof(float) * (size_t)R * HDP);
                for (int s0 = 0; s0 < t1; s0 += BK) {
                    const int nk = s0 + BK < t1 ? BK : t1 - s0, nk16 = round16(nk);
                    transpose_rows(kT, BK, k0 + (size_t)s0 * tstride, tstride, nk, nk16, HD);
                    transpose_rows(vT, BK, v0 + (size_t)s0 * tstride, tstride, nk, nk16, HD);
                    copy_rows(kb, HDP, k0 + (size_t)s0 * tstride, tstride, nk, HD, 1.0f);
                    mm_acc(S, BK, qs, HDP, kT, BK, R, nk16, HD, 0);        /* scores */
                    mm_acc(dP, BK, dob, HDP, vT, BK, R, nk16, HD, 0);      /* dP = dout . v */
                    for (int r = 0; r < R; r++) {
                        const int t = t0 + r % nt;
                        const int valid = t - s0 + 1 < nk ? t - s0 + 1 : nk;
                        const float lt = lr[r], dt = dr[r];
                        float* s = S + (size_t)r * BK;
                        const float* dp = dP + (size_t)r * BK;
                        #pragma omp simd
                        for (int j = 0; j < nk16; j++) {
                            const float p = j < valid ? mt_expf(s[j] - lt) : 0.0f;
                            s[j] = p * (dp[j] - dt);                              /* dS */
                        }
                    }
                    mm_acc(acc, HDP, S, BK, kb, HDP, R, HDP, nk, 1);       /* dq += dS . k */
                }
                for (int r = 0; r < R; r++) {
                    const int h = kh * group + r / nt, t = t0 + r % nt;
                    floatX* dq = dqkv + (size_t)(b * T + t) * tstride + (size_t)h * HD;
                    #pragma omp simd
                    for (int i = 0; i < HD; i++) dq[i] = acc[(size_t)r * HDP + i] * scale;
                }
            }
        }

        /* pass 3: dk and dv, one tile of KT key positions of one kv head per unit */
        {
            float ks[KT * HDP], vs[KT * HDP], dk[KT * HDP], dv[KT * HDP], S[KT * BK], dP[KT * BK];
            float qT[HD * BK], doT[HD * BK], qb[BK * HDP], dob[BK * HDP], lb[BK], db[BK];
            const int64_t kunits = (int64_t)B * NKV * nktiles;
            #pragma omp for schedule(dynamic, 1)
            for (int64_t u = 0; u < kunits; u++) {
                /* the first tiles (most queries) first, for the dynamic schedule */
                const int tile = (int)(u % nktiles), kh = (int)(u / nktiles % NKV), b = (int)(u / nktiles / NKV);
                const int s0 = tile * KT, s1 = s0 + KT < T ? s0 + KT : T, ns = s1 - s0;
                const floatX* base = qkv + (size_t)b * T * tstride;
                copy_rows(ks, HDP, base + (size_t)s0 * tstride + (size_t)(NH + kh) * HD, tstride, ns, HD, scale);
                copy_rows(vs, HDP, base + (size_t)s0 * tstride + (size_t)(NH + NKV + kh) * HD, tstride, ns, HD, 1.0f);
                memset(dk, 0, sizeof(float) * (size_t)ns * HDP);
                memset(dv, 0, sizeof(float) * (size_t)ns * HDP);
                for (int h = kh * group; h < (kh + 1) * group; h++) {
                    const float* lrow = lse + ((size_t)b * NH + h) * T;
                    const float* drow = D + ((size_t)b * NH + h) * T;
                    const floatX* q0 = base + (size_t)h * HD;
                    const floatX* do0 = dout + (size_t)b * T * ostride + (size_t)h * HD;
                    for (int t0 = s0; t0 < T; t0 += BK) {                  /* query blocks from the tile's first key */
                        const int nq = t0 + BK < T ? BK : T - t0, nq16 = round16(nq);
                        transpose_rows(qT, BK, q0 + (size_t)t0 * tstride, tstride, nq, nq16, HD);
                        transpose_rows(doT, BK, do0 + (size_t)t0 * ostride, ostride, nq, nq16, HD);
                        copy_rows(qb, HDP, q0 + (size_t)t0 * tstride, tstride, nq, HD, 1.0f);
                        copy_rows(dob, HDP, do0 + (size_t)t0 * ostride, ostride, nq, HD, 1.0f);
                        for (int j = 0; j < nq16; j++) {                     /* lse and D of the block, padded */
                            lb[j] = j < nq ? lrow[t0 + j] : 0.0f;
                            db[j] = j < nq ? drow[t0 + j] : 0.0f;
                        }
                        mm_acc(S, BK, ks, HDP, qT, BK, ns, nq16, HD, 0);     /* S^T[s, t] = (scale k_s) . q_t */
                        mm_acc(dP, BK, vs, HDP, doT, BK, ns, nq16, HD, 0);   /* dP^T[s, t] = v_s . dout_t */
                        for (int s = s0; s < s1; s++) {
                            const int jstart = s > t0 ? s - t0 : 0;             /* queries t0+j >= s */
                            float* st = S + (size_t)(s - s0) * BK;
                            float* dpt = dP + (size_t)(s - s0) * BK;
                            #pragma omp simd
                            for (int j = 0; j < nq16; j++) {
                                const int ok = j >= jstart && j < nq;
                                const float p = ok ? mt_expf(st[j] - lb[j]) : 0.0f;
                                st[j] = p;                                          /* P^T */
                                dpt[j] = p * (dpt[j] - db[j]);                      /* dS^T */
                            }
                        }
                        mm_acc(dv, HDP, S, BK, dob, HDP, ns, HDP, nq, 1);     /* dv += P^T . dout */
                        mm_acc(dk, HDP, dP, BK, qb, HDP, ns, HDP, nq, 1);     /* dk += dS^T . q */
                    }
                }
                for (int s = s0; s < s1; s++) {
                    floatX* dk_out = dqkv + (size_t)(b * T + s) * tstride + (size_t)(NH + kh) * HD;
                    floatX* dv_out = dqkv + (size_t)(b * T + s) * tstride + (size_t)(NH + NKV + kh) * HD;
                    #pragma omp simd
                    for (int i = 0; i < HD; i++) {
                        dk_out[i] = dk[(size_t)(s - s0) * HDP + i] * scale;
                        dv_out[i] = dv[(size_t)(s - s0) * HDP + i];
                    }
                }
            }
        }
    }
    return MT_OK;
}
