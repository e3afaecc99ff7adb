package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.common.AtomicFiles;
import dev.midtrain.common.UserError;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.model.OptimizerShard;
import dev.midtrain.model.ParamLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static dev.midtrain.ckpt.CkptFixtures.M;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Multi-process checkpoints, with threads standing in for the processes of a tp 2 x dp 2 run (one rank each):
 * the two-phase commit (published only when every part is on disk; a missing or failed part never publishes; pruning
 * only after a commit) and loading any layout from the per-rank window files (resharding tp and dp).
 */
class DistributedCheckpointTest {
    @TempDir Path tmp;

    static final int TP = 2, DP = 2;

    /** Full-tensor values: element e of tensor {@code name}, slab kind k (0 weights, 1 m, 2 v), at {@code step}. */
    static float full(long step, int k, String name, long e) {
        return (float) Math.sin(step * 0.9 + k * 1.7 + name.hashCode() * 1e-3 + e * 0.013) * (k == 2 ? 1e-3f : 1f) + (k == 2 ? 2e-3f : 0f);
    }

    /** The slab of tensor-parallel layout {@code l} for kind k, from the full tensors (what a real run holds). */
    static float[] slab(long step, int k, ParamLayout l) {
        float[] out = new float[(int) l.numel()];
        for (ParamLayout.Tensor t : l.tensors()) {
            float[] f = new float[(int) t.fullNumel()];
            for (int e = 0; e < f.length; e++) f[e] = full(step, k, t.name(), e);
            System.arraycopy(t.shard(f), 0, out, (int) t.offset(), (int) t.numel());
        }
        return out;
    }

    static StateFile state(long step, int tp, int dp) {
        StateFile s = CkptFixtures.state(step, tp);
        return new StateFile(s.state(), s.lr(), ConfigLoader.toYaml(CkptFixtures.config(tp, dp)), s.engineVersion(), tp, dp, null, null);
    }

    /** Global rank r's part of step {@code step}: its window of its tensor-parallel rank's slabs. */
    static StepDirectories.RankState rank(long step, int r) {
        ParamLayout l = ParamLayout.of(M, TP, r % TP, List.of("norm"));
        int d = r / TP;
        OptimizerShard w = StepDirectories.window(l.numel(), DP, d);
        HostFloats[] h = new HostFloats[3];
        for (int k = 0; k < 3; k++) {
            float[] s = slab(step, k, l);
            h[k] = HostFloats.allocate(Math.max(1, w.count()));
            for (long i = 0; i < w.count(); i++) h[k].put(i, s[(int) (w.start() + i)]);
        }
        return new StepDirectories.RankState(l, d, DP, h[0], h[1], h[2]);
    }

    /** Every "process" writes its rank's part concurrently; returns what process 0's save returned or threw. */
    static Future<Path> saveAll(Path run, long step, List<Integer> absent, Duration timeout, ExecutorService pool) throws Exception {
        List<Future<Path>> fs = new ArrayList<>();
        for (int p = 0; p < TP * DP; p++) {
            if (absent.contains(p)) continue;
            int proc = p;
            fs.add(pool.submit(() -> StepDirectories.forRun(run).savePart(state(step, TP, DP), List.of(rank(step, proc)),
                    new StepDirectories.Part(proc, TP * DP, timeout), 2, 0)));
        }
        for (Future<Path> f : fs.subList(1, fs.size())) f.get();
        return fs.get(0);
    }

