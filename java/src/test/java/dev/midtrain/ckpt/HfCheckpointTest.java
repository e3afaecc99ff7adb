package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.AtomicFiles;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.model.ParamLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

class HfCheckpointTest {
    @TempDir Path tmp;

    /** NKV = 2 so tp 4 replicates KV heads; sizes are not multiples of 8; vocab 12 divides by 1, 2, 4. */
    static final ModelConfig M = new ModelConfig(12, 8, 2, 4, 2, 12, 500000.0, 1e-5, 16, false);
    static final ModelConfig TIED = new ModelConfig(12, 8, 1, 4, 4, 4, 10000.0, 1e-6, 16, true);

    static void assertLoaded(ModelConfig m, Map<String, float[]> values, Path dir, int tp) {
        Map<String, long[]> shapes = TinyHf.shapes(m);
        try (HfCheckpoint ck = HfCheckpoint.open(dir)) {
            ck.validate(m);
            for (int r = 0; r < tp; r++) {
                ParamLayout l = ParamLayout.of(m, tp, r, List.of("norm"));
                float[] slab = new float[(int) l.numel()];
                Arrays.fill(slab, Float.NaN);   // poison: unwritten elements fail
                ck.loadInto(l, HostFloats.wrap(slab));
                for (ParamLayout.Tensor t : l.tensors()) {
                    float[] want = TinyHf.slice(m, t.name(), shapes.get(t.name()), values.get(t.name()), tp, r);
                    float[] got = Arrays.copyOfRange(slab, (int) t.offset(), (int) (t.offset() + t.numel()));
                    assertArrayEquals(want, got, 0f, "tp " + tp + " rank " + r + " " + t.name());
                }
            }
        }
    }

    @Test
    void loadsSingleAndShardedInEveryDtypeForEveryTpRank() throws IOException {
        int k = 0;
        for (DType dt : new DType[]{DType.BF16, DType.F16, DType.F32})
            for (long shard : new long[]{0, 700}) {   // 700 bytes: several shards, some holding one tensor
                Path dir = tmp.resolve("hf" + k++);
                Map<String, float[]> v = TinyHf.write(dir, M, dt, shard, 42 + k);
                if (shard > 0) assertTrue(Files.exists(dir.resolve(HfCheckpoint.INDEX)));
                for (int tp : new int[]{1, 2, 4}) assertLoaded(M, v, dir, tp);
            }
        Path tied = tmp.resolve("tied");
        assertLoaded(TIED, TinyHf.write(tied, TIED, DType.BF16, 0, 5), tied, 2);
    }

    @Test
    void configMismatchNamesEveryField() throws IOException {
        Path dir = tmp.resolve("hf");
        TinyHf.write(dir, M, DType.BF16, 0, 1);
        ObjectNode cfg = (ObjectNode) HfConfig.read(dir.resolve("config.json"));
        cfg.put("num_hidden_layers", 3).put("hidden_size", 16).put("rope_theta", 10000.0).put("tie_word_embeddings", true)
                .put("rms_norm_eps", 1e-6).put("num_key_value_heads", 4).put("intermediate_size", 14).put("vocab_size", 128256)
                .put("num_attention_heads", 8);
        cfg.putObject("rope_scaling").put("rope_type", "llama3").put("factor", 8.0).put("low_freq_factor", 1.0).put("high_freq_factor", 4.0)
                .put("original_max_position_embeddings", 8192);
        Files.writeString(dir.resolve("config.json"), HfConfig.toText(cfg));
        try (HfCheckpoint ck = HfCheckpoint.open(dir)) {
            UserError e = assertThrows(UserError.class, () -> ck.validate(M));
            String m = e.getMessage();
            assertFalse(m.contains("\n"), "one line: " + m);
            assertTrue(m.startsWith(dir.resolve("config.json") + ": "), m);
            for (String f : List.of("num_hidden_layers 3 != model.n_layers 2", "hidden_size 16 != model.dim 8", "num_attention_heads 8 != model.n_heads 4",
                    "num_key_value_heads 4 != model.n_kv_heads 2", "intermediate_size 14 != model.ffn_dim 12", "vocab_size 128256 != model.vocab_size 12",
                    "rope_theta 10000.0 != model.rope_theta 500000.0", "rms_norm_eps 1.0E-6 != model.norm_eps 1.0E-5",
                    "tie_word_embeddings true != model.tied_embeddings false", "rope_scaling"))
                assertTrue(m.contains(f), "mentions '" + f + "': " + m);
        }
        // absent optional fields take transformers' defaults
        cfg = TinyHf.config(M);
        cfg.remove("num_key_value_heads");
        cfg.remove("rope_theta");
        List<String> mm = HfConfig.mismatches(cfg, M);
        assertEquals(2, mm.size(), mm.toString());
        assertTrue(mm.get(0).contains("num_key_value_heads 4 != model.n_kv_heads 2"), mm.toString());    // defaults to num_attention_heads
        assertTrue(mm.get(1).contains("rope_theta 10000.0 != model.rope_theta 500000.0"), mm.toString());  // transformers' default
        // a malformed llama3 rope_scaling is refused naming the field, never defaulted
        ObjectNode bad = TinyHf.config(M);
        bad.putObject("rope_scaling").put("rope_type", "llama3");
        Files.writeString(dir.resolve("config.json"), HfConfig.toText(bad));
        UserError e = assertThrows(UserError.class, () -> HfConfig.modelConfig(dir.resolve("config.json")));
        assertTrue(e.getMessage().startsWith(dir.resolve("config.json") + ": rope_scaling.factor"), e.getMessage());
        assertTrue(HfConfig.mismatches(TinyHf.config(M), M).isEmpty());
    }

