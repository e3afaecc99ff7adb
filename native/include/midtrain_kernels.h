/*
 * midtrain kernel ABI: the one C interface with two implementations.
 *
 *   native/cpu/<family>.c   -> libmidtrain_cpu.so   symbols mt_cpu_<name>   floatX = float          (OpenMP)
 *   cuda-kernels/<family>.cu -> libmidtrain_cuda.so  symbols mt_cuda_<name>  floatX = __nv_bfloat16  (CUDA)
 *
 * Java binds each library with one JavaCPP class (dev.midtrain.kernels.CpuNative / CudaNative) and passes every
 * pointer as a raw address, so one Java call site drives host (CPU) or device (CUDA) memory.
 *
 * Conventions (llm.c style):
 *   - names are <layer>_<forward|backward>; gradients carry a d prefix (dinp, dweight).
 *   - argument order: outputs, then inputs, then sizes, then scalars, then the stream.
 *   - dimension legend: N = tokens in the micro-batch (B*T), B = batch, T = sequence length, C = model dim,
 *     NH = query heads, NKV = key/value heads (NH % NKV == 0), HD = head dim (even), F = FFN hidden size,
 *     V = vocabulary size (of this rank's shard under tensor parallelism).
 *   - all tensors are dense, row-major, last dimension contiguous.
 *   - floatX tensors hold activations and compute weights. Master weights, gradients of weights, AdamW moments,
 *     softmax statistics and every reduction are float (fp32) in both implementations; accumulation is fp32.
 *   - "=" means the output is overwritten, "+=" means it is accumulated into (gradient accumulation).
 *   - stream: a cudaStream_t as an opaque pointer; the CPU implementation requires NULL and runs synchronously.
 *     The CUDA implementation only enqueues work on the stream and never synchronises it.
 *   - determinism: every kernel here is deterministic (bitwise reproducible run to run on the same hardware and
 *     sizes) in both implementations unless its comment says otherwise. No kernel uses atomics whose order varies.
 *   - every entry returns MT_OK (0) or a negative MT_ERR_* code. Both implementations check sizes and pointers on
 *     the host (MT_ERR_ARG). The CUDA implementation also reports launch errors (cudaGetLastError) but, being
 *     asynchronous, cannot report a bad token id found on the device: such ids are clamped there, and the CPU
 *     implementation returns MT_ERR_RANGE. Java validates token ids when it loads a batch. Cross-entropy sees only
 *     this rank's vocabulary shard, so a target at or above the full vocabulary is caught there (Java), not here.
 *   - unless stated, outputs must not alias inputs.
 */
#ifndef MIDTRAIN_KERNELS_H
#define MIDTRAIN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#if defined(MT_BACKEND_CUDA)
#  define MT_FN(name) mt_cuda_##name
#elif defined(MT_BACKEND_CPU)
#  define MT_FN(name) mt_cpu_##name
#else
#  error "define MT_BACKEND_CPU or MT_BACKEND_CUDA before including midtrain_kernels.h"
#endif

/* The implementation defines floatX before including this header; callers (the JNI glue) see it opaque. */
#ifndef MT_FLOATX_DEFINED
typedef void floatX;
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define MT_OK            0   /* success */
#define MT_ERR_ARG      -1   /* a size or pointer argument is invalid (negative size, NULL where required) */
#define MT_ERR_RANGE    -2   /* a token id is outside [0, V) (checked by the CPU implementation only) */
#define MT_ERR_LAUNCH   -3   /* the CUDA launch failed (cudaGetLastError != cudaSuccess) */
#define MT_ERR_UNSUPPORTED -4 /* this implementation does not support these sizes (CUDA attention: HD > 256) */

