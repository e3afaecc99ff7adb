package dev.midtrain.data;

import dev.midtrain.prepare.Preparer;
import dev.midtrain.prepare.Inputs;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.UserError;
import dev.midtrain.config.DataConfig;
import dev.midtrain.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/**
 * BlendedLoader over in-memory streams whose token at position p of source s is s * 10^7 + p, so every row
 * identifies its source and sequence: packing, epochs, mix accounting, resume, data parallelism, validation.
 */
class LoaderTest {
    static final int BASE = 10_000_000;
    @TempDir Path tmp;

    static TokenStream stream(int s, int tokens) {
        int[] t = new int[tokens];
        for (int p = 0; p < tokens; p++) t[p] = s * BASE + p;
        return TokenStream.of("src" + s, t);
    }

    static List<TokenStream> streams(int... sizes) {
        List<TokenStream> l = new ArrayList<>();
        for (int s = 0; s < sizes.length; s++) l.add(stream(s, sizes[s]));
        return l;
    }

    /** Source and sequence index of a row, checking the row is one aligned, contiguous sequence. */
    static long[] ident(int[] batch, int row, int L) {
        int first = batch[row * L];
        for (int i = 1; i < L; i++) assertEquals(first + i, batch[row * L + i], "row not contiguous");
        int s = first / BASE, p = first % BASE;
        assertEquals(0, p % L, "row not aligned to a sequence");
        return new long[]{s, p / L};
    }

    @Test
    void packingVisitsEveryTrainingSequenceOncePerEpochInASeededOrder() {
        int T = 15, L = T + 1, tokens = 100 * L + 7;                 // 100 sequences, a partial one unused
        BlendedLoader a = BlendedLoader.of(streams(tokens), new double[]{1}, 0.1, T, 5, 5, 42, 0, 1);
        int[] mb = new int[5 * L];
        List<Long> epoch0 = new ArrayList<>(), epoch1 = new ArrayList<>();
        for (int b = 0; b < 36; b++) {                               // 180 rows = 2 epochs of 90
            a.nextMicroBatch(mb);
            for (int r = 0; r < 5; r++) (b < 18 ? epoch0 : epoch1).add(ident(mb, r, L)[1]);
        }
        Set<Long> valid = new HashSet<>();
        for (int[] v : a.validationMicroBatches(100)) for (int r = 0; r < 5; r++) valid.add(ident(v, r, L)[1]);
        assertEquals(Set.of(5L, 15L, 25L, 35L, 45L, 55L, 65L, 75L, 85L, 95L), valid);   // evenly spaced hold-out
        Set<Long> want = new HashSet<>();
        for (long j = 0; j < 100; j++) if (!valid.contains(j)) want.add(j);
        assertEquals(want, new HashSet<>(epoch0));
        assertEquals(90, epoch0.size());
        assertEquals(want, new HashSet<>(epoch1));
        assertNotEquals(epoch0, epoch1, "each epoch is a fresh permutation");
        BlendedLoader other = BlendedLoader.of(streams(tokens), new double[]{1}, 0.1, T, 5, 5, 43, 0, 1);
        other.nextMicroBatch(mb);
        int[] first = new int[5 * L];
        BlendedLoader again = BlendedLoader.of(streams(tokens), new double[]{1}, 0.1, T, 5, 5, 42, 0, 1);
        again.nextMicroBatch(first);
        List<Long> o = new ArrayList<>();
        for (int r = 0; r < 5; r++) o.add(ident(mb, r, L)[1]);
        assertNotEquals(epoch0.subList(0, 5), o, "another seed, another order");
        for (int r = 0; r < 5; r++) assertEquals(epoch0.get(r), ident(first, r, L)[1], "same seed, same order");
    }

