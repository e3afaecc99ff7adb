package dev.midtrain.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.UserError;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowFileReader;
import org.apache.arrow.vector.ipc.ArrowReader;
import org.apache.arrow.vector.ipc.ArrowStreamReader;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Reads multiple-choice task files. One record per line (JSON Lines) or row (Hugging Face {@code datasets} Arrow,
 * IPC stream or file format), in any of these layouts:
 * <ul>
 *   <li>{@code question}, {@code choices} (list), {@code answer}: MMLU ({@code cais/mmlu}: answer an index, subject a
 *       column) and the engine's own JSONL;</li>
 *   <li>{@code Question}, {@code A}, {@code B}, {@code C}, {@code D}, {@code Answer}: CMMLU ({@code haonan-li/cmmlu});</li>
 * </ul>
 * {@code answer} may be an index (0-based), a letter (A, B, ...) or the text of the right choice. Optional:
 * {@code subject} or {@code discipline} (default: the file name without a {@code _test}/{@code -dev}-style suffix, or
 * the directory's name for a bare {@code test.jsonl}; for a {@code datasets} cache Arrow file the dataset's config
 * name, see {@link #arrowSubject}),
 * {@code difficulty} (H1-H5 or 1-5), {@code grade}. A malformed record (a null choice included) is an error naming
 * file and line/row; JSONL must be UTF-8 (a bad byte names its line).
 */
public final class McTasks {
    private McTasks() {}
    private static final ObjectMapper JSON = new ObjectMapper();

    public static List<McItem> load(Path file) {
        try {
            return isArrow(file) ? arrow(file) : jsonl(file);
        } catch (NoSuchFileException e) {
            throw new UserError(file + ": task file not found");
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage());
        }
    }

    /** The dev split beside a test file: the same name with "test" replaced by "dev", if that file exists. */
    public static Path devSibling(Path test) {
        String n = test.getFileName().toString();
        if (!n.contains("test")) return null;
        Path dev = test.resolveSibling(n.replace("test", "dev"));
        return Files.isRegularFile(dev) ? dev : null;
    }

    static String defaultSubject(Path file) {
        String n = file.getFileName().toString();
        int dot = n.indexOf('.');
        if (dot > 0) n = n.substring(0, dot);
        if (n.matches("test|dev|val|validation|train") && file.toAbsolutePath().getParent() != null)
            return file.toAbsolutePath().getParent().getFileName().toString();      // eval-sample/test.jsonl -> eval-sample
        return n.replaceAll("[-_](test|dev|val|validation|train)$", "");
    }

    private static List<McItem> jsonl(Path file) throws IOException {
        List<McItem> out = new ArrayList<>();
        byte[] bytes = Files.readAllBytes(file);
        String subject = defaultSubject(file);
        int no = 0;
        for (int start = 0; start < bytes.length; ) {
            int end = start;
            while (end < bytes.length && bytes[end] != '\n') end++;
            no++;
            String line;
            try {                                                            // strict: a bad byte names its line
                line = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes, start, end - start)).toString();
            } catch (CharacterCodingException e) {
                throw new UserError(file + ":" + no + ": not UTF-8 (task files must be UTF-8 encoded)");
            }
            start = end + 1;
            {
                if (line.isBlank()) continue;
                String where = file + ":" + no;
                JsonNode n;
                try {
                    n = JSON.readTree(line);
                } catch (IOException e) {
                    throw new UserError(where + ": not a JSON object");
                }
                if (n == null || !n.isObject()) throw new UserError(where + ": not a JSON object");
                Map<String, Object> row = new LinkedHashMap<>();
                for (Iterator<Map.Entry<String, JsonNode>> it = n.fields(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> e = it.next();
                    JsonNode v = e.getValue();
                    if (v.isArray()) {
                        List<Object> l = new ArrayList<>();
                        v.forEach(x -> l.add(x.isNull() ? NULL : x.isTextual() ? x.asText() : x.toString()));
                        row.put(e.getKey(), l);
                    } else if (v.isIntegralNumber()) row.put(e.getKey(), v.asLong());
                    else row.put(e.getKey(), v.isNull() ? NULL : v.isTextual() ? v.asText() : v.toString());
                }
                out.add(item(row, subject, where));
            }
        }
        if (out.isEmpty()) throw new UserError(file + ": no items");
        return out;
    }

    private static List<McItem> arrow(Path file) throws IOException {
        boolean fileFormat;
        try (InputStream in = Files.newInputStream(file)) {
            fileFormat = new String(in.readNBytes(6), StandardCharsets.US_ASCII).equals("ARROW1");
        }
        List<McItem> out = new ArrayList<>();
        long row = 0;
        String subject = null;
        try (BufferAllocator alloc = new RootAllocator();
             FileChannel ch = FileChannel.open(file, StandardOpenOption.READ);
             ArrowReader r = fileFormat ? new ArrowFileReader(ch, alloc) : new ArrowStreamReader(ch, alloc)) {
            VectorSchemaRoot root = r.getVectorSchemaRoot();
            List<org.apache.arrow.vector.ipc.message.ArrowBlock> blocks = fileFormat ? ((ArrowFileReader) r).getRecordBlocks() : null;
            int bi = 0;
            while (fileFormat ? bi < blocks.size() && ((ArrowFileReader) r).loadRecordBatch(blocks.get(bi++)) : r.loadNextBatch()) {
                for (int i = 0; i < root.getRowCount(); i++, row++) {
                    Map<String, Object> m = new LinkedHashMap<>();
                    for (FieldVector v : root.getFieldVectors()) {
                        Object o = v.getObject(i);
                        if (o instanceof List<?> l) {
                            List<Object> s = new ArrayList<>();
                            for (Object x : l) s.add(x == null ? NULL : x.toString());
                            m.put(v.getName(), s);
                        } else if (o instanceof Number num && !(o instanceof Float) && !(o instanceof Double)) m.put(v.getName(), num.longValue());
                        else m.put(v.getName(), o == null ? NULL : o.toString());
                    }
                    if (subject == null) subject = arrowSubject(file);
                    out.add(item(m, subject, file + ": row " + row));
                }
            }
        } catch (UserError e) {
            throw e;
        } catch (IOException | RuntimeException e) {
            throw new UserError(file + ": row " + row + ": not a readable Arrow IPC file or stream (" + e.getMessage() + ")");
        }
        if (out.isEmpty()) throw new UserError(file + ": no items");
        return out;
    }

    static McItem item(Map<String, Object> r, String defaultSubject, String where) {
        Object q = first(r, "question", "Question");
        if (q == null) throw new UserError(where + ": no question field (question or Question)");
        List<String> choices = new ArrayList<>();
        Object c = r.get("choices");
        if (c instanceof List<?> l) {
            for (Object x : l) {
                if (x == NULL) throw new UserError(where + ": choices[" + choices.size() + "] is null");
                choices.add(x.toString());
            }
        } else if (c != null && c != NULL) throw new UserError(where + ": choices must be a list");
        else if (c == NULL) throw new UserError(where + ": choices is null");
        else for (String k : List.of("A", "B", "C", "D", "E", "F")) {
            if (r.get(k) == NULL) throw new UserError(where + ": choice " + k + " is null");
            if (r.get(k) != null) choices.add(r.get(k).toString());
        }
        if (choices.size() < 2) throw new UserError(where + ": needs at least 2 choices (a choices list or A, B, C, D fields)");
        Object a = first(r, "answer", "Answer");
        if (a == null) throw new UserError(where + ": no answer field");
        int ans;
        if (a instanceof Long n) ans = n.intValue();
        else {
            String s = a.toString().strip();
            if (s.length() == 1 && s.charAt(0) >= 'A' && s.charAt(0) < 'A' + choices.size()) ans = s.charAt(0) - 'A';
            else if (choices.contains(s)) ans = choices.indexOf(s);
            else if (s.matches("\\d+")) ans = Integer.parseInt(s);
            else throw new UserError(where + ": answer " + s + " is neither an index, a letter nor one of the choices");
        }
        if (ans < 0 || ans >= choices.size()) throw new UserError(where + ": answer index " + ans + " outside the " + choices.size() + " choices");
        Object subj = first(r, "subject", "discipline");
        int diff = 0;
        Object d = first(r, "difficulty");
        if (d != null) {
            String s = d.toString().strip().toUpperCase(Locale.ROOT);
            if (s.startsWith("H")) s = s.substring(1);
            if (!s.matches("[1-5]")) throw new UserError(where + ": difficulty " + d + " is not H1..H5");
            diff = Integer.parseInt(s);
        }
        Object g = first(r, "grade");
        return new McItem(q.toString(), choices, ans, subj == null ? defaultSubject : subj.toString(), diff, g == null ? "" : g.toString(), where);
    }

    private static Object first(Map<String, Object> r, String... keys) {
        for (String k : keys) if (r.get(k) != null && r.get(k) != NULL) return r.get(k);
        return null;
    }

    /** A JSON null or Arrow null value: absent for optional fields, refused where a choice is expected. */
    private static final Object NULL = new Object();

    /**
     * The default subject of a Hugging Face {@code datasets} Arrow file: the dataset's config name, from the
     * {@code dataset_info.json} beside it or the cache path ({@code namespace___dataset/CONFIG/version/hash/name-test.arrow}),
     * since every file there has the same name (CMMLU: {@code cmmlu-test.arrow} for each of its 67 subjects);
     * otherwise {@link #defaultSubject}.
     */
    static String arrowSubject(Path file) {
        Path info = file.toAbsolutePath().resolveSibling("dataset_info.json");
        if (Files.isRegularFile(info)) {
            try {
                JsonNode cfg = JSON.readTree(Files.readString(info)).path("config_name");
                if (cfg.isTextual() && !cfg.asText().isBlank() && !cfg.asText().equals("default")) return cfg.asText();
            } catch (IOException e) {
                throw new UserError(info + ": not readable JSON (" + e.getMessage().lines().findFirst().orElse("") + ")");
            }
        }
        Path abs = file.toAbsolutePath();
        for (int i = 0; i + 1 < abs.getNameCount() - 1; i++)
            if (abs.getName(i).toString().contains("___")) {
                String cfg = abs.getName(i + 1).toString();
                if (!cfg.equals("default")) return cfg;
            }
        return defaultSubject(file);
    }

    private static boolean isArrow(Path file) throws IOException {
        byte[] head = new byte[8];
        try (InputStream in = Files.newInputStream(file)) {
            int n = in.readNBytes(head, 0, 8);
            if (n >= 6 && new String(head, 0, 6, StandardCharsets.US_ASCII).equals("ARROW1")) return true;
            return n == 8 && head[0] == (byte) 0xff && head[1] == (byte) 0xff && head[2] == (byte) 0xff && head[3] == (byte) 0xff;
        }
    }
}
