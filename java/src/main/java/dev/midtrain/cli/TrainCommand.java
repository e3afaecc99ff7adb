package dev.midtrain.cli;

import dev.midtrain.common.AtomicFiles;
import dev.midtrain.common.UserError;

import dev.midtrain.train.PeakFlops;
import dev.midtrain.train.GracefulStop;
import dev.midtrain.ckpt.HfCheckpoint;
import dev.midtrain.ckpt.ModelSource;
import dev.midtrain.ckpt.ResumeCheck;
import dev.midtrain.ckpt.CommittedStep;
import dev.midtrain.ckpt.RunCheckpointing;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.Placement;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.RunConfig;
import dev.midtrain.config.TrainConfig;
import dev.midtrain.data.BlendedLoader;
import dev.midtrain.data.MemoryBatches;
import dev.midtrain.data.SampleLog;
import dev.midtrain.data.ShardVerifier;
import dev.midtrain.data.TokenBatches;
import dev.midtrain.parallel.DpSliceBatches;
import dev.midtrain.parallel.LaunchEnv;
import dev.midtrain.parallel.Launcher;
import dev.midtrain.parallel.LauncherWatch;
import dev.midtrain.parallel.Parallelism;
import dev.midtrain.parallel.PipelineSchedule;
import dev.midtrain.parallel.ProcessGroups;
import dev.midtrain.parallel.TensorParallel;
import dev.midtrain.parallel.Topology;
import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.kernels.CudaBackend;
import dev.midtrain.model.Llama;
import dev.midtrain.model.MemoryPlan;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.train.MetricsLog;
import dev.midtrain.eval.TrainingEval;
import dev.midtrain.train.RunLock;
import dev.midtrain.train.TrainState;
import dev.midtrain.train.Trainer;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * `midtrain train`: resolves the config (file + --set), prints it as a table and saves it as RUN_DIR/config.yaml,
 * builds the backend, the model (initialized from train.seed) and the data, and runs the trainer, which writes
 * RUN_DIR/metrics.jsonl and a progress line per log period.
 *
 * <p>MFU: against --peak-tflops when given; otherwise against {@link PeakFlops}: a table peak (CPU: threads x clock x
 * SIMD FLOPs per cycle, or the measured sgemm when higher; CUDA: the datasheet bf16 peak of known devices, else the
 * measured cuBLAS GEMM). The start line says which, so MFU stays at or below 100% on a busy machine.
 *
 * <p>Parallelism (docs/parallel.md): tp x dp ranks, one thread per rank in this process (one per GPU; on CPU the
 * ranks share the cores: OpenBLAS gets train.threads / ranks threads each, and talk through the in-process
 * communicator). Several processes (one per node) come from --nnodes/--node-rank/--master-addr/--master-port,
 * torchrun-style or Slurm variables ({@link LaunchEnv}). Before allocating, the run is refused when the memory plan
 * exceeds the device memory (--memory-limit-gib; on CPU only when given), with what would fit.
 */
@Command(name = "train", mixinStandardHelpOptions = true, description = "Train (mid-train) a Llama-3 model.")
public final class TrainCommand implements Callable<Integer> {
    @Option(names = "--config", description = "run config (YAML); with --resume the checkpoint's config is the default") Path config;
    @Option(names = "--set", description = "override a config field, e.g. --set optimizer.lr=3e-4") List<String> overrides = List.of();
    @Option(names = "--run-dir", description = "run directory (default: runs/<config name>-<timestamp>)") Path runDir;
    @Option(names = "--peak-tflops", description = "peak TFLOP/s for MFU: of one GPU, or of the whole machine on CPU (default: a table peak, see the start line)")
    Double peakTflops;
    @Option(names = "--backend", description = "cpu or cuda (overrides train.backend); cuda without a usable GPU is an error") String backend;
    @Option(names = "--tp", description = "tensor-parallel degree (overrides parallel.tp)") Integer tp;
    @Option(names = "--dp", description = "data-parallel degree (overrides parallel.dp)") Integer dp;
    @Option(names = "--pp", description = "pipeline stages (overrides parallel.pp)") Integer pp;
    @Option(names = "--virtual-stages", description = "model chunks per pipeline rank: 1 = 1F1B, more = interleaved (overrides parallel.virtual_stages)")
    Integer virtualStages;
    @Option(names = "--memory-limit-gib", description = "device memory for the fit check (GiB per rank; on CPU no check unless given)")
    Double memoryLimitGib;
    @Option(names = "--synthetic-data", description = "train on a synthetic Markov token stream instead of data.sources") boolean synthetic;
    @Option(names = "--no-verify-data", description = "skip the SHA-256 check of the prepared shards at start (sizes, structure and token ranges are still checked)")
    boolean noVerifyData;
    @ArgGroup(validate = false, heading = "%nStart, checkpoints and stop (docs/checkpoints.md):%n") Checkpoints checkpoints = new Checkpoints();
    @ArgGroup(validate = false, heading = "%nSeveral processes, one per node (docs/parallel.md):%n") Processes processes = new Processes();

