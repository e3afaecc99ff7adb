package dev.midtrain.tokenizer;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import ai.djl.huggingface.tokenizers.jni.TokenizersLibrary;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.AtomicFiles;
import dev.midtrain.common.UserError;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The engine's tokenizer: a loaded tokenizer.json, as Hugging Face tokenizers (DJL, fully offline: no truncation, no
 * padding, no special tokens added) encodes it, with the built-in {@link ByteLevelBpe} for prepare's documents when it
 * implements the file. Used by prepare, eval, serve, export and the inference engine.
 */
public final class Tokenizer implements AutoCloseable {
    /**
     * The facts of a tokenizer.json that prepared data records (manifest.json's {@code tokenizer}).
     *
     * @param file       path given to prepare (informational)
     * @param sha256     SHA-256 of tokenizer.json: the fingerprint
     * @param vocabSize  1 + the largest id in the tokenizer (model vocab + added tokens)
     * @param eosToken   end-of-text token appended to every document
     * @param eosId      its id
     */
    public record Info(String file, String sha256, int vocabSize, String eosToken, int eosId) {}

    /** Llama-3's start-of-text token: prepare --bos prepends it, inference puts it before every prompt. */
    public static final String BEGIN_OF_TEXT = "<|begin_of_text|>";
    /** Llama-3's end-of-text token: prepare appends it to every document. */
    public static final String END_OF_TEXT = "<|end_of_text|>";
    /** Tokens that end a generation (end of text, end of turn, SentencePiece's), those a tokenizer.json has. */
    public static final List<String> END_TOKENS = List.of(END_OF_TEXT, "<|eot_id|>", "</s>");

    private final HuggingFaceTokenizer hf;
    private final Info info;
    private final List<String> specials;         // contents of the added tokens marked special
    final ByteLevelBpe fast;                     // prepare's own encoder for Llama-3-style files, or null
    private final String fastRefusal;           // why fast is null
    private final ThreadLocal<ByteLevelBpe.Encoder> fastEncoder;

    private Tokenizer(HuggingFaceTokenizer hf, Info info, List<String> specials, ByteLevelBpe.Loaded fast) {
        this.hf = hf;
        this.info = info;
        this.specials = specials;
        this.fast = fast.encoder();
        this.fastRefusal = fast.refusal();
        this.fastEncoder = this.fast == null ? null : ThreadLocal.withInitial(this.fast::encoder);
    }

    /** Opens {@code file} (inference) with the first of {@link #END_TOKENS} it holds as its end-of-text token. */
    public static Tokenizer open(Path file) { return open(file, endTokenOf(file)); }

    private static String endTokenOf(Path file) {
        try {
            String s = Files.readString(file);
            for (String e : END_TOKENS) if (s.contains("\"" + e + "\"")) return e;
        } catch (IOException e) {
            throw new UserError(file + ": cannot read tokenizer: " + e.getMessage());
        }
        throw new UserError(file + ": has none of the end-of-sequence tokens " + END_TOKENS);
    }

    /** Opens {@code file} fully offline; {@code eosToken} must be one of its tokens. */
    public static Tokenizer open(Path file, String eosToken) {
        List<String> specials = new ArrayList<>();
        int[] maxAndEos = scanVocab(file, eosToken, specials);
        int maxId = maxAndEos[0], eos = maxAndEos[1];
        if (eos < 0) throw new UserError("--eos-token: " + eosToken + " is not a token of " + file);
        String sha;
        try {
            sha = AtomicFiles.sha256(file);
        } catch (IOException e) {
            throw new UserError(file + ": cannot read tokenizer: " + e.getMessage());
        }
        HuggingFaceTokenizer hf = loadHf(file);
        Tokenizer t = new Tokenizer(hf, new Info(file.toString(), sha, maxId + 1, eosToken, eos), List.copyOf(specials),
                ByteLevelBpe.load(file));
        long[] e = hf.encode(eosToken, false, false).getIds();
        if (e.length != 1 || e[0] != eos) {
            t.close();
            throw new UserError(file + ": " + eosToken + " encodes to " + java.util.Arrays.toString(e) + ", expected [" + eos + "]");
        }
        return t;
    }

    /**
     * {@code file} as Hugging Face tokenizers (DJL) loads it, fully offline: no special tokens added unless asked, no
     * truncation, no padding. The one place the engine opens a tokenizer.json through DJL (this class, and the
     * embedding model's tokenizer of prepare --decontaminate-embeddings).
     */
    public static HuggingFaceTokenizer loadHf(Path file) {
        System.setProperty("ai.djl.offline", "true");
        try {
            // DJL truncates to 512 tokens unless told otherwise (see tech-recon §5): turn truncation off.
            return HuggingFaceTokenizer.newInstance(file, Map.of("addSpecialTokens", "false", "truncation", "false",
                    "padding", "false", "modelMaxLength", "1000000000"));
        } catch (IOException | RuntimeException e) {
            throw new UserError(file + ": cannot load tokenizer: " + e.getMessage());
        }
    }

    /** The id of {@code token} in tokenizer.json {@code file} (vocabulary or added tokens), or -1. */
    public static int tokenId(Path file, String token) { return scanVocab(file, token, new ArrayList<>())[1]; }