/* Scratch sizes, in floats, that some kernels need from the caller (device memory on CUDA, host on CPU). */
#define MT_RMSNORM_BWD_SCRATCH_FLOATS(N, C)   ((size_t)256 * (size_t)(C))          /* per call, any N */
#define MT_ATTN_BWD_SCRATCH_FLOATS(B, NH, T)  ((size_t)(B) * (size_t)(NH) * (size_t)(T))
#define MT_NORM_SCRATCH_FLOATS                ((size_t)1024)

/* ------------------------------------------------------------------------------------------------ meta */

/* 0 = CPU, 1 = CUDA. */
int MT_FN(backend_id)(void);
/* sizeof(floatX): 4 on CPU, 2 on CUDA. */
int MT_FN(floatx_bytes)(void);
/* Threads the calling thread's later kernels may use: the CPU implementation sets OpenMP's per-thread team size
 * (each tensor-parallel rank thread calls it for itself); n < 1 is MT_ERR_ARG. The CUDA implementation ignores it. */
int MT_FN(set_num_threads)(int n);
/* out[n] = a one-line NUL-terminated description of this implementation as it runs in this process, for test logs
 * and benchmark records (truncated to n - 1 bytes; n < 1 or out NULL is MT_ERR_ARG). CPU: the OpenBLAS version, the
 * kernel set (core type) it selected for this processor, its threads, and the OpenMP threads and vector path of the
 * hand-written kernels. CUDA: the current device's name and compute capability. Results of the same computation can
 * differ in their last bits between kernel sets (OpenBLAS's AVX2 and AVX-512 sgemm round differently): name it. */
int MT_FN(describe)(char* out, int64_t n);

/* --------------------------------------------------------------------------------------- fill / copy / cast */

/* x[n] = value.  x: float[n]. */
int MT_FN(fill_f32)(float* x, float value, int64_t n, void* stream);
/* x[n] = (floatX)value.  x: floatX[n]. */
int MT_FN(fill_x)(floatX* x, float value, int64_t n, void* stream);
/* dst[bytes] = src[bytes] (same memory space; may not overlap). */
int MT_FN(copy_bytes)(void* dst, const void* src, int64_t bytes, void* stream);
/* out[n] = (floatX)inp[n], round to nearest even.  out: floatX[n], inp: float[n]. */
int MT_FN(cast_f32_to_x)(floatX* out, const float* inp, int64_t n, void* stream);
/* out[n] = (float)inp[n].  out: float[n], inp: floatX[n]. */
int MT_FN(cast_x_to_f32)(float* out, const floatX* inp, int64_t n, void* stream);

/* ------------------------------------------------------------------------------------------- embedding */

/* out[N,C] = wte[tokens[n], :]  (=).  tokens: int32[N] in [0,V); wte: floatX[V,C]. */
int MT_FN(embedding_forward)(floatX* out, const int32_t* tokens, const floatX* wte, int N, int C, int V, void* stream);
/* dwte[tokens[n], :] += dout[n, :]  (+=, fp32).  dwte: float[V,C]; dout: floatX[N,C].
 * Deterministic: rows are accumulated in token order n = 0..N-1 on both implementations. */
int MT_FN(embedding_backward)(float* dwte, const int32_t* tokens, const floatX* dout, int N, int C, int V, void* stream);

/* --------------------------------------------------------------------------------------------- RMSNorm */

/* out[N,C] = inp * rstd[n] * weight  (=);  rstd[N] = 1/sqrt(mean(inp[n,:]^2) + eps)  (=, fp32, saved for backward).
 * inp: floatX[N,C]; weight: floatX[C]. */
int MT_FN(rmsnorm_forward)(floatX* out, float* rstd, const floatX* inp, const floatX* weight,
                           int N, int C, float eps, void* stream);
/* dinp[N,C] += d/dinp  (+=: the residual stream's gradient is accumulated);  dweight[C] += d/dweight  (+=, fp32).
 * dout, inp: floatX[N,C]; weight: floatX[C]; rstd: float[N] from the forward.
 * scratch: float[MT_RMSNORM_BWD_SCRATCH_FLOATS(N,C)] (partial dweight sums; contents undefined on return). */
