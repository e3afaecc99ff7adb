package dev.midtrain.ckpt;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.midtrain.common.UserError;

import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;

/**
 * Everything besides tensors that a resumed run needs to continue exactly, stored as a step's
 * {@code trainer_state.json} (snake_case keys).
 *
 * @param format           {@link #FORMAT}
 * @param step             optimizer steps completed; the schedule resumes at step + 1
 * @param tokensTrained    tokens trained by this run lineage (all sources, all ranks), not counting tokensSeenBefore
 * @param tokensSeenBefore tokens the initial checkpoint had already seen (checkpoint.tokens_seen_before)
 * @param tokensPerSource  tokens trained per data source name
 * @param skippedSteps     steps skipped for a non-finite loss or gradient norm
 * @param loaderState      the data loader's position(s) (opaque JSON, see data.TokenBatches#state), or null
 * @param rngState         the trainer's random-number state (opaque JSON), or null
 * @param lr               learning rate of the last step (informational)
 * @param configYaml       the resolved run config, YAML
 * @param engineVersion    midtrain version that wrote the checkpoint
 * @param tp               tensor-parallel degree of the saved shards
 * @param dp               data-parallel degree (one loader state per dp rank)
 * @param hfConfig         config.json of the Hugging Face checkpoint the lineage started from, or null (export keeps
 *                         its non-shape fields: token ids, generation defaults)
 * @param initFrom         that checkpoint's directory, or null
 */
public record TrainerState(String format, long step, long tokensTrained, long tokensSeenBefore, Map<String, Long> tokensPerSource,
                           long skippedSteps, JsonNode loaderState, JsonNode rngState, double lr, String configYaml,
                           String engineVersion, int tp, int dp, JsonNode hfConfig, String initFrom) {
    public static final String FORMAT = "midtrain-trainer-state/1";

    static final ObjectMapper JSON = new ObjectMapper()
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .enable(SerializationFeature.INDENT_OUTPUT)
            .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);

    public TrainerState {
        tokensPerSource = tokensPerSource == null ? Map.of() : new TreeMap<>(tokensPerSource);
        if (step < 0) throw new IllegalArgumentException("step " + step);
        if (tp < 1 || dp < 1) throw new IllegalArgumentException("tp " + tp + " dp " + dp);
    }

    /** Total tokens the weights have seen: tokensSeenBefore + tokensTrained. */
    public long tokensTotal() { return tokensSeenBefore + tokensTrained; }

    public String toJson() {
        try {
            return JSON.writeValueAsString(this) + "\n";
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Parses a trainer_state.json; a malformed, truncated or incomplete file is a one-line error naming it. */
    public static TrainerState parse(String text, Path file) {
        TrainerState s;
        JsonNode tree;
        try {
            tree = JSON.readTree(text);
        } catch (JsonProcessingException e) {
            throw new UserError(file + ": malformed or truncated JSON at line " + e.getLocation().getLineNr() + ": " + e.getOriginalMessage().split("\n")[0]);
        }
        if (tree == null || !tree.isObject()) throw new UserError(file + ": empty or not a JSON object (truncated?)");
        try {
            s = JSON.treeToValue(tree, TrainerState.class);
        } catch (JsonMappingException e) {
            String field = e.getPath().isEmpty() ? "" : e.getPath().get(e.getPath().size() - 1).getFieldName();
            String msg = e.getOriginalMessage().split("\n")[0];
            if (msg.startsWith("Missing") && msg.contains("creator property")) msg = "missing field " + msg.replaceAll("^[^']*'([^']*)'.*", "$1");
            throw new UserError(file + ": invalid trainer state" + (field == null || field.isEmpty() ? "" : " (field " + field + ")") + ": " + msg);
        } catch (JsonProcessingException e) {
            throw new UserError(file + ": invalid trainer state: " + e.getOriginalMessage().split("\n")[0]);
        } catch (IllegalArgumentException e) {
            throw new UserError(file + ": invalid trainer state: " + e.getMessage());
        }
        if (s == null) throw new UserError(file + ": empty trainer state");
        if (!FORMAT.equals(s.format())) throw new UserError(file + ": format " + s.format() + " is not " + FORMAT);
        return s;
    }
}
