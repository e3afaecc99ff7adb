package dev.midtrain.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Issue 19 item 3 (eval side): `eval` says when prompts are longer than the context and lose tokens from the left. */
class EvalTruncationTest {
    @Test
    void evalSaysWhenItTruncatesAContext(@TempDir Path tmp) throws Exception {
        Path golden = Path.of("java/src/test/resources/golden/eval"), small = tmp.resolve("ctx8");
        Files.createDirectories(small);
        Files.copy(golden.resolve("model.safetensors"), small.resolve("model.safetensors"));
        Files.writeString(small.resolve("config.json"), Files.readString(golden.resolve("config.json"))
                .replace("\"max_position_embeddings\": 512", "\"max_position_embeddings\": 8"));
        String[] args = {"eval", "--tokenizer", "data/tokenizer/tokenizer.json", "--tasks", "data/eval-sample/test.jsonl", "--limit", "4"};
        StringBuilder s = new StringBuilder();
        assertEquals(0, run(s, cat(args, "--init-from", small.toString(), "--out", tmp.resolve("a").toString())), s.toString());
        assertTrue(s.toString().matches("(?s).*eval: \\d+ of 16 scoring requests \\(context \\+ choice, up to \\d+ tokens\\) are longer than "
                + "max_seq_len = 8 tokens: their contexts lose tokens from the left, as lm-evaluation-harness's local-completions does \\(max_length=9\\).*"), s.toString());
        s.setLength(0);
        assertEquals(0, run(s, cat(args, "--init-from", golden.toString(), "--out", tmp.resolve("b").toString())), s.toString());
        assertFalse(s.toString().contains("longer than max_seq_len"), "no note when nothing is cut: " + s);
    }

    static String[] cat(String[] a, String... b) {
        String[] o = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, o, a.length, b.length);
        return o;
    }
}
