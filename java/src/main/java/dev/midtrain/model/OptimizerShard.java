package dev.midtrain.model;

/**
 * Which part of the parameter slab this rank's optimizer updates, and how long the weight and gradient slabs are.
 * Without data parallelism (or with ZeRO-1 off) a rank updates everything. With ZeRO-1 the slab is cut into dp equal
 * shards of {@code ceil(numel/dp)} elements (the last padded with zeros, never updated): gradients are
 * reduce-scattered into them, each rank keeps AdamW moments for its shard only, and the updated weights are
 * all-gathered, which is why both slabs are allocated at the padded length.
 *
 * @param start      first slab element this rank updates (its AdamW moments start here)
 * @param count      elements this rank updates (the length of its m and v)
 * @param slabElems  allocated length of the weight and gradient slabs (>= numel)
 */
public record OptimizerShard(long start, long count, long slabElems) {
    public OptimizerShard {
        if (start < 0 || count < 0 || slabElems < start + count) throw new IllegalArgumentException("optimizer shard [" + start + ", +" + count + ") of " + slabElems);
    }

    /** Everything, unpadded (one rank, or data parallelism with plain all-reduce). */
    public static OptimizerShard full(long numel) { return new OptimizerShard(0, numel, numel); }

    /** The shard of data-parallel rank {@code dpRank}: ZeRO-1 when {@code zero1 && dp > 1}, else everything. */
    public static OptimizerShard of(long numel, int dp, int dpRank, boolean zero1) {
        if (dp == 1) return full(numel);
        long per = shardElems(numel, dp);
        if (!zero1) return new OptimizerShard(0, numel, per * dp);
        long start = Math.min(numel, per * dpRank);
        return new OptimizerShard(start, Math.max(0, Math.min(per, numel - start)), per * dp);
    }

    /** Elements per data-parallel shard: ceil(numel / dp). */
    public static long shardElems(long numel, int dp) { return (numel + dp - 1) / dp; }
}
