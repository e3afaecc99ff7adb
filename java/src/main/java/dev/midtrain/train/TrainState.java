package dev.midtrain.train;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.config.RunConfig;

import java.util.Map;
import java.util.TreeMap;

/**
 * The one training state: everything besides the slabs that a resumed run needs to continue exactly. The trainer
 * advances it at each step boundary; a checkpoint saves it as {@code trainer_state.json} ({@code ckpt.StateFile},
 * which adds what the checkpoint records about the run: config, layout, provenance).
 *
 * <p>The engine draws no random numbers during training (no dropout; data order is the loader's state), so the RNG
 * state is the seed alone: initialization is a pure function of it.
 */
public final class TrainState {
    /** Optimizer steps completed (including skipped ones); the next step is step + 1. */
    public long step;
    /** Steps whose update was skipped for a non-finite loss or gradient norm (train.on_nonfinite = skip). */
    public long skippedSteps;
    /** Training tokens consumed by this run lineage (input positions of every micro-batch, all sources, all ranks). */
    public long tokensTrained;
    /** Tokens the initial checkpoint had already seen (checkpoint.tokens_seen_before); not in tokensTrained. */
    public long tokensSeenBefore;
    /** Training tokens consumed per data source (the loader's accounting). */
    public Map<String, Long> tokensPerSource = new TreeMap<>();
    /** The loader's position after the last completed step ({@code TokenBatches.state()}); null before the first. */
    public JsonNode loaderState;
    /** train.seed of the run (initialization and data order). */
    public long seed;

    public TrainState(long seed) { this.seed = seed; }

    /** The state of a new run: its train.seed and checkpoint.tokens_seen_before, step 0. */
    public static TrainState start(RunConfig cfg) {
        TrainState s = new TrainState(cfg.train().seed());
        s.tokensSeenBefore = cfg.checkpoint().tokensSeenBefore();
        return s;
    }

    /** AdamW's own step count (its bias corrections): updates actually applied. */
    public long optimizerSteps() { return step - skippedSteps; }

    /** Total tokens the weights have seen: tokensSeenBefore + tokensTrained. */
    public long tokensTotal() { return tokensSeenBefore + tokensTrained; }

    /** Overwrites every field with {@code other}'s (a resume). */
    public void set(TrainState other) {
        step = other.step;
        skippedSteps = other.skippedSteps;
        tokensTrained = other.tokensTrained;
        tokensSeenBefore = other.tokensSeenBefore;
        tokensPerSource = new TreeMap<>(other.tokensPerSource);
        loaderState = other.loaderState == null ? null : other.loaderState.deepCopy();
        seed = other.seed;
    }

    /** An independent copy (a checkpoint's snapshot while the trainer moves on). */
    public TrainState copy() {
        TrainState c = new TrainState(seed);
        c.set(this);
        return c;
    }
}