    @Test
    void mixRuleStaysWithinOneSampleOfTheWeightsForManyWeightings() {
        Random rnd = new Random(1);
        List<double[]> ws = new ArrayList<>(List.of(new double[]{1, 1}, new double[]{3, 1}, new double[]{1, 2, 3}, new double[]{0.001, 1}));
        for (int t = 0; t < 30; t++) {
            double[] w = new double[2 + rnd.nextInt(4)];
            for (int i = 0; i < w.length; i++) w[i] = 0.05 + rnd.nextDouble() * 5;
            ws.add(w);
        }
        Mix oneOne = new Mix(new double[]{1, 1}, null), threeOne = new Mix(new double[]{3, 1}, null);
        for (int i = 0; i < 8; i++) {                                   // ties go to the earlier source
            assertEquals(i % 2, oneOne.next());
            assertEquals(i % 4 == 2 ? 1 : 0, threeOne.next(), "3:1 sample " + i);   // deficits give 0,0,1,0 (tie at 1 goes to 0)
        }
        for (double[] w : ws) {
            double sum = Arrays.stream(w).sum();
            Mix m = new Mix(w, null);
            for (int n = 1; n <= 20_000; n++) {
                m.next();
                for (int s = 0; s < w.length; s++)
                    assertTrue(Math.abs(m.taken(s) - w[s] / sum * n) < 1.0 + 1e-9,
                            () -> Arrays.toString(w) + " source " + " drifted by a whole sample");
            }
        }
    }

    @Test
    void tokenMixIsExactWithinOneSequenceAfterEveryMicroBatchOneToOneAndThreeToOne() {
        int T = 31, L = T + 1;
        for (double[] w : List.of(new double[]{1, 1}, new double[]{3, 1})) {
            BlendedLoader ld = BlendedLoader.of(streams(300 * L, 170 * L), w, 0.0, T, 3, 12, 7, 0, 1);
            int[] mb = new int[3 * L];
            long[] mine = new long[2];
            for (int step = 1; step <= 400; step++) {
                ld.nextMicroBatch(mb);
                for (int r = 0; r < 3; r++) mine[(int) ident(mb, r, L)[0]] += T;
                Map<String, Long> tps = ld.tokensPerSource();
                assertEquals(mine[0], tps.get("src0"));
                assertEquals(mine[1], tps.get("src1"));
                long total = mine[0] + mine[1];
                double share0 = w[0] / (w[0] + w[1]);
                assertTrue(Math.abs(mine[0] - share0 * total) <= T, "step " + step + ": " + tps);
                if (w[0] == w[1]) assertTrue(Math.abs(mine[0] - mine[1]) <= T);
            }
            assertEquals(w[0] == 1 ? 0.5 : 0.75, (double) mine[0] / (mine[0] + mine[1]), 1.0 / 1200);
        }
    }

    @Test
    void resumeGivesTheSameBatchesAsAStraightRunElementForElement() throws IOException {
        int T = 20, L = T + 1;
        for (int[] cfg : new int[][]{{1, 0, 15}, {2, 1, 15}, {2, 0, 16}, {3, 2, 7}}) {   // {dp, rank, stop after} (mid-step stops too)
            int D = cfg[0], r = cfg[1], stop = cfg[2];
            BlendedLoader straight = BlendedLoader.of(streams(400 * L + 3, 90 * L), new double[]{2, 1}, 0.05, T, 2, 12, 99, r, D);
            List<int[]> want = new ArrayList<>();
            for (int i = 0; i < 60; i++) {
                int[] mb = new int[2 * L];
                straight.nextMicroBatch(mb);
                want.add(mb);
            }
            BlendedLoader first = BlendedLoader.of(streams(400 * L + 3, 90 * L), new double[]{2, 1}, 0.05, T, 2, 12, 99, r, D);
            int[] mb = new int[2 * L];
            for (int i = 0; i < stop; i++) first.nextMicroBatch(mb);
            String saved = new ObjectMapper().writeValueAsString(first.state());
            BlendedLoader resumed = BlendedLoader.of(streams(400 * L + 3, 90 * L), new double[]{2, 1}, 0.05, T, 2, 12, 99, r, D);
            resumed.restore(new ObjectMapper().readTree(saved));
            assertEquals(first.tokensPerSource(), resumed.tokensPerSource());
            for (int i = stop; i < 60; i++) {
                resumed.nextMicroBatch(mb);
                assertArrayEquals(want.get(i), mb, "micro-batch " + i + " after resume at " + stop + " (dp " + D + ")");
            }
            assertEquals(straight.tokensPerSource(), resumed.tokensPerSource());
        }
    }

