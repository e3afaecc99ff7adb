package dev.midtrain.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.cli.Cli;
import dev.midtrain.config.RunConfig;
import dev.midtrain.data.BlendedLoader;
import dev.midtrain.data.MemoryBatches;
import dev.midtrain.data.TokenStream;
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
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Per-source losses and their rolling volatility in metrics.jsonl and in the plots. Two sources of different
 * difficulty: "qa" is a Markov chain with one successor per token (learnable to loss 0), "text" one with 8 (best ln 8).
 */
class PerSourceMetricsTest {
    private static CpuBackend be;

    @BeforeAll static void open() { be = new CpuBackend(); }
    @AfterAll static void shut() { be.close(); }

    @Test
    void lossBySourceIsLoggedChecksAgainstMaskedEvaluationAndIsPlotted(@TempDir Path dir) throws Exception {
        int V = 64, B = 4, T = 32, steps = 24;
        RunConfig c = TrainerTest.config(V, steps, B, T, 8, "stop", 12);
        int[] qa = MemoryBatches.markovStream(V, 40_000, 1, 1), text = MemoryBatches.markovStream(V, 40_000, 8, 2);
        List<TokenStream> srcs = List.of(TokenStream.of("qa", qa), TokenStream.of("text", text));
        Trainer trainer;
        try (Llama m = new Llama(be, ParamLayout.of(c.model(), 1, 0, c.optimizer().weightDecayExclude()), B, T, false, TpHooks.NONE);
             BlendedLoader data = BlendedLoader.of(srcs, new double[]{1, 1}, 0.05, T, B, 8, 9, 0, 1);
             MetricsLog log = new MetricsLog(System.out, dir.resolve("metrics.jsonl"), 12, steps, c.model().flopsPerToken(T), 1e11)) {
            m.initialize(c.train().seed(), c.train().initStd());
            trainer = new Trainer(c, m, data, new TrainState(42), log);
            trainer.run();

            // The held-out loss per source against an independent computation: each held-out row's loss from a batch of
            // B copies of that row (a whole-batch evaluate, no per-row bookkeeping), averaged over the rows of a source.
            Trainer.Validation v = trainer.validate();
            List<int[]> batches = data.validationMicroBatches(c.train().evalBatches());
            List<int[]> rowSrc = data.validationRowSources(c.train().evalBatches());
            double[] sum = new double[2];
            long[] n = new long[2];
            for (int i = 0; i < batches.size(); i++)
                for (int b = 0; b < B; b++) {
                    int[] copies = new int[B * (T + 1)];
                    for (int k = 0; k < B; k++) System.arraycopy(batches.get(i), b * (T + 1), copies, k * (T + 1), T + 1);
                    sum[rowSrc.get(i)[b]] += m.evaluate(copies) / B;
                    n[rowSrc.get(i)[b]] += T;
                }
            assertTrue(n[0] > 0 && n[1] > 0);
            // Not bit-identical on every processor. A row's result never depends on the other rows' values (no BLAS
            // mixes rows), but it can depend on the row's POSITION in the product: OpenBLAS's AVX2 sgemm kernels
            // (core types Haswell and Zen) take the token rows in panels of 12 and round rows 6-11 of each panel and
            // the tail rows in another order than rows 0-5 (seen on an AMD EPYC with OPENBLAS_CORETYPE=Haswell: 231 of
            // 240 row losses move when the row moves, by <= 1.2e-5 on a row sum of ~130; the AVX-512 kernels of
            // SkylakeX/Cooperlake give identical bits). The reference puts row b at every position, the validation at
            // position b only, so the two are the same float32 forward with the terms of its dot products reassociated.
            // Bound: reassociating a K-term float32 dot product moves it by at most K * 2^-24 of sum |a_i b_i|, here
            // K <= 2F = 176, i.e. 1.05e-5 relative per logit, which the loss inherits; the tolerance is that worst
            // case (measured: 2.1e-9 relative). A row counted under the wrong source moves a mean by > 1e-2.
            double tol = 176 * 0x1p-24;
            assertEquals(sum[0] / n[0], v.lossBySource().get("qa"), tol * Math.abs(sum[0] / n[0]));
            assertEquals(sum[1] / n[1], v.lossBySource().get("text"), tol * Math.abs(sum[1] / n[1]));
            assertTrue(v.lossBySource().get("text") > v.lossBySource().get("qa") + 0.5, v.lossBySource().toString());
        }

        ObjectMapper json = new ObjectMapper();
        List<String> lines = Files.readAllLines(dir.resolve("metrics.jsonl"));
        assertEquals(steps, lines.size());
        Map<String, List<Double>> history = Map.of("qa", new ArrayList<>(), "text", new ArrayList<>());
        long[] prevTokens = new long[2];
        for (String line : lines) {
            JsonNode o = json.readTree(line);
            JsonNode by = o.get("loss_by_source");
            assertNotNull(by, line);
            // the blended loss is the token-weighted mean of the per-source losses: the same per-token float losses
            // summed in double in another order (exact for these magnitudes), so only double rounding remains
            long nq = o.get("tokens_per_source").get("qa").asLong() - prevTokens[0], nt = o.get("tokens_per_source").get("text").asLong() - prevTokens[1];
            prevTokens[0] += nq;
            prevTokens[1] += nt;
            assertEquals(o.get("loss").asDouble(), (nq * by.get("qa").asDouble() + nt * by.get("text").asDouble()) / (nq + nt), 1e-9);
            for (String s : List.of("qa", "text")) {
                List<Double> h = history.get(s);
                h.add(by.get(s).asDouble());
                JsonNode vol = o.get("loss_volatility_by_source").get(s);
                if (h.size() < 3) assertTrue(vol.isNull());
                else assertEquals(detrendedStd(h.subList(Math.max(0, h.size() - MetricsLog.VOLATILITY_WINDOW_STEPS), h.size())), vol.asDouble(), 1e-12);
            }
            int step = o.get("step").asInt();
            assertEquals(step % 12 == 0, o.has("val_loss_by_source"), "step " + step);
        }
        JsonNode last = json.readTree(lines.get(steps - 1));
        assertEquals(last.get("val_loss").asDouble(), (last.get("val_loss_by_source").get("qa").asDouble()
                + last.get("val_loss_by_source").get("text").asDouble()) / 2, 0.2);   // about equal shares of held-out rows

        StringBuilder out = new StringBuilder();
        assertEquals(0, Cli.run(out, "plot", dir.toString()));
        for (String png : List.of("loss_by_source.png", "volatility.png")) {
            byte[] b = Files.readAllBytes(dir.resolve("plots").resolve(png));
            assertTrue(b.length > 1000 && b[1] == 'P' && b[2] == 'N' && b[3] == 'G', png);
        }
        assertEquals(2, Cli.run(out, "plot", "--window", "2", dir.toString()));
    }

