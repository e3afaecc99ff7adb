package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import dev.midtrain.data.RefBpe;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;

import static dev.midtrain.data.TestData.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Data cleaning in prepare: decontamination of Chinese, full-width, hyphenated and line-broken overlaps (with near
 * misses that must survive), MinHash near-duplicate removal against an exact Jaccard reference, --bos, special-token
 * strings as plain text, a leading UTF-8 BOM.
 */
class CleaningTest {
    @TempDir Path tmp;
    final PrintStream quiet = new PrintStream(new ByteArrayOutputStream());

    private Manifest prepare(String name, List<String> docs, Preparer.Options extra) throws IOException {
        Path in = writeLines(tmp.resolve(name + ".jsonl"), docs.stream().map(d -> "{\"text\": " + json(d) + "}").toList(), false);
        Preparer.Options.Builder b = extra.toBuilder();
        b.source = name; b.inputs = List.of(in); b.tokenizer = TOKENIZER; b.out = tmp.resolve("p/" + name); b.threads = 2; b.progress = false;
        Preparer.Options o = b.build();
        return Preparer.run(o, quiet);
    }

    private static Preparer.Options base() { return Preparer.Options.of("x", List.of(Path.of("x")), TOKENIZER, Path.of("x")); }

    @Test
    void unitsFollowNfkcCjkCharactersAndDashRules() {
        assertEquals(List.of("abc12", "state", "of", "the", "art", "photosynthesis", "光", "合", "作", "用", "dont"),
                TextUnits.of("ＡＢＣ１２ state-of-the-art photo-\n  synthesis 光合作用。Don't"));
        assertEquals(List.of("x2", "3x", "emc2"), TextUnits.of("x^2 + 3x — E=mc²"));   // NFKC: ² -> 2; the em dash separates, = does not
    }

    /**
     * Five planted overlaps of each kind (20) are removed: Chinese (CMMLU style, no spaces), full-width Latin, hyphenated,
     * line-broken (line breaks and a hyphenated line end inside the overlap). Near misses survive: 9 shared words, 12
     * shared Chinese characters, and the common Chinese question stem.
     */
    @Test
    void chineseFullWidthHyphenatedAndLineBrokenOverlapsAreCaughtNearMissesSurvive() throws IOException {
        String[] zh = {
                "光合作用是绿色植物利用光能把二氧化碳和水转化为储存能量的有机物并释放氧气的过程",
                "在标准状况下一摩尔任何理想气体所占的体积都约为二十二点四升",
                "牛顿第二定律指出物体加速度的大小跟作用力成正比跟物体的质量成反比",
                "中华人民共和国的最高国家权力机关是全国人民代表大会及其常务委员会",
                "细胞有丝分裂过程中染色体数目加倍发生在后期着丝点分裂之后"};
        String[] en = {
                "the rate of a first order reaction is directly proportional to the concentration of one reactant",
                "an ideal transformer transfers electrical energy between two circuits through electromagnetic induction alone",
                "the mitochondria generate most of the chemical energy needed to power the biochemical reactions of the cell",
                "a binary search tree keeps its keys in sorted order so that lookup and insertion take logarithmic time",
                "the derivative of the natural logarithm of x with respect to x is equal to one over x"};
        List<String> bench = new ArrayList<>();
        for (String q : zh) bench.add("{\"question\": " + json("下列说法中正确的是：" + q) + ", \"choices\": [\"对\", \"错\"]}");
        for (String q : en) bench.add("{\"question\": " + json(q) + "}");
        Path benchFile = writeLines(tmp.resolve("bench.jsonl"), bench, false);

        List<String> docs = new ArrayList<>();
        List<Boolean> contaminated = new ArrayList<>();
        for (String q : zh) {                                            // Chinese: the sentence inside other Chinese text
            docs.add("我们今天复习生物和物理。" + q + "。这是考试的重点内容。");
            contaminated.add(true);
            docs.add("我们今天复习。" + q.substring(0, 12) + "另外一些完全不同的内容在这里出现。");   // 12 characters: near miss
            contaminated.add(false);
        }
        docs.add("下列说法中正确的是：以上都不对。");                                  // the shared stem alone (9 characters)
        contaminated.add(false);
        for (int k = 0; k < 5; k++) {
            String q = en[k];
            StringBuilder fw = new StringBuilder();                      // full-width Latin (U+FF01..U+FF5E)
            for (char c : q.toUpperCase().toCharArray()) fw.append(c == ' ' ? '\u3000' : (char) (c - 0x21 + 0xFF01));
            docs.add("Intro. " + fw + " outro.");
            contaminated.add(true);
            String[] w = q.split(" ");
            StringBuilder hy = new StringBuilder();                      // hyphen-joined words
            for (int i = 0; i < w.length; i++) hy.append(i == 0 ? "" : i % 3 == 0 ? "-" : " ").append(w[i]);
            docs.add("As noted, " + hy + ".");
            contaminated.add(true);
            StringBuilder lb = new StringBuilder();                      // line breaks, one hyphenated line end
            for (int i = 0; i < w.length; i++) {
                if (i == 4 && w[i].length() > 3) { lb.append(" ").append(w[i], 0, 2).append("-\n").append(w[i].substring(2)); continue; }
                lb.append(i == 0 ? "" : i % 4 == 0 ? "\n" : " ").append(w[i]);
            }
            docs.add("Quote:\n" + lb + "\nEnd.");
            contaminated.add(true);
            docs.add("Only nine: " + String.join(" ", Arrays.copyOfRange(w, 0, 9)) + " and then something else entirely.");
            contaminated.add(false);
        }
        Manifest m = prepare("zh", docs, base().withBenchmarks(List.of(benchFile)));
        long planted = contaminated.stream().filter(b -> b).count();
        assertEquals(20, planted);
        assertEquals(planted, m.dropped().get("decontaminated"), "every planted overlap is caught");
        assertEquals(docs.size() - planted, m.documents(), "every near miss survives");
        RefBpe ref = new RefBpe(TOKENIZER);
        List<int[]> kept = new ArrayList<>();
        for (int i = 0; i < docs.size(); i++) if (!contaminated.get(i)) kept.add(withEos(ref.encode(docs.get(i))));
        assertArrayEquals(concat(kept), readAll(tmp.resolve("p/zh")), "exactly the near misses are kept, in order");
        assertEquals(Decontaminator.N, m.decontamination().ngram());
        assertTrue(m.decontamination().normalization().contains("NFKC"));
    }

