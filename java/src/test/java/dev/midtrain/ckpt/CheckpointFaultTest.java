package dev.midtrain.ckpt;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

import static org.junit.jupiter.api.Assertions.*;

/** Kills and signals a child JVM (CrashChild) around checkpoint saves. */
class CheckpointFaultTest {
    @TempDir Path tmp;

    static Process start(String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "-Xmx256m", CrashChild.class.getName()));
        cmd.addAll(List.of(args));
        return new ProcessBuilder(cmd).redirectErrorStream(true).start();
    }

    /** Reads the child's output until a line matches; returns all lines read. Fails after 30 s or at EOF. */
    static List<String> awaitLine(Process p, BufferedReader out, Predicate<String> want) throws IOException {
        List<String> lines = new ArrayList<>();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        String line;
        while (System.nanoTime() < deadline && (line = out.readLine()) != null) {
            lines.add(line);
            if (want.test(line)) return lines;
        }
        p.destroyForcibly();
        throw new AssertionError("child never printed the expected line; output:\n" + String.join("\n", lines));
    }

    /** SIGKILL at different points of a save: the previous committed step stays the newest, intact; a new save works. */
    @ParameterizedTest
    @ValueSource(strings = {"model-tp01-of-02.safetensors", "trainer_state.json", "COMMITTED"})
    void sigkillMidSaveResumesFromPreviousCommittedStep(String killAt) throws Exception {
        Path run = tmp.resolve("run");
        Process p = start("kill-mid-save", run.toString());
        try (BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream()))) {
            awaitLine(p, out, l -> l.equals("COMMITTED 1"));
            awaitLine(p, out, l -> l.equals("WRITING " + killAt));
            p.destroyForcibly();   // SIGKILL
            assertTrue(p.waitFor(10, TimeUnit.SECONDS));
            assertEquals(137, p.exitValue(), "killed by SIGKILL");
        }
        StepDirectories s = StepDirectories.forRun(run);
        assertEquals(List.of(1L), s.committedSteps());
        assertEquals(s.stepDir(1), s.newestCommitted().orElseThrow());
        assertEquals("step_00000001", s.readLatest());
        CkptFixtures.assertStep(s.stepDir(1), 1, 2);
        if (killAt.equals("COMMITTED")) assertTrue(Files.isDirectory(s.stepDir(2)), "published, not committed");
        // the resumed run saves step 2 again over the leftovers
        s.save(CkptFixtures.state(2, 2), CkptFixtures.ranks(2, 2), 3, 0);
        assertEquals(List.of(1L, 2L), s.committedSteps());
        CkptFixtures.assertStep(s.stepDir(2), 2, 2);
        try (var l = Files.list(s.dir())) {
            assertTrue(l.noneMatch(f -> f.getFileName().toString().startsWith(".")), "leftovers pruned");
        }
    }

    /** SIGTERM: the child finishes its step, saves it, waits for the write and exits 0. */
    @Test
    void sigtermSavesAndExitsZero() throws Exception {
        Path run = tmp.resolve("run");
        Process p = start("sigterm", run.toString());
        List<String> lines;
        try (BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream()))) {
            awaitLine(p, out, l -> l.equals("STEP 4"));
            new ProcessBuilder("kill", "-TERM", Long.toString(p.pid())).inheritIO().start().waitFor();   // SIGTERM (Process.destroy would also close our end of its output)
            lines = awaitLine(p, out, l -> l.startsWith("STOPPED"));
            assertTrue(p.waitFor(20, TimeUnit.SECONDS));
        }
        assertEquals(0, p.exitValue(), String.join("\n", lines));
        String[] stopped = lines.get(lines.size() - 1).split(" ");
        assertEquals("SIGTERM", stopped[2]);
        long step = Long.parseLong(stopped[1]);
        assertTrue(step >= 4, "saved at the step where it stopped: " + step);
        StepDirectories s = StepDirectories.forRun(run);
        assertEquals(s.stepDir(step), s.newestCommitted().orElseThrow());
        CkptFixtures.assertStep(s.stepDir(step), step, 1);
        assertTrue(s.committedSteps().contains(3L), "periodic save at step 3 as well: " + s.committedSteps());
    }
}
