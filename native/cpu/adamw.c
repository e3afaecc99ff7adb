/* Fused AdamW step of the CPU implementation (floatX = float). */
#include "mt_cpu.h"
#include <math.h>

/* torch.optim.AdamW (decoupled weight decay, bias-corrected moments), elementwise in fp32, in the order of the
 * header's formula: decay, moments, then param -= (lr / bias_corr1) * m / (sqrt(v) / sqrt(bias_corr2) + eps).
 * param_x (the floatX copy) is written when non-NULL. */
int MT_FN(adamw_update)(float* param, floatX* param_x, const float* grad, float* m, float* v, int64_t n,
                        float lr, float beta1, float beta2, float eps, float weight_decay,
                        float bias_corr1, float bias_corr2, float grad_scale, void* stream) {
    MT_REQUIRE_STREAM(stream);
    MT_REQUIRE(n >= 0);
    if (n == 0) return MT_OK;
    MT_REQUIRE(param && grad && m && v);
    MT_REQUIRE(bias_corr1 > 0.0f && bias_corr2 > 0.0f);
    const float decay = 1.0f - lr * weight_decay;
    const float step_size = lr / bias_corr1;
    const float bc2_sqrt = sqrtf(bias_corr2);
    const float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
    #pragma omp parallel for simd if(n > MT_OMP_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float p = param[i] * decay;
        float mi = beta1 * m[i] + one_minus_b1 * g;
        float vi = beta2 * v[i] + one_minus_b2 * g * g;
        p -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
        m[i] = mi;
        v[i] = vi;
        param[i] = p;
    }
    if (param_x && param_x != param)
        for (int64_t i = 0; i < n; i++) param_x[i] = param[i];
    return MT_OK;
}
