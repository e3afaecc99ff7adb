package dev.midtrain.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** `midtrain eval`, `midtrain generate` and eval.tasks during `midtrain train`, through the CLI with exit codes. */
class EvalCommandTest {
    static final String HF = "java/src/test/resources/golden/eval";
    static final String TOK = "data/tokenizer/tokenizer.json";

    @Test
    void evalWritesTableJsonHeatmapAndCompares(@TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("a");
        StringBuilder s = new StringBuilder();
        assertEquals(0, run(s, "eval", "--init-from", HF, "--tokenizer", TOK, "--tasks", "data/eval-sample/test.jsonl",
                "--limit", "24", "--shots", "1", "--out", out.toString()));
        assertTrue(s.toString().contains("discipline") && s.toString().contains("H1"), s.toString());
        JsonNode j = new ObjectMapper().readTree(out.resolve("results.json").toFile());
        assertEquals(24, j.get("items").asInt());
        assertEquals(24, j.get("per_item").size());
        assertTrue(j.get("cells").size() > 0);
        byte[] png = Files.readAllBytes(out.resolve("heatmap.png"));
        assertEquals((byte) 0x89, png[0]);
        // --compare with the same model: every delta is 0; with an earlier results.json as well
        s.setLength(0);
        assertEquals(0, run(s, "eval", "--init-from", HF, "--tokenizer", TOK, "--tasks", "data/eval-sample/test.jsonl",
                "--limit", "24", "--shots", "1", "--out", tmp.resolve("b").toString(), "--compare", out.resolve("results.json").toString()));
        JsonNode b = new ObjectMapper().readTree(tmp.resolve("b/results.json").toFile());
        assertEquals(0.0, b.get("compare").get("delta_acc").asDouble(), 0.0);
        assertTrue(s.toString().contains("A/B/delta"), s.toString());
        assertTrue(Files.size(tmp.resolve("b/heatmap.png")) > Files.size(out.resolve("heatmap.png")));   // three panels
    }

    @Test
    void badInputIsOneLineAndExit2(@TempDir Path tmp) throws Exception {
        Path bad = tmp.resolve("bad.jsonl");
        Files.writeString(bad, "{\"question\": \"q\", \"choices\": [\"a\", \"b\"]}\n");
        String[][] cases = {
                {"eval", "--init-from", HF, "--tokenizer", TOK, "--tasks", tmp.resolve("none.jsonl").toString()},
                {"eval", "--init-from", HF, "--tokenizer", TOK, "--tasks", bad.toString()},
                {"eval", "--init-from", HF, "--tokenizer", TOK, "--tasks", "data/eval-sample/test.jsonl", "--shots", "2", "--dev", bad.toString()},
                {"eval", "--init-from", HF, "--checkpoint", HF, "--tasks", "data/eval-sample/test.jsonl"},
                {"eval", "--init-from", tmp.toString(), "--tokenizer", TOK, "--tasks", "data/eval-sample/test.jsonl"},
                {"generate", "--init-from", HF, "--tokenizer", TOK, "--prompt", "x", "--top-p", "0"},
                {"generate", "--init-from", HF, "--tokenizer", TOK, "--prompt", "x", "--bogus"}};
        for (String[] c : cases) {
            StringBuilder s = new StringBuilder();
            assertEquals(2, run(s, c), String.join(" ", c) + " -> " + s);
            assertFalse(s.toString().contains("\tat "), s.toString());
            assertEquals(1, s.toString().strip().lines().filter(l -> l.startsWith("midtrain:")).count(), s.toString());
        }
    }

    @Test
    void generateStreamsGreedyText() {
        Cli.Run r = Cli.run("generate", "--init-from", HF, "--tokenizer", TOK, "--prompt", "Photosynthesis converts light into",
                "--max-new-tokens", "12", "--ignore-eos");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().startsWith("Photosynthesis converts light into"), r.out());
        assertTrue(r.err().contains("12 generated"), r.err());
    }

    @Test
    void evalTasksDuringTrainingAreLoggedAndPlotted(@TempDir Path tmp) throws Exception {
        Path cfg = tmp.resolve("c.yaml"), runDir = tmp.resolve("run");
        Files.writeString(cfg, TrainCommandTest.CONFIG.replace("vocab_size: 96", "vocab_size: 512").replace("max_seq_len: 32", "max_seq_len: 128")
                + "eval: {tasks: [data/eval-sample/test.jsonl], every_steps: 3, limit: 12, tokenizer: " + TOK + "}\n");
        StringBuilder s = new StringBuilder();
        assertEquals(0, run(s, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", runDir.toString(), "--peak-tflops", "0.1"));
        List<String> lines = Files.readAllLines(runDir.resolve("metrics.jsonl"));
        ObjectMapper om = new ObjectMapper();
        for (int i = 0; i < lines.size(); i++) {
            JsonNode o = om.readTree(lines.get(i));
            boolean due = o.get("step").asInt() % 3 == 0;
            assertEquals(due, o.has("eval_acc"), lines.get(i));
            if (due) {
                double acc = o.get("eval_acc").get("eval-sample").asDouble();
                assertTrue(acc >= 0 && acc <= 1 && Math.abs(acc * 12 - Math.round(acc * 12)) < 1e-9, lines.get(i));   // k/12
                assertTrue(o.get("eval_acc_norm").has("eval-sample"));
            }
        }
        assertTrue(s.toString().contains("eval_acc: eval-sample"), s.toString());
        assertEquals(0, run(s, "plot", runDir.toString()));
        assertTrue(Files.size(runDir.resolve("plots/eval.png")) > 1000);
        // more than one rank is refused at config time
        s.setLength(0);
        assertEquals(2, run(s, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", tmp.resolve("r2").toString(),
                "--set", "parallel.dp=2", "--set", "train.global_batch_seqs=8"));
        assertTrue(s.toString().contains("eval.tasks"), s.toString());
    }
}
