package dev.midtrain.data;

import com.fasterxml.jackson.databind.JsonNode;

import java.util.List;
import java.util.Map;

/**
 * Training batches of one data-parallel rank: what the trainer reads. Each micro-batch is
 * int32[microBatchSeqs, seqLen + 1]: row i holds seqLen+1 consecutive tokens (inputs = row[0:T], targets = row[1:T+1]).
 *
 * <p>Implementations: the blended Arrow loader ({@code BlendedLoader}) and in-memory sources for tests.
 */
public interface TokenBatches extends AutoCloseable {

    /** Fills {@code out} (length microBatchSeqs * (seqLen + 1)) with this rank's next micro-batch. */
    void nextMicroBatch(int[] out);

    /** The position after the last delivered micro-batch, JSON-serializable; saved in checkpoints. */
    JsonNode state();

    /** Restores a position previously returned by {@link #state()}: the next batches equal those of the saved run. */
    void restore(JsonNode state);

    /** Tokens delivered to the trainer so far (by this rank), per source name. */
    Map<String, Long> tokensPerSource();

    /**
     * This data-parallel rank's share of a fixed, deterministic set of held-out micro-batches (the same every call):
     * of the first {@code count} global micro-batches (train.eval_batches), rank r of D takes r, r + D, ..., so the
     * union over the ranks is the same set for every layout.
     */
    List<int[]> validationMicroBatches(int count);

    /** Source names in a fixed order: the indices of {@link #lastRowSources} and {@link #validationRowSources}. */
    default List<String> sourceNames() { return List.copyOf(tokensPerSource().keySet()); }

    /**
     * For each row of the micro-batch last filled by {@link #nextMicroBatch}, the index of its source in
     * {@link #sourceNames()}; null means every row is from source 0 (single-source implementations).
     */
    default int[] lastRowSources() { return null; }

    /**
     * For each row of each of {@code validationMicroBatches(count)}, the index of its source (same shape as the
     * batches' rows); null means every row is from source 0.
     */
    default List<int[]> validationRowSources(int count) { return null; }

    @Override
    void close();
}
