/* Softmax cross-entropy (vocabulary-sharded, two passes) and lse_combine of the CPU implementation
 * (floatX = float). */
#include "mt_cpu.h"
#include <math.h>

#define CE_BLOCK 512   /* logits per block of the online log-sum-exp: a block is re-read from L1, not memory */

/* log(sum_j exp(x[j])) over one row with one pass over memory: per block, the block max, one rescale of the
 * running sum, then the block's exponentials. Fixed order, so deterministic. */
static float row_lse(const floatX* x, int V) {
    float m = -INFINITY, sum = 0.0f;
    for (int j0 = 0; j0 < V; j0 += CE_BLOCK) {
        int j1 = j0 + CE_BLOCK < V ? j0 + CE_BLOCK : V;
        float bm = -INFINITY;
        #pragma omp simd reduction(max:bm)
        for (int j = j0; j < j1; j++) bm = x[j] > bm ? x[j] : bm;
        if (bm > m) {
            sum *= mt_expf(m - bm);                        /* m = -inf before the first block: sum = 0 stays 0 */
            m = bm;
        }
        if (m == -INFINITY) continue;                   /* all -inf so far: nothing to add */
        float bs = 0.0f;
        #pragma omp simd reduction(+:bs)
        for (int j = j0; j < j1; j++) bs += mt_expf(x[j] - m);
        sum += bs;
    }
    return m + logf(sum);
}

static int ce_check_targets(const int32_t* targets, int N, int ignore_index) {
    for (int n = 0; n < N; n++)
        if (targets[n] < 0 && targets[n] != ignore_index) return MT_ERR_RANGE;
    return MT_OK;
}

/* lse[N] (=), target_logit[N] (=) over the shard [vocab_start, vocab_start+V). A negative target that is not
 * ignore_index is MT_ERR_RANGE (targets above the shard belong to another rank and are not an error). */
int MT_FN(crossentropy_forward)(float* lse, float* target_logit, const floatX* logits, const int32_t* targets,
                                int N, int V, int vocab_start, int ignore_index, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(N >= 0 && V > 0 && vocab_start >= 0);
    if (N == 0) return MT_OK;
    MT_REQUIRE(lse && target_logit && logits && targets);
    int rc = ce_check_targets(targets, N, ignore_index);
    if (rc != MT_OK) return rc;
    #pragma omp parallel for if((int64_t)N * V > MT_OMP_MIN_WORK) schedule(static)
    for (int n = 0; n < N; n++) {
        const floatX* x = logits + (size_t)n * V;
        lse[n] = row_lse(x, V);
        int32_t tg = targets[n];
        int64_t j = (int64_t)tg - vocab_start;
        target_logit[n] = (tg != ignore_index && j >= 0 && j < V) ? x[j] : 0.0f;
    }
    return MT_OK;
}

/* losses[N] (=), dlogits[N,V] (=). dlogits may alias logits: each element is read before it is written. */
int MT_FN(crossentropy_backward)(floatX* dlogits, float* losses, const floatX* logits, const float* lse,
                                 const float* target_logit, const int32_t* targets, float dloss,
                                 int N, int V, int vocab_start, int ignore_index, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(N >= 0 && V > 0 && vocab_start >= 0);
    if (N == 0) return MT_OK;
    MT_REQUIRE(dlogits && losses && logits && lse && target_logit && targets);
    int rc = ce_check_targets(targets, N, ignore_index);
    if (rc != MT_OK) return rc;
    #pragma omp parallel for if((int64_t)N * V > MT_OMP_MIN_WORK) schedule(static)
    for (int n = 0; n < N; n++) {
        const floatX* x = logits + (size_t)n * V;
        floatX* dx = dlogits + (size_t)n * V;
        int32_t tg = targets[n];
        if (tg == ignore_index) {
            losses[n] = 0.0f;
            #pragma omp simd
            for (int j = 0; j < V; j++) dx[j] = 0.0f;
            continue;
        }
        losses[n] = lse[n] - target_logit[n];
        const float l = lse[n];
        const int64_t jt = (int64_t)tg - vocab_start;      /* the target's column, when it is in this shard */
        const int in_shard = jt >= 0 && jt < V;
        const float pt = in_shard ? mt_expf(x[jt] - l) : 0.0f; /* read before the row may be overwritten */
        #pragma omp simd
        for (int j = 0; j < V; j++) dx[j] = mt_expf(x[j] - l) * dloss;
        if (in_shard) dx[jt] = (pt - 1.0f) * dloss;
    }
    return MT_OK;
}

/* lse[n] = log(sum_p exp(lse_parts[p, n])) (=), stable (max first), parts summed in order p = 0..P-1. */
int MT_FN(lse_combine)(float* lse, const float* lse_parts, int P, int N, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(P > 0 && N >= 0);
    if (N == 0) return MT_OK;
    MT_REQUIRE(lse && lse_parts);
    #pragma omp parallel for if((int64_t)N * P > MT_OMP_MIN_WORK) schedule(static)
    for (int n = 0; n < N; n++) {
        float m = -INFINITY;
        for (int p = 0; p < P; p++) { float x = lse_parts[(size_t)p * N + n]; m = x > m ? x : m; }
        if (m == -INFINITY) { lse[n] = -INFINITY; continue; }
        float s = 0.0f;
        for (int p = 0; p < P; p++) s += expf(lse_parts[(size_t)p * N + n] - m);
        lse[n] = m + logf(s);
    }
    return MT_OK;
}
