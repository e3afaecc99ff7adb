package dev.midtrain.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.OptimConfig;
import dev.midtrain.config.RunConfig;
import dev.midtrain.config.TrainConfig;
import dev.midtrain.data.MemoryBatches;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.Llama;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.model.TpHooks;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** The training loop end to end on CPU: it learns, it stops or skips on a non-finite loss, init is seeded. */
class TrainerTest {
    private static CpuBackend be;

    @BeforeAll static void open() { be = new CpuBackend(); }
    @AfterAll static void shut() { be.close(); }

    static RunConfig config(int V, int steps, int B, int T, int globalSeqs, String onNonfinite, int evalEvery) {
        ModelConfig m = new ModelConfig(V, 48, 2, 4, 2, 88, 10000, 1e-5, T, false);
        OptimConfig o = new OptimConfig(1e-2, 1e-3, 5, 0.9, 0.95, 1e-8, 0.1, List.of("norm"), 1.0);
        TrainConfig t = TrainConfig.builder(T, B, globalSeqs, steps).logEverySteps(10).evalEverySteps(evalEvery).evalBatches(2).seed(42)
                .onNonfinite(TrainConfig.OnNonfinite.parse(onNonfinite)).build();
        return new RunConfig(m, o, t, null, null, null);
    }

    static Llama model(RunConfig c) {
        Llama m = new Llama(be, ParamLayout.of(c.model(), 1, 0, c.optimizer().weightDecayExclude()),
                c.train().microBatchSeqs(), c.train().seqLen(), c.train().recompute(), TpHooks.NONE);
        m.initialize(c.train().seed(), c.train().initStd());
        return m;
    }

    /** 30 steps on a Markov stream with 2 successors per token: the loss must fall from ~ln 64 = 4.16 toward ln 2. */
    @Test
    void learnsASyntheticStream(@TempDir Path dir) throws Exception {
        RunConfig c = config(64, 30, 4, 32, 8, "stop", 10);
        int[] stream = MemoryBatches.markovStream(64, 30 * 8 * 32 + 2000, 2, 5);
        try (Llama m = model(c); MemoryBatches data = new MemoryBatches(stream, 2 * 4 * 32 + 1, 4, 32, "markov");
             MetricsLog log = new MetricsLog(System.out, dir.resolve("metrics.jsonl"), 10, 30, c.model().flopsPerToken(32), 1e11)) {
            TrainState s = new Trainer(c, m, data, new TrainState(42), log).run();
            assertEquals(30, s.step);
            assertEquals(30L * 8 * 32, s.tokensTrained);
            assertEquals(s.tokensTrained, s.tokensPerSource.get("markov"));
            assertNotNull(s.loaderState);
        }
        List<String> lines = Files.readAllLines(dir.resolve("metrics.jsonl"));
        assertEquals(30, lines.size());
        ObjectMapper json = new ObjectMapper();
        JsonNode first = json.readTree(lines.get(0)), last = json.readTree(lines.get(29));
        for (String f : List.of("step", "loss", "grad_norm", "lr", "tokens", "tokens_per_s", "mfu", "skipped", "tokens_per_source"))
            assertTrue(first.has(f), "metrics field " + f);
        double firstLoss = first.get("loss").asDouble(), lastLoss = 0;
        for (int i = 25; i < 30; i++) lastLoss += json.readTree(lines.get(i)).get("loss").asDouble() / 5;
        System.out.printf("loss %.3f -> %.3f (last 5 mean), val %.3f -> %.3f%n", firstLoss, lastLoss,
                json.readTree(lines.get(9)).get("val_loss").asDouble(), last.get("val_loss").asDouble());
        assertEquals(Math.log(64), firstLoss, 0.1);               // init std 0.02: near-uniform predictions
        assertTrue(lastLoss < firstLoss - 1.5, "loss fell only from " + firstLoss + " to " + lastLoss);
        assertTrue(json.readTree(lines.get(9)).has("val_loss") && !json.readTree(lines.get(10)).has("val_loss"));
        assertTrue(last.get("val_loss").asDouble() < firstLoss - 1.5);
    }

    /** A micro-batch containing token 31, whose embedding row is NaN: only the step that reads it is non-finite. */
    private static int[][] batches(int steps, int B, int T, int poisonStep) {
        SplittableRandom r = new SplittableRandom(3);
        int[][] out = new int[steps][B * (T + 1)];
        for (int s = 0; s < steps; s++) for (int i = 0; i < out[s].length; i++) out[s][i] = r.nextInt(31);
        out[poisonStep][T / 2] = 31;
        return out;
    }

    private static void poisonToken31(Llama m, int V, int C) {
        float[] wte = m.getParam("model.embed_tokens.weight");
        Arrays.fill(wte, 31 * C, 32 * C, Float.NaN);
        m.setParam("model.embed_tokens.weight", wte);
        m.syncComputeCopy();
    }

    @Test
    void nonFiniteLossStopsBeforeTheUpdate() {
        RunConfig c = config(32, 5, 2, 8, 2, "stop", 0);
        int[][] b = batches(5, 2, 8, 2);
        try (Llama m = model(c)) {
            poisonToken31(m, 32, 48);
            Trainer t = new Trainer(c, m, null, new TrainState(42), MetricsLog.quiet());
            t.step(new int[][]{b[0]});
            t.step(new int[][]{b[1]});
            float[] before = m.getParam("model.layers.1.mlp.down_proj.weight");
            NonFiniteLossException e = assertThrows(NonFiniteLossException.class, () -> t.step(new int[][]{b[2]}));
            assertTrue(e.getMessage().startsWith("step 3: non-finite loss"), e.getMessage());
            assertEquals(1, e.exitCode());
            assertEquals(2, t.state().step);
            assertArrayEquals(before, m.getParam("model.layers.1.mlp.down_proj.weight"), 0f, "no update after the NaN step");
        }
    }

