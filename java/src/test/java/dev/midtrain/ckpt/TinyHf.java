package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.AtomicFiles;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.config.ModelConfig;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Writes small Hugging Face Llama checkpoints for tests, independently of the engine's ParamLayout and exporter:
 * the tensor list and shapes below are spelled out from the HF LlamaForCausalLM state dict.
 */
final class TinyHf {
    private TinyHf() {}

    /** HF state-dict names and shapes of {@code m}, in transformers' order. */
    static Map<String, long[]> shapes(ModelConfig m) {
        Map<String, long[]> s = new LinkedHashMap<>();
        long C = m.dim(), hd = m.dim() / m.nHeads(), F = m.ffnDim();
        s.put("model.embed_tokens.weight", new long[]{m.vocabSize(), C});
        for (int i = 0; i < m.nLayers(); i++) {
            String p = "model.layers." + i + ".";
            s.put(p + "self_attn.q_proj.weight", new long[]{m.nHeads() * hd, C});
            s.put(p + "self_attn.k_proj.weight", new long[]{m.nKvHeads() * hd, C});
            s.put(p + "self_attn.v_proj.weight", new long[]{m.nKvHeads() * hd, C});
            s.put(p + "self_attn.o_proj.weight", new long[]{C, m.nHeads() * hd});
            s.put(p + "mlp.gate_proj.weight", new long[]{F, C});
            s.put(p + "mlp.up_proj.weight", new long[]{F, C});
            s.put(p + "mlp.down_proj.weight", new long[]{C, F});
            s.put(p + "input_layernorm.weight", new long[]{C});
            s.put(p + "post_attention_layernorm.weight", new long[]{C});
        }
        s.put("model.norm.weight", new long[]{C});
        if (!m.tiedEmbeddings()) s.put("lm_head.weight", new long[]{m.vocabSize(), C});
        return s;
    }

    static ObjectNode config(ModelConfig m) {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.putArray("architectures").add("LlamaForCausalLM");
        o.put("model_type", "llama");
        o.put("hidden_act", "silu");
        o.put("num_hidden_layers", m.nLayers());
        o.put("hidden_size", m.dim());
        o.put("num_attention_heads", m.nHeads());
        o.put("num_key_value_heads", m.nKvHeads());
        o.put("intermediate_size", m.ffnDim());
        o.put("vocab_size", m.vocabSize());
        o.put("rope_theta", m.ropeTheta());
        o.put("rms_norm_eps", m.normEps());
        o.put("tie_word_embeddings", m.tiedEmbeddings());
        o.put("max_position_embeddings", m.maxSeqLen());
        o.put("bos_token_id", 1);
        o.put("eos_token_id", 2);
        if (m.ropeScaling() == null) o.putNull("rope_scaling");
        else {                                  // as meta-llama/Llama-3.2-1B's config.json spells it
            ObjectNode rs = o.putObject("rope_scaling");
            rs.put("factor", m.ropeScaling().factor());
            rs.put("high_freq_factor", m.ropeScaling().highFreqFactor());
            rs.put("low_freq_factor", m.ropeScaling().lowFreqFactor());
            rs.put("original_max_position_embeddings", m.ropeScaling().originalMaxPositionEmbeddings());
            rs.put("rope_type", "llama3");
        }
        return o;
    }

    /**
     * Writes random weights stored as {@code dt}; shards of at most {@code shardBytes} (0: one model.safetensors).
     * Returns the values as stored (after rounding to dt), by name.
     */
    static Map<String, float[]> write(Path dir, ModelConfig m, DType dt, long shardBytes, long seed) throws IOException {
        Files.createDirectories(dir);
        SplittableRandom rnd = new SplittableRandom(seed);
        Map<String, float[]> values = new LinkedHashMap<>();
        List<List<Safetensors.OutTensor>> shards = new ArrayList<>();
        List<Safetensors.OutTensor> cur = new ArrayList<>();
        long curBytes = 0;
        for (var e : shapes(m).entrySet()) {
            long n = 1;
            for (long d : e.getValue()) n *= d;
            float[] v = new float[(int) n];
            for (int i = 0; i < n; i++) v[i] = SafetensorsTest.stored(dt, (float) (rnd.nextGaussian() * 0.1 + (e.getKey().contains("norm") ? 1 : 0)));
            values.put(e.getKey(), v);
            var ot = Safetensors.OutTensor.of(e.getKey(), dt, e.getValue(), HostFloats.wrap(v), 0);
            if (shardBytes > 0 && !cur.isEmpty() && curBytes + ot.nbytes() > shardBytes) { shards.add(cur); cur = new ArrayList<>(); curBytes = 0; }
            cur.add(ot);
            curBytes += ot.nbytes();
        }
        shards.add(cur);
        Files.writeString(dir.resolve("config.json"), HfConfig.toText(config(m)));
        if (shardBytes <= 0) {
            AtomicFiles.write(dir.resolve("model.safetensors"), ch -> Safetensors.write(ch, shards.get(0), Map.of("format", "pt")));
            return values;
        }
        ObjectNode index = JsonNodeFactory.instance.objectNode();
        index.putObject("metadata").put("total_size", 0);
        ObjectNode wm = index.putObject("weight_map");
        for (int i = 0; i < shards.size(); i++) {
            String f = String.format("model-%05d-of-%05d.safetensors", i + 1, shards.size());
            var list = shards.get(i);
            AtomicFiles.write(dir.resolve(f), ch -> Safetensors.write(ch, list, Map.of("format", "pt")));
            for (var ot : list) wm.put(ot.name(), f);
        }
        Files.writeString(dir.resolve("model.safetensors.index.json"), HfConfig.toText(index));
        return values;
    }

    /**
     * Reference tensor-parallel slice of a full HF tensor for rank r of tp, from first principles: vocab, q, gate,
     * up split by rows; k, v split by KV heads (a head replicated over tp/NKV ranks when tp > NKV); o and down
     * split by columns; norms whole.
     */
    static float[] slice(ModelConfig m, String name, long[] shape, float[] full, int tp, int r) {
        if (name.contains("norm")) return full.clone();
        int R = (int) shape[0], C = (int) shape[1];
        if (name.contains("o_proj") || name.contains("down_proj")) {
            int w = C / tp;
            float[] out = new float[R * w];
            for (int i = 0; i < R; i++) System.arraycopy(full, i * C + r * w, out, i * w, w);
            return out;
        }
        int row0, rows;
        if (name.contains("k_proj") || name.contains("v_proj")) {
            int hd = m.dim() / m.nHeads();
            if (tp <= m.nKvHeads()) { rows = R / tp; row0 = r * rows; }
            else { int head = r / (tp / m.nKvHeads()); rows = hd; row0 = head * hd; }
        } else { rows = R / tp; row0 = r * rows; }
        float[] out = new float[rows * C];
        System.arraycopy(full, row0 * C, out, 0, rows * C);
        return out;
    }
}