    /** Where the weights come from, whether and until when the run saves. */
    static final class Checkpoints {
        @Option(names = "--init-from", description = "start from this checkpoint: a Hugging Face Llama directory (config.json in the transformers 4 or 5 layout + safetensors), a step or a run directory")
        Path initFrom;
        @Option(names = "--resume", description = "continue the run in this run directory from its newest committed checkpoint")
        Path resume;
        @Option(names = "--no-checkpoints", description = "never save a checkpoint (benchmarks and smoke tests)")
        boolean noCheckpoints;
        @Option(names = "--stop-at-step", description = "save a checkpoint and exit after this step (a time-limited job's last step)")
        long stopAtStep;
    }

    /** This process's place in a multi-process run ({@link LaunchEnv.Flags}) and how long anyone waits for the others. */
    static final class Processes {
        @Option(names = "--nnodes", description = "processes (nodes) in a multi-node run, one JVM each") Integer nnodes;
        @Option(names = "--node-rank", description = "this process's index, 0..nnodes-1 (0 serves the rendezvous)") Integer nodeRank;
        @Option(names = "--master-addr", description = "host of node 0") String masterAddr;
        @Option(names = "--master-port", description = "TCP port of the rendezvous on node 0 (default " + LaunchEnv.DEFAULT_PORT + ")") Integer masterPort;
        @Option(names = "--dist-timeout", description = "seconds a rank waits for the others at a collective or the rendezvous (default 600)")
        int distTimeoutSeconds = 600;

        LaunchEnv.Flags flags() { return new LaunchEnv.Flags(nnodes, nodeRank, masterAddr, masterPort); }
    }

    private RunLock runLock;                  // process 0 holds the run directory's lock for the whole run
    private boolean createdRunDir;            // this invocation created the run directory
    private volatile boolean initFromFailed;  // loading --init-from failed on a rank: nothing was trained

    @Override
    public Integer call() {
        LauncherWatch.startIfLaunched(System.getenv(), System.in);            // under `midtrain launch`: stop if it dies
        Plan plan = null;
        try {
            Resolved run = resolveConfig();
            plan = plan(run);
            return launch(run, plan);
        } catch (RuntimeException | Error e) {
            // a --init-from that failed on a tensor leaves no half-made run directory to block the retry
            if (initFromFailed && createdRunDir && plan != null && plan.lead()) {
                if (runLock != null) { runLock.close(); runLock = null; }
                try { AtomicFiles.deleteTree(plan.dir()); } catch (IOException io) { e.addSuppressed(io); }
            }
            throw e;
        } finally {
            if (runLock != null) runLock.close();
        }
    }

    /** The run config (file, --set and flags; or the resumed checkpoint's) and the checkpoint it resumes from. */
    private record Resolved(RunConfig cfg, CommittedStep from, List<String> changes) {
        TrainConfig train() { return cfg.train(); }
        boolean gpu() { return cfg.train().backend() == TrainConfig.Device.CUDA; }
        int tp() { return cfg.parallel().tp(); }
        int dp() { return cfg.parallel().dp(); }
    }

    /** Where the ranks run, the run directory, the MFU denominator and the CPU threads of each rank. */
    private record Plan(LaunchEnv env, Launcher.Mode mode, boolean lead, Path dir, double peakFlops, int threadsPerRank) {}

