package dev.midtrain.parallel;

import static dev.midtrain.cli.Cli.run;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.cli.Commands;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** `midtrain train --tp/--dp` end to end on the CPU (ranks as threads), and the launch/memory errors. */
class ParallelTrainCommandTest {
    static final String CONFIG = """
            model: {vocab_size: 96, dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 56,
                    rope_theta: 500000.0, norm_eps: 1.0e-5, max_seq_len: 32, tied_embeddings: false}
            optimizer: {lr: 1.0e-2, min_lr: 1.0e-3, warmup_steps: 2, eps: 1.0e-4}
            train: {seq_len: 16, micro_batch_seqs: 2, global_batch_seqs: 8, steps: 5, log_every_steps: 1,
                    eval_every_steps: 5, eval_batches: 3, threads: 2}
            data: {sources: [{name: none, path: /nonexistent, weight: 1.0}], valid_fraction: 0.05}
            """;

    static List<JsonNode> metrics(Path run) throws Exception {
        List<JsonNode> rows = new ArrayList<>();
        for (String line : Files.readAllLines(run.resolve("metrics.jsonl"))) rows.add(new ObjectMapper().readTree(line));
        return rows;
    }

    @Test
    void tensorAndDataParallelRunsMatchTheSingleRankRun(@TempDir Path tmp) throws Exception {
        Path cfg = tmp.resolve("small.yaml");
        Files.writeString(cfg, CONFIG);
        StringBuilder out = new StringBuilder();
        assertEquals(0, run(out, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", tmp.resolve("one").toString(),
                "--peak-tflops", "0.1"), out.toString());
        out.setLength(0);
        assertEquals(0, run(out, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", tmp.resolve("par").toString(),
                "--peak-tflops", "0.1", "--tp", "4", "--dp", "2"), out.toString());
        assertTrue(out.toString().contains("tp 4 x dp 2 (SINGLE, 1 process)"), out.toString());
        List<JsonNode> one = metrics(tmp.resolve("one")), par = metrics(tmp.resolve("par"));
        assertEquals(5, par.size(), "only rank 0 writes metrics");
        for (int i = 0; i < one.size(); i++) {
            // same data (the dp slices of the global stream), same init: fp32 reduction order only (see ParallelEquivalenceTest)
            assertEquals(one.get(i).get("loss").asDouble(), par.get(i).get("loss").asDouble(), 5e-6 * one.get(i).get("loss").asDouble());
            assertEquals(one.get(i).get("grad_norm").asDouble(), par.get(i).get("grad_norm").asDouble(), 5e-6 * one.get(i).get("grad_norm").asDouble());
            assertEquals(one.get(i).get("tokens").asLong(), par.get(i).get("tokens").asLong());
            // one validation set for every layout (eval_batches counts global micro-batches): fp32 summation order only
            assertEquals(one.get(i).path("val_loss").asDouble(-1), par.get(i).path("val_loss").asDouble(-1), 5e-6 * one.get(i).path("val_loss").asDouble(1));
            // every data-parallel rank's tokens are counted once
            assertEquals(one.get(i).get("tokens_per_source"), par.get(i).get("tokens_per_source"), "step " + (i + 1));
        }
    }

    /** A limit between what tp 2 and tp 1 need (with recompute too), so the planner must suggest tp 2. */
    static double limitGib() {
        var m = new dev.midtrain.config.ModelConfig(96, 32, 2, 4, 2, 56, 500000.0, 1e-5, 32, false);
        long one = dev.midtrain.model.MemoryPlan.of(m, 2, 16, 1, 1, true, 4).totalBytes(true);
        long two = dev.midtrain.model.MemoryPlan.of(m, 2, 16, 2, 1, true, 4).totalBytes(false);
        assertTrue(two < one, "tp 2 must need less than tp 1 with recompute");
        return (one + two) / 2.0 / (1L << 30);
    }

    @Test
    void launchAndLayoutErrorsAreOneLineWithExitCode2(@TempDir Path tmp) throws Exception {
        Path cfg = tmp.resolve("small.yaml");
        Files.writeString(cfg, CONFIG);
        String[][] cases = {
                {"--tp", "3"}, {"parallel.tp: 3 must divide model.n_heads 4"},
                {"--dp", "3"}, {"train.global_batch_seqs: must be a multiple of train.micro_batch_seqs x parallel.dp (6)"},
                {"--nnodes", "2", "--master-addr", "h"}, {"--node-rank: required with --nnodes 2"},
                {"--nnodes", "3", "--node-rank", "1", "--master-addr", "h", "--tp", "2"}, {"--nnodes: the world of tp x dp = 2 ranks does not split over 3 processes"},
                {"--memory-limit-gib", "" + limitGib()}, {"memory: tp 1 x pp 1 x dp 1 needs", "would fit: --tp 2 --pp 1 --dp 1 on 2 devices"},
        };
        for (int i = 0; i < cases.length; i += 2) {
            List<String> args = new ArrayList<>(List.of("train", "--config", cfg.toString(), "--synthetic-data",
                    "--run-dir", tmp.resolve("r" + i).toString()));
            args.addAll(List.of(cases[i]));
            StringBuilder out = new StringBuilder();
            assertEquals(2, run(out, args.toArray(String[]::new)), out.toString());
            for (String want : cases[i + 1]) assertTrue(out.toString().contains(want), want + " in: " + out);
            assertFalse(out.toString().contains("\tat "), "no stack trace: " + out);
        }
    }
}
