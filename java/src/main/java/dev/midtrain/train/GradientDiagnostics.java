package dev.midtrain.train;

import dev.midtrain.model.Llama;
import dev.midtrain.model.ParamLayout;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Per-source gradients of one global batch (the paper's open question: why a QA blend makes the loss volatile).
 * For each source s with target tokens in the batch: zero the gradient slab, forward+backward every micro-batch with
 * only the rows of s kept (the other rows' targets ignored) and dloss = 1 / (s's valid targets), so the slab holds
 * g_s = the gradient of s's mean token loss; copy it to the host. Then, in double precision, per parameter group
 * (embed, layers.0 .. layers.L-1, head = final norm + lm_head) and over the whole model: ||g_s|| and the cosine
 * g_a . g_b / (||g_a|| ||g_b||) for each pair of sources.
 *
 * <p>Contract: runs before the step on the same micro-batches, overwrites the gradient slab (the step zeroes it
 * first), touches neither weights nor optimizer state, so the trained bits are those of a run without diagnostics.
 * Cost: one forward+backward of the global batch per source, and one host copy of the gradient slab per source
 * (one rank only: {@code RunConfig} refuses tp/dp > 1).
 */
public final class GradientDiagnostics {
    private GradientDiagnostics() {}

    /**
     * @param normBySource   ||g_s|| over the whole model, by source name
     * @param cosine         cosine between the gradients of each pair of sources ("a|b"), whole model
     * @param normByLayer    ||g_s|| per group, by source name then group name
     * @param cosineByLayer  cosine per group, by pair then group name
     * @param seconds        wall time of the measurement
     */
    public record Result(Map<String, Double> normBySource, Map<String, Double> cosine,
                         Map<String, Map<String, Double>> normByLayer, Map<String, Map<String, Double>> cosineByLayer,
                         double seconds) {

        /** Attaches the result to the next metrics.jsonl line (grad_norm_by_source, grad_cosine, *_by_layer.*). */
        public void attachTo(MetricsLog m) {
            m.attach("grad_norm_by_source", normBySource);
            m.attach("grad_cosine", cosine);
            normByLayer.forEach((s, v) -> m.attachQuiet("grad_norm_by_layer." + s, v));
            cosineByLayer.forEach((p, v) -> m.attachQuiet("grad_cosine_by_layer." + p, v));
            m.attachQuiet("grad_diagnostics", Map.of("seconds", seconds));
        }
    }

    /** The parameter group of a Hugging Face tensor name: embed, layers.N or head. */
    static String group(String name) {
        if (name.startsWith("model.embed_tokens")) return "embed";
        if (name.startsWith("model.layers.")) {
            int end = name.indexOf('.', "model.layers.".length());
            return "layers." + name.substring("model.layers.".length(), end);
        }
        return "head";
    }

    /**
     * @param micro       the step's micro-batches, int32[B, T+1] each
     * @param rowSources  the source index of each row of each micro-batch (null: all rows source 0)
     * @param names       the source names, by index
     */
    public static Result measure(Llama model, int[][] micro, int[][] rowSources, List<String> names) {
        long t0 = System.nanoTime();
        int B = model.microBatchSeqs(), T = model.seqLen();
        ParamLayout layout = model.layout();
        List<String> present = new ArrayList<>();
        List<float[]> grads = new ArrayList<>();
        for (int s = 0; s < names.size(); s++) {
            boolean[][] keep = new boolean[micro.length][B];
            long valid = 0;
            for (int i = 0; i < micro.length; i++)
                for (int b = 0; b < B; b++) {
                    keep[i][b] = (rowSources == null || rowSources[i] == null ? 0 : rowSources[i][b]) == s;
                    if (keep[i][b]) for (int t = 1; t <= T; t++) if (micro[i][b * (T + 1) + t] != Llama.IGNORE_INDEX) valid++;
                }
            if (valid == 0) continue;                                           // no tokens of s in this batch
            model.zeroGrad();
            for (int i = 0; i < micro.length; i++) {
                boolean any = false;
                for (boolean k : keep[i]) any |= k;
                if (any) model.forwardBackward(micro[i], 1f / valid, keep[i]);
            }
            float[] g = new float[Math.toIntExact(layout.numel())];
            model.backend().download(g, model.slabs().grads());
            present.add(names.get(s));
            grads.add(g);
        }
        // per group: sum of squares per source, dot per pair (double accumulation over fp32 gradients)
        Map<String, double[]> sq = new LinkedHashMap<>();                       // group -> [source]
        Map<String, double[]> dot = new LinkedHashMap<>();                      // group -> [pair]
        int S = present.size(), P = S * (S - 1) / 2;
        for (ParamLayout.Tensor x : layout.tensors()) {
            String grp = group(x.name());
            double[] q = sq.computeIfAbsent(grp, k -> new double[S]), d = dot.computeIfAbsent(grp, k -> new double[P]);
            int lo = Math.toIntExact(x.offset()), hi = Math.toIntExact(x.offset() + x.numel());
            for (int a = 0, p = 0; a < S; a++) {
                float[] ga = grads.get(a);
                double acc = 0;
                for (int j = lo; j < hi; j++) acc += (double) ga[j] * ga[j];
                q[a] += acc;
                for (int b = a + 1; b < S; b++, p++) {
                    float[] gb = grads.get(b);
                    double ab = 0;
                    for (int j = lo; j < hi; j++) ab += (double) ga[j] * gb[j];
                    d[p] += ab;
                }
            }
        }
        Map<String, Double> normBySource = new LinkedHashMap<>(), cosine = new LinkedHashMap<>();
        Map<String, Map<String, Double>> normByLayer = new LinkedHashMap<>(), cosineByLayer = new LinkedHashMap<>();
        double[] total = new double[S], totalDot = new double[P];
        for (String grp : sq.keySet()) {
            double[] q = sq.get(grp), d = dot.get(grp);
            for (int a = 0, p = 0; a < S; a++) {
                total[a] += q[a];
                normByLayer.computeIfAbsent(present.get(a), k -> new LinkedHashMap<>()).put(grp, Math.sqrt(q[a]));
                for (int b = a + 1; b < S; b++, p++) {
                    totalDot[p] += d[p];
                    cosineByLayer.computeIfAbsent(present.get(a) + "|" + present.get(b), k -> new LinkedHashMap<>())
                            .put(grp, d[p] / Math.sqrt(q[a] * q[b]));
                }
            }
        }
        for (int a = 0, p = 0; a < S; a++) {
            normBySource.put(present.get(a), Math.sqrt(total[a]));
            for (int b = a + 1; b < S; b++, p++)
                cosine.put(present.get(a) + "|" + present.get(b), totalDot[p] / Math.sqrt(total[a] * total[b]));
        }
        return new Result(normBySource, cosine, normByLayer, cosineByLayer, (System.nanoTime() - t0) / 1e9);
    }
}