    private Resolved resolveConfig() {
        Path resume = checkpoints.resume;
        if (resume != null && checkpoints.initFrom != null) throw new UserError("--resume and --init-from: choose one (a resumed run keeps its weights)");
        if (config == null && resume == null) throw new UserError("--config is required (or --resume RUN_DIR)");
        if (checkpoints.stopAtStep < 0) throw new UserError("--stop-at-step: must be >= 1, got " + checkpoints.stopAtStep);
        if (processes.distTimeoutSeconds < 1) throw new UserError("--dist-timeout: must be >= 1 second, got " + processes.distTimeoutSeconds);
        if (memoryLimitGib != null && !(memoryLimitGib > 0)) throw new UserError("--memory-limit-gib: must be > 0, got " + memoryLimitGib);
        if (peakTflops != null && !(peakTflops > 0)) throw new UserError("--peak-tflops: must be > 0, got " + peakTflops);
        if (resume != null && runDir != null && !runDir.toAbsolutePath().normalize().equals(resume.toAbsolutePath().normalize()))
            throw new UserError("--run-dir: a resumed run stays in its directory " + resume);
        List<String> sets = new ArrayList<>(overrides);
        if (backend != null) sets.add("train.backend=" + backend);
        if (tp != null) sets.add("parallel.tp=" + tp);
        if (dp != null) sets.add("parallel.dp=" + dp);
        if (pp != null) sets.add("parallel.pp=" + pp);
        if (virtualStages != null) sets.add("parallel.virtual_stages=" + virtualStages);
        CommittedStep from = resume != null ? RunCheckpointing.openNewest(resume) : null;
        RunConfig cfg = from != null ? RunCheckpointing.resumeConfig(from, config, sets) : ConfigLoader.load(config, sets);
        if (cfg.train() == null) throw new UserError(config + ": section train is required for midtrain train");
        if (cfg.parallel().sequenceParallel())
            throw new UserError((config != null ? config : resume) + ": field parallel.sequence_parallel: planned by `midtrain info` but this build's"
                    + " trainer does not run it yet (set parallel.sequence_parallel: false)");
        if (cfg.parallel().pp() > 1 && (cfg.train().evalEverySteps() > 0 || cfg.train().backend() == TrainConfig.Device.CUDA))
            throw new UserError((config != null ? config : resume) + ": field parallel.pp: pipeline stages in this build train on the CPU backend with"
                    + " train.eval_every_steps: 0 (held-out evaluation through the pipeline and CUDA pipelines are not implemented yet)");
        List<String> changes = from != null ? ResumeCheck.compare(from.config(), cfg, from.dir()) : List.of();
        return new Resolved(cfg, from, changes);
    }

