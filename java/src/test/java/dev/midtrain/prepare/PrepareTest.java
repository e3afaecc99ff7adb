package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import dev.midtrain.data.PreparedSource;
import dev.midtrain.data.RefBpe;
import dev.midtrain.common.UserError;

import dev.midtrain.common.AtomicFiles;
import dev.midtrain.tokenizer.Tokenizer;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static dev.midtrain.data.TestData.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Every input format through `prepare`, checked against an independent reference tokenizer ({@link RefBpe}) on the
 * shipped tiny tokenizer.json: ids, end-of-text per document, counts in the manifest, sharding and thread invariance.
 */
class PrepareTest {
    static RefBpe ref;
    @TempDir Path tmp;

    /** Options.toBuilder copies every component (a field missing there would drop to its default) and of() keeps its defaults. */
    @Test
    void optionsBuilderCopiesEveryField() {
        List<Path> in = List.of(Path.of("a.jsonl")), bench = List.of(Path.of("b.jsonl"));
        Preparer.Options o = new Preparer.Options("s", in, Path.of("t.json"), Path.of("o"), Inputs.Format.QA, "tx", "ids", "{question}|{answer}",
                "<e>", bench, true, 3, 7, 70L, true, "<b>", true, new MinHashDedup.Params(4, 0.5, List.of()), true,
                new EmbeddingDecontaminator.Params(Path.of("m"), Path.of("mt"), 0.9));
        assertEquals(o, o.toBuilder().build());
        assertEquals(o.withThreads(5), new Preparer.Options("s", in, Path.of("t.json"), Path.of("o"), Inputs.Format.QA, "tx", "ids", "{question}|{answer}",
                "<e>", bench, true, 5, 7, 70L, true, "<b>", true, o.dedup(), true, o.embeddings()));
        Preparer.Options d = Preparer.Options.of("s", in, Path.of("t.json"), Path.of("o"));
        assertEquals(new Preparer.Options("s", in, Path.of("t.json"), Path.of("o"), null, "text", "input_ids", Preparer.DEFAULT_QA_TEMPLATE,
                Preparer.DEFAULT_EOS, List.of(), false, Math.max(1, Runtime.getRuntime().availableProcessors()), 1 << 20, 1L << 28,
                false, null, false, null, false, null), d);
    }
    final PrintStream quiet = new PrintStream(new ByteArrayOutputStream());

    @BeforeAll
    static void loadRef() throws IOException { ref = new RefBpe(TOKENIZER); }

    private Manifest prepare(Preparer.Options o) { return Preparer.run(o, quiet); }

    private Preparer.Options opts(String name, Path... in) { return Preparer.Options.of(name, List.of(in), TOKENIZER, tmp.resolve("out-" + name)); }

    private static int[] expected(List<String> docs) {
        List<int[]> parts = new ArrayList<>();
        for (String d : docs) parts.add(withEos(ref.encode(d)));
        return concat(parts);
    }

    @Test
    void tokenizerJsonIsLlama3StyleWith512ContiguousIds() throws IOException {
        try (Tokenizer t = Tokenizer.open(TOKENIZER, "<|end_of_text|>")) {
            assertEquals(512, t.info().vocabSize());
            assertEquals(511, t.info().eosId());
            assertArrayEquals(new int[]{510}, t.encode("<|begin_of_text|>"));
            String s = "Question: What is 12 x 7?\nAnswer: 84. Ünïcödé — ok";
            assertArrayEquals(ref.encode(s), t.encode(s));
            assertEquals(s, t.decode(t.encode(s)));   // byte-level BPE round-trips any text
        }
        var j = new com.fasterxml.jackson.databind.ObjectMapper().readTree(TOKENIZER.toFile());
        boolean[] seen = new boolean[512];
        j.path("model").path("vocab").forEach(v -> seen[v.asInt()] = true);
        j.path("added_tokens").forEach(v -> seen[v.path("id").asInt()] = true);
        for (int i = 0; i < 512; i++) assertTrue(seen[i], "id " + i + " missing");
    }

    @Test
    void jsonlTextWithLongDocumentIsNotTruncated() throws IOException {
        List<String> docs = new ArrayList<>(texts(1, 40, 60));
        docs.add(text(new Random(2), 2500));                       // thousands of tokens: DJL's default would cut at 512
        List<String> lines = docs.stream().map(d -> "{\"text\": " + json(d) + ", \"id\": 1}").toList();
        Path in = writeLines(tmp.resolve("a.jsonl"), lines, false);
        Manifest m = prepare(opts("txt", in));
        int[] want = expected(docs);
        assertTrue(withEos(ref.encode(docs.get(docs.size() - 1))).length > 2000);
        assertArrayEquals(want, readAll(tmp.resolve("out-txt")));
        assertEquals(docs.size(), m.documents());
        assertEquals(want.length, m.tokens());
        assertEquals("text", m.inputs().get(0).format());
        assertEquals(m.tokens(), m.files().stream().mapToLong(Manifest.ShardFile::tokens).sum());
    }

