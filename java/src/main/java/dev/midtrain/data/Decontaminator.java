package dev.midtrain.data;

import dev.midtrain.common.AtomicFiles;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.UserError;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Exact n-gram decontamination. Text is normalized to words: lowercased, every character that is not a letter, digit
 * or whitespace deleted ("don't" → "dont", "x^2" → "x2"), split on whitespace. A document is contaminated by a
 * benchmark when they share one n-gram ({@value #N} consecutive normalized words).
 *
 * <p>Benchmark files are JSON Lines (plain or gzip'd). From each record the fields text, question, answer and choices
 * (strings or arrays of strings) are used when any is present; otherwise every string value in the record
 * (recursively). Each field contributes its own n-grams (none cross a field boundary); items shorter than n words
 * contribute none. Lookups hash the n-gram (64-bit) and confirm a hit on the exact words, so a match is exact.
 * Immutable after construction; {@link #match} is thread-safe.
 */
public final class Decontaminator {
    public static final int N = 10;
    public static final String NORMALIZATION = "lowercase; delete characters that are not letters, digits or whitespace; split on whitespace";
    private static final List<String> QA_FIELDS = List.of("text", "question", "answer", "choices");

    private final List<Manifest.Benchmark> benchmarks;
    private final Map<Long, Long> hashMask = new HashMap<>();      // n-gram hash -> benchmarks bitmask (prefilter)
    private final Map<String, Long> gramMask = new HashMap<>();    // exact n-gram ("w1 w2 ... wN") -> bitmask

    private Decontaminator(List<Path> files) {
        if (files.size() > 64) throw new UserError("--decontaminate: at most 64 benchmark files");
        List<Manifest.Benchmark> out = new ArrayList<>();
        ObjectMapper json = new ObjectMapper();
        for (int b = 0; b < files.size(); b++) {
            Path file = files.get(b);
            long bit = 1L << b, items = 0;
            Map<String, Long> own = new HashMap<>();
            try (BufferedReader r = Inputs.openText(file)) {
                String line;
                long lineNo = 0;
                while ((line = r.readLine()) != null) {
                    lineNo++;
                    if (line.isBlank()) continue;
                    JsonNode rec;
                    try {
                        rec = json.readTree(line);
                    } catch (JsonProcessingException e) {
                        throw new UserError(file + ":" + lineNo + ": malformed JSON in benchmark: " + e.getOriginalMessage().split("\n")[0]);
                    }
                    if (!rec.isObject()) throw new UserError(file + ":" + lineNo + ": benchmark record is not a JSON object");
                    items++;
                    List<String> texts = new ArrayList<>();
                    boolean qa = QA_FIELDS.stream().anyMatch(rec::has);
                    if (qa) for (String f : QA_FIELDS) collectStrings(rec.get(f), texts);
                    else collectStrings(rec, texts);
                    for (String t : texts) {
                        List<String> w = normalize(t);
                        for (int i = 0; i + N <= w.size(); i++) own.put(String.join(" ", w.subList(i, i + N)), bit);
                    }
                }
            } catch (IOException e) {
                throw new UserError(file + ": cannot read benchmark: " + e.getMessage());
            }
            for (String g : own.keySet()) {
                gramMask.merge(g, bit, (x, y) -> x | y);
                hashMask.merge(hash(g.split(" ")), bit, (x, y) -> x | y);
            }
            String sha;
            try {
                sha = AtomicFiles.sha256(file);
            } catch (IOException e) {
                throw new UserError(file + ": cannot read benchmark: " + e.getMessage());
            }
            out.add(new Manifest.Benchmark(file.toString(), sha, items, own.size(), 0));
        }
        this.benchmarks = List.copyOf(out);
    }

    /** Loads the benchmark files; a malformed line is a {@link UserError} naming file:line. */
    public static Decontaminator load(List<Path> files) { return new Decontaminator(files); }

    /** The benchmarks in load order (documentsRemoved = 0: the caller counts). */
    public List<Manifest.Benchmark> benchmarks() { return benchmarks; }

    private static void collectStrings(JsonNode n, List<String> out) {
        if (n == null) return;
        if (n.isTextual()) out.add(n.asText());
        else if (n.isContainerNode()) n.elements().forEachRemaining(c -> collectStrings(c, out));
    }

    /** The normalized words of {@code text}. */
    public static List<String> normalize(String text) {
        List<String> words = new ArrayList<>();
        StringBuilder w = new StringBuilder();
        String lower = text.toLowerCase(Locale.ROOT);
        for (int i = 0; i < lower.length(); ) {
            int cp = lower.codePointAt(i);
            i += Character.charCount(cp);
            if (Character.isLetterOrDigit(cp)) w.appendCodePoint(cp);
            else if (Character.isWhitespace(cp) || Character.isSpaceChar(cp)) {
                if (w.length() > 0) {
                    words.add(w.toString());
                    w.setLength(0);
                }
            }
        }
        if (w.length() > 0) words.add(w.toString());
        return words;
    }

    /** Bitmask of the benchmarks (bit b = the b-th file) sharing an n-gram with {@code text}; 0 when clean. */
    public long match(String text) {
        if (gramMask.isEmpty()) return 0;
        List<String> w = normalize(text);
        if (w.size() < N) return 0;
        long[] wh = new long[w.size()];
        for (int i = 0; i < wh.length; i++) wh[i] = wordHash(w.get(i));
        long mask = 0;
        for (int i = 0; i + N <= wh.length; i++) {
            Long m = hashMask.get(combine(wh, i));
            if (m == null || (mask | m) == mask) continue;
            Long exact = gramMask.get(String.join(" ", w.subList(i, i + N)));
            if (exact != null) mask |= exact;
        }
        return mask;
    }

    private static long hash(String[] words) {
        long[] wh = new long[words.length];
        for (int i = 0; i < wh.length; i++) wh[i] = wordHash(words[i]);
        return combine(wh, 0);
    }

    private static long combine(long[] wh, int from) {
        long h = 0x9E3779B97F4A7C15L;
        for (int k = 0; k < N; k++) h = mix(h * 31 + wh[from + k]);
        return h;
    }

    private static long wordHash(String s) {   // FNV-1a 64 over UTF-16 units, then a finalizer
        long h = 0xcbf29ce484222325L;
        for (int i = 0; i < s.length(); i++) {
            h ^= s.charAt(i);
            h *= 0x100000001b3L;
        }
        return mix(h);
    }

    private static long mix(long z) {          // splitmix64 finalizer
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }
}
