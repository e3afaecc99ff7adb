package dev.midtrain.data;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.complex.impl.UnionListWriter;
import org.apache.arrow.vector.ipc.ArrowStreamWriter;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.zip.GZIPOutputStream;

/** Helpers that write test inputs: JSONL (optionally gzip'd) and HF-datasets-style Arrow IPC streams. */
public final class TestData {
    public static final Path TOKENIZER = Path.of("data/tokenizer/tokenizer.json");
    public static final int EOS = 511;
    private static final String[] WORDS = ("the energy of a photon depends on its frequency while the momentum of a moving body "
            + "equals mass times velocity and acids donate protons in water solutions cells divide by mitosis binary search "
            + "halves the interval each step 42 7 3.14 x^2 + 3x = 10 H2O NaCl DNA").split(" ");

    private TestData() {}

    /** Meta-Llama-3's tokenizer.json ($MIDTRAIN_LLAMA3_TOKENIZER, or llama3/tokenizer.json in the midtrain cache), or null. */
    public static Path llama3Tokenizer() {
        String env = System.getenv("MIDTRAIN_LLAMA3_TOKENIZER");
        String cache = System.getenv("MIDTRAIN_CACHE");
        Path file = env != null ? Path.of(env)
                : (cache != null ? Path.of(cache) : Path.of(System.getProperty("user.home"), ".cache", "midtrain")).resolve("llama3/tokenizer.json");
        return Files.isRegularFile(file) ? file : null;
    }

    /** Deterministic pseudo-English text of {@code words} words. */
    public static String text(Random r, int words) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < words; i++) {
            if (i > 0) sb.append(r.nextInt(12) == 0 ? ". " : r.nextInt(40) == 0 ? "\n" : " ");
            sb.append(WORDS[r.nextInt(WORDS.length)]);
        }
        return sb.toString();
    }

    public static List<String> texts(long seed, int n, int maxWords) {
        Random r = new Random(seed);
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) out.add(text(r, 1 + r.nextInt(maxWords)));
        return out;
    }

    public static String json(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                default -> sb.append(c);
            }
        }
        return sb.append('"').toString();
    }

    public static Path writeLines(Path file, List<String> lines, boolean gzip) throws IOException {
        try (OutputStream os = gzip ? new GZIPOutputStream(Files.newOutputStream(file)) : Files.newOutputStream(file)) {
            for (String l : lines) os.write((l + "\n").getBytes(StandardCharsets.UTF_8));
        }
        return file;
    }

    /** An Arrow IPC stream with a nullable utf8 column {@code text}, {@code perBatch} rows per record batch. */
    public static Path arrowText(Path file, List<String> texts, int perBatch) throws IOException {
        try (BufferAllocator a = new RootAllocator(); VarCharVector v = new VarCharVector("text", a);
             VectorSchemaRoot root = VectorSchemaRoot.of(v);
             OutputStream os = Files.newOutputStream(file); ArrowStreamWriter w = new ArrowStreamWriter(root, null, os)) {
            w.start();
            for (int b = 0; b < texts.size(); b += perBatch) {
                int n = Math.min(perBatch, texts.size() - b);
                v.allocateNew(n);
                for (int i = 0; i < n; i++) {
                    String t = texts.get(b + i);
                    if (t == null) v.setNull(i);
                    else v.setSafe(i, t.getBytes(StandardCharsets.UTF_8));
                }
                v.setValueCount(n);
                root.setRowCount(n);
                w.writeBatch();
            }
            w.end();
        }
        return file;
    }

    /** An Arrow IPC stream with a {@code input_ids: list<int32>} column (as HF datasets writes tokenized data). */
    public static Path arrowIds(Path file, List<int[]> docs, int perBatch) throws IOException {
        try (BufferAllocator a = new RootAllocator(); ListVector v = ListVector.empty("input_ids", a)) {
            v.addOrGetVector(org.apache.arrow.vector.types.pojo.FieldType.nullable(new org.apache.arrow.vector.types.pojo.ArrowType.Int(32, true)));
            try (VectorSchemaRoot root = VectorSchemaRoot.of(v);
                 OutputStream os = Files.newOutputStream(file); ArrowStreamWriter w = new ArrowStreamWriter(root, null, os)) {
                w.start();
                for (int b = 0; b < docs.size(); b += perBatch) {
                    int n = Math.min(perBatch, docs.size() - b);
                    v.clear();
                    v.allocateNew();
                    UnionListWriter lw = v.getWriter();
                    for (int i = 0; i < n; i++) {
                        lw.setPosition(i);
                        lw.startList();
                        for (int id : docs.get(b + i)) lw.integer().writeInt(id);
                        lw.endList();
                    }
                    v.setValueCount(n);
                    root.setRowCount(n);
                    w.writeBatch();
                }
                w.end();
            }
        }
        return file;
    }

    /** All tokens of a prepared directory, in stream order. */
    public static int[] readAll(Path dir) {
        PreparedSource p = PreparedSource.open("t", dir, true);
        int[] all = new int[Math.toIntExact(p.tokens())];
        p.read(0, all, 0, all.length);
        return all;
    }

    public static int[] concat(List<int[]> parts) {
        int n = parts.stream().mapToInt(x -> x.length).sum();
        int[] out = new int[n];
        int o = 0;
        for (int[] p : parts) {
            System.arraycopy(p, 0, out, o, p.length);
            o += p.length;
        }
        return out;
    }

    public static int[] withEos(int[] ids) {
        int[] r = Arrays.copyOf(ids, ids.length + 1);
        r[ids.length] = EOS;
        return r;
    }
}
