package dev.midtrain.ckpt;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import dev.midtrain.cli.UserError;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.RunConfig;
import dev.midtrain.kernels.Backend;
import dev.midtrain.model.Llama;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.optim.LrSchedule;
import dev.midtrain.train.StepListener;
import dev.midtrain.train.TrainState;
import dev.midtrain.train.Trainer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Checkpointing of one training run: {@code --init-from} (Hugging Face weights into the fp32 master slab, fresh
 * optimizer, schedule at step 0), {@code --resume} (newest committed step: slabs, trainer state, loader position)
 * and the step-boundary hook that saves every checkpoint.every_steps, at the last step and when a stop is
 * requested (SIGTERM/SIGINT, --stop-at-step). Saves go through {@link Checkpointer} (async by default).
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
    public void resume(StepCheckpoint from, Trainer trainer) {
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
            be.copyHostToDevice(s.m(), m.address(), 4 * layout.numel());
            be.copyHostToDevice(s.v(), v.address(), 4 * layout.numel());
            model.syncComputeCopy();
        }
        TrainState saved = new TrainState(st.rngState() != null && st.rngState().has("seed") ? st.rngState().get("seed").asLong() : cfg.train().seed());
        saved.step = st.step();
        saved.skippedSteps = st.skippedSteps();
        saved.tokensSeen = st.tokensTrained();
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
    public void initFrom(Path hfDir, Llama model) {
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

    /** Saves the trainer's current step (no-op when it is the step last saved or resumed from). */
    public void save(Trainer t) {
        TrainState s = t.state();
        if (s.step == lastSaved) return;
        Llama model = t.model();
        Llama.Slabs slabs = model.slabs();
        Backend be = model.backend();
        long bytes = 4 * slabs.numel();
        TrainerState st = new TrainerState(TrainerState.FORMAT, s.step, s.tokensSeen, tokensSeenBefore, s.tokensPerSource, s.skippedSteps,
                s.loaderState, JsonNodeFactory.instance.objectNode().put("seed", s.seed),
                s.step >= 1 ? LrSchedule.of(cfg.optimizer(), cfg.train().steps()).at(s.step) : 0.0,
                ConfigLoader.toYaml(cfg), engineVersion(), cfg.parallel().tp(), cfg.parallel().dp(), hfConfig, initFrom);
        checkpointer.save(st, List.of(model.layout()), (layout, p, m, v) -> {
            be.synchronize();
            be.copyDeviceToHost(p.address(), slabs.params(), bytes);
            be.copyDeviceToHost(m.address(), slabs.m(), bytes);
            be.copyDeviceToHost(v.address(), slabs.v(), bytes);
            be.synchronize();
        });
        lastSaved = s.step;
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
