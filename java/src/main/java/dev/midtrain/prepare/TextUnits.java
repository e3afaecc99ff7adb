package dev.midtrain.prepare;

import java.text.Normalizer;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The normalized units of a text that decontamination and near-duplicate detection compare:
 * <ol>
 *   <li>Unicode NFKC (full-width ＡＢＣ１２ becomes ABC12, ligatures and compatibility forms fold), then lowercase;</li>
 *   <li>a letter or digit of a script written without spaces (Han, Hiragana, Katakana, Bopomofo, Thai, Lao, Khmer,
 *       Myanmar) is a unit by itself: Chinese text becomes a sequence of characters;</li>
 *   <li>other runs of letters and digits are words; whitespace and dashes (hyphen, en/em dash, any Unicode dash
 *       punctuation) separate words, so "state-of-the-art" is four words; a hyphen directly before a line break is a
 *       soft hyphenation and joins its two halves ("photo-\nsynthesis" is "photosynthesis");</li>
 *   <li>every other character (punctuation, symbols, marks) is deleted without separating: "don't" is "dont",
 *       "x^2" is "x2".</li>
 * </ol>
 */
public final class TextUnits {
    private TextUnits() {}

    public static final String RULES = "NFKC; lowercase; each Han/Kana/Bopomofo/Thai/Lao/Khmer/Myanmar letter is a unit; other letter/digit runs"
            + " are words split on whitespace and dashes (a hyphen before a line break joins); other characters deleted";

    // ASCII classes of the rules above: letter or digit, space (Character.isWhitespace / isSpaceChar), dash, other
    private static final byte OTHER = 0, WORD = 1, SPACE = 2, DASH = 3;
    private static final byte[] ASCII = new byte[128];

    static {
        for (int c = 0; c < 128; c++)
            ASCII[c] = Character.isLetterOrDigit(c) ? WORD : Character.isWhitespace(c) || Character.isSpaceChar(c) ? SPACE
                    : Character.getType(c) == Character.DASH_PUNCTUATION ? DASH : OTHER;
    }

    /** The units of {@code text}, in order. */
    public static List<String> of(String text) {
        boolean ascii = true;
        for (int i = 0, n = text.length(); i < n && ascii; i++) ascii = text.charAt(i) < 128;
        return ascii ? ofAscii(text) : ofUnicode(text);
    }

    /** {@link #of} for text of ASCII characters only (NFKC leaves them as they are; lowercase is per character). */
    private static List<String> ofAscii(String s) {
        List<String> out = new ArrayList<>();
        int n = s.length();
        char[] w = new char[Math.min(n, 256)];
        int wl = 0;
        for (int i = 0; i < n; ) {
            char c = s.charAt(i++);
            switch (ASCII[c]) {
                case WORD -> {
                    if (wl == w.length) w = java.util.Arrays.copyOf(w, 2 * wl);
                    w[wl++] = c >= 'A' && c <= 'Z' ? (char) (c + 32) : c;
                }
                case SPACE -> {
                    if (wl > 0) out.add(new String(w, 0, wl));
                    wl = 0;
                }
                case DASH -> {
                    int j = i;                                        // soft hyphen at a line break: join the halves
                    while (j < n && (s.charAt(j) == ' ' || s.charAt(j) == '\t' || s.charAt(j) == '\r')) j++;
                    if (wl > 0 && j < n && s.charAt(j) == '\n') {
                        j++;
                        while (j < n && Character.isWhitespace(s.charAt(j))) j++;
                        i = j;
                    } else {
                        if (wl > 0) out.add(new String(w, 0, wl));
                        wl = 0;
                    }
                }
                default -> { }
            }
        }
        if (wl > 0) out.add(new String(w, 0, wl));
        return out;
    }

    private static List<String> ofUnicode(String text) {
        String s = Normalizer.isNormalized(text, Normalizer.Form.NFKC) ? text : Normalizer.normalize(text, Normalizer.Form.NFKC);
        s = s.toLowerCase(Locale.ROOT);
        List<String> out = new ArrayList<>();
        StringBuilder w = new StringBuilder();
        int n = s.length();
        for (int i = 0; i < n; ) {
            int cp = s.codePointAt(i);
            i += Character.charCount(cp);
            if (Character.isLetterOrDigit(cp)) {
                if (isNoSpaceScript(cp)) {
                    flush(w, out);
                    out.add(new String(Character.toChars(cp)));
                } else w.appendCodePoint(cp);
            } else if (Character.isWhitespace(cp) || Character.isSpaceChar(cp)) {
                flush(w, out);
            } else if (Character.getType(cp) == Character.DASH_PUNCTUATION) {
                int j = i;                                            // soft hyphen at a line break: join the halves
                while (j < n && (s.charAt(j) == ' ' || s.charAt(j) == '\t' || s.charAt(j) == '\r')) j++;
                if (w.length() > 0 && j < n && s.charAt(j) == '\n') {
                    j++;
                    while (j < n && Character.isWhitespace(s.charAt(j))) j++;
                    i = j;
                } else flush(w, out);
            }
        }
        flush(w, out);
        return out;
    }

    private static void flush(StringBuilder w, List<String> out) {
        if (w.length() > 0) {
            out.add(w.toString());
            w.setLength(0);
        }
    }

    /** Scripts written without spaces between words: each of their letters is a unit. */
    static boolean isNoSpaceScript(int cp) {
        if (cp < 0x0E00) return false;                                // Thai, the first of these scripts, starts at U+0E00
        Character.UnicodeScript sc = Character.UnicodeScript.of(cp);
        return switch (sc) {
            case HAN, HIRAGANA, KATAKANA, BOPOMOFO, THAI, LAO, KHMER, MYANMAR -> true;
            default -> false;
        };
    }

    /** The 64-bit hash of each unit (decontamination's and near-duplicate detection's input). */
    public static long[] hashes(List<String> units) {
        long[] h = new long[units.size()];
        for (int i = 0; i < h.length; i++) h[i] = Decontaminator.wordHash(units.get(i));
        return h;
    }

    /** Whether a unit is one character of a script without spaces. */
    static boolean isCharUnit(String u) {
        return u.codePointCount(0, u.length()) == 1 && isNoSpaceScript(u.codePointAt(0));
    }
}
