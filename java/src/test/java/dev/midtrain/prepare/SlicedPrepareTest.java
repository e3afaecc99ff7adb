package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static dev.midtrain.data.TestData.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * prepare --num-shards N --shard-index I + --merge gives the bytes of one prepare process (shards, MinHash signatures,
 * manifest but its creation time) for N = 1, 3, 4, with near-duplicates planted across files (removed globally, in
 * input order), benchmark items planted in documents of several files, a bad record, JSONL and Parquet inputs; and a
 * slice killed with SIGKILL reruns alone.
 */
class SlicedPrepareTest {
    @TempDir Path tmp;
    final PrintStream quiet = new PrintStream(new ByteArrayOutputStream());
    static final String BENCH_Q = "which force keeps the moon on its orbit around the earth every single month of the year";

    /** 6 inputs: 5 JSONL text files with cross-file near-duplicates and contamination, plus a pyarrow Parquet file. */
    private List<Path> inputs() throws IOException {
        List<List<String>> files = new ArrayList<>();
        for (int f = 0; f < 5; f++) files.add(new ArrayList<>(texts(100 + f, 40, 80)));
        Random r = new Random(7);
        String orig = text(r, 120);
        files.get(0).add(3, orig);
        files.get(2).add(10, orig.replaceFirst("energy", "power"));           // near-duplicate of file 0's, one word changed
        files.get(4).add(0, orig);                                            // exact copy
        files.get(3).add(5, files.get(1).get(7) + " " + files.get(1).get(7)); // doubled text: few new shingles, a near-duplicate
        files.get(1).add(2, "Some words first. " + BENCH_Q.toUpperCase() + "? Then more.");   // contaminated
        files.get(3).add(0, BENCH_Q);                                                           // contaminated
        List<Path> out = new ArrayList<>();
        for (int f = 0; f < 5; f++) {
            List<String> lines = new ArrayList<>(files.get(f).stream().map(t -> "{\"text\": " + json(t) + "}").toList());
            if (f == 2) lines.add(4, "{\"text\": 12}");                                         // a bad record (skipped)
            out.add(writeLines(tmp.resolve("in-" + f + ".jsonl"), lines, f == 3));
            if (f == 2) out.add(ParquetInputTest.DIR.resolve("text-zstd.parquet"));
        }
        return out;
    }

    private Preparer.Options opts(List<Path> in, Path out) throws IOException {
        Path bench = writeLines(tmp.resolve("bench.jsonl"), List.of("{\"question\": \"" + BENCH_Q + "?\", \"answer\": \"gravity\"}"), false);
        return Preparer.Options.of("sliced", in, TOKENIZER, out).withSharding(256, 4096).withSkipErrors(true).withThreads(2)
                .withBenchmarks(List.of(bench)).withDedup(new MinHashDedup.Params(5, 0.8, List.of()));
    }

