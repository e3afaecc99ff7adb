package dev.midtrain.data;

import dev.midtrain.prepare.Preparer;
import dev.midtrain.prepare.Inputs;
import dev.midtrain.common.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.midtrain.data.TestData.*;
import static org.junit.jupiter.api.Assertions.*;

/** Malformed inputs report file:line (or row); corrupt, truncated or half-written prepared data is refused by name. */
class BadInputTest {
    @TempDir Path tmp;
    final PrintStream quiet = new PrintStream(new ByteArrayOutputStream());

    private UserError fails(Preparer.Options o) { return assertThrows(UserError.class, () -> Preparer.run(o, quiet)); }

    private Preparer.Options opts(Path in) { return Preparer.Options.of("b", List.of(in), TOKENIZER, tmp.resolve("out")); }

    @Test
    void malformedJsonLineFailsWithFileAndLine() throws IOException {
        Path in = writeLines(tmp.resolve("bad.jsonl"), List.of("{\"text\": \"ok\"}", "", "{\"text\": \"broken", "{\"text\": \"fine\"}"), false);
        UserError e = fails(opts(in));
        assertTrue(e.getMessage().startsWith(in + ":3: malformed JSON"), e.getMessage());
        assertFalse(Files.exists(tmp.resolve("out/manifest.json")));
    }

    @Test
    void skipModeCountsEveryReasonInTheManifest() throws IOException {
        Path in = writeLines(tmp.resolve("mixed.jsonl"), List.of(
                "{\"text\": \"one\"}", "not json", "{\"txt\": \"typo\"}", "{\"text\": 42}", "{\"text\": \"   \"}", "{\"text\": \"two\"}"), false);
        Manifest m = Preparer.run(opts(in).withFormat(Inputs.Format.TEXT).withSkipErrors(true), quiet);
        assertEquals(2, m.documents());
        assertEquals(1L, m.dropped().get("malformed_json"));
        assertEquals(1L, m.dropped().get("missing_field"));
        assertEquals(1L, m.dropped().get("wrong_type"));
        assertEquals(1L, m.dropped().get("empty"));
        assertEquals(List.of(in + ":2", in + ":3", in + ":4"), m.errors().stream().map(s -> s.substring(0, s.indexOf(": "))).toList());
    }

    @Test
    void missingQaFieldAndOutOfVocabIdsNameTheirLine() throws IOException {
        Path qa = writeLines(tmp.resolve("qa.jsonl"), List.of("{\"question\": \"q\", \"answer\": \"a\"}", "{\"question\": \"q only\"}"), false);
        UserError e = fails(opts(qa).withFormat(Inputs.Format.QA));
        assertTrue(e.getMessage().startsWith(qa + ":2: no \"answer\" field"), e.getMessage());
        Path ids = writeLines(tmp.resolve("ids.jsonl"), List.of("[1, 2, 3]", "[4, 512, 6]"), false);
        e = fails(opts(ids));
        assertTrue(e.getMessage().startsWith(ids + ":2: token id 512 outside"), e.getMessage());
    }

    @Test
    void truncatedGzipAndNullArrowRowAreReportedWithLocation() throws IOException {
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 2000; i++) lines.add("{\"text\": \"document number " + i + " with some words\"}");
        Path gz = writeLines(tmp.resolve("t.jsonl.gz"), lines, true);
        byte[] b = Files.readAllBytes(gz);
        Files.write(gz, Arrays.copyOf(b, b.length / 2));
        UserError e = fails(opts(gz));
        assertTrue(e.getMessage().startsWith(gz + ":") && e.getMessage().contains("truncated gzip"), e.getMessage());

