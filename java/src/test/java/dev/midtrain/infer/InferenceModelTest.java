package dev.midtrain.infer;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.Llama;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.model.TpHooks;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * The forward-only model against the training model's forward (model.Llama, golden-tested against PyTorch), padding
 * independence of batched scoring, and key/value-cache decoding against recomputing the whole prefix at each step.
 * Odd sizes: vocabulary 67, head dim 6, group size 3.
 */
class InferenceModelTest {
    static final ModelConfig CFG = new ModelConfig(67, 36, 2, 6, 2, 40, 10000.0, 1e-5, 48, false);

    /** fp32 weights in the layout: N(0, 0.3^2) matrices (peaked logits), norm weights around 1. */
    static HostFloats weights(ParamLayout layout, long seed) {
        Random r = new Random(seed);
        HostFloats h = HostFloats.allocate(layout.numel());
        for (ParamLayout.Tensor t : layout.tensors())
            for (long i = 0; i < t.numel(); i++)
                h.put(t.offset() + i, t.shape().length == 1 ? (float) (1 + 0.1 * r.nextGaussian()) : (float) (0.3 * r.nextGaussian()));
        return h;
    }

    static int[] tokens(Random r, int n) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = r.nextInt(CFG.vocabSize());
        return t;
    }

    static double logSoftmaxAt(float[] logits, int id) {
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (float l : logits) max = Math.max(max, l);
        for (float l : logits) sum += Math.exp(l - max);
        return logits[id] - max - Math.log(sum);
    }

    @Test
    void batchedScoringMatchesTrainingForwardAndIgnoresPadding() {
        ParamLayout layout = ParamLayout.of(CFG);
        Random r = new Random(7);
        List<int[]> seqs = List.of(tokens(r, 30), tokens(r, 9), tokens(r, 2), tokens(r, 17));
        try (CpuBackend be = new CpuBackend(); HostFloats w = weights(layout, 11);
             InferenceModel m = new InferenceModel(be, layout, w, 4 * 29)) {
            float[][] batched = m.tokenLogprobs(seqs);
            for (int s = 0; s < seqs.size(); s++) {
                int[] seq = seqs.get(s);
                float[] alone = m.tokenLogprobs(List.of(seq))[0];
                // the training model's logits for the same sequence (B = 1, T = n-1)
                int T = seq.length - 1;
                float[] logits;
                try (Llama ref = new Llama(be, layout, 1, T, false, TpHooks.NONE)) {
                    be.copyHostToDevice(ref.slabs().params(), w.address(), 4L * layout.numel());
                    logits = ref.logits(seq);
                }
                for (int t = 0; t < T; t++) {
                    float[] row = java.util.Arrays.copyOfRange(logits, t * CFG.vocabSize(), (t + 1) * CFG.vocabSize());
                    double want = logSoftmaxAt(row, seq[t + 1]);
                    // fp32 forward on both sides, different GEMM shapes (M = 116 vs 29): rounding only, ~1e-6
                    assertEquals(want, alone[t], 2e-5, "seq " + s + " t " + t + " vs training forward");
                    assertEquals(alone[t], batched[s][t], 2e-5, "seq " + s + " t " + t + ": padded batch vs alone");
                }
            }
            assertThrows(IllegalArgumentException.class, () -> m.tokenLogprobs(List.of(new int[]{1, 67})));

            // only the last k rows of each sequence (scoring a continuation): the tails of the full rows
            int[] last = {5, 8, 1, 16};
            float[][] tails = m.tokenLogprobs(seqs, last);
            for (int s = 0; s < seqs.size(); s++) {
                assertEquals(last[s], tails[s].length);
                int n = batched[s].length;
                for (int t = 0; t < last[s]; t++)
                    // the same rows through an LM-head GEMM of 30 rows instead of 116 (the small-M kernel vs
                    // OpenBLAS): fp32 rounding of a 36-term dot product, ~1e-6 on the log-probabilities
                    assertEquals(batched[s][n - last[s] + t], tails[s][t], 2e-5, "seq " + s + " tail " + t);
            }
            assertThrows(IllegalArgumentException.class, () -> m.tokenLogprobs(seqs, new int[]{5, 9, 1, 16}));   // 9 > n-1 = 8
            assertThrows(IllegalArgumentException.class, () -> m.tokenLogprobs(seqs, new int[]{0, 1, 1, 1}));
            assertThrows(IllegalArgumentException.class, () -> m.tokenLogprobs(seqs, new int[]{1, 1, 1}));
        }
    }

    @Test
    void kvCacheDecodingEqualsRecomputingThePrefix() {
        ParamLayout layout = ParamLayout.of(CFG);
        Random r = new Random(3);
        int[] seq = tokens(r, 48);                               // up to max_seq_len: the cache fills completely
        try (CpuBackend be = new CpuBackend(); HostFloats w = weights(layout, 5);
             InferenceModel m = new InferenceModel(be, layout, w, 48);
             InferenceModel small = new InferenceModel(be, layout, w, 5)) {  // prefill in chunks of 5
            float[] full = m.tokenLogprobs(List.of(seq))[0];     // recomputed: the whole prefix in one causal pass
            for (InferenceModel mm : List.of(m, small)) {
                mm.reset();
                float[] logits = mm.prefill(java.util.Arrays.copyOf(seq, 13));
                for (int t = 12; t < 47; t++) {
                    // fp32, summation orders differ (flash tiles vs 64-key blocks, GEMM M): rounding only
                    assertEquals(full[t], logSoftmaxAt(logits, seq[t + 1]), 2e-5, "position " + t + " maxTokens " + mm.maxTokens());
                    logits = mm.decode(seq[t + 1]);
                }
                assertEquals(48, mm.cachedPositions());
                assertThrows(IllegalArgumentException.class, () -> mm.decode(1));   // past max_seq_len
            }
            // greedy continuations agree token for token: decode with the cache vs argmax of a full recompute
            m.reset();
            int[] prompt = java.util.Arrays.copyOf(seq, 5);
            float[] logits = m.prefill(prompt);
            List<Integer> gen = new ArrayList<>();
            for (int i = 0; i < 20; i++) {
                int next = Sampler.argmax(logits);
                gen.add(next);
                int[] prefix = new int[prompt.length + gen.size()];
                System.arraycopy(prompt, 0, prefix, 0, prompt.length);
                for (int j = 0; j < gen.size(); j++) prefix[prompt.length + j] = gen.get(j);
                assertEquals(gen.get(i), Sampler.argmax(m.recomputeLogits(java.util.Arrays.copyOf(prefix, prefix.length - 1))), "step " + i);
                logits = m.decode(next);
            }
        }
    }
}
