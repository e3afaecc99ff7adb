/* Fused AdamW step (torch.optim.AdamW semantics), fp32 master/moments, optional bf16 compute copy, CUDA. */
#include "mt_cuda.cuh"

struct MtAdamW {
    float lr, beta1, beta2, eps, weight_decay, step1, sqrt_bc2, grad_scale;
};

/* Updates one parameter; returns the new value. */
__device__ __forceinline__ float mt_adamw_one(float p, float g, float& m, float& v, const MtAdamW& h) {
    g *= h.grad_scale;
    p *= 1.0f - h.lr * h.weight_decay;                       /* decoupled weight decay */
    m = h.beta1 * m + (1.0f - h.beta1) * g;
    v = h.beta2 * v + (1.0f - h.beta2) * g * g;
    return p - h.step1 * m / (sqrtf(v) / h.sqrt_bc2 + h.eps);
}

/* VEC: 4 elements per step (float4 for param/grad/m/v, 2 x bf16x2 for param_x), then a scalar tail.
 * VEC needs param/grad/m/v 16-byte aligned and param_x (if any) 8-byte aligned. */
template <bool VEC>
__global__ void mt_adamw_kernel(float* param, floatX* param_x, const float* grad, float* m, float* v, int64_t n, MtAdamW h) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (VEC) {
        const int64_t nv = n / 4;
        for (int64_t i = tid; i < nv; i += stride) {
            float4 p = reinterpret_cast<float4*>(param)[i];
            const float4 g = reinterpret_cast<const float4*>(grad)[i];
            float4 mm = reinterpret_cast<float4*>(m)[i];
            float4 vv = reinterpret_cast<float4*>(v)[i];
            p.x = mt_adamw_one(p.x, g.x, mm.x, vv.x, h);
            p.y = mt_adamw_one(p.y, g.y, mm.y, vv.y, h);
            p.z = mt_adamw_one(p.z, g.z, mm.z, vv.z, h);
            p.w = mt_adamw_one(p.w, g.w, mm.w, vv.w, h);
            reinterpret_cast<float4*>(param)[i] = p;
            reinterpret_cast<float4*>(m)[i] = mm;
            reinterpret_cast<float4*>(v)[i] = vv;
            if (param_x) {
                __nv_bfloat162* px = reinterpret_cast<__nv_bfloat162*>(param_x + 4 * i);
                px[0] = __floats2bfloat162_rn(p.x, p.y);
                px[1] = __floats2bfloat162_rn(p.z, p.w);
            }
        }
        done = nv * 4;
    }
    for (int64_t i = done + tid; i < n; i += stride) {
        float mi = m[i], vi = v[i];
        const float p = mt_adamw_one(param[i], grad[i], mi, vi, h);
        param[i] = p;
        m[i] = mi;
        v[i] = vi;
        if (param_x) param_x[i] = __float2bfloat16_rn(p);
    }
}

extern "C" int MT_FN(adamw_update)(float* param, floatX* param_x, const float* grad, float* m, float* v, int64_t n,
                                   float lr, float beta1, float beta2, float eps, float weight_decay,
                                   float bias_corr1, float bias_corr2, float grad_scale, void* stream) {
    if (n < 0) return MT_ERR_ARG;
    if (n == 0) return MT_OK;
    if (!param || !grad || !m || !v) return MT_ERR_ARG;
    if (!(bias_corr1 > 0.0f) || !(bias_corr2 > 0.0f)) return MT_ERR_ARG;
    MtAdamW h;
    h.lr = lr;
    h.beta1 = beta1;
    h.beta2 = beta2;
    h.eps = eps;
    h.weight_decay = weight_decay;
    h.step1 = lr / bias_corr1;
    h.sqrt_bc2 = sqrtf(bias_corr2);
    h.grad_scale = grad_scale;
    const bool vec = mt_aligned16(param) && mt_aligned16(grad) && mt_aligned16(m) && mt_aligned16(v) &&
                     (param_x == nullptr || mt_aligned8(param_x));
    if (vec)
        mt_adamw_kernel<true><<<mt_grid_for(n / 4 + 1, 256), 256, 0, MT_STREAM(stream)>>>(param, param_x, grad, m, v, n, h);
    else
        mt_adamw_kernel<false><<<mt_grid_for(n, 256), 256, 0, MT_STREAM(stream)>>>(param, param_x, grad, m, v, n, h);
    MT_CHECK_LAUNCH();
    return MT_OK;
}
