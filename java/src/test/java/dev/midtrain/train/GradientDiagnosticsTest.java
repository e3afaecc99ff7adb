package dev.midtrain.train;

import dev.midtrain.config.RunConfig;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.Llama;
import dev.midtrain.model.ParamLayout;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Gradient diagnostics against a hand computation: each source's gradient from its own single-source micro-batch
 * (plain forwardBackward, dloss = 1 / its valid targets), norms and cosines summed in double here, per group and over
 * the model; the diagnostics see the same rows shuffled across micro-batches with the other source's rows masked.
 */
class GradientDiagnosticsTest {
    private static CpuBackend be;

    @BeforeAll static void open() { be = new CpuBackend(); }
    @AfterAll static void shut() { be.close(); }

    private static Llama model(RunConfig c) {
        Llama m = new Llama(be, ParamLayout.of(c.model(), 1, 0, c.optimizer().weightDecayExclude()),
                c.train().microBatchSeqs(), c.train().seqLen(), false, dev.midtrain.model.TpHooks.NONE);
        m.initialize(c.train().seed(), c.train().initStd());
        return m;
    }

    /** Groups by hand: layers.N for model.layers.N.*, embed for the embedding, head for the rest. */
    private static String groupOf(String name) {
        String[] p = name.split("\\.");
        if (p.length > 2 && p[1].equals("layers")) return "layers." + p[2];
        return p[1].equals("embed_tokens") ? "embed" : "head";
    }

    @Test
    void normsAndCosinesMatchSeparateSingleSourceBatches() {
        int V = 61, B = 3, T = 7;                                           // odd shapes
        RunConfig c = TrainerTest.config(V, 1, B, T, 2 * B, "stop", 0);
        SplittableRandom r = new SplittableRandom(20260);
        int[][] single = new int[2][B * (T + 1)];                           // single[s]: B rows of source s
        for (int[] mb : single) for (int i = 0; i < mb.length; i++) mb[i] = r.nextInt(V);
        single[1][T] = Llama.IGNORE_INDEX;                                  // an ignored (last) target: fewer valid tokens for source 1
        try (Llama m = model(c)) {
            ParamLayout layout = m.layout();
            // the hand computation: one plain pass per source
            List<float[]> g = new java.util.ArrayList<>();
            for (int[] mb : single) {
                m.zeroGrad();
                m.forwardBackward(mb, 1f / Llama.validTargets(mb, B, T));
                float[] all = new float[(int) layout.numel()];
                for (ParamLayout.Tensor x : layout.tensors()) System.arraycopy(m.getGrad(x.name()), 0, all, (int) x.offset(), (int) x.numel());
                g.add(all);
            }
            Map<String, double[]> byGroup = new LinkedHashMap<>();              // [aa, bb, ab]
            for (ParamLayout.Tensor x : layout.tensors()) {
                double[] acc = byGroup.computeIfAbsent(groupOf(x.name()), k -> new double[3]);
                for (long j = x.offset(); j < x.offset() + x.numel(); j++) {
                    double a = g.get(0)[(int) j], b = g.get(1)[(int) j];
                    acc[0] += a * a; acc[1] += b * b; acc[2] += a * b;
                }
            }
            double aa = 0, bb = 0, ab = 0;
            for (double[] v : byGroup.values()) { aa += v[0]; bb += v[1]; ab += v[2]; }

            // the same rows interleaved over two micro-batches: rows of source 0 at [0][0], [0][2], [1][1]
            int[][] mixed = new int[2][B * (T + 1)], src = {{0, 1, 0}, {1, 0, 1}};
            int[] next = new int[2];
            for (int i = 0; i < 2; i++)
                for (int b = 0; b < B; b++) {
                    int s = src[i][b], row = next[s]++;
                    System.arraycopy(single[s], row * (T + 1), mixed[i], b * (T + 1), T + 1);
                }
            GradientDiagnostics.Result res = GradientDiagnostics.measure(m, mixed, src, List.of("qa", "web"));

            // fp32 gradients summed in another order (rows in other micro-batches): 1e-5 relative is ~100 ulp of fp32
            double tol = 1e-5;
            assertEquals(Math.sqrt(aa), res.normBySource().get("qa"), tol * Math.sqrt(aa));
            assertEquals(Math.sqrt(bb), res.normBySource().get("web"), tol * Math.sqrt(bb));
            double cos = ab / Math.sqrt(aa * bb);
            assertEquals(cos, res.cosine().get("qa|web"), tol);
            assertTrue(Math.abs(cos) > 1e-3, "a cosine of " + cos + " would not test much");
            assertEquals(List.of("embed", "layers.0", "layers.1", "head"), List.copyOf(res.cosineByLayer().get("qa|web").keySet()));
            byGroup.forEach((grp, v) -> {
                assertEquals(Math.sqrt(v[0]), res.normByLayer().get("qa").get(grp), tol * Math.sqrt(v[0]), grp);
                assertEquals(Math.sqrt(v[1]), res.normByLayer().get("web").get(grp), tol * Math.sqrt(v[1]), grp);
                assertEquals(v[2] / Math.sqrt(v[0] * v[1]), res.cosineByLayer().get("qa|web").get(grp), tol, grp);
            });
        }
    }

    /** A source without rows in the batch is left out; one source alone has a norm and no cosine. */
    @Test
    void absentSourceIsLeftOut() {
        int V = 40, B = 2, T = 5;
        RunConfig c = TrainerTest.config(V, 1, B, T, B, "stop", 0);
        int[] mb = new int[B * (T + 1)];
        for (int i = 0; i < mb.length; i++) mb[i] = (7 * i + 3) % V;
        try (Llama m = model(c)) {
            GradientDiagnostics.Result res = GradientDiagnostics.measure(m, new int[][]{mb}, new int[][]{{1, 1}}, List.of("qa", "web"));
            assertEquals(List.of("web"), List.copyOf(res.normBySource().keySet()));
            assertTrue(res.cosine().isEmpty());
            m.zeroGrad();
            m.forwardBackward(mb, 1f / Llama.validTargets(mb, B, T));
            double sq = 0;
            for (ParamLayout.Tensor x : m.layout().tensors()) for (float v : m.getGrad(x.name())) sq += (double) v * v;
            assertEquals(Math.sqrt(sq), res.normBySource().get("web"), 1e-6 * Math.sqrt(sq));   // same rows, same order: fp32-identical sums
        }
    }
}
