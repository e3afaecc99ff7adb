package dev.midtrain.parallel;

import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.Placement;

/**
 * Where one rank sits in the world of tp x dp ranks. Tensor-parallel groups are consecutive ranks (they share a node
 * and its NVLink): rank = dpRank * tp + tpRank. When tp > NKV each KV head is replicated over {@code kvReplicas} =
 * tp / NKV consecutive tensor-parallel ranks, whose k/v weight gradients must be summed (the KV group).
 *
 * @param tp         tensor-parallel degree
 * @param dp         data-parallel degree
 * @param rank       global rank, 0..tp*dp-1
 * @param kvReplicas tensor-parallel ranks holding the same KV head (1 when tp <= NKV)
 */
public record Topology(int tp, int dp, int rank, int kvReplicas) {
    public Topology {
        if (tp < 1 || dp < 1) throw new IllegalArgumentException("tp " + tp + " x dp " + dp);
        if (rank < 0 || rank >= tp * dp) throw new IllegalArgumentException("rank " + rank + " of " + tp * dp);
        if (kvReplicas < 1 || tp % kvReplicas != 0) throw new IllegalArgumentException("kvReplicas " + kvReplicas + " with tp " + tp);
    }

    public static Topology of(int tp, int dp, int rank, ModelConfig m) {
        return new Topology(tp, dp, rank, Placement.of(m, tp).kvReplicas());
    }

    public int worldSize() { return tp * dp; }

    public int tpRank() { return rank % tp; }

    public int dpRank() { return rank / tp; }

    /** Index of this rank's KV group in the world (ranks in one group hold the same KV head of the same dp replica). */
    public int kvGroup() { return rank / kvReplicas; }

    /** This rank's index within its KV group. */
    public int kvRank() { return tpRank() % kvReplicas; }
}
