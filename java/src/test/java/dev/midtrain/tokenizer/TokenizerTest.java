package dev.midtrain.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The tokenizer's facts and special tokens against the tokenizer.json itself, read here with Jackson (ids of the added
 * tokens, vocabulary size, SHA-256 by java.security), not through the class under test.
 */
class TokenizerTest {
    static final Path SHIPPED = Path.of("data/tokenizer/tokenizer.json");
    @TempDir Path tmp;

    /** id of {@code content} among the added tokens of {@code j}, or -1 */
    private static int addedId(JsonNode j, String content) {
        for (JsonNode a : j.path("added_tokens")) if (a.path("content").asText().equals(content)) return a.path("id").asInt();
        return -1;
    }

    @Test
    void factsAndSpecialTokensMatchTheFile() throws IOException, NoSuchAlgorithmException {
        JsonNode j = new ObjectMapper().readTree(SHIPPED.toFile());
        int maxId = -1;
        for (JsonNode v : j.path("model").path("vocab")) maxId = Math.max(maxId, v.asInt());
        for (JsonNode a : j.path("added_tokens")) maxId = Math.max(maxId, a.path("id").asInt());
        String sha = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(SHIPPED)));
        int bos = addedId(j, Tokenizer.BEGIN_OF_TEXT), eos = addedId(j, Tokenizer.END_OF_TEXT);
        assertTrue(bos >= 0 && eos >= 0, "the shipped tokenizer has both Llama-3 text markers");
        try (Tokenizer t = Tokenizer.open(SHIPPED)) {                       // inference: picks the first end token it has
            assertEquals(new Tokenizer.Info(SHIPPED.toString(), sha, maxId + 1, Tokenizer.END_OF_TEXT, eos), t.info());
            assertEquals(bos, t.specialId(Tokenizer.BEGIN_OF_TEXT));
            assertEquals(eos, t.specialId(Tokenizer.END_OF_TEXT));
            assertEquals(-1, t.specialId("<|eot_id|>"), "absent: encodes as several plain-text pieces");
            assertEquals(-1, t.specialId("the"), "a plain word decodes to itself, not to nothing");
            assertEquals(bos, Tokenizer.tokenId(SHIPPED, Tokenizer.BEGIN_OF_TEXT));
            assertEquals(-1, Tokenizer.tokenId(SHIPPED, "<|eot_id|>"));
        }
    }

    @Test
    void endTokenIsTheFirstOfTheListTheFileHas() throws IOException {
        ObjectMapper om = new ObjectMapper();
        ObjectNode j = (ObjectNode) om.readTree(SHIPPED.toFile());
        int eos = addedId(j, Tokenizer.END_OF_TEXT);
        for (JsonNode a : j.path("added_tokens"))                             // end of text becomes </s>, same id
            if (a.path("id").asInt() == eos) ((ObjectNode) a).put("content", "</s>");
        Path renamed = Files.writeString(tmp.resolve("renamed.json"), om.writeValueAsString(j));
        try (Tokenizer t = Tokenizer.open(renamed)) {
            assertEquals("</s>", t.info().eosToken());
            assertEquals(eos, t.info().eosId());
            assertEquals(eos, t.specialId("</s>"));
        }
        ArrayNode kept = om.createArrayNode();
        for (JsonNode a : j.path("added_tokens")) if (a.path("id").asInt() != eos) kept.add(a);
        j.set("added_tokens", kept);
        Path none = Files.writeString(tmp.resolve("none.json"), om.writeValueAsString(j));
        UserError e = assertThrows(UserError.class, () -> Tokenizer.open(none));
        assertTrue(e.getMessage().startsWith(none + ": has none of the end-of-sequence tokens"), e.getMessage());
    }
}
