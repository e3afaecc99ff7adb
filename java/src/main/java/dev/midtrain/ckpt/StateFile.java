package dev.midtrain.ckpt;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import dev.midtrain.common.UserError;
import dev.midtrain.train.TrainState;

import java.nio.file.Path;
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
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT)
            .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .enable(SerializationFeature.INDENT_OUTPUT)
            .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);

    /** The file's schema: its keys are these names in snake_case, in this order; every one must be present. */
    private record Json(String format, long step, long tokensTrained, long tokensSeenBefore, Map<String, Long> tokensPerSource,
                        long skippedSteps, JsonNode loaderState, JsonNode rngState, double lr, String configYaml,
                        String engineVersion, int tp, int dp, JsonNode hfConfig, String initFrom) {}

    public StateFile {
        state = state.copy();
        if (state.step < 0) throw new IllegalArgumentException("step " + state.step);
        if (tp < 1 || dp < 1) throw new IllegalArgumentException("tp " + tp + " dp " + dp);
        hfConfig = hfConfig == null || hfConfig.isNull() ? null : hfConfig;
    }

    /** The step this file belongs to (its directory's number). */
    public long step() { return state.step; }

    public String toJson() {
        Json j = new Json(FORMAT, state.step, state.tokensTrained, state.tokensSeenBefore, state.tokensPerSource, state.skippedSteps,
                state.loaderState, JSON.createObjectNode().put("seed", state.seed), lr, configYaml, engineVersion, tp, dp, hfConfig, initFrom);
        try {
            return JSON.writeValueAsString(j) + "\n";
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
        Json j;
        try {
            j = JSON.treeToValue(tree, Json.class);
        } catch (JsonMappingException e) {
            String field = String.join(".", e.getPath().stream().map(r -> r.getFieldName() != null ? r.getFieldName() : "" + r.getIndex()).toList());
            String msg = e.getOriginalMessage().split("\n")[0];
            if (msg.startsWith("Missing") && msg.contains("creator property")) msg = "missing field " + msg.replaceAll("^[^']*'([^']*)'.*", "$1");
            throw new UserError(file + ": invalid trainer state" + (field.isEmpty() ? "" : " (field " + field + ")") + ": " + msg);
        } catch (JsonProcessingException e) {
            throw new UserError(file + ": invalid trainer state: " + e.getOriginalMessage().split("\n")[0]);
        }
        if (!FORMAT.equals(j.format())) throw new UserError(file + ": format " + j.format() + " is not " + FORMAT);
        JsonNode seed = j.rngState() == null ? null : j.rngState().get("seed");
        if (seed == null || !seed.canConvertToLong()) throw new UserError(file + ": invalid trainer state (field rng_state): no integer seed");
        TrainState s = new TrainState(seed.asLong());
        s.step = j.step();
        s.tokensTrained = j.tokensTrained();
        s.tokensSeenBefore = j.tokensSeenBefore();
        if (j.tokensPerSource() != null) s.tokensPerSource.putAll(j.tokensPerSource());
        s.skippedSteps = j.skippedSteps();
        s.loaderState = j.loaderState() == null || j.loaderState().isNull() ? null : j.loaderState();
        try {
            return new StateFile(s, j.lr(), j.configYaml(), j.engineVersion(), j.tp(), j.dp(), j.hfConfig(), j.initFrom());
        } catch (IllegalArgumentException e) {
            throw new UserError(file + ": invalid trainer state: " + e.getMessage());
        }
    }
}