    /**
     * Places the ranks, probes the GPU (no usable GPU: a one-line error before anything is written, never the CPU),
     * refuses a run that does not fit, measures the MFU peak and writes the run directory's config.yaml.
     */
    private Plan plan(Resolved run) {
        RunConfig cfg = run.cfg();
        TrainConfig tc = run.train();
        int T = run.tp(), D = run.dp();
        LaunchEnv env = LaunchEnv.resolve(processes.flags(), System.getenv(), cfg.parallel().worldSize());
        Launcher.Mode mode = run.gpu() ? Launcher.Mode.NCCL : Launcher.Mode.IN_PROCESS;
        int computeBytes = run.gpu() ? 2 : 4;                                   // bf16 on CUDA, fp32 on CPU
        boolean lead = env.procIndex() == 0;                                    // this process writes the run directory

        PeakFlops.Peak gpuPeak = null;
        long deviceBytes = 0;
        if (run.gpu()) {
            try (Backend probe = Backend.open("cuda", 0)) {
                deviceBytes = probe.deviceMemoryBytes();
                gpuPeak = peakTflops != null ? new PeakFlops.Peak(peakTflops * 1e12, "--peak-tflops") : PeakFlops.gpu(probe, ((dev.midtrain.kernels.CudaBackend) probe).deviceName());
                if (lead) System.out.printf("device: %s, %s%n", probe.describe(), MemoryPlan.gib(deviceBytes));
            }
        }
        // The fit check: against --memory-limit-gib, else on CUDA against the device's memory; refused runs say what fits.
        long budgetSource = memoryLimitGib != null ? (long) (memoryLimitGib * (1L << 30)) : deviceBytes;
        if (budgetSource > 0) {
            var par = cfg.parallel();
            MemoryPlan.Layout layout = new MemoryPlan.Layout(T, D, par.pp(), par.virtualStages(), par.sequenceParallel(), par.zero1(),
                    tc.recompute(), cfg.gradAccumSteps());
            String verdict = MemoryPlan.checkFits(cfg.model(), tc.microBatchSeqs(), tc.seqLen(), layout, tc.globalBatchSeqs(), computeBytes,
                    run.gpu() ? MemoryPlan.usableBytes(budgetSource) : budgetSource, 8);
            if (verdict != null) throw new UserError("memory: " + verdict);
        }
        Path dir = checkpoints.resume != null ? checkpoints.resume
                : runDir != null ? runDir : Path.of("runs", baseName(config) + "-" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
        if (lead && Files.isDirectory(dir)) runLock = RunLock.acquire(dir);    // a training in progress here: say so first
        // Every refusal of the run's inputs comes before the run directory exists, so a corrected retry can reuse it.
        if (run.from() == null && Files.exists(dir.resolve("metrics.jsonl")))
            throw new UserError("--run-dir " + dir + ": already holds a run (metrics.jsonl); choose another directory");
        if (checkpoints.initFrom != null) {                                     // config.json and every tensor header, before the run dir
            ModelSource init = ModelSource.open(checkpoints.initFrom);
            init.requireMatches(cfg.model());
            init.checkTensors();
        }
        ShardVerifier.Result verified = synthetic ? null : preflightData(cfg, dir, threadsOfProcess(tc, env));
        String attention = attentionPath(run);
        if (lead) {
            writeRunDir(run, dir, attention);
            if (verified != null) ShardVerifier.writeCache(dir.resolve(ShardVerifier.CACHE_FILE), verified);
        }

        int threads = threadsOfProcess(tc, env);
        CpuBackend.setThreads(threads);
        PeakFlops.Peak peak;                                                    // table, or measured where no table applies
        if (run.gpu()) peak = gpuPeak;
        else if (peakTflops != null) peak = new PeakFlops.Peak(peakTflops * 1e12, "--peak-tflops");   // the whole machine on CPU
        else try (Backend be = Backend.open("cpu", 0)) { peak = PeakFlops.cpu(be, threads); }
        int perRank = Math.max(1, threads / env.localRanks());
        CpuBackend.setThreads(perRank);                                         // ranks share the cores (OpenBLAS pool)
        if (lead)
            System.out.printf("model: %,d parameters, %.3g FLOPs/token | tp %d x dp %d%s (%s, %d process%s), %d threads per rank | memory %s per rank | attention %s | MFU peak %.1f GFLOP/s (%s)%n",
                    cfg.model().paramCount(), cfg.model().flopsPerToken(tc.seqLen()), T, D,
                    cfg.parallel().pp() == 1 ? "" : " x pp " + cfg.parallel().pp() + (cfg.parallel().virtualStages() > 1 ? " (" + cfg.parallel().virtualStages() + " virtual)" : ""),
                    env.source(), env.nprocs(),
                    env.nprocs() == 1 ? "" : "es", perRank, MemoryPlan.gib(MemoryPlan.largest(MemoryPlan.stages(cfg.model(), tc.microBatchSeqs(), tc.seqLen(),
                            new MemoryPlan.Layout(T, D, cfg.parallel().pp(), cfg.parallel().virtualStages(), cfg.parallel().sequenceParallel(),
                                    cfg.parallel().zero1(), tc.recompute(), cfg.gradAccumSteps()), computeBytes)).totalBytes()), attention, peak.flops() / 1e9,
                    peak.source());
        return new Plan(env, mode, lead, dir, peak.flops(), perRank);
    }

    /** Runs every rank of this process to the end (or to a stop) and reports the run. */
    private int launch(Resolved run, Plan plan) {
        RunConfig cfg = run.cfg();
        int T = run.tp(), D = run.dp();
        Duration timeout = Duration.ofSeconds(processes.distTimeoutSeconds);
        try (GracefulStop stop = GracefulStop.install();
             RunCheckpointing ckpt = new RunCheckpointing(plan.dir(), cfg, stop, checkpoints.stopAtStep)) {
            if (checkpoints.noCheckpoints) ckpt.disableSaving();
            int P = cfg.parallel().pp();
            if (T * D * P > 1) {
                List<ParamLayout> tpLayouts = new ArrayList<>();                // one slab per (tp, pp) shard, index ppRank * T + tpRank
                for (int q = 0; q < P; q++)
                    for (int r = 0; r < T; r++)
                        tpLayouts.add(ParamLayout.of(new Placement(cfg.model(), T, r), cfg.optimizer().weightDecayExclude(),
                                ParamLayout.Stage.of(cfg.model(), P, cfg.parallel().virtualStages(), q)));
                ckpt.parallelRanks(plan.env().firstRank(), plan.env().localRanks(), plan.env().procIndex(), plan.env().nprocs(), tpLayouts, timeout);
            }
            long t0 = System.nanoTime();
            List<TrainState> states = Launcher.run(plan.env(), T, D, cfg.parallel().pp(), Placement.of(cfg.model(), T).kvReplicas(), plan.mode(), timeout,
                    ctx -> trainRank(ctx, cfg, plan.dir(), plan.peakFlops(), plan.threadsPerRank(), ckpt, run.from(), run.changes()));
            ckpt.close();                                                       // waits for the last save; throws if it failed
            if (run.from() != null) run.from().close();
            if (!plan.lead())                                                   // each process's own record of where it stopped
                System.out.printf("process %d of %d: done at step %d%n", plan.env().procIndex(), plan.env().nprocs(), states.get(0).step);
            if (plan.lead()) {
                TrainState s = states.get(0);
                String why = stop.requested() ? stop.reason() : checkpoints.stopAtStep > 0 && s.step >= checkpoints.stopAtStep ? "--stop-at-step"
                        : "a stop requested on another process";
                if (s.step < run.train().steps() && checkpoints.noCheckpoints)
                    System.out.printf("stopped at step %d (%s); no checkpoint (--no-checkpoints), so this run cannot be resumed%n", s.step, why);
                else if (s.step < run.train().steps())
                    System.out.printf("stopped at step %d (%s); checkpoint %s; continue with: midtrain train --resume %s%n", s.step,
                            why, ckpt.lastSavedDir(), plan.dir());
                System.out.printf("done: %d steps (%d skipped), %,d tokens in %.1f s; run directory %s%n",
                        s.step, s.skippedSteps, s.tokensTrained, (System.nanoTime() - t0) / 1e9, plan.dir());
            }
        }
        return 0;
    }

    /**
     * CPU threads of this process: train.threads, or (0 = auto) the node's cores divided by this run's processes on
     * the node, so 4 processes of one rank get the same threads per rank as 4 rank threads in one process.
     */
    private static int threadsOfProcess(TrainConfig tc, LaunchEnv env) {
        return tc.threads() > 0 ? tc.threads() : Math.max(1, Runtime.getRuntime().availableProcessors() / env.localProcesses(System.getenv()));
    }

    /** The attention kernels the run uses: on CUDA the tensor-core path, or the simple one (head dim, MT_CUDA_ATTN). */
    private static String attentionPath(Resolved run) {
        ModelConfig m = run.cfg().model();
        return run.gpu() ? CudaBackend.attentionPath(m.nHeads(), m.nKvHeads(), m.headDim()) : "cpu";
    }

    /**
     * A new run directory (or the resumed one, its metrics cut back to the checkpoint), the --init-from checkpoint's
     * side files, config.yaml (headed by the attention path in use) and the config table.
     */
    private void writeRunDir(Resolved run, Path dir, String attention) {
        if (run.from() == null) createdRunDir = createRunDir(dir);
        if (runLock == null) runLock = RunLock.acquire(dir);                    // refuses a second training here
        if (run.from() != null) RunCheckpointing.truncateMetrics(dir.resolve("metrics.jsonl"), run.from().stateFile().step());
        if (checkpoints.initFrom != null) copySideFiles(checkpoints.initFrom, dir);
        String yaml = "# attention path in use: " + attention + "\n" + ConfigLoader.toYaml(run.cfg());
        try {
            AtomicFiles.writeString(dir.resolve("config.yaml"), yaml);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + dir.resolve("config.yaml"), e);
        }
        printConfig(run.cfg(), dir);
    }

