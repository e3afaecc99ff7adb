package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import dev.midtrain.data.TestData;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import dev.midtrain.tokenizer.Tokenizer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * prepare with Meta-Llama-3's real tokenizer.json (fetched by .ci/fetch-llama3-tokenizer.sh into
 * ~/.cache/midtrain/llama3/, or $MIDTRAIN_LLAMA3_TOKENIZER). Skipped, with a message on stderr, when absent.
 */
class Llama3TokenizerTest {
    static Path file;
    @TempDir Path tmp;

    @BeforeAll
    static void find() {
        String env = System.getenv("MIDTRAIN_LLAMA3_TOKENIZER");
        String cache = System.getenv("MIDTRAIN_CACHE");
        file = env != null ? Path.of(env)
                : (cache != null ? Path.of(cache) : Path.of(System.getProperty("user.home"), ".cache", "midtrain")).resolve("llama3/tokenizer.json");
        if (!Files.isRegularFile(file)) {
            System.err.println("SKIPPED Llama3TokenizerTest: " + file + " is absent; run .ci/fetch-llama3-tokenizer.sh");
            Assumptions.abort("Llama-3 tokenizer.json absent at " + file + " (run .ci/fetch-llama3-tokenizer.sh)");
        }
    }

    @Test
    void knownIdsAndNoTruncationPastFiveHundredTwelve() throws IOException {
        try (Tokenizer t = Tokenizer.open(file, "<|end_of_text|>")) {
            assertArrayEquals(new int[]{9906, 1917}, t.encode("Hello world"));
            assertArrayEquals(new int[]{128000}, t.encode("<|begin_of_text|>"));
            assertEquals(128001, t.info().eosId());
            assertEquals(128256, t.info().vocabSize());
            assertArrayEquals(new int[]{128000, 48, 25, 220, 17, 10, 17, 30, 128001}, t.encode("<|begin_of_text|>Q: 2+2?<|end_of_text|>"));
            prepareLongDocument(t);
        }
    }

    private void prepareLongDocument(Tokenizer t) throws IOException {
        StringBuilder longDoc = new StringBuilder();
        Random r = new Random(3);
        for (int i = 0; i < 1500; i++) longDoc.append("Hello world ").append(r.nextInt(1000)).append(' ');
        Path in = TestData.writeLines(tmp.resolve("l.jsonl"), List.of("{\"text\": \"Hello world\"}", "{\"text\": " + TestData.json(longDoc.toString()) + "}"), false);
        Manifest m = Preparer.run(Preparer.Options.of("llama", List.of(in), file, tmp.resolve("out")), new PrintStream(new ByteArrayOutputStream()), t);
        int[] all = TestData.readAll(tmp.resolve("out"));
        assertArrayEquals(new int[]{9906, 1917, 128001}, java.util.Arrays.copyOf(all, 3));
        assertTrue(all.length - 3 > 3000, "long document kept whole: " + (all.length - 3) + " tokens");
        assertEquals(128001, all[all.length - 1]);
        assertEquals(2, m.documents());
        assertEquals(128256, m.tokenizer().vocabSize());
    }
}
