/* RMSNorm forward/backward of the CPU implementation (floatX = float). */
#include "mt_cpu.h"
#include <math.h>

/* out[N,C] = inp * rstd[n] * weight (=);  rstd[N] = 1/sqrt(mean(inp[n,:]^2) + eps) (=). */
int MT_FN(rmsnorm_forward)(floatX* out, float* rstd, const floatX* inp, const floatX* weight,
                           int N, int C, float eps, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(N >= 0 && C > 0);
    if (N == 0) return MT_OK;
    MT_REQUIRE(out && rstd && inp && weight);
    #pragma omp parallel for if((int64_t)N * C > MT_OMP_MIN_WORK) schedule(static)
    for (int n = 0; n < N; n++) {
        const floatX* x = inp + (size_t)n * C;
        floatX* o = out + (size_t)n * C;
        float ss = 0.0f;
        #pragma omp simd reduction(+:ss)
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        rstd[n] = r;
        #pragma omp simd
        for (int c = 0; c < C; c++) o[c] = x[c] * r * weight[c];
    }
    return MT_OK;
}

/* Rows per dweight partial: chunk k of the N rows is [k*rows, (k+1)*rows). The chunking depends on N only, never on
 * the thread count, and the partials are summed in chunk order, so dweight is bitwise reproducible. */
static int rmsnorm_rows_per_chunk(int N) {
    int rows = (N + 255) / 256;                         /* at most 256 chunks: the scratch holds 256 rows of C */
    return rows < 8 ? 8 : rows;
}

/* With g = dout * weight and x the input row:
 *   dinp[n,:]  += rstd * g - rstd^3 * x * mean(g * x)     (+=)
 *   dweight[:] += sum_n dout[n,:] * x[n,:] * rstd[n]       (+=, partial sums per row chunk in scratch, then in order) */
int MT_FN(rmsnorm_backward)(floatX* dinp, float* dweight, float* scratch, const floatX* dout, const floatX* inp,
                            const floatX* weight, const float* rstd, int N, int C, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(N >= 0 && C > 0);
    if (N == 0) return MT_OK;
    MT_REQUIRE(dinp && dweight && scratch && dout && inp && weight && rstd);
    int rows = rmsnorm_rows_per_chunk(N);
    int nchunks = (N + rows - 1) / rows;
    #pragma omp parallel if((int64_t)N * C > MT_OMP_MIN_WORK)
    {
        #pragma omp for schedule(static)
        for (int k = 0; k < nchunks; k++) {
            float* part = scratch + (size_t)k * C;
            for (int c = 0; c < C; c++) part[c] = 0.0f;
            int n1 = (k + 1) * rows < N ? (k + 1) * rows : N;
            for (int n = k * rows; n < n1; n++) {
                const floatX* x = inp + (size_t)n * C;
                const floatX* d = dout + (size_t)n * C;
                floatX* dx = dinp + (size_t)n * C;
                float r = rstd[n];
                float gx = 0.0f;                          /* sum_c dout * weight * x */
                #pragma omp simd reduction(+:gx)
                for (int c = 0; c < C; c++) gx += d[c] * weight[c] * x[c];
                float k3 = r * r * r * gx / (float)C;
                #pragma omp simd
                for (int c = 0; c < C; c++) {
                    dx[c] += r * d[c] * weight[c] - k3 * x[c];
                    part[c] += d[c] * x[c] * r;
                }
            }
        }
        /* reduce the partials column-block by column-block, each column in chunk order */
        #pragma omp for schedule(static)
        for (int c0 = 0; c0 < C; c0 += 64) {
            int c1 = c0 + 64 < C ? c0 + 64 : C;
            for (int k = 0; k < nchunks; k++) {
                const float* part = scratch + (size_t)k * C;
                #pragma omp simd
                for (int c = c0; c < c1; c++) dweight[c] += part[c];
            }
        }
    }
    return MT_OK;
}
