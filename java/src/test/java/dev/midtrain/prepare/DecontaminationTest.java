package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import dev.midtrain.data.RefBpe;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;

import static dev.midtrain.data.TestData.*;
import static org.junit.jupiter.api.Assertions.*;

/** Exact 10-gram decontamination: planted n-grams are dropped, near misses kept, counts reported per benchmark. */
class DecontaminationTest {
    @TempDir Path tmp;

    // 14 words: 5 benchmark 10-grams
    static final String BENCH_Q = "Which physicist first measured the charge of the electron using tiny falling oil droplets?";

    @Test
    void normalizationLowercasesStripsPunctuationAndSplitsOnWhitespace() {
        assertEquals(List.of("dont", "stop", "x2", "3x", "10", "électron"), Decontaminator.normalize("  Don't STOP: x^2\t+ 3x =\n10, Électron!"));
    }

    @Test
    void plantedTenGramIsDroppedNearMissesAreKept() throws IOException {
        Path bench = writeLines(tmp.resolve("bench.jsonl"), List.of(
                "{\"question\": " + json(BENCH_Q) + ", \"choices\": [\"Millikan\", \"Bohr\"], \"answer\": \"Millikan\", \"id\": \"q1 this id field is ignored because qa fields are present here ok\"}"), false);
        Path bench2 = writeLines(tmp.resolve("other.jsonl"), List.of(
                "{\"prompt\": \"completely different words that appear in no training document at all anywhere\", \"meta\": {\"note\": \"the sun rises in the east and sets in the west every day\"}}"), false);
        String[] w = BENCH_Q.split(" ");
        String ten = String.join(" ", java.util.Arrays.copyOfRange(w, 1, 11));              // words 1..10: exact 10-gram
        String nine = String.join(" ", java.util.Arrays.copyOfRange(w, 1, 10));             // 9 words only
        String[] changed = java.util.Arrays.copyOfRange(w, 1, 11);
        changed[5] = "the";                                                                  // one word changed
        List<String> docs = List.of(
                "Intro text. " + ten + " and then more words follow.",                      // 0 contaminated
                "Intro text. " + nine + " but it stops there.",                               // 1 kept
                "Intro text. " + String.join(" ", changed) + " follows.",                     // 2 kept
                ten.toUpperCase().replace(" ", " -- ") + "!!!",                               // 3 contaminated (normalization)
                "The Sun rises in the east, and sets in the West every day, as we know.",   // 4 contaminated by bench2 (all string fields)
                "nothing to see here at all");                                               // 5 kept
        Path in = writeLines(tmp.resolve("docs.jsonl"), docs.stream().map(d -> "{\"text\": " + json(d) + "}").toList(), false);
        Manifest m = Preparer.run(Preparer.Options.of("d", List.of(in), TOKENIZER, tmp.resolve("out")).withBenchmarks(List.of(bench, bench2)),
                new PrintStream(new ByteArrayOutputStream()));
        assertEquals(3, m.documents());
        assertEquals(3L, m.dropped().get("decontaminated"));
        assertEquals(2, m.decontamination().benchmarks().get(0).documentsRemoved());
        assertEquals(1, m.decontamination().benchmarks().get(1).documentsRemoved());
        assertEquals(5, m.decontamination().benchmarks().get(0).ngrams());           // the 14-word question; choices too short; id ignored
        assertEquals(10, m.decontamination().ngram());
        RefBpe ref = new RefBpe(TOKENIZER);
        int[] want = concat(List.of(withEos(ref.encode(docs.get(1))), withEos(ref.encode(docs.get(2))), withEos(ref.encode(docs.get(5)))));
        assertArrayEquals(want, readAll(tmp.resolve("out")));
    }

    @Test
    void tokensInputIsDecontaminatedThroughDecoding() throws IOException {
        RefBpe ref = new RefBpe(TOKENIZER);
        Path bench = writeLines(tmp.resolve("bench.jsonl"), List.of("{\"text\": " + json(BENCH_Q) + "}"), false);
        int[] dirty = ref.encode("Preface: " + BENCH_Q), clean = ref.encode("a clean document about chemistry and physics");
        Path in = writeLines(tmp.resolve("ids.jsonl"), List.of(java.util.Arrays.toString(dirty), java.util.Arrays.toString(clean)), false);
        Manifest m = Preparer.run(Preparer.Options.of("t", List.of(in), TOKENIZER, tmp.resolve("o")).withBenchmarks(List.of(bench)),
                new PrintStream(new ByteArrayOutputStream()));
        assertEquals(1, m.documents());
        assertArrayEquals(withEos(clean), readAll(tmp.resolve("o")));
    }

    @Test
    void shippedSampleBenchRemovesExactlyThePlantedQaItems() throws IOException {
        Decontaminator d = Decontaminator.load(List.of(Path.of("data/benchmarks/sample_bench.jsonl")));
        long hits = 0;
        try (var r = Inputs.openText(Path.of("data/boostqa/sample.jsonl"))) {
            var json = new com.fasterxml.jackson.databind.ObjectMapper();
            String line;
            while ((line = r.readLine()) != null) {
                var n = json.readTree(line);
                if (d.match("Question: " + n.get("question").asText() + "\nAnswer: " + n.get("answer").asText()) != 0) hits++;
            }
        }
        assertEquals(5, hits);   // make_samples.py plants 5 benchmark items verbatim in the QA set
    }
}
