package dev.midtrain.parallel;

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
import dev.midtrain.train.MetricsLog;
import dev.midtrain.train.StepResult;
import dev.midtrain.train.TrainState;
import dev.midtrain.train.Trainer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Pipeline parallelism on the CPU (ranks as threads, in-process communicators) against the single-rank run: 10
 * optimizer steps of the same global batches from the same initial weights, 1F1B over 2 and 4 stages, Megatron's
 * interleaved schedule over 2 ranks x 2 virtual stages, tied embeddings (the first and last stage's copies summed),
 * and pipeline x tensor x data parallelism. Losses and gradient norms within 5e-6 relative, the gathered weights of
 * every stage within 3e-5 of each tensor's largest value, and a tied embedding's two copies bitwise equal.
 *
 * <p>Tolerances as in {@link ParallelEquivalenceTest}: the stages run the single rank's kernels on the same inputs;
 * the differences are fp32 summation order (the loss as a sum of micro-batch sums, the tied embedding's gradient as
 * (sum of lookups) + (sum of head gradients) instead of interleaved, tensor- and data-parallel sums). Measured worst
 * cases (printed per layout): loss/norm 4e-8 (pp 2; weights bitwise equal), 6e-8 (pp 4), 4e-8 (pp 2 x 2 virtual),
 * 7e-7 / 8e-7 (tied, pp 2 and 2 x 2 virtual), 2.1e-6 (tied, tp 2 x dp 2 x pp 2); weights <= 2.7e-6.
 */
class PipelineEquivalenceTest {
    static final int STEPS = 10, B = 2, T = 9, MICRO = 4;
    static final double LOSS_TOL = 5e-6, WEIGHT_TOL = 3e-5;
    /**
     * Tied embeddings: the single rank adds each micro-batch's head and embedding gradients into one buffer in turn
     * (head 1, embedding 1, head 2, ...), the pipeline sums each copy's micro-batches on its own stage and then the two
     * copies (Megatron's embedding group), so the tied gradient is reassociated, and AdamW (eps 1e-4) carries that into
     * the next steps. Measured on an AMD EPYC: 4.4e-6 (pp 2) and 9.2e-6 (tp 2 x dp 2 x pp 2) with OpenBLAS's AVX2
     * kernels (OPENBLAS_CORETYPE=Haswell), <= 2.1e-6 with its AVX-512 ones; untied layouts stay <= 6e-8. 2e-5 leaves 2x
     * over the worst; a tied gradient summed only once (the bug it guards) is off by ~1e-1.
     */
    static final double TIED_LOSS_TOL = 2e-5;
    static final ModelConfig DEEP = new ModelConfig(64, 32, 4, 8, 4, 40, 10000.0, 1e-5, 16, false);
    static final ModelConfig DEEP_TIED = new ModelConfig(64, 32, 4, 8, 2, 40, 10000.0, 1e-5, 16, true);
    static int[][][] batches;

    @BeforeAll
    static void data() {
        Random r = new Random(43);
        batches = new int[STEPS][MICRO][B * (T + 1)];
        for (int[][] step : batches)
            for (int[] mb : step)
                for (int i = 0; i < mb.length; i++) mb[i] = r.nextInt(64);
        batches[2][1][T] = Llama.IGNORE_INDEX;
        batches[6][3][2 * T + 1] = Llama.IGNORE_INDEX;
    }

    static RunConfig config(ModelConfig m, int tp, int dp, int pp, int v) {
        OptimConfig oc = new OptimConfig(1e-2, 1e-3, 3, 0.9, 0.95, 1e-4, 0.1, List.of("norm"), 1.0);
        TrainConfig tc = TrainConfig.builder(T, B, B * MICRO, STEPS).evalBatches(0).seed(7).initStd(0.05).threads(1).build();
        return new RunConfig(m, oc, tc, null, null, new ParallelConfig(tp, dp, pp, v, false, true));
    }

    static ParallelEquivalenceTest.Baseline single(ModelConfig m) {
        return ParallelEquivalenceTest.singleRank(m, config(m, 1, 1, 1, 1), batches, B, T);
    }

    record RankResult(Topology topo, double[] losses, double[] norms, Map<String, float[]> shards) {}

    static List<RankResult> runPipeline(ModelConfig m, int tp, int dp, int pp, int v) {
        RunConfig rc = config(m, tp, dp, pp, v);
        int per = MICRO / dp;
        PipelineSchedule sched = new PipelineSchedule(pp, v, per);
        LaunchEnv env = new LaunchEnv(LaunchEnv.Source.SINGLE, 1, 0, tp * dp * pp, 0, null, 1);
        return Launcher.run(env, tp, dp, pp, Placement.of(m, tp).kvReplicas(), Launcher.Mode.IN_PROCESS, Duration.ofSeconds(60), ctx -> {
            Topology topo = ctx.topology();
            ProcessGroups g = ctx.groups(0);
            try (CpuBackend be = new CpuBackend();
                 TensorParallel tph = new TensorParallel(be, g.tp())) {
                ParamLayout layout = ParamLayout.of(new Placement(m, tp, topo.tpRank()), List.of("norm"), ParamLayout.Stage.of(m, pp, v, topo.ppRank()));
                try (Llama model = new Llama(be, layout, B, T, false, tp > 1 ? tph : TpHooks.NONE, Parallelism.optimizerShard(layout.numel(), topo, true));
                     Parallelism par = new Parallelism(g, model, true, sched)) {
                    model.initialize(rc.train().seed(), rc.train().initStd());
                    Trainer tr = new Trainer(rc, model, null, new TrainState(7), MetricsLog.quiet(), par);
                    double[] losses = new double[STEPS], norms = new double[STEPS];
                    for (int s = 0; s < STEPS; s++) {
                        StepResult res = tr.step(Arrays.copyOfRange(batches[s], topo.dpRank() * per, (topo.dpRank() + 1) * per));
                        losses[s] = res.loss();
                        norms[s] = res.gradNorm();
                    }
                    Map<String, float[]> w = new LinkedHashMap<>();
                    for (ParamLayout.Tensor t : layout.tensors()) w.put(t.name(), model.getParam(t.name()));
                    return new RankResult(topo, losses, norms, w);
                }
            }
        });
    }

    @ParameterizedTest(name = "{0} tp {1} x dp {2} x pp {3}, {4} virtual")
    @CsvSource({
            "DEEP, 1, 1, 2, 1",
            "DEEP, 1, 1, 4, 1",
            "DEEP, 1, 1, 2, 2",
            "DEEP_TIED, 1, 1, 2, 1",
            "DEEP_TIED, 1, 1, 2, 2",
            "DEEP_TIED, 2, 2, 2, 1",
    })
    void matchesSingleRank(String model, int tp, int dp, int pp, int v) {
        ModelConfig m = model.equals("DEEP") ? DEEP : DEEP_TIED;
        ParallelEquivalenceTest.Baseline base = single(m);
        List<RankResult> ranks = runPipeline(m, tp, dp, pp, v);
        double worstLoss = 0, worstW = 0;
        for (RankResult r : ranks)
            for (int s = 0; s < STEPS; s++) {
                worstLoss = Math.max(worstLoss, Math.max(rel(r.losses()[s], base.losses()[s]), rel(r.norms()[s], base.norms()[s])));
                assertEquals(ranks.get(0).losses()[s], r.losses()[s], 0.0, "every rank reports the same loss");
                assertEquals(ranks.get(0).norms()[s], r.norms()[s], 0.0, "every rank reports the same norm");
            }
        // gather: every tensor from the stage that holds it (tensor-parallel shards unsharded), data-parallel replica 0
        Map<String, float[]> full = new LinkedHashMap<>();
        for (RankResult r : ranks) {
            if (r.topo().dpRank() != 0) continue;
            for (var e : r.shards().entrySet()) {
                float[] ref = base.weights().get(e.getKey());
                float[] f = full.computeIfAbsent(e.getKey() + "@" + r.topo().ppRank(), k -> { float[] x = new float[ref.length]; Arrays.fill(x, Float.NaN); return x; });
                ParamLayout.Tensor meta = ParamLayout.of(new Placement(m, tp, r.topo().tpRank()), List.of("norm"),
                        ParamLayout.Stage.of(m, pp, v, r.topo().ppRank())).get(e.getKey());
                meta.unshardInto(f, e.getValue());
            }
        }
        java.util.Set<String> seen = new java.util.HashSet<>();
        for (var e : full.entrySet()) {
            String name = e.getKey().substring(0, e.getKey().indexOf('@'));
            seen.add(name);
            float[] ref = base.weights().get(name), got = e.getValue();
            double scale = 0;
            for (float x : ref) scale = Math.max(scale, Math.abs(x));
            for (int i = 0; i < ref.length; i++) {
                assertFalse(Float.isNaN(got[i]), name + " element " + i + " held by no rank");
                worstW = Math.max(worstW, Math.abs(got[i] - ref[i]) / scale);
            }
        }
        assertEquals(base.weights().keySet(), seen, "every tensor held by some stage");
        if (m.tiedEmbeddings())
            assertArrayEquals(full.get("model.embed_tokens.weight@0"), full.get("model.embed_tokens.weight@" + (pp - 1)), 0f,
                    "the first and last stage's copies of the tied embedding stay equal");
        // data-parallel replicas are bitwise equal
        for (RankResult r : ranks)
            if (r.topo().dpRank() > 0) {
                RankResult twin = ranks.get(r.topo().rankOf(r.topo().tpRank(), 0, r.topo().ppRank()));
                for (String n : r.shards().keySet()) assertArrayEquals(twin.shards().get(n), r.shards().get(n), 0f, n + " dp replica");
            }
        System.out.printf("pipeline equivalence %s tp %d dp %d pp %d v %d: loss/norm rel %.2e, weights %.2e%n", model, tp, dp, pp, v, worstLoss, worstW);
        assertTrue(worstLoss < (m.tiedEmbeddings() ? TIED_LOSS_TOL : LOSS_TOL), "loss/norm relative difference " + worstLoss);
        assertTrue(worstW < WEIGHT_TOL, "weight difference " + worstW);
    }

    static double rel(double a, double b) { return Math.abs(a - b) / Math.max(1e-12, Math.abs(b)); }
}
