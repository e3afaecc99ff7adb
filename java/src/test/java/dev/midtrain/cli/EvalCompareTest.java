package dev.midtrain.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Issue 19 item 5: `eval --compare` refuses results of another task set or shot count, and checks its target before scoring. */
class EvalCompareTest {
    static final String HF = "java/src/test/resources/golden/eval", TOK = "data/tokenizer/tokenizer.json", TASKS = "data/eval-sample/test.jsonl";

    @Test
    void compareTargetIsValidatedBeforeScoringAndMustMatch(@TempDir Path tmp) throws Exception {
        StringBuilder s = new StringBuilder();
        Path first = tmp.resolve("first");
        assertEquals(0, run(s, "eval", "--init-from", HF, "--tokenizer", TOK, "--tasks", TASKS, "--limit", "6", "--out", first.toString()), s.toString());
        String json = first.resolve("results.json").toString();
        for (String[] c : new String[][]{
                {"--limit", "8", "--compare", json, "another task set (items per subject/tier: mathematics/H2 2 != 4"},
                {"--limit", "6", "--shots", "1", "--compare", json, "shot count 0 != this run's 1"},
                {"--limit", "6", "--compare", tmp.resolve("missing").toString(), "missing: not found"},
                {"--limit", "6", "--compare", tmp.toString(), "neither a committed step directory"}}) {
            s.setLength(0);
            String[] args = new String[c.length - 1];
            System.arraycopy(c, 0, args, 0, args.length);
            assertEquals(2, run(s, EvalTruncationTest.cat(new String[]{"eval", "--init-from", HF, "--tokenizer", TOK, "--tasks", TASKS,
                    "--out", tmp.resolve("o").toString()}, args)), s.toString());
            String err = s.toString().lines().filter(l -> l.startsWith("midtrain:")).findFirst().orElse("");
            assertTrue(err.contains(c[c.length - 1]), "'" + err + "' mentions '" + c[c.length - 1] + "'");
            assertFalse(s.toString().contains("items/s"), "refused before model A was scored: " + s);
        }
        s.setLength(0);           // the same tasks and shots compare
        assertEquals(0, run(s, "eval", "--init-from", HF, "--tokenizer", TOK, "--tasks", TASKS, "--limit", "6", "--compare", json,
                "--out", tmp.resolve("ok").toString()), s.toString());
        assertTrue(s.toString().contains("delta +0.0"), s.toString());
    }
}
