package dev.midtrain.parallel;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.data.TokenBatches;

import java.util.List;
import java.util.Map;

/**
 * One data-parallel rank's share of a loader that yields the global stream of micro-batches: micro-batches
 * r, r+dp, r+2dp, ... go to rank r. Every rank reads the whole stream (dp x the reading work, no coordination), so
 * the union of a step's micro-batches over the ranks is exactly what a single rank would accumulate, and a run at
 * any dp sees the same data as at dp = 1. The position is that of the global stream (identical on every rank, so
 * any rank's saved state resumes every rank); the per-source token counts are this rank's own micro-batches'.
 * Validation: the first {@code count} global held-out micro-batches, rank r taking r, r+dp, ... (the trainer sums
 * over the ranks, so every layout evaluates the same set). Use a loader that shards by rank itself
 * (BlendedLoader) where reading is expensive.
 */
public final class DpSliceBatches implements TokenBatches {
    private final TokenBatches global;
    private final int dp, dpRank;
    private int[] skip, rowSources;
    private final java.util.Map<String, Long> mine = new java.util.TreeMap<>();

    public DpSliceBatches(TokenBatches global, int dp, int dpRank) {
        if (dp < 1 || dpRank < 0 || dpRank >= dp) throw new IllegalArgumentException("dp rank " + dpRank + " of " + dp);
        this.global = global;
        this.dp = dp;
        this.dpRank = dpRank;
    }

    @Override
    public void nextMicroBatch(int[] out) {
        if (skip == null || skip.length != out.length) skip = new int[out.length];
        for (int r = 0; r < dp; r++) {
            if (r != dpRank) { dev.midtrain.data.SampleLog.muted(() -> global.nextMicroBatch(skip)); continue; }
            Map<String, Long> before = global.tokensPerSource();
            global.nextMicroBatch(out);
            rowSources = global.lastRowSources();
            global.tokensPerSource().forEach((k, v) -> mine.merge(k, v - before.getOrDefault(k, 0L), Long::sum));
        }
    }

    @Override public JsonNode state() { return global.state(); }
    @Override public void restore(JsonNode state) { global.restore(state); }
    @Override public Map<String, Long> tokensPerSource() {
        Map<String, Long> out = new java.util.TreeMap<>();
        global.tokensPerSource().keySet().forEach(k -> out.put(k, mine.getOrDefault(k, 0L)));
        return out;
    }
    @Override public List<int[]> validationMicroBatches(int count) { return mine(global.validationMicroBatches(count)); }
    @Override public List<int[]> validationRowSources(int count) { return mine(global.validationRowSources(count)); }
    @Override public List<String> sourceNames() { return global.sourceNames(); }
    @Override public int[] lastRowSources() { return rowSources == null ? null : rowSources.clone(); }

    /** This rank's share of the first global held-out micro-batches: r, r + dp, ... (null stays null). */
    private List<int[]> mine(List<int[]> all) {
        if (all == null) return null;
        List<int[]> out = new java.util.ArrayList<>();
        for (int i = dpRank; i < all.size(); i += dp) out.add(all.get(i));
        return out;
    }
    @Override public void close() { global.close(); }
}
