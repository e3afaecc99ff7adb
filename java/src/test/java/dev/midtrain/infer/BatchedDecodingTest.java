package dev.midtrain.infer;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.data.Preparer;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.ParamLayout;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Batched key/value-cache decoding (several slots, one GEMM with M rows per weight matrix per step) against each
 * sequence decoded alone and against recomputing its whole prefix without a cache; continuous batching (join mid-batch,
 * leave early); seeded sampling independent of the batch's composition.
 */
class BatchedDecodingTest {
    /** Logits tolerance of a batched step vs a single-sequence step, absolute, for logits of size ~1-30: both fp32 with
     * the same per-row arithmetic except the GEMMs, which may sum K in another order for M rows than for one (CpuBackend
     * sends small M (CpuBackend.SMALL_M) to its linear kernel, which computes each row alone, larger M to OpenBLAS with
     * its own blocking; cuBLAS picks algorithms by M): float rounding of sums of 36-40 products (~1e-7 relative each),
     * carried through two layers and the head; a right-padded prefill of several prompts likewise (M = B*T rows).
     * Measured on CPU: 0 at M = 4 (every row through the small-M kernel); 2.2e-5 with OpenBLAS against the kernel
     * (19 sequences: decode M = 19, prefill [19, 30]). */
    static final double BATCH_TOL = 5e-5;

    static int argmax(float[] x) { return Sampler.argmax(x); }

