package dev.midtrain.cli;

import dev.midtrain.bench.PeakFlops;
import dev.midtrain.ckpt.GracefulStop;
import dev.midtrain.ckpt.ResumeCheck;
import dev.midtrain.ckpt.StepCheckpoint;
import dev.midtrain.ckpt.TrainingCheckpoints;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.RunConfig;
import dev.midtrain.config.TrainConfig;
import dev.midtrain.data.BlendedLoader;
import dev.midtrain.data.MemoryBatches;
import dev.midtrain.data.TokenBatches;
import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.Llama;
import dev.midtrain.model.MemoryPlan;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.model.TpHooks;
import dev.midtrain.train.MetricsLog;
import dev.midtrain.train.TrainState;
import dev.midtrain.train.Trainer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * `midtrain train`: resolves the config (file + --set), prints it as a table and saves it as RUN_DIR/config.yaml,
 * builds the backend, the model (initialized from train.seed) and the data, and runs the trainer, which writes
 * RUN_DIR/metrics.jsonl and a progress line per log period.
 *
 * <p>MFU: against --peak-tflops when given; otherwise, on CPU, against the sgemm rate measured at startup (1024^3,
 * best of 10; printed), which is what the machine can actually reach with the same OpenBLAS and thread count.
 */
@Command(name = "train", mixinStandardHelpOptions = true, description = "Train (mid-train) a Llama-3 model.")
public final class TrainCommand implements Callable<Integer> {
    @Option(names = "--config", description = "run config (YAML); with --resume the checkpoint's config is the default") Path config;
    @Option(names = "--set", description = "override a config field, e.g. --set optimizer.lr=3e-4") List<String> overrides = List.of();
    @Option(names = "--run-dir", description = "run directory (default: runs/<config name>-<timestamp>)") Path runDir;
    @Option(names = "--peak-tflops", description = "peak TFLOP/s for MFU (default on CPU: measured sgemm rate)") Double peakTflops;
    @Option(names = "--synthetic-data", description = "train on a synthetic Markov token stream instead of data.sources")
    boolean synthetic;
    @Option(names = "--init-from", description = "start from this Hugging Face Llama checkpoint directory (config.json + safetensors)")
    Path initFrom;
    @Option(names = "--resume", description = "continue the run in this run directory from its newest committed checkpoint")
    Path resume;
    @Option(names = "--stop-at-step", description = "save a checkpoint and exit after this step (a time-limited job's last step)")
    long stopAtStep;

    @Override
    public Integer call() {
        if (resume != null && initFrom != null) throw new UserError("--resume and --init-from: choose one (a resumed run keeps its weights)");
        if (config == null && resume == null) throw new UserError("--config is required (or --resume RUN_DIR)");
        if (stopAtStep < 0) throw new UserError("--stop-at-step: must be >= 1, got " + stopAtStep);
        StepCheckpoint from = resume != null ? TrainingCheckpoints.openNewest(resume) : null;
        try {
            return train(from);
        } finally {
            if (from != null) from.close();
        }
    }

