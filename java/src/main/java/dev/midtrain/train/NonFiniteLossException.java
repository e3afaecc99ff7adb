package dev.midtrain.train;

import dev.midtrain.common.UserError;

/**
 * A step produced a non-finite loss or gradient norm and train.on_nonfinite = stop: the run ends before that step's
 * optimizer update (the weights are those after the previous step). One line, exit code 1.
 */
public final class NonFiniteLossException extends UserError {
    private final long step;

    public NonFiniteLossException(long step, double loss, double gradNorm) {
        super("step " + step + ": non-finite loss " + loss + " or gradient norm " + gradNorm
                + "; stopped before the optimizer step (train.on_nonfinite=skip skips such steps)", 1, null);
        this.step = step;
    }

    /** on_nonfinite = skip, and {@code skipped} steps in a row up to {@code step} were skipped: nothing is learning. */
    public NonFiniteLossException(long step, int skipped, int limit) {
        super("step " + step + ": " + skipped + " consecutive steps skipped as non-finite (train.max_consecutive_skips = " + limit
                + "); stopped: check the data and the learning rate", 1, null);
        this.step = step;
    }

    private NonFiniteLossException(String message, long step) {
        super(message, 1, null);
        this.step = step;
    }

    /** on_nonfinite = skip, and every one of the {@code steps} steps this run took (up to {@code step}) was skipped. */
    public static NonFiniteLossException allSkipped(long step, long steps) {
        return new NonFiniteLossException("all " + steps + " steps of this run (to step " + step + ") were skipped as non-finite; no checkpoint"
                + " was written and no token counted: check the data, the learning rate and train.init_std", step);
    }

    public long step() { return step; }
}