    /**
     * Residual standard deviation of a least-squares line through (i, y_i), from the 2x2 normal equations with raw
     * sums (not centred, unlike the implementation); n - 2 degrees of freedom.
     */
    static double detrendedStd(List<Double> y) {
        int n = y.size();
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (int i = 0; i < n; i++) { sx += i; sy += y.get(i); sxx += (double) i * i; sxy += i * y.get(i); }
        double b = (n * sxy - sx * sy) / (n * sxx - sx * sx), a = (sy - b * sx) / n, ss = 0;
        for (int i = 0; i < n; i++) { double r = y.get(i) - a - b * i; ss += r * r; }
        return Math.sqrt(ss / (n - 2));
    }

    @Test
    void volatilityIgnoresASteadyTrendAndSeesScatter() {
        RollingVolatility v = new RollingVolatility(5);
        for (int i = 0; i < 10; i++) v.add(6.0 - 0.3 * i);                   // a straight descent: no volatility
        assertEquals(0.0, v.value(), 1e-12);
        RollingVolatility w = new RollingVolatility(4);
        double[] zigzag = {1, 3, 1, 3};                                       // fit line y = 1.4 + 0.4 i: residuals -0.4, 1.2, -1.2, 0.4
        for (double z : zigzag) w.add(z);
        assertEquals(Math.sqrt((0.16 + 1.44 + 1.44 + 0.16) / 2), w.value(), 1e-12);
    }
}
