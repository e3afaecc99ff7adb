package dev.midtrain.config;

import dev.midtrain.common.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Config loading: the shipped configs, overrides, and one-line errors that name the file and the field. */
class ConfigLoaderTest {
    @TempDir Path dir;

    private static final String MODEL = """
            model:
              vocab_size: 512
              dim: 64
              n_layers: 2
              n_heads: 4
              n_kv_heads: 2
              ffn_dim: 100
              rope_theta: 10000
              norm_eps: 1.0e-5
              max_seq_len: 64
              tied_embeddings: false
            """;
    private static final String TRAIN = """
            train:
              seq_len: 32
              micro_batch_seqs: 2
              global_batch_seqs: 4
              steps: 10
            """;

    private Path write(String yaml) throws IOException {
        Path f = dir.resolve("c.yaml");
        Files.writeString(f, yaml);
        return f;
    }

    private String error(String yaml, String... sets) throws IOException {
        Path f = write(yaml);
        UserError e = assertThrows(UserError.class, () -> ConfigLoader.load(f, List.of(sets)));
        assertFalse(e.getMessage().contains("\n"), "one line: " + e.getMessage());
        assertTrue(e.getMessage().startsWith(f.toString()) || e.getMessage().startsWith("--set"), "names the file: " + e.getMessage());
        return e.getMessage();
    }

    @Test
    void shippedConfigsLoadAndTheRecipeIs8B() {
        for (String name : List.of("tiny.yaml", "llama3-8b.yaml", "llama3-70b.yaml", "gpu/parity.yaml", "gpu/llama3-8b-stack.yaml")) {
            RunConfig c = ConfigLoader.load(Path.of("configs", name), List.of());
            assertNotNull(c.train(), name);
        }
        RunConfig r = ConfigLoader.load(Path.of("configs/llama3-8b.yaml"), List.of());
        assertEquals(8_030_261_248L, r.model().paramCount());
        assertEquals(512, r.train().globalBatchSeqs(), "global_batch_tokens 4194304 / seq_len 8192");
        assertEquals(List.of("boostqa", "knowedu"), r.data().sources().stream().map(DataConfig.Source::name).toList());
        assertEquals(r.data().sources().get(0).weight(), r.data().sources().get(1).weight(), "the recipe's 1:1 blend");
    }

    /** Llama-3.1 8B and Llama-3.2 1B/3B: parameter counts of the published checkpoints, rope_scaling llama3, 3.2 tied. */
    @Test
    void llama31And32Configs() {
        record Want(String file, long params, boolean tied, double factor) {}
        for (Want w : List.of(new Want("llama3.1-8b.yaml", 8_030_261_248L, false, 8.0), new Want("llama3.2-1b.yaml", 1_235_814_400L, true, 32.0),
                new Want("llama3.2-3b.yaml", 3_212_749_824L, true, 32.0))) {
            RunConfig c = ConfigLoader.load(Path.of("configs", w.file()), List.of());
            assertEquals(w.params(), c.model().paramCount(), w.file());
            assertEquals(w.tied(), c.model().tiedEmbeddings(), w.file());
            RopeScaling rs = c.model().ropeScaling();
            assertEquals(new RopeScaling("llama3", w.factor(), 1.0, 4.0, 8192), rs, w.file());
            assertEquals(131072, c.model().maxSeqLen(), w.file());
        }
        assertNull(ConfigLoader.load(Path.of("configs/llama3-8b.yaml"), List.of()).model().ropeScaling(), "Llama-3: plain RoPE");
    }

    /** RopeScaling.apply against Hugging Face's rule worked by hand for HD 128, theta 5e5, Llama-3.1 8B's values. */
    @Test
    void llama3FrequencyBands() throws IOException {
        double[] base = new ModelConfig(16, 128, 1, 1, 1, 8, 500000.0, 1e-5, 8, false).ropeInverseFrequencies();
        double[] scaled = new ModelConfig(16, 128, 1, 1, 1, 8, 500000.0, 1e-5, 8, false, new RopeScaling("llama3", 8, 1, 4, 8192))
                .ropeInverseFrequencies();
        int high = 0, low = 0, mid = 0;
        for (int i = 0; i < 64; i++) {
            double f = Math.pow(500000.0, -2.0 * i / 128), wl = 2 * Math.PI / f;
            assertEquals(f, base[i], 1e-15 * f);
            if (wl < 2048) { high++; assertEquals(f, scaled[i], 1e-15 * f); }                 // 8192 / high_freq_factor 4
            else if (wl > 8192) { low++; assertEquals(f / 8, scaled[i], 1e-15 * f); }        // 8192 / low_freq_factor 1
            else {
                mid++;
                double s = (8192 / wl - 1) / 3;
                assertEquals((1 - s) * f / 8 + s * f, scaled[i], 1e-15 * f);
                assertTrue(scaled[i] < f && scaled[i] > f / 8);
            }
        }
        assertTrue(high > 0 && low > 0 && mid > 0, high + " " + low + " " + mid);
        assertTrue(error(MODEL.replace("tied_embeddings: false", "tied_embeddings: false\n  rope_scaling: {rope_type: yarn, factor: 4.0,"
                + " low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192}") + TRAIN).contains("model.rope_scaling.rope_type"));
    }

