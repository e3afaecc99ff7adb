package dev.midtrain.ckpt;

import dev.midtrain.train.GracefulStop;
import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.AtomicFiles;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
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
 * requested (SIGTERM/SIGINT, --stop-at-step). Saves go through {@link AsyncSaver} (async by default).
 *
 * <p>Tensor and data parallelism ({@link #parallelRanks}): one instance serves the ranks of this process (threads).
 * At each step boundary they meet at a barrier where the save/stop decision is taken once (every process takes the
 * same one: the step is the same everywhere, and the stop decision is the run's); each rank then copies its
 * data-parallel window of the master weights and AdamW moments into the host buffers from its own thread, and after
 * a second barrier this process writes one file pair per local rank. With several processes the save is one part
 * of a two-phase commit ({@link StepDirectories#savePart}): process 0 publishes the step once every process's part
 * is on disk. A resume may use another layout: each rank reads (and reshards) what it needs
 * ({@link CommittedStep#loadRank}).
 */
public final class RunCheckpointing implements StepListener, AutoCloseable {
    private final Path runDir;
    private final RunConfig cfg;
    private final AsyncSaver checkpointer;
    private final GracefulStop stop;          // may be null
    private final long stopAtStep;            // 0: none
    private JsonNode hfConfig;
    private String initFrom;
    private long lastSaved = -1;
    // parallel ranks (null barrier: one rank, the StepListener path)
    private CyclicBarrier barrier;
    private List<AsyncSaver.Slot> slots;    // this process's ranks, by local index
    private int firstRank;
    private Duration timeout;
    private volatile boolean broken;
    private volatile long agreedStep;
    private volatile boolean saveNow, leadStopping;
    private volatile List<StepDirectories.RankState> buffers;
    private volatile TrainState leadState;
    private volatile RuntimeException failure;

    public RunCheckpointing(Path runDir, RunConfig cfg, GracefulStop stop, long stopAtStep) {
        this.runDir = runDir;
        this.cfg = cfg;
        this.stop = stop;
        this.stopAtStep = stopAtStep;
        this.checkpointer = new AsyncSaver(StepDirectories.forRun(runDir), cfg.checkpoint());
    }

    // ---------------------------------------------------------------------------------------------- resume

    /** The newest committed step of {@code runDir}, opened and verified (SHA-256 of every file). */
    public static CommittedStep openNewest(Path runDir) {
        if (!Files.isDirectory(runDir)) throw new UserError("--resume " + runDir + ": not a directory");
        Path step = StepDirectories.forRun(runDir).newestCommitted()
                .orElseThrow(() -> new UserError("--resume " + runDir + ": no committed checkpoint in " + runDir.resolve("checkpoints")));
        return CommittedStep.openForRanks(step);
    }

    /** The config of a resumed run: {@code configFile} when given, else the checkpoint's; then the overrides. */
    public static RunConfig resumeConfig(CommittedStep from, Path configFile, List<String> overrides) {
        if (configFile != null) return ConfigLoader.load(configFile, overrides);
        try {
            JsonNode tree = ConfigLoader.YAML.readTree(from.stateFile().configYaml());
            Path where = from.dir().resolve(StepDirectories.STATE);
            for (String o : overrides) ConfigLoader.applyOverride(tree, o, where);
            return ConfigLoader.fromTree(tree, where + " (config_yaml)");
        } catch (JsonProcessingException e) {
            throw new UserError(from.dir().resolve(StepDirectories.STATE) + ": config_yaml is not valid YAML");
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
     * config must have passed {@link ResumeCheck#compare}. The checkpoint may have another tp x pp x dp layout: the rank
     * reads its slice of every tensor of its stage, from whichever saved stage holds it, and the moments of its
     * optimizer window ({@link CommittedStep#loadRank}); the
     * loader position is a global batch index, the same for every data-parallel degree.
     */
    public synchronized void resume(CommittedStep from, Trainer trainer) {
        Llama model = trainer.model();
        ParamLayout layout = model.layout();
        StateFile st = from.stateFile();
        Llama.Slabs s = model.slabs();
        OptimizerShard sh = s.shard();                           // ZeRO-1: this rank's window of the moments
        try (HostFloats p = HostFloats.allocate(layout.numel()); HostFloats m = HostFloats.allocate(Math.max(1, sh.count()));
             HostFloats v = HostFloats.allocate(Math.max(1, sh.count()))) {
            from.loadRank(layout, sh, p, m, v);
            Backend be = model.backend();
            model.setMasterWeights(p.address());                // a sharded master keeps its shard; compute copy in full
            if (sh.count() > 0) {
                be.copyHostToDevice(s.m(), m.address(), 4 * sh.count());
                be.copyHostToDevice(s.v(), v.address(), 4 * sh.count());
            }
        }
        trainer.resume(st.state());
        hfConfig = st.hfConfig();
        initFrom = st.initFrom();
        lastSaved = st.state().step;
    }

    // ---------------------------------------------------------------------------------------------- init

    /**
     * Loads a checkpoint ({@link ModelSource}: Hugging Face, step or run directory) into the master weights, sliced for
     * the model's tensor-parallel rank (optimizer state stays zero, schedule at step 0). The run keeps the source's
     * config.json (a step: the one its own lineage started from) for export.
     */
    public synchronized void initFrom(Path source, Llama model) {
        ModelSource src = ModelSource.open(source);
        src.requireMatches(cfg.model());
        ParamLayout layout = model.layout();
        try (HostFloats p = HostFloats.allocate(layout.numel())) {
            src.loadInto(layout, p);
            model.setMasterWeights(p.address());
        }
        hfConfig = src.hfConfig();
        initFrom = src.dir().toAbsolutePath().toString();
    }

    // ---------------------------------------------------------------------------------------------- saving

    /** Whether this process wants to stop after {@code step} (a signal, or --stop-at-step reached): the trainer's vote input. */
    public boolean stopRequested(long step) {
        return (stop != null && stop.requested()) || (stopAtStep > 0 && step >= stopAtStep);
    }

    @Override
    public void onStepEnd(Trainer t) {
        long step = t.state().step;
        if (t.lastStepSkipped()) return;                // a skipped step's weights are the previous step's: nothing new to save
        if (checkpointer.due(step) || step >= cfg.train().steps() || t.stopping()) save(t);
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
        checkpointer.save(stateFile(s), List.of(model.layout()), (layout, p, m, v) -> {
            be.synchronize();
            be.copyDeviceToHost(p.address(), slabs.params(), bytes);
            be.copyDeviceToHost(m.address(), slabs.m(), bytes);
            be.copyDeviceToHost(v.address(), slabs.v(), bytes);
            be.synchronize();
        });
        lastSaved = s.step;
    }

    private StateFile stateFile(TrainState s) {
        return new StateFile(s, s.step >= 1 ? LrSchedule.of(cfg.optimizer(), cfg.train().steps()).at(s.step) : 0.0,
                ConfigLoader.toYaml(cfg), engineVersion(), cfg.parallel().tp(), cfg.parallel().dp(), hfConfig, initFrom);
    }

    // ---------------------------------------------------------------------------------- parallel ranks (threads)

    /**
     * Serves this process's rank threads instead of one trainer: global ranks [firstRank, firstRank + localRanks)
     * of the run's tp x dp x pp, in process {@code process} of {@code processes}. {@code tpLayouts}: the layout of
     * every (tensor-parallel rank, pipeline stage), index ppRank * tp + tpRank; each writes one file set per
     * data-parallel window of its stage's slab. {@code timeout} bounds the local barriers and, with several processes,
     * how long process 0 waits for the others' parts of a save. Process 0 of several removes uncommitted leftovers
     * of earlier runs now, before any process can start writing.
     */
    public void parallelRanks(int firstRank, int localRanks, int process, int processes, List<ParamLayout> tpLayouts, Duration timeout) {
        int tp = cfg.parallel().tp(), dp = cfg.parallel().dp(), pp = cfg.parallel().pp();
        if (tpLayouts.size() != tp * pp || (long) localRanks * processes != (long) tp * dp * pp)
            throw new IllegalArgumentException(processes + " processes x " + localRanks + " ranks for tp " + tp + " x dp " + dp + " x pp " + pp);
        List<AsyncSaver.Slot> sl = new ArrayList<>();
        for (int r = firstRank; r < firstRank + localRanks; r++) {      // rank = (ppRank * dp + dpRank) * tp + tpRank
            int tpRank = r % tp, dpRank = r / tp % dp, ppRank = r / (tp * dp);
            sl.add(new AsyncSaver.Slot(tpLayouts.get(ppRank * tp + tpRank), ppRank, pp, dpRank, dp));
        }
        this.slots = List.copyOf(sl);
        this.firstRank = firstRank;
        this.timeout = timeout;
        this.barrier = new CyclicBarrier(localRanks);
        if (processes > 1) {
            checkpointer.setPart(new StepDirectories.Part(process, processes, timeout));
            if (process == 0) {
                try {
                    checkpointer.store().removeUncommitted();
                } catch (IOException e) {
                    throw new UserError(checkpointer.store().dir() + ": cannot remove an interrupted save: " + e.getMessage(), 1, e);
                }
            }
        }
    }

    /** The step-boundary hook of one rank (replaces this object as the trainer's listener under parallelism). */
    public StepListener rankListener(int tpRank, int dpRank) { return rankListener(tpRank, dpRank, 0); }

    /** The step-boundary hook of rank (tpRank, dpRank) of pipeline stage {@code ppRank}. */
    public StepListener rankListener(int tpRank, int dpRank, int ppRank) {
        if (savingDisabled) return t -> {};           // nothing to save: the stop is agreed by the trainer's vote
        int local = (ppRank * cfg.parallel().dp() + dpRank) * cfg.parallel().tp() + tpRank - firstRank;
        if (slots == null || local < 0 || local >= slots.size())
            throw new IllegalArgumentException("rank tp " + tpRank + " dp " + dpRank + " pp " + ppRank + " is not in this process");
        return t -> parallelStepEnd(t, local);
    }

    /** Breaks the barrier so the other ranks stop waiting (a rank failed). */
    public void abort() {
        broken = true;
        if (barrier != null) barrier.reset();
    }

    private volatile boolean leadSkipped;

    private void parallelStepEnd(Trainer t, int local) {
        TrainState s = t.state();
        if (local == 0) { agreedStep = s.step; leadState = s; leadStopping = t.stopping(); leadSkipped = t.lastStepSkipped(); }
        await(() -> {                                   // decide once, for every rank (a skipped step saves nothing)
            saveNow = !savingDisabled && !leadSkipped && agreedStep != lastSaved && (checkpointer.due(agreedStep) || agreedStep >= cfg.train().steps() || leadStopping);
            buffers = saveNow ? checkpointer.beginSave(slots) : null;
        });
        if (s.step != agreedStep) throw new IllegalStateException("rank at step " + s.step + ", local rank 0 at step " + agreedStep);
        if (saveNow) {                                  // every rank writes its data-parallel window of its tp rank's slab
            Llama model = t.model();
            Llama.Slabs sl = model.slabs();
            Backend be = model.backend();
            StepDirectories.RankState r = buffers.get(local);
            OptimizerShard sh = sl.shard(), w = r.window();
            if (w.start() < sh.start() || w.start() + w.count() > sh.start() + sh.count())
                throw new IllegalStateException("checkpoint window " + w + " outside the optimizer shard " + sh);
            be.synchronize();
            if (w.count() > 0) {
                be.copyDeviceToHost(r.params().address(), sl.params() + 4 * w.start(), 4 * w.count());
                be.copyDeviceToHost(r.m().address(), sl.m() + 4 * (w.start() - sh.start()), 4 * w.count());
                be.copyDeviceToHost(r.v().address(), sl.v() + 4 * (w.start() - sh.start()), 4 * w.count());
            }
            be.synchronize();
        }
        await(() -> {
            if (saveNow) {
                checkpointer.finishSave(stateFile(leadState), buffers);
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

    /** Waits for the last save; throws if it failed. After {@link #abort} it does not wait: the save in flight is abandoned. */
    @Override
    public void close() {
        if (broken) checkpointer.abandon();      // a rank failed: the run exits non-zero; an unfinished save stays unpublished
        else checkpointer.close();
    }

    public Path lastSavedDir() { return checkpointer.lastSaved(); }

    static String engineVersion() {
        String v = RunCheckpointing.class.getPackage().getImplementationVersion();
        return v != null ? v : "0.1.0";
    }
}
