package dev.midtrain.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.ckpt.HfConfig;
import dev.midtrain.ckpt.ModelSource;
import dev.midtrain.common.UserError;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.RopeScaling;
import dev.midtrain.infer.Engine;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * config.json as transformers writes it, in both layouts (fixtures from scripts/fixtures/make_hf_configs.py, with the
 * eval golden model's weights): the 4.x layout (top-level rope_theta/rope_scaling, torch_dtype) and the layout
 * transformers 5.18 wrote (rope_parameters, dtype) must give the same model, and generate, eval, serve's engine and
 * train --init-from the same log-probabilities, bit for bit; what the engine does not implement is refused in one line.
 */
class HfConfigLayoutsTest {
    static final Path FIXTURES = Path.of("java/src/test/resources/hf-configs");
    static final Path WEIGHTS = Path.of("java/src/test/resources/golden/eval/model.safetensors");
    static final Path TOK = Path.of("data/tokenizer/tokenizer.json");
    static final ModelConfig LLAMA31 = new ModelConfig(512, 64, 2, 4, 2, 96, 500000.0, 1e-5, 512, false,
            new RopeScaling("llama3", 8.0, 1.0, 4.0, 64));
    static final ObjectMapper JSON = new ObjectMapper();

    @TempDir Path tmp;

    /** A Hugging Face directory: the fixture's config.json, the golden weights and the sample tokenizer. */
    Path checkpoint(String fixture) throws Exception {
        Path d = tmp.resolve(fixture);
        Files.createDirectories(d);
        Files.copy(FIXTURES.resolve(fixture).resolve("config.json"), d.resolve("config.json"));
        Files.copy(WEIGHTS, d.resolve("model.safetensors"));
        Files.copy(TOK, d.resolve("tokenizer.json"));
        return d;
    }

    @Test
    void bothLayoutsReadToTheSameModelAndUnknownMathIsRefused() throws Exception {
        assertEquals(LLAMA31, HfConfig.modelConfig(FIXTURES.resolve("llama31-t4/config.json")));
        assertEquals(LLAMA31, HfConfig.modelConfig(FIXTURES.resolve("llama31-t5/config.json")));
        assertEquals(new ModelConfig(512, 64, 2, 4, 2, 96, 500000.0, 1e-5, 512, false, null),
                HfConfig.modelConfig(FIXTURES.resolve("plain-t5/config.json")));
        assertEquals(HfConfig.Layout.TRANSFORMERS_4, HfConfig.Layout.of(HfConfig.read(FIXTURES.resolve("llama31-t4/config.json"))));
        assertEquals(HfConfig.Layout.TRANSFORMERS_5, HfConfig.Layout.of(HfConfig.read(FIXTURES.resolve("llama31-t5/config.json"))));

        Path yarn = FIXTURES.resolve("yarn-t5/config.json");
        assertRefused(() -> HfConfig.modelConfig(yarn), yarn + ": rope_parameters.rope_type yarn is not supported");
        // a field that changes the math and that the engine does not know, a key inside rope_parameters, a disagreement
        ObjectNode t5 = (ObjectNode) HfConfig.read(FIXTURES.resolve("llama31-t5/config.json"));
        Path f = tmp.resolve("config.json");
        for (Object[] c : new Object[][]{
                {t5.deepCopy().put("logits_scaling", 2.0), "field logits_scaling is not understood"},
                {t5.deepCopy().set("quantization_config", JSON.readTree("{\"quant_method\": \"gptq\"}")), "field quantization_config is not understood"},
                {withRope(t5, "partial_rotary_factor", 0.5), "rope_parameters.partial_rotary_factor is not understood"},
                {t5.deepCopy().put("rope_theta", 10000.0), "rope_theta 10000.0 disagrees with rope_parameters.rope_theta 500000.0"},
                {t5.deepCopy().put("attention_bias", true), "attention_bias true is not supported"},
                {t5.deepCopy().put("head_dim", 32), "head_dim 32 is not hidden_size / num_attention_heads"},
                {t5.deepCopy().put("hidden_act", "gelu"), "hidden_act \"gelu\" is not supported"}}) {
            Files.writeString(f, HfConfig.toText((JsonNode) c[0]));
            assertRefused(() -> HfConfig.modelConfig(f), f + ": " + c[1]);
        }
        // inert fields of any value are accepted (token ids, generation defaults)
        Files.writeString(f, HfConfig.toText(t5.deepCopy().put("pad_token_id", 3).put("temperature", 0.6)));
        assertEquals(LLAMA31, HfConfig.modelConfig(f));

        // written in either layout, read back to the same model, with exactly one dtype field
        for (HfConfig.Layout l : HfConfig.Layout.values()) {
            for (JsonNode base : new JsonNode[]{null, HfConfig.read(FIXTURES.resolve("llama31-t4/config.json")), t5}) {
                ObjectNode w = HfConfig.toJson(LLAMA31, "float32", base, l);
                Files.writeString(f, HfConfig.toText(w));
                assertEquals(LLAMA31, HfConfig.modelConfig(f), l + " " + w);
                assertEquals(l, HfConfig.Layout.of(w));
                boolean five = l == HfConfig.Layout.TRANSFORMERS_5;
                assertEquals("float32", w.path(five ? "dtype" : "torch_dtype").asText(), w.toString());
                assertFalse(w.has(five ? "torch_dtype" : "dtype") || w.has(five ? "rope_theta" : "rope_parameters")
                        || w.has(five ? "rope_scaling" : "rope_parameters"), "one layout only: " + w);
            }
        }
    }

    private static ObjectNode withRope(ObjectNode c, String key, double v) {
        ObjectNode o = c.deepCopy();
        ((ObjectNode) o.get("rope_parameters")).put(key, v);
        return o;
    }

    private static void assertRefused(org.junit.jupiter.api.function.Executable e, String prefix) {
        UserError u = assertThrows(UserError.class, e);
        assertTrue(u.getMessage().startsWith(prefix), "'" + u.getMessage() + "' starts with '" + prefix + "'");
        assertFalse(u.getMessage().contains("\n"), u.getMessage());
    }

    /**
     * Engine scoring (what generate, eval and serve load through ModelSource), eval's results, generate's text and
     * train --init-from's first loss: identical for the two layouts. The plain-RoPE config (what a reader that missed
     * rope_parameters would run) gives other log-probabilities, so the comparison can fail.
     */
    @Test
    void generateEvalServeAndTrainAgreeAcrossLayouts() throws Exception {
        Path t4 = checkpoint("llama31-t4"), t5 = checkpoint("llama31-t5"), plain = checkpoint("plain-t5");
        List<float[]> lp4 = scores(t4), lp5 = scores(t5), lpPlain = scores(plain);
        double maxDiff = 0;
        for (int i = 0; i < lp4.size(); i++) {
            assertArrayEquals(lp4.get(i), lp5.get(i), "request " + i + ": the same bits in both layouts");
            for (int k = 0; k < lp4.get(i).length; k++) maxDiff = Math.max(maxDiff, Math.abs(lp4.get(i)[k] - lpPlain.get(i)[k]));
        }
        assertTrue(maxDiff > 1e-3, "RoPE fields matter on this model (plain vs llama3 scaled differ by " + maxDiff + ")");
        assertEquals(LLAMA31, ModelSource.open(t5).model());

        // eval: the same results.json (accuracies per subject and tier)
        List<JsonNode> results = new ArrayList<>();
        for (Path d : List.of(t4, t5)) {
            StringBuilder s = new StringBuilder();
            Path out = tmp.resolve("eval-" + d.getFileName());
            assertEquals(0, run(s, "eval", "--init-from", d.toString(), "--tasks", "data/eval-sample/test.jsonl", "--limit", "24",
                    "--out", out.toString()), s.toString());
            ObjectNode r = (ObjectNode) JSON.readTree(out.resolve("results.json").toFile());
            r.remove(List.of("model", "seconds", "items_per_s"));     // timing and path differ; scores must not
            results.add(r);
        }
        assertEquals(results.get(0), results.get(1));

        // generate: the same greedy text
        List<String> texts = new ArrayList<>();
        for (Path d : List.of(t4, t5, plain)) {
            Cli.Run r = Cli.run("generate", "--init-from", d.toString(), "--prompt", "the energy of a photon", "--max-new-tokens", "24", "--ignore-eos");
            assertEquals(0, r.code(), r.err());
            texts.add(r.out());
        }
        assertEquals(texts.get(0), texts.get(1));

        // serve: the same echoed prompt log-probabilities (lm-eval's loglikelihood request) over HTTP
        assertEquals(servedLogprobs(t4), servedLogprobs(t5));

        // train --init-from: the same first-step loss; the plain-RoPE checkpoint is refused against the scaled config
        Path cfg = tmp.resolve("c.yaml");
        Files.writeString(cfg, """
                model: {vocab_size: 512, dim: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 96, rope_theta: 500000.0,
                        norm_eps: 1.0e-5, max_seq_len: 512, tied_embeddings: false,
                        rope_scaling: {rope_type: llama3, factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 64}}
                optimizer: {lr: 1.0e-30, min_lr: 0, warmup_steps: 0}
                train: {seq_len: 64, micro_batch_seqs: 2, global_batch_seqs: 2, steps: 1, log_every_steps: 1, eval_every_steps: 0, eval_batches: 1}
                """);
        List<Double> losses = new ArrayList<>();
        for (Path d : List.of(t4, t5)) {
            Path r = tmp.resolve("run-" + d.getFileName());
            StringBuilder s = new StringBuilder();
            assertEquals(0, run(s, "train", "--config", cfg.toString(), "--synthetic-data", "--no-checkpoints", "--run-dir", r.toString(),
                    "--init-from", d.toString()), s.toString());
            losses.add(JSON.readTree(Files.readAllLines(r.resolve("metrics.jsonl")).get(0)).get("loss").asDouble());
        }
        assertEquals(losses.get(0), losses.get(1));
        StringBuilder s = new StringBuilder();
        Path refused = tmp.resolve("run-plain");
        assertEquals(2, run(s, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", refused.toString(), "--init-from", plain.toString()));
        assertTrue(s.toString().contains("rope_scaling null != model.rope_scaling {rope_type: llama3"), s.toString());
        assertFalse(Files.exists(refused), "refused before the run directory exists");
    }

    /** `midtrain serve` on {@code dir} (a child JVM): token_logprobs of an echoed prompt, max_tokens 0. */
    private static JsonNode servedLogprobs(Path dir) throws Exception {
        List<String> out = java.util.Collections.synchronizedList(new ArrayList<>());
        Process p = TrainSignalTest.start(out, List.of(), "serve", "--checkpoint", dir.toString(), "--port", "0", "--threads", "1", "--model-name", "m");
        try {
            java.util.regex.Pattern listening = java.util.regex.Pattern.compile("on http://127\\.0\\.0\\.1:(\\d+)/v1");
            TrainSignalTest.await(p, out, () -> out.stream().anyMatch(l -> listening.matcher(l).find()), "listening");
            java.util.regex.Matcher m = out.stream().map(listening::matcher).filter(java.util.regex.Matcher::find).findFirst().orElseThrow();
            String prompt = "the energy of a photon depends on its frequency while the momentum of a moving body ".repeat(4);
            var r = java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
                            java.net.URI.create("http://127.0.0.1:" + m.group(1) + "/v1/completions"))
                    .POST(java.net.http.HttpRequest.BodyPublishers.ofString("{\"model\": \"m\", \"prompt\": \"" + prompt
                            + "\", \"max_tokens\": 0, \"echo\": true, \"logprobs\": 1, \"temperature\": 0}")).build(),
                    java.net.http.HttpResponse.BodyHandlers.ofString());
            assertEquals(200, r.statusCode(), r.body());
            JsonNode lp = JSON.readTree(r.body()).path("choices").path(0).path("logprobs").path("token_logprobs");
            assertTrue(lp.size() > 64, "past original_max_position_embeddings 64: " + r.body());
            return lp;
        } finally {
            p.destroyForcibly();
            p.waitFor();
        }
    }

    /** Token log-probabilities of a few requests (some past original_max_position_embeddings 64, where llama3 scaling acts). */
    private static List<float[]> scores(Path dir) {
        try (Engine e = Engine.load(dir, Engine.Options.cpu())) {
            List<Engine.Request> reqs = new ArrayList<>();
            java.util.Random rnd = new java.util.Random(7);
            for (int len : new int[]{5, 70, 200}) {
                int[] ctx = new int[len], cont = new int[4];
                ctx[0] = e.bosId();
                for (int i = 1; i < len; i++) ctx[i] = rnd.nextInt(500);
                for (int i = 0; i < 4; i++) cont[i] = rnd.nextInt(500);
                reqs.add(new Engine.Request(ctx, cont));
            }
            List<float[]> out = new ArrayList<>();
            for (Engine.Scored sc : e.score(reqs)) out.add(sc.tokenLogprobs());
            assertNotEquals(0, out.size());
            return out;
        }
    }
}