    @Test
    void duplicateKeysAreAnError() throws IOException {
        String e = error(MODEL + TRAIN + "  steps: 20\n");
        assertTrue(e.contains("duplicate key 'steps' at line"), e);
        e = error(MODEL + TRAIN + "train:\n  steps: 3\n");
        assertTrue(e.contains("duplicate key 'train'"), e);
    }

    @Test
    void defaultsAndOverrides() throws IOException {
        RunConfig c = ConfigLoader.load(write(MODEL + TRAIN), List.of("optimizer.lr=1e-3", "train.recompute=true", "parallel.tp=2"));
        assertEquals(1e-3, c.optimizer().lr());
        assertEquals(dev.midtrain.config.TrainConfig.Recompute.FULL, c.train().recompute());
        assertEquals(2, c.parallel().tp());
        assertEquals(0.95, c.optimizer().beta2(), "from defaults.yaml");
        assertEquals(List.of("norm"), c.optimizer().weightDecayExclude());
        assertNull(c.data(), "absent optional section");
        RunConfig modelOnly = ConfigLoader.load(write(MODEL), List.of());
        assertNull(modelOnly.train());
        assertNull(modelOnly.optimizer());
    }

    @Test
    void globalBatchInTokens() throws IOException {
        RunConfig c = ConfigLoader.load(write(MODEL + TRAIN.replace("global_batch_seqs: 4", "global_batch_tokens: 128")), List.of());
        assertEquals(4, c.train().globalBatchSeqs());
        assertTrue(error(MODEL + TRAIN.replace("global_batch_seqs: 4", "global_batch_tokens: 100")).contains("train.global_batch_tokens"));
        assertTrue(error(MODEL + TRAIN, "train.global_batch_tokens=128").contains("not both"));
    }

    @Test
    void badInputNamesTheField() throws IOException {
        assertTrue(error(MODEL.replace("n_kv_heads: 2", "n_kv_heads: 3") + TRAIN).contains("model.n_kv_heads"));
        assertTrue(error(MODEL + TRAIN + "  bogus: 1\n").contains("unknown field train.bogus"));
        assertTrue(error(MODEL.replace("dim: 64", "dim: wide") + TRAIN).contains("model.dim"));
        assertTrue(error(MODEL.replace("  ffn_dim: 100\n", "") + TRAIN).contains("ffn_dim"));
        assertTrue(error(MODEL + TRAIN, "optimizer.lr=-1").contains("optimizer.lr"));
        assertTrue(error(MODEL + TRAIN, "train.seq_len=128").contains("train.seq_len"), "seq_len above max_seq_len");
        assertTrue(error(MODEL + TRAIN, "train.global_batch_seqs=5").contains("train.global_batch_seqs"));
        assertTrue(error(MODEL + TRAIN, "diagnostics.every_steps=-1").contains("diagnostics.every_steps"));
        assertTrue(error(MODEL + TRAIN, "optimizer.schedule=step").contains("optimizer.schedule"));
        assertTrue(error(MODEL + TRAIN, "optimizer.wsd_decay_fraction=0").contains("optimizer.wsd_decay_fraction"));
        assertTrue(error(MODEL + TRAIN, "nokey").contains("key=value"));
        assertTrue(error("model: [1, 2\n").contains("malformed YAML"));
        UserError missing = assertThrows(UserError.class, () -> ConfigLoader.load(dir.resolve("missing.yaml"), List.of()));
        assertEquals(dir.resolve("missing.yaml") + ": config file not found", missing.getMessage());
    }

    /**
     * Defaults are written once, in defaults.yaml: a config built in code (TrainConfig.builder, a RunConfig without
     * its optional sections, OptimConfig without weight_decay_exclude) gets exactly what the YAML loader gives a file
     * that leaves those fields out.
     */
    @Test
    void codeBuiltConfigsTakeTheDefaultsOfDefaultsYaml() throws IOException {
        RunConfig loaded = ConfigLoader.load(write(MODEL + TRAIN), List.of());
        TrainConfig t = loaded.train();
        assertEquals(t, TrainConfig.builder(t.seqLen(), t.microBatchSeqs(), t.globalBatchSeqs(), t.steps()).build());
        RunConfig built = new RunConfig(loaded.model(), null, null, null, null, null);
        assertEquals(loaded.checkpoint(), built.checkpoint());
        assertEquals(loaded.parallel(), built.parallel());
        assertEquals(loaded.eval(), built.eval());
        RunConfig withOptim = ConfigLoader.load(write(MODEL + TRAIN + "optimizer: {lr: 1.0e-3}\n"), List.of());
        assertEquals(withOptim.optimizer().weightDecayExclude(), OptimConfig.defaultWeightDecayExclude());
        // a builder's bad value is the record's own one-line error naming the field
        Check.ConfigException e = assertThrows(Check.ConfigException.class, () -> TrainConfig.builder(8, 1, 1, 1).threads(-1).build());
        assertTrue(e.getMessage().startsWith("train.threads"), e.getMessage());
    }
}
