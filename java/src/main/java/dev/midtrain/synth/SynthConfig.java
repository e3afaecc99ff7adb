package dev.midtrain.synth;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import dev.midtrain.common.UserError;
import dev.midtrain.config.Check;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static dev.midtrain.config.Check.require;

/**
 * The `midtrain synthesize` config (configs/synthesis/boostqa.yaml): the endpoint, one model and sampling setup per
 * stage, seed curation, the grades of multi-grade synthesis and the difficulty booster. Validated at construction;
 * relative paths resolve against the config file's directory.
 *
 * @param endpoint       the OpenAI-compatible server and how hard to drive it
 * @param annotate       the judge labelling each seed with a discipline and a tier H1-H5
 * @param generate       the reasoning model of multi-grade synthesis
 * @param booster        the high-difficulty branch: its model/template, tier weights, minimum accepted tier
 * @param refine         the model checking solvability and regenerating answers
 * @param curate         seed curation: minimum length and the benchmarks to decontaminate against
 * @param grades         grade roles requested from the generator, in order (names defined in grades.yaml)
 * @param templatesDir   directory with the prompt templates (relative to the config file)
 * @param balance        target shares of the balance stage (absent: uniform over disciplines and tiers)
 */
public record SynthConfig(Endpoint endpoint, Stage annotate, Stage generate, Booster booster, Stage refine,
                          Curate curate, List<String> grades, String templatesDir, Balance balance) {
    public static final List<String> TIERS = List.of("H1", "H2", "H3", "H4", "H5");

    public SynthConfig {
        require(endpoint != null, "endpoint", "is required");
        require(annotate != null, "annotate", "is required");
        require(generate != null, "generate", "is required");
        require(booster != null, "booster", "is required");
        require(refine != null, "refine", "is required");
        if (curate == null) curate = new Curate(null, null, null, null, null, null, null);
        require(grades != null && !grades.isEmpty(), "grades", "at least one grade is required");
        grades = List.copyOf(grades);
        require(grades.stream().distinct().count() == grades.size(), "grades", "duplicate grade in " + grades);
        if (templatesDir == null) templatesDir = ".";
        if (balance == null) balance = new Balance(null, null, null, null, null);
    }

    /**
     * The balance stage ({@link dev.midtrain.synth.Balance}).
     *
     * @param total        records in balanced.jsonl (0: as many as refined.jsonl holds)
     * @param disciplines  share per discipline (normalized; absent: uniform over the disciplines in refined.jsonl);
     *                     a discipline not listed gets none
     * @param tiers        share per tier H1..H5 (normalized; absent: uniform)
     * @param maxRepeat    a cell short of its target repeats its records up to this many times each (1: caps only)
     * @param seed         which records a capped cell keeps
     */
    public record Balance(Long total, Map<String, Double> disciplines, Map<String, Double> tiers, Integer maxRepeat, Long seed) {
        public Balance {
            if (total == null) total = 0L;
            require(total >= 0, "balance.total", "must be >= 0 (0 = as many as refined), got " + total);
            disciplines = disciplines == null ? Map.of() : Map.copyOf(disciplines);
            for (var e : disciplines.entrySet())
                require(e.getValue() != null && e.getValue() >= 0, "balance.disciplines." + e.getKey(), "must be >= 0, got " + e.getValue());
            require(disciplines.isEmpty() || disciplines.values().stream().anyMatch(v -> v > 0), "balance.disciplines", "at least one share must be > 0");
            tiers = tiers == null ? Map.of() : Map.copyOf(tiers);
            for (var e : tiers.entrySet()) {
                require(TIERS.contains(e.getKey()), "balance.tiers", "only H1..H5 are tiers, got " + e.getKey());
                require(e.getValue() != null && e.getValue() >= 0, "balance.tiers." + e.getKey(), "must be >= 0, got " + e.getValue());
            }
            require(tiers.isEmpty() || tiers.values().stream().anyMatch(v -> v > 0), "balance.tiers", "at least one share must be > 0");
            if (maxRepeat == null) maxRepeat = 1;
            require(maxRepeat >= 1, "balance.max_repeat", "must be >= 1, got " + maxRepeat);
            if (seed == null) seed = 0L;
        }
    }

    /**
     * @param baseUrl             e.g. http://127.0.0.1:8000/v1 (the path up to /chat/completions)
     * @param apiKeyEnv           environment variable holding the API key (never logged or written); unset = no key
     * @param requestTimeoutS     per-request timeout, from sending to the full response body
     * @param connectTimeoutS     TCP connect timeout
     * @param concurrency         requests in flight at most
     * @param maxRequestsPerS     request rate limit (0 = none)
     * @param maxTokensPerMin     token rate limit, prompt + completion (0 = none); estimated before, corrected after
     * @param maxRetries          retries of one request on 429, 5xx, timeouts and dropped connections
     * @param backoffInitialMs    first backoff; doubles per retry, capped, with jitter
     * @param backoffMaxMs        backoff cap (a Retry-After from the server is honoured even when longer)
     * @param jsonMode            send response_format {"type": "json_object"}
     */
    public record Endpoint(String baseUrl, String apiKeyEnv, Double requestTimeoutS, Double connectTimeoutS, Integer concurrency,
                           Double maxRequestsPerS, Long maxTokensPerMin, Integer maxRetries, Long backoffInitialMs,
                           Long backoffMaxMs, Boolean jsonMode) {
        public Endpoint {
            require(baseUrl != null && baseUrl.matches("https?://.+"), "endpoint.base_url", "must be an http(s) URL, got " + baseUrl);
            baseUrl = baseUrl.replaceAll("/+$", "");
            if (apiKeyEnv == null) apiKeyEnv = "OPENAI_API_KEY";
            if (requestTimeoutS == null) requestTimeoutS = 600.0;
            require(requestTimeoutS > 0, "endpoint.request_timeout_s", "must be > 0, got " + requestTimeoutS);
            if (connectTimeoutS == null) connectTimeoutS = 10.0;
            require(connectTimeoutS > 0, "endpoint.connect_timeout_s", "must be > 0, got " + connectTimeoutS);
            if (concurrency == null) concurrency = 8;
            require(concurrency >= 1 && concurrency <= 4096, "endpoint.concurrency", "must be in [1, 4096], got " + concurrency);
            if (maxRequestsPerS == null) maxRequestsPerS = 0.0;
            require(maxRequestsPerS >= 0, "endpoint.max_requests_per_s", "must be >= 0 (0 = unlimited), got " + maxRequestsPerS);
            if (maxTokensPerMin == null) maxTokensPerMin = 0L;
            require(maxTokensPerMin >= 0, "endpoint.max_tokens_per_min", "must be >= 0 (0 = unlimited), got " + maxTokensPerMin);
            if (maxRetries == null) maxRetries = 6;
            require(maxRetries >= 0, "endpoint.max_retries", "must be >= 0, got " + maxRetries);
            if (backoffInitialMs == null) backoffInitialMs = 1000L;
            require(backoffInitialMs >= 0, "endpoint.backoff_initial_ms", "must be >= 0, got " + backoffInitialMs);
            if (backoffMaxMs == null) backoffMaxMs = 60_000L;
            require(backoffMaxMs >= backoffInitialMs, "endpoint.backoff_max_ms", "must be >= backoff_initial_ms, got " + backoffMaxMs);
            if (jsonMode == null) jsonMode = true;
        }
    }

    /**
     * One model call per record.
     *
     * @param model        the model name the server knows
     * @param baseUrl      this stage's server when not endpoint.base_url (e.g. R1 and V3 on two vLLM servers)
     * @param template     prompt template name (TEMPLATE.yaml in templates_dir)
     * @param temperature  sampling temperature
     * @param topP         nucleus sampling
     * @param maxTokens    completion budget
     */
    public record Stage(String model, String baseUrl, String template, Double temperature, Double topP, Integer maxTokens) {
        public Stage {
            require(model != null && !model.isBlank(), "<stage>.model", "is required");
            if (baseUrl != null) {
                require(baseUrl.matches("https?://.+"), "<stage>.base_url", "must be an http(s) URL, got " + baseUrl);
                baseUrl = baseUrl.replaceAll("/+$", "");
            }
            require(template != null && template.matches("[A-Za-z0-9_-]+"), "<stage>.template", "must be a template name, got " + template);
            if (temperature == null) temperature = 0.0;
            require(temperature >= 0 && temperature <= 2, "<stage>.temperature", "must be in [0, 2], got " + temperature);
            if (topP == null) topP = 1.0;
            require(topP > 0 && topP <= 1, "<stage>.top_p", "must be in (0, 1], got " + topP);
            if (maxTokens == null) maxTokens = 4096;
            require(maxTokens >= 1, "<stage>.max_tokens", "must be >= 1, got " + maxTokens);
        }

        /** The sampling parameters recorded in provenance. */
        Map<String, Object> sampling() { return Map.of("temperature", temperature, "top_p", topP, "max_tokens", maxTokens); }
    }

    /**
     * @param stage           model and template of the high-difficulty branch
     * @param enabled         run the branch at all
     * @param tierWeights     sampling weight per seed tier (H1..H5): H4/H5 seeds are drawn more often
     * @param seedsFraction   share of the annotated seeds drawn (weighted, without replacement) for the branch
     * @param minAcceptedTier outputs judged below this tier are rejected (reason below_min_tier)
     * @param seed            sampling seed (the draw depends only on it and the seed ids, not on file order)
     */
    public record Booster(Stage stage, Boolean enabled, Map<String, Double> tierWeights, Double seedsFraction,
                          String minAcceptedTier, Long seed) {
        public Booster {
            require(stage != null, "booster.stage", "is required");
            if (enabled == null) enabled = true;
            require(tierWeights != null, "booster.tier_weights", "is required (H1..H5)");
            tierWeights = new TreeMap<>(tierWeights);
            for (String t : TIERS) {
                Double w = tierWeights.get(t);
                require(w != null && w >= 0 && Double.isFinite(w), "booster.tier_weights." + t, "must be a finite weight >= 0, got " + w);
            }
            require(tierWeights.size() == TIERS.size(), "booster.tier_weights", "only H1..H5 are tiers, got " + tierWeights.keySet());
            require(tierWeights.values().stream().anyMatch(w -> w > 0), "booster.tier_weights", "at least one weight must be > 0");
            tierWeights = Map.copyOf(tierWeights);
            if (seedsFraction == null) seedsFraction = 0.5;
            require(seedsFraction >= 0 && seedsFraction <= 1, "booster.seeds_fraction", "must be in [0, 1], got " + seedsFraction);
            if (minAcceptedTier == null) minAcceptedTier = "H4";
            require(TIERS.contains(minAcceptedTier), "booster.min_accepted_tier", "must be one of " + TIERS + ", got " + minAcceptedTier);
            if (seed == null) seed = 0L;
        }
    }

    /**
     * @param minWords                seeds with fewer normalized units (words; CJK characters) are dropped (too_short)
     * @param decontaminate           benchmark JSONL files (relative to the config file); a seed sharing an n-gram
     *                                with one is dropped (contaminated), as `prepare --decontaminate`
     * @param nearDuplicateThreshold  MinHash estimated Jaccard similarity at or above which a seed is a near-duplicate
     *                                of one kept before (near_duplicate); 0 = exact duplicates only
     * @param shingle                 units per MinHash shingle
     * @param embeddingThreshold      also drop a seed whose sentence embedding is within this cosine similarity of a
     *                                decontaminate item (contaminated_embedding; 0 = off), as `prepare
     *                                --decontaminate-embeddings`
     * @param embeddingModel          ONNX model for it (relative to the config file; absent: the bundled all-MiniLM-L6-v2)
     * @param embeddingTokenizer      that model's tokenizer.json
     */
    public record Curate(Integer minWords, List<String> decontaminate, Double nearDuplicateThreshold, Integer shingle,
                         Double embeddingThreshold, String embeddingModel, String embeddingTokenizer) {
        public Curate {
            if (minWords == null) minWords = 8;
            require(minWords >= 0, "curate.min_words", "must be >= 0, got " + minWords);
            decontaminate = decontaminate == null ? List.of() : List.copyOf(decontaminate);
            if (nearDuplicateThreshold == null) nearDuplicateThreshold = 0.8;
            require(nearDuplicateThreshold >= 0 && nearDuplicateThreshold <= 1, "curate.near_duplicate_threshold",
                    "must be in [0, 1] (0 = off), got " + nearDuplicateThreshold);
            if (shingle == null) shingle = 5;
            require(shingle >= 1, "curate.shingle", "must be >= 1, got " + shingle);
            if (embeddingThreshold == null) embeddingThreshold = 0.0;
            require(embeddingThreshold >= 0 && embeddingThreshold <= 1, "curate.embedding_threshold", "must be in [0, 1] (0 = off), got " + embeddingThreshold);
            require((embeddingModel == null) == (embeddingTokenizer == null), "curate.embedding_model", "give embedding_model and embedding_tokenizer together");
        }
    }

    private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory())
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES);

    /** Loads and validates {@code file}; every failure is a {@link UserError} naming the file and the field. */
    public static SynthConfig load(Path file) {
        try {
            return YAML.readValue(Files.readString(file), SynthConfig.class);
        } catch (NoSuchFileException e) {
            throw new UserError(file + ": not found");
        } catch (JsonMappingException e) {
            throw new UserError(file + ": " + describe(e));
        } catch (JsonProcessingException e) {
            throw new UserError(file + ": malformed YAML: " + e.getOriginalMessage().split("\n")[0]);
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage());
        }
    }

    private static String describe(JsonMappingException e) {
        StringBuilder path = new StringBuilder();
        for (JsonMappingException.Reference r : e.getPath()) {
            if (r.getFieldName() != null) path.append(path.length() == 0 ? "" : ".").append(r.getFieldName());
            else if (r.getIndex() >= 0) path.append('[').append(r.getIndex()).append(']');
        }
        Throwable cause = e.getCause();
        while (cause != null && !(cause instanceof Check.ConfigException)) cause = cause.getCause();
        if (cause instanceof Check.ConfigException ce) {
            return "field " + ce.getMessage().replace("<stage>", path);   // a Stage's checks name it by its YAML path
        }
        if (e instanceof UnrecognizedPropertyException) return "unknown field " + path;
        return "field " + path + ": " + e.getOriginalMessage().split("\n")[0].replaceAll("\\s*at \\[Source.*", "");
    }
}