int MT_FN(rmsnorm_backward)(floatX* dinp, float* dweight, float* scratch, const floatX* dout, const floatX* inp,
                            const floatX* weight, const float* rstd, int N, int C, void* stream);

/* ------------------------------------------------------------------------------------------------ RoPE */

/* Rotary embedding, Hugging Face rotate-half convention, on the packed qkv activations in place or out of place.
 * qkv: floatX[B,T,NH+2*NKV,HD]: heads 0..NH-1 are q, NH..NH+NKV-1 are k, the last NKV are v.
 * The q and k heads are rotated (=), the v heads are copied when out != inp.  out may alias inp.
 * For position t (0..T-1 within each sequence) and i < HD/2, with c = cos[t,i], s = sin[t,i]:
 *   out[i]        = x[i] * c - x[i+HD/2] * s
 *   out[i+HD/2]   = x[i+HD/2] * c + x[i] * s
 * cos, sin: float[T, HD/2], computed once by the caller: cos/sin(t * inv_freq[i]) in double, stored fp32, where
 * inv_freq comes from theta and the model's rope_scaling (Llama-3.1 "llama3"; ModelConfig.ropeInverseFrequencies). */
int MT_FN(rope_forward)(floatX* out, const floatX* inp, const float* cos, const float* sin,
                        int B, int T, int NH, int NKV, int HD, void* stream);
/* The transpose rotation: dinp = R^T dout on the q and k heads (=), v heads copied when dinp != dout.
 * dinp may alias dout.  Same layout as rope_forward. */
int MT_FN(rope_backward)(floatX* dinp, const floatX* dout, const float* cos, const float* sin,
                         int B, int T, int NH, int NKV, int HD, void* stream);

/* ------------------------------------------------------------------------------------------- attention */

/* Causal grouped-query attention, scale 1/sqrt(HD), numerically stable online softmax.
 * qkv: floatX[B,T,NH+2*NKV,HD] (after RoPE); query head h reads key/value head h / (NH/NKV).
 * out: floatX[B,T,NH,HD] (=).  lse: float[B,NH,T] (=): log-sum-exp of the scaled scores of each query row,
 * saved for the backward.  Never materialises the T x T score matrix in global memory. */
int MT_FN(attention_forward)(floatX* out, float* lse, const floatX* qkv,
                             int B, int T, int NH, int NKV, int HD, void* stream);
/* dqkv: floatX[B,T,NH+2*NKV,HD] (=, all three parts written; dk/dv are summed over the query heads of each group).
 * dout, out: floatX[B,T,NH,HD]; lse from the forward.
 * scratch: float[MT_ATTN_BWD_SCRATCH_FLOATS(B,NH,T)] (holds D = rowsum(dout*out); contents undefined on return).
 * Deterministic: no atomics; dq and dk/dv are produced by separate passes. */
int MT_FN(attention_backward)(floatX* dqkv, float* scratch, const floatX* dout, const floatX* qkv,
                              const floatX* out, const float* lse,
                              int B, int T, int NH, int NKV, int HD, void* stream);

#define MT_ATTN_PATH_ONE         0   /* the implementation has one attention path (CPU) */
#define MT_ATTN_PATH_TENSOR_CORE 1   /* CUDA: FlashAttention-2 tiles on the tensor cores (HD 64, 128; aligned tensors) */
#define MT_ATTN_PATH_SIMPLE      2   /* CUDA: one warp per row (any even HD <= 256, or MT_CUDA_ATTN=simple) */
/* Which implementation attention_forward and attention_backward run for these sizes, when every tensor they get is
 * 16-byte aligned (aligned16 != 0; the engine's tensors are 256-byte aligned) or some is not (aligned16 == 0): an
 * MT_ATTN_PATH_* value, or the MT_ERR_* code they would return. Reads the environment as they do (CUDA:
 * MT_CUDA_ATTN=simple). A query: no tensor, no stream. */
