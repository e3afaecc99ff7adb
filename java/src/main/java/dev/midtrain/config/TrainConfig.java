package dev.midtrain.config;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

import static dev.midtrain.config.Check.require;

/**
 * The training loop.
 *
 * @param backend             cpu or cuda (no fallback: cuda without a usable GPU is an error)
 * @param seqLen              tokens per training sequence T (each sample holds T+1 tokens: inputs and shifted targets)
 * @param microBatchSeqs      sequences per forward/backward on one data-parallel rank
 * @param globalBatchSeqs     sequences per optimizer step across all data-parallel ranks (accumulation fills the rest)
 * @param steps               optimizer steps in the run (the schedule's horizon)
 * @param logEverySteps       progress-line period
 * @param evalEverySteps      validation-loss period; 0 disables
 * @param evalBatches         global micro-batches per validation pass (split over the data-parallel ranks: every layout evaluates the same set)
 * @param seed                seed for initialization and data order
 * @param recompute           what the backward recomputes instead of storing: none, selective (the norms and SwiGLU
 *                            outputs) or full (whole blocks from their inputs); true / false mean full / none
 * @param onNonfinite         stop (default): a non-finite loss or grad norm stops the run before the update;
 *                            skip: the step is skipped, logged and counted
 * @param initStd             standard deviation of the random initialization (when not starting from a checkpoint)
 * @param threads             CPU threads for kernels and GEMMs (0 = all cores)
 * @param maxConsecutiveSkips with on_nonfinite = skip: this many skipped steps in a row stop the run (exit 1); a run
 *                            that only skips has nothing to save
 * Defaults: config/defaults.yaml (the YAML loader and {@link #builder} both start from it).
 */
