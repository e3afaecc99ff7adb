package dev.midtrain.bench;

import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.OptimConfig;
import dev.midtrain.config.ParallelConfig;
import dev.midtrain.config.Placement;
import dev.midtrain.config.RunConfig;
import dev.midtrain.config.TrainConfig;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.Llama;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.model.TpHooks;
import dev.midtrain.parallel.LaunchEnv;
import dev.midtrain.parallel.Launcher;
import dev.midtrain.parallel.Parallelism;
import dev.midtrain.parallel.PipelineSchedule;
import dev.midtrain.parallel.PipelineStage;
import dev.midtrain.parallel.ProcessGroups;
import dev.midtrain.parallel.Topology;
import dev.midtrain.train.MetricsLog;
import dev.midtrain.train.TrainState;
import dev.midtrain.train.Trainer;

import java.time.Duration;
import java.util.List;
import java.util.Random;

/**
 * The measured pipeline bubble against the formula (benchmarks/pipeline.sh): `PipelineBench pp virtual m...` runs a
 * small model (dim 128, 8 layers, seq 128, 2 sequences per micro-batch) as pp ranks (threads, one core each: run it
 * with as many free cores as pp), and prints per layout the step's wall time and each rank's busy fraction (its
 * forwards and backwards, synchronized) from the median of 5 steps after 2 warm-up steps; measured bubble = 1 -
 * mean busy / step. The formula (pp-1)/(v*m+pp-1) assumes every rank's forward and backward take f and b; here a
 * stage's backward recomputes its forward (f + b) and the last stage's forward runs inside its backward, so the ranks
 * are not balanced and the measured bubble is expected somewhat above the formula.
 */
public final class PipelineBench {
    private PipelineBench() {}

    public static void main(String[] args) {
        int pp = Integer.parseInt(args[0]), v = Integer.parseInt(args[1]);
        ModelConfig m = new ModelConfig(512, 128, 8, 4, 2, 344, 500000.0, 1e-5, 128, false);
        int B = 2, T = 128, steps = 7;
        System.out.printf("pp %d x %d virtual, dim 128, 8 layers, seq %d, %d sequences per micro-batch, %d thread per rank%n", pp, v, T, B, 1);
        System.out.printf("%6s %10s %12s %14s %14s%n", "m", "step ms", "busy/step", "bubble meas.", "formula");
        for (int a = 2; a < args.length; a++) {
            int micro = Integer.parseInt(args[a]);
            OptimConfig oc = new OptimConfig(1e-3, 1e-4, 2, 0.9, 0.95, 1e-8, 0.1, List.of("norm"), 1.0);
            TrainConfig tc = TrainConfig.builder(T, B, B * micro, steps).evalBatches(0).seed(7).threads(1).build();
            RunConfig rc = new RunConfig(m, oc, tc, null, null, new ParallelConfig(1, 1, pp, v, false, true));
            int[][][] data = new int[steps][micro][B * (T + 1)];
            Random r = new Random(1);
            for (int[][] s : data) for (int[] mb : s) for (int i = 0; i < mb.length; i++) mb[i] = r.nextInt(512);
            PipelineSchedule sched = new PipelineSchedule(pp, v, micro);
            LaunchEnv env = new LaunchEnv(LaunchEnv.Source.SINGLE, 1, 0, pp, 0, null, 1);
            List<double[]> per = Launcher.run(env, 1, 1, pp, Placement.of(m, 1).kvReplicas(), Launcher.Mode.IN_PROCESS, Duration.ofSeconds(600), ctx -> {
                CpuBackend.setThreads(1);
                Topology topo = ctx.topology();
                ProcessGroups g = ctx.groups(0);
                try (dev.midtrain.kernels.Backend be = dev.midtrain.kernels.Backend.open("cpu", 0)) {
                    ParamLayout layout = ParamLayout.of(new Placement(m, 1, 0), List.of("norm"), ParamLayout.Stage.of(m, pp, v, topo.ppRank()));
                    try (Llama model = new Llama(be, layout, B, T, false, TpHooks.NONE, Parallelism.optimizerShard(layout.numel(), topo, true));
                         Parallelism par = new Parallelism(g, model, true, sched)) {
                        model.initialize(7, 0.02);
                        Trainer tr = new Trainer(rc, model, null, new TrainState(7), MetricsLog.quiet(), par);
                        PipelineStage st = par.pipeline();
                        double[] busy = new double[steps - 2], step = new double[steps - 2];
                        for (int s = 0; s < steps; s++) {
                            tr.step(data[s]);
                            if (s >= 2) { busy[s - 2] = st.lastComputeSeconds(); step[s - 2] = st.lastStepSeconds(); }
                        }
                        java.util.Arrays.sort(busy);
                        java.util.Arrays.sort(step);
                        return new double[]{busy[busy.length / 2], step[step.length / 2]};
                    }
                }
            });
            double stepS = 0, busy = 0;
            for (double[] x : per) { stepS = Math.max(stepS, x[1]); busy += x[0] / pp; }
            System.out.printf("%6d %10.1f %12.3f %14.3f %14.3f%n", micro, stepS * 1e3, busy / stepS, 1 - busy / stepS,
                    PipelineSchedule.bubbleFraction(pp, v, micro));
        }
        System.exit(0);
    }
}
