package dev.midtrain.data;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.core.JsonProcessingException;
import dev.midtrain.common.UserError;

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
 */
public record Manifest(String format, String source, String created, Tokenizer tokenizer, long documents, long tokens,
                       List<ShardFile> files, List<Input> inputs, String qaTemplate, Map<String, Long> dropped,
                       Decontamination decontamination, List<String> errors) {
    public static final String FORMAT = "midtrain-tokens/1";
    public static final String FILE = "manifest.json";
    public static final String COLUMN = "tokens";

    /**
     * @param file       path given to prepare (informational)
     * @param sha256     SHA-256 of tokenizer.json: the fingerprint
     * @param vocabSize  1 + the largest id in the tokenizer (model vocab + added tokens)
     * @param eosToken   end-of-text token appended to every document
     * @param eosId      its id
     */
    public record Tokenizer(String file, String sha256, int vocabSize, String eosToken, int eosId) {}

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

    /** @param ngram n (10); benchmarks in command-line order */
    public record Decontamination(int ngram, String normalization, List<Benchmark> benchmarks) {}

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
            m = JSON.readValue(Files.readAllBytes(file), Manifest.class);
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
            if (f.name() == null || f.name().contains("/") || f.name().contains("\\") || f.name().startsWith("."))
                throw new UserError(file + ": invalid shard name " + f.name());
            sum += f.tokens();
        }
        if (sum != m.tokens()) throw new UserError(file + ": tokens " + m.tokens() + " != sum of files[].tokens " + sum);
        return m;
    }

    /** Serialized form (pretty JSON, trailing newline). */
    byte[] toJson() {
        try {
            return (JSON.writeValueAsString(this) + "\n").getBytes(java.nio.charset.StandardCharsets.UTF_8);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }
}