    static void assertSameOutput(Path want, Path got) throws IOException {
        List<byte[]> a = ParquetInputTest.shardBytes(want), b = ParquetInputTest.shardBytes(got);
        assertTrue(a.size() >= 3, "several shards expected, got " + a.size());
        assertEquals(a.size(), b.size());
        for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i), b.get(i), "shard " + i + " of " + got);
        assertArrayEquals(Files.readAllBytes(want.resolve(MinHashDedup.SIGNATURES_FILE)), Files.readAllBytes(got.resolve(MinHashDedup.SIGNATURES_FILE)));
        assertEquals(manifestWithoutTime(want), manifestWithoutTime(got));
    }

    static String manifestWithoutTime(Path dir) throws IOException {
        ObjectNode m = (ObjectNode) new ObjectMapper().readTree(dir.resolve(Manifest.FILE).toFile());
        assertNotNull(m.remove("created"));
        return m.toPrettyString();
    }

    @Test
    void anyNumberOfSlicesGivesTheBytesOfOneProcess() throws IOException {
        List<Path> in = inputs();
        Manifest one = Preparer.run(opts(in, tmp.resolve("one")), quiet);
        assertEquals(List.of(tmp.resolve("in-2.jsonl") + ":12", tmp.resolve("in-3.jsonl") + ":7", tmp.resolve("in-4.jsonl") + ":1"),
                one.cleaning().dedup().duplicates().stream().map(Manifest.Duplicate::where).toList(), "planted across files: " + one.cleaning().dedup().duplicates());
        assertEquals(2L, one.dropped().get("decontaminated"));
        assertEquals(1L, one.dropped().get("wrong_type"));
        assertEquals(1L, one.dropped().get("missing_field"));                 // the Parquet fixture's null row
        assertEquals("sliced#3", one.cleaning().dedup().duplicates().get(2).duplicateOf(), "the copy in file 4 of file 0's 4th document");
        for (int n : new int[]{1, 3, 4}) {
            Path out = tmp.resolve("n" + n);
            Preparer.Options o = opts(in, out);
            for (int i = n - 1; i >= 0; i--) SlicedPrepare.runSlice(o, n, i, quiet);   // any order, as independent processes
            assertTrue(Files.isDirectory(SlicedPrepare.slicesDir(out)));
            Manifest m = SlicedPrepare.merge(o, n, quiet);
            assertSameOutput(tmp.resolve("one"), out);
            assertEquals(one.documents(), m.documents());
            assertFalse(Files.exists(SlicedPrepare.slicesDir(out)), "the merge removes the slices' units");
        }
        // a merge with other options than its slices is refused
        Preparer.Options o = opts(in, tmp.resolve("mixed"));
        for (int i = 0; i < 3; i++) SlicedPrepare.runSlice(i == 1 ? o.withQaTemplate("Q: {question} A: {answer}") : o, 3, i, quiet);
        UserError e = assertThrows(UserError.class, () -> SlicedPrepare.merge(o, 3, quiet));
        assertTrue(e.getMessage().contains("input-00001.json: made with other options") && e.getMessage().endsWith("--shard-index 1"), e.getMessage());
        assertThrows(UserError.class, () -> SlicedPrepare.runSlice(o, 7, 0, quiet));      // more slices than files
        assertThrows(UserError.class, () -> SlicedPrepare.runSlice(o, 3, 3, quiet));
    }

    @Test
    void aSliceKilledWithSigkillRerunsAlone() throws Exception {
        List<Path> in = new ArrayList<>(inputs());
        StringBuilder big = new StringBuilder();                               // input 3 (slice 1 of 2): ~3 MB, seconds to prepare
        Random r = new Random(11);
        for (int i = 0; i < 6000; i++) big.append("{\"text\": ").append(json(text(r, 80))).append("}\n");
        in.set(3, Files.writeString(tmp.resolve("big.jsonl"), big.toString(), StandardCharsets.UTF_8));
        Path out = tmp.resolve("out");
        Preparer.Options o = opts(in, out);
        Manifest one = Preparer.run(opts(in, tmp.resolve("one")), quiet);

        SlicedPrepare.runSlice(o, 2, 0, quiet);
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
                System.getProperty("java.class.path"), "-Xmx512m", "dev.midtrain.Main", "prepare", "--source", "sliced", "--tokenizer",
                TOKENIZER.toString(), "--out", out.toString(), "--on-error", "skip", "--threads", "1", "--batch-tokens", "256",
                "--shard-tokens", "4096", "--decontaminate", tmp.resolve("bench.jsonl").toString(), "--dedup", "--no-progress",
                "--num-shards", "2", "--shard-index", "1", "--input"));
        for (Path p : in) cmd.add(p.toString());
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(tmp.resolve("child.log").toFile()).start();
        Path work = SlicedPrepare.slicesDir(out), done1 = work.resolve("input-00001.json"), partial3 = work.resolve(".input-00003.docs.tmp");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!(Files.exists(done1) && Files.exists(partial3) && Files.size(partial3) > (1 << 17))) {   // killed inside input 3
            assertTrue(p.isAlive(), () -> "the slice ended before it could be killed: " + read(tmp.resolve("child.log")));
            assertTrue(System.nanoTime() < deadline, "timed out waiting for the slice to write input 3");
            Thread.sleep(5);
        }
        p.destroyForcibly();                                                   // SIGKILL
        assertEquals(137, p.waitFor(), "128 + SIGKILL");
        assertFalse(Files.exists(work.resolve("input-00003.json")), "input 3 must be incomplete when killed");
        UserError e = assertThrows(UserError.class, () -> SlicedPrepare.merge(o, 2, quiet));
        assertEquals(work + ": input-00003 (" + in.get(3) + ") is not complete: rerun prepare --num-shards 2 --shard-index 1", e.getMessage());
        assertFalse(Files.exists(out), "no output before a complete merge");

        long slice0 = Files.getLastModifiedTime(work.resolve("input-00000.json")).toMillis();
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        assertEquals(2, SlicedPrepare.runSlice(o, 2, 1, new PrintStream(log, true, StandardCharsets.UTF_8)), "inputs 3 and 5 are redone, not 1");
        assertTrue(log.toString(StandardCharsets.UTF_8).contains(in.get(1) + " already done"), log.toString(StandardCharsets.UTF_8));
        assertEquals(slice0, Files.getLastModifiedTime(work.resolve("input-00000.json")).toMillis(), "slice 0 untouched");
        SlicedPrepare.merge(o, 2, quiet);
        assertSameOutput(tmp.resolve("one"), out);
        assertEquals(one.tokens(), Manifest.read(out).tokens());
    }

    private static String read(Path f) {
        try { return Files.readString(f); } catch (IOException e) { return e.toString(); }
    }
}
