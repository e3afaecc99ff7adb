package dev.midtrain.optim;

import dev.midtrain.config.OptimConfig;

/**
 * Learning rate as a pure function of the optimizer step (1-based): linear warmup from 0 to {@code lr} over
 * {@code warmupSteps} (step s <= warmup: lr * s / warmup, so step 1 already moves, as torch's LambdaLR with
 * s / warmup does), then linear decay from {@code lr} at the end of warmup to {@code minLr} at {@code totalSteps}.
 *
 * @param lr          peak learning rate
 * @param minLr       learning rate at the last step
 * @param warmupSteps steps of warmup (0: start at the peak)
 * @param totalSteps  the schedule's horizon (the run's optimizer steps)
 */
public record LrSchedule(double lr, double minLr, int warmupSteps, int totalSteps) {
    public LrSchedule {
        if (!(lr > 0) || minLr < 0 || minLr > lr) throw new IllegalArgumentException("lr " + lr + ", min_lr " + minLr);
        if (warmupSteps < 0 || totalSteps < 1) throw new IllegalArgumentException("warmup " + warmupSteps + ", total " + totalSteps);
    }

    public static LrSchedule of(OptimConfig o, int totalSteps) {
        return new LrSchedule(o.lr(), o.minLr(), o.warmupSteps(), totalSteps);
    }

    /** The learning rate of optimizer step {@code step} (1-based); steps past the horizon stay at minLr. */
    public double at(long step) {
        if (step < 1) throw new IllegalArgumentException("steps are 1-based, got " + step);
        if (step <= warmupSteps) return lr * step / warmupSteps;
        if (totalSteps <= warmupSteps) return lr;
        double progress = Math.min(1.0, (double) (step - warmupSteps) / (totalSteps - warmupSteps));
        return lr - (lr - minLr) * progress;
    }
}
