package dev.midtrain.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import dev.midtrain.data.TestData;

import static dev.midtrain.data.TestData.TOKENIZER;
import static org.junit.jupiter.api.Assertions.*;

/**
 * prepare's built-in encoder ({@link ByteLevelBpe}) against the Rust Hugging Face tokenizers library (through DJL,
 * the encoder prepare used before): the same ids for the shipped samples, adversarial text, every code point Java 17
 * knows in several contexts, and random text, with special-token strings as plain text ({@link Tokenizer#encodePlain})
 * and as special tokens ({@link Tokenizer#encode}). On the shipped tokenizer, and on Meta-Llama-3's when it is present
 * (see {@link Llama3TokenizerTest}).
 */
class ByteLevelBpeTest {
    @TempDir Path tmp;

    static final List<String> ADVERSARIAL = List.of(
            "", " ", "  ", "\n", "\r\n\r\n  \n", "   leading", "trailing   ", "a  b   c\t\td", "x \n\n y \n",
            "<|end_of_text|>", "x<|end_of_text|>y", "<|begin_of_text|><|end_of_text|>", " <|end_of_text|> ", "!!<|begin_of_text|>!!",
            "<|end_of_text", "<|<|end_of_text|>|>", "<|eot_id|> <|start_header_id|>user<|end_header_id|>", "<|reserved_special_token_5|>x",
            "don't I'LL we'Re it'S 'ſ x'ſ 'd'd''s ''''", "'", "'s", "''ll", "O'Neill's 'VE 'Ve",
            "1234567 12,345.678 ١٢٣٤٥ ½ ⅔ Ⅻ 2\u00B3 0x1F", "3.14159e-10",
            "光合作用是植物、藻类利用光能。日本語のテキスト、カタカナ。한국어 텍스트입니다. ภาษาไทย",
            "👋🏽 👨‍👩‍👧 🇨🇳 ❤️ 😀😀😀 a😀b", "e\u0301 a\u0308\u0308 ﬁ ǅ", "𝐀𝐁𝐂 𝟏𝟐𝟑 𝔘𝔫𝔦",
            "a\r\rb\n \n c \r\n\t\nd", " \u0085x\u2028y\u2029z\u202F\u205F\u3000w\u1680v\u180Eu\u200Bt\u00A0s\u2007",
            "\uFEFFbom \u0000\u0001\u001F\u007F ctrl \u001C\u001D sep", "\uE000 private \uDB80\uDC00",
            "ÀÉÎÕÜ àéîõü ß ẞ ǆ Ǆ İı", "Ωμέγα καί ΣΊΣΥΦΟΣ", "привет, мир! Ёж", "שלום עולם ١٢ مرحبا",
            "email@example.com http://x.y/z?q=1&r=2#f", "$$\\frac{a}{b}$$ x^2 + y_1 = {z}", "...,,,;;;!!!???",
            "a".repeat(100_000), "1".repeat(10_001), " ".repeat(5000) + "x", "!".repeat(7000) + "\n\n", "ab".repeat(30_000),
            "\t".repeat(300) + "\n".repeat(300) + "word");

    private static List<Path> tokenizers() {
        List<Path> out = new ArrayList<>(List.of(TOKENIZER));
        Path llama = TestData.llama3Tokenizer();
        if (llama != null) out.add(llama);
        return out;
    }

    private static final Map<Path, Tokenizer> OPEN = new HashMap<>();

    private static Tokenizer tok(Path file) { return OPEN.computeIfAbsent(file, f -> Tokenizer.open(f, "<|end_of_text|>")); }

    @AfterAll
    static void close() {
        OPEN.values().forEach(Tokenizer::close);
        OPEN.clear();
    }

    /** Asserts both modes give the Rust library's ids for each text (the ByteLevelBpe must handle the file). */
    private static void assertSame(Path file, List<String> texts) { assertSame(file, texts, true); }

