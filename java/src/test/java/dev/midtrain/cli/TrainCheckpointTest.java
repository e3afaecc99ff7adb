package dev.midtrain.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.ckpt.DType;
import dev.midtrain.ckpt.CommittedStep;
import dev.midtrain.ckpt.TestAccess;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.RopeScaling;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.*;

/** `midtrain train` with checkpoints: bit-exact resume, refused and allowed config changes, --init-from, export. */
class TrainCheckpointTest {
    @TempDir Path tmp;

    static final String CONFIG = TrainCommandTest.CONFIG + "checkpoint: {every_steps: 2, keep_last: 5, async: true}\n";
    static final ObjectMapper JSON = new ObjectMapper();

    Path config() throws Exception {
        Path c = tmp.resolve("c.yaml");
        Files.writeString(c, CONFIG);
        return c;
    }

    static List<JsonNode> metrics(Path run) throws Exception {
        List<JsonNode> out = new ArrayList<>();
        for (String l : Files.readAllLines(run.resolve("metrics.jsonl"))) out.add(JSON.readTree(l));
        return out;
    }

    /** N steps straight vs N/2, stop, resume, N/2: identical losses, norms, lrs and byte-identical final checkpoints. */
    @Test
    void resumeIsBitExactOnCpu() throws Exception {
        Path c = config(), a = tmp.resolve("a"), b = tmp.resolve("b");
        StringBuilder out = new StringBuilder();
        assertEquals(0, run(out, "train", "--config", c.toString(), "--synthetic-data", "--run-dir", a.toString()), out.toString());
        assertEquals(List.of(2L, 4L, 6L), StepDirectories.forRun(a).committedSteps());
        out.setLength(0);
        assertEquals(0, run(out, "train", "--config", c.toString(), "--synthetic-data", "--run-dir", b.toString(), "--stop-at-step", "3"), out.toString());
        assertTrue(out.toString().contains("stopped at step 3"), out.toString());
        assertEquals(List.of(2L, 3L), StepDirectories.forRun(b).committedSteps());
        out.setLength(0);
        Path none = tmp.resolve("no-checkpoints");                     // a stop without checkpoints promises no resume
        assertEquals(0, run(out, "train", "--config", c.toString(), "--synthetic-data", "--run-dir", none.toString(), "--stop-at-step", "3",
                "--no-checkpoints"), out.toString());
        assertTrue(out.toString().contains("stopped at step 3 (--stop-at-step); no checkpoint (--no-checkpoints)"), out.toString());
        assertFalse(out.toString().contains("checkpoint null") || out.toString().contains("--resume"), out.toString());
        out.setLength(0);
        assertEquals(0, run(out, "train", "--resume", b.toString(), "--synthetic-data"), out.toString());
        assertTrue(out.toString().contains("resumed from " + b.resolve("checkpoints").resolve("step_00000003")), out.toString());
        assertFalse(out.toString().contains("config changed"), out.toString());

        List<JsonNode> ma = metrics(a), mb = metrics(b);
        assertEquals(6, ma.size());
        assertEquals(6, mb.size());
        for (int i = 0; i < 6; i++)
            for (String f : List.of("step", "loss", "grad_norm", "lr", "tokens", "skipped", "tokens_per_source", "val_loss"))
                assertEquals(ma.get(i).get(f), mb.get(i).get(f), "step " + (i + 1) + " " + f);   // JSON text of the doubles: ==
        Path sa = StepDirectories.forRun(a).stepDir(6), sb = StepDirectories.forRun(b).stepDir(6);
        try (Stream<Path> files = Files.list(sa)) {
            for (Path f : files.toList())
                assertArrayEquals(Files.readAllBytes(f), Files.readAllBytes(sb.resolve(f.getFileName())), "final " + f.getFileName());
        }
    }

