package dev.midtrain.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.LongMap;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * prepare's own encoder for the tokenizer.json layout Llama-3 uses, giving the token ids Hugging Face
 * {@code tokenizers} gives (tested against it through DJL on the samples, adversarial text and every assigned code
 * point): no normalizer; pre-tokenizer = the Llama-3 split regex (Isolated) then ByteLevel without prefix space or
 * regex; model = BPE over the GPT-2 byte alphabet (no dropout, no subword prefix or suffix, no byte fallback,
 * {@code ignore_merges} honoured); added tokens all special without strip or single-word flags. Any other
 * tokenizer.json makes {@link #load} return null and prepare encodes through DJL.
 *
 * <p>Why: the Rust library spends most of its time in its regex engine and in the offset bookkeeping of its
 * normalized strings, which prepare does not need. Here the split is a hand-written scanner equivalent to the regex
 * {@value #LLAMA3_SPLIT} (alternatives tried in order, leftmost-first as the regex engine does, see {@link #preToken}),
 * and each pre-token's ids are cached per thread. Character classes come from {@link Character} (Java 17: Unicode 13):
 * a document holding a code point that Java does not know (unassigned in Unicode 13, or a lone surrogate) is not
 * encoded here ({@link Encoder#encode} returns null) and prepare hands it to DJL, so a newer Unicode in the Rust
 * library cannot change a document's ids.
 */
public final class ByteLevelBpe {
    /** The pre-tokenizer regex of Llama-3's tokenizer.json (the only one this encoder implements). */
    public static final String LLAMA3_SPLIT =
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private static final int MAX_CACHED_CHARS = 64, MAX_CACHE_ENTRIES = 1 << 16;   // per worker thread: a few MB
    private static final long NO_MERGE = Long.MIN_VALUE;

    private final int[] byteId = new int[256];         // id of the byte-level symbol of each byte
    private final String[] byteChar = new String[256];  // GPT-2 bytes_to_unicode
    private final LongMap merges;                        // (left id << 32 | right id) -> (rank << 32 | merged id)
    private final Map<String, Integer> vocab;            // byte-level string -> id (for ignore_merges)
    private final boolean ignoreMerges;
    private final String[] specials;                     // added special tokens, longest first
    private final int[] specialIds;
    private final boolean[] specialFirst = new boolean[1 << 16];   // first chars of the special tokens

    private ByteLevelBpe(int[] byteId, String[] byteChar, LongMap merges, Map<String, Integer> vocab, boolean ignoreMerges,
                         String[] specials, int[] specialIds) {
        System.arraycopy(byteId, 0, this.byteId, 0, 256);
        System.arraycopy(byteChar, 0, this.byteChar, 0, 256);
        this.merges = merges;
        this.vocab = vocab;
        this.ignoreMerges = ignoreMerges;
        this.specials = specials;
        this.specialIds = specialIds;
        for (String t : specials) specialFirst[t.charAt(0)] = true;
    }

    /** {@link #load}'s answer: the encoder, or null and why this tokenizer.json is not one it implements. */
    public record Loaded(ByteLevelBpe encoder, String refusal) {}

    /** The encoder for {@code file}, or why not (a layout other than the one described above, or unreadable). */
    public static Loaded load(Path file) {
        JsonNode j;
        try {
            j = new ObjectMapper().readTree(file.toFile());
        } catch (IOException | RuntimeException e) {
            return refuse("unreadable: " + e.getMessage());
        }
        if (!j.path("normalizer").isNull() && !j.path("normalizer").isMissingNode()) return refuse("has a normalizer");
        JsonNode pre = j.path("pre_tokenizer");
        JsonNode seq = pre.path("pretokenizers");
        if (!pre.path("type").asText().equals("Sequence") || seq.size() != 2) return refuse("pre_tokenizer is not Sequence[Split, ByteLevel]");
        JsonNode split = seq.get(0), bl = seq.get(1);
        if (!split.path("type").asText().equals("Split") || !split.path("pattern").path("Regex").asText().equals(LLAMA3_SPLIT)
                || !split.path("behavior").asText().equals("Isolated") || split.path("invert").asBoolean(true))
            return refuse("split is not the Llama-3 regex, Isolated");
        if (!bl.path("type").asText().equals("ByteLevel") || bl.path("add_prefix_space").asBoolean(true) || bl.path("use_regex").asBoolean(true))
            return refuse("ByteLevel pre-tokenizer with prefix space or regex");
        JsonNode m = j.path("model");
        if (!m.path("type").asText("BPE").equals("BPE")) return refuse("model is not BPE");
        if (!m.path("dropout").isNull() && !m.path("dropout").isMissingNode()) return refuse("BPE dropout");
        if (!m.path("continuing_subword_prefix").asText("").isEmpty() || !m.path("end_of_word_suffix").asText("").isEmpty())
            return refuse("BPE subword prefix/suffix");
        if (m.path("byte_fallback").asBoolean(false)) return refuse("BPE byte fallback");
        boolean ignoreMerges = m.path("ignore_merges").asBoolean(false);
        Map<String, Integer> vocab = new HashMap<>();
        m.path("vocab").fields().forEachRemaining(e -> vocab.put(e.getKey(), e.getValue().asInt()));
        String[] byteChar = bytesToUnicode();
        int[] byteId = new int[256];
        for (int b = 0; b < 256; b++) {
            Integer id = vocab.get(byteChar[b]);
            if (id == null) return refuse("byte " + b + " has no token");
            byteId[b] = id;
        }
        JsonNode ms = m.path("merges");
        LongMap merges = new LongMap(Math.max(16, ms.size()), NO_MERGE);
        int rank = 0;
        for (JsonNode x : ms) {
            String a, b;
            if (x.isArray() && x.size() == 2) {
                a = x.get(0).asText();
                b = x.get(1).asText();
            } else {
                String s = x.asText();
                int sp = s.indexOf(' ');
                if (sp < 0 || s.indexOf(' ', sp + 1) >= 0) return refuse("merge \"" + s + "\" is not two symbols");
                a = s.substring(0, sp);
                b = s.substring(sp + 1);
            }
            Integer ia = vocab.get(a), ib = vocab.get(b), ic = vocab.get(a + b);
            if (ia == null || ib == null || ic == null) return refuse("merge " + a + " " + b + " outside the vocabulary");
            long key = (long) ia << 32 | (ib & 0xffffffffL);
            if (merges.get(key) == NO_MERGE) merges.put(key, (long) rank << 32 | (ic & 0xffffffffL));   // first rank wins, as in HF
            rank++;
        }
        List<String> sp = new ArrayList<>();
        List<Integer> spIds = new ArrayList<>();
        for (JsonNode a : j.path("added_tokens")) {
            if (!a.path("special").asBoolean(false) || a.path("lstrip").asBoolean(false) || a.path("rstrip").asBoolean(false)
                    || a.path("single_word").asBoolean(false)) return refuse("added token " + a.path("content").asText() + " is not plain special");
            if (a.path("content").asText().isEmpty()) return refuse("empty added token");
            sp.add(a.path("content").asText());
            spIds.add(a.path("id").asInt());
        }
        Integer[] order = new Integer[sp.size()];
        for (int i = 0; i < order.length; i++) order[i] = i;
        Arrays.sort(order, (x, y) -> sp.get(y).length() - sp.get(x).length());
        String[] specials = new String[order.length];
        int[] specialIds = new int[order.length];
        for (int i = 0; i < order.length; i++) {
            specials[i] = sp.get(order[i]);
            specialIds[i] = spIds.get(order[i]);
        }
        return new Loaded(new ByteLevelBpe(byteId, byteChar, merges, vocab, ignoreMerges, specials, specialIds), null);
    }

    private static Loaded refuse(String why) { return new Loaded(null, why); }

    /** GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the others to U+0100 onwards. */
    static String[] bytesToUnicode() {
        String[] out = new String[256];
        int n = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            out[b] = String.valueOf((char) (printable ? b : 256 + n++));
        }
        return out;
    }

    /** A new per-thread encoder (it caches pre-token ids; not thread-safe). */
    public Encoder encoder() { return new Encoder(); }

    // ---- character classes (Unicode general categories as the regex's \p{L}, \p{N}; \s = White_Space) ----

    private static final int L = 1, N = 2, WS = 4, NL = 8, BAD = 16;
    private static final byte[] ASCII = new byte[128];

    static {
        for (int c = 0; c < 128; c++) ASCII[c] = (byte) classify(c);
    }

    private static int classify(int cp) {
        if (cp == '\r' || cp == '\n') return WS | NL;
        if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A)
                || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000) return WS;
        return switch (Character.getType(cp)) {
            case Character.UPPERCASE_LETTER, Character.LOWERCASE_LETTER, Character.TITLECASE_LETTER, Character.MODIFIER_LETTER,
                    Character.OTHER_LETTER -> L;
            case Character.DECIMAL_DIGIT_NUMBER, Character.LETTER_NUMBER, Character.OTHER_NUMBER -> N;
            case Character.UNASSIGNED, Character.SURROGATE -> BAD;
            default -> 0;
        };
    }

    /**
     * End (exclusive char index) of the pre-token starting at {@code i} of {@code s} (up to {@code n}), as the regex
     * {@value #LLAMA3_SPLIT} matches at i. {@code k[]} holds the class bits of each char (both chars of a supplementary
     * code point hold its class, so runs of a class never stop inside one).
     */
    static int preToken(char[] s, byte[] k, int i, int n) {
        char c = s[i];
        int ci = Character.isHighSurrogate(c) && i + 1 < n ? 2 : 1;
        int kc = k[i];
        // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)  (case folding: 'ſ' folds to s)
        if (c == '\'' && i + 1 < n) {
            char d = s[i + 1];
            switch (d) {
                case 's', 'S', '\u017F', 't', 'T', 'm', 'M', 'd', 'D' -> { return i + 2; }
                case 'r', 'R', 'v', 'V' -> { if (i + 2 < n && (s[i + 2] | 0x20) == 'e') return i + 3; }
                case 'l', 'L' -> { if (i + 2 < n && (s[i + 2] | 0x20) == 'l') return i + 3; }
                default -> { }
            }
        }
        // 2. [^\r\n\p{L}\p{N}]?\p{L}+
        if ((kc & L) != 0) return letters(k, i + ci, n);
        if ((kc & (NL | N)) == 0 && i + ci < n && (k[i + ci] & L) != 0) return letters(k, i + ci, n);
        // 3. \p{N}{1,3}
        if ((kc & N) != 0) {
            int j = i + ci;
            for (int r = 1; r < 3 && j < n && (k[j] & N) != 0; r++) j += width(s, j, n);
            return j;
        }
        // 4.  ?[^\s\p{L}\p{N}]+[\r\n]*
        int p = c == ' ' ? i + 1 : i;
        if (p < n && (k[p] & (WS | L | N)) == 0) {
            while (p < n && (k[p] & (WS | L | N)) == 0) p += width(s, p, n);
            while (p < n && (k[p] & NL) != 0) p++;
            return p;
        }
        // only whitespace is left: j = end of the run, lastNl = its last \r or \n
        int j = i, lastNl = -1;
        while (j < n && (k[j] & WS) != 0) {
            if ((k[j] & NL) != 0) lastNl = j;
            j++;                                                   // White_Space is all in the BMP
        }
        if (lastNl >= 0) return lastNl + 1;                        // 5. \s*[\r\n]+
        if (j == n || j - i < 2) return j;                         // 6. \s+(?!\S) at the end; 7. \s+
        return j - 1;                                              // 6. \s+(?!\S): leave one space to the next word
    }

    private static int letters(byte[] k, int j, int n) {
        while (j < n && (k[j] & L) != 0) j++;
        return j;
    }

    private static int width(char[] s, int j, int n) { return Character.isHighSurrogate(s[j]) && j + 1 < n ? 2 : 1; }

    /** Per-thread encoder state: a cache of pre-token ids and scratch arrays. */
    public final class Encoder {
        // pre-token -> ids cache: open addressing on the pre-token's chars (no substring made for a hit)
        private char[][] keys = new char[1 << 12][];
        private int[] hashes = new int[1 << 12];
        private int[][] vals = new int[1 << 12][];
        private int cached;
        private byte[] k = new byte[256];
        private char[] chars = new char[256];                  // the text being encoded
        private int[] out = new int[256];
        private int outLen;
        private byte[] utf8 = new byte[64];

        /**
         * Token ids of {@code text}, no special tokens added; special-token strings in it become their tokens when
         * {@code parseSpecial}, plain text otherwise. Null when the text holds a code point unknown to this JVM's
         * Unicode tables (or a lone surrogate): encode it with the Rust library instead.
         */
        public int[] encode(String text, boolean parseSpecial) {
            int n = text.length();
            if (k.length < n) {
                k = new byte[Math.max(n, 2 * k.length)];
                chars = new char[k.length];
            }
            text.getChars(0, n, chars, 0);
            char[] s = chars;
            byte[] kk = k;
            for (int i = 0; i < n; ) {
                char c = s[i];
                if (c < 128) {
                    kk[i++] = ASCII[c];
                    continue;
                }
                int cp = Character.codePointAt(s, i, n);
                int w = Character.charCount(cp);
                int kc = classify(cp);
                if ((kc & BAD) != 0) return null;
                k[i] = (byte) kc;
                if (w == 2) k[i + 1] = (byte) kc;                     // a supplementary code point: both chars hold its class
                i += w;
            }
            outLen = 0;
            if (!parseSpecial || specials.length == 0) encodeRange(text, 0, n);
            else {
                int from = 0;
                for (int i = 0; i < n; i++) {
                    int sp = specialAt(text, i);
                    if (sp < 0) continue;
                    encodeRange(text, from, i);
                    push(specialIds[sp]);
                    i += specials[sp].length();
                    from = i;
                    i--;
                }
                encodeRange(text, from, n);
            }
            return Arrays.copyOf(out, outLen);
        }

        /** The longest special token starting at i (leftmost-longest, as HF's added-token matcher), or -1. */
        private int specialAt(String text, int i) {
            char c = text.charAt(i);
            if (!specialFirst[c]) return -1;
            for (int t = 0; t < specials.length; t++) if (specials[t].charAt(0) == c && text.startsWith(specials[t], i)) return t;
            return -1;
        }

        private void encodeRange(String text, int from, int to) {
            char[] s = chars;
            for (int i = from; i < to; ) {
                int e = preToken(s, k, i, to);
                word(s, i, e);
                i = e;
            }
        }

        private void word(char[] s, int from, int to) {
            int len = to - from;
            if (len > MAX_CACHED_CHARS) {
                for (int id : bpe(s, from, to)) push(id);
                return;
            }
            int h = 0;
            for (int i = from; i < to; i++) h = 31 * h + s[i];
            int mask = keys.length - 1, i = (int) LongMap.mix(h) & mask;
            for (char[] key; (key = keys[i]) != null; i = (i + 1) & mask) {
                if (hashes[i] == h && Arrays.equals(key, 0, key.length, s, from, to)) {
                    for (int id : vals[i]) push(id);
                    return;
                }
            }
            int[] ids = bpe(s, from, to);
            for (int id : ids) push(id);
            if (2 * (cached + 1) > keys.length) {
                if (keys.length >= 2 * MAX_CACHE_ENTRIES) resize(keys.length); else resize(2 * keys.length);   // full: start over
                mask = keys.length - 1;
                i = (int) LongMap.mix(h) & mask;
                while (keys[i] != null) i = (i + 1) & mask;
            }
            keys[i] = Arrays.copyOfRange(s, from, to);
            hashes[i] = h;
            vals[i] = ids;
            cached++;
        }

        /** A cache table of {@code cap} slots, keeping the entries when it grows, empty when it is full already. */
        private void resize(int cap) {
            char[][] ok = keys;
            int[] oh = hashes;
            int[][] ov = vals;
            keys = new char[cap][];
            hashes = new int[cap];
            vals = new int[cap][];
            boolean keep = cap > ok.length;
            cached = 0;
            if (!keep) return;
            for (int j = 0; j < ok.length; j++) {
                if (ok[j] == null) continue;
                int i = (int) LongMap.mix(oh[j]) & (cap - 1);
                while (keys[i] != null) i = (i + 1) & (cap - 1);
                keys[i] = ok[j];
                hashes[i] = oh[j];
                vals[i] = ov[j];
                cached++;
            }
        }

        private void push(int id) {
            if (outLen == out.length) out = Arrays.copyOf(out, 2 * out.length);
            out[outLen++] = id;
        }

        /** BPE of one pre-token: its UTF-8 bytes as byte-level symbols, merged lowest rank first (leftmost on ties). */
        private int[] bpe(char[] s, int from, int to) {
            byte[] b = new String(s, from, to - from).getBytes(StandardCharsets.UTF_8);
            int n = b.length;
            if (ignoreMerges) {
                StringBuilder sb = new StringBuilder(n);
                for (byte x : b) sb.append(byteChar[x & 0xff]);
                Integer whole = vocab.get(sb.toString());
                if (whole != null) return new int[]{whole};
            }
            int[] sym = new int[n], next = new int[n], prev = new int[n];
            for (int i = 0; i < n; i++) {
                sym[i] = byteId[b[i] & 0xff];
                next[i] = i + 1 < n ? i + 1 : -1;
                prev[i] = i - 1;
            }
            // heap of (rank << 32 | left position): the pair at a position is live while its rank still matches
            long[] heap = new long[Math.max(1, n)];
            int size = 0;
            for (int i = 0; i + 1 < n; i++) {
                long v = merges.get((long) sym[i] << 32 | (sym[i + 1] & 0xffffffffL));
                if (v != NO_MERGE) size = heapPush(heap, size, (v & 0xffffffff00000000L) | i);
            }
            int count = n;
            while (size > 0) {
                long top = heap[0];
                size = heapPop(heap, size);
                int pos = (int) top, r = (int) (top >>> 32);
                if (sym[pos] < 0 || next[pos] < 0) continue;
                int q = next[pos];
                long v = merges.get((long) sym[pos] << 32 | (sym[q] & 0xffffffffL));
                if (v == NO_MERGE || (int) (v >>> 32) != r) continue;           // stale entry
                sym[pos] = (int) v;
                sym[q] = -1;
                next[pos] = next[q];
                if (next[q] >= 0) prev[next[q]] = pos;
                count--;
                if (heap.length < size + 2) heap = Arrays.copyOf(heap, 2 * heap.length + 2);
                if (prev[pos] >= 0) {
                    int a = prev[pos];
                    long u = merges.get((long) sym[a] << 32 | (sym[pos] & 0xffffffffL));
                    if (u != NO_MERGE) size = heapPush(heap, size, (u & 0xffffffff00000000L) | a);
                }
                if (next[pos] >= 0) {
                    long u = merges.get((long) sym[pos] << 32 | (sym[next[pos]] & 0xffffffffL));
                    if (u != NO_MERGE) size = heapPush(heap, size, (u & 0xffffffff00000000L) | pos);
                }
            }
            int[] ids = new int[count];
            int o = 0;
            for (int i = 0; i >= 0; i = next[i]) ids[o++] = sym[i];
            return ids;
        }
    }

    private static int heapPush(long[] h, int size, long v) {
        int i = size++;
        while (i > 0) {
            int p = (i - 1) >>> 1;
            if (h[p] <= v) break;
            h[i] = h[p];
            i = p;
        }
        h[i] = v;
        return size;
    }

    private static int heapPop(long[] h, int size) {
        long v = h[--size];
        int i = 0;
        while (true) {
            int c = 2 * i + 1;
            if (c >= size) break;
            if (c + 1 < size && h[c + 1] < h[c]) c++;
            if (h[c] >= v) break;
            h[i] = h[c];
            i = c;
        }
        h[i] = v;
        return size;
    }
}
