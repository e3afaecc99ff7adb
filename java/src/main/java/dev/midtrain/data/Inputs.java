package dev.midtrain.data;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.UserError;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BaseIntVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.BaseListVector;
import org.apache.arrow.vector.complex.LargeListVector;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.ipc.ArrowFileReader;
import org.apache.arrow.vector.ipc.ArrowReader;
import org.apache.arrow.vector.ipc.ArrowStreamReader;
import org.apache.arrow.vector.ipc.message.ArrowBlock;
import org.apache.arrow.vector.dictionary.Dictionary;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.DictionaryEncoding;
import org.apache.arrow.vector.types.pojo.Field;

import java.io.BufferedInputStream;
import java.io.BufferedReader;
import java.io.EOFException;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.LongConsumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.GZIPInputStream;

/**
 * Reads prepare's inputs record by record: JSON Lines (plain or gzip'd, detected by the gzip magic), Hugging Face
 * {@code datasets} Arrow files (IPC stream format, as in the datasets cache; the IPC file format is accepted too) and
 * Parquet (detected by its magic; {@link ParquetInput}).
 * Each record becomes a document (text, or token ids for the tokens format) or a bad record with its location
 * ({@code file:line} for JSON Lines, {@code file: row N} (0-based) for Arrow).
 */
public final class Inputs {
    private Inputs() {}

    /** What a record holds. */
    public enum Format {
        TEXT, QA, TOKENS;

        public String id() { return name().toLowerCase(Locale.ROOT); }

        public static Format parse(String s) {
            for (Format f : values()) if (f.id().equals(s)) return f;
            throw new UserError("--format: must be text, qa or tokens, got " + s);
        }
    }

    /**
     * Field names and the QA template.
     *
     * @param textField      text format: the string field/column (default "text")
     * @param idsField       tokens format: the id-list field/column (default "input_ids"); a JSON line may also be a bare array
     * @param qaTemplate     QA rendering; {question}, {answer} and any other {field} of the record (e.g. {discipline},
     *                       {grade}, {difficulty}; absent fields render empty)
     * @param vocabSize      ids of the tokens format must lie in [0, vocabSize)
     */
    public record Options(String textField, String idsField, String qaTemplate, int vocabSize) {}

    /** A document (exactly one of text/ids non-null), or a bad record (reason non-null). */
    public record Rec(String text, int[] ids, String where, String reason, String message) {
        static Rec bad(String where, String reason, String what) { return new Rec(null, null, where, reason, where + ": " + what); }
    }

    public interface Sink { void accept(Rec r); }

    /** @param format the format used (null if the file held no record); records read (non-blank lines or rows) */
    public record Result(Format format, long records) {}

    /** {@code inputs} with each dataset directory replaced by its Parquet files of {@code split} ({@link ParquetInput#expand}). */
    public static List<Path> expand(List<Path> inputs, String split) { return ParquetInput.expand(inputs, split); }

    /** Opens a text file for reading, gunzipping when it starts with the gzip magic. */
    public static BufferedReader openText(Path file) throws IOException {
        return new BufferedReader(new InputStreamReader(open(file, null), StandardCharsets.UTF_8), 1 << 16);
    }

    /** Opens a file as bytes, gunzipping when it starts with the gzip magic. */
    static InputStream openStream(Path file) throws IOException { return open(file, null); }

    private static InputStream open(Path file, LongConsumer progress) throws IOException {
        InputStream raw = new BufferedInputStream(Files.newInputStream(file), 1 << 16);
        if (progress != null) raw = new Counting(raw, progress);
        raw.mark(2);
        int b0 = raw.read(), b1 = raw.read();
        raw.reset();
        return b0 == 0x1f && b1 == 0x8b ? new BufferedInputStream(new GZIPInputStream(raw, 1 << 16), 1 << 16) : raw;
    }

    static boolean isArrow(Path file) throws IOException {
        byte[] head = new byte[8];
        try (InputStream in = Files.newInputStream(file)) {
            int n = in.readNBytes(head, 0, 8);
            if (n >= 6 && new String(head, 0, 6, StandardCharsets.US_ASCII).equals("ARROW1")) return true;
            // IPC stream: a message starts with the continuation marker 0xFFFFFFFF (or, pre-0.15, a positive length)
            return n == 8 && head[0] == (byte) 0xff && head[1] == (byte) 0xff && head[2] == (byte) 0xff && head[3] == (byte) 0xff;
        }
    }

