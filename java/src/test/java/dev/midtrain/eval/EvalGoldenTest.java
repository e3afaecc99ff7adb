package dev.midtrain.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.infer.Engine;
import dev.midtrain.infer.GenerateParams;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Eval and generation parity with PyTorch: scripts/golden/make_eval_golden.py ran Hugging Face LlamaForCausalLM
 * (float64, from the same fp32 weights) over the shipped sample (data/eval-sample, 210 items, 0 and 2 shots) and
 * greedy-decoded 64 tokens from two prompts. Checked here: the shots drawn, every context and continuation token id
 * (the DJL tokenizer against Python's tokenizers), every choice's log-likelihood within 1e-4, every pick and the
 * accuracies exactly, and the 64 generated tokens exactly (KV-cache decoding).
 */
class EvalGoldenTest {
    static final Path DIR = Path.of("src/test/resources/golden/eval");
    static Engine engine;
    static JsonNode golden;

    @BeforeAll
    static void load() throws Exception {
        Path dir = Files.isDirectory(DIR) ? DIR : Path.of("java").resolve(DIR);
        engine = Engine.load(dir, Path.of("data/tokenizer/tokenizer.json"), new Engine.Options("cpu", 0, 0));
        golden = new ObjectMapper().readTree(dir.resolve("eval_golden.json").toFile());
    }

    @AfterAll
    static void close() { engine.close(); }

    @Test
    void logLikelihoodsAndAccuraciesMatchPyTorch() {
        List<McItem> test = McTasks.load(Path.of("data/eval-sample/test.jsonl"));
        List<McItem> dev = McTasks.load(Path.of("data/eval-sample/dev.jsonl"));
        assertEquals(210, test.size());
        for (JsonNode run : golden.get("runs")) {
            int k = run.get("shots").asInt();
            Map<String, List<McItem>> shots = McPrompt.shots(test, dev, k, run.get("seed").asLong());
            run.get("shot_indices").fields().forEachRemaining(e -> {
                List<Integer> want = new ArrayList<>(), got = new ArrayList<>();
                e.getValue().forEach(x -> want.add(x.asInt()));
                for (McItem s : shots.get(e.getKey())) got.add(dev.indexOf(s));
                assertEquals(want, got, k + "-shot shots of " + e.getKey());
            });
            List<Evaluator.ItemResult> res = Evaluator.run(engine, test, shots);
            int correct = 0, correctNorm = 0;
            double maxDiff = 0;
            for (JsonNode g : run.get("items")) {
                int i = g.get("index").asInt();
                McItem it = test.get(i);
                assertArrayEquals(ints(g.get("context")), engine.encodePrompt(McPrompt.context(it, shots.get(it.subject()))), "context ids of item " + i);
                for (int c = 0; c < it.choices().size(); c++) {
                    assertArrayEquals(ints(g.get("continuations").get(c)), engine.encode(McPrompt.continuation(it.choices().get(c))), "item " + i + " choice " + c);
                    double want = g.get("loglikelihoods").get(c).asDouble(), got = res.get(i).ll()[c];
                    maxDiff = Math.max(maxDiff, Math.abs(want - got));
                    // the tolerance: fp32 engine vs float64 reference, sums of up to ~10 token log-probs
                    assertEquals(want, got, 1e-4, k + "-shot item " + i + " choice " + c);
                }
                assertEquals(g.get("pred").asInt(), res.get(i).pred(), "acc pick of item " + i);
                assertEquals(g.get("pred_norm").asInt(), res.get(i).predNorm(), "acc_norm pick of item " + i);
                if (res.get(i).correct()) correct++;
                if (res.get(i).correctNorm()) correctNorm++;
            }
            assertEquals(run.get("correct").asInt(), correct, k + "-shot acc");
            assertEquals(run.get("correct_norm").asInt(), correctNorm, k + "-shot acc_norm");
            EvalReport rep = EvalReport.of("golden", k, res);
            assertEquals(run.get("acc").asDouble(), rep.microAcc(), 0.0);
            System.out.printf("%d-shot: acc %d/210, acc_norm %d/210, max |dLL| %.2e%n", k, correct, correctNorm, maxDiff);
        }
    }

    @Test
    void greedyGenerationOf64TokensMatchesPyTorch() {
        for (JsonNode g : golden.get("generations")) {
            int[] prompt = ints(g.get("prompt_ids"));
            assertArrayEquals(prompt, engine.encodePrompt(g.get("prompt").asText()), "prompt ids");
            Engine.Generation out = engine.generate(prompt, new GenerateParams(64, 0, 1, 0, List.of(), false), null);
            assertArrayEquals(ints(g.get("tokens")), out.tokens(), "greedy tokens for " + g.get("prompt").asText());
        }
    }

    static int[] ints(JsonNode a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).asInt();
        return out;
    }
}
