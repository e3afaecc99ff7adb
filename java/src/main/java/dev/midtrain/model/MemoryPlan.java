package dev.midtrain.model;

import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.Placement;

import java.util.List;

/**
 * Per-device memory of a training run, in bytes: what `midtrain info` prints and what the trainer checks before it
 * allocates. Counts what the engine actually allocates: fp32 master weights, a compute copy when the compute dtype
 * is narrower (bf16 on CUDA) or the master is sharded, fp32 gradients, fp32 AdamW moments, and the activations kept
 * for the backward at the given micro-batch and sequence length. With parallel.zero1 and dp > 1 the optimizer is
 * Megatron's distributed optimizer: master weights, m and v hold only the rank's ceil(P/dp) shard (P: the rank's
 * tensor-parallel parameters); gradients (reduce-scattered) and the compute copy (all-gathered) stay whole.
 *
 * @param rankParams    parameters of one tensor-parallel rank (replicated norms and KV heads included)
 * @param computeBytes  bytes per compute element: 4 (CPU fp32) or 2 (CUDA bf16)
 */
public record MemoryPlan(long params, long rankParams, long masterBytes, long computeCopyBytes, long gradsBytes, long optimizerBytes,
                         long activationsBytes, long activationsRecomputeBytes, int computeBytes) {

    /** fp32 master weights plus the compute copy. */
    public long weightsBytes() { return masterBytes + computeCopyBytes; }

    /** Tokens per chunk of the LM head + cross-entropy (bounds the logits buffer). */
    public static final int LOGITS_CHUNK_TOKENS = 1024;

    public static MemoryPlan of(ModelConfig m, int microBatchSeqs, int seqLen, int tp, int dp, boolean zero1, int computeBytes) {
        long params = m.paramCount();
        Placement pl = Placement.of(m, tp);                                    // throws for a tp the model cannot take
        long shard = ParamLayout.of(pl, List.of("norm")).numel();             // counts replicated norms and KV heads
        // Distributed optimizer (zero1 with dp > 1): fp32 master weights, m and v only for the rank's 1/dp shard, plus a
        // full compute copy (bf16 on CUDA; fp32 on the CPU, where it is otherwise the master itself).
        boolean distributed = zero1 && dp > 1;
        long master = (distributed ? ceilDiv(shard, dp) : shard) * 4L;
        long computeCopy = computeBytes < 4 || distributed ? shard * computeBytes : 0;
        long grads = shard * 4L;
        long optimizer = (zero1 ? ceilDiv(shard, dp) : shard) * 8L;

        long N = (long) microBatchSeqs * seqLen;
        long C = m.dim(), F = pl.ffn(), NH = pl.heads(), QKV = (NH + 2L * pl.kvHeads()) * m.headDim(), A = NH * m.headDim();
        // Saved per token per layer (compute dtype): block input x, norm1 out, qkv (after RoPE), attention out,
        // residual x2, norm2 out, gate|up, swiglu out; fp32: two rstd and NH log-sum-exp values.
        long perTokenLayer = (C + C + QKV + A + C + C + 2 * F + F) * computeBytes + (2 + NH) * 4L;
        // Working buffers for one layer's backward (gradients of the same tensors) + final norm + logits chunk.
        long oneLayer = N * perTokenLayer;
        long head = N * (2 * C * computeBytes + 4) + (long) Math.min(N, LOGITS_CHUNK_TOKENS) * pl.vocab() * computeBytes;
        long stored = N * perTokenLayer * m.nLayers() + oneLayer + head;
        long recompute = N * C * computeBytes * m.nLayers() + 2 * oneLayer + head;
        return new MemoryPlan(params, shard, master, computeCopy, grads, optimizer, stored, recompute, computeBytes);
    }

    public long totalBytes(boolean recompute) {
        return weightsBytes() + gradsBytes + optimizerBytes + (recompute ? activationsRecomputeBytes : activationsBytes);
    }

    /**
     * Bytes a run may plan on a device of {@code deviceBytes}: minus 1 GiB and 5% for what the plan does not count
     * (CUDA context, cuBLAS workspace, NCCL buffers, allocator fragmentation, small scratch buffers).
     */
    public static long usableBytes(long deviceBytes) {
        return Math.max(0, deviceBytes - (1L << 30) - deviceBytes / 20);
    }

    /**
     * Null when a run of this layout fits in {@code budgetBytes} per device (for a GPU: {@link #usableBytes} of its
     * memory; for the CPU: the configured limit); otherwise a one-line explanation with the smallest changes that
     * would fit: recomputation on, ZeRO-1 on, a larger tensor-parallel degree on the same number of devices
     * (tp x dp fixed), or, failing those, the smallest tp on more devices.
     */
    public static String checkFits(ModelConfig m, int microBatchSeqs, int seqLen, int tp, int dp, boolean zero1, int computeBytes,
                                   boolean recompute, long budgetBytes) {
        long usable = budgetBytes;
        long need = of(m, microBatchSeqs, seqLen, tp, dp, zero1, computeBytes).totalBytes(recompute);
        if (need <= usable) return null;
        java.util.List<String> fits = new java.util.ArrayList<>();
        if (!recompute && of(m, microBatchSeqs, seqLen, tp, dp, zero1, computeBytes).totalBytes(true) <= usable)
            fits.add("train.recompute=true (" + human(of(m, microBatchSeqs, seqLen, tp, dp, zero1, computeBytes).totalBytes(true)) + ")");
        if (!zero1 && dp > 1 && of(m, microBatchSeqs, seqLen, tp, dp, true, computeBytes).totalBytes(recompute) <= usable)
            fits.add("parallel.zero1=true (" + human(of(m, microBatchSeqs, seqLen, tp, dp, true, computeBytes).totalBytes(recompute)) + ")");
        int world = tp * dp;
        String sameWorld = null, moreDevices = null;
        for (int t = tp + 1; t <= 1024 && (sameWorld == null && moreDevices == null); t++) {
            if (!validTp(m, t)) continue;
            for (boolean rc : recompute ? new boolean[]{true} : new boolean[]{false, true}) {
                boolean sameDevices = world % t == 0;
                int d = sameDevices ? world / t : dp;
                long bytes = of(m, microBatchSeqs, seqLen, t, d, zero1, computeBytes).totalBytes(rc);
                if (bytes > usable) continue;
                String what = "--tp " + t + " --dp " + d + (sameDevices ? "" : " on " + t * d + " devices")
                        + (rc && !recompute ? " with train.recompute=true" : "") + " (" + human(bytes) + ")";
                if (sameDevices) sameWorld = what;
                else moreDevices = what;
                break;
            }
        }
        if (sameWorld != null) fits.add(sameWorld);
        else if (moreDevices != null) fits.add(moreDevices);
        return "tp " + tp + " x dp " + dp + " needs " + human(need) + " per device (" + (recompute ? "recompute" : "stored activations")
                + "), more than the " + human(usable) + " available; "
                + (fits.isEmpty() ? "no tensor-parallel degree fits: lower train.micro_batch_seqs or train.seq_len"
                : "would fit: " + String.join(", or ", fits));
    }

    /** Whether tensor-parallel degree {@code tp} can split this model ({@link Placement#invalidTp}). */
    public static boolean validTp(ModelConfig m, int tp) { return Placement.invalidTp(m, tp) == null; }

    private static long ceilDiv(long a, long b) { return (a + b - 1) / b; }

    /** GiB, or MiB below 1 GiB (tiny models). */
    public static String human(long bytes) {
        return bytes >= (1L << 30) ? gib(bytes) : String.format("%.2f MiB", bytes / (double) (1L << 20));
    }

    /** Bytes as GiB, or as MiB below 1 GiB (so small models do not print 0.00 GiB). */
    public static String gib(long bytes) {
        return bytes >= (1L << 30) ? String.format("%.2f GiB", bytes / (double) (1L << 30)) : String.format("%.1f MiB", bytes / (double) (1L << 20));
    }
}
