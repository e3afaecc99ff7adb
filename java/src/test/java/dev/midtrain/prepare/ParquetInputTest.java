package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import dev.midtrain.data.RefBpe;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.UserError;
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
import java.util.stream.Stream;

import static dev.midtrain.data.TestData.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Parquet files written by pyarrow (scripts/fixtures/make_parquet_fixtures.py: uncompressed, Snappy and Zstandard,
 * 4 to 8 row groups, dictionary / plain / large_string columns) give byte-identical shards and the same counts as
 * the same rows in JSON Lines, and the tokens equal the independent reference tokenizer's; a Hub dataset directory
 * reads its split's files in order; bad Parquet input is a one-line error naming the file.
 */
class ParquetInputTest {
    static final Path DIR = Path.of("java/src/test/resources/parquet");
    static RefBpe ref;
    @TempDir Path tmp;
    final PrintStream quiet = new PrintStream(new ByteArrayOutputStream());

    @BeforeAll
    static void loadRef() throws IOException { ref = new RefBpe(TOKENIZER); }

    /** prepare with small shards (several per source) and --on-error skip (row 13 of the text rows is null). */
    private Manifest prepare(String name, Preparer.Options o) {
        return Preparer.run(o.withSharding(64, 256).withSkipErrors(true).withThreads(2), quiet);
    }

    private Preparer.Options opts(String name, List<Path> in) { return Preparer.Options.of(name, in, TOKENIZER, tmp.resolve(name)); }

