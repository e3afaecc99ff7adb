/* Linear layer of the CPU implementation (floatX = float) for inference: out[M,N] = inp[M,K] @ weight[N,K]^T.
 *
 * Two algorithms, picked by M alone:
 *   - M <= MT_LINEAR_DOT_MAX_M (KV-cache decoding: one row per sequence): dot products. The weight is read once,
 *     straight from memory, in groups of R rows (a group stays in L1 while every input row is dotted with it);
 *     each dot product runs in LANES interleaved partial sums (k = l, l + LANES, ...; the K % LANES tail added to
 *     lanes 0..), then a fixed pairwise tree over the lanes.
 *   - larger M (a prefill chunk): a packed GEMM. Blocks of NB weight rows are transposed once into [K, NB] panels
 *     and multiplied by every input row with a register-blocked micro-kernel (AVX-512 when the CPU has it, detected
 *     at run time, else AVX2); each element sums its K products in increasing k with one FMA each, so both
 *     micro-kernels give the same bits.
 * Groups / blocks of weight rows are split over the OpenMP team (dynamic schedule: a descheduled thread on a
 * loaded host does not hold the others up). Every output element is computed by the same code in the same order
 * whatever N, the thread count or its position in the tiling, and for a given regime of M: bitwise reproducible. */
#include "mt_cpu.h"
#include <stdlib.h>
#include <immintrin.h>

/* ------------------------------------------------------------------------------------ few rows: dot products */

#define LANES 8   /* partial sums per dot product: one AVX2 vector */
#define R 4       /* weight rows per group */
#define MB 2      /* input rows per block: MB * R accumulators of LANES floats stay in registers */

/* o[i][r] = dot(x[i], w[r]) over K for MB input rows and R weight rows. */
static inline void dot_block(float o[MB][R], const float* const x[MB], const float* const w[R], int K) {
    float acc[MB][R][LANES];
    for (int i = 0; i < MB; i++)
        for (int r = 0; r < R; r++)
            for (int l = 0; l < LANES; l++) acc[i][r][l] = 0.0f;
    int k = 0;
    for (; k + LANES <= K; k += LANES)
        for (int i = 0; i < MB; i++)
            for (int r = 0; r < R; r++) {
                const float* wr = w[r] + k;
                const float* xi = x[i] + k;
                #pragma omp simd
                for (int l = 0; l < LANES; l++) acc[i][r][l] += wr[l] * xi[l];
            }
    for (int i = 0; i < MB; i++)
        for (int r = 0; r < R; r++) {
            for (int l = 0; k + l < K; l++) acc[i][r][l] += w[r][k + l] * x[i][k + l];
            for (int s = LANES / 2; s >= 1; s /= 2)
                for (int l = 0; l < s; l++) acc[i][r][l] += acc[i][r][l + s];
            o[i][r] = acc[i][r][0];
        }
}

static void linear_dot(floatX* out, const floatX* inp, const floatX* weight, int M, int N, int K) {
    const int64_t groups = ((int64_t)N + R - 1) / R;
    #pragma omp parallel for if((int64_t)M * N * K > 8 * MT_OMP_MIN_WORK) schedule(dynamic, 16)
    for (int64_t g = 0; g < groups; g++) {
        const int n0 = (int)(g * R);
        const int nr = N - n0 < R ? N - n0 : R;
        const float* w[R];
        for (int r = 0; r < R; r++) w[r] = weight + (size_t)(n0 + (r < nr ? r : nr - 1)) * K;  /* tail: repeat a row */
        for (int m0 = 0; m0 < M; m0 += MB) {
            const int mr = M - m0 < MB ? M - m0 : MB;
            const float* x[MB];
            for (int i = 0; i < MB; i++) x[i] = inp + (size_t)(m0 + (i < mr ? i : mr - 1)) * K;
            float o[MB][R];
            dot_block(o, x, w, K);
            for (int i = 0; i < mr; i++)
                for (int r = 0; r < nr; r++) out[(size_t)(m0 + i) * N + n0 + r] = o[i][r];
        }
    }
}

/* -------------------------------------------------------------------------------------- more rows: packed GEMM */

#define NB 32     /* weight rows per panel: the micro-kernel's columns */
#define MR 6      /* input rows per micro-kernel call (AVX-512: 6 x 2 vectors of accumulators; AVX2: 2 x 3 rows of 4) */

typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef float v16 __attribute__((vector_size(64), aligned(4)));

/* C[r, 0:NB] = sum_{k = 0..K-1, in order} A[r*lda + k] * P[k*NB + 0:NB] for r < mr (mr constant after inlining):
 * one FMA per element and k, the same operations whatever the vector width. AVX2: 3 rows x 4 vectors at a time. */
static inline __attribute__((always_inline)) void tile3(const int mr, float* restrict C, int ldc, const float* restrict A,
                                                        int lda, const float* restrict P, int K) {
    v8 c[3][4];
    #pragma GCC unroll 3
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < 4; q++) c[r][q] = (v8){0};
    for (int k = 0; k < K; k++) {
        const float* p = P + (size_t)k * NB;
        const v8 b0 = *(const v8*)p, b1 = *(const v8*)(p + 8), b2 = *(const v8*)(p + 16), b3 = *(const v8*)(p + 24);
        #pragma GCC unroll 3
        for (int r = 0; r < mr; r++) {
            const float a = A[(size_t)r * lda + k];
            const v8 av = {a, a, a, a, a, a, a, a};
            c[r][0] += av * b0; c[r][1] += av * b1; c[r][2] += av * b2; c[r][3] += av * b3;
        }
    }
    #pragma GCC unroll 3
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < 4; q++) *(v8*)(C + (size_t)r * ldc + 8 * q) = c[r][q];
}

