package dev.midtrain.config;

/**
 * What one tensor-parallel rank holds of the model (Megatron-style): the one place where tp is checked against the
 * model and where per-rank sizes come from. {@code model.ParamLayout}, {@code model.Llama}, {@code model.MemoryPlan},
 * {@code parallel.Topology} and {@code parallel.Parallelism} read it; {@link RunConfig} rejects a tp it refuses.
 *
 * <pre>
 * query heads   NH/tp           (column-parallel q, row-parallel o)
 * KV heads      NKV/tp, or 1 when tp > NKV: each KV head then replicated over kvReplicas = tp/NKV ranks
 * FFN slice     F/tp            (column-parallel gate|up, row-parallel down)
 * vocab slice   V/tp, rows [vocabStart, vocabStart + V/tp) of the embedding and the LM head
 * </pre>
 *
 * @param tp   tensor-parallel degree
 * @param rank this rank's index in its tensor-parallel group, 0..tp-1
 */
public record Placement(ModelConfig model, int tp, int rank) {
    public Placement {
        String bad = invalidTp(model, tp);
        if (bad != null) throw new Check.ConfigException("parallel.tp", bad);
        if (rank < 0 || rank >= tp) throw new IllegalArgumentException("tp rank " + rank + " of " + tp);
    }

    /** Rank 0's placement (every rank holds the same sizes; only offsets differ). */
    public static Placement of(ModelConfig m, int tp) { return new Placement(m, tp, 0); }

    /** Null when {@code tp} can split this model; otherwise why not, naming the model field (after "parallel.tp: "). */
    public static String invalidTp(ModelConfig m, int tp) {
        if (tp < 1) return "must be >= 1, got " + tp;
        if (m.nHeads() % tp != 0) return tp + " must divide model.n_heads " + m.nHeads();
        if (m.ffnDim() % tp != 0) return tp + " must divide model.ffn_dim " + m.ffnDim();
        if (m.vocabSize() % tp != 0) return tp + " must divide model.vocab_size " + m.vocabSize();
        if (tp > m.nKvHeads() && tp % m.nKvHeads() != 0)
            return tp + " must be a multiple of model.n_kv_heads " + m.nKvHeads() + " when larger";
        if (tp < m.nKvHeads() && m.nKvHeads() % tp != 0) return tp + " must divide model.n_kv_heads " + m.nKvHeads();
        return null;
    }

    /** Query heads of this rank (NH/tp). */
    public int heads() { return model.nHeads() / tp; }

    /** KV heads of this rank: NKV/tp, or 1 when tp > NKV. */
    public int kvHeads() { return Math.max(1, model.nKvHeads() / tp); }

    /** Tensor-parallel ranks that hold the same KV head (tp/NKV when tp > NKV, else 1); their k/v gradients are summed. */
    public int kvReplicas() { return tp > model.nKvHeads() ? tp / model.nKvHeads() : 1; }

    /** Slices the k/v projections are cut into (min(tp, NKV)). */
    public int kvShards() { return Math.min(tp, model.nKvHeads()); }

    /** Which k/v slice this rank holds. */
    public int kvIndex() { return rank / kvReplicas(); }

    /** This rank's index among the ranks holding its KV head. */
    public int kvRank() { return rank % kvReplicas(); }

    /** FFN columns of this rank (F/tp). */
    public int ffn() { return model.ffnDim() / tp; }

    /** Vocabulary rows of this rank (V/tp). */
    public int vocab() { return model.vocabSize() / tp; }

    /** First vocabulary id this rank holds. */
    public int vocabStart() { return rank * vocab(); }
}
