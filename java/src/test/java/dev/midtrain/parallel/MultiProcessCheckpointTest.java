package dev.midtrain.parallel;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.ckpt.StepDirectories;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static dev.midtrain.parallel.ParallelTrainCommandTest.metrics;
import static dev.midtrain.parallel.ReshardResumeTest.RESHARD_REL_TOL;
import static dev.midtrain.parallel.ReshardResumeTest.copyTree;
import static dev.midtrain.parallel.ReshardResumeTest.sorted;
import static dev.midtrain.parallel.ReshardResumeTest.train;
import static org.junit.jupiter.api.Assertions.*;

/**
 * tp 2 x dp 2 as 4 JVMs on loopback (one rank each, TCP communicator): every process writes its own rank's files,
 * process 0 commits. One process is SIGKILLed while the step-15 checkpoint is being written: step 15 is never
 * published, and --resume (4 JVMs again) continues from step 10 with the losses of the uninterrupted run bit for bit
 * (the uninterrupted run is the same layout as 4 threads of one JVM, which the TCP communicator reproduces bitwise).
 * The same checkpoint resumed as tp 1 x dp 4 and tp 4 x dp 1 delivers every sample once, within the reshard tolerance.
 */
class MultiProcessCheckpointTest {
    @TempDir Path tmp;

    static final String CONFIG = ReshardResumeTest.CONFIG.replace("threads: 2", "threads: 1");

