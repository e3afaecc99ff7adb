/* Inference attention against a key/value cache (prefill and decode) of the CPU implementation (floatX = float).
 *
 * Layouts (see the header): qkv [B,Tq,NH+2*NKV,HD], kv cache [B,Tmax,2*NKV,HD], out [B,Tq,NH,HD]. One query row
 * (b, i, h) is one work item: its scores against keys 0..p (p = pos[b]+i) are computed in blocks of KB keys, each
 * block folded into a running max / sum / weighted value sum (online softmax). Work items are independent, every sum
 * runs in a fixed order (keys ascending), so the result does not depend on the thread count. */
#include "mt_cpu.h"
#include <math.h>
#include <string.h>

#define KB 64   /* keys per softmax block */

int MT_FN(kvcache_attention_forward)(floatX* out, floatX* kv, floatX* qkv, const float* cos, const float* sin,
                                     const int32_t* pos, int B, int Tq, int Tmax, int NH, int NKV, int HD, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(B >= 0 && Tq >= 0 && Tmax >= 0 && NH > 0 && NKV > 0 && NH % NKV == 0 && HD > 0 && HD % 2 == 0);
    if (B == 0 || Tq == 0) return MT_OK;
    MT_REQUIRE(out && kv && qkv && cos && sin && pos);
    for (int b = 0; b < B; b++)
        if (pos[b] < 0 || (int64_t)pos[b] + Tq > Tmax) return MT_ERR_RANGE;
    const int H = NH + 2 * NKV, half = HD / 2, G = NH / NKV, KV = 2 * NKV;
    const int64_t rows = (int64_t)B * Tq;

    /* 1 + 2: rotate q and k in place at their absolute positions, then copy k|v into the cache. */
    #pragma omp parallel for if(rows * H * HD > MT_OMP_MIN_WORK) schedule(static)
    for (int64_t bi = 0; bi < rows; bi++) {
        int b = (int)(bi / Tq), p = pos[b] + (int)(bi % Tq);
        const float* c = cos + (size_t)p * half;
        const float* s = sin + (size_t)p * half;
        for (int h = 0; h < NH + NKV; h++) {
            floatX* x = qkv + ((size_t)bi * H + h) * HD;
            #pragma omp simd
            for (int i = 0; i < half; i++) {
                float x1 = x[i], x2 = x[i + half];
                x[i] = x1 * c[i] - x2 * s[i];
                x[i + half] = x2 * c[i] + x1 * s[i];
            }
        }
        memcpy(kv + ((size_t)b * Tmax + p) * KV * HD, qkv + ((size_t)bi * H + NH) * HD, (size_t)KV * HD * sizeof(floatX));
    }

    /* 3: one (b, i, h) query row per work item. */
    const float scale = 1.0f / sqrtf((float)HD);
    const int64_t items = rows * NH;
    const int64_t work = items * (int64_t)(pos[0] + Tq) * HD;
    #pragma omp parallel for if(work > MT_OMP_MIN_WORK) schedule(dynamic, 4)
    for (int64_t it = 0; it < items; it++) {
        int64_t bi = it / NH;
        int h = (int)(it % NH), b = (int)(bi / Tq), p = pos[b] + (int)(bi % Tq), g = h / G;
        const floatX* q = qkv + ((size_t)bi * H + h) * HD;
        const floatX* kbase = kv + (size_t)b * Tmax * KV * HD + (size_t)g * HD;             /* key head g at position 0 */
        const floatX* vbase = kbase + (size_t)NKV * HD;                                    /* value head g */
        float acc[HD];                                                                     /* VLA: HD <= a few hundred */
        float sc[KB];
        for (int d = 0; d < HD; d++) acc[d] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        for (int j0 = 0; j0 <= p; j0 += KB) {
            int n = p + 1 - j0 < KB ? p + 1 - j0 : KB;
            float bm = -INFINITY;
            for (int j = 0; j < n; j++) {
                const floatX* k = kbase + (size_t)(j0 + j) * KV * HD;
                float dot = 0.0f;
                #pragma omp simd reduction(+:dot)
                for (int d = 0; d < HD; d++) dot += q[d] * k[d];
                sc[j] = dot * scale;
                bm = sc[j] > bm ? sc[j] : bm;
            }
            float mnew = bm > m ? bm : m;
            float corr = mt_expf(m - mnew);                                               /* 0 on the first block */
            l *= corr;
            #pragma omp simd
            for (int d = 0; d < HD; d++) acc[d] *= corr;
            #pragma omp simd
            for (int j = 0; j < n; j++) sc[j] = mt_expf(sc[j] - mnew);                    /* vectorised exp */
            for (int j = 0; j < n; j++) {
                const float e = sc[j];
                l += e;                                                                   /* keys ascending */
                const floatX* v = vbase + (size_t)(j0 + j) * KV * HD;
                #pragma omp simd
                for (int d = 0; d < HD; d++) acc[d] += e * v[d];
            }
            m = mnew;
        }
        floatX* o = out + ((size_t)bi * NH + h) * HD;
        float inv = 1.0f / l;
        #pragma omp simd
        for (int d = 0; d < HD; d++) o[d] = acc[d] * inv;
    }
    return MT_OK;
}