int MT_FN(attention_path)(int NH, int NKV, int HD, int aligned16);

/* Inference: attention of Tq new tokens per sequence against a key/value cache (prefill, then decode with Tq = 1).
 * Sequence b's new tokens sit at positions pos[b] .. pos[b]+Tq-1; pos: int32[B] in the backend's memory, the caller
 * guarantees 0 <= pos[b] and pos[b] + Tq <= Tmax (the CPU implementation returns MT_ERR_RANGE otherwise; the CUDA one
 * skips such a sequence's rows, leaving out unwritten). In one call:
 *   1. RoPE (as rope_forward, rotate-half) at positions pos[b]+i on the q and k heads of qkv, in place;
 *   2. kv[b, pos[b]+i, :, :] = the k and v heads of qkv[b, i]  (=, the cache rows of the new tokens);
 *   3. out[b, i, h, :] = softmax_j(q[b,i,h] . k[b,j,h/(NH/NKV)] / sqrt(HD)) v[b,j,.]  over j = 0 .. pos[b]+i  (=).
 * qkv: floatX[B,Tq,NH+2*NKV,HD] (the qkv GEMM's output, not yet rotated); kv: floatX[B,Tmax,2*NKV,HD] (per position
 * the NKV key heads, then the NKV value heads: the k|v part of a qkv row); cos, sin: float[Tmax, HD/2] as for
 * rope_forward; out: floatX[B,Tq,NH,HD].  Keys are visited in ascending blocks of fixed size from position 0:
 * deterministic, and one query row's result depends only on its q and the cache, not on Tq or on how the prefix was
 * split between calls. */
int MT_FN(kvcache_attention_forward)(floatX* out, floatX* kv, floatX* qkv, const float* cos, const float* sin,
                                     const int32_t* pos, int B, int Tq, int Tmax, int NH, int NKV, int HD, void* stream);

/* ---------------------------------------------------------------------------------------------- linear */

#define MT_LINEAR_DOT_MAX_M 16   /* linear_forward: up to this many rows, the dot-product algorithm */
/* out[M,N] = inp[M,K] @ weight[N,K]^T  (=, fp32 accumulation): a linear layer's forward pass for inference, where
 * a BLAS GEMM's packing and thread hand-offs cost more than the product (few rows: KV-cache decoding; a prefill
 * chunk on a loaded host). Backend.gemm computes the same product.  inp: floatX[M,K]; weight: floatX[N,K];
 * out: floatX[M,N].  Deterministic: out[m,n] is a dot product in a fixed order that depends only on K and on
 * whether M <= MT_LINEAR_DOT_MAX_M (two algorithms), not on N, the thread count or the row's place in the batch.
 * The CPU implementation returns MT_ERR_UNSUPPORTED if it cannot allocate its 64*K-byte per-thread panel. */
int MT_FN(linear_forward)(floatX* out, const floatX* inp, const floatX* weight, int M, int N, int K, void* stream);

/* ---------------------------------------------------------------------------------------------- SwiGLU */

/* out[N,F] = silu(gate) * up  (=), silu(x) = x * sigmoid(x).
 * gateup: floatX[N,2F] with gate = gateup[n, 0:F], up = gateup[n, F:2F] (one fused GEMM output). */
int MT_FN(swiglu_forward)(floatX* out, const floatX* gateup, int N, int F, void* stream);
/* dgateup[N,2F] (=): dgate = dout * up * silu'(gate), dup = dout * silu(gate).  dout: floatX[N,F]. */
int MT_FN(swiglu_backward)(floatX* dgateup, const floatX* dout, const floatX* gateup, int N, int F, void* stream);

/* ------------------------------------------------------------------------------------------ residual */

/* out[n] = a[n] + b[n]  (=).  out may alias a or b. */
int MT_FN(add)(floatX* out, const floatX* a, const floatX* b, int64_t n, void* stream);

