package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.AtomicFiles;
import dev.midtrain.common.LongMap;
import dev.midtrain.common.UserError;

import java.io.EOFException;
import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Exact n-gram decontamination over {@link TextUnits}: NFKC, lowercase, Chinese/Japanese/Thai characters as single
 * units, other words split on whitespace and dashes. A document is contaminated by a benchmark when they share one
 * n-gram: {@value #N} consecutive words, or, for a window that holds a character of a script without spaces,
 * {@value #N_CHAR} consecutive units (a Chinese sentence shares 13 characters, about 6-9 words). Both windows are
 * checked at every position, in documents and in benchmark items, so English words next to a Han, Kana or Thai
 * character still form 10-word n-grams.
 *
 * <p>Benchmark files are JSON Lines (plain or gzip'd, strict UTF-8, a leading BOM ignored). From each record the
 * fields text, question, answer and choices (strings or arrays of strings) are used when any is present; otherwise
 * every string value in the record (recursively). Each field contributes its own n-grams (none cross a field
 * boundary); items shorter than n units contribute none. A benchmark file without records is an error. Lookups hash
 * the n-gram (64-bit) and confirm a hit on the exact units, so a match is exact. Immutable after construction;
 * {@link #match} is thread-safe.
 */
public final class Decontaminator {
    /** Words per n-gram. */
    public static final int N = 10;
    /** Units per n-gram for a window holding a character of a script without spaces (Han, Kana, Thai...). */
    public static final int N_CHAR = 13;
    public static final String NORMALIZATION = TextUnits.RULES + "; n-grams of " + N + " words, or of " + N_CHAR
            + " units when the window holds a Han/Kana/Thai-type character";
    private static final List<String> QA_FIELDS = List.of("text", "question", "answer", "choices");

    private final List<Manifest.Benchmark> benchmarks;
    private final LongMap hashMask;                                 // n-gram hash -> benchmarks bitmask (prefilter; 0 = none)
    private final Map<String, Long> gramMask = new HashMap<>();    // exact n-gram ("u1 u2 ... un") -> bitmask

    private Decontaminator(List<Path> files) {
        if (files.size() > 64) throw new UserError("--decontaminate: at most 64 benchmark files");
        List<Manifest.Benchmark> out = new ArrayList<>();
        ObjectMapper json = Inputs.JSON;                              // strict: one value per line, no duplicate keys
        Map<Long, Long> hashes = new HashMap<>();
        for (int b = 0; b < files.size(); b++) {
            Path file = files.get(b);
            if (!Files.isRegularFile(file)) throw new UserError(file + ": benchmark file not found");
            long bit = 1L << b, items = 0;
            Map<String, Long> own = new HashMap<>();
            try (Inputs.Utf8Lines r = new Inputs.Utf8Lines(Inputs.openStream(file))) {
                long lineNo = 0;
                while (r.next()) {
                    lineNo++;
                    String line;
                    try {
                        line = r.text();
                    } catch (CharacterCodingException e) {
                        throw new UserError(file + ":" + lineNo + ": invalid UTF-8 in benchmark (byte " + r.firstInvalidByte() + " of the line)");
                    }
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
                        int bad = Inputs.loneSurrogate(t);
                        if (bad >= 0)
                            throw new UserError(file + ":" + lineNo + ": lone surrogate U+" + String.format("%04X", (int) t.charAt(bad))
                                    + " in benchmark text (not valid Unicode; an unpaired \\u escape in JSON)");
                        List<String> u = normalize(t);
                        int[] before = charsBefore(u);
                        for (int i = 0; i < u.size(); i++)
                            for (int n : WINDOWS)
                                if (isWindow(before, i, n)) own.put(String.join(" ", u.subList(i, i + n)), bit);
                    }
                }
            } catch (EOFException e) {
                throw new UserError(file + ": truncated gzip stream (" + e.getMessage() + ")");
            } catch (IOException e) {
                throw new UserError(file + ": cannot read benchmark: " + e.getMessage());
            }
            if (items == 0) throw new UserError(file + ": benchmark file has no records (it would decontaminate nothing)");
            for (String g : own.keySet()) {
                gramMask.merge(g, bit, (x, y) -> x | y);
                hashes.merge(hash(g.split(" ")), bit, (x, y) -> x | y);
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
        hashMask = new LongMap(Math.max(16, hashes.size()), 0);
        hashes.forEach(hashMask::put);
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

    /** The normalized units of {@code text} ({@link TextUnits#of}). */
    public static List<String> normalize(String text) { return TextUnits.of(text); }

    /** {@code before[i]} = units among the first i of {@code u} that are characters of a script without spaces. */
    private static int[] charsBefore(List<String> u) {
        int[] before = new int[u.size() + 1];
        for (int i = 0; i < u.size(); i++) {
            String x = u.get(i);
            before[i + 1] = before[i] + (x.length() <= 2 && TextUnits.isCharUnit(x) ? 1 : 0);   // a character unit is one code point
        }
        return before;
    }

    /** The two n-gram lengths, both checked at every position. */
    private static final int[] WINDOWS = {N, N_CHAR};

    /**
     * Whether units [i, i + n) are an n-gram: the {@value #N}-unit window when it holds no character of a script
     * without spaces ({@value #N} words), the {@value #N_CHAR}-unit window when it holds at least one. Both are checked
     * at every position, so 10 English words followed within 3 units by a Han, Kana or Thai character still form a
     * 10-word n-gram (before, the 13-unit window at that position hid it).
     */
    private static boolean isWindow(int[] before, int i, int n) {
        if (i + n >= before.length) return false;
        boolean anyChar = before[i + n] > before[i];
        return n == N_CHAR ? anyChar : !anyChar;
    }

    /** Bitmask of the benchmarks (bit b = the b-th file) sharing an n-gram with {@code text}; 0 when clean. */
    public long match(String text) { return match(normalize(text)); }

    /** As {@link #match(String)} for units already computed with {@link TextUnits#of}. */
    public long match(List<String> w) { return match(w, TextUnits.hashes(w)); }

    /** As {@link #match(List)} with the units' hashes ({@link TextUnits#hashes}) already computed. */
    public long match(List<String> w, long[] wh) {
        if (gramMask.isEmpty()) return 0;
        if (w.size() < N) return 0;
        int[] before = charsBefore(w);
        long mask = 0;
        for (int i = 0; i < wh.length; i++)
            for (int n : WINDOWS) {
                if (!isWindow(before, i, n)) continue;
                long m = hashMask.get(combine(wh, i, n));
                if (m == 0 || (mask | m) == mask) continue;
                Long exact = gramMask.get(String.join(" ", w.subList(i, i + n)));
                if (exact != null) mask |= exact;
            }
        return mask;
    }

    private static long hash(String[] words) {
        long[] wh = new long[words.length];
        for (int i = 0; i < wh.length; i++) wh[i] = wordHash(words[i]);
        return combine(wh, 0, wh.length);
    }

    private static long combine(long[] wh, int from, int n) {
        long h = 0x9E3779B97F4A7C15L + n;
        for (int k = 0; k < n; k++) h = LongMap.mix(h * 31 + wh[from + k]);
        return h;
    }

    static long wordHash(String s) {           // FNV-1a 64 over UTF-16 units, then a finalizer
        long h = 0xcbf29ce484222325L;
        for (int i = 0; i < s.length(); i++) {
            h ^= s.charAt(i);
            h *= 0x100000001b3L;
        }
        return LongMap.mix(h);
    }
}
