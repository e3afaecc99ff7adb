package dev.midtrain.bench;

import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.OptimConfig;
import dev.midtrain.config.RunConfig;
import dev.midtrain.config.TrainConfig;
import dev.midtrain.data.MemoryBatches;
import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.Llama;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.model.TpHooks;
import dev.midtrain.train.MetricsLog;
import dev.midtrain.train.PeakFlops;
import dev.midtrain.train.TrainState;
import dev.midtrain.train.Trainer;

import java.util.List;

/**
 * End-to-end CPU training throughput of a Llama-3 configuration (benchmarks/cpu/): trains {@code warmup + steps}
 * optimizer steps on a synthetic token stream and reports tokens/s over the timed steps, model FLOP/s and its share
 * of the measured sgemm rate; with --profile, a second pass times every kernel and GEMM.
 *
 * <pre>java -cp ... dev.midtrain.bench.TrainBenchmark 3m|30m [steps] [warmup] [--profile] [--recompute]</pre>
 */
public final class TrainBenchmark {
    private TrainBenchmark() {}

    /** The benchmark configurations (the same as benchmarks/cpu/torch_train.py). */
    static RunConfig preset(String name, int steps, boolean recompute) {
        ModelConfig m;
        int T, B;
        switch (name) {
            case "3m" -> { m = new ModelConfig(512, 256, 4, 8, 2, 688, 500000, 1e-5, 256, false); T = 256; B = 8; }
            case "30m" -> { m = new ModelConfig(8192, 512, 8, 8, 2, 1376, 500000, 1e-5, 512, false); T = 512; B = 4; }
            default -> throw new IllegalArgumentException("preset must be 3m or 30m, got " + name);
        }
        OptimConfig o = new OptimConfig(1e-3, 1e-4, 10, 0.9, 0.95, 1e-8, 0.1, List.of("norm"), 1.0);
        TrainConfig t = TrainConfig.builder(T, B, B, steps).logEverySteps(1_000_000).evalBatches(0).seed(1234).recompute(recompute).build();
        return new RunConfig(m, o, t, null, null, null);
    }

    public static void main(String[] args) {
        String preset = args.length > 0 ? args[0] : "3m";
        int steps = args.length > 1 ? Integer.parseInt(args[1]) : 10, warmup = args.length > 2 ? Integer.parseInt(args[2]) : 2;
        boolean profile = List.of(args).contains("--profile"), recompute = List.of(args).contains("--recompute");
        int threads = Integer.parseInt(System.getenv().getOrDefault("MT_THREADS", "" + Runtime.getRuntime().availableProcessors()));
        CpuBackend.setThreads(threads);
        RunConfig cfg = preset(preset, warmup + steps, recompute);
        TrainConfig tc = cfg.train();
        try (Backend cpu = Backend.open("cpu", 0)) {
            double sgemm = PeakFlops.gemm(cpu, 1024, 5);
            Backend be = profile ? new TimedBackend(cpu) : cpu;
            int[] stream = MemoryBatches.markovStream(cfg.model().vocabSize(), (warmup + steps) * tc.microBatchSeqs() * tc.seqLen() + tc.seqLen() + 2, 4, 1);
            try (Llama model = new Llama(be, ParamLayout.of(cfg.model(), 1, 0, List.of("norm")), tc.microBatchSeqs(), tc.seqLen(), recompute, TpHooks.NONE);
                 MemoryBatches data = new MemoryBatches(stream, 0, tc.microBatchSeqs(), tc.seqLen(), "synthetic")) {
                model.initialize(tc.seed(), tc.initStd());
                Trainer trainer = new Trainer(cfg, model, data, TrainState.start(cfg), MetricsLog.quiet());
                int[][] micro = {new int[tc.microBatchSeqs() * (tc.seqLen() + 1)]};
                double firstLoss = 0, lastLoss = 0;
                for (int s = 0; s < warmup; s++) { data.nextMicroBatch(micro[0]); firstLoss = trainer.step(micro).loss(); }
                if (be instanceof TimedBackend tb) tb.reset();
                var os = (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean();
                long cpu0 = os.getProcessCpuTime();
                long t0 = System.nanoTime();
                for (int s = 0; s < steps; s++) { data.nextMicroBatch(micro[0]); lastLoss = trainer.step(micro).loss(); }
                double sec = (System.nanoTime() - t0) / 1e9, cpuSec = (os.getProcessCpuTime() - cpu0) / 1e9;
                double tps = (double) steps * tc.tokensPerStep() / sec;
                double flops = cfg.model().flopsPerToken(tc.seqLen()) * tps;
                System.out.printf("midtrain %s: %,d params, %d steps x %d tokens in %.2f s: %.0f tokens/s | model %.2f GFLOP/s = %.1f%% of sgemm %.2f GFLOP/s (%d threads) | CPU %.1f s = %.0f tokens per CPU-s | loss %.3f -> %.3f%n",
                        preset, cfg.model().paramCount(), steps, tc.tokensPerStep(), sec, tps, flops / 1e9, 100 * flops / sgemm,
                        sgemm / 1e9, threads, cpuSec, steps * tc.tokensPerStep() / cpuSec, firstLoss, lastLoss);
                if (be instanceof TimedBackend tb) System.out.print(tb.report());
            }
        }
    }
}