    /**
     * Streams tokenizer.json (Llama-3's is 9 MB) for the largest id in model.vocab and added_tokens and the id of
     * {@code eosToken}: returns {maxId, eosId or -1}.
     */
    private static int[] scanVocab(Path file, String eosToken, List<String> specials) {
        int maxId = -1, eos = -1;
        boolean sawVocab = false;
        ObjectMapper om = new ObjectMapper();
        try (JsonParser p = om.getFactory().createParser(file.toFile())) {
            if (p.nextToken() != JsonToken.START_OBJECT) throw new UserError(file + ": not a Hugging Face tokenizer.json (not a JSON object)");
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String top = p.currentName();
                p.nextToken();
                if (top.equals("model") && p.currentToken() == JsonToken.START_OBJECT) {
                    while (p.nextToken() == JsonToken.FIELD_NAME) {
                        String f = p.currentName();
                        p.nextToken();
                        if (f.equals("vocab") && p.currentToken() == JsonToken.START_OBJECT) {
                            sawVocab = true;
                            while (p.nextToken() == JsonToken.FIELD_NAME) {
                                String tok = p.currentName();
                                p.nextToken();
                                int id = p.getIntValue();
                                maxId = Math.max(maxId, id);
                                if (tok.equals(eosToken)) eos = id;
                            }
                        } else p.skipChildren();
                    }
                } else if (top.equals("added_tokens") && p.currentToken() == JsonToken.START_ARRAY) {
                    for (JsonNode a : (JsonNode) om.readTree(p)) {
                        maxId = Math.max(maxId, a.path("id").asInt());
                        if (a.path("content").asText().equals(eosToken)) eos = a.path("id").asInt();
                        if (a.path("special").asBoolean(false) && !a.path("content").asText().isEmpty()) specials.add(a.path("content").asText());
                    }
                } else p.skipChildren();
            }
        } catch (IOException e) {
            throw new UserError(file + ": cannot read tokenizer (" + e.getMessage().split("\n")[0] + ")");
        }
        if (!sawVocab) throw new UserError(file + ": not a Hugging Face tokenizer.json (no model.vocab)");
        return new int[]{maxId, eos};
    }

    /** Token ids of {@code text} (no special tokens added, never truncated). */
    public int[] encode(String text) {
        // Straight to the native encoder: HuggingFaceTokenizer.encode also fetches tokens, offsets, masks and word
        // ids through JNI, which costs ~1.5x here. Same Rust tokenizer object, so the same settings (no truncation).
        long enc = TokenizersLibrary.LIB.encode(hf.getHandle(), text, false);
        long[] ids;
        try {
            ids = TokenizersLibrary.LIB.getTokenIds(enc);
        } finally {
            TokenizersLibrary.LIB.deleteEncoding(enc);
        }
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) out[i] = (int) ids[i];
        return out;
    }

    /**
     * Token ids of {@code text} with every special-token string in it (e.g. a literal "<|end_of_text|>") encoded as
     * plain text. The text is cut inside each occurrence, after the token's leading run of punctuation ("<|"):
     * a pre-token boundary of the Llama-3 split, so the pieces encode as the whole would by a tokenizer that
     * ignores special tokens, and no piece holds the special string any more.
     */
    public int[] encodePlain(String text) {
        List<Integer> cuts = null;
        for (String sp : specials) {
            for (int at = text.indexOf(sp); at >= 0; at = text.indexOf(sp, at + 1)) {
                int lead = 0;
                while (lead < sp.length() && !Character.isLetterOrDigit(sp.charAt(lead))) lead++;
                if (lead == 0 || lead == sp.length()) lead = sp.length() / 2;
                if (cuts == null) cuts = new ArrayList<>();
                cuts.add(at + lead);
            }
        }
        if (cuts == null) return encode(text);
        cuts.sort(null);
        List<int[]> parts = new ArrayList<>();
        int from = 0, total = 0;
        for (int c : cuts) {
            if (c <= from) continue;
            int[] p = encode(text.substring(from, c));
            parts.add(p);
            total += p.length;
            from = c;
        }
        int[] last = encode(text.substring(from));
        parts.add(last);
        total += last.length;
        int[] out = new int[total];
        int o = 0;
        for (int[] p : parts) { System.arraycopy(p, 0, out, o, p.length); o += p.length; }
        return out;
    }

    /**
     * prepare's encoding of a document: special-token strings as plain text ({@code plain}, like
     * {@link #encodePlain}) or as their tokens (like {@link #encode}). The built-in {@link ByteLevelBpe} encodes it
     * when it handles this tokenizer.json and the text's characters (same ids, about 20x faster), DJL otherwise.
     */
    public int[] encodeDocument(String text, boolean plain) { return encodeDocument(text, plain, true); }

    /** As {@link #encodeDocument(String, boolean)}; {@code builtin} false: through DJL always (--encoder hf). */
    public int[] encodeDocument(String text, boolean plain, boolean builtin) {
        if (builtin && fast != null) {
            int[] ids = fastEncoder.get().encode(text, !plain);
            if (ids != null) return ids;
        }
        return plain ? encodePlain(text) : encode(text);
    }

    /** Which encoder {@link #encodeDocument} uses, for the log. */
    public String encoderName() {
        return fast != null ? "built-in byte-level BPE (Hugging Face tokenizers' ids; DJL for characters newer than Unicode 13)"
                : "Hugging Face tokenizers via DJL (the built-in encoder does not implement this tokenizer.json: " + fastRefusal + ")";
    }

    /** The id of the special token {@code token} (it encodes to one id that decodes to nothing), or -1. */
    public int specialId(String token) {
        int[] ids = encode(token);
        return ids.length == 1 && decode(ids).isEmpty() ? ids[0] : -1;
    }

    public String decode(int[] ids) {
        long[] l = new long[ids.length];
        for (int i = 0; i < ids.length; i++) l[i] = ids[i];
        return hf.decode(l, true);
    }

    public Info info() { return info; }

    @Override public void close() { hf.close(); }
}
