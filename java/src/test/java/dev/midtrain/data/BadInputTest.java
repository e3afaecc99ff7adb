package dev.midtrain.data;

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

    private static void flip(Path f, long pos) throws IOException {
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.allocate(1);
            ch.read(b, pos);
            b.put(0, (byte) (b.get(0) ^ 0x5a)).rewind();
            ch.write(b, pos);
        }
    }
}