    @Test
    void ranksAreDisjointAndGlobalBatchesDoNotDependOnTheDataParallelSize() throws IOException {
        int T = 9, L = T + 1, G = 12, M = 2, steps = 25;
        List<List<long[]>> byD = new ArrayList<>();                     // per D: the global batches' samples in order
        for (int D : new int[]{1, 2, 3, 6}) {
            List<long[]> global = new ArrayList<>();
            BlendedLoader[] ranks = new BlendedLoader[D];
            for (int r = 0; r < D; r++) ranks[r] = BlendedLoader.of(streams(77 * L, 51 * L), new double[]{1, 1}, 0.1, T, M, G, 5, r, D);
            int micros = G / (M * D);
            for (int k = 0; k < steps; k++) {
                Set<String> seen = new HashSet<>();
                for (int r = 0; r < D; r++)
                    for (int u = 0; u < micros; u++) {
                        int[] mb = new int[M * L];
                        ranks[r].nextMicroBatch(mb);
                        for (int row = 0; row < M; row++) {
                            long[] id = ident(mb, row, L);
                            global.add(id);
                            // within one epoch no sample repeats, so a repeat inside a global batch would be a rank overlap
                            if (k < 5) assertTrue(seen.add(id[0] + ":" + id[1]), "sample shared by two ranks in batch " + k);
                        }
                    }
            }
            byD.add(global);
            if (D == 2) {   // resuming dp=2's step-boundary state on dp=3 continues the same global batches
                JsonNode st = ranks[0].state();
                BlendedLoader r1of3 = BlendedLoader.of(streams(77 * L, 51 * L), new double[]{1, 1}, 0.1, T, M, G, 5, 1, 3);
                r1of3.restore(st);
                int[] mb = new int[M * L];
                r1of3.nextMicroBatch(mb);
                BlendedLoader ref = BlendedLoader.of(streams(77 * L, 51 * L), new double[]{1, 1}, 0.1, T, M, G, 5, 1, 3);
                int[] want = new int[M * L];
                for (int i = 0; i < steps * 2 + 1; i++) ref.nextMicroBatch(want);
                assertArrayEquals(want, mb);
            }
        }
        for (int d = 1; d < byD.size(); d++) {
            assertEquals(byD.get(0).size(), byD.get(d).size());
            for (int i = 0; i < byD.get(0).size(); i++) assertArrayEquals(byD.get(0).get(i), byD.get(d).get(i), "sample " + i);
        }
        // mid-step state cannot move to another dp size
        BlendedLoader a = BlendedLoader.of(streams(77 * L, 51 * L), new double[]{1, 1}, 0.1, T, M, G, 5, 0, 2);
        a.nextMicroBatch(new int[M * L]);
        BlendedLoader b = BlendedLoader.of(streams(77 * L, 51 * L), new double[]{1, 1}, 0.1, T, M, G, 5, 0, 3);
        assertThrows(UserError.class, () -> b.restore(a.state()));
    }