    @Test
    void everyProcessWritesItsPartAndProcessZeroCommits() throws Exception {
        Path run = tmp.resolve("run");
        ExecutorService pool = Executors.newFixedThreadPool(TP * DP);
        try {
            Path d = saveAll(run, 10, List.of(), Duration.ofSeconds(30), pool).get();
            assertEquals(StepDirectories.forRun(run).stepDir(10), d);
            assertEquals(List.of(10L), StepDirectories.forRun(run).committedSteps());
            assertEquals("step_00000010", Files.readString(run.resolve("checkpoints/latest")).trim());
            JsonNode files = HfConfig.read(d.resolve(StepDirectories.MANIFEST)).get("files");
            assertEquals(2 * TP * DP + 1, files.size(), "a model and an optimizer file per rank, and the trainer state: " + files);
            for (int t = 0; t < TP; t++)
                for (int p = 0; p < DP; p++) {
                    String f = StepDirectories.modelFile(t, TP, p, DP);
                    assertEquals(AtomicFiles.sha256(d.resolve(f)), files.get(f).get("sha256").asText(), f);
                }
            // every layout loads the same full tensors back (resharding tp and dp), bit for bit
            try (CommittedStep ck = CommittedStep.openForRanks(d)) {
                for (int[] lay : new int[][]{{1, 1}, {2, 2}, {1, 4}, {4, 1}, {2, 1}}) {
                    for (int r = 0; r < lay[0] * lay[1]; r++) {
                        ParamLayout l = ParamLayout.of(M, lay[0], r % lay[0], List.of("norm"));
                        OptimizerShard w = OptimizerShard.of(l.numel(), lay[1], r / lay[0], true);
                        try (HostFloats p = HostFloats.allocate(l.numel()); HostFloats m = HostFloats.allocate(Math.max(1, w.count()));
                             HostFloats v = HostFloats.allocate(Math.max(1, w.count()))) {
                            for (HostFloats h : List.of(p, m, v)) for (long i = 0; i < h.numel(); i++) h.put(i, Float.NaN);
                            ck.loadRank(l, w, p, m, v);
                            float[] sp = slab(10, 0, l), sm = slab(10, 1, l), sv = slab(10, 2, l);
                            String what = "tp " + lay[0] + " x dp " + lay[1] + " rank " + r;
                            for (int i = 0; i < sp.length; i++) assertEquals(Float.floatToRawIntBits(sp[i]), Float.floatToRawIntBits(p.get(i)), what + " weight " + i);
                            for (int i = 0; i < w.count(); i++) {
                                assertEquals(Float.floatToRawIntBits(sm[(int) w.start() + i]), Float.floatToRawIntBits(m.get(i)), what + " m " + i);
                                assertEquals(Float.floatToRawIntBits(sv[(int) w.start() + i]), Float.floatToRawIntBits(v.get(i)), what + " v " + i);
                            }
                        }
                    }
                }
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void aStepSomeProcessDidNotWriteIsNeverPublished() throws Exception {
        Path run = tmp.resolve("run");
        ExecutorService pool = Executors.newFixedThreadPool(TP * DP);
        try {
            saveAll(run, 10, List.of(), Duration.ofSeconds(30), pool).get();
            // process 3 died before its part: process 0 gives step 15 up after the timeout
            Future<Path> lead = saveAll(run, 15, List.of(3), Duration.ofMillis(500), pool);
            Exception e = assertThrows(Exception.class, lead::get);
            assertTrue(e.getCause().getMessage().contains("process 3 did not finish its part"), e.getCause().getMessage());
            assertEquals(List.of(10L), StepDirectories.forRun(run).committedSteps());
            assertEquals("step_00000010", Files.readString(run.resolve("checkpoints/latest")).trim());
            assertFalse(Files.exists(StepDirectories.forRun(run).stepDir(15)));
            // a process whose write fails says so at once (no waiting out the timeout)
            StepDirectories failing = StepDirectories.forRun(run);
            failing.setHook(name -> { if (name.startsWith("optimizer")) throw new IOException("disk full (simulated)"); });
            Future<Path> f2 = pool.submit(() -> failing.savePart(state(20, TP, DP), List.of(rank(20, 2)), new StepDirectories.Part(2, 4, Duration.ofSeconds(60)), 2, 0));
            List<Future<Path>> others = new ArrayList<>();
            for (int p : new int[]{1, 3}) others.add(pool.submit(() -> StepDirectories.forRun(run).savePart(state(20, TP, DP), List.of(rank(20, p)),
                    new StepDirectories.Part(p, 4, Duration.ofSeconds(60)), 2, 0)));
            long t0 = System.nanoTime();
            Exception e2 = assertThrows(Exception.class, () -> StepDirectories.forRun(run).savePart(state(20, TP, DP), List.of(rank(20, 0)),
                    new StepDirectories.Part(0, 4, Duration.ofSeconds(60)), 2, 0));
            assertTrue(e2.getMessage().contains("process 2 failed to write its part") && e2.getMessage().contains("disk full"), e2.getMessage());
            assertTrue(System.nanoTime() - t0 < 30e9, "did not wait out the 60 s timeout");
            assertThrows(Exception.class, f2::get);
            // process 0 gave step 20 up and removed its directory: a process still writing may finish or fail on
            // the vanished directory (a race of the test's threads, as of real processes); either way nothing is published
            for (Future<Path> o : others) {
                try { o.get(); } catch (java.util.concurrent.ExecutionException ignored) { }
            }
            assertEquals(List.of(10L), StepDirectories.forRun(run).committedSteps());
            // the next complete save commits, and pruning (keep_last 2) runs only then
            saveAll(run, 25, List.of(), Duration.ofSeconds(30), pool).get();
            saveAll(run, 30, List.of(), Duration.ofSeconds(30), pool).get();
            assertEquals(List.of(25L, 30L), StepDirectories.forRun(run).committedSteps());
            try (CommittedStep ck = CommittedStep.open(StepDirectories.forRun(run).stepDir(30), true)) {
                assertEquals(30, ck.stateFile().step());
                assertEquals(Map.of("a", 300L, "b", 660L), ck.stateFile().state().tokensPerSource);
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void aCorruptWindowFileIsNamedWhenARankReadsIt() throws Exception {
        Path run = tmp.resolve("run");
        ExecutorService pool = Executors.newFixedThreadPool(TP * DP);
        try {
            Path d = saveAll(run, 5, List.of(), Duration.ofSeconds(30), pool).get();
            Path f = d.resolve(StepDirectories.optimizerFile(1, TP, 1, DP));
            byte[] b = Files.readAllBytes(f);
            b[b.length - 3] ^= 0x40;
            Files.write(f, b);
            try (CommittedStep ck = CommittedStep.openForRanks(d)) {     // sizes fine: opens; hashes checked on read
                ParamLayout l = ParamLayout.of(M, TP, 0, List.of("norm"));
                OptimizerShard w = OptimizerShard.of(l.numel(), DP, 0, true);
                try (HostFloats p = HostFloats.allocate(l.numel()); HostFloats m = HostFloats.allocate(w.count()); HostFloats v = HostFloats.allocate(w.count())) {
                    ck.loadRank(l, w, p, m, v);                             // rank (0, 0) does not read the corrupt file
                    ParamLayout l1 = ParamLayout.of(M, TP, 1, List.of("norm"));
                    OptimizerShard w1 = OptimizerShard.of(l1.numel(), DP, 1, true);
                    UserError e = assertThrows(UserError.class, () -> ck.loadRank(l1, w1, p, m, v));
                    assertTrue(e.getMessage().startsWith(f.toString()) && e.getMessage().contains("SHA-256"), e.getMessage());
                }
            }
        } finally {
            pool.shutdownNow();
        }
    }
}
