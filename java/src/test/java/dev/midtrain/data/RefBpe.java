package dev.midtrain.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Independent reference for a byte-level BPE tokenizer.json with the Llama-3 pre-tokenizer: regex split (Java regex
 * with UNICODE_CHARACTER_CLASS), GPT-2 byte-to-unicode alphabet, merges applied lowest rank first. Naive and slow;
 * no special-token handling (tests append end-of-text themselves).
 */
public final class RefBpe {
    public static final Pattern LLAMA3 = Pattern.compile(
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            Pattern.UNICODE_CHARACTER_CLASS);
    private final Map<String, Integer> vocab = new HashMap<>();
    private final Map<String, Integer> rank = new HashMap<>();
    private final String[] byteChar = new String[256];

    public RefBpe(Path tokenizerJson) throws IOException {
        JsonNode j = new ObjectMapper().readTree(tokenizerJson.toFile());
        j.path("model").path("vocab").fields().forEachRemaining(e -> vocab.put(e.getKey(), e.getValue().asInt()));
        int r = 0;
        for (JsonNode m : j.path("model").path("merges")) {
            String key = m.isArray() ? m.get(0).asText() + " " + m.get(1).asText() : m.asText();
            rank.put(key, r++);
        }
        // GPT-2 bytes_to_unicode
        List<Integer> bs = new ArrayList<>();
        for (int b = '!'; b <= '~'; b++) bs.add(b);
        for (int b = 0xA1; b <= 0xAC; b++) bs.add(b);
        for (int b = 0xAE; b <= 0xFF; b++) bs.add(b);
        int n = 0;
        for (int b = 0; b < 256; b++) {
            if (bs.contains(b)) byteChar[b] = new String(Character.toChars(b));
            else byteChar[b] = new String(Character.toChars(256 + n++));
        }
    }

    public int[] encode(String text) {
        List<Integer> out = new ArrayList<>();
        Matcher m = LLAMA3.matcher(text);
        while (m.find()) {
            List<String> sym = new ArrayList<>();
            for (byte b : m.group().getBytes(StandardCharsets.UTF_8)) sym.add(byteChar[b & 0xff]);
            while (sym.size() > 1) {
                int best = -1, bestRank = Integer.MAX_VALUE;
                for (int i = 0; i + 1 < sym.size(); i++) {
                    Integer rk = rank.get(sym.get(i) + " " + sym.get(i + 1));
                    if (rk != null && rk < bestRank) {
                        bestRank = rk;
                        best = i;
                    }
                }
                if (best < 0) break;
                sym.set(best, sym.get(best) + sym.get(best + 1));
                sym.remove(best + 1);
            }
            for (String s : sym) {
                Integer id = vocab.get(s);
                if (id == null) throw new IllegalStateException("no id for " + s);
                out.add(id);
            }
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }
}
