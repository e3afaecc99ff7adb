package dev.midtrain.ckpt;

import dev.midtrain.common.AtomicFiles;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import dev.midtrain.common.UserError;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.RunConfig;
import dev.midtrain.parallel.ParallelException;
import dev.midtrain.kernels.Backend;
import dev.midtrain.model.Llama;
import dev.midtrain.model.OptimizerShard;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.optim.LrSchedule;
import dev.midtrain.train.StepListener;
import dev.midtrain.train.TrainState;
import dev.midtrain.train.Trainer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Checkpointing of one training run: {@code --init-from} (Hugging Face weights into the fp32 master slab, fresh
 * optimizer, schedule at step 0), {@code --resume} (newest committed step: slabs, trainer state, loader position)
 * and the step-boundary hook that saves every checkpoint.every_steps, at the last step and when a stop is
 * requested (SIGTERM/SIGINT, --stop-at-step). Saves go through {@link Checkpointer} (async by default).
 *
 * <p>Tensor and data parallelism (ranks as threads of this process, {@link #parallelRanks}): one instance serves
 * every rank. At each step boundary the ranks meet at a barrier where the save/stop decision is taken once; each
 * rank then copies its own part into the host buffers from its own thread (tensor-parallel rank t's weights from
 * data-parallel rank 0; the AdamW moments from every data-parallel rank's ZeRO-1 shard, which assembles the full
 * moments of each tensor-parallel rank), and after a second barrier one save writes one file pair per
 * tensor-parallel rank. The files are the same as a ZeRO-1-off run's, so a run at the same tp x dp layout resumes
 * from them, each rank taking its own shard. Multi-process runs need a cross-process commit (not implemented).
 */
public final class TrainingCheckpoints implements StepListener, AutoCloseable {
    private final Path runDir;
    private final RunConfig cfg;
    private final Checkpointer checkpointer;
    private final GracefulStop stop;          // may be null
    private final long stopAtStep;            // 0: none
    private JsonNode hfConfig;
    private String initFrom;
    private long tokensSeenBefore;
    private long lastSaved = -1;
    // parallel ranks (null barrier: one rank, the StepListener path)
    private CyclicBarrier barrier;
    private List<ParamLayout> tpLayouts;
    private Duration timeout;
    private volatile boolean broken;
    private volatile long agreedStep;
    private volatile boolean saveNow, stopNow;
    private volatile List<CheckpointStore.RankState> buffers;
    private volatile TrainState leadState;
    private volatile RuntimeException failure;

    public TrainingCheckpoints(Path runDir, RunConfig cfg, GracefulStop stop, long stopAtStep) {
        this.runDir = runDir;
        this.cfg = cfg;
        this.stop = stop;
        this.stopAtStep = stopAtStep;
        this.tokensSeenBefore = cfg.checkpoint().tokensSeenBefore();
        this.checkpointer = new Checkpointer(CheckpointStore.forRun(runDir), cfg.checkpoint());
    }

    // ---------------------------------------------------------------------------------------------- resume

    /** The newest committed step of {@code runDir}, opened and verified (SHA-256 of every file). */
    public static StepCheckpoint openNewest(Path runDir) {
        if (!Files.isDirectory(runDir)) throw new UserError("--resume " + runDir + ": not a directory");
        Path step = CheckpointStore.forRun(runDir).newestCommitted()
                .orElseThrow(() -> new UserError("--resume " + runDir + ": no committed checkpoint in " + runDir.resolve("checkpoints")));
        return StepCheckpoint.open(step, true);
    }

    /** The config of a resumed run: {@code configFile} when given, else the checkpoint's; then the overrides. */
    public static RunConfig resumeConfig(StepCheckpoint from, Path configFile, List<String> overrides) {
        if (configFile != null) return ConfigLoader.load(configFile, overrides);
        try {
            JsonNode tree = ConfigLoader.YAML.readTree(from.state().configYaml());
            Path where = from.dir().resolve(CheckpointStore.STATE);
            for (String o : overrides) ConfigLoader.applyOverride(tree, o, where);
            return ConfigLoader.fromTree(tree, where + " (config_yaml)");
        } catch (JsonProcessingException e) {
            throw new UserError(from.dir().resolve(CheckpointStore.STATE) + ": config_yaml is not valid YAML");
        }
    }

    /** Drops metrics lines of steps after {@code step} (logged before a crash, about to be redone); atomic rewrite. */
    public static void truncateMetrics(Path metrics, long step) {
        if (!Files.exists(metrics)) return;
        try {
            List<String> keep = new ArrayList<>();
            for (String line : Files.readAllLines(metrics)) {
                JsonNode n;
                try { n = ConfigLoader.JSON.readTree(line); } catch (JsonProcessingException e) { continue; }   // a torn last line
                if (n != null && n.path("step").asLong(Long.MAX_VALUE) <= step) keep.add(line);
            }
            AtomicFiles.writeString(metrics, keep.isEmpty() ? "" : String.join("\n", keep) + "\n");
        } catch (IOException e) {
            throw new UserError(metrics + ": cannot rewrite: " + e.getMessage(), 1, e);
        }
    }

    /**
     * Restores {@code from} into the model's slabs and the trainer (step, tokens, loader position, seed). The
     * config must have passed {@link ResumeCheck#compare} (the slabs are loaded with the run's layout).
     */
    public synchronized void resume(StepCheckpoint from, Trainer trainer) {
        Llama model = trainer.model();
        ParamLayout layout = model.layout();
        TrainerState st = from.state();
        Llama.Slabs s = model.slabs();
        try (HostFloats p = HostFloats.allocate(layout.numel()); HostFloats m = HostFloats.allocate(layout.numel());
             HostFloats v = HostFloats.allocate(layout.numel())) {
            from.loadParams(layout, p);
            from.loadOptimizer(layout, m, v);
            Backend be = model.backend();
            be.copyHostToDevice(s.params(), p.address(), 4 * layout.numel());
            OptimizerShard sh = s.shard();                       // ZeRO-1: this rank's window of the full moments
            be.copyHostToDevice(s.m(), m.address() + 4 * sh.start(), 4 * sh.count());
            be.copyHostToDevice(s.v(), v.address() + 4 * sh.start(), 4 * sh.count());
            model.syncComputeCopy();
        }
        TrainState saved = new TrainState(st.rngState() != null && st.rngState().has("seed") ? st.rngState().get("seed").asLong() : cfg.train().seed());
        saved.step = st.step();
        saved.skippedSteps = st.skippedSteps();
        saved.tokensTrained = st.tokensTrained();
        saved.tokensPerSource.putAll(st.tokensPerSource());
        saved.loaderState = st.loaderState() == null || st.loaderState().isNull() ? null : st.loaderState();
        trainer.resume(saved);
        hfConfig = st.hfConfig() == null || st.hfConfig().isNull() ? null : st.hfConfig();
        initFrom = st.initFrom();
        tokensSeenBefore = st.tokensSeenBefore();
        lastSaved = st.step();
    }

    // ---------------------------------------------------------------------------------------------- init

    /** Loads a Hugging Face checkpoint into the master weights (optimizer state stays zero, schedule at step 0). */
    public synchronized void initFrom(Path hfDir, Llama model) {
        try (HfCheckpoint hf = HfCheckpoint.open(hfDir)) {
            hf.validate(cfg.model());
            ParamLayout layout = model.layout();
            try (HostFloats p = HostFloats.allocate(layout.numel())) {
                hf.loadInto(layout, p);
                model.backend().copyHostToDevice(model.slabs().params(), p.address(), 4 * layout.numel());
                model.syncComputeCopy();
            }
            hfConfig = hf.config();
            initFrom = hfDir.toAbsolutePath().toString();
        }
    }

    public long tokensSeenBefore() { return tokensSeenBefore; }

    // ---------------------------------------------------------------------------------------------- saving

    /** Whether the run should stop after {@code step} (a signal, or --stop-at-step reached). */
    public boolean stopRequested(long step) {
        return (stop != null && stop.requested()) || (stopAtStep > 0 && step >= stopAtStep);
    }

    @Override
    public void onStepEnd(Trainer t) {
        long step = t.state().step;
        if (checkpointer.due(step) || step >= cfg.train().steps() || stopRequested(step)) save(t);
    }

    /** Turns saving off for this run (benchmarks, smoke tests): no step is ever written, not even at a stop. */
    public void disableSaving() { savingDisabled = true; }

    private volatile boolean savingDisabled;

    /** Saves the trainer's current step (no-op when it is the step last saved or resumed from, or saving is off). */
    public void save(Trainer t) {
        TrainState s = t.state();
        if (s.step == lastSaved || savingDisabled) return;
        Llama model = t.model();
        Llama.Slabs slabs = model.slabs();
        Backend be = model.backend();
        long bytes = 4 * slabs.numel();
        if (slabs.shard().count() != slabs.numel()) throw new IllegalStateException("a ZeRO-1 shard saves through parallelRanks");
        TrainerState st = trainerState(s);
        checkpointer.save(st, List.of(model.layout()), (layout, p, m, v) -> {
            be.synchronize();
            be.copyDeviceToHost(p.address(), slabs.params(), bytes);
            be.copyDeviceToHost(m.address(), slabs.m(), bytes);
            be.copyDeviceToHost(v.address(), slabs.v(), bytes);
            be.synchronize();
        });
        lastSaved = s.step;
    }

    private TrainerState trainerState(TrainState s) {
        return new TrainerState(TrainerState.FORMAT, s.step, s.tokensTrained, tokensSeenBefore, s.tokensPerSource, s.skippedSteps,
                s.loaderState, JsonNodeFactory.instance.objectNode().put("seed", s.seed),
                s.step >= 1 ? LrSchedule.of(cfg.optimizer(), cfg.train().steps()).at(s.step) : 0.0,
                ConfigLoader.toYaml(cfg), engineVersion(), cfg.parallel().tp(), cfg.parallel().dp(), hfConfig, initFrom);
    }

    // ---------------------------------------------------------------------------------- parallel ranks (threads)

    /**
     * Serves {@code localRanks} rank threads (all tp x dp ranks of the run, in this process) instead of one
     * trainer. {@code tpLayouts}: the layout of every tensor-parallel rank, in rank order.
     */
    public void parallelRanks(int localRanks, List<ParamLayout> tpLayouts, Duration timeout) {
        if (localRanks != cfg.parallel().worldSize())
            throw new UserError("checkpoints of a multi-process run are not supported yet: this process runs " + localRanks
                    + " of " + cfg.parallel().worldSize() + " ranks (set checkpoint.every_steps=0)", 2, null);
        this.tpLayouts = List.copyOf(tpLayouts);
        this.timeout = timeout;
        this.barrier = new CyclicBarrier(localRanks);
    }

    /** The step-boundary hook of one rank (replaces this object as the trainer's listener under parallelism). */
    public StepListener rankListener(int tpRank, int dpRank) {
        return t -> parallelStepEnd(t, tpRank, dpRank);
    }

    /** The stop decision of the last step boundary, identical on every rank (a signal is read once, at the barrier). */
    public boolean stopDecided() { return stopNow; }

    /** Breaks the barrier so the other ranks stop waiting (a rank failed). */
    public void abort() {
        broken = true;
        if (barrier != null) barrier.reset();
    }

    private void parallelStepEnd(Trainer t, int tpRank, int dpRank) {
        TrainState s = t.state();
        if (tpRank == 0 && dpRank == 0) { agreedStep = s.step; leadState = s; }
        await(() -> {                                   // decide once, for every rank
            saveNow = !savingDisabled && agreedStep != lastSaved && (checkpointer.due(agreedStep) || agreedStep >= cfg.train().steps() || stopRequested(agreedStep));
            stopNow = stopRequested(agreedStep);
            buffers = saveNow ? checkpointer.beginSave(tpLayouts) : null;
        });
        if (s.step != agreedStep) throw new IllegalStateException("rank at step " + s.step + ", rank 0 at step " + agreedStep);
        if (saveNow) {
            Llama model = t.model();
            Llama.Slabs sl = model.slabs();
            Backend be = model.backend();
            CheckpointStore.RankState r = buffers.get(tpRank);
            OptimizerShard sh = sl.shard();
            be.synchronize();
            if (dpRank == 0) be.copyDeviceToHost(r.params().address(), sl.params(), 4 * sl.numel());
            if (sh.count() != sl.numel() || dpRank == 0) {      // ZeRO-1: every dp rank holds a window of the moments
                be.copyDeviceToHost(r.m().address() + 4 * sh.start(), sl.m(), 4 * sh.count());
                be.copyDeviceToHost(r.v().address() + 4 * sh.start(), sl.v(), 4 * sh.count());
            }
            be.synchronize();
        }
        await(() -> {
            if (saveNow) {
                checkpointer.finishSave(trainerState(leadState), buffers);
                lastSaved = agreedStep;
            }
        });
    }

    /** Barrier of the rank threads; {@code action} runs once (in the last thread to arrive), its failure reaches all. */
    private void await(Runnable action) {
        if (broken) throw new ParallelException("checkpoint barrier broken: another rank failed");
        try {
            int arrival = barrier.await(timeout.toMillis(), TimeUnit.MILLISECONDS);
            if (arrival == 0) {
                try {
                    failure = null;
                    action.run();
                } catch (RuntimeException e) {
                    failure = e;
                }
            }
            barrier.await(timeout.toMillis(), TimeUnit.MILLISECONDS);      // the action's results are visible to all
        } catch (TimeoutException e) {
            broken = true;
            barrier.reset();
            throw new ParallelException("checkpoint barrier: not every rank arrived within " + timeout.toSeconds() + " s");
        } catch (BrokenBarrierException e) {
            throw new ParallelException("checkpoint barrier broken: another rank failed or timed out");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ParallelException("interrupted at the checkpoint barrier");
        }
        RuntimeException f = failure;
        if (f != null) throw f;
    }

    /** Waits for the last save; throws if it failed. */
    @Override
    public void close() { checkpointer.close(); }

    public Path lastSavedDir() { return checkpointer.lastSaved(); }

    static String engineVersion() {
        String v = TrainingCheckpoints.class.getPackage().getImplementationVersion();
        return v != null ? v : "0.1.0";
    }
}