    @Test
    void jsonlQaRenderedWithTemplateIncludingMetadata() throws IOException {
        Path in = writeLines(tmp.resolve("qa.jsonl"), List.of(
                "{\"question\": \"What is 2 + 3?\", \"answer\": \"5.\", \"discipline\": \"mathematics\", \"grade\": \"high school\", \"difficulty\": \"H1\"}",
                "{\"question\": \"Name the powerhouse of the cell.\", \"answer\": \"The mitochondrion.\"}"), false);
        Manifest m = prepare(opts("qa", in).withFormat(Inputs.Format.QA).withQaTemplate("[{discipline}|{difficulty}] Q: {question}\nA: {answer}"));
        int[] want = expected(List.of("[mathematics|H1] Q: What is 2 + 3?\nA: 5.", "[|] Q: Name the powerhouse of the cell.\nA: The mitochondrion."));
        assertArrayEquals(want, readAll(tmp.resolve("out-qa")));
        assertEquals("[{discipline}|{difficulty}] Q: {question}\nA: {answer}", m.qaTemplate());
        // default template
        prepare(opts("qa2", in));
        assertArrayEquals(expected(List.of("Question: What is 2 + 3?\nAnswer: 5.", "Question: Name the powerhouse of the cell.\nAnswer: The mitochondrion.")),
                readAll(tmp.resolve("out-qa2")));
    }

    @Test
    void gzipJsonlAndMultipleInputsInOrder() throws IOException {
        List<String> a = texts(3, 30, 50), b = texts(4, 25, 50);
        Path ga = writeLines(tmp.resolve("a.jsonl.gz"), a.stream().map(d -> "{\"text\": " + json(d) + "}").toList(), true);
        Path pb = writeLines(tmp.resolve("b.jsonl"), b.stream().map(d -> "{\"text\": " + json(d) + "}").toList(), false);
        Manifest m = prepare(opts("gz", ga, pb));
        List<String> all = new ArrayList<>(a);
        all.addAll(b);
        assertArrayEquals(expected(all), readAll(tmp.resolve("out-gz")));
        assertEquals(30, m.inputs().get(0).documents());
        assertEquals(25, m.inputs().get(1).documents());
    }

    @Test
    void arrowStreamWithTextColumn() throws IOException {
        List<String> docs = texts(5, 53, 80);
        Path in = arrowText(tmp.resolve("data-00000-of-00001.arrow"), docs, 16);
        Manifest m = prepare(opts("arrowtext", in));
        assertEquals("text", m.inputs().get(0).format());
        assertEquals(53, m.inputs().get(0).records());
        assertArrayEquals(expected(docs), readAll(tmp.resolve("out-arrowtext")));
    }

    @Test
    void arrowStreamWithInputIdsListColumnAndTokensJsonl() throws IOException {
        Random r = new Random(6);
        List<int[]> docs = new ArrayList<>();
        for (int i = 0; i < 37; i++) {
            int[] d = new int[1 + r.nextInt(300)];
            for (int k = 0; k < d.length; k++) d[k] = r.nextInt(510);
            if (i % 5 == 0) d[d.length - 1] = EOS;                  // already terminated: not doubled
            docs.add(d);
        }
        List<int[]> want = new ArrayList<>();
        for (int[] d : docs) want.add(d[d.length - 1] == EOS ? d : withEos(d));

        Path arrow = arrowIds(tmp.resolve("tok.arrow"), docs, 10);
        Manifest m = prepare(opts("arrowids", arrow));
        assertEquals("tokens", m.inputs().get(0).format());
        assertArrayEquals(concat(want), readAll(tmp.resolve("out-arrowids")));

        List<String> lines = new ArrayList<>();
        for (int i = 0; i < docs.size(); i++) {
            String arr = java.util.Arrays.toString(docs.get(i));
            lines.add(i % 2 == 0 ? arr : "{\"input_ids\": " + arr + "}");   // bare arrays and objects both accepted
        }
        Path jl = writeLines(tmp.resolve("tok.jsonl"), lines, false);
        prepare(opts("jsonids", jl).withFormat(Inputs.Format.TOKENS));
        assertArrayEquals(concat(want), readAll(tmp.resolve("out-jsonids")));
    }

