package dev.midtrain.config;

import static dev.midtrain.config.Check.require;

/**
 * Checkpointing of the run directory.
 *
 * @param everySteps     save every N optimizer steps (0: only at the end)
 * @param keepLast       keep the newest K committed steps
 * @param keepEvery      additionally keep every M-th step forever (0: none)
 * @param async          write in a background thread after copying the state to host memory
 * @param tokensSeenBefore tokens the initial checkpoint had already been trained on (reported, added to totals)
 */
public record CheckpointConfig(int everySteps, int keepLast, int keepEvery, boolean async, long tokensSeenBefore) {
    public CheckpointConfig {
        require(everySteps >= 0, "checkpoint.every_steps", "must be >= 0, got " + everySteps);
        require(keepLast >= 1, "checkpoint.keep_last", "must be >= 1, got " + keepLast);
        require(keepEvery >= 0, "checkpoint.keep_every", "must be >= 0, got " + keepEvery);
        require(tokensSeenBefore >= 0, "checkpoint.tokens_seen_before", "must be >= 0, got " + tokensSeenBefore);
    }
}
