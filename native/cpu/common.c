/* Meta, fill, copy and cast kernels of the CPU implementation (floatX = float). */
#include "mt_cpu.h"
#include <string.h>
#include <omp.h>

int MT_FN(backend_id)(void) { return 0; }
int MT_FN(floatx_bytes)(void) { return (int)sizeof(floatX); }

int MT_FN(set_num_threads)(int n) {
    if (n < 1) return MT_ERR_ARG;
    omp_set_num_threads(n);
    return MT_OK;
}

int MT_FN(fill_f32)(float* x, float value, int64_t n, void* stream) {
    MT_REQUIRE_STREAM(stream);
    if (n < 0 || (n > 0 && !x)) return MT_ERR_ARG;
    #pragma omp parallel for simd if(n > MT_OMP_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = value;
    return MT_OK;
}

int MT_FN(fill_x)(floatX* x, float value, int64_t n, void* stream) {
    return MT_FN(fill_f32)(x, value, n, stream);
}

int MT_FN(copy_bytes)(void* dst, const void* src, int64_t bytes, void* stream) {
    MT_REQUIRE_STREAM(stream);
    if (bytes < 0 || (bytes > 0 && (!dst || !src))) return MT_ERR_ARG;
    if (bytes > 0) memcpy(dst, src, (size_t)bytes);
    return MT_OK;
}

int MT_FN(cast_f32_to_x)(floatX* out, const float* inp, int64_t n, void* stream) {
    if (n < 0) return MT_ERR_ARG;
    return MT_FN(copy_bytes)(out, inp, n * (int64_t)sizeof(float), stream);
}

int MT_FN(cast_x_to_f32)(float* out, const floatX* inp, int64_t n, void* stream) {
    if (n < 0) return MT_ERR_ARG;
    return MT_FN(copy_bytes)(out, inp, n * (int64_t)sizeof(float), stream);
}
