package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * synthesize's curate stage with curate.embedding_threshold: a seed paraphrasing a benchmark question (no shared
 * 10-gram) is rejected as contaminated_embedding with its item and score; a near miss of the same field is kept.
 * Pairs from the planted set of EmbeddingDecontaminatorTest (rows 4 and 8).
 */
class CurateEmbeddingTest {
    @TempDir Path tmp;

    @Test
    void paraphrasedSeedIsRejectedNearMissKept() throws Exception {
        List<JsonNode> rows = new ArrayList<>();
        for (String l : Files.readAllLines(Path.of("java/src/test/resources/embed/planted.jsonl"))) rows.add(JsonlLog.JSON.readTree(l));
        Path bench = tmp.resolve("bench.jsonl");
        Files.write(bench, List.of(JsonlLog.JSON.createObjectNode().put("question", rows.get(4).get("question").asText()).toString(),
                JsonlLog.JSON.createObjectNode().put("question", rows.get(8).get("question").asText()).toString()));
        String yaml = Files.readString(Path.of("configs/synthesis/boostqa.yaml"))
                .replace("decontaminate: [../../data/benchmarks/sample_bench.jsonl]", "decontaminate: [" + bench + "]")
                .replace("embedding_threshold: 0 ", "embedding_threshold: 0.76 ")
                // the copy lives in the temp dir: its templates stay the shipped ones (checked when the Pipeline is built)
                .replace("templates_dir: .", "templates_dir: " + Path.of("configs/synthesis").toAbsolutePath());
        assertTrue(yaml.contains("embedding_threshold: 0.76 ") && yaml.contains(bench.toString()), yaml);
        Path cfgFile = tmp.resolve("boostqa.yaml");
        Files.writeString(cfgFile, yaml);
        Path seeds = tmp.resolve("seeds-in.jsonl");
        Files.write(seeds, List.of(
                JsonlLog.JSON.createObjectNode().put("id", "para").put("text", rows.get(4).get("paraphrase").asText() + " Explain the idea in a few sentences.").toString(),
                JsonlLog.JSON.createObjectNode().put("id", "near").put("text", rows.get(8).get("near_miss").asText() + " Explain why in a few sentences.").toString(),
                JsonlLog.JSON.createObjectNode().put("id", "other").put("text", "Describe how a lever multiplies force and give two everyday examples of levers.").toString()));
        Path work = tmp.resolve("work");
        Pipeline p = new Pipeline(SynthConfig.load(cfgFile), cfgFile, work, null, new PrintStream(new ByteArrayOutputStream()));
        assertEquals(0, p.curate(List.of(seeds)));
        List<String> kept = new ArrayList<>();
        for (String l : Files.readAllLines(Pipeline.seeds(work))) kept.add(JsonlLog.JSON.readTree(l).get("id").asText());
        assertEquals(List.of("near", "other"), kept);
        List<String> rej = Files.readAllLines(Pipeline.rejects(work, "curate"));
        assertEquals(1, rej.size());
        JsonNode r = JsonlLog.JSON.readTree(rej.get(0));
        assertEquals("para", r.get("id").asText());
        assertEquals("contaminated_embedding", r.get("reason").asText());
        assertTrue(r.get("detail").asText().startsWith("bench.jsonl item 0, cosine 0."), r.toString());
    }
}
