package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.AtomicFiles;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.UserError;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Safetensors files (huggingface/safetensors): {@code [u64 LE header length N][N bytes UTF-8 JSON][data]}. The
 * header maps each tensor name to {@code {"dtype", "shape", "data_offsets": [begin, end)}} relative to the data
 * section, plus an optional {@code "__metadata__"} string map. Data is little-endian, row-major.
 *
 * <p>{@link Reader} validates the header as the reference implementation does (header at most 100 MB, valid UTF-8
 * JSON object, no duplicate names, known dtypes, offsets contiguous from 0 in offset order so no gap or overlap,
 * each span equal to numel x dtype size, the data section exactly covered) and reads by memory-mapping windows
 * of one tensor at a time, so files and tensors over 2 GB are fine. Every failure is a one-line {@link UserError}
 * naming the file and, where one is at fault, the tensor.
 *
 * <p>{@link #write} produces the reference writer's bytes: tensors ordered by descending dtype then by name,
 * compact JSON with {@code __metadata__} first then tensors in offset order, padded with spaces to a multiple of 8.
 */
public final class Safetensors {
    private Safetensors() {}

    /** The reference implementation's bound on the header length (bytes). */
    public static final long MAX_HEADER_BYTES = 100_000_000L;
    /** Bytes mapped at once when reading (a window of one tensor). */
    static int mapWindowBytes = 64 << 20;   // not final: tests shrink it to exercise windowing

    private static final ObjectMapper JSON = new ObjectMapper(JsonFactory.builder().build())
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    /**
     * One tensor of a file.
     *
     * @param begin byte offset of the first element in the data section
     * @param end   exclusive end offset in the data section
     */
    public record TensorInfo(String name, DType dtype, long[] shape, long begin, long end) {
        public long numel() {
            long n = 1;
            for (long d : shape) n *= d;
            return n;
        }

        public String shapeString() { return Arrays.toString(shape); }
    }

    // ----------------------------------------------------------------------------------------------- reading

    /** An open, validated safetensors file. */
    public static final class Reader implements AutoCloseable {
        private final Path file;
        private final FileChannel ch;
        private final long dataStart;
        private final Map<String, TensorInfo> tensors;   // in offset order
        private final Map<String, String> metadata;

        private Reader(Path file, FileChannel ch, long dataStart, Map<String, TensorInfo> tensors, Map<String, String> metadata) {
            this.file = file;
            this.ch = ch;
            this.dataStart = dataStart;
            this.tensors = tensors;
            this.metadata = metadata;
        }

        public static Reader open(Path file) {
            FileChannel ch;
            try {
                ch = FileChannel.open(file, StandardOpenOption.READ);
            } catch (NoSuchFileException e) {
                throw new UserError(file + ": file not found");
            } catch (IOException e) {
                throw new UserError(file + ": cannot open: " + e.getMessage(), e);
            }
            try {
                Reader r = parse(file, ch);
                ch = null;
                return r;
            } finally {
                if (ch != null) try { ch.close(); } catch (IOException ignored) { }
            }
        }

        private static Reader parse(Path file, FileChannel ch) {
            try {
                long size = ch.size();
                if (size < 8) throw new UserError(file + ": truncated safetensors file: " + size + " bytes, no header length");
                ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
                readFully(ch, lenBuf, 0);
                long n = lenBuf.getLong(0);
                if (n < 0 || n > MAX_HEADER_BYTES)
                    throw new UserError(file + ": safetensors header length " + Long.toUnsignedString(n) + " exceeds the "
                            + MAX_HEADER_BYTES + "-byte limit (corrupt file?)");
                if (8 + n > size)
                    throw new UserError(file + ": truncated safetensors file: header says " + n + " bytes, file holds " + (size - 8) + " after the length");
                ByteBuffer hb = ByteBuffer.allocate((int) n);
                readFully(ch, hb, 8);
                String text;
                try {
                    text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                            .onUnmappableCharacter(CodingErrorAction.REPORT).decode(hb.flip()).toString();
                } catch (CharacterCodingException e) {
                    throw new UserError(file + ": safetensors header is not valid UTF-8");
                }
                JsonNode root;
                try {
                    root = JSON.readTree(text);
                } catch (JsonProcessingException e) {
                    throw new UserError(file + ": safetensors header is not valid JSON: " + e.getOriginalMessage().split("\n")[0]);
                }
                if (root == null || !root.isObject()) throw new UserError(file + ": safetensors header is not a JSON object");
                Map<String, String> meta = new LinkedHashMap<>();
                List<TensorInfo> list = new ArrayList<>();
                for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> e = it.next();
                    if (e.getKey().equals("__metadata__")) {
                        if (!e.getValue().isObject()) throw new UserError(file + ": __metadata__ is not a JSON object");
                        e.getValue().fields().forEachRemaining(m -> {
                            if (!m.getValue().isTextual()) throw new UserError(file + ": __metadata__." + m.getKey() + " is not a string");
                            meta.put(m.getKey(), m.getValue().asText());
                        });
                    } else {
                        list.add(tensorInfo(file, e.getKey(), e.getValue()));
                    }
                }
                long dataLen = size - 8 - n;
                validate(file, list, dataLen);
                Map<String, TensorInfo> byName = new LinkedHashMap<>();
                for (TensorInfo t : list) byName.put(t.name(), t);
                return new Reader(file, ch, 8 + n, Collections.unmodifiableMap(byName), Collections.unmodifiableMap(meta));
            } catch (IOException e) {
                throw new UserError(file + ": cannot read: " + e.getMessage(), e);
            }
        }

        private static TensorInfo tensorInfo(Path file, String name, JsonNode v) {
            String where = file + ": tensor " + name;
            if (!v.isObject()) throw new UserError(where + ": header entry is not a JSON object");
            JsonNode dt = v.get("dtype"), sh = v.get("shape"), off = v.get("data_offsets");
            if (dt == null || !dt.isTextual()) throw new UserError(where + ": missing or non-string \"dtype\"");
            DType dtype = DType.parse(dt.asText());
            if (dtype == null) throw new UserError(where + ": unknown dtype " + dt.asText());
            if (sh == null || !sh.isArray()) throw new UserError(where + ": missing or non-array \"shape\"");
            long[] shape = new long[sh.size()];
            for (int i = 0; i < shape.length; i++) {
                JsonNode d = sh.get(i);
                if (!d.canConvertToExactIntegral() || !d.canConvertToLong() || d.asLong() < 0)
                    throw new UserError(where + ": shape " + sh + " has a non-integer or negative dimension");
                shape[i] = d.asLong();
            }
            if (off == null || !off.isArray() || off.size() != 2)
                throw new UserError(where + ": missing \"data_offsets\" [begin, end]");
            for (JsonNode o : off)
                if (!o.canConvertToExactIntegral() || !o.canConvertToLong() || o.asLong() < 0)
                    throw new UserError(where + ": data_offsets " + off + " are not non-negative integers");
            return new TensorInfo(name, dtype, shape, off.get(0).asLong(), off.get(1).asLong());
        }

        /** Offsets contiguous from 0 (in offset order), spans equal to the tensor's bytes, data section fully covered. */
        private static void validate(Path file, List<TensorInfo> list, long dataLen) {
            list.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
            long start = 0;
            String prev = null;
            for (TensorInfo t : list) {
                String where = file + ": tensor " + t.name();
                if (t.end() < t.begin())
                    throw new UserError(where + ": data_offsets [" + t.begin() + ", " + t.end() + "] end before they begin");
                if (t.begin() < start)
                    throw new UserError(where + ": data_offsets [" + t.begin() + ", " + t.end() + "] overlap tensor " + prev + " (which ends at " + start + ")");
                if (t.begin() > start)
                    throw new UserError(where + ": data_offsets [" + t.begin() + ", " + t.end() + "] leave a gap after "
                            + (prev == null ? "the header" : "tensor " + prev) + " (which ends at " + start + ")");
                long bits;
                try {
                    long numel = 1;
                    for (long d : t.shape()) numel = Math.multiplyExact(numel, d);
                    bits = Math.multiplyExact(numel, t.dtype().bits());
                } catch (ArithmeticException e) {
                    throw new UserError(where + ": shape " + t.shapeString() + " overflows");
                }
                if (bits % 8 != 0 || t.end() - t.begin() != bits / 8)
                    throw new UserError(where + ": data_offsets span " + (t.end() - t.begin()) + " bytes but shape "
                            + t.shapeString() + " of " + t.dtype() + " needs " + (bits % 8 != 0 ? "a fractional byte count" : bits / 8 + " bytes"));
                if (t.end() > dataLen)
                    throw new UserError(where + ": truncated file: tensor data ends at byte " + t.end() + " of the data section but the file holds only "
                            + dataLen + " data bytes");
                start = t.end();
                prev = t.name();
            }
            if (start != dataLen)
                throw new UserError(file + ": data section is " + dataLen + " bytes but the tensors cover " + start
                        + (prev == null ? "" : " (last tensor " + prev + ")") + ": trailing bytes or corrupt header");
        }

        private static void readFully(FileChannel ch, ByteBuffer b, long pos) throws IOException {
            while (b.hasRemaining()) {
                int r = ch.read(b, pos + b.position());
                if (r < 0) throw new IOException("unexpected end of file");
            }
        }

        public Path file() { return file; }

        /** Tensors in data-offset order. */
        public Map<String, TensorInfo> tensors() { return tensors; }

        public Map<String, String> metadata() { return metadata; }

        public boolean has(String name) { return tensors.containsKey(name); }

        public TensorInfo get(String name) {
            TensorInfo t = tensors.get(name);
            if (t == null) throw new UserError(file + ": tensor " + name + " not found");
            return t;
        }

        /**
         * Reads elements [first, first + count) of a tensor (row-major order) as fp32 into {@code dst} at
         * {@code dstOffset}. F32/F64/BF16/F16 only.
         */
        public void readF32(TensorInfo t, long first, long count, HostFloats dst, long dstOffset) {
            checkFloat(t);
            if (first < 0 || count < 0 || first + count > t.numel())
                throw new IllegalArgumentException(file + ": tensor " + t.name() + ": elements [" + first + ", " + (first + count) + ") of " + t.numel());
            int esz = t.dtype().bytes();
            long windowElems = Math.min(HostFloats.MAX_WINDOW, mapWindowBytes / esz);
            for (long done = 0; done < count; ) {
                int n = (int) Math.min(windowElems, count - done);
                ByteBuffer src = map(t, (first + done) * esz, (long) n * esz);
                convert(t.dtype(), src, dst.view(dstOffset + done, n), n);
                done += n;
            }
        }

        /**
         * Reads the block [row0, row0 + rows) x [col0, col0 + cols) of a tensor viewed as a matrix
         * [shape[0], numel/shape[0]] into {@code dst} at {@code dstOffset}, rows packed ([rows, cols] row-major).
         */
        public void readBlockF32(TensorInfo t, long row0, long rows, long col0, long cols, HostFloats dst, long dstOffset) {
            checkFloat(t);
            long R = t.shape().length == 0 ? 1 : t.shape()[0];
            long C = R == 0 ? 0 : t.numel() / R;
            if (row0 < 0 || col0 < 0 || row0 + rows > R || col0 + cols > C)
                throw new IllegalArgumentException(file + ": tensor " + t.name() + ": block rows [" + row0 + ", " + (row0 + rows)
                        + ") cols [" + col0 + ", " + (col0 + cols) + ") outside " + t.shapeString());
            if (cols == C) { readF32(t, row0 * C, rows * C, dst, dstOffset); return; }
            int esz = t.dtype().bytes();
            long rowsPerWindow = Math.max(1, mapWindowBytes / (C * esz));
            for (long r = 0; r < rows; ) {
                long nr = Math.min(rowsPerWindow, rows - r);
                ByteBuffer win = map(t, (row0 + r) * C * esz, nr * C * esz);
                for (long i = 0; i < nr; i++) {
                    int from = (int) ((i * C + col0) * esz);
                    ByteBuffer rowSrc = win.duplicate().position(from).limit(from + (int) (cols * esz)).slice().order(ByteOrder.LITTLE_ENDIAN);
                    for (long c = 0; c < cols; ) {   // cols < 2^31 for any real tensor; window it anyway
                        int n = (int) Math.min(HostFloats.MAX_WINDOW, cols - c);
                        ByteBuffer part = rowSrc.duplicate().position((int) (c * esz)).limit((int) ((c + n) * esz)).slice().order(ByteOrder.LITTLE_ENDIAN);
                        convert(t.dtype(), part, dst.view(dstOffset + (r + i) * cols + c, n), n);
                        c += n;
                    }
                }
                r += nr;
            }
        }

        /** Raw bytes [byteOffset, byteOffset + length) of a tensor's data, little-endian, read-only. */
        ByteBuffer map(TensorInfo t, long byteOffset, long length) {
            try {
                MappedByteBuffer mb = ch.map(FileChannel.MapMode.READ_ONLY, dataStart + t.begin() + byteOffset, length);
                return mb.order(ByteOrder.LITTLE_ENDIAN);
            } catch (IOException e) {
                throw new UserError(file + ": tensor " + t.name() + ": cannot read: " + e.getMessage(), e);
            }
        }

        private void checkFloat(TensorInfo t) {
            if (!t.dtype().isFloat())
                throw new UserError(file + ": tensor " + t.name() + ": dtype " + t.dtype() + " is not a float type (F32, F16, BF16, F64)");
        }

        @Override
        public void close() {
            try { ch.close(); } catch (IOException ignored) { }
        }
    }

    private static void convert(DType dt, ByteBuffer src, FloatBuffer dst, int n) {
        switch (dt) {
            case F32 -> dst.put(src.asFloatBuffer());
            case BF16 -> { for (int i = 0; i < n; i++) dst.put(i, Floats.bf16ToF32(src.getShort(2 * i))); }
            case F16 -> { for (int i = 0; i < n; i++) dst.put(i, Floats.f16ToF32(src.getShort(2 * i))); }
            case F64 -> { for (int i = 0; i < n; i++) dst.put(i, (float) src.getDouble(8 * i)); }
            default -> throw new IllegalStateException(dt.toString());
        }
    }

    // ----------------------------------------------------------------------------------------------- writing

    /** Where a tensor's fp32 values are when it is written: {@code src[offset .. offset + numel)}. */
    public record Source(HostFloats src, long offset, boolean owned) implements AutoCloseable {
        @Override
        public void close() { if (owned) src.close(); }
    }

    /** Supplies a tensor's values just before it is written (so an export holds one tensor at a time). */
    @FunctionalInterface
    public interface Data {
        Source open();
    }

    /** A tensor to write: values come in as fp32 and are stored as {@code dtype} (F32, F64, BF16, F16). */
    public record OutTensor(String name, DType dtype, long[] shape, Data data) {
        public OutTensor {
            if (!dtype.isFloat()) throw new IllegalArgumentException("cannot write " + dtype);
        }

        public static OutTensor of(String name, DType dtype, long[] shape, HostFloats src, long offset) {
            return new OutTensor(name, dtype, shape, () -> new Source(src, offset, false));
        }

        public long numel() {
            long n = 1;
            for (long d : shape) n *= d;
            return n;
        }

        public long nbytes() { return numel() * dtype.bytes(); }
    }

    /** The reference writer's order: descending dtype (alignment), then name. */
    public static List<OutTensor> referenceOrder(List<OutTensor> tensors) {
        List<OutTensor> sorted = new ArrayList<>(tensors);
        sorted.sort(Comparator.comparing((OutTensor t) -> t.dtype().ordinal()).reversed().thenComparing(OutTensor::name));
        return sorted;
    }

    /**
     * The header bytes (JSON padded with spaces to a multiple of 8) for tensors in the given (final) order. The
     * metadata is written with its keys sorted, whatever map the caller passes ({@code Map.of} iterates in a
     * per-JVM order), so identical tensors and metadata give identical bytes.
     */
    public static byte[] header(List<OutTensor> ordered, Map<String, String> metadata) {
        try {
            ByteArrayOutputStream bos = new ByteArrayOutputStream();
            try (JsonGenerator g = JSON.getFactory().createGenerator(bos)) {
                g.writeStartObject();
                if (metadata != null) {
                    g.writeObjectFieldStart("__metadata__");
                    for (Map.Entry<String, String> e : new java.util.TreeMap<>(metadata).entrySet()) g.writeStringField(e.getKey(), e.getValue());
                    g.writeEndObject();
                }
                java.util.Set<String> seen = new java.util.HashSet<>();
                long offset = 0;
                for (OutTensor t : ordered) {
                    if (!seen.add(t.name())) throw new IllegalArgumentException("duplicate tensor name " + t.name());
                    g.writeObjectFieldStart(t.name());
                    g.writeStringField("dtype", t.dtype().name());
                    g.writeArrayFieldStart("shape");
                    for (long d : t.shape()) g.writeNumber(d);
                    g.writeEndArray();
                    g.writeArrayFieldStart("data_offsets");
                    g.writeNumber(offset);
                    g.writeNumber(offset + t.nbytes());
                    g.writeEndArray();
                    g.writeEndObject();
                    offset += t.nbytes();
                }
                g.writeEndObject();
            }
            int pad = (8 - bos.size() % 8) % 8;
            for (int i = 0; i < pad; i++) bos.write(' ');
            return bos.toByteArray();
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * Writes a safetensors file to {@code out} (the caller owns atomicity and fsync: see {@link AtomicFiles}).
     * Tensors are laid out in the reference writer's order. Returns the bytes written.
     */
    public static long write(WritableByteChannel out, List<OutTensor> tensors, Map<String, String> metadata) throws IOException {
        List<OutTensor> ordered = referenceOrder(tensors);
        byte[] header = header(ordered, metadata);
        ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, header.length);
        long written = writeFully(out, lenBuf) + writeFully(out, ByteBuffer.wrap(header));
        ByteBuffer buf = ByteBuffer.allocateDirect(8 << 20).order(ByteOrder.LITTLE_ENDIAN);
        for (OutTensor t : ordered) {
            try (Source s = t.data().open()) {
                written += writeTensor(out, t, s, buf);
            }
        }
        return written;
    }

    private static long writeTensor(WritableByteChannel out, OutTensor t, Source s, ByteBuffer buf) throws IOException {
        long numel = t.numel(), written = 0;
        int esz = t.dtype().bytes(), chunk = buf.capacity() / esz;
        if (s.offset() < 0 || s.offset() + numel > s.src().numel())
            throw new IllegalArgumentException("tensor " + t.name() + ": source range [" + s.offset() + ", " + (s.offset() + numel) + ") outside " + s.src().numel());
        for (long done = 0; done < numel; ) {
            int n = (int) Math.min(chunk, numel - done);
            FloatBuffer v = s.src().view(s.offset() + done, n);
            buf.clear();
            switch (t.dtype()) {
                case F32 -> buf.asFloatBuffer().put(v);
                case BF16 -> { for (int i = 0; i < n; i++) buf.putShort(2 * i, Floats.f32ToBf16(v.get(i))); }
                case F16 -> { for (int i = 0; i < n; i++) buf.putShort(2 * i, Floats.f32ToF16(v.get(i))); }
                case F64 -> { for (int i = 0; i < n; i++) buf.putDouble(8 * i, v.get(i)); }
                default -> throw new IllegalStateException(t.dtype().toString());
            }
            buf.position(0).limit(n * esz);
            written += writeFully(out, buf);
            done += n;
        }
        return written;
    }

    private static long writeFully(WritableByteChannel out, ByteBuffer b) throws IOException {
        long n = b.remaining();
        while (b.hasRemaining()) out.write(b);
        return n;
    }
}
