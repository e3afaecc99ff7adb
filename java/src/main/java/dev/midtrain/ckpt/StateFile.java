package dev.midtrain.ckpt;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;
import dev.midtrain.train.TrainState;

import java.nio.file.Path;
import java.util.Iterator;
import java.util.Map;

/**
 * A step's {@code trainer_state.json}: the training state ({@link TrainState}, a snapshot) and what the checkpoint
 * records about the run that wrote it. Keys (snake_case, in this order): format, step, tokens_trained,
 * tokens_seen_before, tokens_per_source, skipped_steps, loader_state, rng_state ({"seed": N}: the seed is the whole
 * RNG state, see TrainState), then the fields below. Every key must be present; unknown keys are ignored.
 *
 * @param state         step, token accounting, skipped steps, loader position, seed (copied: the trainer moves on)
 * @param lr            learning rate of the last step (informational)
 * @param configYaml    the resolved run config, YAML
 * @param engineVersion midtrain version that wrote the checkpoint
 * @param tp            tensor-parallel degree of the saved shards
 * @param dp            data-parallel degree
 * @param hfConfig      config.json of the Hugging Face checkpoint the lineage started from, or null (export keeps its
 *                      non-shape fields: token ids, generation defaults)
 * @param initFrom      that checkpoint's directory, or null
 */
public record StateFile(TrainState state, double lr, String configYaml, String engineVersion, int tp, int dp,
                        JsonNode hfConfig, String initFrom) {
    public static final String FORMAT = "midtrain-trainer-state/1";

    static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(SerializationFeature.INDENT_OUTPUT)
            .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);

    public StateFile {
        state = state.copy();
        if (state.step < 0) throw new IllegalArgumentException("step " + state.step);
        if (tp < 1 || dp < 1) throw new IllegalArgumentException("tp " + tp + " dp " + dp);
        hfConfig = hfConfig == null || hfConfig.isNull() ? null : hfConfig;
    }

    /** The step this file belongs to (its directory's number). */
    public long step() { return state.step; }

    public String toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.put("format", FORMAT);
        o.put("step", state.step);
        o.put("tokens_trained", state.tokensTrained);
        o.put("tokens_seen_before", state.tokensSeenBefore);
        ObjectNode per = o.putObject("tokens_per_source");
        state.tokensPerSource.forEach(per::put);                        // a TreeMap: sorted by source name
        o.put("skipped_steps", state.skippedSteps);
        o.set("loader_state", state.loaderState);
        o.putObject("rng_state").put("seed", state.seed);
        o.put("lr", lr);
        o.put("config_yaml", configYaml);
        o.put("engine_version", engineVersion);
        o.put("tp", tp);
        o.put("dp", dp);
        o.set("hf_config", hfConfig);
        o.put("init_from", initFrom);
        try {
            return JSON.writeValueAsString(o) + "\n";
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Parses a trainer_state.json; a malformed, truncated or incomplete file is a one-line error naming it and the field. */
    public static StateFile parse(String text, Path file) {
        JsonNode tree;
        try {
            tree = JSON.readTree(text);
        } catch (JsonProcessingException e) {
            throw new UserError(file + ": malformed or truncated JSON at line " + e.getLocation().getLineNr() + ": " + e.getOriginalMessage().split("\n")[0]);
        }
        if (tree == null || !tree.isObject()) throw new UserError(file + ": empty or not a JSON object (truncated?)");
        Fields f = new Fields(tree, file);
        String format = f.text("format", false);
        if (!FORMAT.equals(format)) throw new UserError(file + ": format " + format + " is not " + FORMAT);
        JsonNode rng = f.object("rng_state");
        if (rng == null || !rng.has("seed")) throw f.invalid("rng_state", "no seed");
        TrainState s = new TrainState(Fields.integer(rng.get("seed"), "rng_state.seed", f));
        s.step = f.integer("step");
        s.tokensTrained = f.integer("tokens_trained");
        s.tokensSeenBefore = f.integer("tokens_seen_before");
        JsonNode per = f.object("tokens_per_source");
        if (per != null)
            for (Iterator<Map.Entry<String, JsonNode>> it = per.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                s.tokensPerSource.put(e.getKey(), Fields.integer(e.getValue(), "tokens_per_source." + e.getKey(), f));
            }
        s.skippedSteps = f.integer("skipped_steps");
        s.loaderState = f.object("loader_state");
        JsonNode lr = f.get("lr");
        if (!lr.isNumber()) throw f.invalid("lr", "not a number: " + lr);
        try {
            return new StateFile(s, lr.asDouble(), f.text("config_yaml", false), f.text("engine_version", false),
                    Math.toIntExact(f.integer("tp")), Math.toIntExact(f.integer("dp")), f.object("hf_config"), f.text("init_from", true));
        } catch (IllegalArgumentException | ArithmeticException e) {
            throw new UserError(file + ": invalid trainer state: " + e.getMessage());
        }
    }

    /** Required keys of one file, each read with its type checked; errors name the file and the field. */
    private record Fields(JsonNode tree, Path file) {
        JsonNode get(String key) {
            JsonNode n = tree.get(key);
            if (n == null) throw new UserError(file + ": invalid trainer state: missing field " + key);
            return n;
        }

        long integer(String key) { return integer(get(key), key, this); }

        static long integer(JsonNode n, String key, Fields f) {
            if (!n.isIntegralNumber() || !n.canConvertToLong()) throw f.invalid(key, "not an integer: " + n);
            return n.asLong();
        }

        String text(String key, boolean nullable) {
            JsonNode n = get(key);
            if (nullable && n.isNull()) return null;
            if (!n.isTextual()) throw invalid(key, "not a string: " + n);
            return n.asText();
        }

        /** An object, or null for JSON null. */
        JsonNode object(String key) {
            JsonNode n = get(key);
            if (n.isNull()) return null;
            if (!n.isObject()) throw invalid(key, "not an object: " + n);
            return n;
        }

        UserError invalid(String key, String why) {
            return new UserError(file + ": invalid trainer state (field " + key + "): " + why);
        }
    }
}
