package dev.midtrain.model;

import dev.midtrain.config.ModelConfig;

/**
 * Per-device memory of a training run, in bytes: what `midtrain info` prints and what the trainer checks before it
 * allocates. Counts what the engine actually allocates: fp32 master weights, a compute copy when the compute dtype
 * is narrower (bf16 on CUDA), fp32 gradients, fp32 AdamW moments (sharded over dp with ZeRO-1), and the activations
 * kept for the backward at the given micro-batch and sequence length.
 *
 * @param computeBytes  bytes per compute element: 4 (CPU fp32) or 2 (CUDA bf16)
 */
public record MemoryPlan(long params, long weightsBytes, long gradsBytes, long optimizerBytes,
                         long activationsBytes, long activationsRecomputeBytes, int computeBytes) {

    /** Tokens per chunk of the LM head + cross-entropy (bounds the logits buffer). */
    public static final int LOGITS_CHUNK_TOKENS = 1024;

    public static MemoryPlan of(ModelConfig m, int microBatchSeqs, int seqLen, int tp, int dp, boolean zero1, int computeBytes) {
        long params = m.paramCount();
        long shard = ceilDiv(params, tp);   // tensor-parallel share (norms are replicated: a few thousand params, ignored)
        long weights = shard * 4L + (computeBytes < 4 ? shard * computeBytes : 0);
        long grads = shard * 4L;
        long optimizer = (zero1 ? ceilDiv(shard, dp) : shard) * 8L;

        long N = (long) microBatchSeqs * seqLen;
        long C = m.dim(), F = ceilDiv(m.ffnDim(), tp), QKV = ceilDiv(m.qkvDim(), tp), A = ceilDiv((long) m.nHeads() * m.headDim(), tp);
        long NH = ceilDiv(m.nHeads(), tp);
        // Saved per token per layer (compute dtype): block input x, norm1 out, qkv (after RoPE), attention out,
        // residual x2, norm2 out, gate|up, swiglu out; fp32: two rstd and NH log-sum-exp values.
        long perTokenLayer = (C + C + QKV + A + C + C + 2 * F + F) * computeBytes + (2 + NH) * 4L;
        // Working buffers for one layer's backward (gradients of the same tensors) + final norm + logits chunk.
        long oneLayer = N * perTokenLayer;
        long head = N * (2 * C * computeBytes + 4) + (long) Math.min(N, LOGITS_CHUNK_TOKENS) * ceilDiv(m.vocabSize(), tp) * computeBytes;
        long stored = N * perTokenLayer * m.nLayers() + oneLayer + head;
        long recompute = N * C * computeBytes * m.nLayers() + 2 * oneLayer + head;
        return new MemoryPlan(params, weights, grads, optimizer, stored, recompute, computeBytes);
    }

    public long totalBytes(boolean recompute) {
        return weightsBytes + gradsBytes + optimizerBytes + (recompute ? activationsRecomputeBytes : activationsBytes);
    }

    private static long ceilDiv(long a, long b) { return (a + b - 1) / b; }

    public static String gib(long bytes) { return String.format("%.2f GiB", bytes / (double) (1L << 30)); }
}
