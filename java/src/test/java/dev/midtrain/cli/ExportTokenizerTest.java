package dev.midtrain.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Issue 19 item 2: a quickstart-like run (prepare with the shipped tokenizer, train, export) gives an export that
 * carries its tokenizer: tokenizer.json byte for byte and a tokenizer_config.json with bos/eos, so
 * {@code eval --init-from EXPORT} works without --tokenizer; one dtype field in config.json.
 */
class ExportTokenizerTest {
    @TempDir Path tmp;

    /** A tokenizer with Llama-3's chat tokens gets the Llama-3 Instruct chat template (the format serve renders). */
    @Test
    void llama3ChatTokensGetTheChatTemplate() throws Exception {
        ObjectMapper om = new ObjectMapper();
        com.fasterxml.jackson.databind.node.ObjectNode t = (com.fasterxml.jackson.databind.node.ObjectNode) om.readTree(Path.of("data/tokenizer/tokenizer.json").toFile());
        var added = (com.fasterxml.jackson.databind.node.ArrayNode) t.get("added_tokens");
        int id = 512;
        for (String tok : List.of("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))
            added.addObject().put("id", id++).put("content", tok).put("single_word", false).put("lstrip", false).put("rstrip", false)
                    .put("normalized", false).put("special", true);
        Path f = tmp.resolve("tokenizer.json");
        om.writeValue(f.toFile(), t);
        JsonNode c = ExportCommand.tokenizerConfig(f, 8192);
        assertEquals(ExportCommand.LLAMA3_CHAT_TEMPLATE, c.path("chat_template").asText());
        assertTrue(c.path("chat_template").asText().contains("<|start_header_id|>") && c.path("chat_template").asText().contains("<|eot_id|>"));
        assertEquals("<|begin_of_text|>", c.path("bos_token").asText());
        assertEquals("<|end_of_text|>", c.path("eos_token").asText());
        assertFalse(ExportCommand.tokenizerConfig(Path.of("data/tokenizer/tokenizer.json"), 8192).has("chat_template"));
    }

    @Test
    void exportOfAQuickstartLikeRunShipsAUsableTokenizer() throws Exception {
        Path tok = Path.of("data/tokenizer/tokenizer.json"), prep = tmp.resolve("prepared");
        Path in = tmp.resolve("qa.jsonl");
        Files.write(in, Files.readAllLines(Path.of("data/boostqa/sample.jsonl")).subList(0, 300));
        Cli.Run p = Cli.run("prepare", "--source", "boostqa", "--format", "qa", "--input", in.toString(), "--tokenizer", tok.toString(), "--out", prep.toString());
        assertEquals(0, p.code(), p.err());
        Path cfg = tmp.resolve("q.yaml"), runDir = tmp.resolve("run");
        Files.writeString(cfg, TrainCommandTest.CONFIG.replace("vocab_size: 96", "vocab_size: 512").replace("max_seq_len: 32", "max_seq_len: 128")
                .replace("steps: 6", "steps: 2").replace("/nonexistent", prep.toString()).replace("name: none", "name: boostqa"));
        StringBuilder s = new StringBuilder();
        assertEquals(0, run(s, "train", "--config", cfg.toString(), "--run-dir", runDir.toString()), s.toString());
        Path ex = tmp.resolve("export");
        assertEquals(0, run(s, "export", "--checkpoint", runDir.toString(), "--out", ex.toString(), "--dtype", "fp32"), s.toString());

        assertArrayEquals(Files.readAllBytes(tok), Files.readAllBytes(ex.resolve("tokenizer.json")));
        ObjectMapper om = new ObjectMapper();
        JsonNode tc = om.readTree(ex.resolve("tokenizer_config.json").toFile());
        assertEquals("<|begin_of_text|>", tc.path("bos_token").asText(), tc.toString());
        assertEquals("<|end_of_text|>", tc.path("eos_token").asText(), tc.toString());
        assertFalse(tc.has("chat_template"), "the sample tokenizer has no Llama-3 chat tokens: " + tc);
        JsonNode config = om.readTree(ex.resolve("config.json").toFile());
        assertEquals("float32", config.path("torch_dtype").asText(), config.toString());
        assertFalse(config.has("dtype"), "one dtype field: " + config);

        Path out = tmp.resolve("eval");
        s.setLength(0);
        assertEquals(0, run(s, "eval", "--init-from", ex.toString(), "--tasks", "data/eval-sample/test.jsonl", "--limit", "8",
                "--out", out.toString()), s.toString());
        assertTrue(Files.isRegularFile(out.resolve("results.json")));

        // a run with no tokenizer anywhere (synthetic data) is refused in one line unless --tokenizer is given
        Path syn = tmp.resolve("syn"), synCfg = tmp.resolve("syn.yaml");
        Files.writeString(synCfg, TrainCommandTest.CONFIG.replace("steps: 6", "steps: 1"));     // data.sources: /nonexistent
        assertEquals(0, run(s, "train", "--config", synCfg.toString(), "--synthetic-data", "--run-dir", syn.toString()));
        Cli.Run r = Cli.run("export", "--checkpoint", syn.toString(), "--out", tmp.resolve("e2").toString());
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("pass --tokenizer") && r.err().strip().lines().count() == 1, r.err());
        r = Cli.run("export", "--checkpoint", syn.toString(), "--out", tmp.resolve("e3").toString(), "--tokenizer", tok.toString(),
                "--config-layout", "transformers5");
        assertEquals(0, r.code(), r.err());
        JsonNode c5 = om.readTree(tmp.resolve("e3/config.json").toFile());
        assertEquals("bfloat16", c5.path("dtype").asText(), c5.toString());
        assertFalse(c5.has("torch_dtype") || c5.has("rope_theta"), c5.toString());
        assertTrue(List.of("tokenizer.json", "tokenizer_config.json").stream().allMatch(f -> Files.isRegularFile(tmp.resolve("e3").resolve(f))));
    }
}
