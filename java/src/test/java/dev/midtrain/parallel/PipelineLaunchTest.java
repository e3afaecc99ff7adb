package dev.midtrain.parallel;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.*;

/**
 * `midtrain train --pp` end to end on CPU: threads in one process and several JVMs through `midtrain launch` (TCP
 * point-to-point between the stages), against the single-rank run of the same config. A 4-layer model with tied
 * embeddings, 10 steps of synthetic data: pp 2 (2 processes), interleaved pp 2 x 2 virtual stages x dp 2 (4
 * processes), pp 4 (threads). The processes reproduce the threads bit for bit (the TCP communicator sums in the
 * in-process order, and point-to-point only copies); every layout is within 5e-6 relative of the single rank in loss
 * and gradient norm (fp32 summation order: see {@link PipelineEquivalenceTest}, which also compares the weights).
 */
class PipelineLaunchTest {
    static final String CONFIG = """
            model: {vocab_size: 96, dim: 32, n_layers: 4, n_heads: 4, n_kv_heads: 2, ffn_dim: 56,
                    rope_theta: 500000.0, norm_eps: 1.0e-5, max_seq_len: 32, tied_embeddings: true}
            optimizer: {lr: 1.0e-2, min_lr: 1.0e-3, warmup_steps: 2, eps: 1.0e-4}
            train: {seq_len: 16, micro_batch_seqs: 2, global_batch_seqs: 8, steps: 10, log_every_steps: 1,
                    eval_every_steps: 0, eval_batches: 0, threads: 1}
            data: {sources: [{name: none, path: /nonexistent, weight: 1.0}], valid_fraction: 0.05}
            """;
    static final double TOL = 5e-6;

    private final MultiProcessTrainTest procs = new MultiProcessTrainTest();

    @AfterEach
    void killChildren() throws InterruptedException { procs.killChildren(); }

    static List<JsonNode> train(Path cfg, Path dir, String... layout) throws Exception {
        List<String> args = new ArrayList<>(List.of("train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", dir.toString(),
                "--peak-tflops", "0.1", "--no-checkpoints"));
        args.addAll(List.of(layout));
        StringBuilder o = new StringBuilder();
        assertEquals(0, run(o, args.toArray(String[]::new)), o.toString());
        return MultiProcessTrainTest.metrics(dir);
    }

    List<JsonNode> launch(Path cfg, Path dir, int n, String... layout) throws Exception {
        List<String> out = Collections.synchronizedList(new ArrayList<>());
        List<String> args = new ArrayList<>(List.of("launch", "--nproc-per-node", "" + n, "--master-port", "" + MultiProcessTrainTest.masterPort(), "--",
                "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", dir.toString(), "--peak-tflops", "0.1", "--no-checkpoints"));
        args.addAll(List.of(layout));
        Process p = procs.jvm(Map.of(), out, args.toArray(String[]::new));
        assertTrue(p.waitFor(240, TimeUnit.SECONDS), "launch finished:\n" + MultiProcessTrainTest.text(out));
        Thread.sleep(200);
        assertEquals(0, p.exitValue(), MultiProcessTrainTest.text(out));
        for (int r = 1; r < n; r++) assertTrue(out.contains("[rank " + r + "] process " + r + " of " + n + ": done at step 10"), MultiProcessTrainTest.text(out));
        return MultiProcessTrainTest.metrics(dir);
    }

    static void same(List<JsonNode> want, List<JsonNode> got, double tol, String what) {
        assertEquals(10, want.size(), what);
        assertEquals(10, got.size(), what);
        double worst = 0;
        for (int i = 0; i < 10; i++)
            for (String k : new String[]{"loss", "grad_norm"}) {
                double a = want.get(i).path(k).asDouble(), b = got.get(i).path(k).asDouble(Double.NaN);
                double rel = Math.abs(a - b) / Math.abs(a);
                worst = Math.max(worst, rel);
                assertTrue(rel <= tol, what + ": " + k + " at step " + (i + 1) + ": " + b + " vs " + a);
            }
        System.out.printf("pipeline launch %s: worst relative difference %.2e%n", what, worst);
    }

