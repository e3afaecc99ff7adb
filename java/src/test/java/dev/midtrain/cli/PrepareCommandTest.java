package dev.midtrain.cli;

import dev.midtrain.cli.Cli.Run;
import static dev.midtrain.cli.Cli.run;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** `midtrain prepare` through the CLI: success, and one-line errors with exit code 2 for bad input. */
class PrepareCommandTest {
    @TempDir Path tmp;


    @Test
    void preparesQaWithTemplateAndReportsMalformedLinesInOneLine() throws Exception {
        Path in = Files.writeString(tmp.resolve("qa.jsonl"), "{\"question\": \"What is 6 x 7?\", \"answer\": \"42.\", \"difficulty\": \"H1\"}\n{oops\n");
        Run bad = run("prepare", "--source", "qa", "--input", in.toString(), "--tokenizer", "data/tokenizer/tokenizer.json",
                "--out", tmp.resolve("o").toString(), "--format", "qa");
        assertEquals(2, bad.code());
        assertEquals("midtrain: " + in + ":2: malformed JSON: Unexpected character ('o' (code 111)): was expecting double-quote to start field name"
                + " (--on-error skip to skip such records)", bad.err().strip());
        assertFalse(Files.exists(tmp.resolve("o/manifest.json")));

        Run ok = run("prepare", "--source", "qa", "--input", in.toString(), "--tokenizer", "data/tokenizer/tokenizer.json",
                "--out", tmp.resolve("o").toString(), "--on-error", "skip", "--qa-template", "[{difficulty}] {question}\\n{answer}");
        assertEquals(0, ok.code(), ok.err());
        String manifest = Files.readString(tmp.resolve("o/manifest.json"));
        assertTrue(manifest.contains("\"malformed_json\" : 1"), manifest);
        assertTrue(manifest.contains("\"qa_template\" : \"[{difficulty}] {question}\\n{answer}\""), manifest);

        assertEquals(2, run("prepare", "--source", "x", "--input", "nope.jsonl", "--tokenizer", "data/tokenizer/tokenizer.json",
                "--out", tmp.resolve("p").toString()).code());
        Run badFlag = run("prepare", "--source", "x", "--input", in.toString(), "--tokenizer", "data/tokenizer/tokenizer.json",
                "--out", tmp.resolve("p").toString(), "--on-error", "ignore");
        assertEquals(2, badFlag.code());
        assertEquals("midtrain: --on-error: must be fail or skip, got ignore", badFlag.err().strip());
    }
}