    @Test
    void manyShardsAndBatchesReadBackAsOneStreamAndThreadCountDoesNotMatter() throws IOException {
        List<String> docs = texts(7, 300, 40);
        Path in = writeLines(tmp.resolve("s.jsonl"), docs.stream().map(d -> "{\"text\": " + json(d) + "}").toList(), false);
        Manifest m1 = Preparer.run(opts("one", in).withThreads(1).withSharding(500, 2000), quiet);
        Manifest m2 = Preparer.run(opts("two", in).withThreads(2).withSharding(500, 2000), quiet);
        assertTrue(m1.files().size() > 3, "several shards");
        assertEquals(4, m1.files().get(0).recordBatches());
        assertArrayEquals(expected(docs), readAll(tmp.resolve("out-one")));
        assertEquals(m1.files().stream().map(Manifest.ShardFile::sha256).toList(), m2.files().stream().map(Manifest.ShardFile::sha256).toList());
        for (Manifest.ShardFile f : m1.files()) {
            assertEquals(f.bytes(), Files.size(tmp.resolve("out-one").resolve(f.name())));
            assertEquals(f.sha256(), AtomicFiles.sha256(tmp.resolve("out-one").resolve(f.name())));
        }
        // random access across batch and shard boundaries
        PreparedSource p = PreparedSource.open("one", tmp.resolve("out-one"), false);
        int[] all = readAll(tmp.resolve("out-one"));
        Random r = new Random(8);
        for (int t = 0; t < 200; t++) {
            int len = 1 + r.nextInt(2500), pos = r.nextInt(all.length - len);
            int[] got = new int[len];
            p.read(pos, got, 0, len);
            assertArrayEquals(java.util.Arrays.copyOfRange(all, pos, pos + len), got);
        }
    }

    @Test
    void rerunReplacesPreviousOutputAndRefusesForeignDirectory() throws IOException {
        Path in = writeLines(tmp.resolve("x.jsonl"), List.of("{\"text\": \"hello there\"}"), false);
        Preparer.Options o = opts("re", in).withSharding(1, 1);      // one token per shard: many files
        Manifest a = prepare(o);
        assertTrue(a.files().size() > 1);
        Path in2 = writeLines(tmp.resolve("y.jsonl"), List.of("{\"text\": \"hi\"}"), false);
        Manifest b = prepare(Preparer.Options.of("re", List.of(in2), TOKENIZER, o.out()));
        try (var s = Files.list(o.out())) {
            assertEquals(b.files().size() + 1, s.count(), "stale shards of the first run are removed");
        }
        Path foreign = tmp.resolve("foreign");
        Files.createDirectories(foreign);
        Files.writeString(foreign.resolve("notes.txt"), "mine");
        var e = assertThrows(UserError.class, () -> prepare(Preparer.Options.of("f", List.of(in), TOKENIZER, foreign)));
        assertTrue(e.getMessage().contains("notes.txt"), e.getMessage());
    }

    @Test
    void shardWriterBatchesReadBackThroughArrowWithoutNullsForEveryBatchLength() throws IOException {
        // ShardWriter copies each batch in bulk and sets the validity bitmap by bytes: every batch length mod 8 must
        // read back through Arrow's own reader with no nulls, the same values, and no validity bit set past the end
        Random r = new Random(11);
        int[] ids = new int[2000];
        for (int i = 0; i < ids.length; i++) ids[i] = r.nextInt(512);
        for (int batch : new int[]{1, 7, 8, 9, 13, 64, 1001}) {
            Path dir = tmp.resolve("w" + batch);
            Files.createDirectories(dir);
            List<Manifest.ShardFile> files;
            try (org.apache.arrow.memory.BufferAllocator alloc = new org.apache.arrow.memory.RootAllocator();
                 ShardWriter w = new ShardWriter(dir, batch, 3 * batch + 5, alloc)) {
                for (int off = 0; off < ids.length; off += 37) w.append(ids, off, Math.min(37, ids.length - off));
                files = w.finish();
            }
            List<Integer> got = new ArrayList<>();
            for (Manifest.ShardFile f : files) {
                try (org.apache.arrow.memory.BufferAllocator alloc = new org.apache.arrow.memory.RootAllocator();
                     var ch = Files.newByteChannel(dir.resolve(f.name()));
                     var reader = new org.apache.arrow.vector.ipc.ArrowFileReader(ch, alloc)) {
                    while (reader.loadNextBatch()) {
                        var v = (org.apache.arrow.vector.IntVector) reader.getVectorSchemaRoot().getVector(0);
                        assertEquals(0, v.getNullCount(), "batch " + batch);
                        for (int i = 0; i < v.getValueCount(); i++) got.add(v.get(i));
                        var valid = v.getValidityBuffer();
                        for (int i = v.getValueCount(); i < (v.getValueCount() + 7) / 8 * 8; i++)
                            assertEquals(0, org.apache.arrow.vector.BitVectorHelper.get(valid, i), "padding bit " + i + ", batch " + batch);
                    }
                }
            }
            assertArrayEquals(ids, got.stream().mapToInt(Integer::intValue).toArray(), "batch " + batch);
        }
    }
}