    @Test
    void pipelineProcessesEqualThreadsAndTheSingleRank(@TempDir Path tmp) throws Exception {
        Path cfg = tmp.resolve("c.yaml");
        Files.writeString(cfg, CONFIG);
        List<JsonNode> single = train(cfg, tmp.resolve("single"));
        List<JsonNode> threads2 = train(cfg, tmp.resolve("t-pp2"), "--pp", "2");
        same(single, threads2, TOL, "pp 2 threads vs single rank");
        same(threads2, launch(cfg, tmp.resolve("p-pp2"), 2, "--pp", "2"), 0.0, "pp 2: 2 processes vs threads");
        List<JsonNode> threadsI = train(cfg, tmp.resolve("t-int"), "--pp", "2", "--virtual-stages", "2", "--dp", "2");
        same(single, threadsI, TOL, "pp 2 x 2 virtual x dp 2 threads vs single rank");
        same(threadsI, launch(cfg, tmp.resolve("p-int"), 4, "--pp", "2", "--virtual-stages", "2", "--dp", "2"), 0.0,
                "pp 2 x 2 virtual x dp 2: 4 processes vs threads");
        same(single, train(cfg, tmp.resolve("t-pp4"), "--pp", "4"), TOL, "pp 4 threads vs single rank");
    }

    @Test
    void aKilledStageMakesTheOtherStageExitWithinTheTimeoutNamingIt(@TempDir Path tmp) throws Exception {
        Path cfg = tmp.resolve("long.yaml"), runDir = tmp.resolve("run");
        Files.writeString(cfg, CONFIG.replace("steps: 10", "steps: 3000"));
        int port = MultiProcessTrainTest.masterPort();
        List<String> out0 = Collections.synchronizedList(new ArrayList<>()), out1 = Collections.synchronizedList(new ArrayList<>());
        String[] args = {"train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", runDir.toString(), "--peak-tflops", "0.1",
                "--pp", "2", "--no-checkpoints", "--dist-timeout", "15"};
        Process p0 = procs.jvm(MultiProcessTrainTest.torchrun(0, 2, port), out0, args);
        Process p1 = procs.jvm(MultiProcessTrainTest.torchrun(1, 2, port), out1, args);
        MultiProcessTrainTest.await(() -> MultiProcessTrainTest.lines(runDir) >= 2, 180, "2 steps", out0);
        p1.destroyForcibly();                                           // SIGKILL of the last stage, mid-step
        long t0 = System.nanoTime();
        assertTrue(p0.waitFor(15 + 5, TimeUnit.SECONDS), "the first stage exits within --dist-timeout + 5 s:\n" + String.join("\n", out0));
        double s = (System.nanoTime() - t0) / 1e9;
        Thread.sleep(200);
        assertEquals(1, p0.exitValue(), String.join("\n", out0));
        List<String> errors = out0.stream().filter(l -> l.startsWith("midtrain: ")).toList();
        assertEquals(1, errors.size(), "one line:\n" + String.join("\n", out0));
        assertTrue(errors.get(0).contains("lost rank 1 (process 1, host "), errors.get(0));
        assertFalse(out0.stream().anyMatch(l -> l.contains("\tat ")), "no stack trace");
        System.out.printf("first stage exited %.1f s after the SIGKILL of the last: %s%n", s, errors.get(0));
    }

    @Test
    void pipelineRunsThatThisBuildCannotDoAreRefusedInOneLine(@TempDir Path tmp) throws Exception {
        Path cfg = tmp.resolve("c.yaml");
        Files.writeString(cfg, CONFIG);
        StringBuilder o = new StringBuilder();
        assertEquals(2, run(o, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", tmp.resolve("x").toString(), "--pp", "2",
                "--set", "train.eval_every_steps=5", "--set", "train.eval_batches=1"));
        assertTrue(o.toString().contains("parallel.pp: pipeline stages in this build train on the CPU backend with train.eval_every_steps: 0"), o.toString());
        assertFalse(Files.exists(tmp.resolve("x")), "refused before the run directory exists");
        StringBuilder o3 = new StringBuilder();
        assertEquals(2, run(o3, "train", "--config", cfg.toString(), "--synthetic-data", "--no-checkpoints", "--run-dir", tmp.resolve("y").toString(), "--pp", "3"));
        assertTrue(o3.toString().contains("must divide model.n_layers (4)"), o3.toString());
    }
}
