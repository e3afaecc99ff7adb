package dev.midtrain.parallel;

import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.Placement;

/**
 * Where one rank sits in the world of tp x dp x pp ranks, in Megatron's order: tensor-parallel rank innermost, then
 * data-parallel, then pipeline stage: rank = (ppRank * dp + dpRank) * tp + tpRank. Tensor-parallel groups are
 * consecutive ranks, so they share a node and its NVLink (the heaviest traffic: an all-reduce per layer); a
 * data-parallel group is the ranks of one stage with the same tensor-parallel rank (one reduce-scatter per step); a
 * pipeline group is the pp ranks with the same tensor- and data-parallel rank, tp*dp apart (activations sent
 * point-to-point, the lightest traffic, so it may cross nodes). When tp > NKV each KV head is replicated over
 * {@code kvReplicas} = tp / NKV consecutive tensor-parallel ranks, whose k/v weight gradients must be summed (the KV
 * group).
 *
 * @param tp         tensor-parallel degree
 * @param dp         data-parallel degree
 * @param pp         pipeline stages
 * @param rank       global rank, 0..tp*dp*pp-1
 * @param kvReplicas tensor-parallel ranks holding the same KV head (1 when tp <= NKV)
 */
public record Topology(int tp, int dp, int pp, int rank, int kvReplicas) {
    public Topology {
        if (tp < 1 || dp < 1 || pp < 1) throw new IllegalArgumentException("tp " + tp + " x dp " + dp + " x pp " + pp);
        if (rank < 0 || rank >= tp * dp * pp) throw new IllegalArgumentException("rank " + rank + " of " + tp * dp * pp);
        if (kvReplicas < 1 || tp % kvReplicas != 0) throw new IllegalArgumentException("kvReplicas " + kvReplicas + " with tp " + tp);
    }

    /** No pipeline (pp 1). */
    public Topology(int tp, int dp, int rank, int kvReplicas) { this(tp, dp, 1, rank, kvReplicas); }

    public static Topology of(int tp, int dp, int rank, ModelConfig m) {
        return new Topology(tp, dp, rank, Placement.of(m, tp).kvReplicas());
    }

    public static Topology of(int tp, int dp, int pp, int rank, ModelConfig m) {
        return new Topology(tp, dp, pp, rank, Placement.of(m, tp).kvReplicas());
    }

    public int worldSize() { return tp * dp * pp; }

    public int tpRank() { return rank % tp; }

    public int dpRank() { return rank / tp % dp; }

    /** This rank's pipeline stage, 0..pp-1 (the first holds the embedding, the last the norm, head and loss). */
    public int ppRank() { return rank / (tp * dp); }

    /** Global rank of the rank at (tpRank, dpRank, ppRank). */
    public int rankOf(int tpRank, int dpRank, int ppRank) { return (ppRank * dp + dpRank) * tp + tpRank; }

    /** Global ranks of this rank's tensor-parallel group, in group-rank order. */
    public int[] tpGroup() {
        int[] m = new int[tp];
        for (int t = 0; t < tp; t++) m[t] = rankOf(t, dpRank(), ppRank());
        return m;
    }

    /** Global ranks of this rank's data-parallel group (one stage, one tensor-parallel rank), in group-rank order. */
    public int[] dpGroup() {
        int[] m = new int[dp];
        for (int d = 0; d < dp; d++) m[d] = rankOf(tpRank(), d, ppRank());
        return m;
    }

    /** Global ranks of this rank's pipeline group (stage 0 .. pp-1), in group-rank order. */
    public int[] ppGroup() {
        int[] m = new int[pp];
        for (int p = 0; p < pp; p++) m[p] = rankOf(tpRank(), dpRank(), p);
        return m;
    }

    /** Whether this rank is the first or the last stage of a pipeline (pp > 1): they share a tied embedding. */
    public boolean inEmbeddingGroup() { return pp > 1 && (ppRank() == 0 || ppRank() == pp - 1); }

    /** Global ranks of this rank's embedding group: its pipeline's first and last stage. */
    public int[] embeddingGroup() { return new int[]{rankOf(tpRank(), dpRank(), 0), rankOf(tpRank(), dpRank(), pp - 1)}; }

    /** Index of this rank's KV group in the world (ranks in one group hold the same KV head of the same dp replica). */
    public int kvGroup() { return rank / kvReplicas; }

    /** This rank's index within its KV group. */
    public int kvRank() { return tpRank() % kvReplicas; }

    /** Index of this rank's tensor-parallel group in the world (a name for it: "tp.3"). */
    public int tpGroupIndex() { return rank / tp; }

    /** Index of this rank's data-parallel group in the world. */
    public int dpGroupIndex() { return ppRank() * tp + tpRank(); }

    /** Index of this rank's pipeline group in the world. */
    public int ppGroupIndex() { return rank % (tp * dp); }
}
