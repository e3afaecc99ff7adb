package dev.midtrain.model;

import dev.midtrain.config.Placement;

/**
 * The points where tensor parallelism communicates, called by {@link Llama} at fixed places in the forward and
 * backward (Megatron-style). With tp == 1 every call is a no-op ({@link #NONE}); the distributed layer supplies an
 * implementation backed by its communicator. All calls are enqueued on the backend's stream in program order.
 */
public interface TpHooks {

    /**
     * x[n] (floatX) = sum over the tensor-parallel group, in place. Called after the row-parallel GEMMs of the forward
     * (o_proj and down_proj outputs, before the residual add) and after the input-gradient GEMMs of the column-parallel
     * layers in the backward (q|k|v, gate|up and the vocabulary-parallel LM head, before the RMSNorm backward).
     */
    void allReduceX(long x, long n);

    /**
     * Vocabulary-parallel cross-entropy, between crossentropy_forward and crossentropy_backward of a logits chunk:
     * lse[n] (fp32) becomes the log-sum-exp over the full vocabulary (all-gather + lse_combine) and targetLogit[n]
     * (fp32) the sum over ranks (exactly one rank holds each target).
     */
    void combineCrossEntropy(long lse, long targetLogit, int n);

    /**
     * Vocabulary-parallel embedding: rows of zeros kept just before this rank's embedding shard in the weight slabs
     * (and a scratch row before the gradient slab). 1 when the vocabulary is split (tp > 1), else 0. A lookup of
     * another rank's token lands on the zero row, so the forward all-reduce of the embedding output assembles the full
     * embedding; its backward scatter lands in the scratch row.
     */
    static int embeddingGuardRows(Placement p) { return p.tp() > 1 ? 1 : 0; }

    /**
     * Input ids [n] -> rows of this rank's guarded embedding lookup, in place: this rank's ids -> id - vocabStart + 1,
     * other ranks' ids -> 0 (the zero row). No-op when the vocabulary is not split.
     */
    static void toEmbeddingRows(Placement p, int[] ids, int n) {
        if (embeddingGuardRows(p) == 0) return;
        int start = p.vocabStart(), v = p.vocab();
        for (int i = 0; i < n; i++) {
            int local = ids[i] - start;
            ids[i] = local >= 0 && local < v ? local + 1 : 0;
        }
    }

    /** No tensor parallelism. */
    TpHooks NONE = new TpHooks() {
        @Override public void allReduceX(long x, long n) {}
        @Override public void combineCrossEntropy(long lse, long targetLogit, int n) {}
    };
}
