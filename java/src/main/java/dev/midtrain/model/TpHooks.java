package dev.midtrain.model;

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

    /** No tensor parallelism. */
    TpHooks NONE = new TpHooks() {
        @Override public void allReduceX(long x, long n) {}
        @Override public void combineCrossEntropy(long lse, long targetLogit, int n) {}
    };
}
