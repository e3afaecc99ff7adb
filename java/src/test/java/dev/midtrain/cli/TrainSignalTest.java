package dev.midtrain.cli;

import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.ckpt.CommittedStep;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.*;

/** `midtrain train` in a child JVM, stopped by SIGTERM or killed by SIGKILL mid-save, then resumed. */
class TrainSignalTest {
    @TempDir Path tmp;

    /** Starts `midtrain train` (dev.midtrain.Main) in a child JVM; its output is collected by a thread. */
    static Process start(List<String> output, List<String> jvmFlags, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "-Xss8m", "-Xmx512m"));
        cmd.addAll(jvmFlags);
        cmd.add("dev.midtrain.Main");
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream()))) {
                for (String l; (l = r.readLine()) != null; ) output.add(l);
            } catch (IOException ignored) { }
        });
        t.setDaemon(true);
        t.start();
        return p;
    }

    static void await(Process p, List<String> output, BooleanSupplier cond, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline || !p.isAlive()) {
                p.destroyForcibly();
                fail("child never reached: " + what + "; output:\n" + String.join("\n", output));
            }
            Thread.sleep(20);
        }
    }

    static long metricsLines(Path run) {
        try {
            return Files.exists(run.resolve("metrics.jsonl")) ? Files.readAllLines(run.resolve("metrics.jsonl")).size() : 0;
        } catch (IOException e) {
            return 0;
        }
    }

    Path config(int everySteps) throws IOException {
        Path c = tmp.resolve("c.yaml");
        Files.writeString(c, TrainCommandTest.CONFIG.replace("steps: 6,", "steps: 3000,")
                + "checkpoint: {every_steps: " + everySteps + ", keep_last: 3, async: true}\n");
        return c;
    }

    @Test
    void sigtermFinishesTheStepSavesAndExitsZero() throws Exception {
        Path c = config(1000), run = tmp.resolve("run");
        List<String> out = Collections.synchronizedList(new ArrayList<>());
        Process p = start(out, List.of(), "train", "--config", c.toString(), "--synthetic-data", "--run-dir", run.toString(), "--peak-tflops", "1");
        await(p, out, () -> metricsLines(run) >= 5, "5 steps");
        new ProcessBuilder("kill", "-TERM", Long.toString(p.pid())).inheritIO().start().waitFor();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "exits after saving");
        Thread.sleep(100);   // let the reader thread drain
        assertEquals(0, p.exitValue(), String.join("\n", out));
        long steps = metricsLines(run);
        assertTrue(steps >= 5 && steps < 3000, "stopped early at " + steps);
        assertTrue(out.stream().anyMatch(l -> l.contains("stopped at step " + steps + " (SIGTERM)")), String.join("\n", out));
        StepDirectories s = StepDirectories.forRun(run);
        assertEquals(List.of(steps), s.committedSteps(), "the step it stopped at was saved (every_steps 1000 never fired)");
        // and the run continues from there
        StringBuilder o = new StringBuilder();
        assertEquals(0, run(o, "train", "--resume", run.toString(), "--synthetic-data", "--set", "train.steps=" + (steps + 2)), o.toString());
        assertEquals(steps + 2, metricsLines(run));
        assertEquals(steps + 2, s.newestCommitted().map(d -> { try (var ck = CommittedStep.open(d, true)) { return ck.stateFile().step(); } }).orElseThrow());
    }

    @Test
    void sigkillDuringASaveResumesFromThePreviousCommittedStep() throws Exception {
        Path c = config(2), run = tmp.resolve("run");
        List<String> out = Collections.synchronizedList(new ArrayList<>());
        // each file of a save sleeps 400 ms: the trainer waits for step 2's save at step 4, and step 4's save is slow
        Process p = start(out, List.of("-D" + StepDirectories.SLOW_WRITE_PROPERTY + "=400"),
                "train", "--config", c.toString(), "--synthetic-data", "--run-dir", run.toString(), "--peak-tflops", "1");
        StepDirectories s = StepDirectories.forRun(run);
        await(p, out, () -> Files.exists(s.stepDir(2).resolve(StepDirectories.COMMITTED)), "step 2 committed");
        await(p, out, () -> Files.exists(s.dir().resolve(".tmp-step_00000004").resolve("model.safetensors")), "step 4 save under way");
        p.destroyForcibly();   // SIGKILL
        assertTrue(p.waitFor(10, TimeUnit.SECONDS));
        assertEquals(137, p.exitValue());
        assertEquals(List.of(2L), s.committedSteps());
        StringBuilder o = new StringBuilder();
        assertEquals(0, run(o, "train", "--resume", run.toString(), "--synthetic-data", "--set", "train.steps=5"), o.toString());
        assertTrue(o.toString().contains("resumed from " + s.stepDir(2) + ": step 2"), o.toString());
        assertEquals(List.of(2L, 4L, 5L), s.committedSteps());
        assertEquals(5, metricsLines(run), "metrics of steps logged after step 2 before the kill were dropped and redone");
    }
}
