package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.UserError;
import dev.midtrain.config.CheckpointConfig;
import dev.midtrain.model.ParamLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;

import static dev.midtrain.ckpt.CkptFixtures.*;
import static org.junit.jupiter.api.Assertions.*;

class StepDirectoriesTest {
    @TempDir Path tmp;

    static void save(StepDirectories s, long step, int tp, int keepLast, int keepEvery) throws IOException {
        s.save(state(step, tp), ranks(step, tp), keepLast, keepEvery);
    }

    @Test
    void saveAndLoadRoundTripForTp1AndTp2() throws IOException {
        for (int tp : new int[]{1, 2}) {
            StepDirectories s = StepDirectories.forRun(tmp.resolve("run" + tp));
            save(s, 7, tp, 3, 0);
            Path d = s.stepDir(7);
            assertEquals("step_00000007", d.getFileName().toString());
            for (int r = 0; r < tp; r++) {
                assertTrue(Files.exists(d.resolve(StepDirectories.modelFile(r, tp))));
                assertTrue(Files.exists(d.resolve(StepDirectories.optimizerFile(r, tp))));
            }
            if (tp == 2) assertTrue(Files.exists(d.resolve("model-tp01-of-02.safetensors")));
            assertStep(d, 7, tp);
            try (CommittedStep ck = CommittedStep.open(d, true)) {
                StateFile st = ck.stateFile();
                assertEquals(state(7, tp).toJson(), st.toJson());
                assertEquals(Map.of("a", 70L, "b", 154L), st.state().tokensPerSource);
                assertEquals(1000 + 7 * 32, st.state().tokensTotal());
                assertEquals(49, st.state().loaderState.get("cursor").asLong());
                assertEquals(tp, ck.config().parallel().tp());
                // a layout of another tp is refused with a clear message
                ParamLayout other = ParamLayout.of(M, tp == 1 ? 2 : 1, 0, List.of("norm"));
                UserError e = assertThrows(UserError.class, () -> ck.loadParams(other, HostFloats.allocate(other.numel())));
                assertTrue(e.getMessage().contains("tensor-parallel degree " + tp), e.getMessage());
            }
            // the saved model file is a valid HF-named safetensors file with our metadata
            try (var r = Safetensors.Reader.open(d.resolve(StepDirectories.modelFile(0, tp)))) {
                assertEquals("pt", r.metadata().get("format"));
                assertTrue(r.has("model.layers.1.mlp.down_proj.weight"));
            }
        }
    }

    @Test
    void uncommittedAndTemporaryDirectoriesAreIgnoredAndLatestFollowsCommits() throws IOException {
        StepDirectories s = StepDirectories.forRun(tmp);
        assertEquals(Optional.empty(), s.newestCommitted());
        save(s, 1, 1, 5, 0);
        assertEquals("step_00000001", s.readLatest());
        // a save that dies after publishing the directory but before COMMITTED
        s.setHook(name -> { if (name.equals(StepDirectories.COMMITTED)) throw new IOException("simulated crash before commit"); });
        assertThrows(IOException.class, () -> save(s, 2, 1, 5, 0));
        assertTrue(Files.isDirectory(s.stepDir(2)), "published but uncommitted");
        assertEquals(List.of(1L), s.committedSteps());
        assertEquals(s.stepDir(1), s.newestCommitted().orElseThrow());
        assertEquals("step_00000001", s.readLatest(), "latest moves only after COMMITTED");
        UserError e = assertThrows(UserError.class, () -> CommittedStep.open(s.stepDir(2), true));
        assertTrue(e.getMessage().contains("not committed"), e.getMessage());
        // a save that dies while writing files: only a .tmp directory remains
        s.setHook(name -> { if (name.equals(StepDirectories.STATE)) throw new IOException("simulated crash mid-save"); });
        assertThrows(IOException.class, () -> save(s, 3, 1, 5, 0));
        assertFalse(Files.exists(s.stepDir(3)));
        assertEquals(s.stepDir(1), s.newestCommitted().orElseThrow());
        Files.createDirectories(s.dir().resolve(".tmp-step_00000004"));
        // the next good save replaces the uncommitted step 2 and clears leftovers
        s.setHook(name -> { });
        save(s, 2, 1, 5, 0);
        assertEquals(List.of(1L, 2L), s.committedSteps());
        assertStep(s.stepDir(2), 2, 1);
        try (Stream<Path> l = Files.list(s.dir())) {
            assertEquals(List.of("latest", "step_00000001", "step_00000002"), l.map(p -> p.getFileName().toString()).sorted().toList());
        }
    }

