/* Meta, fill, copy and cast kernels of the CPU implementation (floatX = float). */
#define _GNU_SOURCE
#include "mt_cpu.h"
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

int MT_FN(backend_id)(void) { return 0; }
int MT_FN(floatx_bytes)(void) { return (int)sizeof(floatX); }

int MT_FN(set_num_threads)(int n) {
    if (n < 1) return MT_ERR_ARG;
    omp_set_num_threads(n);
    return MT_OK;
}

/* OpenBLAS is loaded by the Java side (its JavaCPP preset), not linked here: find it among the loaded objects and
 * ask it for its core type, without making this library depend on it. */
static int find_openblas(struct dl_phdr_info* info, size_t size, void* data) {
    (void)size;
    if (info->dlpi_name && strstr(info->dlpi_name, "libopenblas")) {
        *(const char**)data = info->dlpi_name;
        return 1;
    }
    return 0;
}

int MT_FN(describe)(char* out, int64_t n) {
    if (!out || n < 1) return MT_ERR_ARG;
    const char* path = NULL;
    dl_iterate_phdr(find_openblas, &path);
    void* lib = path ? dlopen(path, RTLD_LAZY | RTLD_NOLOAD) : NULL;
    char* (*corename)(void) = lib ? (char* (*)(void))dlsym(lib, "openblas_get_corename") : NULL;
    char* (*config)(void) = lib ? (char* (*)(void))dlsym(lib, "openblas_get_config") : NULL;
    int (*threads)(void) = lib ? (int (*)(void))dlsym(lib, "openblas_get_num_threads") : NULL;
    const int avx512 = __builtin_cpu_supports("avx512f") && !getenv("MT_NO_AVX512");   /* as linear.c decides */
    snprintf(out, (size_t)n, "%s, sgemm kernels for %s, %d threads; hand-written kernels: %d OpenMP threads, "
             "linear_forward %s", config ? config() : "OpenBLAS (not loaded)", corename ? corename() : "(unknown)",
             threads ? threads() : 0, omp_get_max_threads(), avx512 ? "AVX-512" : "AVX2");
    if (lib) dlclose(lib);                                                 /* NOLOAD: drops only our reference */
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
