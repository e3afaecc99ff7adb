package dev.midtrain.model;

import dev.midtrain.config.TrainConfig.Recompute;

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
     * A parallel layout as the planner sees it.
     *
     * @param microBatches micro-batches per data-parallel rank per optimizer step (the pipeline's m)
     */
    public record Layout(int tp, int dp, int pp, int virtualStages, boolean sequenceParallel, boolean zero1, Recompute recompute, int microBatches) {
        public Layout {
            if (tp < 1 || dp < 1 || pp < 1 || virtualStages < 1 || microBatches < 1)
                throw new IllegalArgumentException("tp " + tp + " dp " + dp + " pp " + pp + " virtual " + virtualStages + " m " + microBatches);
        }

        public int devices() { return tp * dp * pp; }

        /** "tp 8 x pp 4 x dp 1" (", 2 virtual stages", ", sequence parallel" when set). */
        public String describe() {
            return "tp " + tp + " x pp " + pp + " x dp " + dp + (virtualStages > 1 ? " (" + virtualStages + " virtual stages)" : "")
                    + (sequenceParallel ? ", sequence parallel" : "");
        }

        /** The pipeline's idle fraction of a step (0 without a pipeline). */
        public double bubble() { return bubbleFraction(pp, virtualStages, microBatches); }
    }

    /**
     * One pipeline rank's bytes per device.
     *
     * @param params     parameters on this rank (its tensor-parallel shard of its layers; embedding on the first, norm
     *                   and head on the last, a tied embedding on both)
     * @param inFlight   chunk forwards whose backward has not run at the peak (micro-batches in flight x chunks)
     * @param layers     layers per rank (all chunks)
     */
    public record Stage(int rank, long params, long masterBytes, long computeCopyBytes, long gradsBytes, long optimizerBytes,
                        long activationsBytes, int inFlight, int layers) {
        public long totalBytes() { return masterBytes + computeCopyBytes + gradsBytes + optimizerBytes + activationsBytes; }
    }

    /**
     * Chunk forwards pipeline rank p holds alive at its peak under the schedule of {@code dev.midtrain.parallel.PipelineSchedule}
     * (their backward not yet run): its warm-up + 1, at most m * virtual. 1F1B: pp - p micro-batches, the most on the
     * first rank; interleaved: (pp - p - 1) * 2 + (virtual - 1) * pp + 1. PipelineScheduleTest checks it against the
     * schedule's order.
     */
    public static int inFlight(int pp, int virtual, int microBatches, int rank) {
        int w = virtual == 1 ? pp - rank - 1 : (pp - rank - 1) * 2 + (virtual - 1) * pp;
        return Math.min(w + 1, microBatches * virtual);
    }

    /** The pipeline's idle fraction of a step: (pp - 1) / (virtual * m + pp - 1) (0 without a pipeline). */
    public static double bubbleFraction(int pp, int virtual, int microBatches) {
        return (pp - 1) / (double) (virtual * microBatches + pp - 1);
    }

    /** Why a layout cannot run at all (null when it can): tp against the model, layers against the stages. */
    public static String invalid(ModelConfig m, Layout l) {
        String badTp = Placement.invalidTp(m, l.tp());
        if (badTp != null) return "parallel.tp: " + badTp;
        if (l.virtualStages() > 1 && l.pp() == 1) return "parallel.virtual_stages: needs parallel.pp > 1";
        if (m.nLayers() % (l.pp() * l.virtualStages()) != 0)
            return "parallel.pp: " + l.pp() + " stages x " + l.virtualStages() + " virtual must divide model.n_layers " + m.nLayers();
        if (l.virtualStages() > 1 && l.microBatches() % l.pp() != 0)
            return "parallel.virtual_stages: the interleaved schedule needs micro-batches per step (" + l.microBatches() + ") to be a multiple of parallel.pp (" + l.pp() + ")";
        if (l.sequenceParallel() && l.tp() == 1) return "parallel.sequence_parallel: needs parallel.tp > 1";
        return null;
    }

    /** Every pipeline rank's memory (rank p holds virtual stages p, p + pp, ...; Megatron's contiguous layer split). */
    public static List<Stage> stages(ModelConfig m, int microBatchSeqs, int seqLen, Layout l, int computeBytes) {
        String bad = invalid(m, l);
        if (bad != null) throw new IllegalArgumentException(bad);
        int pp = l.pp(), v = l.virtualStages(), tp = l.tp(), dp = l.dp(), cb = computeBytes, L = m.nLayers(), perChunk = L / (pp * v);
        Placement pl = Placement.of(m, tp);
        ParamLayout layout = ParamLayout.of(pl, List.of("norm"));
        long N = (long) microBatchSeqs * seqLen;
        long C = m.dim(), F = pl.ffn(), NH = pl.heads(), QKV = (NH + 2L * pl.kvHeads()) * m.headDim(), A = NH * m.headDim();
        long c = l.sequenceParallel() ? (C + tp - 1) / tp : C;                 // per-token width of the sequence-split tensors
        long perTokenLayer = (C + C + QKV + A + C + C + 2 * F + F) * cb + (2 + NH) * 4L;   // stored, as in of()
        long kept = switch (l.recompute()) {
            case NONE -> (4 * c + QKV + A + 3 * F) * cb + (2 + NH) * 4L;
            case SELECTIVE -> (2 * c + QKV + A + 2 * F) * cb + (2 + NH) * 4L;   // norm1, norm2 and SwiGLU outputs recomputed
            case FULL -> c * cb;                                                // the block input only
        };
        long oneLayer = N * perTokenLayer;
        long head = N * (2 * C * cb + 4) + (long) Math.min(N, LOGITS_CHUNK_TOKENS) * pl.vocab() * cb;
        List<Stage> out = new java.util.ArrayList<>();
        for (int p = 0; p < pp; p++) {
            long params = 0;
            for (ParamLayout.Tensor t : layout.tensors()) {
                String n = t.name();
                boolean mine;
                if (n.startsWith("model.layers.")) {
                    int layer = Integer.parseInt(n.substring(13, n.indexOf('.', 13)));
                    mine = (layer / perChunk) % pp == p;                         // virtual stage layer/perChunk on rank stage % pp
                } else if (n.equals("model.embed_tokens.weight")) {
                    mine = p == 0 || (m.tiedEmbeddings() && p == pp - 1);       // a tied embedding: also the last rank's head
                } else mine = p == pp - 1;                                      // final norm, lm_head
                if (mine) params += t.numel();
            }
            boolean distributed = l.zero1() && dp > 1;
            long master = (distributed ? ceilDiv(params, dp) : params) * 4L;
            long computeCopy = cb < 4 || distributed ? params * cb : 0;
            long grads = params * 4L;
            long optimizer = (l.zero1() ? ceilDiv(params, dp) : params) * 8L;
            int inFlight = inFlight(pp, v, l.microBatches(), p);
            long alive = (long) inFlight * perChunk;                            // layers whose activations are alive at the peak
            long act = N * kept * alive + (l.recompute() == Recompute.NONE ? oneLayer : 2 * oneLayer)
                    + (p == pp - 1 ? head : 0) + (pp > 1 ? 2 * N * c * cb : 0);   // + the p2p send/receive buffers
            out.add(new Stage(p, params, master, computeCopy, grads, optimizer, act, inFlight, perChunk * v));
        }
        return out;
    }

    /** The pipeline rank that needs the most memory (the first under 1F1B, unless the head outweighs it). */
    public static Stage largest(List<Stage> stages) {
        Stage best = stages.get(0);
        for (Stage s : stages) if (s.totalBytes() > best.totalBytes()) best = s;
        return best;
    }

    /**
     * Null when a run of layout {@code l} fits in {@code budgetBytes} per device (for a GPU: {@link #usableBytes} of
     * its memory; for the CPU: the configured limit); otherwise one line with what would fit: the same devices with
     * more recomputation or sequence parallelism, else the layout on the fewest devices that fits with every
     * tensor-parallel group inside one node of {@code gpusPerNode} (tp dividing it), searching tp, pp, dp (the global
     * batch of {@code globalBatchSeqs} sequences must split into micro-batches over dp), the recomputation choice and
     * sequence parallelism. Ties go to less recomputation, then fewer pipeline stages, then smaller tp.
     */
    public static String checkFits(ModelConfig m, int microBatchSeqs, int seqLen, Layout l, int globalBatchSeqs, int computeBytes,
                                   long budgetBytes, int gpusPerNode) {
        long need = largest(stages(m, microBatchSeqs, seqLen, l, computeBytes)).totalBytes();
        if (need <= budgetBytes) return null;
        List<String> fits = new java.util.ArrayList<>();
        for (Recompute r : Recompute.values()) {
            if (r.ordinal() <= l.recompute().ordinal()) continue;
            long b = largest(stages(m, microBatchSeqs, seqLen, withRecompute(l, r), computeBytes)).totalBytes();
            if (b <= budgetBytes) { fits.add("train.recompute=" + r.yaml() + " (" + human(b) + ")"); break; }
        }
        if (l.tp() > 1 && !l.sequenceParallel()) {
            Layout sp = new Layout(l.tp(), l.dp(), l.pp(), l.virtualStages(), true, l.zero1(), l.recompute(), l.microBatches());
            long b = largest(stages(m, microBatchSeqs, seqLen, sp, computeBytes)).totalBytes();
            if (b <= budgetBytes) fits.add("parallel.sequence_parallel=true (" + human(b) + ")");
        }
        if (!l.zero1() && l.dp() > 1) {
            Layout z = new Layout(l.tp(), l.dp(), l.pp(), l.virtualStages(), l.sequenceParallel(), true, l.recompute(), l.microBatches());
            long b = largest(stages(m, microBatchSeqs, seqLen, z, computeBytes)).totalBytes();
            if (b <= budgetBytes) fits.add("parallel.zero1=true (" + human(b) + ")");
        }
        String smallest = smallestFit(m, microBatchSeqs, seqLen, l, globalBatchSeqs, computeBytes, budgetBytes, gpusPerNode);
        if (smallest != null) fits.add(smallest);
        return l.describe() + " needs " + human(need) + " per device (recompute " + l.recompute().yaml() + "), more than the "
                + human(budgetBytes) + " available; "
                + (fits.isEmpty() ? "no layout with tensor-parallel groups inside a node of " + gpusPerNode + " fits: lower train.micro_batch_seqs or train.seq_len"
                : "would fit: " + String.join(", or ", fits));
    }

    private static Layout withRecompute(Layout l, Recompute r) {
        return new Layout(l.tp(), l.dp(), l.pp(), l.virtualStages(), l.sequenceParallel(), l.zero1(), r, l.microBatches());
    }

    /** The fewest devices that fit (see {@link #checkFits}), as flags; null when nothing fits. */
    static String smallestFit(ModelConfig m, int microBatchSeqs, int seqLen, Layout l, int globalBatchSeqs, int computeBytes,
                              long budgetBytes, int gpusPerNode) {
        Layout best = null;
        long bestBytes = 0;
        int maxDp = Math.max(1, globalBatchSeqs / microBatchSeqs);
        for (int tp = 1; tp <= gpusPerNode; tp++) {
            if (gpusPerNode % tp != 0 || !validTp(m, tp)) continue;
            for (int pp = 1; pp <= m.nLayers(); pp++) {
                if (m.nLayers() % pp != 0) continue;
                for (int dp = 1; dp <= maxDp; dp++) {
                    if (globalBatchSeqs % (microBatchSeqs * dp) != 0) continue;
                    int mbs = globalBatchSeqs / (microBatchSeqs * dp);
                    if (best != null && tp * pp * dp > best.devices()) break;
                    for (Recompute r : Recompute.values()) {
                        for (boolean sp : tp > 1 ? new boolean[]{false, true} : new boolean[]{false}) {
                            Layout c = new Layout(tp, dp, pp, 1, sp, l.zero1(), r, mbs);
                            if (invalid(m, c) != null) continue;
                            long b = largest(stages(m, microBatchSeqs, seqLen, c, computeBytes)).totalBytes();
                            if (b > budgetBytes) continue;
                            if (best == null || better(c, best)) { best = c; bestBytes = b; }
                        }
                    }
                }
            }
        }
        if (best == null) return null;
        return "--tp " + best.tp() + " --pp " + best.pp() + " --dp " + best.dp() + " on " + best.devices() + " devices"
                + (best.recompute() != l.recompute() ? " with train.recompute=" + best.recompute().yaml() : "")
                + (best.sequenceParallel() ? " and parallel.sequence_parallel=true" : "") + " (" + human(bestBytes) + ")";
    }

    private static boolean better(Layout a, Layout b) {
        if (a.devices() != b.devices()) return a.devices() < b.devices();
        if (a.recompute() != b.recompute()) return a.recompute().ordinal() < b.recompute().ordinal();
        if (a.sequenceParallel() != b.sequenceParallel()) return !a.sequenceParallel();
        if (a.pp() != b.pp()) return a.pp() < b.pp();
        return a.tp() < b.tp();
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
