/* SwiGLU forward/backward of the CPU implementation (floatX = float). */
#include "mt_cpu.h"
#include <math.h>

/* out[N,F] = silu(gate) * up (=), gate = gateup[n, 0:F], up = gateup[n, F:2F]. */
int MT_FN(swiglu_forward)(floatX* out, const floatX* gateup, int N, int F, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(N >= 0 && F >= 0);
    if (N == 0 || F == 0) return MT_OK;
    MT_REQUIRE(out && gateup);
    #pragma omp parallel for if((int64_t)N * F > MT_OMP_MIN_WORK) schedule(static)
    for (int n = 0; n < N; n++) {
        const floatX* g = gateup + (size_t)n * 2 * F;
        const floatX* u = g + F;
        floatX* o = out + (size_t)n * F;
        #pragma omp simd
        for (int i = 0; i < F; i++) {
            float x = g[i];
            o[i] = x / (1.0f + mt_expf(-x)) * u[i];
        }
    }
    return MT_OK;
}

/* dgateup[N,2F] (=): dgate = dout * up * silu'(gate), dup = dout * silu(gate),
 * silu'(x) = sigmoid(x) * (1 + x * (1 - sigmoid(x))). */
int MT_FN(swiglu_backward)(floatX* dgateup, const floatX* dout, const floatX* gateup, int N, int F, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(N >= 0 && F >= 0);
    if (N == 0 || F == 0) return MT_OK;
    MT_REQUIRE(dgateup && dout && gateup);
    #pragma omp parallel for if((int64_t)N * F > MT_OMP_MIN_WORK) schedule(static)
    for (int n = 0; n < N; n++) {
        const floatX* g = gateup + (size_t)n * 2 * F;
        const floatX* u = g + F;
        const floatX* d = dout + (size_t)n * F;
        floatX* dg = dgateup + (size_t)n * 2 * F;
        floatX* du = dg + F;
        #pragma omp simd
        for (int i = 0; i < F; i++) {
            float x = g[i];
            float sig = 1.0f / (1.0f + mt_expf(-x));
            float silu = x * sig;
            dg[i] = d[i] * u[i] * sig * (1.0f + x * (1.0f - sig));
            du[i] = d[i] * silu;
        }
    }
    return MT_OK;
}
