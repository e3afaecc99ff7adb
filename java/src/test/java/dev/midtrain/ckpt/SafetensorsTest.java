package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.AtomicFiles;

import dev.midtrain.common.UserError;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

class SafetensorsTest {
    @TempDir Path tmp;

    @AfterEach
    void restoreWindow() { Safetensors.mapWindowBytes = 64 << 20; }

    static byte[] bytes(List<Safetensors.OutTensor> ts, Map<String, String> meta) throws IOException {
        ByteArrayOutputStream bos = new ByteArrayOutputStream();
        Safetensors.write(Channels.newChannel(bos), ts, meta);
        return bos.toByteArray();
    }

    static Path file(Path dir, String name, byte[] b) throws IOException {
        Path p = dir.resolve(name);
        Files.write(p, b);
        return p;
    }

    /** The exact bytes the reference implementation produces (safetensors tensor.rs test_serialization / test_empty). */
    @Test
    void writerMatchesReferenceBytes() throws IOException {
        float[] data = {0, 1, 2, 3, 4, 5};
        byte[] got = bytes(List.of(Safetensors.OutTensor.of("attn.0", DType.F32, new long[]{1, 2, 3}, HostFloats.wrap(data), 0)), null);
        int[] want = {64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
                116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
                58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
                101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
                0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
        assertArrayEquals(toBytes(want), got);
        byte[] empty = bytes(List.of(), new LinkedHashMap<>(Map.of("framework", "pt")));
        int[] wantEmpty = {40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
                95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
                116, 34, 125, 125, 32, 32, 32, 32, 32};
        assertArrayEquals(toBytes(wantEmpty), empty);
    }

    static byte[] toBytes(int[] a) {
        byte[] b = new byte[a.length];
        for (int i = 0; i < a.length; i++) b[i] = (byte) a[i];
        return b;
    }

    /** Values each dtype stores for fp32 input: the independent expectation for a round trip. */
    static float stored(DType dt, float f) {
        return switch (dt) {
            case F32, F64 -> f;
            case BF16 -> Floats.bf16ToF32(Floats.f32ToBf16(f));
            case F16 -> Floats.f16ToF32(Floats.f32ToF16(f));
            default -> throw new IllegalArgumentException();
        };
    }

    @Test
    void roundTripEveryFloatDtypeAndOddShapes() throws IOException {
        SplittableRandom rnd = new SplittableRandom(3);
        long[][] shapes = {{3, 5}, {7}, {1}, {0, 4}, {}, {2, 3, 5}};
        DType[] dts = {DType.F32, DType.F64, DType.BF16, DType.F16};
        List<Safetensors.OutTensor> out = new ArrayList<>();
        Map<String, float[]> values = new LinkedHashMap<>();
        for (DType dt : dts)
            for (int s = 0; s < shapes.length; s++) {
                long n = 1;
                for (long d : shapes[s]) n *= d;
                float[] v = new float[(int) n];
                for (int i = 0; i < n; i++) v[i] = (float) (rnd.nextGaussian() * Math.scalb(1.0, rnd.nextInt(-10, 10)));
                String name = "t" + s + "." + dt;
                values.put(name, v);
                out.add(Safetensors.OutTensor.of(name, dt, shapes[s], HostFloats.wrap(v), 0));
            }
        Path f = tmp.resolve("rt.safetensors");
        AtomicFiles.write(f, ch -> Safetensors.write(ch, out, Map.of("format", "pt")));
        long headerLen = ByteBuffer.wrap(Files.readAllBytes(f), 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        assertEquals(0, headerLen % 8, "header padded to 8 bytes");
        try (var r = Safetensors.Reader.open(f)) {
            assertEquals(Map.of("format", "pt"), r.metadata());
            // data order: descending dtype (F64, F32, BF16, F16), then name
            List<String> order = new ArrayList<>(r.tensors().keySet());
            List<String> expect = new ArrayList<>();
            for (DType dt : new DType[]{DType.F64, DType.F32, DType.BF16, DType.F16})
                for (int s = 0; s < shapes.length; s++) expect.add("t" + s + "." + dt);
            expect.sort((a, b) -> {
                int c = Integer.compare(DType.valueOf(b.substring(3)).ordinal(), DType.valueOf(a.substring(3)).ordinal());
                return c != 0 ? c : a.compareTo(b);
            });
            assertEquals(expect, order);
            for (var e : values.entrySet()) {
                var t = r.get(e.getKey());
                DType dt = DType.valueOf(e.getKey().substring(3));
                assertEquals(dt, t.dtype());
                float[] got = new float[e.getValue().length];
                Arrays.fill(got, Float.NaN);
                r.readF32(t, 0, got.length, HostFloats.wrap(got), 0);
                for (int i = 0; i < got.length; i++) assertEquals(stored(dt, e.getValue()[i]), got[i], 0f, e.getKey() + "[" + i + "]");
            }
        }
    }

    @Test
    void windowedAndBlockReadsIntoOffHeapMemory() throws IOException {
        int R = 5, C = 7;
        float[] v = new float[R * C];
        for (int i = 0; i < v.length; i++) v[i] = i * 0.5f - 3;
        Path f = tmp.resolve("w.safetensors");
        for (DType dt : new DType[]{DType.BF16, DType.F32}) {
            AtomicFiles.write(f, ch -> Safetensors.write(ch, List.of(Safetensors.OutTensor.of("w", dt, new long[]{R, C}, HostFloats.wrap(v), 0)), null));
            Safetensors.mapWindowBytes = 6;   // 3 bf16 or 1 fp32 element (or one row) per mapping: many windows, odd splits
            try (var r = Safetensors.Reader.open(f); HostFloats dst = HostFloats.allocate(R * C + 3)) {
                for (int i = 0; i < R * C + 3; i++) dst.put(i, Float.NaN);
                r.readF32(r.get("w"), 4, 20, dst, 3);
                for (int i = 0; i < 20; i++) assertEquals(v[4 + i], dst.get(3 + i), dt + " element " + (4 + i));
                // columns [2, 5) of rows [1, 4): packed [3, 3]
                for (int i = 0; i < 12; i++) dst.put(i, Float.NaN);
                r.readBlockF32(r.get("w"), 1, 3, 2, 3, dst, 1);
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++) assertEquals(v[(1 + i) * C + 2 + j], dst.get(1 + i * 3 + j), dt + " block " + i + "," + j);
                assertTrue(Float.isNaN(dst.get(0)) && Float.isNaN(dst.get(10)), "outside the block stays untouched");
            }
        }
    }

    /** A file over 4 GB (sparse: only the header and the last tensor hold data) reads past the int and 2 GB limits. */
    @Test
    void readsTensorsBeyondFourGigabytes() throws IOException {
        long pad = (1L << 32) + 12;                       // a U8 tensor of 4 GiB + 12 bytes, all zero (a hole)
        String header = "{\"pad\":{\"dtype\":\"U8\",\"shape\":[" + pad + "],\"data_offsets\":[0," + pad + "]},"
                + "\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[" + pad + "," + (pad + 12) + "]}}";
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        Path f = tmp.resolve("big.safetensors");
        try (var ch = java.nio.channels.FileChannel.open(f, java.nio.file.StandardOpenOption.CREATE_NEW, java.nio.file.StandardOpenOption.WRITE,
                java.nio.file.StandardOpenOption.SPARSE)) {
            ch.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, h.length));
            ch.write(ByteBuffer.wrap(h), 8);
            ByteBuffer w = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
            float[] want = {1f, -2.5f, 3.140625f, 65536f, -0f, 0.5f};
            for (float x : want) w.putShort(Floats.f32ToBf16(x));
            ch.write(w.flip(), 8 + h.length + pad);
        }
        try (var r = Safetensors.Reader.open(f)) {
            float[] got = new float[6];
            r.readF32(r.get("w"), 0, 6, HostFloats.wrap(got), 0);
            assertArrayEquals(new float[]{1f, -2.5f, 3.140625f, 65536f, -0f, 0.5f}, got);
            float[] block = new float[2];
            r.readBlockF32(r.get("w"), 1, 1, 1, 2, HostFloats.wrap(block), 0);   // row 1, columns 1..2
            assertArrayEquals(new float[]{-0f, 0.5f}, block);
        } finally {
            Files.delete(f);
        }
    }

    // ------------------------------------------------------------------------------------------ bad files

    static byte[] raw(String header, int dataBytes) {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        return b.array();
    }

    String fails(byte[] content) throws IOException {
        Path p = file(tmp, "bad.safetensors", content);
        UserError e = assertThrows(UserError.class, () -> Safetensors.Reader.open(p).close());
        assertTrue(e.getMessage().startsWith(p.toString() + ": "), "names the file: " + e.getMessage());
        assertFalse(e.getMessage().contains("\n"), "one line");
        return e.getMessage();
    }

    @Test
    void badHeadersNameFileAndTensor() throws IOException {
        String m;
        m = fails(new byte[]{1, 2, 3});
        assertTrue(m.contains("truncated"), m);
        byte[] huge = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(200_000_000L).array();
        m = fails(huge);
        assertTrue(m.contains("exceeds") && m.contains("100000000"), m);
        byte[] neg = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(-1L).array();
        assertTrue(fails(neg).contains("exceeds"));
        m = fails(ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(100).array());
        assertTrue(m.contains("truncated"), m);
        m = fails(raw("{\"a\": {\"dtype\": \"F32\", ", 0));
        assertTrue(m.contains("not valid JSON"), m);
        m = fails(raw("[1, 2]", 0));
        assertTrue(m.contains("not a JSON object"), m);
        m = fails(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8));
        assertTrue(m.contains("Duplicate") && m.contains("'a'"), m);
        m = fails(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12));
        assertTrue(m.contains("tensor b") && m.contains("overlap"), m);
        m = fails(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20));
        assertTrue(m.contains("tensor b") && m.contains("gap"), m);
        m = fails(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12));
        assertTrue(m.contains("tensor a") && m.contains("gap"), m);
        m = fails(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8));
        assertTrue(m.contains("tensor a") && m.contains("needs 12 bytes"), m);
        m = fails(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9));
        assertTrue(m.contains("trailing"), m);
        m = fails(raw("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8));
        assertTrue(m.contains("tensor a") && m.contains("unknown dtype Q4"), m);
        m = fails(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8));
        assertTrue(m.contains("tensor a") && m.contains("negative"), m);
        m = fails(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8));
        assertTrue(m.contains("tensor a") && m.contains("data_offsets"), m);
        m = fails(raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904, 4],\"data_offsets\":[0,8]}}", 8));
        assertTrue(m.contains("tensor a") && m.contains("overflows"), m);
        byte[] notUtf8 = raw("{\"a\":1}", 0);
        notUtf8[10] = (byte) 0xff;
        assertTrue(fails(notUtf8).contains("UTF-8"));
    }

    @Test
    void truncatedOrCorruptFileNamesTheTensor() throws IOException {
        float[] a = {1, 2, 3}, b = {4, 5, 6, 7};
        byte[] good = bytes(List.of(Safetensors.OutTensor.of("a", DType.F32, new long[]{3}, HostFloats.wrap(a), 0),
                Safetensors.OutTensor.of("b", DType.F32, new long[]{4}, HostFloats.wrap(b), 0)), Map.of("format", "pt"));
        String m = fails(Arrays.copyOf(good, good.length - 3));
        assertTrue(m.contains("tensor b") && m.contains("truncated"), m);
        m = fails(Arrays.copyOf(good, good.length - 20));     // cuts into tensor a as well: the first tensor past the end is named
        assertTrue(m.contains("tensor a") && m.contains("truncated"), m);
        // a corrupted offset inside the header (a digit flipped) is caught by the structure checks
        String h = new String(good, 8, good.length - 8 - 28, StandardCharsets.UTF_8);
        byte[] flipped = good.clone();
        int at = 8 + h.indexOf("[12,28]") + 4;
        flipped[at] = '9';
        m = fails(flipped);
        assertTrue(m.contains("tensor b"), m);
        // a non-float dtype cannot be read as fp32
        byte[] ints = raw("{\"ids\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
        Path p = file(tmp, "ints.safetensors", ints);
        try (var r = Safetensors.Reader.open(p)) {
            UserError e = assertThrows(UserError.class, () -> r.readF32(r.get("ids"), 0, 2, HostFloats.wrap(new float[2]), 0));
            assertTrue(e.getMessage().contains("tensor ids") && e.getMessage().contains("I32"), e.getMessage());
            UserError nf = assertThrows(UserError.class, () -> r.get("nope"));
            assertTrue(nf.getMessage().contains(p.toString()) && nf.getMessage().contains("nope"));
        }
        assertThrows(UserError.class, () -> Safetensors.Reader.open(tmp.resolve("missing.safetensors")));
    }
}