    @Test
    void structuralProblemsNameFileAndTensor() throws IOException {
        Path dir = tmp.resolve("hf");
        TinyHf.write(dir, M, DType.BF16, 700, 1);
        ParamLayout l = ParamLayout.of(M);
        // index lists a tensor its shard lacks
        Path idx = dir.resolve(HfCheckpoint.INDEX);
        ObjectNode index = (ObjectNode) HfConfig.read(idx);
        String shard = index.get("weight_map").get("model.norm.weight").asText();
        ((ObjectNode) index.get("weight_map")).put("model.extra.weight", shard);
        Files.writeString(idx, HfConfig.toText(index));
        UserError e = assertThrows(UserError.class, () -> HfCheckpoint.open(dir));
        assertTrue(e.getMessage().contains(shard) && e.getMessage().contains("model.extra.weight"), e.getMessage());
        ((ObjectNode) index.get("weight_map")).remove("model.extra.weight");
        // index without a tensor: reported missing
        ((ObjectNode) index.get("weight_map")).remove("model.layers.1.mlp.up_proj.weight");
        Files.writeString(idx, HfConfig.toText(index));
        try (HfCheckpoint ck = HfCheckpoint.open(dir)) {
            e = assertThrows(UserError.class, () -> ck.loadInto(l, HostFloats.wrap(new float[(int) l.numel()])));
            assertTrue(e.getMessage().contains("model.layers.1.mlp.up_proj.weight") && e.getMessage().contains("missing"), e.getMessage());
        }
        // a shape that does not fit the config
        Path one = tmp.resolve("one");
        TinyHf.write(one, new ModelConfig(12, 8, 2, 4, 2, 16, 500000.0, 1e-5, 16, false), DType.F32, 0, 2);
        try (HfCheckpoint ck = HfCheckpoint.open(one)) {
            e = assertThrows(UserError.class, () -> ck.loadInto(l, HostFloats.wrap(new float[(int) l.numel()])));
            assertTrue(e.getMessage().contains("model.safetensors: tensor model.layers.0.mlp.gate_proj.weight: shape [16, 8]"), e.getMessage());
        }
        // no weights at all
        Path empty = tmp.resolve("empty");
        Files.createDirectories(empty);
        Files.writeString(empty.resolve("config.json"), HfConfig.toText(TinyHf.config(M)));
        e = assertThrows(UserError.class, () -> HfCheckpoint.open(empty));
        assertTrue(e.getMessage().contains("no model.safetensors"), e.getMessage());
        // malformed config.json
        Files.writeString(empty.resolve("config.json"), "{\"hidden_size\": 8,");
        e = assertThrows(UserError.class, () -> HfCheckpoint.open(empty));
        assertTrue(e.getMessage().contains("config.json: malformed JSON"), e.getMessage());
    }

    @Test
    void corruptWeightsAndExtraTensorsAreRefused() throws IOException {
        Path dir = tmp.resolve("hf");
        TinyHf.write(dir, M, DType.F32, 0, 3);
        Path f = dir.resolve("model.safetensors");
        byte[] b = Files.readAllBytes(f);
        // NaN bit pattern into the last tensor's last element (the file stays structurally valid)
        b[b.length - 1] = (byte) 0x7f; b[b.length - 2] = (byte) 0xc0; b[b.length - 3] = 0; b[b.length - 4] = 0;
        Files.write(f, b);
        ParamLayout l = ParamLayout.of(M);
        try (HfCheckpoint ck = HfCheckpoint.open(dir)) {
            UserError e = assertThrows(UserError.class, () -> ck.loadInto(l, HostFloats.wrap(new float[(int) l.numel()])));
            assertTrue(e.getMessage().contains(f.toString()) && e.getMessage().contains("non-finite"), e.getMessage());
        }
        // a bias tensor Llama does not have: refused instead of silently ignored
        Path dir2 = tmp.resolve("hf2");
        Map<String, float[]> v = TinyHf.write(dir2, M, DType.F32, 0, 3);
        var ts = new java.util.ArrayList<Safetensors.OutTensor>();
        for (var e : TinyHf.shapes(M).entrySet()) ts.add(Safetensors.OutTensor.of(e.getKey(), DType.F32, e.getValue(), HostFloats.wrap(v.get(e.getKey())), 0));
        ts.add(Safetensors.OutTensor.of("model.layers.0.self_attn.q_proj.bias", DType.F32, new long[]{8}, HostFloats.wrap(new float[8]), 0));
        AtomicFiles.write(dir2.resolve("model.safetensors"), ch -> Safetensors.write(ch, ts, null));
        try (HfCheckpoint ck = HfCheckpoint.open(dir2)) {
            UserError e = assertThrows(UserError.class, () -> ck.loadInto(l, HostFloats.wrap(new float[(int) l.numel()])));
            assertTrue(e.getMessage().contains("q_proj.bias"), e.getMessage());
        }
    }