    /**
     * One rank: its backend, its model shard, its data-parallel share of the batches, its start (seeded init, a
     * Hugging Face checkpoint sharded for its layout, or its shard of a resumed step) and the training loop.
     */
    private TrainState trainRank(Launcher.RankContext ctx, RunConfig cfg, Path dir, double peak, int cpuThreads, RunCheckpointing ckpt,
                                 CommittedStep from, List<String> changes) {
        TrainConfig tc = cfg.train();
        Topology topo = ctx.topology();
        boolean rank0 = topo.rank() == 0;
        boolean zero1 = cfg.parallel().zero1();
        boolean gpu = tc.backend() == TrainConfig.Device.CUDA;
        int pp = cfg.parallel().pp(), virtual = cfg.parallel().virtualStages();
        ParamLayout layout = ParamLayout.of(new Placement(cfg.model(), topo.tp(), topo.tpRank()), cfg.optimizer().weightDecayExclude(),
                ParamLayout.Stage.of(cfg.model(), pp, virtual, topo.ppRank()));
        PipelineSchedule schedule = pp > 1 ? new PipelineSchedule(pp, virtual, cfg.gradAccumSteps()) : null;
        if (!gpu) CpuBackend.setThreads(cpuThreads);                           // this rank thread's OpenMP team (per thread)
        if (topo.tpRank() != 0 || topo.ppRank() != 0) SampleLog.muteThread();  // a replica's tp ranks and stages read the same samples
        try (Backend be = Backend.open(tc.backend().yaml(), ctx.device());
             TensorParallel tpHooks = new TensorParallel(be, groups(ctx, be).tp());
             TokenBatches data = openData(cfg, rank0, topo.dpRank(), topo.dp());
             Llama model = new Llama(be, layout, tc.microBatchSeqs(), tc.seqLen(), tc.recompute(), tpHooks,
                     Parallelism.optimizerShard(layout.numel(), topo, zero1));
             Parallelism par = new Parallelism(groups(ctx, be), model, zero1, schedule);
             MetricsLog metrics = rank0 ? new MetricsLog(System.out, dir.resolve("metrics.jsonl"), tc.logEverySteps(), tc.steps(),
                     cfg.model().flopsPerToken(tc.seqLen()), peak) : MetricsLog.quiet()) {
            model.initialize(tc.seed(), tc.initStd());                        // every rank streams the full init, keeps its shard

            Trainer trainer = new Trainer(cfg, model, data, TrainState.start(cfg), metrics, par);
            Path initFrom = checkpoints.initFrom;
            if (initFrom != null) {
                try {
                    ckpt.initFrom(initFrom, model);                             // reads this rank's slices of each tensor
                } catch (RuntimeException | Error e) {
                    initFromFailed = true;
                    throw e;
                }
                if (rank0) System.out.printf("initialized from %s (optimizer state fresh, schedule at step 0; %,d tokens seen before, checkpoint.tokens_seen_before)%n",
                        initFrom, trainer.state().tokensSeenBefore);
            }
            if (from != null) {
                ckpt.resume(from, trainer);                                     // this rank's weights and ZeRO-1 moments
                if (rank0) {
                    System.out.printf("resumed from %s: step %d, %,d tokens trained (+%,d seen before)%n",
                            from.dir(), from.stateFile().step(), from.stateFile().state().tokensTrained, from.stateFile().state().tokensSeenBefore);
                    for (String c : changes) System.out.println("  config changed since the checkpoint: " + c);
                }
            }
            trainer.addListener(topo.worldSize() > 1 ? ckpt.rankListener(topo.tpRank(), topo.dpRank(), topo.ppRank()) : ckpt);
            trainer.stopWhen(() -> ckpt.stopRequested(trainer.state().step));      // this process's wish; the ranks vote
            TrainingEval evalDuring = cfg.eval().tasks().isEmpty() ? null : new TrainingEval(cfg, metrics);  // eval.tasks (one rank)
            if (evalDuring != null) trainer.addListener(evalDuring);
            try (evalDuring) {
                return trainer.run();                                           // the listener saved the stop step
            } catch (RuntimeException | Error e) {
                ckpt.abort();                                                   // release the ranks waiting at its barrier
                throw e;
            }
        }
    }

