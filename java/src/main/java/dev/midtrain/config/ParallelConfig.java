package dev.midtrain.config;

import static dev.midtrain.config.Check.require;

/**
 * World = tp x dp ranks.
 *
 * @param tp              tensor-parallel degree (Megatron-style column/row parallel linears, vocab-parallel head)
 * @param dp              data-parallel degree
 * @param zero1           shard the AdamW state across dp ranks (reduce-scatter grads, all-gather weights);
 *                        false uses a plain all-reduce
 */
public record ParallelConfig(int tp, int dp, boolean zero1) {
    public ParallelConfig {
        require(tp >= 1, "parallel.tp", "must be >= 1, got " + tp);
        require(dp >= 1, "parallel.dp", "must be >= 1, got " + dp);
    }


    public int worldSize() { return tp * dp; }
}
