package dev.midtrain.eval;

import dev.midtrain.common.UserError;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.complex.impl.UnionListWriter;
import org.apache.arrow.vector.ipc.ArrowStreamWriter;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Task files: the JSONL answer forms, the MMLU and CMMLU Arrow layouts, shot selection, and bad input. */
class McTasksTest {

    @Test
    void jsonlAnswerFormsAndOptionalFields(@TempDir Path tmp) throws Exception {
        Path f = tmp.resolve("physics_test.jsonl");
        Files.writeString(f, """
                {"question": "q1", "choices": ["a", "b", "c"], "answer": 2, "discipline": "phys", "difficulty": "H4", "grade": "high"}
                {"question": "q2", "choices": ["a", "b"], "answer": "B"}

                {"Question": "q3", "A": "x", "B": "y", "C": "z", "Answer": "y", "difficulty": 1}
                """);
        List<McItem> it = McTasks.load(f);
        assertEquals(3, it.size());
        assertEquals(2, it.get(0).answer());
        assertEquals("phys", it.get(0).subject());
        assertEquals("H4", it.get(0).tier());
        assertEquals(1, it.get(1).answer());
        assertEquals("physics", it.get(1).subject());            // from the file name, split suffix dropped
        assertEquals("-", it.get(1).tier());
        assertEquals(List.of("x", "y", "z"), it.get(2).choices());
        assertEquals(1, it.get(2).answer());
        assertEquals("H1", it.get(2).tier());
    }

    @Test
    void badRecordsNameFileAndLine(@TempDir Path tmp) throws Exception {
        Path f = tmp.resolve("t.jsonl");
        for (String[] c : new String[][]{
                {"{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": \"E\"}", "answer E"},
                {"{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 5}", "answer index 5"},
                {"{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}", "at least 2 choices"},
                {"{\"choices\": [\"a\", \"b\"], \"answer\": 0}", "no question"},
                {"{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0, \"difficulty\": \"H7\"}", "H1..H5"},
                {"{\"question\": \"q\", \"choices\": [\"a\", null], \"answer\": 0}", "choices[1] is null"},
                {"{\"Question\": \"q\", \"A\": \"a\", \"B\": null, \"C\": \"c\", \"Answer\": \"A\"}", "choice B is null"},
                {"not json", "not a JSON object"}}) {
            Files.writeString(f, "{\"question\": \"ok\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n" + c[0] + "\n");
            UserError e = assertThrows(UserError.class, () -> McTasks.load(f));
            assertTrue(e.getMessage().startsWith(f + ":2: ") && e.getMessage().contains(c[1]), e.getMessage());
        }
        // a byte that is not UTF-8 (Latin-1 e-acute) on line 3: file, line and "not UTF-8"
        byte[] ok = "{\"question\": \"ok\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n".getBytes(java.nio.charset.StandardCharsets.UTF_8);
        java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
        b.write(ok);
        b.write(ok);
        b.write("{\"question\": \"caf".getBytes(java.nio.charset.StandardCharsets.UTF_8));
        b.write(0xe9);
        b.write("\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n".getBytes(java.nio.charset.StandardCharsets.UTF_8));
        Files.write(f, b.toByteArray());
        UserError u = assertThrows(UserError.class, () -> McTasks.load(f));
        assertEquals(f + ":3: not UTF-8 (task files must be UTF-8 encoded)", u.getMessage());
        Files.writeString(f, "\n");
        assertThrows(UserError.class, () -> McTasks.load(f));
        assertThrows(UserError.class, () -> McTasks.load(tmp.resolve("missing.jsonl")));
    }

