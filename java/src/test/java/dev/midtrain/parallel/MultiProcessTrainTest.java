package dev.midtrain.parallel;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.ckpt.StepDirectories;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Several JVMs on loopback, each a `midtrain` process with the torchrun environment (directly, or through `midtrain
 * launch`): the multi-process path end to end on CPU. Children are killed in {@link #killChildren} whatever happens.
 */
class MultiProcessTrainTest {
    static final String CONFIG = """
            model: {vocab_size: 96, dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 56,
                    rope_theta: 500000.0, norm_eps: 1.0e-5, max_seq_len: 32, tied_embeddings: false}
            optimizer: {lr: 1.0e-2, min_lr: 1.0e-3, warmup_steps: 2, eps: 1.0e-4}
            train: {seq_len: 16, micro_batch_seqs: 2, global_batch_seqs: 8, steps: STEPS, log_every_steps: 1,
                    eval_every_steps: 10, eval_batches: 3, threads: 1}
            checkpoint: {every_steps: 2, keep_last: 2}
            data: {sources: [{name: none, path: /nonexistent, weight: 1.0}], valid_fraction: 0.05}
            """;

    private final List<Process> children = Collections.synchronizedList(new ArrayList<>());

    @AfterEach
    void killChildren() throws InterruptedException {
        for (Process p : children) p.destroyForcibly();
        for (Process p : children) p.waitFor(10, TimeUnit.SECONDS);
    }

    static Path config(Path dir, int steps) throws IOException {
        Path c = dir.resolve("c" + steps + ".yaml");
        Files.writeString(c, CONFIG.replace("STEPS", Integer.toString(steps)));
        return c;
    }

    /** MASTER_PORT such that MASTER_PORT + 1 (midtrain's rendezvous under torchrun) was free a moment ago. */
    static int masterPort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) { return s.getLocalPort() - 1; }
    }

    /** A `midtrain` JVM on the test class path; its output lines are collected into {@code out}. */
    Process jvm(Map<String, String> env, List<String> out, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-opens=java.base/java.nio=ALL-UNNAMED", "-Xss8m", "-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path"),
                "dev.midtrain.Main"));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().putAll(env);
        pb.environment().put("OMP_WAIT_POLICY", "passive");
        Process p = pb.start();
        children.add(p);
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream()))) {
                for (String l; (l = r.readLine()) != null; ) out.add(l);
            } catch (IOException ignored) { }
        });
        t.setDaemon(true);
        t.start();
        return p;
    }

    /** The four torchrun variables of process {@code rank} of {@code n}. */
    static Map<String, String> torchrun(int rank, int n, int port) {
        Map<String, String> e = new HashMap<>();
        e.put("WORLD_SIZE", "" + n);
        e.put("RANK", "" + rank);
        e.put("LOCAL_RANK", "" + rank);
        e.put("MASTER_ADDR", "127.0.0.1");
        e.put("MASTER_PORT", "" + port);
        return e;
    }

    static List<JsonNode> metrics(Path run) throws Exception {
        List<JsonNode> rows = new ArrayList<>();
        if (!Files.exists(run.resolve("metrics.jsonl"))) return rows;
        for (String line : Files.readAllLines(run.resolve("metrics.jsonl")))
            if (!line.isBlank()) rows.add(new com.fasterxml.jackson.databind.ObjectMapper().readTree(line));
        return rows;
    }

    static int lines(Path run) {
        try {
            return metrics(run).size();
        } catch (Exception e) {
            return 0;
        }
    }

    /**
     * The lines a reader thread is still appending to (a Collections.synchronizedList): iterated under its lock, so a
     * message built while a rank prints cannot throw ConcurrentModificationException.
     */
    static String text(List<String> out) {
        synchronized (out) {
            return String.join("\n", out);
        }
    }

    static void await(BooleanSupplier cond, int seconds, String what, List<String> out) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() >= deadline) fail("timed out waiting for " + what + ":\n" + text(out));
            Thread.sleep(100);
        }
    }

    @Test
    void fourProcessesThroughLaunchAndTorchrunEqualFourThreadsBitForBitAndValLossAgreesAcrossLayouts(@TempDir Path tmp) throws Exception {
        Path cfg = config(tmp, 20);
        StringBuilder o = new StringBuilder();
        assertEquals(0, run(o, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", tmp.resolve("threads").toString(),
                "--peak-tflops", "0.1", "--tp", "2", "--dp", "2", "--no-checkpoints"), o.toString());
        List<String> out = Collections.synchronizedList(new ArrayList<>());
        Process launch = jvm(Map.of(), out, "launch", "--nproc-per-node", "4", "--master-port", "" + masterPort(), "--",
                "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", tmp.resolve("procs").toString(),
                "--peak-tflops", "0.1", "--tp", "2", "--dp", "2", "--no-checkpoints");
        assertTrue(launch.waitFor(240, TimeUnit.SECONDS), "launch finished:\n" + text(out));
        Thread.sleep(200);
        assertEquals(0, launch.exitValue(), text(out));
        assertTrue(out.stream().anyMatch(l -> l.startsWith("[rank 0] ") && l.contains("tp 2 x dp 2 (TORCHRUN, 4 processes)")), text(out));
        for (int r = 1; r < 4; r++) {
            String want = "[rank " + r + "] process " + r + " of 4: done at step 20";
            assertTrue(out.contains(want), want + " in:\n" + text(out));
        }
        List<JsonNode> a = metrics(tmp.resolve("threads")), b = metrics(tmp.resolve("procs"));
        assertEquals(20, a.size());
        assertEquals(20, b.size());
        // the TCP communicator sums in the in-process order: the same bits. Exact on any x86-64 processor because both
        // runs are the same computation: each rank runs the same shapes with threads: 1 (OpenBLAS's AVX2 kernels
        // round a row by its position and thread count, so unequal threads would need a tolerance), the same kernels
        for (int i = 0; i < 20; i++)
            for (String k : new String[]{"loss", "grad_norm", "val_loss"})
                assertEquals(a.get(i).path(k).asDouble(-1), b.get(i).path(k).asDouble(-1), 0.0, k + " at step " + (i + 1));
        assertTrue(a.get(9).has("val_loss"));

        // Again as four JVMs started the torchrun way (static rendezvous: torchrun's agent holds MASTER_PORT).
        try (ServerSocket agent = new ServerSocket(0)) {
            int port = agent.getLocalPort();
            List<Process> ps = new ArrayList<>();
            List<List<String>> outs = new ArrayList<>();
            for (int r = 0; r < 4; r++) {
                outs.add(Collections.synchronizedList(new ArrayList<>()));
                ps.add(jvm(torchrun(r, 4, port), outs.get(r), "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir",
                        tmp.resolve("torchrun").toString(), "--peak-tflops", "0.1", "--tp", "2", "--dp", "2", "--no-checkpoints"));
            }
            for (int r = 0; r < 4; r++) {
                assertTrue(ps.get(r).waitFor(240, TimeUnit.SECONDS), "process " + r + " finished:\n" + text(outs.get(r)));
                Thread.sleep(100);
                assertEquals(0, ps.get(r).exitValue(), "process " + r + ":\n" + text(outs.get(r)));
            }
            List<JsonNode> c = metrics(tmp.resolve("torchrun"));
            assertEquals(20, c.size());
            for (int i = 0; i < 20; i++)
                for (String k : new String[]{"loss", "grad_norm", "val_loss"})
                    assertEquals(a.get(i).path(k).asDouble(-1), c.get(i).path(k).asDouble(-1), 0.0, "torchrun " + k + " at step " + (i + 1));
        }

        // One validation set for every layout: eval_batches counts global micro-batches, so tp1 x dp1, dp 2 and
        // tp 2 x dp 2 evaluate the same sequences. Their training runs are the same computation in other summation
        // orders, so the validation losses agree within fp32 noise: 1e-5 relative (measured on 2026-12-02: tp1 x dp1
        // 8.9e-9 at step 10 and 2.5e-8 at step 20; dp 2 bitwise equal).
        for (String[] layout : new String[][]{{"1", "1"}, {"1", "2"}}) {
            Path dir = tmp.resolve("tp" + layout[0] + "dp" + layout[1]);
            StringBuilder lo = new StringBuilder();
            assertEquals(0, run(lo, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", dir.toString(),
                    "--peak-tflops", "0.1", "--tp", layout[0], "--dp", layout[1], "--no-checkpoints"), lo.toString());
            List<JsonNode> m = metrics(dir);
            for (int i : new int[]{9, 19}) {
                double want = a.get(i).path("val_loss").asDouble(), got = m.get(i).path("val_loss").asDouble(Double.NaN);
                assertEquals(want, got, 1e-5 * Math.abs(want), "val_loss at step " + (i + 1) + " tp " + layout[0] + " dp " + layout[1]);
            }
        }
    }

    @Test
    void sigtermToOneProcessStopsEveryProcessAfterTheSameStepWithExitZero(@TempDir Path tmp) throws Exception {
        Path cfg = config(tmp, 3000), runDir = tmp.resolve("run");
        // torchrun's static rendezvous: its agent already listens on MASTER_PORT for the whole run
        ServerSocket agent = new ServerSocket(0);
        int port = agent.getLocalPort();
        List<List<String>> outs = new ArrayList<>();
        List<Process> ps = new ArrayList<>();
        for (int r = 0; r < 4; r++) {
            outs.add(Collections.synchronizedList(new ArrayList<>()));
            ps.add(jvm(torchrun(r, 4, port), outs.get(r), "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir",
                    runDir.toString(), "--peak-tflops", "0.1", "--tp", "2", "--dp", "2", "--set", "checkpoint.every_steps=1000"));
        }
        await(() -> lines(runDir) >= 3, 180, "3 steps", outs.get(0));
        new ProcessBuilder("kill", "-TERM", Long.toString(ps.get(2).pid())).inheritIO().start().waitFor();
        for (int r = 0; r < 4; r++) {
            assertTrue(ps.get(r).waitFor(60, TimeUnit.SECONDS), "process " + r + " exits");
            Thread.sleep(100);
            assertEquals(0, ps.get(r).exitValue(), "process " + r + ":\n" + text(outs.get(r)));
        }
        long steps = lines(runDir);
        assertTrue(steps >= 3 && steps < 3000, "stopped early at " + steps);
        assertTrue(outs.get(0).stream().anyMatch(l -> l.contains("stopped at step " + steps + " (a stop requested on another process)")),
                text(outs.get(0)));
        for (int r = 1; r < 4; r++) {
            String want = "process " + r + " of 4: done at step " + steps;
            assertTrue(outs.get(r).contains(want), want + " in:\n" + text(outs.get(r)));
        }
        assertEquals(List.of(steps), StepDirectories.forRun(runDir).committedSteps(), "one committed checkpoint, of the stop step");
        agent.close();
    }

    @Test
    void launchStopsTheOtherProcessesWhenOneFailsAndNamesIt(@TempDir Path tmp) throws Exception {
        Path cfg = config(tmp, 3000), runDir = tmp.resolve("run");
        List<String> out = Collections.synchronizedList(new ArrayList<>());
        Process launch = jvm(Map.of(), out, "launch", "--nproc-per-node", "2", "--master-port", "" + masterPort(), "--grace-seconds", "20",
                "--", "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", runDir.toString(), "--peak-tflops", "0.1",
                "--dp", "2", "--no-checkpoints", "--dist-timeout", "15");
        await(() -> lines(runDir) >= 2, 180, "2 steps", out);
        List<ProcessHandle> kids = launch.toHandle().children().toList();
        assertEquals(2, kids.size(), "one process per rank");
        ProcessHandle victim = kids.stream().filter(k -> k.info().arguments().isPresent()).findFirst().orElse(kids.get(1));
        long pid = victim.pid();
        victim.destroyForcibly();
        assertTrue(launch.waitFor(40, TimeUnit.SECONDS), "the launcher ends:\n" + text(out));
        Thread.sleep(200);
        assertEquals(1, launch.exitValue(), text(out));
        assertTrue(out.stream().anyMatch(l -> l.matches("midtrain launch: rank [01] \\(pid " + pid + "\\) exited with code 137 \\(signal 9\\).*")),
                text(out));
        for (ProcessHandle k : kids) assertFalse(k.isAlive(), "no orphan");
    }

    @Test
    void launchKeepsPrintingTheRanksLastLinesAfterSigtermAndDividesTheCoresAmongItsProcesses(@TempDir Path tmp) throws Exception {
        Path cfg = tmp.resolve("auto-threads.yaml"), runDir = tmp.resolve("run");
        Files.writeString(cfg, CONFIG.replace("STEPS", "3000").replace("threads: 1", "threads: 0"));
        List<String> out = Collections.synchronizedList(new ArrayList<>());
        Process launch = jvm(Map.of(), out, "launch", "--nproc-per-node", "2", "--master-port", "" + masterPort(), "--",
                "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", runDir.toString(), "--peak-tflops", "0.1",
                "--dp", "2", "--dist-timeout", "30");
        await(() -> lines(runDir) >= 3, 180, "3 steps", out);
        launch.toHandle().destroy();                                   // SIGTERM to the launcher (Process.destroy would close our pipes)
        assertTrue(launch.waitFor(60, TimeUnit.SECONDS), "the launcher ends:\n" + text(out));
        Thread.sleep(300);
        assertEquals(0, launch.exitValue(), "a graceful stop:\n" + text(out));
        long steps = lines(runDir);
        String all = text(out);
        // the lines each rank prints after the signal, through the launcher's pipes
        assertTrue(out.stream().anyMatch(l -> l.startsWith("[rank 0] stopped at step " + steps + " (SIGTERM); checkpoint ")
                && l.contains("continue with: midtrain train --resume")), all);
        assertTrue(out.stream().anyMatch(l -> l.startsWith("[rank 0] done: " + steps + " steps")), all);
        assertTrue(out.contains("[rank 1] process 1 of 2: done at step " + steps), all);
        int perRank = Math.max(1, Runtime.getRuntime().availableProcessors() / 2);   // train.threads 0: the node's cores / 2 processes
        assertTrue(out.stream().anyMatch(l -> l.startsWith("[rank 0] model: ") && l.contains(", " + perRank + " threads per rank")), all);
        List<Long> saved = StepDirectories.forRun(runDir).committedSteps();
        assertEquals(steps, saved.get(saved.size() - 1), "the stop step was saved");
    }

    @Test
    void ranksOfASigkilledLauncherStopAndTheOtherNodeFailsFast(@TempDir Path tmp) throws Exception {
        // two "nodes" on loopback, one launcher each (one process of one rank each)
        Path cfg = config(tmp, 3000), runDir = tmp.resolve("run");
        int port = masterPort();
        List<List<String>> outs = List.of(Collections.synchronizedList(new ArrayList<>()), Collections.synchronizedList(new ArrayList<>()));
        List<Process> launchers = new ArrayList<>();
        for (int node = 0; node < 2; node++)
            launchers.add(jvm(Map.of(), outs.get(node), "launch", "--nproc-per-node", "1", "--nnodes", "2", "--node-rank", "" + node,
                    "--master-addr", "127.0.0.1", "--master-port", "" + port, "--", "train", "--config", cfg.toString(), "--synthetic-data",
                    "--run-dir", runDir.toString(), "--peak-tflops", "0.1", "--dp", "2", "--no-checkpoints", "--dist-timeout", "15"));
        await(() -> lines(runDir) >= 2, 180, "2 steps", outs.get(0));
        List<ProcessHandle> kids = launchers.get(1).toHandle().children().toList();
        assertEquals(1, kids.size(), "node 1's rank process");
        launchers.get(1).toHandle().destroyForcibly();                // SIGKILL: no shutdown hook, no signal forwarded
        long t0 = System.nanoTime();
        try {
            kids.get(0).onExit().get(15, TimeUnit.SECONDS);            // --dist-timeout
        } catch (java.util.concurrent.TimeoutException e) {
            fail("node 1's rank still alive 15 s after its launcher was killed (" + lines(runDir) + " steps)");
        }
        double gone = (System.nanoTime() - t0) / 1e9;
        assertTrue(launchers.get(0).waitFor(15, TimeUnit.SECONDS), "node 0 fails fast:\n" + text(outs.get(0)));
        double other = (System.nanoTime() - t0) / 1e9;
        Thread.sleep(200);
        assertEquals(1, launchers.get(0).exitValue(), text(outs.get(0)));
        assertTrue(outs.get(0).stream().anyMatch(l -> l.contains("its launcher (midtrain launch, pid " + launchers.get(1).pid() + ") is gone")),
                "node 0 names the lost launcher:\n" + text(outs.get(0)));
        System.out.printf("SIGKILLed launcher: its rank stopped %.1f s later, the other node's launcher exited %.1f s later%n", gone, other);
    }

    @Test
    void aKilledPeerMakesTheSurvivorExitNonZeroNamingIt(@TempDir Path tmp) throws Exception {
        Path cfg = config(tmp, 3000), runDir = tmp.resolve("run");
        int port = masterPort();
        List<String> out0 = Collections.synchronizedList(new ArrayList<>()), out1 = Collections.synchronizedList(new ArrayList<>());
        Process p0 = jvm(torchrun(0, 2, port), out0, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", runDir.toString(),
                "--peak-tflops", "0.1", "--dp", "2", "--no-checkpoints", "--dist-timeout", "15");
        Process p1 = jvm(torchrun(1, 2, port), out1, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", runDir.toString(),
                "--peak-tflops", "0.1", "--dp", "2", "--no-checkpoints", "--dist-timeout", "15");
        await(() -> lines(runDir) >= 2, 180, "2 steps", out0);
        p1.destroyForcibly();                                           // SIGKILL
        long t0 = System.nanoTime();
        assertTrue(p0.waitFor(15 + 5, TimeUnit.SECONDS), "the survivor exits within --dist-timeout + 5 s:\n" + String.join("\n", out0));
        double s = (System.nanoTime() - t0) / 1e9;
        Thread.sleep(200);
        assertEquals(1, p0.exitValue(), String.join("\n", out0));
        List<String> errors = out0.stream().filter(l -> l.startsWith("midtrain: ")).toList();
        assertEquals(1, errors.size(), "one line:\n" + String.join("\n", out0));
        assertTrue(errors.get(0).contains("lost rank 1 (process 1, host "), errors.get(0));
        assertTrue(errors.get(0).contains("stopped in ") || errors.get(0).contains(" during "), "names the collective: " + errors.get(0));
        assertFalse(out0.stream().anyMatch(l -> l.contains("\tat ")), "no stack trace");
        System.out.printf("survivor exited %.1f s after the SIGKILL: %s%n", s, errors.get(0));
    }

    @Test
    void aSecondTrainingOnTheRunDirectoryIsRefusedAndAKilledRunResumes(@TempDir Path tmp) throws Exception {
        Path cfg = config(tmp, 3000), runDir = tmp.resolve("run");
        List<String> out = Collections.synchronizedList(new ArrayList<>());
        Process p = jvm(Map.of(), out, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", runDir.toString(), "--peak-tflops", "0.1");
        StepDirectories store = StepDirectories.forRun(runDir);
        await(() -> Files.isDirectory(runDir.resolve("checkpoints")) && !store.committedSteps().isEmpty(), 120, "a checkpoint", out);
        for (String[] second : new String[][]{{"--resume", runDir.toString()}, {"--config", cfg.toString(), "--run-dir", runDir.toString()}}) {
            List<String> args = new ArrayList<>(List.of("train", "--synthetic-data", "--peak-tflops", "0.1"));
            args.addAll(List.of(second));
            StringBuilder o = new StringBuilder();
            assertEquals(2, run(o, args.toArray(String[]::new)), o.toString());
            assertTrue(o.toString().contains("is in use by another training: host ") && o.toString().contains(" pid " + p.pid() + " "), o.toString());
            assertEquals(1, o.toString().strip().lines().filter(l -> l.startsWith("midtrain: ")).count(), o.toString());
        }
        assertTrue(p.isAlive(), "the first training is untouched");
        p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);              // SIGKILL: run.lock stays behind, its OS lock does not
        assertTrue(Files.readString(runDir.resolve("run.lock")).contains("pid " + p.pid()));
        long last = store.committedSteps().get(store.committedSteps().size() - 1);
        StringBuilder o = new StringBuilder();
        assertEquals(0, run(o, "train", "--resume", runDir.toString(), "--synthetic-data", "--peak-tflops", "0.1",
                "--stop-at-step", "" + (last + 1)), o.toString());
        assertTrue(o.toString().contains("resumed from "), o.toString());
        assertEquals(last + 1, lines(runDir));
    }
}