    private static void assertSame(Path file, List<String> texts, boolean specialsToo) {
        Tokenizer tok = tok(file);
        assertNotNull(tok.fast, file + ": " + tok.encoderName());
        ByteLevelBpe.Encoder enc = tok.fast.encoder();
        for (String t : texts) {
            String what = file + ": " + (t.length() > 60 ? t.substring(0, 60) + "..." : t);
            int[] plain = tok.encodePlain(t);
            assertArrayEquals(plain, enc.encode(t, false), "plain " + what);
            assertArrayEquals(plain, tok.encodeDocument(t, true), "document " + what);
            if (specialsToo) assertArrayEquals(tok.encode(t), enc.encode(t, true), "special " + what);
        }
    }

    @Test
    void shippedSamplesEncodeAsHuggingFaceTokenizers() throws IOException {
        List<String> texts = new ArrayList<>();
        ObjectMapper om = new ObjectMapper();
        for (String f : List.of("data/knowedu/sample.jsonl", "data/boostqa/sample.jsonl", "data/benchmarks/sample_bench.jsonl",
                "data/eval-sample/dev.jsonl", "data/eval-sample/test.jsonl"))
            for (String line : Files.readAllLines(Path.of(f)))
                if (!line.isBlank()) collect(om.readTree(line), texts);
        assertTrue(texts.size() > 1000, "texts: " + texts.size());
        for (Path file : tokenizers()) assertSame(file, texts);
    }

    private static void collect(JsonNode n, List<String> out) {
        if (n.isTextual()) out.add(n.asText());
        else n.elements().forEachRemaining(c -> collect(c, out));
    }

    @Test
    void adversarialTextEncodesAsHuggingFaceTokenizers() {
        List<String> texts = new ArrayList<>(ADVERSARIAL);
        // every adversarial string glued to its neighbours, so pre-token boundaries meet each other's characters
        for (int i = 0; i + 1 < ADVERSARIAL.size(); i++) texts.add(ADVERSARIAL.get(i) + ADVERSARIAL.get(i + 1));
        for (Path file : tokenizers()) assertSame(file, texts);
    }

    @Test
    void everyCodePointJavaKnowsSplitsAsHuggingFaceTokenizers() {
        // Each assigned code point (Unicode 13) in contexts that exercise each alternative of the split regex: letters
        // around it, a space or apostrophe before it, digits, runs of it, newlines; on the shipped tokenizer (the split is
        // Llama-3's). Every ASCII and Latin-1 code point and every 4th above (a sweep of all 281,392 code points on both
        // tokenizer files, run by hand on 2026-12-02, found no difference; it takes minutes through DJL). No special-token
        // strings here.
        String[] ctx = {"a%sb %s%s1", "x'%s\n%s\t", " %s%s%s\n\n"};
        for (Path file : List.of(TOKENIZER)) {
            int step = 4;
            List<String> texts = new ArrayList<>();
            StringBuilder sb = new StringBuilder();
            for (int cp = 0; cp < 0x110000; cp += cp < 256 ? 1 : step) {
                int type = Character.getType(cp);
                if (type == Character.UNASSIGNED || type == Character.SURROGATE) continue;
                String c = new String(Character.toChars(cp));
                for (String f : ctx) sb.append(f.replace("%s", c));
                if (sb.length() > 4000) {
                    texts.add(sb.toString());
                    sb.setLength(0);
                }
            }
            texts.add(sb.toString());
            assertSame(file, texts, false);
        }
    }