    @Test
    void pruneKeepsLastKAndEveryMth() throws IOException {
        StepDirectories s = StepDirectories.forRun(tmp);
        for (long step = 1; step <= 10; step++) save(s, step, 1, 2, 4);
        assertEquals(List.of(4L, 8L, 9L, 10L), s.committedSteps());
        assertEquals("step_00000010", s.readLatest());
        StepDirectories s2 = StepDirectories.forRun(tmp.resolve("b"));
        for (long step = 5; step <= 30; step += 5) save(s2, step, 1, 3, 0);
        assertEquals(List.of(20L, 25L, 30L), s2.committedSteps());
    }

    @Test
    void integrityFailuresNameTheFile() throws IOException {
        StepDirectories s = StepDirectories.forRun(tmp);
        save(s, 3, 1, 5, 0);
        Path d = s.stepDir(3);
        Path model = d.resolve("model.safetensors");
        // one flipped bit in the tensor data: same size, valid structure, wrong SHA-256
        try (RandomAccessFile f = new RandomAccessFile(model.toFile(), "rw")) {
            f.seek(f.length() - 5);
            int b = f.read();
            f.seek(f.length() - 5);
            f.write(b ^ 0x10);
        }
        UserError e = assertThrows(UserError.class, () -> CommittedStep.open(d, true));
        assertTrue(e.getMessage().startsWith(model.toString()) && e.getMessage().contains("SHA-256"), e.getMessage());
        // truncated file: size check (also without re-hashing)
        byte[] all = Files.readAllBytes(model);
        Files.write(model, java.util.Arrays.copyOf(all, all.length - 100));
        e = assertThrows(UserError.class, () -> CommittedStep.open(d, false));
        assertTrue(e.getMessage().startsWith(model.toString()) && e.getMessage().contains("manifest says"), e.getMessage());
        // manifest edited: COMMITTED vouches for the manifest
        save(s, 4, 1, 5, 0);
        Path mf = s.stepDir(4).resolve(StepDirectories.MANIFEST);
        Files.writeString(mf, Files.readString(mf).replace("\"step\" : 4", "\"step\" : 5"));
        e = assertThrows(UserError.class, () -> CommittedStep.open(s.stepDir(4), true));
        assertTrue(e.getMessage().startsWith(mf.toString()) && e.getMessage().contains("commit marker"), e.getMessage());
        // a missing file
        save(s, 5, 1, 5, 0);
        Files.delete(s.stepDir(5).resolve("optimizer.safetensors"));
        e = assertThrows(UserError.class, () -> CommittedStep.open(s.stepDir(5), true));
        assertTrue(e.getMessage().contains("optimizer.safetensors") && e.getMessage().contains("missing"), e.getMessage());
    }

