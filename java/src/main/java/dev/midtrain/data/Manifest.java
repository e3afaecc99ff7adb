package dev.midtrain.data;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.core.JsonProcessingException;
import dev.midtrain.common.UserError;
import dev.midtrain.tokenizer.Tokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * {@code manifest.json} of a prepared directory: written last by {@code midtrain prepare} (atomically), so a directory
 * without a valid manifest is never trusted. The shards it lists hold one non-null int32 column {@value #COLUMN}: the
 * source's documents concatenated in input order, each ending with the tokenizer's end-of-text token.
 *
 * @param format          {@value #FORMAT}
 * @param source          source name given to prepare
 * @param created         ISO-8601 time of writing
 * @param tokenizer       the tokenizer that produced the ids (its SHA-256 is the fingerprint)
 * @param documents       documents kept
 * @param tokens          tokens in all shards (sum of files[].tokens)
 * @param files           the shards, in token-stream order
 * @param inputs          the input files with their detected format and counts
 * @param qaTemplate      template used to render QA records (null if none were read)
 * @param dropped         documents dropped, per reason (malformed_json, missing_field, ..., empty, decontaminated)
 * @param decontamination benchmarks checked and documents each removed (null without --decontaminate)
 * @param errors          the first skipped-record messages (file:line: what), for the report
 * @param cleaning        BOS, special-token handling and near-duplicate removal (null in manifests written before them)
 */
public record Manifest(String format, String source, String created, Tokenizer.Info tokenizer, long documents, long tokens,
                       List<ShardFile> files, List<Input> inputs, String qaTemplate, Map<String, Long> dropped,
                       Decontamination decontamination, List<String> errors, Cleaning cleaning) {
    /** Without a cleaning section (synthetic and converted data). */
    public Manifest(String format, String source, String created, Tokenizer.Info tokenizer, long documents, long tokens,
                    List<ShardFile> files, List<Input> inputs, String qaTemplate, Map<String, Long> dropped,
                    Decontamination decontamination, List<String> errors) {
        this(format, source, created, tokenizer, documents, tokens, files, inputs, qaTemplate, dropped, decontamination, errors, null);
    }

    public static final String FORMAT = "midtrain-tokens/1";
    public static final String FILE = "manifest.json";
    public static final String COLUMN = "tokens";

    /**
     * @param name          file name inside the directory (shard-NNNNN.arrow)
     * @param bytes         exact file size
     * @param sha256        SHA-256 of the file
     * @param tokens        int32 values in the file
     * @param recordBatches Arrow record batches in the file
     * @param maxTokenId    largest id in the file (-1 if empty); checked against the model vocab by the loader
     */
    public record ShardFile(String name, long bytes, String sha256, long tokens, int recordBatches, int maxTokenId) {}

    /** @param path input as given; format text|qa|tokens; records read (lines or rows); documents kept */
    public record Input(String path, String format, long records, long documents) {}

    /**
     * @param bosId                id prepended to every document (--bos), or null
     * @param specialTokensAsText  true: literal special-token strings in the text were encoded as plain text (the
     *                             default); false: as the special tokens (--parse-special-tokens)
     * @param dedup                near-duplicate removal, or null without --dedup
     */
    public record Cleaning(Integer bosId, boolean specialTokensAsText, Dedup dedup) {}

    /**
     * @param shingle       units per shingle
     * @param threshold     estimated Jaccard similarity at or above which a document was dropped
     * @param permutations  MinHash signature length
     * @param bands         LSH bands (bands x rows = permutations)
     * @param rows          rows per band
     * @param against       prepared directories whose documents counted as seen before
     * @param removed       documents dropped as near-duplicates (= dropped.near_duplicate)
     * @param duplicates    the first 1000 of them: where, which kept document ("source#index") it duplicates, similarity
     */
    public record Dedup(int shingle, double threshold, int permutations, int bands, int rows, List<String> against, long removed,
                        List<Duplicate> duplicates) {}

    public record Duplicate(String where, String duplicateOf, double jaccard) {}

    /** @param ngram n (10); benchmarks in command-line order; embeddings: the embedding-similarity pass, or null if off */
    public record Decontamination(int ngram, String normalization, List<Benchmark> benchmarks, Embeddings embeddings) {
        public Decontamination(int ngram, String normalization, List<Benchmark> benchmarks) { this(ngram, normalization, benchmarks, null); }
    }

    /**
     * prepare --decontaminate-embeddings.
     *
     * @param model     model file, or the bundled model's name
     * @param threshold cosine similarity at or above which a document was dropped
     * @param items     benchmark items embedded
     * @param removed   documents dropped by this pass (dropped.decontaminated_embedding)
     * @param pairs     the dropped documents with their nearest benchmark item and score, in input order (the first
     *                  {@value dev.midtrain.prepare.Preparer#MAX_EMBEDDING_PAIRS_LISTED}), to audit the threshold
     */
    public record Embeddings(String model, String modelSha256, double threshold, int windowTokens, int strideTokens, long items, long removed,
                             List<EmbeddingPair> pairs) {}

    /** @param item 0-based record of {@code benchmark}; {@code itemText} its embedded text */
    public record EmbeddingPair(String where, String benchmark, int item, String itemText, double score) {}

    /**
     * @param file             benchmark path as given
     * @param sha256           its SHA-256
     * @param items            records read
     * @param ngrams           distinct n-grams collected
     * @param documentsRemoved documents that shared an n-gram with this benchmark (a document matching two
     *                         benchmarks counts for both; dropped.decontaminated counts it once)
     */
    public record Benchmark(String file, String sha256, long items, long ngrams, long documentsRemoved) {}

    static final ObjectMapper JSON = new ObjectMapper()
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES)
            .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
            .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .enable(SerializationFeature.INDENT_OUTPUT);

    /** Reads {@code dir/manifest.json}; any problem is a {@link UserError} naming the file. */
    public static Manifest read(Path dir) {
        Path file = dir.resolve(FILE);
        Manifest m;
        try {
            byte[] bytes = Files.readAllBytes(file);
            com.fasterxml.jackson.databind.JsonNode tree = bytes.length == 0 ? null : JSON.readTree(bytes);
            if (tree == null || !tree.isObject())
                throw new UserError(file + ": " + (bytes.length == 0 ? "empty (0 bytes)" : "not a JSON object")
                        + ": not a complete midtrain prepare manifest (re-run midtrain prepare)");
            if (tree instanceof com.fasterxml.jackson.databind.node.ObjectNode o && !o.has("cleaning")) o.putNull("cleaning");   // older manifests
            m = JSON.treeToValue(tree, Manifest.class);
        } catch (NoSuchFileException e) {
            if (!Files.isDirectory(dir)) throw new UserError(dir + ": prepared data directory not found (run midtrain prepare)");
            throw new UserError(dir + ": no " + FILE + " (not a complete midtrain prepare output; an interrupted prepare leaves none)");
        } catch (JsonMappingException e) {
            throw new UserError(file + ": invalid manifest: " + e.getOriginalMessage().split("\n")[0]);
        } catch (JsonProcessingException e) {
            throw new UserError(file + ": malformed JSON: " + e.getOriginalMessage().split("\n")[0]);
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage());
        }
        if (!FORMAT.equals(m.format())) throw new UserError(file + ": format '" + m.format() + "', expected '" + FORMAT + "'");
        if (m.files() == null || m.tokenizer() == null) throw new UserError(file + ": invalid manifest: files and tokenizer are required");
        long sum = 0;
        for (ShardFile f : m.files()) {
            if (f == null) throw new UserError(file + ": invalid manifest: a null entry in files");
            if (f.name() == null || f.name().contains("/") || f.name().contains("\\") || f.name().startsWith("."))
                throw new UserError(file + ": invalid shard name " + f.name());
            sum += f.tokens();
        }
        if (sum != m.tokens()) throw new UserError(file + ": tokens " + m.tokens() + " != sum of files[].tokens " + sum);
        return m;
    }

    /** Serialized form (pretty JSON, trailing newline). */
    public byte[] toJson() {
        try {
            return (JSON.writeValueAsString(this) + "\n").getBytes(java.nio.charset.StandardCharsets.UTF_8);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }
}