/* ------------------------------------------------------------------------------ softmax + cross-entropy */

/* Pass 1, row statistics over this rank's vocabulary shard [vocab_start, vocab_start+V):
 *   lse[n]    = log(sum_j exp(logits[n,j]))                    (=, fp32, online: one read of the row)
 *   target_logit[n] = logits[n, targets[n]-vocab_start] if the target falls in the shard, else 0   (=, fp32)
 * logits: floatX[N,V]; targets: int32[N]; a target equal to ignore_index is skipped (target_logit = 0).
 * With tensor parallelism the caller combines lse across ranks (lse_combine) and sums target_logit. */
int MT_FN(crossentropy_forward)(float* lse, float* target_logit, const floatX* logits, const int32_t* targets,
                                int N, int V, int vocab_start, int ignore_index, void* stream);
/* Pass 2, loss and gradient:
 *   losses[n]   = lse[n] - target_logit[n], or 0 where targets[n] == ignore_index       (=, fp32)
 *   dlogits[n,j] = (exp(logits[n,j] - lse[n]) - [j + vocab_start == targets[n]]) * dloss   (=), 0 for ignored rows
 * dlogits may alias logits (in-place, the usual case).  dloss: d(total loss)/d(loss of one token), i.e.
 * 1/(valid tokens in the global batch). */
int MT_FN(crossentropy_backward)(floatX* dlogits, float* losses, const floatX* logits, const float* lse,
                                 const float* target_logit, const int32_t* targets, float dloss,
                                 int N, int V, int vocab_start, int ignore_index, void* stream);
/* lse[n] = log(sum_p exp(lse_parts[p, n]))  (=).  lse_parts: float[P,N] (all-gathered per-shard lse). */
int MT_FN(lse_combine)(float* lse, const float* lse_parts, int P, int N, void* stream);

/* --------------------------------------------------------------------------------------------- AdamW */

/* One fused AdamW step (torch.optim.AdamW semantics) over n fp32 parameters, in one pass:
 *   g = grad[i] * grad_scale                       (grad_scale folds clipping and loss scaling)
 *   param[i] *= 1 - lr * weight_decay              (decoupled weight decay)
 *   m[i] = beta1 * m[i] + (1 - beta1) * g
 *   v[i] = beta2 * v[i] + (1 - beta2) * g * g
 *   param[i] -= (lr / bias_corr1) * m[i] / (sqrt(v[i]) / sqrt(bias_corr2) + eps)
 *   param_x[i] = (floatX)param[i]                  (the compute copy; skipped when param_x is NULL)
 * bias_corr1 = 1 - beta1^t, bias_corr2 = 1 - beta2^t for step t >= 1 (computed by the caller).
 * param, m, v: float[n] (updated in place); grad: float[n]; param_x: floatX[n] or NULL. */
int MT_FN(adamw_update)(float* param, floatX* param_x, const float* grad, float* m, float* v, int64_t n,
                        float lr, float beta1, float beta2, float eps, float weight_decay,
                        float bias_corr1, float bias_corr2, float grad_scale, void* stream);

/* ------------------------------------------------------------------------------------ gradient norm */

/* out[0] += sum_i x[i]^2  (+=, fp32 result; accumulated internally in fp64 on CPU and in fixed-order fp32 partials on
 * CUDA).  x: float[n].  scratch: float[MT_NORM_SCRATCH_FLOATS] (CUDA block partials; unused on CPU).
 * Call it once per region and take sqrt of the total. */
int MT_FN(global_norm_squared)(float* out, float* scratch, const float* x, int64_t n, void* stream);
/* x[i] *= s  (in place).  x: float[n]. */
int MT_FN(scale_f32)(float* x, float s, int64_t n, void* stream);

#ifdef __cplusplus
}
#endif
#endif /* MIDTRAIN_KERNELS_H */