    @Test
    void corruptTrainerStateIsAOneLineErrorNamingTheFile() throws IOException {
        StepDirectories s = StepDirectories.forRun(tmp);
        save(s, 6, 1, 5, 0);
        Path d = s.stepDir(6), sf = d.resolve(StepDirectories.STATE);
        String good = Files.readString(sf);
        // truncated: caught by the manifest first ...
        Files.writeString(sf, good.substring(0, good.length() / 2));
        UserError e = assertThrows(UserError.class, () -> CommittedStep.open(d, true));
        assertTrue(e.getMessage().startsWith(sf.toString()), e.getMessage());
        // ... and by the parser when the manifest vouches for it
        reseal(d);
        e = assertThrows(UserError.class, () -> CommittedStep.open(d, true));
        assertTrue(e.getMessage().startsWith(sf.toString()) && e.getMessage().contains("truncated JSON"), e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
        // well-formed JSON missing a field
        Files.writeString(sf, good.replaceAll("\"step\" : 6,", ""));
        reseal(d);
        e = assertThrows(UserError.class, () -> CommittedStep.open(d, true));
        assertTrue(e.getMessage().contains("missing field step"), e.getMessage());
        // wrong type
        Files.writeString(sf, good.replace("\"step\" : 6", "\"step\" : \"six\""));
        reseal(d);
        e = assertThrows(UserError.class, () -> CommittedStep.open(d, true));
        assertTrue(e.getMessage().startsWith(sf.toString()) && e.getMessage().contains("step"), e.getMessage());
        // not our format
        Files.writeString(sf, good.replace(StateFile.FORMAT, "other/9"));
        reseal(d);
        e = assertThrows(UserError.class, () -> CommittedStep.open(d, true));
        assertTrue(e.getMessage().contains("format other/9"), e.getMessage());
    }

    /** Async and sync saves of the same state produce byte-identical directories. */
    @Test
    void asyncSaveEqualsSyncSave() throws IOException {
        Map<Boolean, Path> dirs = new java.util.HashMap<>();
        for (boolean async : new boolean[]{false, true}) {
            StepDirectories s = StepDirectories.forRun(tmp.resolve(async ? "async" : "sync"));
            try (AsyncSaver c = new AsyncSaver(s, new CheckpointConfig(2, 2, 0, async, 0))) {
                for (long step = 2; step <= 6; step += 2) {
                    final long st = step;
                    c.save(state(step, 2), layouts(2), (l, p, m, v) -> fill(st, l, p, m, v));
                }
            }
            assertEquals(List.of(4L, 6L), s.committedSteps());
            dirs.put(async, s.dir());
        }
        for (long step : new long[]{4, 6}) {
            String name = StepDirectories.stepName(step);
            try (Stream<Path> files = Files.list(dirs.get(false).resolve(name))) {
                List<Path> list = files.toList();
                assertEquals(7, list.size());   // 2 model + 2 optimizer + state + manifest + COMMITTED
                for (Path f : list)
                    assertArrayEquals(Files.readAllBytes(f), Files.readAllBytes(dirs.get(true).resolve(name).resolve(f.getFileName())), f.toString());
            }
            assertStep(dirs.get(true).resolve(name), step, 2);
        }
    }

    @Test
    void failedBackgroundWriteIsReportedAndNotPublished() throws IOException {
        StepDirectories s = StepDirectories.forRun(tmp);
        List<String> seen = new ArrayList<>();
        AsyncSaver c = new AsyncSaver(s, new CheckpointConfig(1, 3, 0, true, 0));
        c.save(state(1, 1), layouts(1), (l, p, m, v) -> fill(1, l, p, m, v));
        c.awaitPending();
        java.util.concurrent.atomic.AtomicBoolean failOnce = new java.util.concurrent.atomic.AtomicBoolean(true);
        s.setHook(name -> {
            seen.add(name);
            if (name.equals("optimizer.safetensors") && failOnce.getAndSet(false)) throw new IOException("disk full (simulated)");
        });
        c.save(state(2, 1), layouts(1), (l, p, m, v) -> fill(2, l, p, m, v));   // returns: the write runs in the background
        UserError e = assertThrows(UserError.class, () -> c.save(state(3, 1), layouts(1), (l, p, m, v) -> fill(3, l, p, m, v)));
        assertTrue(e.getMessage().contains("step_00000002") && e.getMessage().contains("disk full"), e.getMessage());
        assertEquals(1, e.exitCode());
        assertTrue(seen.contains("optimizer.safetensors"));
        assertEquals(List.of(1L), s.committedSteps());
        assertFalse(Files.exists(s.stepDir(2)), "never published");
        assertFalse(Files.exists(s.dir().resolve(".tmp-step_00000002")), "temporary files removed");
        assertEquals("step_00000001", s.readLatest());
        // the failure surfaces at exit too
        s.setHook(name -> { if (name.equals(StepDirectories.STATE)) throw new IOException("io error (simulated)"); });
        c.save(state(4, 1), layouts(1), (l, p, m, v) -> fill(4, l, p, m, v));
        e = assertThrows(UserError.class, c::close);
        assertTrue(e.getMessage().contains("step_00000004") && e.getMessage().contains("io error"), e.getMessage());
        assertEquals(List.of(1L), s.committedSteps());
    }
}
