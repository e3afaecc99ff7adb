/* Small-M linear layer of the CPU implementation (floatX = float): out[M,N] = inp[M,K] @ weight[N,K]^T.
 *
 * For the few rows of KV-cache decoding (M = 1 per sequence) a BLAS sgemm is the wrong tool: it packs the weight,
 * and OpenBLAS hands even a 1-row product to its thread pool. Here the weight is read once, straight from memory, in
 * groups of R rows (each group stays in L1 while all M input rows are dotted with it), and the groups are split over
 * the OpenMP team.
 *
 * Every output element is computed by the same code in the same order whatever M, N, the thread count or its
 * position: a dot product over K in LANES interleaved partial sums (k = l, l + LANES, ...; the K % LANES tail added
 * to lanes 0..), then a fixed pairwise tree over the lanes. So out[m,n] is bitwise independent of how the rows or
 * the output columns are batched or split. */
#include "mt_cpu.h"

#define LANES 8   /* partial sums per dot product: one AVX2 vector */
#define R 4       /* weight rows per group */
#define MB 2      /* input rows per block: MB * R accumulators of LANES floats stay in registers */

/* o[i][r] = dot(x[i], w[r]) over K for MB input rows and R weight rows: acc += w[k0 + l] * x[k0 + l] per lane
 * (k0 = 0, LANES, ...), the K % LANES tail into lanes 0.., then a fixed pairwise tree over the lanes. */
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

int MT_FN(linear_forward)(floatX* out, const floatX* inp, const floatX* weight, int M, int N, int K, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0) return MT_OK;
    MT_REQUIRE(out && inp && (K == 0 || weight));
    const int64_t groups = ((int64_t)N + R - 1) / R;
    #pragma omp parallel for if((int64_t)M * N * K > 8 * MT_OMP_MIN_WORK) schedule(static)
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
    return MT_OK;
}
