/* Wall-clock benchmark of the CPU kernels at training shapes (not a test).
 * Build and run (after `mvn -P'!cuda' process-classes` built target/native-build/libmidtrain_cpu.so):
 *   gcc -O2 -DMT_BACKEND_CPU -I native/include -I native/cpu benchmarks/native/cpu_kernels_bench.c \
 *       -L target/native-build -lmidtrain_cpu -Wl,-rpath,target/native-build -lm -o /tmp/mt_bench && /tmp/mt_bench
 * Optional argument: attention | crossentropy | misc. Prints milliseconds per call (best of several) and GFLOP/s or GB/s. */
#define _POSIX_C_SOURCE 199309L
#include "mt_cpu.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static float* randn(size_t n) {
    float* x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = ((float)rand() / RAND_MAX - 0.5f) * 2.0f;
    return x;
}
#define BEST_OF(reps, ms, call) do { ms = 1e30; for (int r_ = 0; r_ < (reps); r_++) { double t0_ = now(); \
    if ((call) != MT_OK) { printf("error in " #call "\n"); exit(1); } double d_ = (now() - t0_) * 1e3; if (d_ < ms) ms = d_; } } while (0)

int main(int argc, char** argv) {
    double ms;
    const char* only = argc > 1 ? argv[1] : "";   /* "attention", "crossentropy", "misc" or empty for all */
    if (!*only || !strcmp(only, "attention")) { /* attention at a 30M-model shape */
        int B = 4, T = 512, NH = 6, NKV = 2, HD = 64, H = NH + 2 * NKV;
        float* qkv = randn((size_t)B * T * H * HD); float* out = randn((size_t)B * T * NH * HD);
        float* dout = randn((size_t)B * T * NH * HD); float* dqkv = randn((size_t)B * T * H * HD);
        float* lse = randn((size_t)B * NH * T); float* scratch = randn((size_t)B * NH * T);
        double pairs = (double)B * NH * T * (T + 1) / 2;
        BEST_OF(8, ms, MT_FN(attention_forward)(out, lse, qkv, B, T, NH, NKV, HD, NULL));
        printf("attention_forward  B=%d T=%d NH=%d NKV=%d HD=%d: %8.2f ms  %6.2f GFLOP/s\n", B, T, NH, NKV, HD, ms,
               pairs * HD * 4 / ms / 1e6);
        BEST_OF(6, ms, MT_FN(attention_backward)(dqkv, scratch, dout, qkv, out, lse, B, T, NH, NKV, HD, NULL));
        printf("attention_backward B=%d T=%d NH=%d NKV=%d HD=%d: %8.2f ms  %6.2f GFLOP/s (useful 8 flop/pair/dim)\n",
               B, T, NH, NKV, HD, ms, pairs * HD * 8 / ms / 1e6);
    }
    if (!*only || !strcmp(only, "crossentropy")) { /* cross-entropy, in place */
        int N = 2048, V = 32000;
        float* logits = randn((size_t)N * V); float* lse = randn(N); float* tl = randn(N); float* losses = randn(N);
        int32_t* tg = malloc(N * sizeof(int32_t));
        for (int n = 0; n < N; n++) tg[n] = rand() % V;
        BEST_OF(3, ms, MT_FN(crossentropy_forward)(lse, tl, logits, tg, N, V, 0, -100, NULL));
        printf("crossentropy_forward  N=%d V=%d: %8.2f ms  %6.2f GB/s\n", N, V, ms, (double)N * V * 4 / ms / 1e6);
        BEST_OF(3, ms, MT_FN(crossentropy_backward)(logits, losses, logits, lse, tl, tg, 1.0f / N, N, V, 0, -100, NULL));
        printf("crossentropy_backward N=%d V=%d: %8.2f ms  %6.2f GB/s\n", N, V, ms, (double)N * V * 8 / ms / 1e6);
    }
    if (!*only || !strcmp(only, "misc")) { /* rmsnorm, swiglu, adamw, norm */
        int N = 2048, C = 384, F = 1024;
        float* x = randn((size_t)N * C); float* w = randn(C); float* o = randn((size_t)N * C); float* rstd = randn(N);
        float* dx = randn((size_t)N * C); float* dw = randn(C); float* sc = randn(256 * (size_t)C);
        BEST_OF(5, ms, MT_FN(rmsnorm_forward)(o, rstd, x, w, N, C, 1e-5f, NULL));
        printf("rmsnorm_forward  N=%d C=%d: %8.3f ms\n", N, C, ms);
        BEST_OF(5, ms, MT_FN(rmsnorm_backward)(dx, dw, sc, o, x, w, rstd, N, C, NULL));
        printf("rmsnorm_backward N=%d C=%d: %8.3f ms\n", N, C, ms);
        float* gu = randn((size_t)N * 2 * F); float* so = randn((size_t)N * F); float* dgu = randn((size_t)N * 2 * F);
        BEST_OF(5, ms, MT_FN(swiglu_forward)(so, gu, N, F, NULL));
        printf("swiglu_forward  N=%d F=%d: %8.3f ms\n", N, F, ms);
        BEST_OF(5, ms, MT_FN(swiglu_backward)(dgu, so, gu, N, F, NULL));
        printf("swiglu_backward N=%d F=%d: %8.3f ms\n", N, F, ms);
        int64_t n = 30000000;
        float* p = randn(n); float* g = randn(n); float* m = calloc(n, 4); float* v = calloc(n, 4); float acc = 0;
        BEST_OF(3, ms, MT_FN(adamw_update)(p, NULL, g, m, v, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.1f, 0.05f, 1.0f, NULL));
        printf("adamw_update n=%lld: %8.2f ms  %6.2f GB/s\n", (long long)n, ms, n * 28.0 / ms / 1e6);
        BEST_OF(3, ms, MT_FN(global_norm_squared)(&acc, NULL, g, n, NULL));
        printf("global_norm_squared n=%lld: %8.2f ms  %6.2f GB/s\n", (long long)n, ms, n * 4.0 / ms / 1e6);
    }
    return 0;
}
