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

    /**
     * The built-in encoder (--encoder auto, the default for Llama-3-layout tokenizer.json files) and Hugging Face
     * tokenizers through DJL (--encoder hf) write byte-identical shards: the shipped KnowEdu and BoostQA samples plus
     * documents with CJK, emoji, a literal special-token string, CRLF runs and digits.
     */
    @Test
    void builtinAndHfEncodersWriteIdenticalShards() throws Exception {
        Path extra = Files.writeString(tmp.resolve("extra.jsonl"), String.join("\n",
                "{\"text\": \"\u5927\u8bed\u8a00\u6a21\u578b\u7684\u4e2d\u671f\u8bad\u7ec3\u3002 Mid-training, 12345 tokens!\"}",
                "{\"text\": \"emoji \ud83d\ude00\ud83d\udc4d\ufe0f, a literal <|end_of_text|> and <|begin_of_text|> stay text\"}",
                "{\"text\": \"lines\\r\\n\\r\\n   indented\\t\\ttabs  \\n\\n\\nend's we'LL I'M 3.14159\"}",
                "{\"text\": \"\"}") + "\n");
        for (String enc : new String[]{"auto", "hf"}) {
            Run r = run("prepare", "--source", "s", "--input", "data/knowedu/sample.jsonl", "data/boostqa/sample.jsonl", extra.toString(),
                    "--tokenizer", "data/tokenizer/tokenizer.json", "--out", tmp.resolve(enc).toString(), "--threads", "2", "--encoder", enc,
                    "--on-error", "skip");
            assertEquals(0, r.code(), r.err());
            assertTrue(r.err().contains(enc.equals("hf") ? "encoder: Hugging Face tokenizers via DJL (--encoder hf)" : "encoder: built-in byte-level BPE"), r.err());
        }
        try (var files = Files.list(tmp.resolve("hf"))) {
            var shards = files.filter(f -> f.getFileName().toString().endsWith(".arrow")).toList();
            assertFalse(shards.isEmpty());
            for (Path f : shards) assertEquals(-1L, Files.mismatch(f, tmp.resolve("auto").resolve(f.getFileName())), f.getFileName().toString());
        }
        Run bad = run("prepare", "--source", "s", "--input", extra.toString(), "--tokenizer", "data/tokenizer/tokenizer.json",
                "--out", tmp.resolve("bad").toString(), "--encoder", "rust");
        assertEquals(2, bad.code());
        assertEquals("midtrain: --encoder: auto or hf, got rust", bad.err().strip());
    }
}
