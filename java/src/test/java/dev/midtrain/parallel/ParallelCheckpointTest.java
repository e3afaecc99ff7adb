package dev.midtrain.parallel;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.ckpt.DType;
import dev.midtrain.ckpt.TestAccess;
import dev.midtrain.config.ModelConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static dev.midtrain.parallel.ParallelTrainCommandTest.metrics;
import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.*;

/** Checkpoints under tensor and data parallelism: per-rank shard files, bit-exact resume, Hugging Face init for any layout. */
class ParallelCheckpointTest {
    @TempDir Path tmp;

    static final String CONFIG = ParallelTrainCommandTest.CONFIG.replace("steps: 5", "steps: 6")
            + "checkpoint: {every_steps: 2, keep_last: 5, async: true}\n";

    Path config() throws Exception {
        Path c = tmp.resolve("c.yaml");
        Files.writeString(c, CONFIG);
        return c;
    }

    @Test
    void stopAndResumeUnderTpAndZero1IsBitExact() throws Exception {
        Path c = config(), full = tmp.resolve("full"), cut = tmp.resolve("cut");
        String[] layout = {"--tp", "2", "--dp", "2", "--synthetic-data", "--peak-tflops", "0.1"};
        StringBuilder out = new StringBuilder();
        assertEquals(0, run(out, cat(new String[]{"train", "--config", c.toString(), "--run-dir", full.toString()}, layout)), out.toString());
        out.setLength(0);
        assertEquals(0, run(out, cat(new String[]{"train", "--config", c.toString(), "--run-dir", cut.toString(), "--stop-at-step", "3"}, layout)),
                out.toString());
        assertTrue(out.toString().contains("stopped at step 3"), out.toString());
        Path step3 = StepDirectories.forRun(cut).stepDir(3);
        for (String f : List.of("model-tp00-of-02-dp00-of-02.safetensors", "model-tp01-of-02-dp00-of-02.safetensors",
                "model-tp00-of-02-dp01-of-02.safetensors", "model-tp01-of-02-dp01-of-02.safetensors",
                "optimizer-tp00-of-02-dp00-of-02.safetensors", "optimizer-tp01-of-02-dp01-of-02.safetensors"))
            assertTrue(Files.isRegularFile(step3.resolve(f)), f);      // every rank writes its data-parallel window
        out.setLength(0);
        assertEquals(0, run(out, "train", "--resume", cut.toString(), "--synthetic-data", "--peak-tflops", "0.1"), out.toString());
        assertTrue(out.toString().contains("resumed from " + step3), out.toString());
        List<JsonNode> a = metrics(full), b = metrics(cut);
        assertEquals(6, b.size());
        for (int i = 0; i < 6; i++) {
            // same arithmetic in the same order: the restored weights and ZeRO-1 moment shards are exact
            assertEquals(a.get(i).get("loss").asDouble(), b.get(i).get("loss").asDouble(), 0.0, "step " + (i + 1));
            assertEquals(a.get(i).get("grad_norm").asDouble(), b.get(i).get("grad_norm").asDouble(), 0.0, "step " + (i + 1));
            assertEquals(a.get(i).get("tokens_per_source"), b.get(i).get("tokens_per_source"), "step " + (i + 1));
        }
        // a different layout is resharded (ReshardResumeTest checks the numbers)
        out.setLength(0);
        assertEquals(0, run(out, "train", "--resume", cut.toString(), "--synthetic-data", "--tp", "1", "--dp", "1", "--set", "train.steps=7"), out.toString());
        assertTrue(out.toString().contains("parallel.tp 2 -> 1 (resharded)"), out.toString());
    }

    @Test
    void huggingFaceCheckpointIsShardedForEveryLayout() throws Exception {
        ModelConfig m = new ModelConfig(96, 32, 2, 4, 2, 56, 500000.0, 1e-5, 32, false);
        Path hf = tmp.resolve("hf"), c = config();
        Map<String, float[]> values = TestAccess.writeHf(hf, m, DType.BF16, 20_000, 3);
        Double firstLoss = null;
        for (String[] layout : new String[][]{{"1", "1"}, {"2", "2"}, {"4", "1"}}) {     // tp 4 > NKV 2: replicated KV heads
            Path r = tmp.resolve("r" + layout[0] + layout[1]);
            StringBuilder out = new StringBuilder();
            // lr 1e-30: the weights cannot move, so the step-1 checkpoint holds exactly what was loaded
            assertEquals(0, run(out, "train", "--config", c.toString(), "--synthetic-data", "--run-dir", r.toString(), "--init-from", hf.toString(),
                    "--tp", layout[0], "--dp", layout[1], "--peak-tflops", "0.1",
                    "--set", "optimizer.lr=1.0e-30", "--set", "optimizer.min_lr=0", "--set", "train.steps=1"), out.toString());
            double loss = metrics(r).get(0).get("loss").asDouble();
            if (firstLoss == null) firstLoss = loss;
            else assertEquals(firstLoss, loss, 5e-6 * firstLoss, "first-step loss of tp " + layout[0] + " x dp " + layout[1]);
            Path ex = tmp.resolve("export" + layout[0] + layout[1]);
            out.setLength(0);
            assertEquals(0, run(out, "export", "--checkpoint", StepDirectories.forRun(r).stepDir(1).toString(), "--out", ex.toString(),
                    "--dtype", "bf16", "--tokenizer", "data/tokenizer/tokenizer.json"), out.toString());
            TestAccess.assertSameTensors(values, ex, DType.BF16);          // sharded on load, gathered on export: bit for bit
        }
    }

    static String[] cat(String[] a, String[] b) {
        String[] o = new String[a.length + b.length];
        System.arraycopy(a, 0, o, 0, a.length);
        System.arraycopy(b, 0, o, a.length, b.length);
        return o;
    }
}
