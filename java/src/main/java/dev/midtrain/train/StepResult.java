package dev.midtrain.train;

/**
 * The outcome of one optimizer step.
 *
 * @param step       the step (1-based)
 * @param loss       mean token loss over the step's global batch
 * @param gradNorm   global L2 norm of the gradient before clipping
 * @param lr         the schedule's learning rate for this step
 * @param clipScale  factor the gradients were multiplied by (1 when not clipped)
 * @param skipped    the update was skipped (non-finite loss or norm, train.on_nonfinite = skip)
 * @param tokens     input tokens in the step's global batch
 * @param lossBySource  mean token loss of the rows of each source in the step's global batch (sources without rows
 *                      in this step left out; empty when the trainer was given no data)
 */
public record StepResult(long step, double loss, double gradNorm, double lr, double clipScale, boolean skipped, long tokens,
                         java.util.Map<String, Double> lossBySource) {
    public StepResult(long step, double loss, double gradNorm, double lr, double clipScale, boolean skipped, long tokens) {
        this(step, loss, gradNorm, lr, clipScale, skipped, tokens, java.util.Map.of());
    }
}
