package dev.midtrain.infer;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The Engine API over a random model and the sample tokenizer: scoring, greedy and sampled generation, stops. */
class EngineTest {
    static final ModelConfig CFG = new ModelConfig(512, 32, 2, 4, 2, 48, 10000.0, 1e-5, 64, false);
    static CpuBackend be;
    static HostFloats w;
    static InferenceModel model;
    static Tokenizer tok;
    static Engine engine;

    @BeforeAll
    static void setUp() {
        be = new CpuBackend();
        ParamLayout layout = ParamLayout.of(CFG);
        w = InferenceModelTest.weights(layout, 21);
        model = new InferenceModel(be, layout, w, 96);
        tok = Tokenizer.open(Path.of("data/tokenizer/tokenizer.json"), "<|end_of_text|>");
        engine = Engine.of(model, tok);
    }

    @AfterAll
    static void tearDown() {
        model.close(); tok.close(); w.close(); be.close();
    }

    @Test
    void specialTokensAreFound() {
        assertEquals(510, engine.bosId());
        assertArrayEquals(new int[]{511}, engine.eosIds());
        assertEquals(510, engine.encodePrompt("hi")[0]);
    }

    @Test
    void logLikelihoodIsTheSumOfContinuationTokenLogprobs() {
        String prompt = "Question: which gas do plants take in?\nAnswer:";
        List<String> conts = List.of(" carbon dioxide", " oxygen", " 氮气");
        List<Engine.Scored> s = engine.logLikelihoods(prompt, conts);
        int[] ctx = engine.encodePrompt(prompt);
        for (int i = 0; i < conts.size(); i++) {
            int[] c = engine.encode(conts.get(i));
            int[] seq = Arrays.copyOf(ctx, ctx.length + c.length);
            System.arraycopy(c, 0, seq, ctx.length, c.length);
            float[] lp = model.tokenLogprobs(List.of(seq))[0];
            double want = 0;
            for (int t = ctx.length - 1; t < seq.length - 1; t++) want += lp[t];
            assertEquals(c.length, s.get(i).tokens());
            assertEquals(want, s.get(i).logprob(), 1e-4, conts.get(i));   // batched with the others vs alone: fp32 rounding
            assertTrue(s.get(i).logprob() < 0);
        }
        // too long for max_seq_len: the context is cut from the left, the continuation kept
        String longPrompt = "word ".repeat(200);
        Engine.Scored cut = engine.logLikelihoods(longPrompt, List.of(" end")).get(0);
        assertEquals(engine.encode(" end").length, cut.tokens());
    }

    @Test
    void greedyGenerationFollowsArgmaxOfARecompute() {
        List<String> pieces = new ArrayList<>();
        Engine.Generation g = engine.generate("The cell", new GenerateParams(20, 0, 1, 0, List.of(), false), pieces::add);
        assertEquals(20, g.tokens().length);
        assertEquals("length", g.finishReason());
        assertEquals(g.text(), String.join("", pieces));
        int[] prompt = engine.encodePrompt("The cell");
        List<Integer> seq = new ArrayList<>();
        for (int t : prompt) seq.add(t);
        for (int i = 0; i < 20; i++) {
            int next = Sampler.argmax(model.recomputeLogits(seq.stream().mapToInt(Integer::intValue).toArray()));
            assertEquals(next, g.tokens()[i], "token " + i);
            seq.add(next);
        }
        assertEquals(engine.decode(g.tokens()), g.text());
    }

    @Test
    void stopStringsCutTheTextAndAreNeverEmitted() {
        Engine.Generation full = engine.generate("Energy", new GenerateParams(30, 0, 1, 0, List.of(), false), null);
        assertTrue(full.text().length() > 6, full.text());
        String stop = full.text().substring(4, 6);                          // occurs in the greedy text
        int at = full.text().indexOf(stop);
        List<String> pieces = new ArrayList<>();
        Engine.Generation g = engine.generate("Energy", new GenerateParams(30, 0, 1, 0, List.of("\u0000never", stop), false), pieces::add);
        assertEquals(full.text().substring(0, at), g.text());
        assertEquals("stop", g.finishReason());
        assertEquals(g.text(), String.join("", pieces));
    }

    @Test
    void samplingIsSeededAndTopPNarrowsToGreedy() {
        GenerateParams a = new GenerateParams(16, 1.0, 1.0, 42, List.of(), false);
        Engine.Generation g1 = engine.generate("Light", a, null), g2 = engine.generate("Light", a, null);
        assertArrayEquals(g1.tokens(), g2.tokens());
        Engine.Generation g3 = engine.generate("Light", new GenerateParams(16, 1.0, 1.0, 43, List.of(), false), null);
        assertFalse(Arrays.equals(g1.tokens(), g3.tokens()));
        Engine.Generation greedy = engine.generate("Light", new GenerateParams(16, 0, 1, 0, List.of(), false), null);
        Engine.Generation nucleus = engine.generate("Light", new GenerateParams(16, 5.0, 1e-9, 7, List.of(), false), null);
        assertArrayEquals(greedy.tokens(), nucleus.tokens());               // a nucleus of one token is the argmax
        assertNotEquals(0, g1.tokens().length);
    }

    @Test
    void temperatureSamplingFollowsTheSoftmax() {
        float[] logits = {0f, 1f, 2f, -1f};
        double[] p = new double[4];
        double z = 0;
        for (int i = 0; i < 4; i++) z += p[i] = Math.exp(logits[i] / 0.7);
        Sampler s = new Sampler(0.7, 1.0, 5);
        int n = 200_000;
        int[] count = new int[4];
        for (int i = 0; i < n; i++) count[s.next(logits)]++;
        for (int i = 0; i < 4; i++) {
            double want = p[i] / z, sd = Math.sqrt(want * (1 - want) / n);
            assertEquals(want, count[i] / (double) n, 5 * sd, "token " + i);  // 5 standard errors
        }
        Sampler top = new Sampler(0.7, 0.8, 5);                            // nucleus {2, 1}: mass 0.763 < 0.8, + 0.183 >= 0.8
        int[] c2 = new int[4];
        for (int i = 0; i < 20_000; i++) c2[top.next(logits)]++;
        assertEquals(0, c2[0] + c2[3]);
        assertTrue(c2[1] > 0 && c2[2] > c2[1]);
    }

    @Test
    void badParamsAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> new GenerateParams(0, 0, 1, 0, List.of(), true));
        assertThrows(IllegalArgumentException.class, () -> new GenerateParams(5, -1, 1, 0, List.of(), true));
        assertThrows(IllegalArgumentException.class, () -> new GenerateParams(5, 1, 0, 0, List.of(), true));
        assertThrows(IllegalArgumentException.class, () -> new GenerateParams(5, 1, 1, 0, List.of(""), true));
    }
}