    private int train(StepCheckpoint from) {
        RunConfig cfg = from != null ? TrainingCheckpoints.resumeConfig(from, config, overrides) : ConfigLoader.load(config, overrides);
        if (cfg.train() == null) throw new UserError(config + ": section train is required for midtrain train");
        List<String> changes = from != null ? ResumeCheck.compare(from.config(), cfg, from.dir()) : List.of();
        TrainConfig tc = cfg.train();
        if (cfg.parallel().tp() != 1 || cfg.parallel().dp() != 1)
            throw new UserError("parallel: tp and dp must be 1 in this build (got tp " + cfg.parallel().tp() + ", dp " + cfg.parallel().dp() + ")");
        if (tc.backend().equals("cuda"))
            throw new UserError("train.backend: cuda is not available in this build (use train.backend=cpu)");
        if (peakTflops != null && !(peakTflops > 0)) throw new UserError("--peak-tflops: must be > 0, got " + peakTflops);

        if (resume != null && runDir != null && !runDir.toAbsolutePath().normalize().equals(resume.toAbsolutePath().normalize()))
            throw new UserError("--run-dir: a resumed run stays in its directory " + resume);
        Path dir = resume != null ? resume
                : runDir != null ? runDir : Path.of("runs", baseName(config) + "-" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
        if (from != null) TrainingCheckpoints.truncateMetrics(dir.resolve("metrics.jsonl"), from.state().step());
        else createRunDir(dir);
        writeAtomically(dir.resolve("config.yaml"), ConfigLoader.toYaml(cfg));
        printConfig(cfg, dir);

        int threads = tc.threads() > 0 ? tc.threads() : Runtime.getRuntime().availableProcessors();
        CpuBackend.setThreads(threads);
        try (Backend be = new CpuBackend();
             TokenBatches data = openData(cfg);
             Llama model = new Llama(be, ParamLayout.of(cfg.model(), 1, 0, cfg.optimizer().weightDecayExclude()),
                     tc.microBatchSeqs(), tc.seqLen(), tc.recompute(), TpHooks.NONE)) {
            model.initialize(tc.seed(), tc.initStd());
            double peak = peakTflops != null ? peakTflops * 1e12 : PeakFlops.gemm(be, 1024, 10);
            MemoryPlan plan = MemoryPlan.of(cfg.model(), tc.microBatchSeqs(), tc.seqLen(), 1, 1, false, be.floatxBytes());
            System.out.printf("model: %,d parameters, %.3g FLOPs/token | %d threads | memory %s | MFU peak %.1f GFLOP/s (%s)%n",
                    cfg.model().paramCount(), cfg.model().flopsPerToken(tc.seqLen()), threads,
                    MemoryPlan.gib(plan.totalBytes(tc.recompute())), peak / 1e9,
                    peakTflops != null ? "--peak-tflops" : "measured sgemm 1024^3");
            try (MetricsLog metrics = new MetricsLog(System.out, dir.resolve("metrics.jsonl"), tc.logEverySteps(), tc.steps(),
                    cfg.model().flopsPerToken(tc.seqLen()), peak);
                 GracefulStop stop = GracefulStop.install();
                 TrainingCheckpoints ckpt = new TrainingCheckpoints(dir, cfg, stop, stopAtStep)) {
                Trainer trainer = new Trainer(cfg, model, data, new TrainState(tc.seed()), metrics);
                if (initFrom != null) {
                    ckpt.initFrom(initFrom, model);
                    System.out.printf("initialized from %s (optimizer state fresh, schedule at step 0; %,d tokens seen before, checkpoint.tokens_seen_before)%n",
                            initFrom, ckpt.tokensSeenBefore());
                }
                if (from != null) {
                    ckpt.resume(from, trainer);
                    System.out.printf("resumed from %s: step %d, %,d tokens trained (+%,d seen before)%n",
                            from.dir(), from.state().step(), from.state().tokensTrained(), from.state().tokensSeenBefore());
                    for (String c : changes) System.out.println("  config changed since the checkpoint: " + c);
                }
                trainer.addListener(ckpt);
                trainer.stopWhen(() -> ckpt.stopRequested(trainer.state().step));
                long t0 = System.nanoTime();
                TrainState s = trainer.run();
                ckpt.save(trainer);                                             // a stop that arrived after the step's hook
                ckpt.close();                                                   // waits for the last save; throws if it failed
                if (s.step < tc.steps())
                    System.out.printf("stopped at step %d (%s); checkpoint %s; continue with: midtrain train --resume %s%n", s.step,
                            stop.requested() ? stop.reason() : "--stop-at-step", ckpt.lastSavedDir(), dir);
                System.out.printf("done: %d steps (%d skipped), %,d tokens in %.1f s; run directory %s%n",
                        s.step, s.skippedSteps, s.tokensSeen, (System.nanoTime() - t0) / 1e9, dir);
            }
        }
        return 0;
    }

    /** The batches: a synthetic stream when asked for; the Arrow blended loader otherwise. */
    private TokenBatches openData(RunConfig cfg) {
        TrainConfig tc = cfg.train();
        if (synthetic) {
            int validTokens = Math.max(1, tc.evalBatches()) * tc.microBatchSeqs() * tc.seqLen() + 1;
            long wanted = tc.tokensPerStep() * tc.steps() + validTokens + 1;
            int length = (int) Math.min(wanted, 1 << 24);                       // wraps around beyond 16M tokens
            length = Math.max(length, validTokens + tc.seqLen() + 1);
            int[] stream = MemoryBatches.markovStream(cfg.model().vocabSize(), length, 4, tc.seed());
            System.out.printf("data: synthetic Markov stream, %,d tokens, vocabulary %d, 4 successors per token (best loss ln 4 = %.3f)%n",
                    length, cfg.model().vocabSize(), Math.log(4));
            return new MemoryBatches(stream, validTokens, tc.microBatchSeqs(), tc.seqLen(), "synthetic");
        }
        if (cfg.data() == null) throw new UserError(config + ": section data is required (or pass --synthetic-data)");
        BlendedLoader loader = BlendedLoader.open(cfg.data(), tc.seqLen(), tc.microBatchSeqs(), tc.globalBatchSeqs(), tc.seed(), 0, 1);
        try {
            loader.checkVocab(cfg.model().vocabSize());
        } catch (RuntimeException e) {
            loader.close();
            throw e;
        }
        System.out.println("data: " + loader.describe());
        return loader;
    }

    private static void printConfig(RunConfig cfg, Path dir) {
        Map<String, String> rows = ConfigLoader.flatten(cfg);
        int w = rows.keySet().stream().mapToInt(String::length).max().orElse(10);
        String line = "+" + "-".repeat(w + 2) + "+" + "-".repeat(42) + "+";
        System.out.println(line);
        System.out.printf("| %-" + w + "s | %-40s |%n", "parameter", "value");
        System.out.println(line);
        rows.forEach((k, v) -> System.out.printf("| %-" + w + "s | %-40s |%n", k, v.length() > 40 ? v.substring(0, 37) + "..." : v));
        System.out.println(line);
        System.out.println("run directory: " + dir);
    }

    private static String baseName(Path config) {
        String n = config.getFileName().toString();
        int dot = n.lastIndexOf('.');
        return dot > 0 ? n.substring(0, dot) : n;
    }

    private static void createRunDir(Path dir) {
        try {
            Files.createDirectories(dir);
            if (Files.exists(dir.resolve("metrics.jsonl")))
                throw new UserError("--run-dir " + dir + ": already holds a run (metrics.jsonl); choose another directory");
        } catch (IOException e) {
            throw new UserError("--run-dir " + dir + ": cannot create: " + e.getMessage());
        }
    }

    /** temp file + fsync + rename. */
    static void writeAtomically(Path file, String text) {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
                ch.write(StandardCharsets.UTF_8.encode(text));
                ch.force(true);
            }
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file, e);
        }
    }
}
