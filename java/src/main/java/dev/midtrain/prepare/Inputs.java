package dev.midtrain.prepare;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
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
        return b0 == 0x1f && b1 == 0x8b ? new BufferedInputStream(new GzipMembers(raw, file), 1 << 16) : raw;
    }

    /**
     * A gzip file: one or more members (as {@code cat a.gz b.gz} makes), each checked against its CRC-32 and length.
     * Unlike {@link java.util.zip.GZIPInputStream}, which stops silently at bytes after a member that do not start
     * another one, anything after the last member is an error naming the file and the offset. A stream that ends
     * inside a member is an {@link EOFException} (truncated).
     */
    static final class GzipMembers extends InputStream {
        private final java.io.PushbackInputStream in;
        private final Path file;
        private final java.util.zip.Inflater inf = new java.util.zip.Inflater(true);
        private final java.util.zip.CRC32 crc = new java.util.zip.CRC32();
        private final byte[] buf = new byte[1 << 16];
        private int fed;                    // bytes of buf last given to the inflater
        private long consumed;              // compressed bytes of the file used so far (for messages)
        private long memberSize;
        private boolean eof;

        GzipMembers(InputStream in, Path file) throws IOException {
            this.in = new java.io.PushbackInputStream(in, buf.length);
            this.file = file;
            header(true);
        }

        private int byteOrEof() throws IOException {
            int b = in.read();
            if (b >= 0) consumed++;
            return b;
        }

        private int u8() throws IOException {
            int b = byteOrEof();
            if (b < 0) throw new EOFException("Unexpected end of gzip header");
            return b;
        }

        private int u16() throws IOException { return u8() | u8() << 8; }

        private long u32() throws IOException { return u16() | (long) u16() << 16; }

        /** Reads a member header (RFC 1952); bytes that do not start one are garbage after the previous member. */
        private void header(boolean first) throws IOException {
            long at = consumed;
            int m0 = byteOrEof(), m1 = m0 < 0 ? -1 : byteOrEof();
            if (m0 != 0x1f || m1 != 0x8b || u8() != 8) {
                if (first) throw new java.util.zip.ZipException("not in gzip format");
                throw new UserError(file + ": garbage after the end of the gzip stream at byte " + at + " (not another gzip member)");
            }
            int flg = u8();
            for (int i = 0; i < 6; i++) u8();                           // MTIME, XFL, OS
            if ((flg & 4) != 0) for (int n = u16(); n > 0; n--) u8();   // FEXTRA
            if ((flg & 8) != 0) while (u8() != 0) { }                   // FNAME
            if ((flg & 16) != 0) while (u8() != 0) { }                  // FCOMMENT
            if ((flg & 2) != 0) u16();                                  // FHCRC
            inf.reset();
            crc.reset();
            memberSize = 0;
        }

        @Override public int read() throws IOException {
            byte[] one = new byte[1];
            return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
        }

        @Override public int read(byte[] b, int off, int len) throws IOException {
            if (len == 0) return 0;
            while (!eof) {
                int n;
                try {
                    n = inf.inflate(b, off, len);
                } catch (java.util.zip.DataFormatException e) {
                    throw new java.util.zip.ZipException("corrupt gzip data at byte " + consumed + " (" + e.getMessage() + ")");
                }
                if (n > 0) {
                    crc.update(b, off, n);
                    memberSize += n;
                    return n;
                }
                if (inf.finished()) {
                    int rest = inf.getRemaining();
                    if (rest > 0) {
                        in.unread(buf, fed - rest, rest);
                        consumed -= rest;
                    }
                    long at = consumed;
                    if (u32() != crc.getValue() || u32() != (memberSize & 0xffffffffL))
                        throw new java.util.zip.ZipException("gzip member ending at byte " + at + " fails its CRC-32 or length check (corrupt)");
                    int next = in.read();
                    if (next < 0) eof = true;
                    else {
                        in.unread(next);
                        header(false);
                    }
                } else if (inf.needsInput()) {
                    fed = in.read(buf, 0, buf.length);
                    if (fed <= 0) throw new EOFException("Unexpected end of ZLIB input stream");
                    consumed += fed;
                    inf.setInput(buf, 0, fed);
                } else if (inf.needsDictionary()) {
                    throw new java.util.zip.ZipException("gzip member needs a preset dictionary (not a gzip file)");
                }
            }
            return -1;
        }

        @Override public void close() throws IOException {
            inf.end();
            in.close();
        }
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
        Sink checked = r -> sink.accept(r.text() == null ? r : validText(r));
        try {
            if (!Files.isRegularFile(file)) throw new NoSuchFileException(file.toString());
            long records = ParquetInput.isParquet(file) ? ParquetInput.read(file, format, opt, checked, progress, used)
                    : isArrow(file) ? readArrow(file, format, opt, alloc, checked, progress, used) : readJsonl(file, format, opt, checked, progress, used);
            return new Result(used[0], records);
        } catch (NoSuchFileException e) {
            throw new UserError(file + ": input file not found");
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage());
        }
    }

    /**
     * A document whose text holds a lone UTF-16 surrogate (a JSON escape such as "\ud800" without its pair) is not
     * Unicode text: no encoder can encode it as written (Hugging Face tokenizers would turn it, and every character
     * outside the Basic Multilingual Plane of the document, into U+FFFD). Refused as {@code lone_surrogate}.
     */
    static Rec validText(Rec r) {
        int at = loneSurrogate(r.text());
        if (at < 0) return r;
        return Rec.bad(r.where(), "lone_surrogate", String.format("lone surrogate U+%04X at character %d of the text (not valid Unicode; "
                + "an unpaired \\u escape in JSON)", (int) r.text().charAt(at), at));
    }

    /** Index of the first unpaired surrogate in {@code s}, or -1. */
    static int loneSurrogate(String s) {
        for (int i = 0, n = s.length(); i < n; i++) {
            char c = s.charAt(i);
            if (!Character.isSurrogate(c)) continue;
            if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(s.charAt(i + 1))) i++;
            else return i;
        }
        return -1;
    }

    // ------------------------------------------------------------------ JSON Lines
    /**
     * Strict JSON for input and benchmark lines: one value per line (anything after it, a trailing NUL included, is
     * malformed), a key repeated in an object is malformed, and strings of any length (Jackson's default 20M-character
     * limit is lifted: the line itself, at most 2 GiB of UTF-8, is the limit, as for an Arrow row).
     */
    static final ObjectMapper JSON = JsonMapper.builder(JsonFactory.builder()
                    .streamReadConstraints(StreamReadConstraints.builder().maxStringLength(Integer.MAX_VALUE).build()).build())
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build();

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
                for (String c : stringColumns) col.put(c, strings(file, root, r, c));
                for (int i = 0; i < n; i++, row++) {
                    String where = file + ": row " + row;
                    try {
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
                    } catch (BadUtf8 e) {
                        sink.accept(Rec.bad(where, "invalid_utf8", "column \"" + e.column + "\": invalid UTF-8 (byte " + e.at + " of the value)"));
                    }
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

    /** A string value of an Arrow column that is not UTF-8: the row is refused as invalid_utf8, like a JSON line. */
    private static final class BadUtf8 extends RuntimeException {
        final String column;
        final int at;

        BadUtf8(String column, int at) {
            super(null, null, false, false);
            this.column = column;
            this.at = at;
        }
    }

    /**
     * Row -> string (null for a null row) of a column of the current batch, decoding dictionary-encoded strings; the
     * bytes of utf8 values are decoded strictly (invalid UTF-8 throws {@link BadUtf8}, never U+FFFD). Numbers and
     * booleans (template slots) are written as text.
     */
    private static java.util.function.IntFunction<String> strings(Path file, VectorSchemaRoot root, ArrowReader r, String column) throws IOException {
        FieldVector v = root.getVector(column);
        DictionaryEncoding enc = v.getField().getDictionary();
        java.nio.charset.CharsetDecoder dec = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(java.nio.charset.CodingErrorAction.REPORT).onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT);
        if (enc == null) return i -> value(v, i, column, dec);
        Dictionary d = r.getDictionaryVectors().get(enc.getId());
        FieldVector dict = d == null ? null : d.getVector();
        if (dict == null || !(dict.getField().getType() instanceof ArrowType.Utf8 || dict.getField().getType() instanceof ArrowType.LargeUtf8))
            throw new UserError(file + ": column \"" + column + "\": dictionary " + enc.getId() + " is " + (dict == null ? "missing" : dict.getField().getType())
                    + ", expected utf8 strings");
        BaseIntVector idx = (BaseIntVector) v;
        return i -> {
            if (v.isNull(i)) return null;
            long k = idx.getValueAsLong(i);
            if (k < 0 || k >= dict.getValueCount())
                throw new UserError(file + ": row " + i + " of the batch: column \"" + column + "\": dictionary index " + k + " outside [0, " + dict.getValueCount() + ")");
            return value(dict, (int) k, column, dec);
        };
    }

    private static String value(FieldVector v, int i, String column, java.nio.charset.CharsetDecoder dec) {
        if (v.isNull(i)) return null;
        byte[] bytes = v instanceof org.apache.arrow.vector.VarCharVector s ? s.get(i)
                : v instanceof org.apache.arrow.vector.LargeVarCharVector s ? s.get(i) : null;
        if (bytes == null) return v.getObject(i).toString();
        ByteBuffer in = ByteBuffer.wrap(bytes);
        dec.reset();
        java.nio.CharBuffer out = java.nio.CharBuffer.allocate(bytes.length);
        if (dec.decode(in, out, true).isError()) throw new BadUtf8(column, in.position() + 1);
        dec.flush(out);
        return out.flip().toString();
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