    static List<byte[]> shardBytes(Path dir) throws IOException {
        List<byte[]> out = new ArrayList<>();
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : s.filter(p -> p.getFileName().toString().matches("shard-\\d{5}\\.arrow")).sorted().toList()) out.add(Files.readAllBytes(p));
        }
        return out;
    }

    private static void assertSameShards(Path want, Path got) throws IOException {
        List<byte[]> a = shardBytes(want), b = shardBytes(got);
        assertTrue(a.size() > 1, "several shards expected");
        assertEquals(a.size(), b.size(), "shard count");
        for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i), b.get(i), "shard " + i + " of " + got);
    }

    private static void assertSameCounts(Manifest want, Manifest got) {
        assertEquals(want.documents(), got.documents());
        assertEquals(want.tokens(), got.tokens());
        assertEquals(want.dropped(), got.dropped());
        assertEquals(want.inputs().get(0).records(), got.inputs().stream().mapToLong(Manifest.Input::records).sum());
        assertEquals(want.inputs().get(0).format(), got.inputs().get(0).format());
    }

    @Test
    void textInEveryCompressionGivesTheShardsOfTheSameRowsInJsonl() throws IOException {
        Manifest j = prepare("jsonl", opts("jsonl", List.of(DIR.resolve("text.jsonl"))));
        // independent reference: the 49 non-null texts through RefBpe, each + end-of-text
        List<int[]> parts = new ArrayList<>();
        for (String line : Files.readAllLines(DIR.resolve("text.jsonl"))) {
            JsonNode t = new ObjectMapper().readTree(line).get("text");
            if (!t.isNull()) parts.add(withEos(ref.encode(t.asText())));
        }
        assertArrayEquals(concat(parts), readAll(tmp.resolve("jsonl")));
        assertEquals(49, j.documents());
        assertEquals(java.util.Map.of("missing_field", 1L), j.dropped());
        for (String f : List.of("text-none.parquet", "text-snappy.parquet", "text-zstd.parquet")) {
            String name = f.replace(".parquet", "");
            Manifest p = prepare(name, opts(name, List.of(DIR.resolve(f))));
            assertSameShards(tmp.resolve("jsonl"), tmp.resolve(name));
            assertSameCounts(j, p);
            assertEquals(List.of(DIR.resolve(f) + ": row 13: \"text\" is null"), p.errors(), f);
        }
    }

    @Test
    void qaWithDictionaryAndIntegerSlotsMatchesJsonl() throws IOException {
        String tpl = "[{discipline}, grade {grade}] Q: {question}\nA: {answer}";
        Manifest j = prepare("qaj", opts("qaj", List.of(DIR.resolve("qa.jsonl"))).withQaTemplate(tpl));
        Manifest p = prepare("qap", opts("qap", List.of(DIR.resolve("qa-snappy.parquet"))).withQaTemplate(tpl));
        assertEquals("qa", p.inputs().get(0).format());
        assertEquals(30, p.documents());
        assertSameShards(tmp.resolve("qaj"), tmp.resolve("qap"));
        assertSameCounts(j, p);
        JsonNode first = new ObjectMapper().readTree(Files.readAllLines(DIR.resolve("qa.jsonl")).get(0));
        String rendered = "[" + first.get("discipline").asText() + ", grade " + first.get("grade").asInt() + "] Q: "
                + first.get("question").asText() + "\nA: " + first.get("answer").asText();
        int[] want = withEos(ref.encode(rendered));
        assertArrayEquals(want, java.util.Arrays.copyOf(readAll(tmp.resolve("qap")), want.length));
    }

    @Test
    void tokenIdListsMatchJsonl() throws IOException {
        Manifest j = prepare("tj", opts("tj", List.of(DIR.resolve("tokens.jsonl"))));
        Manifest p = prepare("tp", opts("tp", List.of(DIR.resolve("tokens-zstd.parquet"))));
        assertEquals("tokens", p.inputs().get(0).format());
        assertEquals(20, p.documents());
        assertSameShards(tmp.resolve("tj"), tmp.resolve("tp"));
        assertSameCounts(j, p);
    }

    @Test
    void hubDirectoryReadsItsSplitInOrderAndSkipsTheCache() throws IOException {
        Path hub = DIR.resolve("hub");
        assertEquals(List.of(hub.resolve("data/train-00000-of-00002.parquet"), hub.resolve("data/train-00001-of-00002.parquet")),
                Inputs.expand(List.of(hub), "train"));
        assertEquals(List.of(hub.resolve("data/test-00000-of-00001.parquet")), Inputs.expand(List.of(hub), "test"));
        assertEquals(Inputs.expand(List.of(hub), "train"), Inputs.expand(List.of(hub), null), "default: train when there is one");
        Path flat = Files.createDirectories(tmp.resolve("sample/10BT"));                     // FineWeb-Edu's sample layout: no splits
        for (String n : List.of("001_00000.parquet", "000_00001.parquet", "000_00000.parquet"))
            Files.copy(DIR.resolve("text-none.parquet"), flat.resolve(n));
        assertEquals(List.of(flat.resolve("000_00000.parquet"), flat.resolve("000_00001.parquet"), flat.resolve("001_00000.parquet")),
                Inputs.expand(List.of(tmp.resolve("sample/10BT")), null));
        Path file = DIR.resolve("text.jsonl");
        assertEquals(List.of(file), Inputs.expand(List.of(file), "train"));
        UserError e = assertThrows(UserError.class, () -> Inputs.expand(List.of(hub), "validation"));
        assertEquals(hub + ": no Parquet file of split \"validation\" (--split); files there belong to [test, train]", e.getMessage());
        Path empty = Files.createDirectories(tmp.resolve("empty"));
        UserError none = assertThrows(UserError.class, () -> Inputs.expand(List.of(empty), "train"));
        assertTrue(none.getMessage().startsWith(empty + ": a directory input must hold Parquet files"), none.getMessage());

        Manifest j = prepare("jsonl", opts("jsonl", List.of(file)));
        Manifest h = prepare("hub", opts("hub", Inputs.expand(List.of(hub), "train")));
        assertSameShards(tmp.resolve("jsonl"), tmp.resolve("hub"));
        assertSameCounts(j, h);
        assertEquals(List.of(30L, 20L), h.inputs().stream().map(Manifest.Input::records).toList());
        assertEquals(List.of(hub.resolve("data/train-00000-of-00002.parquet") + ": row 13: \"text\" is null"), h.errors());
    }

    @Test
    void truncatedOrMistypedParquetIsAOneLineErrorNamingTheFile() throws IOException {
        byte[] all = Files.readAllBytes(DIR.resolve("text-zstd.parquet"));
        Path cut = Files.write(tmp.resolve("cut.parquet"), java.util.Arrays.copyOf(all, all.length / 2));
        UserError e = assertThrows(UserError.class, () -> prepare("cut", opts("cut", List.of(cut))));
        assertTrue(e.getMessage().startsWith(cut + ": not a readable Parquet file ("), e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
        assertFalse(Files.exists(tmp.resolve("cut")));

        Path f = DIR.resolve("text-snappy.parquet");
        Preparer.Options o = opts("typ", List.of(f)).withFormat(Inputs.Format.TEXT).withTextField("id");
        UserError t = assertThrows(UserError.class, () -> Preparer.run(o, quiet));
        assertEquals(f + ": column \"id\" has type BIGINT, expected strings (Parquet BYTE_ARRAY annotated STRING/UTF8)", t.getMessage());

        UserError slot = assertThrows(UserError.class, () -> prepare("slot", opts("slot", List.of(DIR.resolve("qa-snappy.parquet")))
                .withQaTemplate("{question} {answer} {difficulty}")));
        assertTrue(slot.getMessage().startsWith("--qa-template: slot {difficulty} is not a column of " + DIR.resolve("qa-snappy.parquet")), slot.getMessage());
    }
}
