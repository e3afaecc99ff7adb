package dev.midtrain.config;

import static dev.midtrain.config.Check.require;

/**
 * World = tp x dp x pp ranks (Megatron order: tensor-parallel innermost, then data-parallel, then pipeline stage).
 *
 * @param tp               tensor-parallel degree (Megatron-style column/row parallel linears, vocab-parallel head)
 * @param dp               data-parallel degree
 * @param pp               pipeline stages (layers split into contiguous ranges; embedding on the first, head on the last)
 * @param virtualStages    model chunks per pipeline rank (1: the 1F1B schedule; more: Megatron's interleaved schedule)
 * @param sequenceParallel split the norms, residual and the activations between tensor-parallel regions along the
 *                         sequence (all-reduce becomes reduce-scatter + all-gather); needs tp > 1
 * @param zero1            shard the AdamW state across dp ranks (reduce-scatter grads, all-gather weights);
 *                         false uses a plain all-reduce
 */
public record ParallelConfig(int tp, int dp, int pp, int virtualStages, boolean sequenceParallel, boolean zero1) {
    public ParallelConfig {
        require(tp >= 1, "parallel.tp", "must be >= 1, got " + tp);
        require(dp >= 1, "parallel.dp", "must be >= 1, got " + dp);
        require(pp >= 1, "parallel.pp", "must be >= 1, got " + pp);
        require(virtualStages >= 1, "parallel.virtual_stages", "must be >= 1, got " + virtualStages);
        require(virtualStages == 1 || pp > 1, "parallel.virtual_stages", "needs parallel.pp > 1, got " + virtualStages + " with pp 1");
        require(!sequenceParallel || tp > 1, "parallel.sequence_parallel", "needs parallel.tp > 1");
    }

    /** Tensor and data parallelism only. */
    public ParallelConfig(int tp, int dp, boolean zero1) { this(tp, dp, 1, 1, false, zero1); }

    public int worldSize() { return tp * dp * pp; }
}
