package dev.midtrain.parallel;

import dev.midtrain.parallel.Communicator.Dtype;
import dev.midtrain.kernels.Backend;
import dev.midtrain.model.MemoryPlan;
import dev.midtrain.model.TpHooks;

/**
 * Megatron-style tensor parallelism for {@link dev.midtrain.model.Llama} over the tensor-parallel group:
 * <ul>
 *   <li>{@link #allReduceX}: the "g" operator after the row-parallel GEMMs (o_proj, down_proj) and the vocabulary-
 *       parallel embedding in the forward, and the "f" operator's backward (the input gradient of the column-parallel
 *       q|k|v, gate|up and LM head GEMMs, whose input is replicated) in the backward. floatX all-reduce.</li>
 *   <li>{@link #combineCrossEntropy}: vocabulary-parallel cross-entropy without gathering logits: all-gather the
 *       per-shard log-sum-exp [tp, n] + lse_combine, and all-reduce(sum) the target logit (held by one rank).</li>
 * </ul>
 * Every rank of the group gets bitwise identical results, so replicated activations stay identical across ranks.
 */
public final class TensorParallel implements TpHooks, AutoCloseable {
    private final Backend be;
    private final Communicator tp;
    private final Dtype x;
    private final long lseParts;        // float[tp, LOGITS_CHUNK_TOKENS]

    public TensorParallel(Backend be, Communicator tp) {
        this.be = be;
        this.tp = tp;
        this.x = Dtype.floatX(be.floatxBytes());
        this.lseParts = be.alloc(4L * tp.size() * MemoryPlan.LOGITS_CHUNK_TOKENS);
    }

    @Override
    public void allReduceX(long buf, long n) {
        if (tp.size() > 1) tp.allReduceSum(buf, n, x);
    }

    @Override
    public void combineCrossEntropy(long lse, long targetLogit, int n) {
        if (tp.size() == 1) return;
        if (n > MemoryPlan.LOGITS_CHUNK_TOKENS) throw new IllegalArgumentException("cross-entropy chunk of " + n + " tokens > " + MemoryPlan.LOGITS_CHUNK_TOKENS);
        tp.allGather(lseParts, lse, n, Dtype.F32);             // lseParts[p, n] = shard p's lse
        be.lseCombine(lse, lseParts, tp.size(), n);             // lse[n] over the full vocabulary
        tp.allReduceSum(targetLogit, n, Dtype.F32);             // exactly one shard holds each target
    }

    @Override
    public void close() { be.free(lseParts); }
}