    @Test
    void readsMmluAndCmmluArrowLayouts(@TempDir Path tmp) throws Exception {
        Path mmlu = tmp.resolve("mmlu-test.arrow"), cmmlu = tmp.resolve("agronomy-test.arrow");
        try (BufferAllocator a = new RootAllocator()) {
            // MMLU (cais/mmlu): question, subject, choices list<string>, answer int64
            VarCharVector q = new VarCharVector("question", a), s = new VarCharVector("subject", a);
            ListVector ch = ListVector.empty("choices", a);
            BigIntVector ans = new BigIntVector("answer", a);
            String[][] choices = {{"1", "2", "3", "4"}, {"red", "blue", "green", "yellow"}};
            UnionListWriter w = ch.getWriter();
            for (int i = 0; i < 2; i++) {
                q.setSafe(i, ("question " + i).getBytes(StandardCharsets.UTF_8));
                s.setSafe(i, "high_school_physics".getBytes(StandardCharsets.UTF_8));
                ans.setSafe(i, i + 1);
                w.setPosition(i);
                w.startList();
                for (String c : choices[i]) {
                    byte[] b = c.getBytes(StandardCharsets.UTF_8);
                    try (var buf = a.buffer(b.length)) { buf.setBytes(0, b); w.varChar().writeVarChar(0, b.length, buf); }
                }
                w.endList();
            }
            write(mmlu, List.of(q, s, ch, ans), 2);
            // CMMLU (haonan-li/cmmlu): Question, A, B, C, D, Answer (letter)
            List<FieldVector> cols = new ArrayList<>();
            String[] names = {"Question", "A", "B", "C", "D", "Answer"};
            String[] row = {"水稻属于哪一科？", "禾本科", "豆科", "菊科", "蔷薇科", "A"};
            for (int k = 0; k < names.length; k++) {
                VarCharVector v = new VarCharVector(names[k], a);
                v.setSafe(0, row[k].getBytes(StandardCharsets.UTF_8));
                cols.add(v);
            }
            write(cmmlu, cols, 1);
        }
        List<McItem> m = McTasks.load(mmlu);
        assertEquals(2, m.size());
        assertEquals(List.of("red", "blue", "green", "yellow"), m.get(1).choices());
        assertEquals(2, m.get(1).answer());
        assertEquals("high_school_physics", m.get(0).subject());
        List<McItem> c = McTasks.load(cmmlu);
        assertEquals("水稻属于哪一科？", c.get(0).question());
        assertEquals(0, c.get(0).answer());
        assertEquals("agronomy", c.get(0).subject());
    }

    private static void write(Path file, List<FieldVector> cols, int rows) throws Exception {
        for (FieldVector v : cols) v.setValueCount(rows);
        try (VectorSchemaRoot root = new VectorSchemaRoot(cols); OutputStream os = Files.newOutputStream(file);
             ArrowStreamWriter w = new ArrowStreamWriter(root, null, os)) {
            w.start();
            w.writeBatch();
            w.end();
        }
    }

    /**
     * The datasets cache that {@code load_dataset("haonan-li/cmmlu", SUBJECT)} leaves (fixture written by datasets itself,
     * scripts/fixtures/make_cmmlu_cache.py): every file is cmmlu-test.arrow, the subject is the config name.
     */
    @Test
    void cmmluSubjectsFromTheDatasetsCacheStaySeparate() {
        Path cache = Path.of("java/src/test/resources/cmmlu-cache/haonan-li___cmmlu");
        Map<String, Integer> counts = new java.util.TreeMap<>();
        for (String subject : List.of("agronomy", "anatomy")) {
            Path test = cache.resolve(subject).resolve("0.0.0/0a1b2c3d4e5f60718293a4b5c6d7e8f901234567/cmmlu-test.arrow");
            for (McItem it : McTasks.load(test)) {
                counts.merge(it.subject(), 1, Integer::sum);
                assertTrue(it.question().startsWith(it.subject() + " question"), it.question());
                assertEquals(List.of("甲", "乙", "丙", "丁"), it.choices());
            }
            assertEquals(subject, McTasks.load(McTasks.devSibling(test)).get(0).subject());
        }
        assertEquals(Map.of("agronomy", 3, "anatomy", 4), counts);
    }

    @Test
    void shotsAreTheSeededDevItemsOfTheSubject() {
        List<McItem> dev = new ArrayList<>();
        for (int i = 0; i < 6; i++) dev.add(new McItem("d" + i, List.of("a", "b"), 0, i % 2 == 0 ? "x" : "y", 0, "", "dev:" + i));
        List<McItem> test = List.of(new McItem("t", List.of("a", "b"), 1, "x", 0, "", "t:1"));
        var s1 = McPrompt.shots(test, dev, 2, 1234);
        var s2 = McPrompt.shots(test, dev, 2, 1234);
        var s3 = McPrompt.shots(test, dev, 5, 1234);
        assertEquals(s1, s2);
        assertEquals(2, s1.get("x").size());
        assertEquals(3, s3.get("x").size());                       // only three dev items of subject x
        assertTrue(s3.get("x").stream().allMatch(d -> d.subject().equals("x")));
        assertEquals("Question: d0\nAnswer: a\n\nQuestion: t\nAnswer:", McPrompt.context(test.get(0), List.of(dev.get(0))));
    }
}
