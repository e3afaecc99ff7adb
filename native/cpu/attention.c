/* Causal grouped-query attention forward/backward of the CPU implementation (floatX = float).
 *
 * qkv: [B,T,H,HD] with H = NH + 2*NKV (q heads, then k heads, then v heads); query head h reads kv head
 * h / (NH/NKV). Scores are scaled by 1/sqrt(HD). Memory is O(HD) per thread: the T x T score matrix is never
 * stored; the backward recomputes the probabilities from the saved log-sum-exp. Every output element is
 * produced by one thread in a fixed loop order, so results are bitwise reproducible for any thread count. */
#include "mt_cpu.h"
#include <math.h>

#define ATTN_KEY_BLOCK 64   /* keys whose scores are held at once by the online softmax */

static int attn_check(int B, int T, int NH, int NKV, int HD) {
    return B >= 0 && T >= 0 && NH > 0 && NKV > 0 && NH % NKV == 0 && HD > 0 && HD % 2 == 0;
}

static inline float dot(const floatX* a, const floatX* b, int n) {
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* out[B,T,NH,HD] (=), lse[B,NH,T] (=). One query row at a time, keys in blocks of ATTN_KEY_BLOCK: the block's
 * scores, then one rescale of the running (max, sum, acc) per block. */
int MT_FN(attention_forward)(floatX* out, float* lse, const floatX* qkv,
                             int B, int T, int NH, int NKV, int HD, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(attn_check(B, T, NH, NKV, HD));
    if (B == 0 || T == 0) return MT_OK;
    MT_REQUIRE(out && lse && qkv);
    const int H = NH + 2 * NKV, group = NH / NKV;
    const size_t tstride = (size_t)H * HD;              /* floats between positions t and t+1 */
    const float scale = 1.0f / sqrtf((float)HD);
    const int64_t rows = (int64_t)B * NH * T;
    const int64_t work = rows * (T + 1) / 2 * HD;
    #pragma omp parallel for if(work > MT_OMP_MIN_WORK) schedule(dynamic, 16)
    for (int64_t row = 0; row < rows; row++) {
        const int t = (int)(row % T), h = (int)(row / T % NH), b = (int)(row / T / NH);
        const floatX* base = qkv + (size_t)b * T * tstride;
        const floatX* q = base + (size_t)t * tstride + (size_t)h * HD;
        const floatX* k0 = base + (size_t)(NH + h / group) * HD;
        const floatX* v0 = base + (size_t)(NH + NKV + h / group) * HD;
        float acc[HD];
        float sc[ATTN_KEY_BLOCK];
        for (int i = 0; i < HD; i++) acc[i] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        for (int s0 = 0; s0 <= t; s0 += ATTN_KEY_BLOCK) {
            int s1 = s0 + ATTN_KEY_BLOCK <= t + 1 ? s0 + ATTN_KEY_BLOCK : t + 1;
            float bm = -INFINITY;
            for (int s = s0; s < s1; s++) {
                float x = dot(q, k0 + (size_t)s * tstride, HD) * scale;
                sc[s - s0] = x;
                bm = x > bm ? x : bm;
            }
            if (bm > m) {                               /* new running max: rescale what is accumulated */
                float r = expf(m - bm);                 /* m = -inf on the first block: r = 0 */
                l *= r;
                for (int i = 0; i < HD; i++) acc[i] *= r;
                m = bm;
            }
            for (int s = s0; s < s1; s++) {
                float p = expf(sc[s - s0] - m);
                l += p;
                const floatX* v = v0 + (size_t)s * tstride;
                #pragma omp simd
                for (int i = 0; i < HD; i++) acc[i] += p * v[i];
            }
        }
        floatX* o = out + ((size_t)(b * T + t) * NH + h) * HD;
        float inv = 1.0f / l;
        for (int i = 0; i < HD; i++) o[i] = acc[i] * inv;
        lse[row] = m + logf(l);                         /* row = (b*NH + h)*T + t, the lse layout */
    }
    return MT_OK;
}

/* With P[t,s] = exp(scale*q_t.k_s - lse_t) (s <= t), dP[t,s] = dout_t.v_s, D_t = dout_t.out_t and
 * dS[t,s] = P[t,s] * (dP[t,s] - D_t):
 *   dq_t = scale * sum_s dS[t,s] k_s                                   (pass 2, one thread per query row)
 *   dk_s = scale * sum_{h in group} sum_{t>=s} dS[t,s] q_t             (pass 3, one thread per key row,
 *   dv_s =         sum_{h in group} sum_{t>=s} P[t,s] dout_t            heads then t in increasing order)
 * dqkv (=): all three parts are written. scratch[B,NH,T] holds D. */
int MT_FN(attention_backward)(floatX* dqkv, float* scratch, const floatX* dout, const floatX* qkv,
                              const floatX* out, const float* lse,
                              int B, int T, int NH, int NKV, int HD, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(attn_check(B, T, NH, NKV, HD));
    if (B == 0 || T == 0) return MT_OK;
    MT_REQUIRE(dqkv && scratch && dout && qkv && out && lse);
    const int H = NH + 2 * NKV, group = NH / NKV;
    const size_t tstride = (size_t)H * HD, ostride = (size_t)NH * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    const int64_t rows = (int64_t)B * NH * T;
    const int64_t work = rows * (T + 1) / 2 * HD;
    float* D = scratch;
    #pragma omp parallel if(work > MT_OMP_MIN_WORK)
    {
        /* pass 1: D[b,h,t] = dout_t . out_t */
        #pragma omp for schedule(static)
        for (int64_t row = 0; row < rows; row++) {
            const int t = (int)(row % T), h = (int)(row / T % NH), b = (int)(row / T / NH);
            size_t o = (size_t)(b * T + t) * ostride + (size_t)h * HD;
            D[row] = dot(dout + o, out + o, HD);
        }
        /* pass 2: dq, one query row per iteration */
        #pragma omp for schedule(dynamic, 16)
        for (int64_t row = 0; row < rows; row++) {
            const int t = (int)(row % T), h = (int)(row / T % NH), b = (int)(row / T / NH);
            const floatX* base = qkv + (size_t)b * T * tstride;
            const floatX* q = base + (size_t)t * tstride + (size_t)h * HD;
            const floatX* k0 = base + (size_t)(NH + h / group) * HD;
            const floatX* v0 = base + (size_t)(NH + NKV + h / group) * HD;
            const floatX* dO = dout + (size_t)(b * T + t) * ostride + (size_t)h * HD;
            const float l = lse[row], d = D[row];
            float acc[HD];
            for (int i = 0; i < HD; i++) acc[i] = 0.0f;
            for (int s = 0; s <= t; s++) {
                const floatX* k = k0 + (size_t)s * tstride;
                float p = expf(dot(q, k, HD) * scale - l);
                float ds = p * (dot(dO, v0 + (size_t)s * tstride, HD) - d);
                #pragma omp simd
                for (int i = 0; i < HD; i++) acc[i] += ds * k[i];
            }
            floatX* dq = dqkv + (size_t)(b * T + t) * tstride + (size_t)h * HD;
            for (int i = 0; i < HD; i++) dq[i] = acc[i] * scale;
        }
        /* pass 3: dk and dv, one key row (b, kv head, s) per iteration */
        const int64_t krows = (int64_t)B * NKV * T;
        #pragma omp for schedule(dynamic, 16)
        for (int64_t krow = 0; krow < krows; krow++) {
            const int s = (int)(krow % T), kh = (int)(krow / T % NKV), b = (int)(krow / T / NKV);
            const floatX* base = qkv + (size_t)b * T * tstride;
            const floatX* k = base + (size_t)s * tstride + (size_t)(NH + kh) * HD;
            const floatX* v = base + (size_t)s * tstride + (size_t)(NH + NKV + kh) * HD;
            float dk[HD], dv[HD];
            for (int i = 0; i < HD; i++) { dk[i] = 0.0f; dv[i] = 0.0f; }
            for (int h = kh * group; h < (kh + 1) * group; h++) {
                const float* lrow = lse + ((size_t)b * NH + h) * T;
                const float* drow = D + ((size_t)b * NH + h) * T;
                for (int t = s; t < T; t++) {
                    const floatX* q = base + (size_t)t * tstride + (size_t)h * HD;
                    const floatX* dO = dout + (size_t)(b * T + t) * ostride + (size_t)h * HD;
                    float p = expf(dot(q, k, HD) * scale - lrow[t]);
                    float ds = p * (dot(dO, v, HD) - drow[t]);
                    #pragma omp simd
                    for (int i = 0; i < HD; i++) { dk[i] += ds * q[i]; dv[i] += p * dO[i]; }
                }
            }
            floatX* dk_out = dqkv + (size_t)(b * T + s) * tstride + (size_t)(NH + kh) * HD;
            floatX* dv_out = dqkv + (size_t)(b * T + s) * tstride + (size_t)(NH + NKV + kh) * HD;
            for (int i = 0; i < HD; i++) { dk_out[i] = dk[i] * scale; dv_out[i] = dv[i]; }
        }
    }
    return MT_OK;
}
