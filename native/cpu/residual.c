/* Residual add of the CPU implementation (floatX = float). */
#include "mt_cpu.h"

/* out[n] = a[n] + b[n] (=). out may alias a or b: each element is read before it is written. */
int MT_FN(add)(floatX* out, const floatX* a, const floatX* b, int64_t n, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(n >= 0);
    if (n == 0) return MT_OK;
    MT_REQUIRE(out && a && b);
    #pragma omp parallel for simd if(n > MT_OMP_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return MT_OK;
}
