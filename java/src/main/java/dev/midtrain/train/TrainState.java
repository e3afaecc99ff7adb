package dev.midtrain.train;

import com.fasterxml.jackson.databind.JsonNode;

import java.util.Map;
import java.util.TreeMap;

/**
 * Everything besides the slabs that a resumed run needs to continue exactly: what checkpoints save next to the
 * weights and AdamW moments. Mutated by the trainer at each step boundary.
 *
 * <p>The engine draws no random numbers during training (no dropout; data order is the loader's state), so the RNG
 * state is the seed alone: initialization is a pure function of it.
 */
public final class TrainState {
    /** Optimizer steps completed (including skipped ones); the next step is step + 1. */
    public long step;
    /** Steps whose update was skipped for a non-finite loss or gradient norm (train.on_nonfinite = skip). */
    public long skippedSteps;
    /** Training tokens consumed (input positions of every micro-batch), all sources. */
    public long tokensTrained;
    /** Training tokens consumed per data source (the loader's accounting). */
    public Map<String, Long> tokensPerSource = new TreeMap<>();
    /** The loader's position after the last completed step ({@code TokenBatches.state()}); null before the first. */
    public JsonNode loaderState;
    /** train.seed of the run (initialization and data order). */
    public long seed;

    public TrainState(long seed) { this.seed = seed; }

    /** AdamW's own step count (its bias corrections): updates actually applied. */
    public long optimizerSteps() { return step - skippedSteps; }
}