    /**
     * Cosine and warmup-stable-decay schedules with gradient diagnostics every 2 steps: stop at 3, resume, and the
     * metrics and final checkpoint are those of the straight run; the diagnostics leave the trained bits alone (the
     * losses equal those of a run without them).
     */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"cosine", "wsd"})
    void resumeIsBitExactWithCosineAndWsdSchedules(String schedule) throws Exception {
        Path c = config(), a = tmp.resolve("a"), b = tmp.resolve("b"), plain = tmp.resolve("plain");
        String[] set = {"--set", "optimizer.schedule=" + schedule, "--set", "optimizer.wsd_decay_fraction=0.5", "--set", "diagnostics.every_steps=2"};
        StringBuilder out = new StringBuilder();
        List<String> base = List.of("train", "--config", c.toString(), "--synthetic-data");
        assertEquals(0, run(out, cat(base, List.of("--run-dir", a.toString()), List.of(set))), out.toString());
        assertEquals(0, run(out, cat(base, List.of("--run-dir", b.toString(), "--stop-at-step", "3"), List.of(set))), out.toString());
        assertEquals(0, run(out, "train", "--resume", b.toString(), "--synthetic-data"), out.toString());
        assertEquals(0, run(out, cat(base, List.of("--run-dir", plain.toString(), "--set", "optimizer.schedule=" + schedule,
                "--set", "optimizer.wsd_decay_fraction=0.5"))), out.toString());
        List<JsonNode> ma = metrics(a), mb = metrics(b), mp = metrics(plain);
        assertEquals(6, mb.size());
        for (int i = 0; i < 6; i++) {
            for (String f : List.of("loss", "grad_norm", "lr", "val_loss")) {
                assertEquals(ma.get(i).get(f), mb.get(i).get(f), "step " + (i + 1) + " " + f);
                assertEquals(ma.get(i).get(f), mp.get(i).get(f), "diagnostics changed step " + (i + 1) + " " + f);
            }
            assertEquals((i + 1) % 2 == 0, ma.get(i).has("grad_norm_by_source"), "step " + (i + 1));
            assertEquals(ma.get(i).get("grad_norm_by_source"), mb.get(i).get("grad_norm_by_source"), "step " + (i + 1));
        }
        double peak = 1e-2, floor = 1e-3;                                  // the config's lr and min_lr
        double lr5 = ma.get(4).get("lr").asDouble();                       // step 5 of 6, warmup 2
        double expect = schedule.equals("cosine") ? floor + (peak - floor) * (1 + Math.cos(Math.PI * 3 / 4)) / 2
                : peak - (peak - floor) * 2 / 3;                           // wsd: 3 decay steps (0.5 x 6), from step 3
        assertEquals(expect, lr5, 1e-15);
        for (String f : List.of("model.safetensors", "optimizer.safetensors", "trainer_state.json"))
            assertArrayEquals(Files.readAllBytes(StepDirectories.forRun(a).stepDir(6).resolve(f)),
                    Files.readAllBytes(StepDirectories.forRun(b).stepDir(6).resolve(f)), f);
    }

    @SafeVarargs
    private static String[] cat(List<String>... parts) {
        List<String> all = new ArrayList<>();
        for (List<String> p : parts) all.addAll(p);
        return all.toArray(String[]::new);
    }

    /** The same on prepared Arrow data blended from two sources (1:2): the loader position travels in trainer_state.json. */
    @Test
    void resumeIsBitExactOnBlendedArrowData() throws Exception {
        List<String> docs = Files.readAllLines(Path.of("data/knowedu/sample.jsonl"));
        StringBuilder out = new StringBuilder();
        String sources = "";
        for (int i = 0; i < 2; i++) {
            Path d = tmp.resolve("docs" + i + ".jsonl"), prepared = tmp.resolve("prepared" + i);
            Files.write(d, docs.subList(60 * i, 60 * i + 60));
            assertEquals(0, run(out, "prepare", "--source", "s" + i, "--format", "text", "--input", d.toString(),
                    "--tokenizer", "data/tokenizer/tokenizer.json", "--out", prepared.toString(), "--threads", "1"), out.toString());
            sources += (i == 0 ? "" : ", ") + "{name: s" + i + ", path: '" + prepared + "', weight: " + (i + 1) + ".0}";
        }
        Path c = tmp.resolve("c.yaml"), a = tmp.resolve("a"), b = tmp.resolve("b");
        Files.writeString(c, CONFIG.replace("vocab_size: 96", "vocab_size: 512")
                .replace("{name: none, path: /nonexistent, weight: 1.0}", sources));
        out.setLength(0);
        assertEquals(0, run(out, "train", "--config", c.toString(), "--run-dir", a.toString()), out.toString());
        assertEquals(0, run(out, "train", "--config", c.toString(), "--run-dir", b.toString(), "--stop-at-step", "3"), out.toString());
        assertEquals(0, run(out, "train", "--resume", b.toString()), out.toString());
        List<JsonNode> ma = metrics(a), mb = metrics(b);
        assertEquals(6, mb.size());
        assertEquals(2, ma.get(5).get("tokens_per_source").size(), "both sources were read: " + ma.get(5));
        for (int i = 0; i < 6; i++)
            for (String f : List.of("loss", "grad_norm", "lr", "tokens_per_source", "val_loss"))
                assertEquals(ma.get(i).get(f), mb.get(i).get(f), "step " + (i + 1) + " " + f);
        for (String f : List.of("model.safetensors", "optimizer.safetensors", "trainer_state.json"))
            assertArrayEquals(Files.readAllBytes(StepDirectories.forRun(a).stepDir(6).resolve(f)),
                    Files.readAllBytes(StepDirectories.forRun(b).stepDir(6).resolve(f)), f);
    }

    @Test
    void resumeRefusesAnotherModelAndReportsAllowedChanges() throws Exception {
        Path c = config(), r = tmp.resolve("r");
        StringBuilder out = new StringBuilder();
        assertEquals(0, run(out, "train", "--config", c.toString(), "--synthetic-data", "--run-dir", r.toString(), "--stop-at-step", "2"));
        out.setLength(0);
        assertEquals(2, run(out, "train", "--resume", r.toString(), "--synthetic-data", "--set", "model.dim=64", "--set", "model.n_layers=3"));
        String err = out.toString().strip();
        assertTrue(err.contains("cannot resume with a different model shape") && err.contains("model.dim 32 -> 64")
                && err.contains("model.n_layers 2 -> 3"), err);
        assertFalse(out.toString().contains("\tat "), "no stack trace");
        out.setLength(0);
        assertEquals(2, run(out, "train", "--resume", r.toString(), "--init-from", tmp.toString(), "--synthetic-data"));
        assertTrue(out.toString().contains("choose one"), out.toString());
        out.setLength(0);
        assertEquals(2, run(out, "train", "--resume", tmp.resolve("none").toString(), "--synthetic-data"));
        assertTrue(out.toString().contains("not a directory"), out.toString());
        out.setLength(0);
        assertEquals(0, run(out, "train", "--resume", r.toString(), "--synthetic-data", "--set", "optimizer.lr=5.0e-3", "--set", "train.steps=8"),
                out.toString());
        assertTrue(out.toString().contains("config changed since the checkpoint: optimizer.lr 0.01 -> 0.005"), out.toString());
        assertTrue(out.toString().contains("train.steps 6 -> 8"), out.toString());
        assertEquals(8, metrics(r).size());
        assertEquals(8, metrics(r).get(7).get("step").asInt());
        assertEquals(List.of(2L, 4L, 6L, 8L), StepDirectories.forRun(r).committedSteps());
        try (CommittedStep ck = CommittedStep.open(StepDirectories.forRun(r).stepDir(8), true)) {
            assertEquals(8L * 4 * 16, ck.stateFile().state().tokensTrained);
            assertEquals(0.005, ck.config().optimizer().lr());
        }
    }

    /** HF -> --init-from -> one step that cannot move the weights (lr 1e-30) -> export: the HF tensors, bit for bit. */
    @Test
    void initFromHuggingFaceThenExport() throws Exception {
        ModelConfig m = new ModelConfig(96, 32, 2, 4, 2, 56, 500000.0, 1e-5, 32, true);
        Path hf = tmp.resolve("hf");
        Map<String, float[]> values = TestAccess.writeHf(hf, m, DType.BF16, 20_000, 3);
        Path c = config(), r = tmp.resolve("r");
        StringBuilder out = new StringBuilder();
        assertEquals(0, run(out, "train", "--config", c.toString(), "--synthetic-data", "--run-dir", r.toString(), "--init-from", hf.toString(),
                "--set", "optimizer.lr=1.0e-30", "--set", "optimizer.min_lr=0", "--set", "train.steps=1",
                "--set", "checkpoint.tokens_seen_before=15000000000000"), out.toString());
        assertTrue(out.toString().contains("initialized from " + hf) && out.toString().contains("15,000,000,000,000 tokens seen before"), out.toString());
        Path step1 = StepDirectories.forRun(r).stepDir(1);
        try (CommittedStep ck = CommittedStep.open(step1, true)) {
            assertEquals(15_000_000_000_000L + 64, ck.stateFile().state().tokensTotal());
            assertEquals(1, ck.stateFile().hfConfig().get("bos_token_id").asInt());
            assertEquals(hf.toAbsolutePath().toString(), ck.stateFile().initFrom());
        }
        Path ex = tmp.resolve("export");
        out.setLength(0);
        assertEquals(0, run(out, "export", "--checkpoint", step1.toString(), "--out", ex.toString(), "--dtype", "bf16", "--tokenizer", "data/tokenizer/tokenizer.json"), out.toString());
        TestAccess.assertSameTensors(values, ex, DType.BF16);

        // a checkpoint of another shape: one line naming every mismatching field, exit 2
        Path other = tmp.resolve("other");
        TestAccess.writeHf(other, TestAccess.model(), DType.BF16, 0, 1);
        out.setLength(0);
        assertEquals(2, run(out, "train", "--config", c.toString(), "--synthetic-data", "--run-dir", tmp.resolve("r2").toString(), "--init-from", other.toString()));
        String err = out.toString().lines().filter(l -> l.startsWith("midtrain:")).findFirst().orElse("");
        assertTrue(err.contains("config.json: checkpoint does not match the run's model config") && err.contains("hidden_size 8 != model.dim 32")
                && err.contains("vocab_size 12 != model.vocab_size 96") && err.contains("tie_word_embeddings false != model.tied_embeddings true")
                && err.contains("intermediate_size 12 != model.ffn_dim 56"), err);
        assertFalse(err.contains("num_hidden_layers") || err.contains("num_attention_heads"), "only the fields that differ: " + err);
    }

    /**
     * Llama-3.2 style (tied embeddings, rope_scaling llama3) HF -> --init-from -> one step that cannot move the weights
     * -> export: the tensors bit for bit, config.json's rope_scaling and token ids kept, tokenizer files and
     * generation_config.json copied byte for byte. A mismatching rope_scaling is refused before the run directory
     * exists, so the corrected retry can use the same --run-dir.
     */
    @Test
    void initFromLlama32StyleCheckpointWithRopeScaling() throws Exception {
        RopeScaling rs = new RopeScaling("llama3", 32.0, 1.0, 4.0, 8192);
        ModelConfig m = new ModelConfig(96, 32, 2, 4, 2, 56, 500000.0, 1e-5, 32, true, rs);
        Path hf = tmp.resolve("hf32");
        Map<String, float[]> values = TestAccess.writeHf(hf, m, DType.F32, 0, 5);
        Map<String, String> side = Map.of("tokenizer.json", "{\"model\": {\"vocab\": {}}}\n", "tokenizer_config.json", "{\"bos_token\": \"<s>\"}\n",
                "special_tokens_map.json", "{}\n", "generation_config.json", "{\"bos_token_id\": 1, \"eos_token_id\": [2, 9], \"do_sample\": true}\n");
        for (var e : side.entrySet()) Files.writeString(hf.resolve(e.getKey()), e.getValue());
        Path plain = config(), c = tmp.resolve("c32.yaml"), r = tmp.resolve("r32");
        Files.writeString(c, CONFIG.replace("tied_embeddings: true}", "tied_embeddings: true,\n  rope_scaling: {rope_type: llama3, factor: 32.0,"
                + " low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192}}"));
        String[] steps = {"--set", "optimizer.lr=1.0e-30", "--set", "optimizer.min_lr=0", "--set", "train.steps=1"};

        StringBuilder out = new StringBuilder();          // plain RoPE config vs scaled checkpoint: refused, nothing created
        assertEquals(2, run(out, concat(new String[]{"train", "--config", plain.toString(), "--synthetic-data", "--run-dir", r.toString(),
                "--init-from", hf.toString()}, steps)), out.toString());
        String err = out.toString().lines().filter(l -> l.startsWith("midtrain:")).findFirst().orElse("");
        assertTrue(err.contains("rope_scaling {") && err.contains("!= model.rope_scaling null"), err);
        assertFalse(Files.exists(r), "refused before the run directory was created");

        out.setLength(0);
        assertEquals(0, run(out, concat(new String[]{"train", "--config", c.toString(), "--synthetic-data", "--run-dir", r.toString(),
                "--init-from", hf.toString()}, steps)), out.toString());
        Path ex = tmp.resolve("export32");
        assertEquals(0, run(out, "export", "--checkpoint", r.toString(), "--out", ex.toString(), "--dtype", "fp32"), out.toString());
        TestAccess.assertSameTensors(values, ex, DType.F32);
        JsonNode src = JSON.readTree(hf.resolve("config.json").toFile()), got = JSON.readTree(ex.resolve("config.json").toFile());
        assertEquals(src.get("rope_scaling"), got.get("rope_scaling"));
        assertEquals(1, got.get("bos_token_id").asInt());
        assertEquals(2, got.get("eos_token_id").asInt());
        assertTrue(got.get("tie_word_embeddings").asBoolean());
        for (var e : side.entrySet()) assertEquals(e.getValue(), Files.readString(ex.resolve(e.getKey())), e.getKey());
    }

    static String[] concat(String[] a, String[] b) {
        return Stream.concat(Stream.of(a), Stream.of(b)).toArray(String[]::new);
    }
}