    /** The rank's communicators: in-process on CPU; NCCL on the rank's CUDA stream (joined on first call). */
    private static ProcessGroups groups(Launcher.RankContext ctx, Backend be) {
        return ctx.groups(be instanceof CudaBackend c ? c.streamAddress() : 0);
    }

    /**
     * This data-parallel rank's batches: its slice of a synthetic stream when asked for; otherwise the Arrow blended
     * loader, which gives each rank its disjoint share of every global batch.
     */
    private TokenBatches openData(RunConfig cfg, boolean announce, int dpRank, int dpSize) {
        TrainConfig tc = cfg.train();
        if (synthetic) {
            int validTokens = Math.max(1, tc.evalBatches()) * tc.microBatchSeqs() * tc.seqLen() + 1;
            long wanted = tc.tokensPerStep() * tc.steps() + validTokens + 1;
            int length = (int) Math.min(wanted, 1 << 24);                       // wraps around beyond 16M tokens
            length = Math.max(length, validTokens + tc.seqLen() + 1);
            int[] stream = MemoryBatches.markovStream(cfg.model().vocabSize(), length, 4, tc.seed());
            if (announce)
                System.out.printf("data: synthetic Markov stream, %,d tokens, vocabulary %d, 4 successors per token (best loss ln 4 = %.3f)%n",
                        length, cfg.model().vocabSize(), Math.log(4));
            return new DpSliceBatches(new MemoryBatches(stream, validTokens, tc.microBatchSeqs(), tc.seqLen(), "synthetic"), dpSize, dpRank);
        }
        if (cfg.data() == null) throw new UserError(config + ": section data is required (or pass --synthetic-data)");
        BlendedLoader loader = BlendedLoader.open(cfg.data(), tc.seqLen(), tc.microBatchSeqs(), tc.globalBatchSeqs(), tc.seed(), dpRank, dpSize);
        try {
            loader.checkVocab(cfg.model().vocabSize());
        } catch (RuntimeException e) {
            loader.close();
            throw e;
        }
        if (announce) System.out.println("data: " + loader.describe());
        return loader;
    }

