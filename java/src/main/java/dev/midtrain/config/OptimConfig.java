package dev.midtrain.config;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;

import java.util.List;
import java.util.Locale;

import static dev.midtrain.config.Check.require;

/**
 * AdamW (torch.optim.AdamW semantics) with linear warmup then a decay to a floor: linear (the recipe's "Adam with
 * linear decay"), cosine, or warmup-stable-decay ({@link dev.midtrain.optim.LrSchedule} has the formulas).
 *
 * @param lr                  peak learning rate, reached at the end of warmup
 * @param minLr               floor the linear decay ends at (at the last step)
 * @param warmupSteps         optimizer steps of linear warmup from 0
 * @param beta1               first-moment decay
 * @param beta2               second-moment decay
 * @param eps                 AdamW epsilon
 * @param weightDecay         decoupled weight decay coefficient
 * @param weightDecayExclude  parameters whose Hugging Face name contains any of these get no weight decay
 * @param gradClipNorm        global L2 gradient-norm clip threshold; 0 disables clipping
 * @param schedule            linear, cosine or wsd: the shape of the learning rate after warmup
 * @param wsdDecayFraction    wsd only: the fraction of train.steps (at the end) that decays from lr to min_lr
 */
public record OptimConfig(double lr, double minLr, int warmupSteps, double beta1, double beta2, double eps,
                          double weightDecay, List<String> weightDecayExclude, double gradClipNorm, Schedule schedule,
                          double wsdDecayFraction) {
    /** optimizer.schedule: the learning-rate shape after warmup. */
    public enum Schedule {
        LINEAR, COSINE, WSD;

        @JsonValue public String yaml() { return name().toLowerCase(Locale.ROOT); }

        @JsonCreator public static Schedule parse(String s) { return TrainConfig.parseEnum(Schedule.class, s, "optimizer.schedule"); }
    }

    @JsonCreator
    public OptimConfig {
        if (schedule == null) schedule = Schedule.parse(ConfigLoader.defaultSection("optimizer").get("schedule").asText());   // defaults.yaml
        require(wsdDecayFraction > 0 && wsdDecayFraction <= 1, "optimizer.wsd_decay_fraction", "must be in (0, 1], got " + wsdDecayFraction);
        require(lr > 0, "optimizer.lr", "must be > 0, got " + lr);
        require(minLr >= 0 && minLr <= lr, "optimizer.min_lr", "must be in [0, optimizer.lr], got " + minLr);
        require(warmupSteps >= 0, "optimizer.warmup_steps", "must be >= 0, got " + warmupSteps);
        require(beta1 >= 0 && beta1 < 1, "optimizer.beta1", "must be in [0, 1), got " + beta1);
        require(beta2 >= 0 && beta2 < 1, "optimizer.beta2", "must be in [0, 1), got " + beta2);
        require(eps > 0, "optimizer.eps", "must be > 0, got " + eps);
        require(weightDecay >= 0, "optimizer.weight_decay", "must be >= 0, got " + weightDecay);
        require(gradClipNorm >= 0, "optimizer.grad_clip_norm", "must be >= 0 (0 disables), got " + gradClipNorm);
        weightDecayExclude = weightDecayExclude == null ? defaultWeightDecayExclude() : List.copyOf(weightDecayExclude);
    }

    /** optimizer.weight_decay_exclude of defaults.yaml. */
    public static List<String> defaultWeightDecayExclude() {
        return List.of(ConfigLoader.YAML.convertValue(ConfigLoader.defaultSection("optimizer").get("weight_decay_exclude"), String[].class));
    }

    /** optimizer.schedule and wsd_decay_fraction from defaults.yaml; the other fields as given. */
    public OptimConfig(double lr, double minLr, int warmupSteps, double beta1, double beta2, double eps,
                       double weightDecay, List<String> weightDecayExclude, double gradClipNorm) {
        this(lr, minLr, warmupSteps, beta1, beta2, eps, weightDecay, weightDecayExclude, gradClipNorm, null,
                ConfigLoader.defaultSection("optimizer").get("wsd_decay_fraction").asDouble());
    }
}