    /** `midtrain train` (dev.midtrain.Main) in a child JVM; a thread collects its output. */
    static Process start(List<String> output, List<String> jvmFlags, String... args) throws java.io.IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "-Xss8m", "-Xmx256m"));
        cmd.addAll(jvmFlags);
        cmd.add("dev.midtrain.Main");
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        Thread t = new Thread(() -> {
            try (var r = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream()))) {
                for (String l; (l = r.readLine()) != null; ) output.add(l);
            } catch (java.io.IOException ignored) { }
        });
        t.setDaemon(true);
        t.start();
        return p;
    }

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0)) { return s.getLocalPort(); }
    }

    /** Starts the 4 processes of a tp 2 x dp 2 run. */
    static List<Process> launch(List<List<String>> outs, List<String> jvm, String... args) throws Exception {
        int port = freePort();
        List<Process> ps = new ArrayList<>();
        for (int p = 0; p < 4; p++) {
            List<String> out = Collections.synchronizedList(new ArrayList<>());
            outs.add(out);
            List<String> a = new ArrayList<>(List.of(args));
            a.addAll(List.of("--tp", "2", "--dp", "2", "--nnodes", "4", "--node-rank", Integer.toString(p), "--master-addr", "127.0.0.1",
                    "--master-port", Integer.toString(port), "--synthetic-data", "--peak-tflops", "0.1", "--dist-timeout", "20"));
            ps.add(start(out, jvm, a.toArray(String[]::new)));
        }
        return ps;
    }

    static String log(List<List<String>> outs) {
        StringBuilder b = new StringBuilder();
        for (int p = 0; p < outs.size(); p++) for (String l : outs.get(p)) b.append("[").append(p).append("] ").append(l).append('\n');
        return b.toString();
    }

    static void destroy(List<Process> ps) {
        for (Process p : ps) if (p.isAlive()) p.destroyForcibly();
    }

    @Test
    void killedDuringASaveResumesFromTheLastCommitBitForBitAndOntoOtherLayouts() throws Exception {
        Path c = tmp.resolve("c.yaml"), full = tmp.resolve("full"), run = tmp.resolve("run");
        Files.writeString(c, CONFIG);
        List<String> fullIds = train(tmp.resolve("ids-full"), "train", "--config", c.toString(), "--run-dir", full.toString(),
                "--tp", "2", "--dp", "2", "--synthetic-data", "--peak-tflops", "0.1");
        List<JsonNode> ref = metrics(full);

        StepDirectories s = StepDirectories.forRun(run);
        List<List<String>> outs = new ArrayList<>();
        // every file of a save sleeps 300 ms, so process 1 can be killed between its two files of step 15
        List<Process> ps = launch(outs, List.of("-D" + StepDirectories.SLOW_WRITE_PROPERTY + "=300", "-Dmidtrain.sampleLog=" + tmp.resolve("ids-run")),
                "train", "--config", c.toString(), "--run-dir", run.toString());
        try {
            Path victim = s.dir().resolve(".tmp-step_00000015").resolve(StepDirectories.modelFile(1, 2, 0, 2));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (!Files.exists(victim)) {
                if (System.nanoTime() > deadline || !ps.get(1).isAlive()) fail("step 15 save never started:\n" + log(outs));
                Thread.sleep(10);
            }
            ps.get(1).destroyForcibly();                                  // SIGKILL, mid-save
            long killed = System.nanoTime();
            // the survivors exit non-zero within --dist-timeout (20 s) + 5 s, each with one line naming the dead rank
            for (int p = 0; p < 4; p++) {
                long left = TimeUnit.SECONDS.toNanos(25) - (System.nanoTime() - killed);
                assertTrue(ps.get(p).waitFor(Math.max(0, left), TimeUnit.NANOSECONDS), "process " + p + " exits within 25 s:\n" + log(outs));
            }
            Thread.sleep(200);                                             // the output pumps catch up
            for (int p = 0; p < 4; p++) assertNotEquals(0, ps.get(p).exitValue(), "process " + p + ":\n" + log(outs));
            for (int p : new int[]{0, 2, 3})
                assertTrue(outs.get(p).stream().anyMatch(l -> l.startsWith("midtrain: ") && l.contains("lost rank 1 (process 1, host ")),
                        "process " + p + " names the dead rank:\n" + log(outs));
        } finally {
            destroy(ps);
        }
        assertEquals(List.of(5L, 10L), s.committedSteps(), log(outs));
        assertEquals("step_00000010", Files.readString(s.dir().resolve("latest")).trim());
        List<String> before = new ArrayList<>();
        for (Path f : Files.list(tmp.resolve("ids-run")).toList()) before.addAll(Files.readAllLines(f));

        // keep copies of the step-10 checkpoint for the other layouts, then resume as 4 processes
        Path asTp1 = tmp.resolve("tp1dp4"), asTp4 = tmp.resolve("tp4dp1");
        copyTree(run, asTp1);
        copyTree(run, asTp4);
        outs.clear();
        ps = launch(outs, List.of(), "train", "--resume", run.toString());
        try {
            for (int p = 0; p < 4; p++) {
                assertTrue(ps.get(p).waitFor(120, TimeUnit.SECONDS), "process " + p + " exits:\n" + log(outs));
                assertEquals(0, ps.get(p).exitValue(), "process " + p + ":\n" + log(outs));
            }
        } finally {
            destroy(ps);
        }
        assertTrue(log(outs).contains("resumed from " + s.stepDir(10) + ": step 10"), log(outs));
        List<JsonNode> got = metrics(run);
        assertEquals(20, got.size());
        for (int i = 0; i < 20; i++) {
            // exact on any processor: the resumed processes repeat the uninterrupted run's computation (same layout,
            // shapes and threads: 1, restored state exact); only a layout change would reorder sums (see below)
            assertEquals(ref.get(i).get("loss").asDouble(), got.get(i).get("loss").asDouble(), 0.0, "step " + (i + 1) + " loss bit for bit");
            assertEquals(ref.get(i).get("grad_norm").asDouble(), got.get(i).get("grad_norm").asDouble(), 0.0, "step " + (i + 1) + " grad norm");
        }
        assertEquals(List.of(15L, 20L), s.committedSteps().subList(s.committedSteps().size() - 2, s.committedSteps().size()));

        // the step-10 checkpoint of the 4 processes resumed as tp 1 x dp 4 and tp 4 x dp 1 (one process, threads)
        List<String> first10 = new ArrayList<>();
        for (String id : before) if (fullIds.subList(0, 80).contains(id)) first10.add(id);
        assertEquals(sorted(fullIds.subList(0, 80)), sorted(first10), "steps 1..10 of the killed run");
        for (Path r : List.of(asTp1, asTp4)) {
            String[] lay = r == asTp1 ? new String[]{"1", "4"} : new String[]{"4", "1"};
            List<String> ids = new ArrayList<>(first10);
            ids.addAll(train(tmp.resolve("ids-" + r.getFileName()), "train", "--resume", r.toString(), "--tp", lay[0], "--dp", lay[1],
                    "--synthetic-data", "--peak-tflops", "0.1"));
            assertEquals(sorted(fullIds), sorted(ids), r.getFileName() + ": every sample of steps 1..20 once");
            List<JsonNode> m = metrics(r);
            for (int i = 10; i < 20; i++) {
                double a = ref.get(i).get("loss").asDouble(), b = m.get(i).get("loss").asDouble();
                assertEquals(a, b, RESHARD_REL_TOL * a, r.getFileName() + " step " + (i + 1));
            }
        }
    }
}
