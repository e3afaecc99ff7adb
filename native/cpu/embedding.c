/* Token embedding forward/backward of the CPU implementation (floatX = float). */
#include "mt_cpu.h"
#include <string.h>

/* MT_OK when every tokens[n] is in [0, V), else MT_ERR_RANGE. */
static int check_tokens(const int32_t* tokens, int N, int V) {
    for (int n = 0; n < N; n++)
        if (tokens[n] < 0 || tokens[n] >= V) return MT_ERR_RANGE;
    return MT_OK;
}

/* out[N,C] = wte[tokens[n], :] (=). Tokens are checked before anything is written. */
int MT_FN(embedding_forward)(floatX* out, const int32_t* tokens, const floatX* wte, int N, int C, int V, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(N >= 0 && C >= 0 && V >= 0);
    if (N == 0 || C == 0) return MT_OK;
    MT_REQUIRE(out && tokens && wte);
    int rc = check_tokens(tokens, N, V);
    if (rc != MT_OK) return rc;
    #pragma omp parallel for if((int64_t)N * C > MT_OMP_MIN_WORK) schedule(static)
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, (size_t)C * sizeof(floatX));
    return MT_OK;
}

/* dwte[tokens[n], :] += dout[n, :] (+=). Threads split the C columns, and every column accumulates its rows in
 * token order n = 0..N-1, so the result does not depend on the thread count. */
int MT_FN(embedding_backward)(float* dwte, const int32_t* tokens, const floatX* dout, int N, int C, int V, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(N >= 0 && C >= 0 && V >= 0);
    if (N == 0 || C == 0) return MT_OK;
    MT_REQUIRE(dwte && tokens && dout);
    int rc = check_tokens(tokens, N, V);
    if (rc != MT_OK) return rc;
    const int CB = 64;                                  /* column block: one block of a row is 256 bytes */
    int nblocks = (C + CB - 1) / CB;
    #pragma omp parallel for if((int64_t)N * C > MT_OMP_MIN_WORK) schedule(static)
    for (int cb = 0; cb < nblocks; cb++) {
        int c0 = cb * CB, c1 = c0 + CB < C ? c0 + CB : C;
        for (int n = 0; n < N; n++) {
            float* d = dwte + (size_t)tokens[n] * C;
            const floatX* g = dout + (size_t)n * C;
            #pragma omp simd
            for (int c = c0; c < c1; c++) d[c] += g[c];
        }
    }
    return MT_OK;
}