    @Test
    void randomTextFromTrickyCharactersEncodesAsHuggingFaceTokenizers() {
        String[] pieces = {"a", "Z", "é", "ß", "光", "合", "ア", "한", "ก", "1", "23", "٣", "½", " ", "  ", "\t", "\n", "\r\n", "\r",
                "\u00A0", "\u3000", "\u2028", "'", "'s", "'LL", "'ve", "-", "—", ".", ",", "!", "?", "<|", "|>", "<|end_of_text|>",
                "<|begin_of_text|>", "😀", "👋🏽", "\u0301", "\u200D", "$", "{", "}", "\\", "\"", "word", "Word", "WORD"};
        Random r = new Random(20261202);
        List<String> texts = new ArrayList<>();
        for (int d = 0; d < 1500; d++) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0, n = r.nextInt(40); i < n; i++) sb.append(pieces[r.nextInt(pieces.length)]);
            texts.add(sb.toString());
        }
        for (Path file : tokenizers()) assertSame(file, texts);
    }

    @Test
    void codePointsNewerThanJavaGoToTheRustLibrary() {
        String newer = "emoji of Unicode 15: \uD83E\uDEE8 (U+1FAE8) and text";      // unassigned in Java 17's tables
        assertEquals(Character.UNASSIGNED, Character.getType(0x1FAE8));
        Tokenizer tok = tok(TOKENIZER);
        assertNull(tok.fast.encoder().encode(newer, false));
        assertNull(tok.fast.encoder().encode("lone surrogate \uD800 here", false));
        assertArrayEquals(tok.encodePlain(newer), tok.encodeDocument(newer, true));
        assertArrayEquals(tok.encode(newer), tok.encodeDocument(newer, false));
    }

    @Test
    void otherTokenizerLayoutsAreLeftToTheRustLibrary() throws IOException {
        ObjectMapper om = new ObjectMapper();
        JsonNode base = om.readTree(TOKENIZER.toFile());
        // a different split regex (GPT-2's), a normalizer, a non-special added token: each refused, prepare still encodes
        ObjectNode gpt2 = base.deepCopy();
        ((ObjectNode) gpt2.path("pre_tokenizer").path("pretokenizers").get(0).path("pattern"))
                .set("Regex", TextNode.valueOf("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"));
        ObjectNode norm = base.deepCopy();
        norm.set("normalizer", om.readTree("{\"type\": \"NFC\"}"));
        ObjectNode added = base.deepCopy();
        ((ObjectNode) added.path("added_tokens").get(0)).put("special", false);
        for (var e : List.of(List.of("gpt2", gpt2, "split"), List.of("norm", norm, "normalizer"), List.of("added", added, "added token"))) {
            Path f = tmp.resolve(e.get(0) + ".json");
            om.writeValue(f.toFile(), e.get(1));
            ByteLevelBpe.Loaded l = ByteLevelBpe.load(f);
            assertNull(l.encoder(), e.get(0).toString());
            assertTrue(l.refusal().contains((String) e.get(2)), l.refusal());
            try (Tokenizer tok = Tokenizer.open(f, "<|end_of_text|>")) {
                assertNull(tok.fast);
                assertTrue(tok.encoderName().startsWith("Hugging Face tokenizers via DJL"), tok.encoderName());
                String s = "Hello world, it's 2026!";
                assertArrayEquals(tok.encodePlain(s), tok.encodeDocument(s, true));
            }
        }
        assertNotNull(ByteLevelBpe.load(TOKENIZER).encoder());
        assertTrue(Arrays.asList(ByteLevelBpe.bytesToUnicode()).contains("\u0120"), "GPT-2 alphabet: the space byte is U+0120");
    }

    @Test
    void pretokenCacheThatFillsUpAndStartsOverKeepsTheIds() {
        // 200,000 distinct words through one encoder (its cache holds 65,536 pre-tokens, then starts over) give the ids
        // of fresh encoders, whose caches never fill, and of the Rust library on every 50th chunk
        Tokenizer tok = tok(TOKENIZER);
        ByteLevelBpe.Encoder longLived = tok.fast.encoder();
        for (int chunk = 0; chunk < 200; chunk++) {
            StringBuilder sb = new StringBuilder();
            for (int w = 0; w < 1000; w++) {
                sb.append(' ');                                     // " " + the word's base-26 digits as letters: one pre-token
                for (int n = chunk * 1000 + w + 1; n > 0; n /= 26) sb.append((char) ('a' + n % 26));
            }
            String t = sb.toString();
            int[] got = longLived.encode(t, false);
            assertArrayEquals(tok.fast.encoder().encode(t, false), got, "chunk " + chunk);
            if (chunk % 50 == 0) assertArrayEquals(tok.encodePlain(t), got, "chunk " + chunk);
        }
    }
}
