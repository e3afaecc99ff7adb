package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import dev.midtrain.common.UserError;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Prompt templates and their output schemas, read from YAML files in the templates directory so they can be edited
 * without rebuilding. A template file holds {@code name}, {@code version}, {@code system}, {@code user} and
 * {@code schema}; {@code {slot}} in the text is replaced by a value (a slot is a bare identifier, so JSON examples in
 * a prompt are left alone). Fragment files (grades.yaml, rubric.yaml) hold {@code name}, {@code version} and a map of
 * entries. Bumping {@code version} after an edit keeps provenance meaningful; the file's SHA-256 is recorded too.
 */
public final class Templates {
    private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
    private static final Pattern SLOT = Pattern.compile("\\{([A-Za-z_][A-Za-z0-9_]*)}");

    private Templates() {}

    /** A prompt template with the schema its JSON answer must satisfy. */
    public record Prompt(String name, int version, String system, String user, Map<String, Field> schema, String sha256, Path file) {
        /** The system and user messages with every slot filled; an unknown slot is an error naming the template file. */
        public String[] render(Map<String, String> values) {
            return new String[]{fill(system, values), fill(user, values)};
        }

        private String fill(String text, Map<String, String> values) {
            Matcher m = SLOT.matcher(text);
            StringBuilder sb = new StringBuilder();
            while (m.find()) {
                String v = values.get(m.group(1));
                if (v == null) throw new UserError(file + ": unknown slot {" + m.group(1) + "} (known: " + values.keySet() + ")");
                m.appendReplacement(sb, Matcher.quoteReplacement(v));
            }
            m.appendTail(sb);
            return sb.toString();
        }

        /** Provenance: template name, version and file hash. */
        Map<String, Object> provenance() { return Templates.provenance("template", "template_", name, version, sha256); }

        /**
         * Validates a parsed answer against the schema: null when it conforms, else the reason
         * ("schema_violation:FIELD") with a detail after " - ".
         */
        public String violation(JsonNode answer) {
            if (answer == null || !answer.isObject()) return "schema_violation:not_an_object - got " + (answer == null ? "nothing" : answer.getNodeType());
            for (Map.Entry<String, Field> e : schema.entrySet()) {
                String f = e.getKey();
                Field spec = e.getValue();
                JsonNode v = answer.get(f);
                if (v == null || v.isNull()) {
                    if (spec.required()) return "schema_violation:" + f + " - missing";
                    continue;
                }
                boolean typeOk = switch (spec.type()) {
                    case "string" -> v.isTextual();
                    case "boolean" -> v.isBoolean();
                    case "integer" -> v.isIntegralNumber();
                    case "number" -> v.isNumber();
                    default -> false;
                };
                if (!typeOk) return "schema_violation:" + f + " - expected " + spec.type() + ", got " + v.getNodeType();
                if (!spec.allowed().isEmpty() && !spec.allowed().contains(v.asText()))
                    return "schema_violation:" + f + " - " + trim(v.asText(), 40) + " not in " + spec.allowed();
                if (v.isTextual() && v.asText().strip().length() < spec.minLength())
                    return "schema_violation:" + f + " - shorter than " + spec.minLength() + " characters";
            }
            return null;
        }
    }

    /** One schema field: type string|boolean|integer|number, allowed values (empty = any), required, minimum length. */
    public record Field(String type, List<String> allowed, boolean required, int minLength) {}

    /** A fragment file (grades.yaml, rubric.yaml): named entries plus the file's name and version. */
    public record Fragment(String name, int version, Map<String, String> entries, String sha256) {
        Map<String, Object> provenance() { return Templates.provenance("name", "", name, version, sha256); }
    }