    @Test
    void validationIsHeldOutDeterministicAndSplitAcrossRanks() {
        int T = 7, L = T + 1;
        BlendedLoader ld = BlendedLoader.of(streams(200 * L, 120 * L), new double[]{1, 1}, 0.1, T, 4, 8, 3, 0, 1);
        List<int[]> v1 = ld.validationMicroBatches(1000), v2 = ld.validationMicroBatches(1000);
        assertEquals(8, v1.size());                                    // 20 + 12 held-out sequences / 4 rows
        for (int i = 0; i < v1.size(); i++) assertArrayEquals(v1.get(i), v2.get(i));
        assertEquals(3, ld.validationMicroBatches(3).size());
        Set<String> held = new HashSet<>();
        for (int[] v : v1) for (int r = 0; r < 4; r++) { long[] id = ident(v, r, L); held.add(id[0] + ":" + id[1]); }
        assertEquals(32, held.size());
        int[] mb = new int[4 * L];
        for (int i = 0; i < 200; i++) {                                 // > 2 epochs of both sources
            ld.nextMicroBatch(mb);
            for (int r = 0; r < 4; r++) { long[] id = ident(mb, r, L); assertFalse(held.contains(id[0] + ":" + id[1])); }
        }
        for (int i = 0; i < v1.size(); i++) assertArrayEquals(v1.get(i), ld.validationMicroBatches(1000).get(i), "independent of position");
        BlendedLoader r0 = BlendedLoader.of(streams(200 * L, 120 * L), new double[]{1, 1}, 0.1, T, 4, 8, 3, 0, 2);
        BlendedLoader r1 = BlendedLoader.of(streams(200 * L, 120 * L), new double[]{1, 1}, 0.1, T, 4, 8, 3, 1, 2);
        List<int[]> a = r0.validationMicroBatches(100), b = r1.validationMicroBatches(100);
        assertEquals(4, a.size());
        for (int i = 0; i < 4; i++) {
            assertArrayEquals(v1.get(2 * i), a.get(i));
            assertArrayEquals(v1.get(2 * i + 1), b.get(i));
        }
        // eval_batches counts global micro-batches: 5 at dp 2 are global 0, 2, 4 on rank 0 and 1, 3 on rank 1,
        // the same 5 a dp 1 run evaluates (so the validation loss does not depend on the layout)
        List<int[]> a5 = r0.validationMicroBatches(5), b5 = r1.validationMicroBatches(5);
        assertEquals(3, a5.size());
        assertEquals(2, b5.size());
        for (int i = 0; i < 5; i++) assertArrayEquals(v1.get(i), (i % 2 == 0 ? a5 : b5).get(i / 2), "global batch " + i);
    }

    /**
     * data.shuffle false: a given token stream (prepared from token ids) comes back batch by batch in order: micro-batch
     * k, row r is sequence k*M + r of the stream (no hold-out), across data-parallel ranks and after a resume.
     */
    @Test
    void unshuffledDataReproducesTheTokenStreamBatchByBatch() throws IOException {
        int T = 16, L = T + 1, M = 2, docs = 40;
        Random rnd = new Random(11);
        List<String> lines = new ArrayList<>();
        List<Integer> stream = new ArrayList<>();
        for (int d = 0; d < docs; d++) {                         // documents of token ids, each ending with end-of-text 511
            int n = 5 + rnd.nextInt(30);
            StringBuilder sb = new StringBuilder("[");
            for (int i = 0; i < n; i++) {
                int id = rnd.nextInt(500);
                stream.add(id);
                sb.append(i == 0 ? "" : ",").append(id);
            }
            stream.add(511);
            lines.add(sb.append(",511]").toString());
        }
        Path in = TestData.writeLines(tmp.resolve("ids.jsonl"), lines, false);
        Preparer.run(Preparer.Options.of("ext", List.of(in), TestData.TOKENIZER, tmp.resolve("p/ext")).withFormat(Inputs.Format.TOKENS).withSharding(64, 256),
                new PrintStream(new ByteArrayOutputStream()));
        DataConfig cfg = new DataConfig(List.of(new DataConfig.Source("ext", tmp.resolve("p/ext").toString(), 1)), 0.0, false);
        int sequences = stream.size() / L;
        try (BlendedLoader ld = BlendedLoader.open(cfg, T, M, 2 * M, 99, 0, 1);
             BlendedLoader r0 = BlendedLoader.open(cfg, T, M, 2 * M, 99, 0, 2); BlendedLoader r1 = BlendedLoader.open(cfg, T, M, 2 * M, 99, 1, 2)) {
            int[] mb = new int[M * L], a = new int[M * L], b = new int[M * L];
            for (int k = 0; k < sequences / M + 3; k++) {           // past the end: the next epoch starts over in order
                ld.nextMicroBatch(mb);
                for (int r = 0; r < M; r++) {
                    int seq = (k * M + r) % sequences;
                    for (int i = 0; i < L; i++) assertEquals(stream.get(seq * L + i), mb[r * L + i], "batch " + k + " row " + r);
                }
                if (k % 2 == 0) { r0.nextMicroBatch(a); r1.nextMicroBatch(b); }   // dp 2: rank 0 then rank 1 = the dp 1 order
                int[] want = k % 2 == 0 ? a : b;
                assertArrayEquals(want, mb, "dp 2 global batch = dp 1 global batch, batch " + k);
            }
            JsonNode st = ld.state();
            try (BlendedLoader again = BlendedLoader.open(cfg, T, M, 2 * M, 99, 0, 1)) {
                again.restore(st);
                int[] x = new int[M * L], y = new int[M * L];
                ld.nextMicroBatch(x);
                again.nextMicroBatch(y);
                assertArrayEquals(x, y, "resumed");
            }
            DataConfig shuffled = new DataConfig(cfg.sources(), 0.0, true);
            try (BlendedLoader sh = BlendedLoader.open(shuffled, T, M, 2 * M, 99, 0, 1)) {
                assertTrue(assertThrows(UserError.class, () -> sh.restore(st)).getMessage().contains("data.shuffle was false"));
            }
        }
    }

