package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.UserError;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

import static dev.midtrain.data.TestData.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * prepare --decontaminate-embeddings on a planted set (java/src/test/resources/embed/planted.jsonl, written by hand):
 * 12 benchmark questions, for each a paraphrase that shares no 10-gram with it (checked: the n-gram pass drops none)
 * and a near miss (same field and form, another question), rendered as QA documents among unrelated text. Asserted:
 * recall of the paraphrases >= 11/12 and precision 1 (no near miss, no unrelated document dropped) at the default
 * threshold with the bundled quantized all-MiniLM-L6-v2; the manifest lists each drop with its item and score; a
 * user model + tokenizer.json gives the same; a sliced prepare gives the same manifest.
 */
class EmbeddingDecontaminatorTest {
    static final Path PLANTED = Path.of("java/src/test/resources/embed/planted.jsonl");
    static final ObjectMapper OM = new ObjectMapper();
    static List<JsonNode> rows = new ArrayList<>();
    @TempDir Path tmp;
    final PrintStream quiet = new PrintStream(new ByteArrayOutputStream());

    @BeforeAll
    static void load() throws IOException {
        for (String l : Files.readAllLines(PLANTED)) rows.add(OM.readTree(l));
        assertEquals(12, rows.size());
    }

    /** docs-a.jsonl: paraphrases of even rows + near misses of odd rows + unrelated; docs-b.jsonl: the rest. */
    private List<Path> inputs() throws IOException {
        List<Path> out = new ArrayList<>();
        List<String> unrelated = texts(5, 20, 60);
        for (int part = 0; part < 2; part++) {
            List<String> lines = new ArrayList<>();
            for (int i = 0; i < rows.size(); i++) {
                JsonNode r = rows.get(i);
                String kind = (i + part) % 2 == 0 ? "paraphrase" : "near_miss";
                lines.add(OM.writeValueAsString(OM.createObjectNode().put("question", r.get(kind).asText()).put("answer", r.get("answer").asText())
                        .put("kind", kind).put("row", i)));
                lines.add(OM.writeValueAsString(OM.createObjectNode().put("question", unrelated.get(i + part * 8)).put("answer", "yes").put("kind", "unrelated").put("row", -1)));
            }
            out.add(writeLines(tmp.resolve("docs-" + (char) ('a' + part) + ".jsonl"), lines, false));
        }
        return out;
    }

    private Path bench() throws IOException {
        List<String> lines = new ArrayList<>();
        for (JsonNode r : rows) lines.add(OM.writeValueAsString(OM.createObjectNode().put("question", r.get("question").asText()).put("answer", r.get("answer").asText())));
        return writeLines(tmp.resolve("bench.jsonl"), lines, false);
    }

    private Preparer.Options opts(List<Path> in, String out, EmbeddingDecontaminator.Params p) throws IOException {
        return Preparer.Options.of("qa", in, TOKENIZER, tmp.resolve(out)).withBenchmarks(List.of(bench())).withThreads(2).withEmbeddings(p);
    }

    @Test
    void paraphrasesAreCaughtAndNearMissesKept() throws IOException {
        List<Path> in = inputs();
        EmbeddingDecontaminator.Params def = new EmbeddingDecontaminator.Params(null, null, EmbeddingDecontaminator.DEFAULT_THRESHOLD);
        Manifest m = Preparer.run(opts(in, "out", def), quiet);
        assertNull(m.dropped().get("decontaminated"), "the paraphrases share no 10-gram with the benchmark: " + m.dropped());
        Manifest.Embeddings e = m.decontamination().embeddings();
        assertEquals(EmbeddingDecontaminator.BUNDLED, e.model());
        assertEquals(12, e.items());
        // classify every drop by the planted kind of its document (file:line -> line of docs-x.jsonl)
        int truePos = 0, falsePos = 0;
        Set<Integer> caught = new TreeSet<>();
        for (Manifest.EmbeddingPair p : e.pairs()) {
            String[] wl = p.where().split(":(?=\\d+$)");
            JsonNode doc = OM.readTree(Files.readAllLines(Path.of(wl[0])).get(Integer.parseInt(wl[1]) - 1));
            if (doc.get("kind").asText().equals("paraphrase") && doc.get("row").asInt() == p.item()) {
                truePos++;
                caught.add(p.item());
                assertEquals(rows.get(p.item()).get("question").asText(), p.itemText());
            } else falsePos++;
            assertTrue(p.score() >= e.threshold(), p.toString());
        }
        double recall = truePos / 12.0, precision = truePos / (double) Math.max(1, truePos + falsePos);
        assertTrue(recall >= 11 / 12.0, "recall " + recall + ": caught " + caught + " " + e.pairs());
        assertEquals(1.0, precision, "precision: " + e.pairs());
        assertEquals((long) truePos, e.removed());
        assertEquals((long) truePos, m.dropped().get("decontaminated_embedding"));
        assertEquals(48 - truePos, m.documents(), "near misses and unrelated documents are all kept");
        assertEquals((long) truePos, m.decontamination().benchmarks().get(0).documentsRemoved());

        // the same model given as a user ONNX model + tokenizer.json
        Path model = copy("all-minilm-l6-v2-q.onnx"), tok = copy("all-minilm-l6-v2-q-tokenizer.json");
        Manifest u = Preparer.run(opts(in, "user", new EmbeddingDecontaminator.Params(model, tok, EmbeddingDecontaminator.DEFAULT_THRESHOLD)), quiet);
        assertEquals(e.pairs(), u.decontamination().embeddings().pairs());
        assertEquals(e.modelSha256(), u.decontamination().embeddings().modelSha256());

        // sliced: same manifest but its time
        Preparer.Options o = opts(in, "sliced", def);
        SlicedPrepare.runSlice(o, 2, 1, quiet);
        SlicedPrepare.runSlice(o, 2, 0, quiet);
        SlicedPrepare.merge(o, 2, quiet);
        assertEquals(SlicedPrepareTest.manifestWithoutTime(tmp.resolve("out")), SlicedPrepareTest.manifestWithoutTime(tmp.resolve("sliced")));

        assertThrows(UserError.class, () -> new EmbeddingDecontaminator.Params(model, null, 0.8));
        UserError noBench = assertThrows(UserError.class, () -> Preparer.Options.of("qa", in, TOKENIZER, tmp.resolve("x")).withEmbeddings(def));
        assertTrue(noBench.getMessage().startsWith("--decontaminate-embeddings: needs --decontaminate"));
        UserError notOnnx = assertThrows(UserError.class, () -> Preparer.run(opts(in, "bad", new EmbeddingDecontaminator.Params(tok, tok, 0.8)), quiet));
        assertTrue(notOnnx.getMessage().startsWith(tok + ": cannot load the ONNX model"), notOnnx.getMessage());
    }

    private Path copy(String resource) throws IOException {
        try (InputStream in = getClass().getClassLoader().getResourceAsStream(resource)) {
            Path f = tmp.resolve(resource);
            Files.copy(in, f);
            return f;
        }
    }
}
