/* Gradient-norm reduction and scaling of the CPU implementation. */
#include "mt_cpu.h"

#define NORM_MAX_CHUNKS 256
#define NORM_MIN_CHUNK 4096

/* out[0] += sum_i x[i]^2 (+=). The n elements are cut into at most NORM_MAX_CHUNKS chunks whose size depends on n
 * only; each chunk is summed in fp64 by one thread, and the chunk sums are added in order, so the result does not
 * depend on the thread count. scratch is unused on CPU. */
int MT_FN(global_norm_squared)(float* out, float* scratch, const float* x, int64_t n, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(n >= 0 && out);
    if (n == 0) return MT_OK;
    MT_REQUIRE(x);
    int64_t nchunks = (n + NORM_MIN_CHUNK - 1) / NORM_MIN_CHUNK;
    if (nchunks > NORM_MAX_CHUNKS) nchunks = NORM_MAX_CHUNKS;
    const int64_t chunk = (n + nchunks - 1) / nchunks;
    double part[NORM_MAX_CHUNKS];
    #pragma omp parallel for if(n > MT_OMP_MIN_WORK) schedule(static)
    for (int64_t k = 0; k < nchunks; k++) {
        int64_t i0 = k * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
        double s = 0.0;
        #pragma omp simd reduction(+:s)
        for (int64_t i = i0; i < i1; i++) s += (double)x[i] * (double)x[i];
        part[k] = s;
    }
    double total = 0.0;
    for (int64_t k = 0; k < nchunks; k++) total += part[k];
    out[0] = (float)((double)out[0] + total);
    return MT_OK;
}

/* x[i] *= s (in place). */
int MT_FN(scale_f32)(float* x, float s, int64_t n, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(n >= 0);
    if (n == 0) return MT_OK;
    MT_REQUIRE(x);
    #pragma omp parallel for simd if(n > MT_OMP_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
    return MT_OK;
}