    @Test
    void opensPreparedDirectoriesFromDataConfig() throws IOException {
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream());
        Path qa = TestData.writeLines(tmp.resolve("q.jsonl"), TestData.texts(1, 120, 60).stream().map(d -> "{\"text\": " + TestData.json(d) + "}").toList(), false);
        Path ed = TestData.writeLines(tmp.resolve("e.jsonl"), TestData.texts(2, 90, 60).stream().map(d -> "{\"text\": " + TestData.json(d) + "}").toList(), false);
        Preparer.run(Preparer.Options.of("boostqa", List.of(qa), TestData.TOKENIZER, tmp.resolve("p/boostqa")).withSharding(256, 1024), quiet);
        Preparer.run(Preparer.Options.of("knowedu", List.of(ed), TestData.TOKENIZER, tmp.resolve("p/knowedu")), quiet);
        DataConfig cfg = new DataConfig(List.of(new DataConfig.Source("boostqa", tmp.resolve("p/boostqa").toString(), 1),
                new DataConfig.Source("knowedu", tmp.resolve("p/knowedu").toString(), 1)), 0.05);
        int T = 32, L = T + 1;
        int[] all0 = TestData.readAll(tmp.resolve("p/boostqa")), all1 = TestData.readAll(tmp.resolve("p/knowedu"));
        try (BlendedLoader ld = BlendedLoader.open(cfg, T, 4, 8, 1234, 0, 1, true).checkVocab(512)) {
            // the held-out spans are whole documents; training reads the rest of each stream back to back
            int[] train0 = withoutSpans(all0, ld.heldOutSpans(0)), train1 = withoutSpans(all1, ld.heldOutSpans(1));
            assertTrue(train0.length < all0.length && train1.length < all1.length);
            int[] mb = new int[4 * L];
            for (int i = 0; i < 50; i++) {
                ld.nextMicroBatch(mb);
                for (int r = 0; r < 4; r++) {   // every row is an aligned slice of one of the two training streams
                    int[] row = Arrays.copyOfRange(mb, r * L, r * L + L);
                    assertTrue(isAlignedSlice(train0, row, L) || isAlignedSlice(train1, row, L));
                    for (int t : row) assertTrue(t >= 0 && t < 512);
                }
            }
            assertEquals(50 * 4 * T, ld.tokensPerSource().values().stream().mapToLong(Long::longValue).sum());
            UserError e = assertThrows(UserError.class, () -> ld.checkVocab(100));
            assertTrue(e.getMessage().startsWith("data source boostqa: "), e.getMessage());
        }
        DataConfig swapped = new DataConfig(List.of(new DataConfig.Source("boostqa", tmp.resolve("p/knowedu").toString(), 1)), 0.05);
        assertTrue(assertThrows(UserError.class, () -> BlendedLoader.open(swapped, T, 4, 8, 1, 0, 1)).getMessage().contains("holds source 'knowedu'"));
        DataConfig missing = new DataConfig(List.of(new DataConfig.Source("x", tmp.resolve("nowhere").toString(), 1)), 0.05);
        assertTrue(assertThrows(UserError.class, () -> BlendedLoader.open(missing, T, 4, 8, 1, 0, 1)).getMessage().startsWith(tmp.resolve("nowhere").toString()));
    }

    @Test
    void everyDeliveredIdIsRangeCheckedAfterCheckVocab() throws IOException {
        // a shard whose bytes were corrupted after prepare (manifest maxima still fine): opened without SHA-256 checks
        Path dir = tmp.resolve("c");
        List<int[]> docs = new ArrayList<>();
        for (int d = 0; d < 50; d++) { int[] x = new int[40]; Arrays.fill(x, 7); x[39] = 511; docs.add(x); }
        Preparer.writeDocuments("boostqa", dir, new Tokenizer.Info("t", "-", 512, "<|end_of_text|>", 511), docs, 256, 1 << 20);
        Path shard = dir.resolve("shard-00000.arrow");
        byte[] b = java.nio.file.Files.readAllBytes(shard);
        int hits = 0;
        for (int i = 0; i + 4 <= b.length; i += 4)                   // every little-endian int32 7 becomes 70000
            if (b[i] == 7 && b[i + 1] == 0 && b[i + 2] == 0 && b[i + 3] == 0 && hits++ < 5000) { b[i] = 0x70; b[i + 1] = 0x11; b[i + 2] = 1; }
        java.nio.file.Files.write(shard, b);
        DataConfig cfg = new DataConfig(List.of(new DataConfig.Source("boostqa", dir.toString(), 1)), 0.0);
        try (BlendedLoader ld = BlendedLoader.open(cfg, 15, 2, 2, 1, 0, 1).checkVocab(512)) {
            UserError e = assertThrows(UserError.class, () -> ld.nextMicroBatch(new int[2 * 16]));
            assertTrue(e.getMessage().startsWith("data source boostqa: token id 70000 at " + shard + " value "), e.getMessage());
        }
    }

    /** The stream without the spans, after checking that each span is whole documents (ends after an end-of-text). */
    static int[] withoutSpans(int[] all, long[][] spans) {
        int[] out = new int[all.length];
        int n = 0, at = 0;
        for (long[] sp : spans) {
            assertTrue(sp[0] == 0 || all[(int) sp[0] - 1] == TestData.EOS, "span starts inside a document: " + Arrays.toString(sp));
            assertTrue(sp[1] == all.length || all[(int) sp[1] - 1] == TestData.EOS, "span ends inside a document: " + Arrays.toString(sp));
            assertTrue(sp[0] >= at && sp[1] > sp[0]);
            System.arraycopy(all, at, out, n, (int) sp[0] - at);
            n += (int) sp[0] - at;
            at = (int) sp[1];
        }
        System.arraycopy(all, at, out, n, all.length - at);
        return Arrays.copyOf(out, n + all.length - at);
    }

    private static boolean isAlignedSlice(int[] all, int[] row, int L) {
        for (int j = 0; (j + 1) * L <= all.length; j++)
            if (Arrays.equals(Arrays.copyOfRange(all, j * L, j * L + L), row)) return true;
        return false;
    }
}