    /**
     * Opens (and closes) the data as rank 0 would, after checking every shard's SHA-256 (unless --no-verify-data;
     * shards this run verified before and unchanged since are skipped): missing or corrupt prepared data and vocab
     * mismatches fail here, before the run directory exists. Returns what was verified (null when skipped).
     */
    private ShardVerifier.Result preflightData(RunConfig cfg, Path dir, int threads) {
        TrainConfig tc = cfg.train();
        if (cfg.data() == null) throw new UserError(config + ": section data is required (or pass --synthetic-data)");
        ShardVerifier.Result v = noVerifyData ? null : ShardVerifier.verify(cfg.data(), dir.resolve(ShardVerifier.CACHE_FILE), threads, System.out);
        try (BlendedLoader l = BlendedLoader.open(cfg.data(), tc.seqLen(), tc.microBatchSeqs(), tc.globalBatchSeqs(), tc.seed(), 0, cfg.parallel().dp())) {
            l.checkVocab(cfg.model().vocabSize());
        }
        return v;
    }

    /** The --init-from checkpoint's tokenizer files and generation_config.json, kept in RUN_DIR/hf_files for export. */
    private static void copySideFiles(Path hfDir, Path run) {
        if (!Files.isRegularFile(hfDir.resolve(HfCheckpoint.CONFIG))) return;   // a step or run directory: no HF files
        try {
            Path to = run.resolve(HfCheckpoint.SIDE_FILES_DIR);
            Files.createDirectories(to);
            HfCheckpoint.copySideFiles(hfDir, to);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot copy the tokenizer files of " + hfDir + " into " + run, e);
        }
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

    /** Creates the run directory; true when it did not exist before (so a failed --init-from may remove it again). */
    private static boolean createRunDir(Path dir) {
        try {
            boolean created = !Files.exists(dir);
            Files.createDirectories(dir);
            return created;
        } catch (IOException e) {
            throw new UserError("--run-dir " + dir + ": cannot create: " + e.getMessage());
        }
    }
}