        Path arrow = arrowText(tmp.resolve("n.arrow"), Arrays.asList("fine", "also fine", null, "ok"), 2);
        e = fails(opts(arrow));
        assertEquals(arrow + ": row 2: \"text\" is null (--on-error skip to skip such records)", e.getMessage());
    }

    /** A small prepared dir with several shards. */
    private Path prepared() throws IOException {
        Path in = writeLines(tmp.resolve("p.jsonl"), texts(9, 200, 30).stream().map(d -> "{\"text\": " + json(d) + "}").toList(), false);
        Preparer.run(opts(in).withSharding(300, 1500), quiet);
        return tmp.resolve("out");
    }

    @Test
    void truncatedShardIsRefusedByName() throws IOException {
        Path dir = prepared();
        Path shard = dir.resolve("shard-00001.arrow");
        try (FileChannel ch = FileChannel.open(shard, StandardOpenOption.WRITE)) {
            ch.truncate(ch.size() - 100);
        }
        UserError e = assertThrows(UserError.class, () -> PreparedSource.open("s", dir, false));
        assertTrue(e.getMessage().startsWith(shard.toString()) && e.getMessage().contains("truncated"), e.getMessage());
    }

    @Test
    void corruptedBytesAreCaughtBySha256AndBrokenFooterByStructure() throws IOException {
        Path dir = prepared();
        Path shard = dir.resolve("shard-00002.arrow");
        flip(shard, Files.size(shard) / 2);                          // inside token data: shape still valid
        PreparedSource.open("s", dir, false);                        // lazy mode only checks size and structure
        UserError e = assertThrows(UserError.class, () -> PreparedSource.open("s", dir, true));
        assertTrue(e.getMessage().startsWith(shard + ": SHA-256"), e.getMessage());

        Path other = dir.resolve("shard-00000.arrow");
        flip(other, Files.size(other) - 10);                          // the footer length before the trailing magic
        e = assertThrows(UserError.class, () -> PreparedSource.open("s", dir, false));
        assertTrue(e.getMessage().startsWith(other.toString()), e.getMessage());
    }

    @Test
    void directoryWithoutManifestOrMissingShardIsRefused() throws IOException {
        Path dir = prepared();
        Files.delete(dir.resolve("shard-00003.arrow"));
        UserError e = assertThrows(UserError.class, () -> PreparedSource.open("s", dir, false));
        assertTrue(e.getMessage().startsWith(dir.resolve("shard-00003.arrow") + ": shard listed in"), e.getMessage());
        // an interrupted prepare: shards (and temp files) but no manifest
        Files.delete(dir.resolve("manifest.json"));
        Files.writeString(dir.resolve(".shard-00009.arrow.tmp"), "partial");
        e = assertThrows(UserError.class, () -> PreparedSource.open("s", dir, false));
        assertTrue(e.getMessage().startsWith(dir + ": no manifest.json"), e.getMessage());
        e = assertThrows(UserError.class, () -> PreparedSource.open("s", tmp.resolve("nope"), false));
        assertTrue(e.getMessage().startsWith(tmp.resolve("nope") + ": prepared data directory not found"), e.getMessage());
        Files.writeString(dir.resolve("manifest.json"), "{\"format\": \"midtrain-tokens/1\", ");
        e = assertThrows(UserError.class, () -> PreparedSource.open("s", dir, false));
        assertTrue(e.getMessage().startsWith(dir.resolve("manifest.json") + ": malformed JSON"), e.getMessage());
    }

    @Test
    void outOfRangeIdsAreRefusedAgainstTheModelVocab() throws IOException {
        Path dir = prepared();
        PreparedSource p = PreparedSource.open("boostqa", dir, false);
        p.checkVocab(512);
        p.scanIds();
        UserError e = assertThrows(UserError.class, () -> p.checkVocab(300));
        assertTrue(e.getMessage().startsWith("data source boostqa: " + dir.resolve("shard-00000.arrow") + " holds token id"), e.getMessage());
    }

    /** One line, exit code 2, naming the file and line. */
    private static void oneLine(UserError e) {
        assertEquals(2, e.exitCode(), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }

    @Test
    void invalidUtf8NamesFileAndLineAndIsSkippedAndCountedWhenAsked() throws IOException {
        Path in = tmp.resolve("latin1.jsonl");
        byte[] bad = "{\"text\": \"caf\u00e9 ok\"}\n{\"text\": \"caf".getBytes(java.nio.charset.StandardCharsets.UTF_8);
        java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
        b.write(bad);
        b.write(0xE9);                                                   // Latin-1 e-acute: not UTF-8
        b.write("\"}\n{\"text\": \"fine\"}\n".getBytes(java.nio.charset.StandardCharsets.UTF_8));
        Files.write(in, b.toByteArray());
        UserError e = fails(opts(in));
        assertEquals(in + ":2: invalid UTF-8 (byte 14 of the line) (--on-error skip to skip such records)", e.getMessage());
        oneLine(e);
        Manifest m = Preparer.run(opts(in).withSkipErrors(true), quiet);
        assertEquals(2, m.documents());
        assertEquals(1L, m.dropped().get("invalid_utf8"));
    }

    @Test
    void wrongTypedArrowColumnsAreRefusedAndDictionaryStringsDecoded() throws IOException {
        Path ints = tmp.resolve("ints.arrow");
        try (var a = new org.apache.arrow.memory.RootAllocator(); var v = new org.apache.arrow.vector.BigIntVector("text", a);
             var root = org.apache.arrow.vector.VectorSchemaRoot.of(v); var os = Files.newOutputStream(ints);
             var w = new org.apache.arrow.vector.ipc.ArrowStreamWriter(root, null, os)) {
            w.start();
            v.allocateNew(2);
            v.set(0, 1);
            v.set(1, 22);
            v.setValueCount(2);
            root.setRowCount(2);
            w.writeBatch();
            w.end();
        }
        UserError e = fails(opts(ints));
        assertEquals(ints + ": column \"text\" has type Int(64, true), expected strings (utf8, large_utf8 or dictionary-encoded utf8)", e.getMessage());
        oneLine(e);

        List<String> texts = List.of("the photon", "acids donate protons", "the photon", "cells divide");
        Path dict = tmp.resolve("dict.arrow");                          // dictionary-encoded utf8, as pandas categoricals are written
        try (var a = new org.apache.arrow.memory.RootAllocator(); var dv = new org.apache.arrow.vector.VarCharVector("dict", a)) {
            List<String> distinct = texts.stream().distinct().toList();
            dv.allocateNew(distinct.size());
            for (int i = 0; i < distinct.size(); i++) dv.setSafe(i, distinct.get(i).getBytes(java.nio.charset.StandardCharsets.UTF_8));
            dv.setValueCount(distinct.size());
            var enc = new org.apache.arrow.vector.types.pojo.DictionaryEncoding(7L, false, new org.apache.arrow.vector.types.pojo.ArrowType.Int(32, true));
            var provider = new org.apache.arrow.vector.dictionary.DictionaryProvider.MapDictionaryProvider();
            var dictionary = new org.apache.arrow.vector.dictionary.Dictionary(dv, enc);
            provider.put(dictionary);
            try (var plain = new org.apache.arrow.vector.VarCharVector("text", a)) {
                plain.allocateNew(texts.size());
                for (int i = 0; i < texts.size(); i++) plain.setSafe(i, texts.get(i).getBytes(java.nio.charset.StandardCharsets.UTF_8));
                plain.setValueCount(texts.size());
                try (var idx = (org.apache.arrow.vector.FieldVector) org.apache.arrow.vector.dictionary.DictionaryEncoder.encode(plain, dictionary);
                     var root = new org.apache.arrow.vector.VectorSchemaRoot(List.of(idx.getField()), List.of(idx), texts.size());
                     var os = Files.newOutputStream(dict); var w = new org.apache.arrow.vector.ipc.ArrowStreamWriter(root, provider, os)) {
                    w.start();
                    w.writeBatch();
                    w.end();
                }
            }
        }
        Preparer.run(opts(dict), quiet);
        RefBpe ref = new RefBpe(TOKENIZER);
        assertArrayEquals(concat(texts.stream().map(t -> withEos(ref.encode(t))).toList()), readAll(tmp.resolve("out")), "the strings, not their indices");
    }

    @Test
    void unknownTemplateSlotAndEmptyBenchmarkFileAreErrors() throws IOException {
        Path qa = writeLines(tmp.resolve("qa.jsonl"), List.of("{\"question\": \"q\", \"answer\": \"a\", \"grade\": 9}"), false);
        UserError e = fails(opts(qa).withQaTemplate("{question} ({subject}) {answer}"));
        assertEquals("--qa-template: slot {subject} is not a field of the first record (" + qa + ":1; fields: question, answer, grade)", e.getMessage());
        oneLine(e);
        Path arrow = arrowText(tmp.resolve("t.arrow"), List.of("x"), 1);
        e = fails(opts(arrow).withFormat(Inputs.Format.QA));
        assertTrue(e.getMessage().contains("no column \"question\""), e.getMessage());
        Path empty = Files.writeString(tmp.resolve("empty.jsonl"), "\n");
        Path ok = writeLines(tmp.resolve("ok.jsonl"), List.of("{\"text\": \"fine\"}"), false);
        e = fails(opts(ok).withBenchmarks(List.of(empty)));
        assertEquals(empty + ": benchmark file has no records (it would decontaminate nothing)", e.getMessage());
        oneLine(e);
    }

    /** A prepare that fails halfway leaves the previous output exactly as it was, and no staging directory behind. */
    @Test
    void failedPrepareKeepsThePreviousOutput() throws IOException {
        Path dir = prepared();
        byte[] manifest = Files.readAllBytes(dir.resolve("manifest.json"));
        int[] tokens = readAll(dir);
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 3000; i++) lines.add("{\"text\": \"document " + i + " of the second run\"}");
        lines.add("{\"text\": broken");
        Path in = writeLines(tmp.resolve("second.jsonl"), lines, false);
        UserError e = fails(opts(in).withSharding(300, 1500));
        assertTrue(e.getMessage().startsWith(in + ":3001: malformed JSON"), e.getMessage());
        assertArrayEquals(manifest, Files.readAllBytes(dir.resolve("manifest.json")));
        assertArrayEquals(tokens, readAll(dir));
        try (var s = Files.list(tmp)) {
            assertEquals(List.of(), s.map(p -> p.getFileName().toString()).filter(n -> n.startsWith(".out")).toList(), "no staging left");
        }
    }

    /** Shard SHA-256 at train start: parallel, cached per run by path, size and mtime. */
    @Test
    void shardVerificationCatchesAFlippedBitAndCachesVerifiedShards() throws IOException {
        Path dir = prepared();
        var cfg = new dev.midtrain.config.DataConfig(List.of(new dev.midtrain.config.DataConfig.Source("b", dir.toString(), 1)), 0.0);
        Path cache = tmp.resolve("run/verified_shards.json");
        Files.createDirectories(cache.getParent());
        ShardVerifier.Result r = ShardVerifier.verify(cfg, cache, 2, null);
        int n = Manifest.read(dir).files().size();
        assertEquals(n, r.hashed());
        ShardVerifier.writeCache(cache, r);
        ShardVerifier.Result again = ShardVerifier.verify(cfg, cache, 2, null);
        assertEquals(0, again.hashed());
        assertEquals(n, again.cached());
        Path shard = dir.resolve("shard-00001.arrow");
        var mtime = Files.getLastModifiedTime(shard);
        flip(shard, (Files.size(shard) / 2) & ~7L);
        Files.setLastModifiedTime(shard, mtime);                       // same size and mtime: the cache trusts it (as documented)
        assertEquals(0, ShardVerifier.verify(cfg, cache, 2, null).hashed());
        Files.setLastModifiedTime(shard, java.nio.file.attribute.FileTime.fromMillis(mtime.toMillis() + 5000));
        UserError e = assertThrows(UserError.class, () -> ShardVerifier.verify(cfg, cache, 2, null));
        assertTrue(e.getMessage().startsWith(shard.toAbsolutePath().normalize() + ": SHA-256 ") && e.getMessage().contains("--no-verify-data"), e.getMessage());
        oneLine(e);
    }

    private static void flip(Path f, long pos) throws IOException {
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.allocate(1);
            ch.read(b, pos);
            b.put(0, (byte) (b.get(0) ^ 0x5a)).rewind();
            ch.write(b, pos);
        }
    }
}
