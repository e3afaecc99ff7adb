/* Rotary position embedding (Hugging Face rotate-half) of the CPU implementation (floatX = float). */
#include "mt_cpu.h"
#include <string.h>

/* Rotates the q and k heads of qkv[B,T,NH+2*NKV,HD] by +angle (sign = 1, forward) or -angle (sign = -1, the
 * transpose used by the backward); copies the v heads when out != inp. out may alias inp: each (i, i+HD/2) pair is
 * read before it is written. */
static int rope_apply(floatX* out, const floatX* inp, const float* cos, const float* sin,
                      int B, int T, int NH, int NKV, int HD, float sign, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(B >= 0 && T >= 0 && NH > 0 && NKV > 0 && NH % NKV == 0 && HD > 0 && HD % 2 == 0);
    if (B == 0 || T == 0) return MT_OK;
    MT_REQUIRE(out && inp && cos && sin);
    const int H = NH + 2 * NKV, half = HD / 2, rotated = NH + NKV;
    const int64_t rows = (int64_t)B * T;
    #pragma omp parallel for if(rows * H * HD > MT_OMP_MIN_WORK) schedule(static)
    for (int64_t bt = 0; bt < rows; bt++) {
        int t = (int)(bt % T);
        const float* c = cos + (size_t)t * half;
        const float* s = sin + (size_t)t * half;
        for (int h = 0; h < rotated; h++) {
            const floatX* x = inp + ((size_t)bt * H + h) * HD;
            floatX* o = out + ((size_t)bt * H + h) * HD;
            #pragma omp simd
            for (int i = 0; i < half; i++) {
                float x1 = x[i], x2 = x[i + half], si = sign * s[i];
                o[i] = x1 * c[i] - x2 * si;
                o[i + half] = x2 * c[i] + x1 * si;
            }
        }
        if (out != inp)
            memcpy(out + ((size_t)bt * H + rotated) * HD, inp + ((size_t)bt * H + rotated) * HD,
                   (size_t)NKV * HD * sizeof(floatX));
    }
    return MT_OK;
}

int MT_FN(rope_forward)(floatX* out, const floatX* inp, const float* cos, const float* sin,
                        int B, int T, int NH, int NKV, int HD, void* stream) {
    return rope_apply(out, inp, cos, sin, B, T, NH, NKV, HD, 1.0f, stream);
}

/* dinp = R^T dout: the rotation by the negated angle. */
int MT_FN(rope_backward)(floatX* dinp, const floatX* dout, const float* cos, const float* sin,
                         int B, int T, int NH, int NKV, int HD, void* stream) {
    return rope_apply(dinp, dout, cos, sin, B, T, NH, NKV, HD, -1.0f, stream);
}