    static double maxAbsDiff(float[] a, float[] b) {
        double d = 0;
        for (int i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
        return d;
    }

    /**
     * Four prompts of lengths 1, 7, 13 and 22 greedily decoded for 18 steps in slots 0, 2, 3, 5 of a 6-slot model (two
     * kernel runs of consecutive slots) equal each prompt decoded alone in a 1-slot model: the same tokens, logits
     * within {@link #BATCH_TOL}; and each final prefix's recomputed logits (no cache) agree too.
     */
    @Test
    void batchedGreedyDecodingEqualsEachSequenceAlone() {
        batchedVsAlone(new int[]{1, 7, 13, 22}, new int[]{0, 2, 3, 5}, 6, 1234, false);
    }

    /**
     * The same with 19 sequences (M = 19: past CpuBackend's small-M GEMM path, OpenBLAS) in slots 1..19 of 20, their
     * prompts (1 to 30 tokens) prefilled together in one right-padded [19, 30] pass.
     */
    @Test
    void nineteenSequencesAtOnceEqualEachAlone() {
        int[] lens = {3, 1, 9, 30, 2, 17, 5, 12, 8, 21, 4, 6, 11, 1, 25, 14, 7, 19, 10}, slots = new int[lens.length];
        for (int i = 0; i < slots.length; i++) slots[i] = i + 1;
        batchedVsAlone(lens, slots, 20, 77, true);
    }

    private static void batchedVsAlone(int[] lens, int[] slots, int nSlots, long seed, boolean prefillTogether) {
        ModelConfig cfg = InferenceModelTest.CFG;                  // vocabulary 67, head dim 6, group size 3
        ParamLayout layout = ParamLayout.of(cfg);
        Random r = new Random(seed);
        List<int[]> prompts = new ArrayList<>();
        for (int n : lens) prompts.add(InferenceModelTest.tokens(r, n));
        int steps = 18;
        try (CpuBackend be = new CpuBackend(); HostFloats w = InferenceModelTest.weights(layout, 99);
             InferenceModel alone = new InferenceModel(be, layout, w, 48);
             InferenceModel batch = new InferenceModel(be, layout, w, 48 * 20, nSlots)) {
            // references: each sequence alone, its logits at every step
            int S = prompts.size();
            int[][] wantTok = new int[S][steps];
            float[][][] wantLogits = new float[S][steps][];
            for (int s = 0; s < S; s++) {
                alone.reset();
                float[] logits = alone.prefill(prompts.get(s));
                for (int t = 0; t < steps; t++) {
                    wantLogits[s][t] = logits;
                    wantTok[s][t] = argmax(logits);
                    if (t + 1 < steps) logits = alone.decode(wantTok[s][t]);
                }
            }
            // batched: every slot first holds another, longer sequence (stale keys past each new length, neighbours
            // that a wrong slot offset would read), then the four prompts are prefilled into their slots
            for (int s = 0; s < nSlots; s++) batch.prefill(s, InferenceModelTest.tokens(r, 40));
            float[][] logits = new float[S][];
            for (int s = 0; s < S; s++) batch.reset(slots[s]);
            if (prefillTogether) {
                logits = batch.prefill(slots, prompts.toArray(new int[0][]));
                for (int s = 0; s < S; s++) assertEquals(lens[s], batch.cachedPositions(slots[s]), "padding is not counted");
            } else
                for (int s = 0; s < S; s++) {
                    logits[s] = batch.prefill(slots[s], prompts.get(s));
                    // exact on any processor: one sequence prefilled alone into its slot is the same computation as
                    // the single-sequence model (same rows at the same positions, same kernels)
                    assertArrayEquals(wantLogits[s][0], logits[s], "prefill of slot " + slots[s] + " is the single-sequence computation");
                }
            double worst = 0;
            int[][] got = new int[S][steps];
            for (int t = 0; t < steps; t++) {
                int[] toks = new int[S];
                for (int s = 0; s < S; s++) {
                    worst = Math.max(worst, maxAbsDiff(wantLogits[s][t], logits[s]));
                    assertTrue(maxAbsDiff(wantLogits[s][t], logits[s]) <= BATCH_TOL, "seq " + s + " step " + t);
                    got[s][t] = toks[s] = argmax(logits[s]);
                }
                if (t + 1 < steps) logits = batch.decode(slots, toks);
            }
            for (int s = 0; s < S; s++) {
                // the logits agree within BATCH_TOL (asserted above), so the argmax is the same unless two logits tie
                // within it; fixed seeds, and checked under both OpenBLAS kernel families (AVX2 and AVX-512)
                assertArrayEquals(wantTok[s], got[s], "sequence " + s + " (prompt of " + lens[s] + ")");
                assertEquals(lens[s] + steps - 1, batch.cachedPositions(slots[s]));
                // independent of the cache: the whole prefix recomputed in one causal pass predicts the last token
                int[] prefix = Arrays.copyOf(prompts.get(s), lens[s] + steps - 1);
                System.arraycopy(got[s], 0, prefix, lens[s], steps - 1);
                float[] re = batch.recomputeLogits(prefix);
                assertTrue(maxAbsDiff(re, logits[s]) <= BATCH_TOL, "seq " + s + ": batched decode vs full recompute " + maxAbsDiff(re, logits[s]));
                assertEquals(got[s][steps - 1], argmax(re));
            }
            System.out.printf("batched vs single-sequence decode: max |logit diff| %.2e over %d steps x %d sequences%n", worst, steps, S);
            assertThrows(IllegalArgumentException.class, () -> batch.decode(new int[]{2, 2}, new int[]{1, 1}));   // a slot twice
            assertThrows(IllegalArgumentException.class, () -> batch.decode(new int[]{nSlots}, new int[]{1}));     // no such slot
        }
    }

    static final ModelConfig CFG = new ModelConfig(512, 32, 2, 4, 2, 48, 10000.0, 1e-5, 64, false);

    /** A 512-token random model and the sample tokenizer with {@code slots} cache slots. */
    record Fixture(CpuBackend be, HostFloats w, InferenceModel model, Preparer.Tok tok, Engine engine) implements AutoCloseable {
        static Fixture open(int slots, long seed) {
            CpuBackend be = new CpuBackend();
            ParamLayout layout = ParamLayout.of(CFG);
            HostFloats w = InferenceModelTest.weights(layout, seed);
            InferenceModel m = new InferenceModel(be, layout, w, 96, slots);
            Preparer.Tok tok = Preparer.Tok.open(Path.of("data/tokenizer/tokenizer.json"), "<|end_of_text|>");
            return new Fixture(be, w, m, tok, Engine.of(m, tok));
        }

        @Override
        public void close() { model.close(); tok.close(); w.close(); be.close(); }
    }

    /**
     * Continuous batching: A and B start together, B leaves after 3 tokens, C joins at step 5 into B's freed slot, D
     * joins later; each sequence's tokens equal its generation alone, and the steps run are fewer than the tokens made.
     */
    @Test
    void aSequenceJoiningMidBatchAndOneLeavingEarlyDoNotDisturbTheOthers() {
        try (Fixture f = Fixture.open(3, 21)) {
            Engine e = f.engine();
            String[] texts = {"The energy of a photon", "Plants take in", "Once upon a time, in a land far away,", "Water"};
            int[] maxNew = {30, 3, 20, 9};
            List<int[]> prompts = new ArrayList<>();
            List<GenerateParams> ps = new ArrayList<>();
            List<Engine.Generation> want = new ArrayList<>();
            for (int i = 0; i < texts.length; i++) {
                prompts.add(e.encodePrompt(texts[i]));
                ps.add(new GenerateParams(maxNew[i], 0, 1, 0, List.of(), false));
                want.add(e.generate(prompts.get(i), ps.get(i), null));
                assertEquals(maxNew[i], want.get(i).tokens().length);
            }
            Decoder d = new Decoder(e, 3);
            Decoder.Sequence a = d.join(prompts.get(0), ps.get(0), null), b = d.join(prompts.get(1), ps.get(1), null), c = null, dd = null;
            List<Decoder.Sequence> finished = new ArrayList<>();
            int step = 0;
            while (d.active() > 0) {
                step++;
                if (step == 5) { c = d.join(prompts.get(2), ps.get(2), null); assertNotNull(c, "B's slot is free by step 5"); }
                if (step == 9) { dd = d.join(prompts.get(3), ps.get(3), null); assertNotNull(dd); }
                List<Decoder.Sequence> done = d.step();
                finished.addAll(done);
                if (step == 2) assertEquals(List.of(b), done, "B's third token comes from step 2 (the first from its prefill)");
            }
            Decoder.Sequence[] seqs = {a, b, c, dd};
            for (int i = 0; i < seqs.length; i++) {
                assertArrayEquals(want.get(i).tokens(), seqs[i].result().tokens(), "sequence " + i);
                assertEquals(want.get(i).text(), seqs[i].result().text());
                assertEquals("length", seqs[i].result().finishReason());
            }
            assertEquals(4, finished.size());
            long made = Arrays.stream(maxNew).sum();
            // each token but a sequence's first (from its prefill) is one row of one step; steps < rows: real batching
            assertEquals(made - 4, d.decodedTokens());
            assertTrue(d.steps() < d.decodedTokens(), d.steps() + " steps for " + d.decodedTokens() + " decoded tokens");
            assertEquals(0, d.active());
            for (int s = 0; s < 3; s++) assertTrue(f.model().acquireSlot() >= 0, "every slot was given back");
            assertEquals(-1, f.model().acquireSlot());
        }
    }

    /**
     * Seeded sampling is per sequence: the same (prompt, seed) yields the same tokens alone, in a batch of 4 with other
     * prompts and seeds, in another slot, and in a batch where it joins late; two seeds on one prompt differ.
     */
    @Test
    void seededSamplingIsReproducibleWhateverTheBatch() {
        try (Fixture f = Fixture.open(4, 33)) {
            Engine e = f.engine();
            int[] p = e.encodePrompt("The energy of a photon");
            GenerateParams mine = new GenerateParams(24, 0.9, 0.95, 4242, List.of(), false);
            int[] alone = e.generate(p, mine, null).tokens();
            List<int[]> prompts = List.of(e.encodePrompt("Water"), p, e.encodePrompt("Plants take in carbon"), p);
            List<GenerateParams> ps = List.of(new GenerateParams(10, 1.0, 1, 1, List.of(), false), mine,
                    new GenerateParams(30, 0.7, 0.8, 99, List.of(), false), new GenerateParams(24, 0.9, 0.95, 4243, List.of(), false));
            List<Engine.Generation> g = e.generateAll(prompts, ps, null);
            assertArrayEquals(alone, g.get(1).tokens(), "in a batch of 4, slot 1");
            assertTrue(!Arrays.equals(alone, g.get(3).tokens()), "another seed, another sample");
            // reversed order (other slot, other neighbours), and with more prompts than slots (it joins when one frees)
            List<Engine.Generation> late = e.generateAll(List.of(prompts.get(2), prompts.get(0), prompts.get(2), prompts.get(0), p),
                    List.of(ps.get(2), ps.get(0), ps.get(2), ps.get(0), mine), null);
            assertArrayEquals(alone, late.get(4).tokens(), "joined late");
            assertArrayEquals(g.get(0).tokens(), late.get(1).tokens());
            assertArrayEquals(late.get(0).tokens(), late.get(2).tokens(), "same prompt and seed twice in one batch");
        }
    }

    /** Stop strings, EOS and the streamed pieces are per sequence; the decoder refuses bad prompts without taking a slot. */
    @Test
    void stopsAndStreamingArePerSequence() {
        try (Fixture f = Fixture.open(2, 21)) {
            Engine e = f.engine();
            int[] p1 = e.encodePrompt("The energy of a photon"), p2 = e.encodePrompt("Plants take in");
            Engine.Generation free = e.generate(p1, new GenerateParams(20, 0, 1, 0, List.of(), false), null);
            String stop = free.text().substring(3, 5);                          // a stop string the free text contains
            GenerateParams stopped = new GenerateParams(20, 0, 1, 0, List.of(stop), false);
            Engine.Generation want1 = e.generate(p1, stopped, null);
            Engine.Generation want2 = e.generate(p2, GenerateParams.greedy(15), null);
            StringBuilder s1 = new StringBuilder(), s2 = new StringBuilder();
            List<Engine.Generation> g = e.generateAll(List.of(p1, p2), List.of(stopped, GenerateParams.greedy(15)),
                    List.of(s1::append, s2::append));
            assertEquals("stop", g.get(0).finishReason());
            assertEquals(free.text().substring(0, free.text().indexOf(stop)), g.get(0).text());
            assertEquals(want1.text(), g.get(0).text());
            assertEquals(want2.text(), g.get(1).text());
            assertEquals(want2.finishReason(), g.get(1).finishReason());
            assertEquals(g.get(0).text(), s1.toString(), "streamed pieces add up to the text, never past the stop");
            assertEquals(g.get(1).text(), s2.toString());
            Decoder d = new Decoder(e, 2);
            assertThrows(IllegalArgumentException.class, () -> d.join(new int[0], GenerateParams.greedy(2), null));
            assertThrows(IllegalArgumentException.class, () -> d.join(new int[65], GenerateParams.greedy(2), null));   // > max_seq_len
            Decoder.Sequence full = d.join(new int[64], GenerateParams.greedy(2), null);   // max_seq_len: one token, then "length"
            assertTrue(full.finished());
            assertEquals(1, full.result().tokens().length);
            assertEquals("length", full.result().finishReason());
            assertThrows(IllegalArgumentException.class, () -> d.join(new int[]{600}, GenerateParams.greedy(2), null));
            assertEquals(0, d.active());
            assertNotNull(d.join(p1, GenerateParams.greedy(5), null));
            assertNotNull(d.join(p2, GenerateParams.greedy(5), null));
            assertNull(d.join(p2, GenerateParams.greedy(5), null), "both slots taken");
            d.close();
            assertEquals(0, d.active());
        }
    }
}
