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
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Hugging Face {@code config.json} of a Llama checkpoint, read into and written from {@link ModelConfig} in both
 * transformers layouts ({@link Layout}):
 * <pre>
 * num_hidden_layers   n_layers        hidden_size        dim          num_attention_heads  n_heads
 * num_key_value_heads n_kv_heads      intermediate_size  ffn_dim      vocab_size           vocab_size
 * rms_norm_eps        norm_eps        tie_word_embeddings tied_embeddings  max_position_embeddings  max_seq_len
 * 4.x: rope_theta     rope_theta      rope_scaling       rope_scaling (null, or rope_type llama3 with factor,
 *                                                        low/high_freq_factor, original_max_position_embeddings)
 * 5.x: rope_parameters {rope_type default|llama3, rope_theta, the llama3 fields}
 * 4.x: torch_dtype, 5.x: dtype   the dtype of the weights beside the file (not part of the model)
 * </pre>
 * This is the one place that maps config.json: {@link ModelSource} reads it for every command, and export writes it.
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
     * Which transformers layout a config.json has: 4.x writes RoPE as top-level {@code rope_theta} and
     * {@code rope_scaling} and the weights' dtype as {@code torch_dtype}; 5.x writes {@code rope_parameters}
     * ({@code {"rope_type": ..., "rope_theta": ..., scaling fields}}) and {@code dtype}.
     */
    public enum Layout {
        TRANSFORMERS_4, TRANSFORMERS_5;

        /** The layout of {@code j}: 5 when it has {@code rope_parameters}, or {@code dtype} without {@code torch_dtype}. */
        public static Layout of(JsonNode j) {
            if (j == null || !j.isObject()) return TRANSFORMERS_4;
            boolean rp = j.hasNonNull("rope_parameters"), dt = j.hasNonNull("dtype") && !j.hasNonNull("torch_dtype");
            return rp || dt ? TRANSFORMERS_5 : TRANSFORMERS_4;
        }
    }

    /**
     * Fields that do not change the model's math (identity, token ids, generation defaults, bookkeeping), accepted
     * with any value. Every other field is either read into the {@link ModelConfig} or refused: a field the engine
     * does not understand is never defaulted away.
     */
    static final Set<String> INERT = Set.of("architectures", "transformers_version", "torch_dtype", "dtype", "_name_or_path",
            "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id", "use_cache", "initializer_range",
            "pretraining_tp", "max_position_embeddings", "output_attentions", "output_hidden_states", "return_dict", "torchscript",
            "id2label", "label2id", "problem_type", "tokenizer_class", "prefix", "task_specific_params", "finetuning_task",
            "chunk_size_feed_forward", "tf_legacy_loss", "use_bfloat16", "pruned_heads", "is_decoder", "add_cross_attention",
            "tie_encoder_decoder", "cross_attention_hidden_size", "_attn_implementation_autoset", "attn_implementation",
            "bad_words_ids", "begin_suppress_tokens", "diversity_penalty", "do_sample", "early_stopping", "encoder_no_repeat_ngram_size",
            "exponential_decay_length_penalty", "forced_bos_token_id", "forced_eos_token_id", "length_penalty", "max_length",
            "min_length", "no_repeat_ngram_size", "num_beam_groups", "num_beams", "num_return_sequences", "output_scores",
            "remove_invalid_values", "repetition_penalty", "return_dict_in_generate", "suppress_tokens", "temperature", "top_k",
            "top_p", "typical_p", "output_router_logits", "is_encoder_decoder");
    /** Fields read into the ModelConfig (or checked to have the one value the engine implements). */
    static final Set<String> UNDERSTOOD = Set.of("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "intermediate_size", "rms_norm_eps", "tie_word_embeddings", "head_dim", "hidden_act",
            "attention_bias", "mlp_bias", "attention_dropout", "rope_theta", "rope_scaling", "rope_parameters");
    private static final Set<String> ROPE_KEYS = Set.of("rope_type", "type", "rope_theta", "factor", "low_freq_factor",
            "high_freq_factor", "original_max_position_embeddings");

    /**
     * The Llama {@link ModelConfig} of a config.json in either transformers layout ({@link Layout}). Refused with one
     * line naming {@code file} and the field: a missing shape field, a field the engine does not understand (not in
     * {@link #INERT} or {@link #UNDERSTOOD}), a feature it does not implement (biases, an activation other than silu,
     * a head_dim other than hidden_size / num_attention_heads, rope types other than default and llama3, attention
     * dropout), and the two layouts' RoPE fields disagreeing when both are present.
     * Absent optional fields take transformers' LlamaConfig defaults (num_key_value_heads = num_attention_heads,
     * rope_theta 10000, rms_norm_eps 1e-6, tie_word_embeddings false).
     */
    public static ModelConfig modelConfig(Path file, JsonNode j) {
        for (Iterator<Map.Entry<String, JsonNode>> it = j.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String k = e.getKey();
            if (!INERT.contains(k) && !UNDERSTOOD.contains(k) && !e.getValue().isNull())
                throw new UserError(file + ": field " + k + " is not understood by the engine (it may change the model's math; refusing rather than ignoring it)");
        }
        JsonNode type = j.get("model_type");
        if (type != null && !type.isNull() && !type.asText().equals("llama")) throw bad(file, "model_type", type + " is not llama");
        for (String bias : List.of("attention_bias", "mlp_bias")) {
            JsonNode b = j.get(bias);
            if (b != null && !b.isNull() && (!b.isBoolean() || b.asBoolean())) throw bad(file, bias, b + " is not supported (Llama has no biases)");
        }
        JsonNode act = j.get("hidden_act");
        if (act != null && !act.isNull() && !act.asText().equals("silu")) throw bad(file, "hidden_act", act + " is not supported (only silu)");
        JsonNode drop = j.get("attention_dropout");
        if (drop != null && !drop.isNull() && (!drop.isNumber() || drop.asDouble() != 0.0))
            throw bad(file, "attention_dropout", drop + " is not supported (the engine has no dropout)");
        int heads = reqInt(file, j, "num_attention_heads");
        int kv = optInt(file, j, "num_key_value_heads", heads);
        int dim = reqInt(file, j, "hidden_size");
        JsonNode hd = j.get("head_dim");
        if (hd != null && !hd.isNull() && (!hd.canConvertToExactIntegral() || heads <= 0 || hd.asInt() * heads != dim))
            throw bad(file, "head_dim", hd + " is not hidden_size / num_attention_heads = " + dim + "/" + heads + " (the engine ties them)");
        JsonNode tie = j.get("tie_word_embeddings");
        if (tie != null && !tie.isNull() && !tie.isBoolean()) throw bad(file, "tie_word_embeddings", tie + " is not a boolean");
        double[] theta = new double[1];
        RopeScaling rs = rope(file, j, theta);
        try {
            return new ModelConfig(reqInt(file, j, "vocab_size"), dim, reqInt(file, j, "num_hidden_layers"), heads, kv,
                    reqInt(file, j, "intermediate_size"), theta[0], optDouble(file, j, "rms_norm_eps", 1e-6),
                    reqInt(file, j, "max_position_embeddings"), tie != null && tie.asBoolean(false), rs);
        } catch (IllegalArgumentException e) {
            throw new UserError(file + ": " + e.getMessage());
        }
    }

    /** Reads {@code file} and returns its {@link #modelConfig(Path, JsonNode)}. */
    public static ModelConfig modelConfig(Path file) { return modelConfig(file, read(file)); }

    /**
     * RoPE theta (into {@code theta[0]}) and scaling of either layout: {@code rope_parameters} (5.x) or top-level
     * {@code rope_theta} / {@code rope_scaling} (4.x). When both are present they must agree.
     */
    private static RopeScaling rope(Path file, JsonNode j, double[] theta) {
        JsonNode rp = j.get("rope_parameters");
        double topTheta = optDouble(file, j, "rope_theta", Double.NaN);
        RopeScaling top = scaling(file, "rope_scaling", j.get("rope_scaling"));
        if (rp == null || rp.isNull()) {
            theta[0] = Double.isNaN(topTheta) ? 10000.0 : topTheta;
            return top;
        }
        if (!rp.isObject()) throw bad(file, "rope_parameters", rp + " is not an object");
        double t = optDouble(file, rp, "rope_theta", Double.NaN);
        if (Double.isNaN(t)) throw bad(file, "rope_parameters.rope_theta", "missing");
        RopeScaling s = scaling(file, "rope_parameters", rp);
        if (!Double.isNaN(topTheta) && topTheta != t)
            throw bad(file, "rope_theta", topTheta + " disagrees with rope_parameters.rope_theta " + t);
        JsonNode rsNode = j.get("rope_scaling");
        if (rsNode != null && !rsNode.isNull() && !java.util.Objects.equals(top, s))
            throw bad(file, "rope_scaling", rsNode + " disagrees with rope_parameters " + rp);
        theta[0] = t;
        return s;
    }

    /** A rope_scaling / rope_parameters object: null for plain RoPE (absent, null, rope_type default), or llama3. */
    private static RopeScaling scaling(Path file, String field, JsonNode rs) {
        if (rs == null || rs.isNull()) return null;
        if (!rs.isObject()) throw bad(file, field, rs + " is not an object");
        for (Iterator<Map.Entry<String, JsonNode>> it = rs.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!ROPE_KEYS.contains(e.getKey()) && !e.getValue().isNull())
                throw bad(file, field + "." + e.getKey(), "is not understood by the engine (it changes RoPE; refusing rather than ignoring it)");
        }
        String type = rs.path("rope_type").asText(rs.path("type").asText("default"));
        if (type.equals("default")) {
            for (String k : List.of("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"))
                if (rs.hasNonNull(k)) throw bad(file, field + "." + k, "is set but rope_type is default");
            return null;
        }
        if (!type.equals(RopeScaling.LLAMA3))
            throw bad(file, field + ".rope_type", type + " is not supported (the engine implements default and llama3)");
        String[] keys = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
        double[] v = new double[4];
        for (int i = 0; i < 4; i++) {
            JsonNode n = rs.get(keys[i]);
            if (n == null || !n.isNumber()) throw bad(file, field + "." + keys[i], n + " is missing or not a number");
            v[i] = n.asDouble();
        }
        if (v[3] != Math.rint(v[3])) throw bad(file, field + ".original_max_position_embeddings", v[3] + " is not an integer");
        try {
            return new RopeScaling(RopeScaling.LLAMA3, v[0], v[1], v[2], (int) v[3]);
        } catch (IllegalArgumentException e) {
            throw new UserError(file + ": " + field + ": " + e.getMessage());
        }
    }

    /**
     * Every difference between a checkpoint's model ({@code hf}, read by {@link #modelConfig}) and the run's
     * ({@code m}), one entry per field in config.json's names ("num_hidden_layers 32 != model.n_layers 4").
     * max_position_embeddings is informational and not compared. Empty when the checkpoint fits.
     */
    public static List<String> mismatches(ModelConfig hf, ModelConfig m) {
        List<String> out = new ArrayList<>();
        cmp(out, "num_hidden_layers", hf.nLayers(), "model.n_layers", m.nLayers());
        cmp(out, "hidden_size", hf.dim(), "model.dim", m.dim());
        cmp(out, "num_attention_heads", hf.nHeads(), "model.n_heads", m.nHeads());
        cmp(out, "num_key_value_heads", hf.nKvHeads(), "model.n_kv_heads", m.nKvHeads());
        cmp(out, "intermediate_size", hf.ffnDim(), "model.ffn_dim", m.ffnDim());
        cmp(out, "vocab_size", hf.vocabSize(), "model.vocab_size", m.vocabSize());
        cmp(out, "rope_theta", hf.ropeTheta(), "model.rope_theta", m.ropeTheta());
        cmp(out, "rms_norm_eps", hf.normEps(), "model.norm_eps", m.normEps());
        cmp(out, "tie_word_embeddings", hf.tiedEmbeddings(), "model.tied_embeddings", m.tiedEmbeddings());
        if (!java.util.Objects.equals(hf.ropeScaling(), m.ropeScaling()))
            out.add("rope_scaling " + describe(hf.ropeScaling()) + " != model.rope_scaling " + describe(m.ropeScaling()));
        return out;
    }

    /** {@link #mismatches(ModelConfig, ModelConfig)} of a config.json (read in either layout) against {@code m}. */
    public static List<String> mismatches(JsonNode hf, ModelConfig m) { return mismatches(modelConfig(Path.of("config.json"), hf), m); }

    private static void cmp(List<String> out, String key, Object hf, String ours, Object m) {
        if (!hf.equals(m)) out.add(key + " " + hf + " != " + ours + " " + m);
    }

    private static UserError bad(Path file, String field, String why) { return new UserError(file + ": " + field + " " + why); }

    private static int reqInt(Path file, JsonNode j, String k) {
        JsonNode n = j.get(k);
        if (n == null || n.isNull()) throw bad(file, k, "missing");
        if (!n.canConvertToExactIntegral() || !n.isNumber()) throw bad(file, k, n + " is not an integer");
        return n.asInt();
    }

    private static int optInt(Path file, JsonNode j, String k, int dflt) { return j.hasNonNull(k) ? reqInt(file, j, k) : dflt; }

    private static double optDouble(Path file, JsonNode j, String k, double dflt) {
        JsonNode n = j.get(k);
        if (n == null || n.isNull()) return dflt;
        if (!n.isNumber()) throw bad(file, k, n + " is not a number");
        return n.asDouble();
    }

    private static String describe(RopeScaling r) {
        if (r == null) return "null";
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

    /** rope_parameters as transformers 5 writes it: rope_type and rope_theta, plus the llama3 fields when scaled. */
    static JsonNode ropeParametersJson(ModelConfig m) {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        RopeScaling r = m.ropeScaling();
        if (r != null) {
            o.put("factor", r.factor());
            o.put("high_freq_factor", r.highFreqFactor());
            o.put("low_freq_factor", r.lowFreqFactor());
            o.put("original_max_position_embeddings", r.originalMaxPositionEmbeddings());
        }
        o.put("rope_theta", m.ropeTheta());
        o.put("rope_type", r == null ? "default" : r.ropeType());
        return o;
    }

    /** Throws a one-line {@link UserError} naming the file and every mismatching field. */
    public static void validate(Path file, JsonNode hf, ModelConfig m) {
        List<String> mm = mismatches(modelConfig(file, hf), m);
        if (!mm.isEmpty())
            throw new UserError(file + ": checkpoint does not match the run's model config: " + String.join("; ", mm));
    }

    /**
     * A complete LlamaForCausalLM config.json for {@code m} in {@code layout}, with one dtype field ({@code torch_dtype}
     * for 4.x, {@code dtype} for 5.x) naming {@code dtype}, the dtype of the weights written beside it. Fields of
     * {@code base} (the config.json the run was initialized from, may be null) are kept where they do not describe
     * the model or the weights (token ids, generation defaults...); the shape, RoPE and dtype fields are always ours,
     * and the other layout's RoPE and dtype fields are dropped.
     */
    public static ObjectNode toJson(ModelConfig m, String dtype, JsonNode base, Layout layout) {
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
        if (layout == Layout.TRANSFORMERS_5) {
            o.set("rope_parameters", ropeParametersJson(m));
        } else {
            o.set("rope_scaling", ropeScalingJson(m.ropeScaling()));
            o.put("rope_theta", m.ropeTheta());
        }
        o.put("tie_word_embeddings", m.tiedEmbeddings());
        o.put(layout == Layout.TRANSFORMERS_5 ? "dtype" : "torch_dtype", dtype);
        o.put("transformers_version", layout == Layout.TRANSFORMERS_5 ? "5.0.0" : "4.44.0");
        o.put("use_cache", true);
        o.put("vocab_size", m.vocabSize());
        if (base != null && base.isObject()) {
            List<String> ours = List.of("architectures", "head_dim", "hidden_size", "intermediate_size", "num_attention_heads",
                    "num_hidden_layers", "num_key_value_heads", "rms_norm_eps", "rope_scaling", "rope_theta", "rope_parameters",
                    "tie_word_embeddings", "torch_dtype", "dtype", "vocab_size", "model_type", "hidden_act", "attention_bias", "mlp_bias",
                    "transformers_version");
            ObjectNode merged = ((ObjectNode) base).deepCopy();
            merged.remove(ours);                                           // the other layout's fields must not survive
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
