package dev.midtrain.data;

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

    /** The units of {@code text}, in order. */
    public static List<String> of(String text) {
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
        Character.UnicodeScript sc = Character.UnicodeScript.of(cp);
        return switch (sc) {
            case HAN, HIRAGANA, KATAKANA, BOPOMOFO, THAI, LAO, KHMER, MYANMAR -> true;
            default -> false;
        };
    }

    /** Whether a unit is one character of a script without spaces. */
    static boolean isCharUnit(String u) {
        return u.codePointCount(0, u.length()) == 1 && isNoSpaceScript(u.codePointAt(0));
    }
}
