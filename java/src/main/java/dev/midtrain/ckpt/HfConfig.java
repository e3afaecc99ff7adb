package dev.midtrain.ckpt;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.RopeScaling;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Hugging Face {@code config.json} of a Llama checkpoint, mapped to and from {@link ModelConfig}:
 * <pre>
 * num_hidden_layers   n_layers        hidden_size        dim          num_attention_heads  n_heads
 * num_key_value_heads n_kv_heads      intermediate_size  ffn_dim      vocab_size           vocab_size
 * rope_theta          rope_theta      rms_norm_eps       norm_eps     tie_word_embeddings  tied_embeddings
 * rope_scaling        rope_scaling    (null, or rope_type llama3 with factor, low/high_freq_factor, original_max_position_embeddings)
 * max_position_embeddings  max_seq_len (informational: not validated)
 * </pre>
 * Absent fields take transformers' LlamaConfig defaults (num_key_value_heads = num_attention_heads,
 * rope_theta 10000, rms_norm_eps 1e-6, tie_word_embeddings false).
 */
public final class HfConfig {
    private HfConfig() {}

    static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(SerializationFeature.INDENT_OUTPUT);

    public static JsonNode read(Path file) {
        try {
            JsonNode n = JSON.readTree(Files.readString(file));
            if (n == null || !n.isObject()) throw new UserError(file + ": not a JSON object");
            return n;
        } catch (NoSuchFileException e) {
            throw new UserError(file + ": not found (a Hugging Face checkpoint directory needs config.json)");
        } catch (JsonProcessingException e) {
            throw new UserError(file + ": malformed JSON at line " + e.getLocation().getLineNr() + ": " + e.getOriginalMessage().split("\n")[0]);
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage(), e);
        }
    }

    /**
     * Every difference between a config.json and the run's model config, one entry per field
     * ("num_hidden_layers 32 != model.n_layers 4"), plus features the engine does not implement
     * (rope_scaling other than llama3, biases, an activation other than silu). Empty when the checkpoint fits.
     */
    public static List<String> mismatches(JsonNode hf, ModelConfig m) {
        List<String> out = new ArrayList<>();
        JsonNode nh = hf.get("num_attention_heads");
        int heads = nh != null && nh.canConvertToExactIntegral() ? nh.asInt() : -1;   // num_key_value_heads defaults to it
        cmpInt(out, hf, "num_hidden_layers", -1, "model.n_layers", m.nLayers());
        cmpInt(out, hf, "hidden_size", -1, "model.dim", m.dim());
        cmpInt(out, hf, "num_attention_heads", -1, "model.n_heads", m.nHeads());
        cmpInt(out, hf, "num_key_value_heads", heads, "model.n_kv_heads", m.nKvHeads());
        cmpInt(out, hf, "intermediate_size", -1, "model.ffn_dim", m.ffnDim());
        cmpInt(out, hf, "vocab_size", -1, "model.vocab_size", m.vocabSize());
        cmpDouble(out, hf, "rope_theta", 10000.0, "model.rope_theta", m.ropeTheta());
        cmpDouble(out, hf, "rms_norm_eps", 1e-6, "model.norm_eps", m.normEps());
        JsonNode tie = hf.get("tie_word_embeddings");
        boolean tied = tie != null && !tie.isNull() && tie.asBoolean();
        if (tie != null && !tie.isNull() && !tie.isBoolean()) out.add("tie_word_embeddings " + tie + " is not a boolean");
        else if (tied != m.tiedEmbeddings()) out.add("tie_word_embeddings " + tied + " != model.tied_embeddings " + m.tiedEmbeddings());
        // features the engine does not implement: refusing is better than training a different model
        JsonNode hd = hf.get("head_dim");
        if (hd != null && !hd.isNull() && hd.asInt() != m.headDim())
            out.add("head_dim " + hd + " != model.dim/model.n_heads " + m.headDim());
        ropeScalingMismatch(hf.get("rope_scaling"), m.ropeScaling(), out);
        for (String bias : List.of("attention_bias", "mlp_bias")) {
            JsonNode b = hf.get(bias);
            if (b != null && b.asBoolean(false)) out.add(bias + " true is not supported (Llama has no biases)");
        }
        JsonNode act = hf.get("hidden_act");
        if (act != null && !act.isNull() && !act.asText().equals("silu")) out.add("hidden_act " + act.asText() + " is not supported (only silu)");
        JsonNode type = hf.get("model_type");
        if (type != null && !type.isNull() && !type.asText().equals("llama")) out.add("model_type " + type.asText() + " is not llama");
        return out;
    }

    /**
     * rope_scaling of config.json against model.rope_scaling: absent, null or rope_type "default" is plain RoPE;
     * "llama3" must match field by field; any other type (linear, dynamic, yarn...) is not implemented.
     */
    private static void ropeScalingMismatch(JsonNode rs, RopeScaling ours, List<String> out) {
        String type = rs == null || rs.isNull() ? "default" : rs.isObject() ? rs.path("rope_type").asText(rs.path("type").asText("")) : "";
        if (type.equals("default")) {
            if (ours != null) out.add("rope_scaling null != model.rope_scaling " + describe(ours));
            return;
        }
        if (!type.equals(RopeScaling.LLAMA3)) {
            out.add("rope_scaling " + rs + " is not supported (the engine implements plain RoPE and rope_type llama3)");
            return;
        }
        if (ours == null) {
            out.add("rope_scaling " + rs + " != model.rope_scaling null (set model.rope_scaling to the checkpoint's values)");
            return;
        }
        String[] keys = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
        double[] want = {ours.factor(), ours.lowFreqFactor(), ours.highFreqFactor(), ours.originalMaxPositionEmbeddings()};
        for (int i = 0; i < keys.length; i++) {
            JsonNode v = rs.get(keys[i]);
            if (v == null || !v.isNumber()) out.add("rope_scaling." + keys[i] + " " + v + " is missing or not a number");
            else if (v.asDouble() != want[i]) out.add("rope_scaling." + keys[i] + " " + v.asDouble() + " != model.rope_scaling." + keys[i] + " " + want[i]);
        }
    }

    private static String describe(RopeScaling r) {
        return "{rope_type: " + r.ropeType() + ", factor: " + r.factor() + ", low_freq_factor: " + r.lowFreqFactor() + ", high_freq_factor: "
                + r.highFreqFactor() + ", original_max_position_embeddings: " + r.originalMaxPositionEmbeddings() + "}";
    }

    /** rope_scaling as Hugging Face writes it (keys sorted), or JSON null for plain RoPE. */
    static JsonNode ropeScalingJson(RopeScaling r) {
        if (r == null) return JsonNodeFactory.instance.nullNode();
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.put("factor", r.factor());
        o.put("high_freq_factor", r.highFreqFactor());
        o.put("low_freq_factor", r.lowFreqFactor());
        o.put("original_max_position_embeddings", r.originalMaxPositionEmbeddings());
        o.put("rope_type", r.ropeType());
        return o;
    }

    /** Throws a one-line {@link UserError} naming the file and every mismatching field. */
    public static void validate(Path file, JsonNode hf, ModelConfig m) {
        List<String> mm = mismatches(hf, m);
        if (!mm.isEmpty())
            throw new UserError(file + ": checkpoint does not match the run's model config: " + String.join("; ", mm));
    }

    /**
     * A complete LlamaForCausalLM config.json for {@code m}. Fields of {@code base} (the config.json the run was
     * initialized from, may be null) are kept where they do not describe the shape (token ids, rope_scaling...);
     * the shape fields and torch_dtype are always ours.
     */
    public static ObjectNode toJson(ModelConfig m, String torchDtype, JsonNode base) {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.putArray("architectures").add("LlamaForCausalLM");
        o.put("attention_bias", false);
        o.put("attention_dropout", 0.0);
        boolean llama3Vocab = m.vocabSize() == 128256;
        if (llama3Vocab) {
            o.put("bos_token_id", 128000);
            o.put("eos_token_id", 128001);
        }
        o.put("head_dim", m.headDim());
        o.put("hidden_act", "silu");
        o.put("hidden_size", m.dim());
        o.put("initializer_range", 0.02);
        o.put("intermediate_size", m.ffnDim());
        o.put("max_position_embeddings", m.maxSeqLen());
        o.put("mlp_bias", false);
        o.put("model_type", "llama");
        o.put("num_attention_heads", m.nHeads());
        o.put("num_hidden_layers", m.nLayers());
        o.put("num_key_value_heads", m.nKvHeads());
        o.put("pretraining_tp", 1);
        o.put("rms_norm_eps", m.normEps());
        o.set("rope_scaling", ropeScalingJson(m.ropeScaling()));
        o.put("rope_theta", m.ropeTheta());
        o.put("tie_word_embeddings", m.tiedEmbeddings());
        o.put("torch_dtype", torchDtype);
        o.put("transformers_version", "4.44.0");
        o.put("use_cache", true);
        o.put("vocab_size", m.vocabSize());
        if (base != null && base.isObject()) {
            List<String> ours = List.of("architectures", "head_dim", "hidden_size", "intermediate_size", "num_attention_heads",
                    "num_hidden_layers", "num_key_value_heads", "rms_norm_eps", "rope_scaling", "rope_theta", "tie_word_embeddings", "torch_dtype",
                    "vocab_size", "model_type", "hidden_act", "attention_bias", "mlp_bias");
            ObjectNode merged = ((ObjectNode) base).deepCopy();
            o.fields().forEachRemaining(e -> { if (ours.contains(e.getKey()) || !merged.has(e.getKey())) merged.set(e.getKey(), e.getValue()); });
            return sorted(merged);
        }
        return o;
    }

    private static ObjectNode sorted(ObjectNode n) {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        List<String> keys = new ArrayList<>();
        n.fieldNames().forEachRemaining(keys::add);
        keys.sort(null);
        for (String k : keys) o.set(k, n.get(k));
        return o;
    }

    public static String toText(JsonNode n) {
        try {
            return JSON.writeValueAsString(n) + "\n";
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void cmpInt(List<String> out, JsonNode hf, String key, int dflt, String ours, int expected) {
        JsonNode v = hf.get(key);
        if (v == null || v.isNull()) {
            if (dflt < 0) out.add(key + " missing (model has " + ours + " " + expected + ")");
            else if (dflt != expected) out.add(key + " " + dflt + " (default) != " + ours + " " + expected);
            return;
        }
        if (!v.isIntegralNumber()) { out.add(key + " " + v + " is not an integer"); return; }
        if (v.asLong() != expected) out.add(key + " " + v.asLong() + " != " + ours + " " + expected);
    }

    private static void cmpDouble(List<String> out, JsonNode hf, String key, double dflt, String ours, double expected) {
        JsonNode v = hf.get(key);
        double got;
        if (v == null || v.isNull()) got = dflt;
        else if (!v.isNumber()) { out.add(key + " " + v + " is not a number"); return; }
        else got = v.asDouble();
        if (got != expected) out.add(key + " " + got + (v == null || v.isNull() ? " (default)" : "") + " != " + ours + " " + expected);
    }
}