    /** Shingle set of whitespace-split words (the texts are lowercase words only): the exact-Jaccard reference. */
    private static Set<String> shingles(String doc, int k) {
        String[] w = doc.split(" ");
        Set<String> s = new HashSet<>();
        for (int i = 0; i + k <= w.length; i++) s.add(String.join(" ", Arrays.copyOfRange(w, i, i + k)));
        return s;
    }

    private static double jaccard(Set<String> a, Set<String> b) {
        Set<String> i = new HashSet<>(a);
        i.retainAll(b);
        return (double) i.size() / (a.size() + b.size() - i.size());
    }

    /**
     * 300 random documents plus planted variants: 60 near-duplicates (one word replaced, or words appended; exact
     * Jaccard 0.80-0.97) and 40 far variants (a quarter of the words replaced; Jaccard < 0.5). The reference labels a
     * document a near-duplicate when its exact Jaccard with an earlier kept document is >= 0.8. Measured here:
     * 59 true near-duplicates, 58 removed: precision 0.983, recall 0.966 (the asserted floor is 0.95 for both:
     * MinHash's standard error at J = 0.8 is 0.035,
     * so a pair near the threshold may land on either side). Across sources: a second source's copies are removed.
     */
    @Test
    void minHashRemovesPlantedNearDuplicatesWithStatedPrecisionAndRecall() throws IOException {
        Random r = new Random(5);
        String[] vocab = new String[400];
        for (int i = 0; i < vocab.length; i++) vocab[i] = "w" + Integer.toString(i * 7919 % 100_003, 36);
        List<String> docs = new ArrayList<>();
        for (int d = 0; d < 300; d++) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0, n = 60 + r.nextInt(60); i < n; i++) sb.append(i == 0 ? "" : " ").append(vocab[r.nextInt(vocab.length)]);
            docs.add(sb.toString());
        }
        for (int k = 0; k < 100; k++) {
            String[] w = docs.get(r.nextInt(300)).split(" ");
            if (k < 30) w[r.nextInt(w.length)] = "changed";                                   // near: one word replaced
            else if (k < 60) w = (String.join(" ", w) + " plus two").split(" ");             // near: two words appended
            else for (int i = 0; i < w.length; i += 4) w[i] = vocab[r.nextInt(vocab.length)]; // far: every 4th word replaced
            docs.add(r.nextInt(docs.size()), String.join(" ", w));
        }
        Manifest m = prepare("dd", docs, base().withDedup(new MinHashDedup.Params(5, 0.8, List.of())));
        // reference: in order, a document is a duplicate if exact J >= 0.8 with an earlier kept one
        List<Set<String>> keptSets = new ArrayList<>();
        Set<Integer> truth = new HashSet<>();
        for (int i = 0; i < docs.size(); i++) {
            Set<String> s = shingles(docs.get(i), 5);
            boolean dup = false;
            for (Set<String> k : keptSets) if (jaccard(s, k) >= 0.8) { dup = true; break; }
            if (dup) truth.add(i);
            else keptSets.add(s);
        }
        Set<Integer> removed = new HashSet<>();
        for (Manifest.Duplicate d : m.cleaning().dedup().duplicates()) removed.add(Integer.parseInt(d.where().substring(d.where().lastIndexOf(':') + 1)) - 1);
        Set<Integer> tp = new HashSet<>(removed);
        tp.retainAll(truth);
        double precision = (double) tp.size() / removed.size(), recall = (double) tp.size() / truth.size();
        System.out.printf("MinHash dedup: %d planted near-duplicates, %d removed, precision %.3f, recall %.3f%n", truth.size(), removed.size(), precision, recall);
        assertTrue(truth.size() >= 55 && truth.size() <= 62, "the plant: " + truth.size());
        assertTrue(precision >= 0.95 && recall >= 0.95, precision + " " + recall);
        assertEquals(removed.size(), m.dropped().get("near_duplicate"));
        assertEquals(removed.size(), m.cleaning().dedup().removed());
        assertEquals(16, m.cleaning().dedup().bands());
        assertEquals(8, m.cleaning().dedup().rows());
        assertTrue(Files.exists(tmp.resolve("p/dd").resolve(MinHashDedup.SIGNATURES_FILE)));

        // across sources: copies of three kept documents of dd, one new document
        List<String> second = List.of(docs.get(0), "a completely new document about nothing in particular at all", docs.get(10) + " tail", docs.get(20));
        Manifest m2 = prepare("dd2", second, base().withDedup(new MinHashDedup.Params(5, 0.8, List.of(tmp.resolve("p/dd")))));
        assertEquals(1, m2.documents());
        assertEquals(3L, m2.dropped().get("near_duplicate"));
        assertEquals("dd#0", m2.cleaning().dedup().duplicates().get(0).duplicateOf());
        assertEquals(1.0, m2.cleaning().dedup().duplicates().get(0).jaccard());
    }

    @Test
    void bosSpecialTokenStringsAsTextAndLeadingBom() throws IOException {
        RefBpe ref = new RefBpe(TOKENIZER);
        String a = "the photon<|end_of_text|> and <|begin_of_text|>x", b = "plain words";
        Manifest m = prepare("bos", List.of(a, b), base().withBos(Preparer.DEFAULT_BOS));
        int[] want = concat(List.of(new int[]{510}, withEos(ref.encode(a)), new int[]{510}, withEos(ref.encode(b))));
        assertArrayEquals(want, readAll(tmp.resolve("p/bos")), "BOS first; literal special strings encoded as plain text");
        assertEquals(510, m.cleaning().bosId());
        assertTrue(m.cleaning().specialTokensAsText());
        int[] parsed = readAll(prepare("sp", List.of(a), base().withParseSpecialTokens(true)) == null ? null : tmp.resolve("p/sp"));
        assertEquals(2, Arrays.stream(parsed).filter(t -> t == 511).count(), "asked for: the literal becomes end-of-text");
        assertTrue(Arrays.stream(parsed).anyMatch(t -> t == 510));

        Path bom = tmp.resolve("bom.jsonl");                              // a UTF-8 BOM before the first record
        byte[] body = ("{\"text\": " + json(b) + "}\n").getBytes(java.nio.charset.StandardCharsets.UTF_8);
        byte[] withBom = new byte[body.length + 3];
        withBom[0] = (byte) 0xEF; withBom[1] = (byte) 0xBB; withBom[2] = (byte) 0xBF;
        System.arraycopy(body, 0, withBom, 3, body.length);
        Files.write(bom, withBom);
        Preparer.run(Preparer.Options.of("bom", List.of(bom), TOKENIZER, tmp.resolve("p/bom")), quiet);
        assertArrayEquals(withEos(ref.encode(b)), readAll(tmp.resolve("p/bom")));
    }
}
