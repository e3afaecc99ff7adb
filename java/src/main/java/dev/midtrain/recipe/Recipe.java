package dev.midtrain.recipe;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;
import dev.midtrain.config.ConfigLoader;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static dev.midtrain.config.Check.require;

/**
 * A recipe file ({@code midtrain recipe run RECIPE.yaml}): the paper's experiment as one chain of the engine's
 * commands. Paths are relative to the directory the command runs in, as for every other command. One typed record
 * per section, validated at construction; {@link #load} names the file and field of any error.
 *
 * @param outDir      where every stage writes (stages/, variants/, report/)
 * @param tokenizer   tokenizer.json for prepare and the probes
 * @param base        the model mid-training starts from
 * @param probe       the multiple-choice probe run before and after (discipline x H1-H5)
 * @param synthesize  the BoostQA synthesis (null: ready-made QA files only)
 * @param qa          the QA source: its name, and ready-made QA files added to the synthesized ones
 * @param web         the web-text source (KnowEdu)
 * @param prepare     decontamination (the probe tasks are always added) and dedup
 * @param train       the run config and its overrides
 * @param variants    named deep-merge overrides of this recipe (empty: one variant, "main")
 */
public record Recipe(String outDir, String tokenizer, Base base, Probe probe, Synthesize synthesize, Source qa, Source web,
                     Prepare prepare, Train train, List<Variant> variants) {
    public Recipe {
        require(outDir != null && !outDir.isBlank(), "out_dir", "is required");
        require(tokenizer != null, "tokenizer", "is required");
        require(base != null, "base", "is required");
        require(probe != null, "probe", "is required");
        require(qa != null, "qa", "is required");
        require(web != null, "web", "is required");
        require(train != null, "train", "is required");
        require(synthesize != null || !qa.files().isEmpty(), "qa.files", "give ready-made QA files or a synthesize section");
        if (prepare == null) prepare = new Prepare(List.of(), true, 0);
        variants = variants == null ? List.of() : List.copyOf(variants);
        java.util.Set<String> names = new java.util.HashSet<>();
        for (Variant v : variants) require(names.add(v.name()), "variants", "variant name '" + v.name() + "' appears twice");
    }

    /**
     * @param hf    a Hugging Face Llama checkpoint directory
     * @param init  "random": the training config's seeded initialization, saved as a Hugging Face directory (laptop demos)
     */
    public record Base(String hf, String init) {
        public Base {
            require((hf == null) != (init == null), "base", "give exactly one of hf (a Hugging Face directory) and init: random");
            require(init == null || init.equals("random"), "base.init", "must be random, got " + init);
        }
    }

    /**
     * @param tasks  multiple-choice task files (JSONL or Arrow, as for midtrain eval)
     * @param shots  k-shot prompts from each file's dev sibling
     * @param limit  score only the first N items (0: all)
     * @param steps  intermediate training steps probed too (their checkpoints must be kept: checkpoint.keep_every)
     */
    public record Probe(List<String> tasks, int shots, int limit, List<Long> steps) {
        public Probe {
            require(tasks != null && !tasks.isEmpty(), "probe.tasks", "at least one task file");
            require(shots >= 0, "probe.shots", "must be >= 0, got " + shots);
            require(limit >= 0, "probe.limit", "must be >= 0, got " + limit);
            tasks = List.copyOf(tasks);
            steps = steps == null ? List.of() : List.copyOf(steps);
        }
    }

    /**
     * @param config        synthesis config (configs/synthesis/boostqa.yaml)
     * @param seeds         seed JSONL files for curate
     * @param stages        pipeline stages to run, in order (drop refine for the paper's "w/o Refine")
     * @param set           overrides of the synthesis config, dotted keys (booster.enabled: false)
     * @param replay        recorded responses served locally instead of endpoint.base_url (null: the real endpoint)
     * @param replayDelayMs latency of each recorded answer
     */
    public record Synthesize(String config, List<String> seeds, List<String> stages, Map<String, JsonNode> set, String replay,
                             long replayDelayMs) {
        static final List<String> ALLOWED = List.of("curate", "annotate", "generate", "refine");

        public Synthesize {
            require(config != null, "synthesize.config", "is required");
            require(seeds != null && !seeds.isEmpty(), "synthesize.seeds", "at least one seed file");
            stages = stages == null ? ALLOWED : List.copyOf(stages);
            for (String s : stages) require(ALLOWED.contains(s), "synthesize.stages", "must be among " + ALLOWED + ", got " + s);
            require(stages.contains("generate"), "synthesize.stages", "must include generate");
            set = set == null ? Map.of() : new LinkedHashMap<>(set);
            require(replayDelayMs >= 0, "synthesize.replay_delay_ms", "must be >= 0");
        }
    }

    /** A data source: its name in the training blend and its weight, and input files (JSONL, Arrow, Parquet: as prepare reads). */
    public record Source(String name, List<String> files, Double weight) {
        public Source {
            weight = weight == null ? 1.0 : weight;
            require(name != null && name.matches("[A-Za-z0-9_.-]+"), "source name", "letters, digits, _ . - only, got " + name);
            files = files == null ? List.of() : List.copyOf(files);
            require(weight > 0, name + ".weight", "must be > 0, got " + weight);
        }
    }

    /**
     * @param decontaminate benchmark JSONL files removed from both sources (the probe task files are always added)
     * @param dedup         MinHash near-duplicate removal within each source
     * @param threads       tokenizer threads (0: all cores)
     */
    public record Prepare(List<String> decontaminate, Boolean dedup, int threads) {
        public Prepare {
            dedup = dedup == null || dedup;
            decontaminate = decontaminate == null ? List.of() : List.copyOf(decontaminate);
            require(threads >= 0, "prepare.threads", "must be >= 0");
        }
    }

    /**
     * @param config  run config (configs/tiny.yaml, configs/llama3-8b.yaml); data.sources is set by the recipe
     * @param set     overrides of the run config, dotted keys (train.steps: 2384)
     * @param args    further `midtrain train` arguments (--tp 8, --backend cuda, launch flags)
     */
    public record Train(String config, Map<String, JsonNode> set, List<String> args) {
        public Train {
            require(config != null, "train.config", "is required");
            set = set == null ? Map.of() : new LinkedHashMap<>(set);
            args = args == null ? List.of() : List.copyOf(args);
        }
    }

    /** A variant: a name and a deep merge into this recipe (any section, e.g. {train: {set: {train.steps: 10}}}). */
    public record Variant(String name, JsonNode overrides) {
        public Variant {
            require(name != null && name.matches("[A-Za-z0-9_.-]+"), "variants.name", "letters, digits, _ . - only, got " + name);
            require(overrides == null || overrides.isObject(), "variants." + name + ".overrides", "must be a mapping");
            require(overrides == null || !overrides.has("variants") && !overrides.has("out_dir"), "variants." + name + ".overrides",
                    "cannot change variants or out_dir");
        }
    }

    /** The recipe file as a tree (for variants' deep merges) and typed. */
    /** Recipe fields are optional unless a record's check says otherwise (unknown fields are still errors). */
    static final com.fasterxml.jackson.databind.ObjectMapper YAML = ConfigLoader.YAML.copy()
            .disable(com.fasterxml.jackson.databind.DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES)
            .disable(com.fasterxml.jackson.databind.DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES);

    public static JsonNode readTree(Path file) {
        try {
            JsonNode tree = YAML.readTree(Files.readString(file));
            if (tree == null || !tree.isObject()) throw new UserError(file + ": not a YAML mapping");
            return tree;
        } catch (NoSuchFileException e) {
            throw new UserError(file + ": recipe not found");
        } catch (JsonProcessingException e) {
            throw new UserError(file + ": malformed YAML at line " + e.getLocation().getLineNr() + ": " + e.getOriginalMessage().lines().findFirst().orElse(""));
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage());
        }
    }

    public static Recipe fromTree(JsonNode tree, String where) {
        try {
            return YAML.treeToValue(tree, Recipe.class);
        } catch (JsonMappingException e) {
            Throwable c = e.getCause();
            while (c != null && !(c instanceof dev.midtrain.config.Check.ConfigException)) c = c.getCause();
            if (c != null) throw new UserError(where + ": field " + c.getMessage());
            StringBuilder path = new StringBuilder();
            for (JsonMappingException.Reference r : e.getPath())
                if (r.getFieldName() != null) path.append(path.length() == 0 ? "" : ".").append(r.getFieldName());
                else if (r.getIndex() >= 0) path.append('[').append(r.getIndex()).append(']');
            if (e instanceof com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException)
                throw new UserError(where + ": unknown field " + path);
            throw new UserError(where + ": " + (path.length() > 0 ? "field " + path + ": " : "") + e.getOriginalMessage().split("\n")[0]);
        } catch (JsonProcessingException e) {
            throw new UserError(where + ": " + e.getOriginalMessage());
        }
    }

    public static Recipe load(Path file) { return fromTree(readTree(file), file.toString()); }

    /** Each variant's resolved recipe (the file's tree with the variant's overrides deep-merged), by name. */
    public static Map<String, Recipe> variants(JsonNode tree, String where) {
        Recipe top = fromTree(tree, where);
        Map<String, Recipe> out = new LinkedHashMap<>();
        if (top.variants().isEmpty()) {
            out.put("main", top);
            return out;
        }
        for (Variant v : top.variants()) {
            ObjectNode t = tree.deepCopy();
            if (v.overrides() != null) merge(t, v.overrides());
            out.put(v.name(), fromTree(t, where + " (variant " + v.name() + ")"));
        }
        return out;
    }

    static void merge(ObjectNode into, JsonNode from) {
        from.fields().forEachRemaining(e -> {
            JsonNode existing = into.get(e.getKey());
            if (existing instanceof ObjectNode o && e.getValue().isObject()) merge(o, e.getValue());
            else into.set(e.getKey(), e.getValue());
        });
    }

    /** The section as canonical JSON (sorted keys): what a stage's key hashes. */
    static String canonical(Object section) {
        try {
            return CANON.writeValueAsString(CANON.valueToTree(section));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private static final com.fasterxml.jackson.databind.ObjectMapper CANON = new com.fasterxml.jackson.databind.ObjectMapper()
            .setPropertyNamingStrategy(com.fasterxml.jackson.databind.PropertyNamingStrategies.SNAKE_CASE)
            .configure(com.fasterxml.jackson.databind.SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true)
            .configure(com.fasterxml.jackson.databind.MapperFeature.SORT_PROPERTIES_ALPHABETICALLY, true);

    static List<String> strings(List<?> xs) {
        List<String> out = new ArrayList<>();
        for (Object x : xs) out.add(String.valueOf(x));
        return out;
    }
}