    @Test
    void nonFiniteLossIsSkippedAndCountedWhenAsked() {
        RunConfig c = config(32, 5, 2, 8, 2, "skip", 0);
        int[][] b = batches(5, 2, 8, 2);
        try (Llama m = model(c)) {
            poisonToken31(m, 32, 48);
            Trainer t = new Trainer(c, m, null, new TrainState(42), MetricsLog.quiet());
            assertFalse(t.step(new int[][]{b[0]}).skipped());
            assertFalse(t.step(new int[][]{b[1]}).skipped());
            float[] w = m.getParam("model.layers.0.self_attn.q_proj.weight"), mom = momentsOf(m);
            StepResult r = t.step(new int[][]{b[2]});
            assertTrue(r.skipped());
            assertTrue(Double.isNaN(r.loss()));
            assertArrayEquals(w, m.getParam("model.layers.0.self_attn.q_proj.weight"), 0f);
            assertArrayEquals(mom, momentsOf(m), 0f, "AdamW state untouched by a skipped step");
            StepResult r4 = t.step(new int[][]{b[3]});
            assertFalse(r4.skipped());
            assertTrue(Double.isFinite(r4.loss()));
            assertEquals(4, t.state().step);
            assertEquals(1, t.state().skippedSteps);
            assertEquals(3, t.state().optimizerSteps());
            assertEquals(3 * r4.tokens(), t.state().tokensTrained, "the skipped step's tokens are not counted as trained");
            assertFalse(Arrays.equals(w, m.getParam("model.layers.0.self_attn.q_proj.weight")));
        }
    }

    /** train.max_consecutive_skips: a finite step resets the count; the limit-th skip in a row stops with exit code 1. */
    @Test
    void consecutiveSkipsStopTheRun() {
        RunConfig c0 = config(32, 8, 2, 8, 2, "skip", 0);
        var tc = c0.train();
        RunConfig c = new RunConfig(c0.model(), c0.optimizer(), new TrainConfig(tc.backend(), tc.seqLen(), tc.microBatchSeqs(),
                tc.globalBatchSeqs(), tc.steps(), tc.logEverySteps(), tc.evalEverySteps(), tc.evalBatches(), tc.seed(), tc.recompute(),
                TrainConfig.OnNonfinite.SKIP, tc.initStd(), tc.threads(), 3), null, null, null);
        int[][] b = batches(5, 2, 8, 2);
        try (Llama m = model(c)) {
            poisonToken31(m, 32, 48);
            Trainer t = new Trainer(c, m, null, new TrainState(42), MetricsLog.quiet());
            assertTrue(t.step(new int[][]{b[2]}).skipped());
            assertTrue(t.step(new int[][]{b[2]}).skipped());
            assertFalse(t.step(new int[][]{b[0]}).skipped(), "resets the count");
            assertTrue(t.step(new int[][]{b[2]}).skipped());
            assertTrue(t.step(new int[][]{b[2]}).skipped());
            NonFiniteLossException e = assertThrows(NonFiniteLossException.class, () -> t.step(new int[][]{b[2]}));
            assertEquals(1, e.exitCode());
            assertEquals("step 6: 3 consecutive steps skipped as non-finite (train.max_consecutive_skips = 3); stopped: check the data and the learning rate",
                    e.getMessage());
        }
        assertEquals(10, config(32, 8, 2, 8, 2, "skip", 0).train().maxConsecutiveSkips(), "default");
    }

    private static float[] momentsOf(Llama m) {
        Llama.Slabs s = m.slabs();
        float[] v = new float[1000];
        be.download(v, s.v() + 4L * m.layout().offset("model.layers.0.self_attn.q_proj.weight"));
        return v;
    }

    @Test
    void initializationIsAFunctionOfTheSeed() {
        RunConfig c = config(32, 1, 1, 8, 1, "stop", 0);
        try (Llama a = model(c); Llama b = model(c)) {
            // the same computation twice in one process: exact on any processor
            for (ParamLayout.Tensor t : a.layout().tensors()) assertArrayEquals(a.getParam(t.name()), b.getParam(t.name()), 0f, t.name());
            float[] q = a.getParam("model.layers.0.self_attn.q_proj.weight");
            double ss = 0;
            for (float x : q) ss += x * x;
            assertEquals(0.02, Math.sqrt(ss / q.length), 0.002);      // 48*48 draws: std within 10%
            float[] down = a.getParam("model.layers.1.mlp.down_proj.weight");
            ss = 0;
            for (float x : down) ss += x * x;
            assertEquals(0.02 / Math.sqrt(4), Math.sqrt(ss / down.length), 0.001);   // scaled by 1/sqrt(2L)
            for (float x : a.getParam("model.norm.weight")) assertEquals(1f, x);
            b.initialize(43, 0.02);
            assertFalse(Arrays.equals(q, b.getParam("model.layers.0.self_attn.q_proj.weight")));
        }
    }
}