    /** A file's provenance: {nameKey: name, PREFIXversion: version, PREFIXsha256: the first 16 hex digits of its hash}. */
    static Map<String, Object> provenance(String nameKey, String prefix, String name, int version, String sha256) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put(nameKey, name);
        m.put(prefix + "version", version);
        m.put(prefix + "sha256", sha256.substring(0, 16));
        return m;
    }

    /**
     * Loads TEMPLATE.yaml from {@code dir}; the schema must declare each of {@code requiredFields}, and every
     * {@code {slot}} in its system and user text must be one of {@code slots} (what its stage fills).
     */
    public static Prompt load(Path dir, String name, Set<String> requiredFields, Set<String> slots) {
        Path file = dir.resolve(name + ".yaml");
        JsonNode root = read(file);
        String n = text(root, "name", file), system = text(root, "system", file), user = text(root, "user", file);
        for (String[] field : new String[][]{{"system", system}, {"user", user}}) {
            Matcher m = SLOT.matcher(field[1]);
            while (m.find())
                if (!slots.contains(m.group(1)))
                    throw new UserError(file + ": field " + field[0] + ": unknown slot {" + m.group(1) + "} (this stage fills " + new java.util.TreeSet<>(slots) + ")");
        }
        int version = version(root, file);
        JsonNode s = root.get("schema");
        if (s == null || !s.isObject() || s.isEmpty()) throw new UserError(file + ": field schema: an object of output fields is required");
        Map<String, Field> schema = new LinkedHashMap<>();
        for (var it = s.fields(); it.hasNext(); ) {
            var e = it.next();
            JsonNode f = e.getValue();
            String where = file + ": field schema." + e.getKey();
            if (!f.isObject()) throw new UserError(where + ": must be an object with a type");
            String type = f.path("type").asText("");
            if (!Set.of("string", "boolean", "integer", "number").contains(type))
                throw new UserError(where + ".type: must be string, boolean, integer or number, got " + f.get("type"));
            List<String> allowed = new ArrayList<>();
            if (f.has("enum")) {
                if (!f.get("enum").isArray()) throw new UserError(where + ".enum: must be a list");
                f.get("enum").forEach(x -> allowed.add(x.asText()));
            }
            schema.put(e.getKey(), new Field(type, List.copyOf(allowed), f.path("required").asBoolean(true), f.path("min_length").asInt(0)));
        }
        for (String r : requiredFields)
            if (!schema.containsKey(r) || !schema.get(r).required())
                throw new UserError(file + ": field schema: the pipeline needs a required output field " + r);
        return new Prompt(n, version, system, user, Map.copyOf(schema), sha256(file), file);
    }

    /** Loads a fragment file; it must have an entry for each of {@code keys}. */
    public static Fragment fragment(Path dir, String name, String entriesField, List<String> keys) {
        Path file = dir.resolve(name + ".yaml");
        JsonNode root = read(file);
        JsonNode es = root.get(entriesField);
        if (es == null || !es.isObject()) throw new UserError(file + ": field " + entriesField + ": a map of entries is required");
        Map<String, String> entries = new LinkedHashMap<>();
        es.fields().forEachRemaining(e -> entries.put(e.getKey(), e.getValue().asText().strip()));
        for (String k : keys)
            if (!entries.containsKey(k)) throw new UserError(file + ": field " + entriesField + "." + k + ": missing (have " + entries.keySet() + ")");
        return new Fragment(text(root, "name", file), version(root, file), Map.copyOf(entries), sha256(file));
    }

    private static JsonNode read(Path file) {
        try {
            JsonNode root = YAML.readTree(Files.readString(file));
            if (root == null || !root.isObject()) throw new UserError(file + ": not a YAML mapping");
            return root;
        } catch (NoSuchFileException e) {
            throw new UserError(file + ": template not found");
        } catch (IOException e) {
            throw new UserError(file + ": malformed template: " + e.getMessage().split("\n")[0]);
        }
    }

    private static String text(JsonNode root, String field, Path file) {
        JsonNode v = root.get(field);
        if (v == null || !v.isTextual() || v.asText().isBlank()) throw new UserError(file + ": field " + field + ": a non-empty string is required");
        return v.asText();
    }

    private static int version(JsonNode root, Path file) {
        JsonNode v = root.get("version");
        if (v == null || !v.canConvertToInt() || v.asInt() < 1) throw new UserError(file + ": field version: a positive integer is required");
        return v.asInt();
    }

    static String sha256(Path file) {
        try {
            return Hashes.sha256(Files.readAllBytes(file));
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage());
        }
    }

    static String trim(String s, int n) { return s.length() <= n ? s : s.substring(0, n) + "..."; }

    /** SHA-256 helpers. */
    static final class Hashes {
        private Hashes() {}

        static String sha256(byte[] bytes) {
            try {
                return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256").digest(bytes));
            } catch (java.security.NoSuchAlgorithmException e) {
                throw new IllegalStateException(e);
            }
        }

        static String sha256(String s) { return sha256(s.getBytes(StandardCharsets.UTF_8)); }
    }
}