static void tiles_avx2(float* restrict C, int ldc, const float* restrict A, int lda, const float* restrict P, int K, int M) {
    for (int m0 = 0; m0 < M; m0 += 3) {
        float* Cm = C + (size_t)m0 * ldc;
        const float* Am = A + (size_t)m0 * lda;
        switch (M - m0 < 3 ? M - m0 : 3) {
            case 3: tile3(3, Cm, ldc, Am, lda, P, K); break;
            case 2: tile3(2, Cm, ldc, Am, lda, P, K); break;
            default: tile3(1, Cm, ldc, Am, lda, P, K); break;
        }
    }
}

/* AVX-512 (runtime-detected): 6 rows x 2 vectors at a time, the same sums. */
__attribute__((target("avx512f"))) static void tiles_avx512(float* restrict C, int ldc, const float* restrict A, int lda,
                                                            const float* restrict P, int K, int M) {
    for (int m0 = 0; m0 < M; m0 += MR) {
        const int mr = M - m0 < MR ? M - m0 : MR;
        float* Cm = C + (size_t)m0 * ldc;
        const float* Am = A + (size_t)m0 * lda;
        v16 c0[MR], c1[MR];
        for (int r = 0; r < MR; r++) { c0[r] = (v16){0}; c1[r] = (v16){0}; }
        if (mr == MR) {
            for (int k = 0; k < K; k++) {
                const v16 b0 = *(const v16*)(P + (size_t)k * NB), b1 = *(const v16*)(P + (size_t)k * NB + 16);
                #pragma GCC unroll 6
                for (int r = 0; r < MR; r++) {
                    const float a = Am[(size_t)r * lda + k];
                    c0[r] += a * b0;
                    c1[r] += a * b1;
                }
            }
        } else {
            for (int k = 0; k < K; k++) {
                const v16 b0 = *(const v16*)(P + (size_t)k * NB), b1 = *(const v16*)(P + (size_t)k * NB + 16);
                for (int r = 0; r < mr; r++) {
                    const float a = Am[(size_t)r * lda + k];
                    c0[r] += a * b0;
                    c1[r] += a * b1;
                }
            }
        }
        for (int r = 0; r < mr; r++) {
            *(v16*)(Cm + (size_t)r * ldc) = c0[r];
            *(v16*)(Cm + (size_t)r * ldc + 16) = c1[r];
        }
    }
}

/* P[k*NB + j] = W[j*K + k] for j < nr, 0 for nr <= j < NB: a panel of nr weight rows, transposed. */
static void pack_panel(float* restrict P, const float* restrict W, int nr, int K) {
    if (nr == NB) {
        const int k8 = K & ~7;
        for (int k = 0; k < k8; k += 8)
            for (int j = 0; j < NB; j += 8) transpose8x8(P + (size_t)k * NB + j, NB, W + (size_t)j * K + k, (size_t)K);
        for (int k = k8; k < K; k++)
            for (int j = 0; j < NB; j++) P[(size_t)k * NB + j] = W[(size_t)j * K + k];
    } else {
        for (int k = 0; k < K; k++)
            for (int j = 0; j < NB; j++) P[(size_t)k * NB + j] = j < nr ? W[(size_t)j * K + k] : 0.0f;
    }
}

static int linear_packed(floatX* out, const floatX* inp, const floatX* weight, int M, int N, int K) {
    const int panels = (N + NB - 1) / NB;
    /* MT_NO_AVX512 set: the AVX2 path on an AVX-512 host (its results are the same bits; a test checks that) */
    const int avx512 = __builtin_cpu_supports("avx512f") && !getenv("MT_NO_AVX512");
    int failed = 0;
    #pragma omp parallel if((int64_t)M * N * K > 8 * MT_OMP_MIN_WORK)
    {
        float* P = malloc(((size_t)K * NB + 1) * sizeof(float));                  /* this thread's panel */
        float Ct[MR * NB];                                                         /* rows of the last, partial panel */
        if (!P) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(dynamic, 1)
        for (int jb = 0; jb < panels; jb++) {
            if (!P) continue;
            const int n0 = jb * NB, nr = N - n0 < NB ? N - n0 : NB;
            pack_panel(P, weight + (size_t)n0 * K, nr, K);
            for (int m0 = 0; m0 < M; m0 += MR) {
                const int mr = M - m0 < MR ? M - m0 : MR;
                float* C = nr == NB ? out + (size_t)m0 * N + n0 : Ct;
                const int ldc = nr == NB ? N : NB;
                if (avx512) tiles_avx512(C, ldc, inp + (size_t)m0 * K, K, P, K, mr);
                else tiles_avx2(C, ldc, inp + (size_t)m0 * K, K, P, K, mr);
                if (nr < NB)
                    for (int i = 0; i < mr; i++)
                        for (int j = 0; j < nr; j++) out[(size_t)(m0 + i) * N + n0 + j] = Ct[i * NB + j];
            }
        }
        free(P);
    }
    return failed ? MT_ERR_UNSUPPORTED : MT_OK;                                   /* no memory for a panel */
}

int MT_FN(linear_forward)(floatX* out, const floatX* inp, const floatX* weight, int M, int N, int K, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0) return MT_OK;
    MT_REQUIRE(out && inp && (K == 0 || weight));
    if (M <= MT_LINEAR_DOT_MAX_M) {
        linear_dot(out, inp, weight, M, N, K);
        return MT_OK;
    }
    return linear_packed(out, inp, weight, M, N, K);
}
