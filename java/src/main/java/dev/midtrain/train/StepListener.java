package dev.midtrain.train;

/**
 * Called by the trainer at every step boundary, after the optimizer step (or its skip) and the state update, before
 * evaluation and logging. Checkpointing plugs in here: at this point the model's slabs, {@link Trainer#state()} and
 * the loader agree with each other, and nothing runs on the backend.
 */
@FunctionalInterface
public interface StepListener {
    void onStepEnd(Trainer trainer);
}
