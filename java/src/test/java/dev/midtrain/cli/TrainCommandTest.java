package dev.midtrain.cli;

import static dev.midtrain.cli.Cli.run;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** `midtrain train` and `midtrain plot` through the CLI entry point, with exit codes. */
class TrainCommandTest {
    static final String CONFIG = """
            model: {vocab_size: 96, dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 56,
                    rope_theta: 500000.0, norm_eps: 1.0e-5, max_seq_len: 32, tied_embeddings: true}
            optimizer: {lr: 1.0e-2, min_lr: 1.0e-3, warmup_steps: 2}
            train: {seq_len: 16, micro_batch_seqs: 2, global_batch_seqs: 4, steps: 6, log_every_steps: 2,
                    eval_every_steps: 3, eval_batches: 2}
            data: {sources: [{name: none, path: /nonexistent, weight: 1.0}], valid_fraction: 0.05}
            """;

    @Test
    void trainsWritesConfigAndMetricsThenPlots(@TempDir Path tmp) throws Exception {
        Path cfg = tmp.resolve("small.yaml"), run = tmp.resolve("run");
        Files.writeString(cfg, CONFIG);
        StringBuilder out = new StringBuilder();
        assertEquals(0, run(out, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", run.toString(),
                "--set", "train.seed=7", "--peak-tflops", "0.1"));
        assertTrue(out.toString().contains("| train.seed"), "resolved config table");
        assertTrue(out.toString().contains("step      6/6"), out.toString());
        assertTrue(Files.readString(run.resolve("config.yaml")).contains("seed: 7"));
        assertEquals(6, Files.readAllLines(run.resolve("metrics.jsonl")).size());

        assertEquals(0, run(out, "plot", run.toString()));
        for (String png : new String[]{"loss.png", "lr.png", "throughput.png"}) {
            byte[] b = Files.readAllBytes(run.resolve("plots").resolve(png));
            assertTrue(b.length > 1000, png + " is " + b.length + " bytes");
            assertEquals((byte) 0x89, b[0]);
            assertEquals('P', b[1]);                                  // PNG signature
        }
        // a second run into the same directory is refused
        assertEquals(2, run(out, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", run.toString()));
    }

    /** The real data path: `prepare` 120 sample documents, then train on the prepared Arrow directory (BlendedLoader). */
    @Test
    void trainsOnPreparedArrowData(@TempDir Path tmp) throws Exception {
        Path docs = tmp.resolve("docs.jsonl"), prepared = tmp.resolve("prepared"), cfg = tmp.resolve("data.yaml");
        Files.write(docs, Files.readAllLines(Path.of("data/knowedu/sample.jsonl")).subList(0, 120));
        StringBuilder out = new StringBuilder();
        assertEquals(0, run(out, "prepare", "--source", "knowedu", "--format", "text", "--input", docs.toString(),
                "--tokenizer", "data/tokenizer/tokenizer.json", "--out", prepared.toString(), "--threads", "1"));
        Files.writeString(cfg, CONFIG.replace("vocab_size: 96", "vocab_size: 512")
                .replace("{name: none, path: /nonexistent, weight: 1.0}", "{name: knowedu, path: '" + prepared + "', weight: 1.0}"));
        Path run = tmp.resolve("run");
        assertEquals(0, run(out, "train", "--config", cfg.toString(), "--run-dir", run.toString(), "--peak-tflops", "0.1"));
        assertTrue(out.toString().contains("data: knowedu"), out.toString());
        String last = Files.readAllLines(run.resolve("metrics.jsonl")).get(5);
        assertTrue(last.contains("\"tokens_per_source\":{\"knowedu\":384}"), last);   // 6 steps x 4 seqs x 16 tokens
        // a model whose vocabulary is smaller than the data's ids is refused with a one-line error
        out.setLength(0);
        assertEquals(2, run(out, "train", "--config", cfg.toString(), "--run-dir", tmp.resolve("r2").toString(), "--set", "model.vocab_size=100"));
        assertFalse(out.toString().contains("\tat "), out.toString());
        assertFalse(Files.exists(tmp.resolve("r2")), "refused before the run directory exists");
        assertTrue(out.toString().contains("data: 1 shard(s) verified"), out.toString());
        assertTrue(Files.readString(run.resolve("verified_shards.json")).contains("shard-00000.arrow"));

        // one flipped bit in a shard: refused at start, naming the shard, no run directory; --no-verify-data skips the check
        Path shard = prepared.resolve("shard-00000.arrow");
        byte[] b = Files.readAllBytes(shard);
        b[(b.length / 2) & ~7] ^= 1;                                     // the low bit of one token id
        Files.write(shard, b);
        out.setLength(0);
        assertEquals(2, run(out, "train", "--config", cfg.toString(), "--run-dir", tmp.resolve("r3").toString()));
        String err = out.toString().lines().filter(l -> l.startsWith("midtrain:")).findFirst().orElse("");
        assertTrue(err.contains(shard.toAbsolutePath().normalize() + ": SHA-256 ") && err.contains("does not match the manifest"), out.toString());
        assertFalse(Files.exists(tmp.resolve("r3")));
        out.setLength(0);
        assertEquals(0, run(out, "train", "--config", cfg.toString(), "--run-dir", tmp.resolve("r3").toString(), "--no-verify-data",
                "--set", "train.steps=1", "--peak-tflops", "0.1"), out.toString());
    }

    @Test
    void userErrorsAreOneLineWithExitCode2(@TempDir Path tmp) throws Exception {
        Path cfg = tmp.resolve("c.yaml");
        Files.writeString(cfg, CONFIG);
        StringBuilder out = new StringBuilder();
        assertEquals(2, run(out, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", tmp.resolve("r").toString(),
                "--set", "optimizer.lr=-1"));
        assertTrue(out.toString().contains("optimizer.lr"), out.toString());
        assertFalse(out.toString().contains("\tat "), "no stack trace");
        out.setLength(0);
        assertEquals(2, run(out, "train", "--config", cfg.toString(), "--run-dir", tmp.resolve("r2").toString()));
        assertTrue(out.toString().contains("data.sources[none]") || out.toString().contains("/nonexistent"), out.toString());
        out.setLength(0);
        assertEquals(2, run(out, "plot", tmp.resolve("nothing").toString()));
        assertTrue(out.toString().contains("metrics.jsonl"));
    }
}
