package dev.midtrain.config;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.cfg.CoercionAction;
import com.fasterxml.jackson.databind.cfg.CoercionInputShape;
import com.fasterxml.jackson.databind.exc.InvalidFormatException;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import com.fasterxml.jackson.databind.type.LogicalType;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.dataformat.yaml.YAMLParser;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.dataformat.yaml.YAMLGenerator;
import dev.midtrain.common.UserError;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Loads a run config: built-in defaults, then the YAML file, then {@code --set a.b=c} overrides, then the typed
 * records (snake_case keys). Every failure is a {@link UserError} naming the file and the field.
 */
public final class ConfigLoader {
    public static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory().disable(YAMLGenerator.Feature.WRITE_DOC_START_MARKER))
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
            .enable(DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_READING_DUP_TREE_KEY)      // a repeated key is an error, not "last wins"
            .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT)                // steps: 1.5 is an error, not 1
            .disable(SerializationFeature.FAIL_ON_EMPTY_BEANS);

    static {                                // a quoted "3.0e-3" or "true" is a string: refused where a number or boolean is expected
        for (LogicalType t : List.of(LogicalType.Integer, LogicalType.Float, LogicalType.Boolean))
            YAML.coercionConfigFor(t).setCoercion(CoercionInputShape.String, CoercionAction.Fail)
                    .setCoercion(CoercionInputShape.EmptyString, CoercionAction.Fail);
        YAML.coercionConfigFor(LogicalType.Integer).setCoercion(CoercionInputShape.Float, CoercionAction.Fail);
        YAML.coercionConfigFor(LogicalType.Boolean).setCoercion(CoercionInputShape.Integer, CoercionAction.Fail);
    }

    public static final ObjectMapper JSON = new ObjectMapper()
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES);

    private ConfigLoader() {}

    /** Loads {@code file} with {@code overrides} ("a.b=c"), validating everything. */
    public static RunConfig load(Path file, List<String> overrides) {
        JsonNode tree = readTree(file);
        for (String o : overrides) applyOverride(tree, o, file);
        return fromTree(tree, file.toString());
    }

    /** Parses the resolved tree (defaults merged in) into records; {@code where} names the source in errors. */
    public static RunConfig fromTree(JsonNode tree, String where) {
        ObjectNode merged = (ObjectNode) defaults();
        merge(merged, tree);
        if (merged.get("model") instanceof ObjectNode model && !model.has("rope_scaling")) model.putNull("rope_scaling");  // optional: plain RoPE
        batchInTokens(merged, where);
        // sections absent from the user's file stay absent (a model-only file is fine for `info`)
        // optional sections the user's file leaves out stay absent (null), defaults and all: a model-only file is
        // enough for `info`, and a command that needs a section checks for it
        for (String section : List.of("optimizer", "train", "data")) if (!tree.has(section)) merged.putNull(section);
        try {
            return YAML.treeToValue(merged, RunConfig.class);
        } catch (JsonMappingException e) {
            throw new UserError(where + ": " + describe(e), e);
        } catch (JsonProcessingException e) {
            throw new UserError(where + ": " + e.getOriginalMessage(), e);
        }
    }

    /**
     * train.global_batch_tokens, the global batch given in tokens (the recipes' usual unit), becomes
     * train.global_batch_seqs = tokens / train.seq_len; it must divide exactly, and only one of the two may be given.
     */
    private static void batchInTokens(ObjectNode merged, String where) {
        if (!(merged.get("train") instanceof ObjectNode train) || !train.has("global_batch_tokens")) return;
        JsonNode tokens = train.remove("global_batch_tokens"), seq = train.get("seq_len");
        if (train.has("global_batch_seqs"))
            throw new UserError(where + ": field train.global_batch_tokens: give the global batch in sequences or in tokens, not both");
        if (!tokens.isIntegralNumber() || !tokens.canConvertToLong() || tokens.asLong() <= 0)
            throw new UserError(where + ": field train.global_batch_tokens: must be a positive integer, got " + tokens);
        if (seq == null || !seq.canConvertToInt() || seq.asInt() <= 0) return;   // train.seq_len's own check reports it
        if (tokens.asLong() % seq.asInt() != 0 || tokens.asLong() / seq.asInt() > Integer.MAX_VALUE)
            throw new UserError(where + ": field train.global_batch_tokens: " + tokens.asLong() + " is not a multiple of train.seq_len ("
                    + seq.asInt() + ")");
        train.put("global_batch_seqs", (int) (tokens.asLong() / seq.asInt()));
    }

    static JsonNode readTree(Path file) {
        try {
            String text = Files.readString(file);
            checkScalars(text, file + ": ", "");
            JsonNode tree = YAML.readTree(text);
            if (tree == null || !tree.isObject()) throw new UserError(file + ": not a YAML mapping of config sections");
            return tree;
        } catch (NoSuchFileException e) {
            throw new UserError(file + ": config file not found");
        } catch (JsonProcessingException e) {
            java.util.regex.Matcher dup = java.util.regex.Pattern.compile("Duplicate field '([^']*)'").matcher(e.getOriginalMessage());
            if (dup.find())
                throw new UserError(file + ": duplicate key '" + dup.group(1) + "' at line " + e.getLocation().getLineNr()
                        + " (each key may appear once per section)", e);
            String what = e.getOriginalMessage().lines().map(String::strip)  // one line: snakeyaml's text without its excerpt
                    .filter(l -> !l.isEmpty() && !l.startsWith("in 'reader'") && !l.equals("^") && !l.contains("    "))
                    .reduce((a, b) -> a + "; " + b).orElse("unparseable");
            throw new UserError(file + ": malformed YAML at line " + e.getLocation().getLineNr() + ": " + what, e);
        } catch (IOException e) {
            throw new UserError(file + ": cannot read config: " + e.getMessage(), e);
        }
    }

    /**
     * What Jackson's YAML reader would pass silently or misreport, refused with the field named ({@code where} starts
     * the message, {@code prefix} is the dotted path above the text: a --set key):
     * an alias ({@code min_lr: *lr} would read as the string "lr"; anchors and merge keys are not supported), a
     * non-finite number ({@code .nan}, {@code .inf}), and a second YAML document after the first (it would be ignored).
     * Syntax errors are left to the tree reader.
     */
    static void checkScalars(String text, String where, String prefix) throws IOException {
        try (YAMLParser p = (YAMLParser) YAML.getFactory().createParser(text)) {
            int depth = 0;
            boolean seenDocument = false;
            for (JsonToken t; (t = p.nextToken()) != null; ) {
                if (depth == 0 && seenDocument)
                    throw new UserError(where + "a second YAML document at line " + p.currentLocation().getLineNr()
                            + " (a config is one document; remove the '---' and what follows, or merge it into the first)");
                if (t.isStructStart()) depth++;
                else if (t.isStructEnd()) depth--;
                if (depth == 0) seenDocument = true;
                if (!t.isScalarValue()) continue;
                String field = field(p, prefix);
                if (p.isCurrentAlias())
                    throw new UserError(where + "field " + field + ": YAML alias *" + p.getText() + " is not supported (write the value itself)");
                if (t == JsonToken.VALUE_NUMBER_FLOAT && p.getText().matches("[-+]?\\.(nan|NaN|NAN|inf|Inf|INF)"))
                    throw new UserError(where + "field " + field + ": must be finite, got " + p.getText());
            }
        } catch (JsonProcessingException e) {
            // malformed: the tree reader reports it with its line
        }
    }

    /** The dotted path of the parser's current value ("optimizer.lr", "data.sources[1].weight"). */
    private static String field(JsonParser p, String prefix) {
        List<String> parts = new java.util.ArrayList<>();
        for (com.fasterxml.jackson.core.JsonStreamContext c = p.getParsingContext(); c != null && !c.inRoot(); c = c.getParent())
            parts.add(0, c.inArray() ? "[" + c.getCurrentIndex() + "]" : c.getCurrentName() == null ? "" : c.getCurrentName());
        StringBuilder sb = new StringBuilder(prefix);
        for (String x : parts) sb.append(x.startsWith("[") || sb.length() == 0 ? "" : ".").append(x);
        return sb.toString();
    }

    /** defaults.yaml, read once: the one place a config default is written. Callers get copies. */
    private static final JsonNode DEFAULTS = readDefaults();

    private static JsonNode readDefaults() {
        try (InputStream in = ConfigLoader.class.getResourceAsStream("defaults.yaml")) {
            return YAML.readTree(in);
        } catch (IOException e) {
            throw new IllegalStateException("built-in defaults.yaml unreadable", e);
        }
    }

    private static JsonNode defaults() { return DEFAULTS.deepCopy(); }

    /**
     * The defaults of one section of defaults.yaml as its mapping (a copy), for a builder to start from; fields
     * without a default (train.seq_len, ...) are absent.
     */
    public static ObjectNode defaultSection(String section) {
        if (!(DEFAULTS.get(section) instanceof ObjectNode o)) throw new IllegalStateException("defaults.yaml has no section " + section);
        return o.deepCopy();
    }

    /** A whole section of defaults.yaml as its record (a section where every field has a default). */
    public static <T> T defaultSection(String section, Class<T> type) { return fromSection(defaultSection(section), type); }

    /**
     * A section's mapping as its record, for builders: the record's own validation error (a {@link Check.ConfigException}
     * naming the field) is thrown as is.
     */
    public static <T> T fromSection(ObjectNode section, Class<T> type) {
        try {
            return YAML.treeToValue(section, type);
        } catch (JsonProcessingException e) {
            for (Throwable c = e.getCause(); c != null; c = c.getCause())
                if (c instanceof Check.ConfigException ce) throw ce;
            throw new IllegalArgumentException(type.getSimpleName() + ": " + e.getOriginalMessage(), e);
        }
    }

    private static void merge(ObjectNode into, JsonNode from) {
        from.fields().forEachRemaining(e -> {
            JsonNode existing = into.get(e.getKey());
            if (existing instanceof ObjectNode o && e.getValue().isObject()) merge(o, e.getValue());
            else into.set(e.getKey(), e.getValue());
        });
    }

    /** Applies "a.b.c=value" (value parsed as YAML: numbers, booleans, lists). */
    public static void applyOverride(JsonNode tree, String override, Path file) {
        int eq = override.indexOf('=');
        if (eq <= 0) throw new UserError("--set " + override + ": expected key=value, e.g. optimizer.lr=3e-4");
        String key = override.substring(0, eq).trim(), raw = override.substring(eq + 1).trim();
        String[] parts = key.split("\\.");
        ObjectNode node = (ObjectNode) tree;
        for (int i = 0; i < parts.length - 1; i++) {
            JsonNode child = node.get(parts[i]);
            if (child == null) { child = node.putObject(parts[i]); }
            if (!(child instanceof ObjectNode o)) throw new UserError("--set " + key + ": " + parts[i] + " is not a section");
            node = o;
        }
        JsonNode value;
        try {
            if (!raw.isEmpty()) checkScalars(raw, "--set " + key + ": ", key);
            value = raw.isEmpty() ? YAML.getNodeFactory().textNode("") : YAML.readTree(raw);
        } catch (UserError e) {
            throw new UserError(e.getMessage().replace("field " + key + ": ", ""));
        } catch (IOException e) {
            throw new UserError("--set " + key + ": cannot parse value '" + raw + "'");
        }
        node.set(parts[parts.length - 1], value);
    }

    /** Jackson's message reduced to "field a.b.c: what". */
    static String describe(JsonMappingException e) {
        Throwable cause = e.getCause();
        while (cause != null && !(cause instanceof Check.ConfigException)) cause = cause.getCause();
        if (cause instanceof Check.ConfigException ce) return "field " + ce.getMessage();
        String path = path(e);
        if (e instanceof UnrecognizedPropertyException u)
            return "unknown field " + (path.isEmpty() ? u.getPropertyName() : path);
        String msg = e.getOriginalMessage();
        if (msg.startsWith("Missing required creator property")) {
            String name = msg.replaceAll(".*'(.*)'.*", "$1");
            return "missing field " + (path.isEmpty() ? name : path + "." + name);
        }
        if (e instanceof MismatchedInputException mi && mi.getTargetType() != null) {
            Class<?> type = mi.getTargetType();
            String want = type == int.class || type == Integer.class || type == long.class || type == Long.class ? "an integer"
                    : type == double.class || type == Double.class || type == float.class || type == Float.class ? "a number"
                    : type == boolean.class || type == Boolean.class ? "true or false" : null;
            if (want != null) {
                java.util.regex.Matcher quoted = java.util.regex.Pattern.compile("String value \\(\"(.*)\"\\)").matcher(msg);
                String got = quoted.find() ? "the string \"" + quoted.group(1) + "\" (quoted: remove the quotes)"
                        : e instanceof InvalidFormatException f && f.getValue() != null
                        ? (f.getValue() instanceof String str ? "the string \"" + str + "\" (quoted: remove the quotes)" : String.valueOf(f.getValue()))
                        : msg.replaceAll("(?s).*from ([^;(]*?)(\\s*\\(.*|;.*)?$", "$1").strip();
                return (path.isEmpty() ? "" : "field " + path + ": ") + "must be " + want + ", got " + got;
            }
        }
        if (msg.contains("Cannot deserialize value of type")) msg = "wrong type: " + msg.replaceAll("\\s*at \\[Source.*", "");
        return (path.isEmpty() ? "" : "field " + path + ": ") + msg.split("\n")[0];
    }

    private static String path(JsonMappingException e) {
        StringBuilder sb = new StringBuilder();
        for (JsonMappingException.Reference r : e.getPath()) {
            if (r.getFieldName() != null) sb.append(sb.length() == 0 ? "" : ".").append(r.getFieldName());
            else if (r.getIndex() >= 0) sb.append('[').append(r.getIndex()).append(']');
        }
        return sb.toString();
    }

    /** The resolved config as YAML (saved into the run directory and into checkpoints). */
    public static String toYaml(RunConfig cfg) {
        try {
            return YAML.writeValueAsString(cfg);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The resolved config flattened to "section.field" -> value rows, for the startup table. */
    public static Map<String, String> flatten(RunConfig cfg) {
        Map<String, String> rows = new TreeMap<>();
        flatten("", YAML.valueToTree(cfg), rows);
        return rows;
    }

    private static void flatten(String prefix, JsonNode node, Map<String, String> rows) {
        if (node.isObject()) node.fields().forEachRemaining(e -> flatten(prefix.isEmpty() ? e.getKey() : prefix + "." + e.getKey(), e.getValue(), rows));
        else rows.put(prefix, node.isTextual() ? node.asText() : node.toString());
    }
}