    /**
     * Reads {@code file} into {@code sink}; returns the format used (given, or detected from the first record / the
     * schema) and the number of records. {@code progress} receives input bytes consumed (compressed, for gzip).
     */
    public static Result read(Path file, Format format, Options opt, BufferAllocator alloc, Sink sink, LongConsumer progress) {
        Format[] used = {format};
        try {
            if (!Files.isRegularFile(file)) throw new NoSuchFileException(file.toString());
            long records = ParquetInput.isParquet(file) ? ParquetInput.read(file, format, opt, sink, progress, used)
                    : isArrow(file) ? readArrow(file, format, opt, alloc, sink, progress, used) : readJsonl(file, format, opt, sink, progress, used);
            return new Result(used[0], records);
        } catch (NoSuchFileException e) {
            throw new UserError(file + ": input file not found");
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage());
        }
    }

    // ------------------------------------------------------------------ JSON Lines
    private static final ObjectMapper JSON = new ObjectMapper();

    private static long readJsonl(Path file, Format format, Options opt, Sink sink, LongConsumer progress, Format[] used) throws IOException {
        long lineNo = 0, records = 0;
        Template tpl = new Template(opt.qaTemplate());
        boolean slotsChecked = false;
        try (Utf8Lines r = new Utf8Lines(open(file, progress))) {
            String line;
            while (true) {
                try {
                    if (!r.next()) break;
                } catch (EOFException e) {
                    throw new UserError(file + ":" + (lineNo + 1) + ": truncated gzip stream (" + e.getMessage() + ")");
                }
                lineNo++;
                String where = file + ":" + lineNo;
                try {
                    line = r.text();
                } catch (CharacterCodingException e) {
                    records++;
                    sink.accept(Rec.bad(where, "invalid_utf8", "invalid UTF-8 (byte " + r.firstInvalidByte() + " of the line)"));
                    continue;
                }
                if (line.isBlank()) continue;
                records++;
                JsonNode rec;
                try {
                    rec = JSON.readTree(line);
                } catch (JsonProcessingException e) {
                    sink.accept(Rec.bad(where, "malformed_json", "malformed JSON: " + e.getOriginalMessage().split("\n")[0]));
                    continue;
                }
                if (format == null) {
                    format = detect(rec, opt);
                    if (format == null) {
                        sink.accept(Rec.bad(where, "unknown_record", "cannot detect the format: expected a \"" + opt.textField()
                                + "\" field (text), \"question\" and \"answer\" (qa) or \"" + opt.idsField() + "\" (tokens); pass --format"));
                        continue;
                    }
                    used[0] = format;
                }
                if (format == Format.QA && !slotsChecked && rec.isObject()) {      // an unknown slot would render as nothing
                    for (String slot : tpl.slots())
                        if (!rec.has(slot))
                            throw new UserError("--qa-template: slot {" + slot + "} is not a field of the first record (" + where + "; fields: "
                                    + String.join(", ", (Iterable<String>) rec::fieldNames) + ")");
                    slotsChecked = true;
                }
                sink.accept(switch (format) {
                    case TEXT -> jsonText(rec, where, opt);
                    case QA -> jsonQa(rec, where, tpl);
                    case TOKENS -> jsonIds(rec.isArray() ? rec : rec.get(opt.idsField()), where, opt);
                });
            }
        }
        if (used[0] == null) used[0] = format;
        return records;
    }

    private static Format detect(JsonNode rec, Options opt) {
        if (rec.isArray()) return Format.TOKENS;
        if (!rec.isObject()) return null;
        if (rec.has(opt.textField())) return Format.TEXT;
        if (rec.has("question") && rec.has("answer")) return Format.QA;
        if (rec.has(opt.idsField())) return Format.TOKENS;
        return null;
    }

    private static Rec jsonText(JsonNode rec, String where, Options opt) {
        JsonNode t = rec.isObject() ? rec.get(opt.textField()) : null;
        if (t == null || t.isNull()) return Rec.bad(where, "missing_field", "no \"" + opt.textField() + "\" field");
        if (!t.isTextual()) return Rec.bad(where, "wrong_type", "\"" + opt.textField() + "\" is not a string");
        return new Rec(t.asText(), null, where, null, null);
    }

    private static Rec jsonQa(JsonNode rec, String where, Template tpl) {
        if (!rec.isObject()) return Rec.bad(where, "wrong_type", "record is not a JSON object");
        for (String f : List.of("question", "answer")) {
            JsonNode v = rec.get(f);
            if (v == null || v.isNull()) return Rec.bad(where, "missing_field", "no \"" + f + "\" field");
            if (!v.isTextual()) return Rec.bad(where, "wrong_type", "\"" + f + "\" is not a string");
        }
        return new Rec(tpl.render(name -> {
            JsonNode v = rec.get(name);
            return v == null || v.isNull() ? "" : v.isValueNode() ? v.asText() : v.toString();
        }), null, where, null, null);
    }

    private static Rec jsonIds(JsonNode arr, String where, Options opt) {
        if (arr == null || arr.isNull()) return Rec.bad(where, "missing_field", "no \"" + opt.idsField() + "\" field");
        if (!arr.isArray()) return Rec.bad(where, "wrong_type", "\"" + opt.idsField() + "\" is not an array of token ids");
        int[] ids = new int[arr.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode v = arr.get(i);
            if (!v.isIntegralNumber()) return Rec.bad(where, "wrong_type", "token " + i + " is not an integer: " + v);
            long id = v.asLong();
            if (id < 0 || id >= opt.vocabSize())
                return Rec.bad(where, "out_of_vocab", "token id " + id + " outside the tokenizer's vocabulary [0, " + opt.vocabSize() + ")");
            ids[i] = (int) id;
        }
        return new Rec(null, ids, where, null, null);
    }

    // ------------------------------------------------------------------ Arrow (HF datasets)
    private static long readArrow(Path file, Format format, Options opt, BufferAllocator alloc, Sink sink, LongConsumer progress, Format[] used) throws IOException {
        boolean fileFormat;
        try (InputStream in = Files.newInputStream(file)) {
            fileFormat = new String(in.readNBytes(6), StandardCharsets.US_ASCII).equals("ARROW1");
        }
        Template tpl = new Template(opt.qaTemplate());
        long row = 0, lastBytes = 0;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ);
             ArrowReader r = fileFormat ? new ArrowFileReader(ch, alloc) : new ArrowStreamReader(ch, alloc)) {
            VectorSchemaRoot root = r.getVectorSchemaRoot();
            if (format == null) {
                if (has(root, opt.textField())) format = Format.TEXT;
                else if (has(root, opt.idsField())) format = Format.TOKENS;
                else if (has(root, "question") && has(root, "answer")) format = Format.QA;
                else throw new UserError(file + ": no \"" + opt.textField() + "\", \"" + opt.idsField() + "\" or question/answer column in "
                            + root.getSchema().getFields().stream().map(f -> f.getName()).toList());
            }
            used[0] = format;
            List<String> needed = switch (format) {
                case TEXT -> List.of(opt.textField());
                case TOKENS -> List.of(opt.idsField());
                case QA -> List.of("question", "answer");
            };
            for (String c : needed)
                if (!has(root, c))
                    throw new UserError(file + ": no column \"" + c + "\" for --format " + format.id() + " (columns: "
                            + root.getSchema().getFields().stream().map(f -> f.getName()).toList() + ")");
            if (format == Format.QA)
                for (String slot : tpl.slots())
                    if (!has(root, slot))
                        throw new UserError("--qa-template: slot {" + slot + "} is not a column of " + file + " (columns: "
                                + root.getSchema().getFields().stream().map(f -> f.getName()).toList() + ")");
            List<String> stringColumns = format == Format.TEXT ? List.of(opt.textField()) : format == Format.QA ? tpl.slots() : List.of();
            for (String c : stringColumns) checkStringColumn(file, root.getSchema().findField(c), c.equals("question") || c.equals("answer") || format == Format.TEXT);
            List<ArrowBlock> blocks = fileFormat ? ((ArrowFileReader) r).getRecordBlocks() : null;
            int bi = 0;
            while (true) {
                boolean loaded;
                try {
                    loaded = fileFormat ? bi < blocks.size() && ((ArrowFileReader) r).loadRecordBatch(blocks.get(bi++)) : r.loadNextBatch();
                } catch (IOException | RuntimeException e) {
                    throw new UserError(file + ": row " + row + ": corrupt or truncated Arrow data (" + e.getMessage() + ")");
                }
                if (!loaded) break;
                int n = root.getRowCount();
                java.util.Map<String, java.util.function.IntFunction<String>> col = new java.util.HashMap<>();
                for (String c : stringColumns) col.put(c, strings(root, r, c));
                for (int i = 0; i < n; i++, row++) {
                    String where = file + ": row " + row;
                    sink.accept(switch (format) {
                        case TEXT -> {
                            String v = col.get(opt.textField()).apply(i);
                            yield v == null ? Rec.bad(where, "missing_field", "\"" + opt.textField() + "\" is null")
                                    : new Rec(v, null, where, null, null);
                        }
                        case QA -> {
                            String q = col.get("question").apply(i), a = col.get("answer").apply(i);
                            if (q == null || a == null) yield Rec.bad(where, "missing_field", "question or answer is null");
                            final int ii = i;
                            yield new Rec(tpl.render(name -> {
                                String o = col.get(name).apply(ii);
                                return o == null ? "" : o;
                            }), null, where, null, null);
                        }
                        case TOKENS -> arrowIds(root.getVector(opt.idsField()), i, where, opt);
                    });
                }
                long b = r.bytesRead();
                if (progress != null) progress.accept(b - lastBytes);
                lastBytes = b;
            }
        } catch (UserError e) {
            throw e;
        } catch (IOException | RuntimeException e) {
            throw new UserError(file + ": not a readable Arrow IPC file or stream (" + e.getMessage() + ")");
        }
        return row;
    }

    /**
     * A column read as text must hold strings: utf8 or large_utf8, plain or dictionary-encoded. Template slots other
     * than question/answer may also be numbers or booleans (a grade of 10); anything else is refused, never
     * stringified.
     */
    private static void checkStringColumn(Path file, Field f, boolean stringsOnly) {
        ArrowType t = f.getDictionary() != null ? null : f.getType();
        if (f.getDictionary() != null || t instanceof ArrowType.Utf8 || t instanceof ArrowType.LargeUtf8) return;
        if (!stringsOnly && (t instanceof ArrowType.Int || t instanceof ArrowType.FloatingPoint || t instanceof ArrowType.Bool)) return;
        throw new UserError(file + ": column \"" + f.getName() + "\" has type " + t + ", expected strings (utf8, large_utf8 or dictionary-encoded utf8)");
    }

    /** Row -> string (null for a null row) of a column of the current batch, decoding dictionary-encoded strings. */
    private static java.util.function.IntFunction<String> strings(VectorSchemaRoot root, ArrowReader r, String column) throws IOException {
        FieldVector v = root.getVector(column);
        DictionaryEncoding enc = v.getField().getDictionary();
        if (enc == null) return i -> { Object o = v.getObject(i); return o == null ? null : o.toString(); };
        Dictionary d = r.getDictionaryVectors().get(enc.getId());
        FieldVector dict = d == null ? null : d.getVector();
        if (dict == null || !(dict.getField().getType() instanceof ArrowType.Utf8 || dict.getField().getType() instanceof ArrowType.LargeUtf8))
            throw new UserError("column \"" + column + "\": dictionary " + enc.getId() + " is " + (dict == null ? "missing" : dict.getField().getType())
                    + ", expected utf8 strings");
        BaseIntVector idx = (BaseIntVector) v;
        return i -> {
            if (v.isNull(i)) return null;
            long k = idx.getValueAsLong(i);
            if (k < 0 || k >= dict.getValueCount())
                throw new UserError("column \"" + column + "\": dictionary index " + k + " outside [0, " + dict.getValueCount() + ")");
            Object o = dict.getObject((int) k);
            return o == null ? null : o.toString();
        };
    }

    private static boolean has(VectorSchemaRoot root, String column) {
        return root.getSchema().getFields().stream().anyMatch(f -> f.getName().equals(column));
    }

    private static Rec arrowIds(FieldVector v, int i, String where, Options opt) {
        if (!(v instanceof ListVector || v instanceof LargeListVector))
            return Rec.bad(where, "wrong_type", "\"" + opt.idsField() + "\" is " + v.getField().getType() + ", expected list<int32> or list<int64>");
        if (v.isNull(i)) return Rec.bad(where, "missing_field", "\"" + opt.idsField() + "\" is null");
        BaseListVector lv = (BaseListVector) v;
        FieldVector child = v.getChildrenFromFields().get(0);
        if (!(child instanceof BaseIntVector iv))
            return Rec.bad(where, "wrong_type", "\"" + opt.idsField() + "\" elements are " + child.getField().getType() + ", expected integers");
        long start = lv.getElementStartIndex(i), end = lv.getElementEndIndex(i);
        int[] ids = new int[(int) (end - start)];
        for (int k = 0; k < ids.length; k++) {
            int idx = (int) (start + k);
            if (child.isNull(idx)) return Rec.bad(where, "wrong_type", "token " + k + " is null");
            long id = iv.getValueAsLong(idx);
            if (id < 0 || id >= opt.vocabSize())
                return Rec.bad(where, "out_of_vocab", "token id " + id + " outside the tokenizer's vocabulary [0, " + opt.vocabSize() + ")");
            ids[k] = (int) id;
        }
        return new Rec(null, ids, where, null, null);
    }

    /** A "{name}" template; \n and \t in it are already real characters. */
    static final class Template {
        private static final Pattern SLOT = Pattern.compile("\\{([A-Za-z_][A-Za-z0-9_]*)}");
        private final List<String> parts = new ArrayList<>();   // literal, name, literal, name, ..., literal

        Template(String template) {
            Matcher m = SLOT.matcher(template);
            int last = 0;
            while (m.find()) {
                parts.add(template.substring(last, m.start()));
                parts.add(m.group(1));
                last = m.end();
            }
            parts.add(template.substring(last));
        }

        String render(java.util.function.Function<String, String> value) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < parts.size(); i++) sb.append(i % 2 == 0 ? parts.get(i) : value.apply(parts.get(i)));
            return sb.toString();
        }

        List<String> slots() {
            List<String> s = new ArrayList<>();
            for (int i = 1; i < parts.size(); i += 2) s.add(parts.get(i));
            return s;
        }
    }

    /**
     * Lines of a byte stream ('\n'-terminated; a trailing '\r' dropped), each decoded as strict UTF-8 (invalid bytes
     * are an error for that line, never U+FFFD); a UTF-8 byte-order mark at the start of the stream is stripped.
     */
    static final class Utf8Lines implements java.io.Closeable {
        private final InputStream in;
        private final byte[] buf = new byte[1 << 16];
        private int pos, lim;
        private byte[] line = new byte[1024];
        private int len, off;
        private boolean first = true;
        private final java.nio.charset.CharsetDecoder dec = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(java.nio.charset.CodingErrorAction.REPORT).onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT);

        Utf8Lines(InputStream in) { this.in = in; }

        /** Reads the next line's bytes; false at the end of the stream. */
        boolean next() throws IOException {
            len = 0;
            boolean any = false;
            while (true) {
                if (pos == lim) {
                    int n = in.read(buf, 0, buf.length);
                    if (n <= 0) { pos = lim = 0; break; }
                    pos = 0;
                    lim = n;
                }
                any = true;
                int i = pos;
                while (i < lim && buf[i] != '\n') i++;
                if (len + (i - pos) > line.length) line = java.util.Arrays.copyOf(line, Math.max(2 * line.length, len + (i - pos)));
                System.arraycopy(buf, pos, line, len, i - pos);
                len += i - pos;
                if (i < lim) { pos = i + 1; break; }
                pos = lim;
            }
            if (!any) return false;
            off = 0;
            if (first && len >= 3 && line[0] == (byte) 0xEF && line[1] == (byte) 0xBB && line[2] == (byte) 0xBF) off = 3;
            first = false;
            if (len > off && line[len - 1] == '\r') len--;
            return true;
        }

        /** The current line as a String. */
        String text() throws CharacterCodingException {
            return dec.reset().decode(ByteBuffer.wrap(line, off, len - off)).toString();
        }

        /** 1-based position of the first byte of the current line that is not valid UTF-8 (for messages), or 0. */
        int firstInvalidByte() {
            ByteBuffer b = ByteBuffer.wrap(line, off, len - off);
            java.nio.CharBuffer out = java.nio.CharBuffer.allocate(len - off + 1);
            java.nio.charset.CoderResult cr = dec.reset().decode(b, out, true);
            return cr.isError() ? b.position() - off + 1 : 0;
        }

        @Override public void close() throws IOException { in.close(); }
    }

    private static final class Counting extends FilterInputStream {
        private final LongConsumer progress;

        Counting(InputStream in, LongConsumer progress) {
            super(in);
            this.progress = progress;
        }

        @Override public int read() throws IOException {
            int b = super.read();
            if (b >= 0) progress.accept(1);
            return b;
        }

        @Override public int read(byte[] b, int off, int len) throws IOException {
            int n = super.read(b, off, len);
            if (n > 0) progress.accept(n);
            return n;
        }
    }
}