    /** HF (fp32) -> engine slabs -> exported HF: bit-identical tensors, a config that validates, index complete. */
    @Test
    void exportRoundTripIsBitIdentical() throws IOException {
        Path src = tmp.resolve("src");
        Map<String, float[]> v = TinyHf.write(src, M, DType.F32, 900, 9);
        ParamLayout l = ParamLayout.of(M);
        HostFloats slab = HostFloats.allocate(l.numel());
        JsonNode srcCfg;
        try (HfCheckpoint ck = HfCheckpoint.open(src)) {
            ck.loadInto(l, slab);
            srcCfg = ck.config();
        }
        Path out = tmp.resolve("out");
        var ex = HfCheckpoint.export(M, srcCfg, t -> new Safetensors.Source(slab, l.get(t.name()).offset(), false), out, DType.F32, 1000);
        assertTrue(ex.files().size() > 3, "sharded: " + ex.files());
        assertSameTensors(v, out, DType.F32);
        JsonNode cfg = HfConfig.read(out.resolve("config.json"));
        assertTrue(HfConfig.mismatches(cfg, M).isEmpty());
        assertEquals("LlamaForCausalLM", cfg.get("architectures").get(0).asText());
        assertEquals("float32", cfg.get("torch_dtype").asText());
        assertEquals(1, cfg.get("bos_token_id").asInt(), "non-shape fields of the source config are kept");
        JsonNode index = HfConfig.read(out.resolve(HfCheckpoint.INDEX));
        long total = 0;
        for (var e : TinyHf.shapes(M).entrySet()) total += 4L * Arrays.stream(e.getValue()).reduce(1, (a, c) -> a * c);
        assertEquals(total, index.get("metadata").get("total_size").asLong());
        assertEquals(TinyHf.shapes(M).size(), index.get("weight_map").size());
        // bf16 export: each value is the round-to-nearest-even bf16 of the master weight
        Path outBf = tmp.resolve("outbf");
        HfCheckpoint.export(M, null, t -> new Safetensors.Source(slab, l.get(t.name()).offset(), false), outBf, DType.BF16, HfCheckpoint.DEFAULT_MAX_SHARD_BYTES);
        assertTrue(Files.exists(outBf.resolve("model-00001-of-00001.safetensors")));
        assertEquals("bfloat16", HfConfig.read(outBf.resolve("config.json")).get("torch_dtype").asText());
        Map<String, float[]> rounded = new java.util.LinkedHashMap<>();
        v.forEach((k, a) -> { float[] r = a.clone(); for (int i = 0; i < r.length; i++) r[i] = SafetensorsTest.stored(DType.BF16, r[i]); rounded.put(k, r); });
        assertSameTensors(rounded, outBf, DType.BF16);
        // refuses to overwrite
        UserError e = assertThrows(UserError.class, () -> HfCheckpoint.export(M, null, t -> new Safetensors.Source(slab, 0, false), out, DType.F32, 1000));
        assertTrue(e.getMessage().contains("not empty"), e.getMessage());
        slab.close();
    }

    static void assertSameTensors(Map<String, float[]> want, Path dir, DType dt) {
        try (HfCheckpoint ck = HfCheckpoint.open(dir)) {
            assertEquals(want.keySet(), ck.tensors().keySet());
            for (var e : want.entrySet()) {
                Shards.Ref ref = ck.tensors().get(e.getKey());
                assertEquals(dt, ref.info().dtype());
                float[] got = new float[e.getValue().length];
                ref.reader().readF32(ref.info(), 0, got.length, HostFloats.wrap(got), 0);
                for (int i = 0; i < got.length; i++)
                    assertEquals(Float.floatToRawIntBits(e.getValue()[i]), Float.floatToRawIntBits(got[i]), e.getKey() + "[" + i + "]");
            }
        }
    }
}
