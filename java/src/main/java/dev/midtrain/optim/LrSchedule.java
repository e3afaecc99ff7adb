package dev.midtrain.optim;

import dev.midtrain.config.OptimConfig;
import dev.midtrain.config.OptimConfig.Schedule;

/**
 * Learning rate as a pure function of the optimizer step (1-based), so a resumed run recomputes exactly the rates of
 * an uninterrupted one. Linear warmup from 0 to {@code lr} over {@code warmupSteps} (step s <= warmup: lr * s /
 * warmup, so step 1 already moves, as torch's LambdaLR with s / warmup does), then, with p the decay's progress in
 * [0, 1] (1 at {@code totalSteps}):
 * <ul>
 *   <li>linear: lr - (lr - minLr) * p over the steps after warmup;</li>
 *   <li>cosine: minLr + (lr - minLr) * (1 + cos(pi p)) / 2 over the steps after warmup (torch's CosineAnnealingLR
 *       with eta_min = minLr, T_max = totalSteps - warmupSteps);</li>
 *   <li>wsd (warmup-stable-decay, MiniCPM / "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
 *       Durations"): lr held until the last {@code decaySteps} steps, then linear to minLr at {@code totalSteps}.</li>
 * </ul>
 *
 * @param schedule    the shape after warmup
 * @param lr          peak learning rate
 * @param minLr       learning rate at the last step
 * @param warmupSteps steps of warmup (0: start at the peak)
 * @param totalSteps  the schedule's horizon (the run's optimizer steps)
 * @param decaySteps  wsd only: length of the final decay (0 for linear and cosine)
 */
public record LrSchedule(Schedule schedule, double lr, double minLr, int warmupSteps, int totalSteps, int decaySteps) {
    public LrSchedule {
        if (!(lr > 0) || minLr < 0 || minLr > lr) throw new IllegalArgumentException("lr " + lr + ", min_lr " + minLr);
        if (warmupSteps < 0 || totalSteps < 1 || decaySteps < 0)
            throw new IllegalArgumentException("warmup " + warmupSteps + ", total " + totalSteps + ", decay " + decaySteps);
    }

    /** Linear warmup then linear decay (the recipe's schedule). */
    public LrSchedule(double lr, double minLr, int warmupSteps, int totalSteps) {
        this(Schedule.LINEAR, lr, minLr, warmupSteps, totalSteps, 0);
    }

    /** The schedule of a run of {@code totalSteps}; wsd decays over round(wsd_decay_fraction x steps), at least 1. */
    public static LrSchedule of(OptimConfig o, int totalSteps) {
        int decay = o.schedule() == Schedule.WSD ? Math.max(1, (int) Math.round(o.wsdDecayFraction() * totalSteps)) : 0;
        return new LrSchedule(o.schedule(), o.lr(), o.minLr(), o.warmupSteps(), totalSteps, decay);
    }

    /** The learning rate of optimizer step {@code step} (1-based); steps past the horizon stay at minLr. */
    public double at(long step) {
        if (step < 1) throw new IllegalArgumentException("steps are 1-based, got " + step);
        if (step <= warmupSteps) return lr * step / warmupSteps;
        if (totalSteps <= warmupSteps) return lr;
        return switch (schedule) {
            case LINEAR -> lr - (lr - minLr) * progress(step, warmupSteps);
            case COSINE -> minLr + (lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress(step, warmupSteps)));
            case WSD -> {
                int decayStart = Math.max(warmupSteps, totalSteps - decaySteps);   // the decay never eats the warmup
                yield step <= decayStart ? lr : lr - (lr - minLr) * progress(step, decayStart);
            }
        };
    }

    /** (step - start) / (totalSteps - start), clamped to [0, 1]. */
    private double progress(long step, int start) {
        return Math.min(1.0, (double) (step - start) / (totalSteps - start));
    }
}
