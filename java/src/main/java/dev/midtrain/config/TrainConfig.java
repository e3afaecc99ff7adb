package dev.midtrain.config;

import static dev.midtrain.config.Check.require;

/**
 * The training loop.
 *
 * @param backend             "cpu" or "cuda" (no fallback: cuda without a usable GPU is an error)
 * @param seqLen              tokens per training sequence T (each sample holds T+1 tokens: inputs and shifted targets)
 * @param microBatchSeqs      sequences per forward/backward on one data-parallel rank
 * @param globalBatchSeqs     sequences per optimizer step across all data-parallel ranks (accumulation fills the rest)
 * @param steps               optimizer steps in the run (the schedule's horizon)
 * @param logEverySteps       progress-line period
 * @param evalEverySteps      validation-loss period; 0 disables
 * @param evalBatches         micro-batches per validation pass
 * @param seed                seed for initialization and data order
 * @param recompute           recompute each block's activations in the backward instead of storing them
 * @param onNonfinite         "stop" (default): a non-finite loss or grad norm stops the run before the update;
 *                            "skip": the step is skipped, logged and counted
 * @param initStd             standard deviation of the random initialization (when not starting from a checkpoint)
 * @param threads             CPU threads for kernels and GEMMs (0 = all cores)
 * @param maxConsecutiveSkips with on_nonfinite = skip: this many skipped steps in a row stop the run (exit 1); a run
 *                            that only skips has nothing to save (default 10)
 */
public record TrainConfig(String backend, int seqLen, int microBatchSeqs, int globalBatchSeqs, int steps,
                          int logEverySteps, int evalEverySteps, int evalBatches, long seed, boolean recompute,
                          String onNonfinite, double initStd, int threads, int maxConsecutiveSkips) {
    public static final int DEFAULT_MAX_CONSECUTIVE_SKIPS = 10;

    /** With the default train.max_consecutive_skips. */
    public TrainConfig(String backend, int seqLen, int microBatchSeqs, int globalBatchSeqs, int steps, int logEverySteps,
                       int evalEverySteps, int evalBatches, long seed, boolean recompute, String onNonfinite, double initStd, int threads) {
        this(backend, seqLen, microBatchSeqs, globalBatchSeqs, steps, logEverySteps, evalEverySteps, evalBatches, seed, recompute,
                onNonfinite, initStd, threads, DEFAULT_MAX_CONSECUTIVE_SKIPS);
    }

    public TrainConfig {
        backend = backend == null ? "cpu" : backend;
        onNonfinite = onNonfinite == null ? "stop" : onNonfinite;
        require(backend.equals("cpu") || backend.equals("cuda"), "train.backend", "must be cpu or cuda, got " + backend);
        require(seqLen > 0, "train.seq_len", "must be > 0, got " + seqLen);
        require(microBatchSeqs > 0, "train.micro_batch_seqs", "must be > 0, got " + microBatchSeqs);
        require(globalBatchSeqs > 0, "train.global_batch_seqs", "must be > 0, got " + globalBatchSeqs);
        require(steps > 0, "train.steps", "must be > 0, got " + steps);
        require(logEverySteps > 0, "train.log_every_steps", "must be > 0, got " + logEverySteps);
        require(evalEverySteps >= 0, "train.eval_every_steps", "must be >= 0, got " + evalEverySteps);
        require(evalBatches >= 0, "train.eval_batches", "must be >= 0, got " + evalBatches);
        require(onNonfinite.equals("stop") || onNonfinite.equals("skip"), "train.on_nonfinite", "must be stop or skip, got " + onNonfinite);
        require(initStd > 0, "train.init_std", "must be > 0, got " + initStd);
        require(threads >= 0, "train.threads", "must be >= 0, got " + threads);
        require(maxConsecutiveSkips >= 1, "train.max_consecutive_skips", "must be >= 1, got " + maxConsecutiveSkips);
    }

    /** Tokens per optimizer step. */
    public long tokensPerStep() { return (long) globalBatchSeqs * seqLen; }
}
