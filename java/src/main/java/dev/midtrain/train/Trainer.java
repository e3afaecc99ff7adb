package dev.midtrain.train;

import dev.midtrain.config.RunConfig;
import dev.midtrain.config.TrainConfig;
import dev.midtrain.data.TokenBatches;
import dev.midtrain.parallel.Parallelism;
import dev.midtrain.model.Llama;
import dev.midtrain.optim.AdamW;
import dev.midtrain.optim.LrSchedule;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The training loop (torchtitan / llm.c style): read a global batch, forward/backward every micro-batch into the
 * fp32 gradient slab, one global-norm pass, clipping folded into one fused AdamW pass, then the step-boundary hooks,
 * evaluation and metrics. {@link #run()} reads in one screen; {@link #step(int[][])} is one optimizer step.
 *
 * <p>Loss scaling: the loss of a step is the mean over the valid target tokens of its whole global batch, so each
 * micro-batch's backward runs with dloss = 1 / (valid targets in the global batch).
 *
 * <p>Non-finite loss or gradient norm: train.on_nonfinite = stop throws {@link NonFiniteLossException} before the
 * update; skip leaves the weights and AdamW state untouched, counts the step in {@link TrainState#skippedSteps} and
 * logs it (the step still consumes its data and advances the schedule, but adds no tokens to tokens_trained and
 * writes no checkpoint); a run whose every step was skipped ends with {@link NonFiniteLossException} (exit 1).
 *
 * <p>Per-source metrics: every row of a micro-batch comes from one data source ({@link TokenBatches#lastRowSources});
 * the step's loss of source s is the mean over the step's valid target tokens in rows of s (over all data-parallel
 * ranks), and the same for the held-out batches. They are measured, not used: the gradient is the blend's.
 *
 * <p>Parallelism: every rank runs this loop on its own thread (or process) with its own model shard and data;
 * {@link Parallelism} adds the data-parallel token count and loss, the gradient reduction, the world-wide gradient
 * norm and the ZeRO-1 weight all-gather. Tensor-parallel communication happens inside the model.
 */
public final class Trainer {
    private final RunConfig cfg;
    private final TrainConfig tc;
    private final Llama model;
    private final TokenBatches data;
    private final TrainState state;
    private final MetricsLog metrics;
    private final AdamW adamw;
    private final LrSchedule schedule;
    private final Parallelism par;
    private final List<StepListener> listeners = new ArrayList<>();
    private final int[][] micro;                  // one step's micro-batches, int32[B, T+1] each, reused
    private final int[][] microSources;           // the source of each row of each micro-batch
    private List<int[]> validation;               // held-out micro-batches, fetched once
    private List<int[]> validationSources;        // the source of each of their rows (null: all from source 0)
    private java.util.function.BooleanSupplier stop = () -> false;   // this process's wish: SIGTERM, --stop-at-step
    private boolean stopping;                                         // the agreed decision of the last step boundary

    /**
     * @param data     the batches of this rank (may be null when only {@link #step(int[][])} is used)
     * @param state    the state to continue from (a fresh {@link TrainState#start} or a restored checkpoint's)
     */
    public Trainer(RunConfig cfg, Llama model, TokenBatches data, TrainState state, MetricsLog metrics) {
        this(cfg, model, data, state, metrics, Parallelism.single(model));
    }

    /** @param par this rank's data-parallel / gradient communication (built on the same model) */
    public Trainer(RunConfig cfg, Llama model, TokenBatches data, TrainState state, MetricsLog metrics, Parallelism par) {
        this.par = par;
        this.cfg = cfg;
        this.tc = cfg.train();
        this.model = model;
        this.data = data;
        this.state = state;
        this.metrics = metrics;
        this.adamw = new AdamW(model, cfg.optimizer());
        this.schedule = LrSchedule.of(cfg.optimizer(), tc.steps());
        this.micro = new int[cfg.gradAccumSteps()][tc.microBatchSeqs() * (tc.seqLen() + 1)];
        this.microSources = new int[micro.length][];
    }

    private int consecutiveSkips;                                               // non-finite steps in a row (skip mode)

    /** The held-out loss: mean token loss over all held-out batches, and per source (sources without tokens left out). */
    public record Validation(double loss, Map<String, Double> lossBySource) {}

    /** Registers a step-boundary hook (checkpointing). */
    public void addListener(StepListener l) { listeners.add(l); }

    /**
     * This process's wish to stop (a signal, --stop-at-step), asked once per step boundary. The ranks vote
     * ({@link Parallelism#agreeStop}: one all-reduce of one value over the world), so all of them stop after the same
     * step; {@link #run()} then returns after the listeners and metrics of that step.
     */
    public void stopWhen(java.util.function.BooleanSupplier stop) { this.stop = stop; }

    private boolean lastSkipped;

    /**
     * Whether the last step's update was skipped (non-finite, train.on_nonfinite = skip); identical on every rank.
     * Listeners write no checkpoint for such a step: its weights are the previous step's.
     */
    public boolean lastStepSkipped() { return lastSkipped; }

    /** The agreed stop decision of the last step boundary, identical on every rank (listeners read it to save). */
    public boolean stopping() { return stopping; }

    /** Trains from {@code state.step} to train.steps (or until {@link #stopWhen} says stop). */
    public TrainState run() {
        Map<String, Long> seen = data.tokensPerSource();                       // this rank's loader counts (after a resume)
        long stepsRun = 0, skippedRun = 0;
        while (state.step < tc.steps()) {
            long t0 = System.nanoTime();
            for (int i = 0; i < micro.length; i++) {
                data.nextMicroBatch(micro[i]);                                  // host int32[B, T+1] each
                microSources[i] = data.lastRowSources();                        // int32[B] source of each row
            }
            int diagEvery = cfg.diagnostics().everySteps();
            if (diagEvery > 0 && (state.step + 1) % diagEvery == 0)               // per-source gradients, before the step
                GradientDiagnostics.measure(model, micro, microSources, sourceNames()).attachTo(metrics);
            StepResult r = step(micro, microSources);                           // fwd/bwd x accum, norm, clip, AdamW
            double seconds = (System.nanoTime() - t0) / 1e9;
            Map<String, Long> now = data.tokensPerSource(), delta = new TreeMap<>();
            for (var e : now.entrySet()) delta.put(e.getKey(), e.getValue() - seen.getOrDefault(e.getKey(), 0L));
            seen = now;                                                         // + every data-parallel rank's new tokens
            Map<String, Long> all = par.sumOverDp(delta);                       // (a collective: every rank, every step)
            if (!r.skipped()) all.forEach((k, v) -> state.tokensPerSource.merge(k, v, Long::sum));   // a skipped step trains none
            stepsRun++;
            if (r.skipped()) skippedRun++;
            state.loaderState = data.state();
            stopping = par.agreeStop(stop.getAsBoolean());                     // one decision for every rank
            for (StepListener l : listeners) l.onStepEnd(this);                 // checkpoint hook: state is consistent
            boolean eval = tc.evalEverySteps() > 0 && (state.step % tc.evalEverySteps() == 0 || state.step == tc.steps());
            Validation v = eval ? validate() : new Validation(Double.NaN, Map.of());
            metrics.record(r, state, seconds, v.loss(), v.lossBySource());
            if (stopping) break;
        }
        if (stepsRun > 0 && skippedRun == stepsRun) throw NonFiniteLossException.allSkipped(state.step, stepsRun);
        return state;
    }

    /**
     * One optimizer step over {@code microBatches} (each int32[B, T+1]): zero grads, accumulate every micro-batch,
     * global gradient norm, non-finite check, AdamW with the clip factor. Advances {@link #state()}.
     */
    public StepResult step(int[][] microBatches) { return step(microBatches, null); }

    /** As {@link #step(int[][])}; {@code rowSources[i]} (null: all source 0) gives the loss per source. */
    public StepResult step(int[][] microBatches, int[][] rowSources) {
        long stepNo = state.step + 1;
        int B = model.microBatchSeqs(), T = model.seqLen();
        long valid = 0;
        for (int[] mb : microBatches) valid += Llama.validTargets(mb, B, T);
        valid = par.sumOverDp(valid);                                           // the global batch's valid targets
        float dloss = valid > 0 ? 1f / valid : 0f;                              // d(step loss)/d(token loss)
        model.zeroGrad();
        double lossSum = 0;
        PerSource per = new PerSource(sourceNames(), B, T);
        if (par.pipeline() == null) {
            for (int i = 0; i < microBatches.length; i++) {
                lossSum += model.forwardBackward(microBatches[i], dloss);
                model.rowLossSums(per.rowLoss);
                per.add(microBatches[i], rowSources == null ? null : rowSources[i]);
            }
        } else {                                                                // pipeline: the schedule of this stage
            double[][] rows = new double[microBatches.length][B];
            lossSum = par.pipeline().step(microBatches, dloss, rows);          // the last stage's, on every stage
            for (int i = 0; i < microBatches.length; i++) {
                System.arraycopy(rows[i], 0, per.rowLoss, 0, B);
                per.add(microBatches[i], rowSources == null ? null : rowSources[i]);
            }
        }
        double loss = par.sumOverDp(lossSum) / Math.max(1, valid);
        Map<String, Double> lossBySource = per.means(par);
        par.reduceGradients();                                                  // KV replicas, then dp reduce(-scatter)
        double norm = Math.sqrt(par.gradNormSquared());
        double lr = schedule.at(stepNo);
        double clip = AdamW.clipScale(norm, cfg.optimizer().gradClipNorm());
        boolean finite = Double.isFinite(loss) && Double.isFinite(norm);
        if (!finite && tc.onNonfinite() == TrainConfig.OnNonfinite.STOP) throw new NonFiniteLossException(stepNo, loss, norm);
        state.step = stepNo;
        long tokens = (long) microBatches.length * B * T * cfg.parallel().dp();
        lastSkipped = !finite;
        if (finite) {
            state.tokensTrained += tokens;                                      // a skipped step trains no token
            adamw.step(state.optimizerSteps(), lr, clip);                       // this rank's optimizer shard
            par.gatherParameters();                                             // ZeRO-1: everyone's updated shards
            consecutiveSkips = 0;
        } else {
            state.skippedSteps++;
            if (++consecutiveSkips >= tc.maxConsecutiveSkips())
                throw new NonFiniteLossException(stepNo, consecutiveSkips, tc.maxConsecutiveSkips());
        }
        return new StepResult(stepNo, loss, norm, lr, clip, !finite, tokens, lossBySource);
    }

    /** The held-out loss over train.eval_batches micro-batches, overall and per source. */
    public Validation validate() {
        if (validation == null) {
            validation = data.validationMicroBatches(tc.evalBatches());
            validationSources = data.validationRowSources(tc.evalBatches());
        }
        int B = model.microBatchSeqs(), T = model.seqLen();
        PerSource per = new PerSource(sourceNames(), B, T);
        double sum = 0;
        long valid = 0;
        for (int i = 0; i < validation.size(); i++) {
            int[] mb = validation.get(i);
            sum += model.evaluate(mb);
            valid += Llama.validTargets(mb, B, T);
            model.rowLossSums(per.rowLoss);
            per.add(mb, validationSources == null ? null : validationSources.get(i));
        }
        sum = par.sumOverDp(sum);                                               // each data-parallel rank's held-out share
        valid = par.sumOverDp(valid);
        return new Validation(valid == 0 ? Double.NaN : sum / valid, per.means(par));
    }

    private List<String> sourceNames() { return data == null ? List.of() : data.sourceNames(); }

    /** Loss sums and valid target counts per source, from each row's loss sum after a forward. */
    private static final class PerSource {
        final List<String> names;
        final double[] loss;
        final long[] count;
        final double[] rowLoss;
        final int B, T;

        PerSource(List<String> names, int B, int T) {
            this.names = names;
            this.loss = new double[names.size()];
            this.count = new long[names.size()];
            this.rowLoss = new double[B];
            this.B = B;
            this.T = T;
        }

        /** Adds micro-batch {@code mb}'s rows, whose loss sums the caller put in {@link #rowLoss}. */
        void add(int[] mb, int[] rowSrc) {
            if (names.isEmpty()) return;
            if (rowSrc == null && names.size() > 1) throw new IllegalStateException("the data has " + names.size() + " sources but no row sources");
            for (int b = 0; b < B; b++) {
                int s = rowSrc == null ? 0 : rowSrc[b];
                loss[s] += rowLoss[b];
                for (int t = 1; t <= T; t++) if (mb[b * (T + 1) + t] != Llama.IGNORE_INDEX) count[s]++;
            }
        }

        /** Means over every data-parallel rank (the same collectives in the same order on every rank). */
        Map<String, Double> means(Parallelism par) {
            Map<String, Double> out = new java.util.LinkedHashMap<>();
            for (int s = 0; s < names.size(); s++) {
                double l = par.sumOverDp(loss[s]);
                long n = par.sumOverDp(count[s]);
                if (n > 0) out.put(names.get(s), l / n);
            }
            return out;
        }
    }

    /** Restores a saved position: copies {@code saved} into this trainer's state and rewinds the loader. */
    public void resume(TrainState saved) {
        state.set(saved);
        if (saved.loaderState != null && data != null) data.restore(saved.loaderState);
    }

    public TrainState state() { return state; }
    public Llama model() { return model; }
    public TokenBatches data() { return data; }
    public RunConfig config() { return cfg; }
}