public record TrainConfig(Device backend, int seqLen, int microBatchSeqs, int globalBatchSeqs, int steps,
                          int logEverySteps, int evalEverySteps, int evalBatches, long seed, Recompute recompute,
                          OnNonfinite onNonfinite, double initStd, int threads, int maxConsecutiveSkips) {
    /** train.backend: where the run computes. */
    public enum Device {
        CPU, CUDA;

        @JsonValue public String yaml() { return name().toLowerCase(Locale.ROOT); }

        @JsonCreator public static Device parse(String s) { return parseEnum(Device.class, s, "train.backend"); }
    }

    /** What the backward recomputes instead of storing: nothing, the cheap elementwise parts, or whole blocks. */
    public enum Recompute {
        /** Every activation of every layer stored. */
        NONE,
        /**
         * Store each layer's GEMM inputs and outputs (block input, q|k|v after RoPE, attention output, residual,
         * gate|up) and recompute the two RMSNorm outputs and the SwiGLU output from them (elementwise: no GEMM, under
         * 1% of a layer's FLOPs). The attention core keeps only its output and log-sum-exp: the T x T scores are never
         * stored (flash attention), which is what Megatron's selective recomputation saves.
         */
        SELECTIVE,
        /** Store each layer's input only; the backward reruns the block's forward (about a third more compute). */
        FULL;

        @JsonValue public String yaml() { return name().toLowerCase(Locale.ROOT); }

        /** train.recompute: none, selective or full; true and false (the older spelling) mean full and none. */
        @JsonCreator public static Recompute parse(Object v) {
            if (v instanceof Boolean b) return b ? FULL : NONE;
            String s = String.valueOf(v);
            if (s.equals("true") || s.equals("false")) return s.equals("true") ? FULL : NONE;
            return parseEnum(Recompute.class, s, "train.recompute");
        }

        /** A flag's value (--recompute): a one-line error naming the flag. */
        public static Recompute parse(String s, String flag) {
            for (Recompute r : values()) if (r.yaml().equals(s)) return r;
            throw new dev.midtrain.common.UserError(flag + ": must be none, selective or full, got " + s);
        }
    }

    /** train.on_nonfinite: what a non-finite loss or gradient norm does. */
    public enum OnNonfinite {
        STOP, SKIP;

        @JsonValue public String yaml() { return name().toLowerCase(Locale.ROOT); }

        @JsonCreator public static OnNonfinite parse(String s) { return parseEnum(OnNonfinite.class, s, "train.on_nonfinite"); }
    }

    static <E extends Enum<E>> E parseEnum(Class<E> type, String s, String field) {
        for (E e : type.getEnumConstants()) if (e.name().toLowerCase(Locale.ROOT).equals(s)) return e;
        List<String> names = new ArrayList<>();
        for (E e : type.getEnumConstants()) names.add(e.name().toLowerCase(Locale.ROOT));
        throw new Check.ConfigException(field, "must be " + String.join(" or ", names) + ", got " + s);
    }

    public TrainConfig {
        require(backend != null, "train.backend", "must be cpu or cuda, got null");
        require(onNonfinite != null, "train.on_nonfinite", "must be stop or skip, got null");
        require(seqLen > 0, "train.seq_len", "must be > 0, got " + seqLen);
        require(microBatchSeqs > 0, "train.micro_batch_seqs", "must be > 0, got " + microBatchSeqs);
        require(globalBatchSeqs > 0, "train.global_batch_seqs", "must be > 0, got " + globalBatchSeqs);
        require(steps > 0, "train.steps", "must be > 0, got " + steps);
        require(logEverySteps > 0, "train.log_every_steps", "must be > 0, got " + logEverySteps);
        require(evalEverySteps >= 0, "train.eval_every_steps", "must be >= 0, got " + evalEverySteps);
        require(evalBatches >= 0, "train.eval_batches", "must be >= 0, got " + evalBatches);
        require(initStd > 0, "train.init_std", "must be > 0, got " + initStd);
        require(threads >= 0, "train.threads", "must be >= 0, got " + threads);
        require((long) microBatchSeqs * (seqLen + 1L) <= Integer.MAX_VALUE - 8, "train.micro_batch_seqs",
                microBatchSeqs + " x (train.seq_len " + seqLen + " + 1) = " + (long) microBatchSeqs * (seqLen + 1L)
                        + " tokens in one micro-batch, over the limit of 2^31 - 9 (one Java int array)");
        require(maxConsecutiveSkips >= 1, "train.max_consecutive_skips", "must be >= 1, got " + maxConsecutiveSkips);
    }

    /** Tokens per optimizer step. */
    public long tokensPerStep() { return (long) globalBatchSeqs * seqLen; }

    /**
     * A config by name rather than position (tests, benchmarks): {@code TrainConfig.builder(seqLen, microBatchSeqs,
     * globalBatchSeqs, steps).seed(7).build()}. The other fields start at the defaults of config/defaults.yaml.
     */
    public static Builder builder(int seqLen, int microBatchSeqs, int globalBatchSeqs, int steps) {
        return new Builder(seqLen, microBatchSeqs, globalBatchSeqs, steps);
    }

    /** The train section of defaults.yaml with the given fields set, validated by {@link #build}. */
    public static final class Builder {
        private final ObjectNode fields = ConfigLoader.defaultSection("train");

        private Builder(int seqLen, int microBatchSeqs, int globalBatchSeqs, int steps) {
            fields.put("seq_len", seqLen).put("micro_batch_seqs", microBatchSeqs).put("global_batch_seqs", globalBatchSeqs).put("steps", steps);
        }

        public Builder backend(Device d) { fields.put("backend", d.yaml()); return this; }
        public Builder logEverySteps(int n) { fields.put("log_every_steps", n); return this; }
        public Builder evalEverySteps(int n) { fields.put("eval_every_steps", n); return this; }
        public Builder evalBatches(int n) { fields.put("eval_batches", n); return this; }
        public Builder seed(long s) { fields.put("seed", s); return this; }
        public Builder recompute(boolean r) { fields.put("recompute", r); return this; }

        public Builder recompute(Recompute r) { fields.put("recompute", r.yaml()); return this; }
        public Builder onNonfinite(OnNonfinite o) { fields.put("on_nonfinite", o.yaml()); return this; }
        public Builder initStd(double s) { fields.put("init_std", s); return this; }
        public Builder threads(int n) { fields.put("threads", n); return this; }
        public Builder maxConsecutiveSkips(int n) { fields.put("max_consecutive_skips", n); return this; }

        public TrainConfig build() { return ConfigLoader.fromSection(fields, TrainConfig.class); }
    }
}
