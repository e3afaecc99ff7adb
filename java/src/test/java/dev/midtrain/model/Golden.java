package dev.midtrain.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.RopeScaling;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Reader of the golden fixtures written by scripts/golden/make_llama_golden.py: magic "MTGOLDEN", int32 version 1,
 * int32 JSON length, the JSON header (config + tensor list), then the tensors (f32 or i32, little-endian).
 */
final class Golden {
    final JsonNode config;
    private final Map<String, float[]> floats = new LinkedHashMap<>();
    private final Map<String, int[]> ints = new LinkedHashMap<>();
    private final Map<String, int[]> shapes = new LinkedHashMap<>();

    private Golden(JsonNode config) { this.config = config; }

    static Golden load(String resource) {
        try (InputStream in = Golden.class.getResourceAsStream("/golden/" + resource)) {
            if (in == null) throw new IllegalStateException("missing test resource golden/" + resource
                    + " (run scripts/golden/make_llama_golden.py)");
            ByteBuffer buf = ByteBuffer.wrap(in.readAllBytes()).order(ByteOrder.LITTLE_ENDIAN);
            byte[] magic = new byte[8];
            buf.get(magic);
            if (!new String(magic, StandardCharsets.US_ASCII).equals("MTGOLDEN")) throw new IllegalStateException(resource + ": bad magic");
            int version = buf.getInt();
            if (version != 1) throw new IllegalStateException(resource + ": unsupported version " + version);
            byte[] json = new byte[buf.getInt()];
            buf.get(json);
            JsonNode header = new ObjectMapper().readTree(json);
            Golden g = new Golden(header.get("config"));
            for (JsonNode t : header.get("tensors")) {
                int[] shape = new int[t.get("shape").size()];
                int n = 1;
                for (int i = 0; i < shape.length; i++) n *= shape[i] = t.get("shape").get(i).asInt();
                String name = t.get("name").asText();
                g.shapes.put(name, shape);
                if (t.get("dtype").asText().equals("f32")) {
                    float[] v = new float[n];
                    buf.asFloatBuffer().get(v);
                    buf.position(buf.position() + 4 * n);
                    g.floats.put(name, v);
                } else {
                    int[] v = new int[n];
                    buf.asIntBuffer().get(v);
                    buf.position(buf.position() + 4 * n);
                    g.ints.put(name, v);
                }
            }
            if (buf.hasRemaining()) throw new IllegalStateException(resource + ": " + buf.remaining() + " trailing bytes");
            return g;
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    float[] f(String name) {
        float[] v = floats.get(name);
        if (v == null) throw new IllegalArgumentException("fixture has no f32 tensor " + name);
        return v;
    }

    int[] i(String name) {
        int[] v = ints.get(name);
        if (v == null) throw new IllegalArgumentException("fixture has no i32 tensor " + name);
        return v;
    }

    int[] shape(String name) { return shapes.get(name); }

    JsonNode model() { return config.get("model"); }
    JsonNode optimizer() { return config.get("optimizer"); }

    ModelConfig modelConfig() {
        JsonNode m = model();
        return new ModelConfig(m.get("vocab_size").asInt(), m.get("dim").asInt(), m.get("n_layers").asInt(),
                m.get("n_heads").asInt(), m.get("n_kv_heads").asInt(), m.get("ffn_dim").asInt(), m.get("rope_theta").asDouble(),
                m.get("norm_eps").asDouble(), m.get("seq_len").asInt(), m.get("tied_embeddings").asBoolean(), ropeScaling(m.get("rope_scaling")));
    }

    private static RopeScaling ropeScaling(JsonNode rs) {
        if (rs == null || rs.isNull()) return null;
        return new RopeScaling(rs.get("rope_type").asText(), rs.get("factor").asDouble(), rs.get("low_freq_factor").asDouble(),
                rs.get("high_freq_factor").asDouble(), rs.get("original_max_position_embeddings").asInt());
    }

    int batch() { return model().get("batch").asInt(); }
    int seqLen() { return model().get("seq_len").asInt(); }
    int steps() { return optimizer().get("steps").asInt(); }
    int microBatches() { return optimizer().get("micro_batches").asInt(); }

    /** The micro-batch int32[B, T+1] of optimizer step s (0-based), micro-batch mb. */
    int[] batch(int s, int mb) {
        int len = batch() * (seqLen() + 1);
        int off = (s * microBatches() + mb) * len;
        return Arrays.copyOfRange(i("tokens"), off, off + len);
    }
}
