package dev.midtrain.infer;

import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.kernels.HostFloats;
import dev.midtrain.ckpt.ModelSource;
import dev.midtrain.ckpt.CommittedStep;
import dev.midtrain.common.UserError;
import dev.midtrain.config.DataConfig;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.data.Manifest;
import dev.midtrain.data.Preparer;
import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.ParamLayout;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * The inference API: a checkpoint, its tokenizer and an {@link InferenceModel} on one backend. Used by
 * {@code midtrain eval}, {@code midtrain generate} and {@code midtrain serve}.
 *
 * <pre>{@code
 * try (Engine e = Engine.load(Path.of("runs/tiny/checkpoints/step_00000200"), Engine.Options.cpu())) {
 *     List<Engine.Scored> s = e.logLikelihoods("Question: 2+2?\nAnswer:", List.of(" 4", " 5"));  // s.get(i).logprob()
 *     Engine.Generation g = e.generate("Once upon a time", GenerateParams.greedy(64), piece -> System.out.print(piece));
 * }
 * }</pre>
 *
 * <p>Tokenization: text is encoded with no special tokens, and {@code <|begin_of_text|>} is put before every prompt
 * when the tokenizer has it (as Hugging Face's Llama-3 tokenizer does). A scored request is context tokens followed
 * by continuation tokens, each encoded on its own; a request longer than max_seq_len + 1 tokens loses tokens from the
 * left of its context (as lm-evaluation-harness does).
 *
 * <p>One thread at a time: calls are {@code synchronized}, so a server may share one engine between request threads.
 */
public final class Engine implements AutoCloseable {
    /** Tokens of end of text / end of turn that end a generation (those the tokenizer has). */
    public static final List<String> EOS_TOKENS = List.of("<|end_of_text|>", "<|eot_id|>", "</s>");
    public static final String BOS_TOKEN = "<|begin_of_text|>";

    /**
     * @param backend    "cpu" or "cuda" (CUDA unavailable is an error, never a fallback)
     * @param maxTokens  tokens of one forward call: the scoring batch (B*T) and the prefill chunk; 0 = 4 x max_seq_len
     * @param threads    CPU threads (0 = all cores)
     * @param slots      key/value cache slots: sequences decoded together ({@link Decoder}); each holds max_seq_len
     *                   positions of every layer
     */
    public record Options(String backend, int maxTokens, int threads, int slots) {
        public Options {
            if (!backend.equals("cpu") && !backend.equals("cuda")) throw new UserError("--backend: expected cpu or cuda, got " + backend);
            if (maxTokens < 0) throw new UserError("--batch-tokens: must be >= 0, got " + maxTokens);
            if (threads < 0) throw new UserError("--threads: must be >= 0, got " + threads);
            if (slots < 1) throw new UserError("--max-batch: must be >= 1, got " + slots);
        }

        /** One key/value cache slot (single-sequence decoding). */
        public Options(String backend, int maxTokens, int threads) { this(backend, maxTokens, threads, 1); }

        public static Options cpu() { return new Options("cpu", 0, 0); }
    }

    /** A scoring request in token ids: log p(continuation | context). */
    public record Request(int[] context, int[] continuation) {}

    /** @param logprob sum of the continuation's token log-probabilities; @param tokens continuation length */
    public record Scored(double logprob, int tokens, float[] tokenLogprobs) {}

    /** A finished generation: its text (without a stop string or EOS), token ids, and why it ended. */
    public record Generation(String text, int[] tokens, int promptTokens, String finishReason) {}

    /** Receives each new piece of generated text as soon as it is final (never past a stop string). */
    @FunctionalInterface
    public interface TokenCallback {
        void onText(String piece);
    }

    private final Backend be;
    private final InferenceModel model;
    private final Preparer.Tok tok;
    private final int bos;
    private final int[] eos;
    private final String source;

    private Engine(Backend be, InferenceModel model, Preparer.Tok tok, String source) {
        this.be = be;
        this.model = model;
        this.tok = tok;
        this.source = source;
        this.bos = tok == null ? -1 : singleId(BOS_TOKEN);                 // no tokenizer: token-level use only (benchmarks)
        this.eos = tok == null ? new int[0] : EOS_TOKENS.stream().mapToInt(this::singleId).filter(i -> i >= 0).toArray();
    }

    /** Loads a committed step directory or a Hugging Face directory, with the tokenizer found by {@link #findTokenizer}. */
    public static Engine load(Path dir, Options o) { return load(dir, null, o); }

    /**
     * @param dir        a committed step directory ({@code RUN/checkpoints/step_N}), a run directory or a Hugging Face
     *                   checkpoint, opened by {@link ModelSource}
     * @param tokenizer  tokenizer.json, or null to look next to the checkpoint ({@link #findTokenizer})
     */
    public static Engine load(Path dir, Path tokenizer, Options o) {
        ModelSource src = ModelSource.open(dir);                                // step, run or Hugging Face directory
        dir = src.dir();                                                        // a run directory: its newest step
        Path tokFile = tokenizer != null ? tokenizer : findTokenizer(dir);
        if (!Files.isRegularFile(tokFile)) throw new UserError(tokFile + ": tokenizer not found");
        ModelConfig cfg = src.model();
        HostFloats params = src.loadFull();
        Preparer.Tok tok;
        try { tok = Preparer.Tok.open(tokFile, eosTokenOf(tokFile)); } catch (RuntimeException e) { params.close(); throw e; }
        Backend be = null;
        try {
            if (o.backend().equals("cpu")) CpuBackend.setThreads(o.threads() > 0 ? o.threads() : Runtime.getRuntime().availableProcessors());
            be = Backend.open(o.backend(), 0);
            int maxTokens = Math.max(o.slots(), o.maxTokens() > 0 ? o.maxTokens() : 4 * cfg.maxSeqLen());
            InferenceModel m = new InferenceModel(be, ParamLayout.of(cfg), params, maxTokens, o.slots());
            return new Engine(be, m, tok, dir.toString());
        } catch (RuntimeException e) {
            tok.close();
            if (be != null) be.close();
            throw e;
        } finally {
            params.close();
        }
    }

    /**
     * Builds an engine over an existing model and tokenizer (tests, the training-time evaluator, benchmarks); closes
     * neither. With a null tokenizer only the token-level calls ({@link #score}) work.
     */
    public static Engine of(InferenceModel model, Preparer.Tok tok) { return new Engine(null, model, tok, "in-memory"); }

    /**
     * The tokenizer of a checkpoint: {@code DIR/tokenizer.json}; for a step directory, else the one its run's prepared
     * data recorded ({@code data.sources[0].path/manifest.json}).
     */
    public static Path findTokenizer(Path dir) {
        Path own = dir.resolve("tokenizer.json");
        if (Files.isRegularFile(own) || !Files.exists(dir.resolve(StepDirectories.COMMITTED))) return own;
        try (CommittedStep ck = CommittedStep.open(dir, false)) {
            DataConfig d = ck.config().data();
            if (d == null) return own;
            Manifest m = Manifest.read(Path.of(d.sources().get(0).path()));
            return Path.of(m.tokenizer().file());
        } catch (UserError e) {
            throw new UserError(dir + ": no tokenizer.json beside the checkpoint and its run's data manifest is unreadable (" + e.getMessage() + "); pass --tokenizer");
        }
    }

    private static String eosTokenOf(Path tokFile) {
        try {
            String s = Files.readString(tokFile);
            for (String e : EOS_TOKENS) if (s.contains("\"" + e + "\"")) return e;
        } catch (java.io.IOException e) {
            throw new UserError(tokFile + ": cannot read tokenizer: " + e.getMessage());
        }
        throw new UserError(tokFile + ": has none of the end-of-sequence tokens " + EOS_TOKENS);
    }

    private int singleId(String special) {
        int[] ids = tok.encode(special);
        return ids.length == 1 && tok.decode(ids).isEmpty() ? ids[0] : -1;   // a special token decodes to nothing
    }

    // ================================================================================================== tokens

    public ModelConfig config() { return model.config(); }
    public InferenceModel model() { return model; }
    public String source() { return source; }
    /** Token ids of {@code text}, no special tokens. */
    public synchronized int[] encode(String text) { return tok.encode(text); }
    public synchronized String decode(int[] ids) { return tok.decode(ids); }
    /** The begin-of-text id put before prompts, or -1 when the tokenizer has none. */
    public int bosId() { return bos; }
    public int[] eosIds() { return eos.clone(); }

    /** BOS (when the tokenizer has one) followed by the text's tokens. */
    public synchronized int[] encodePrompt(String text) {
        int[] t = tok.encode(text);
        if (bos < 0) return t;
        int[] out = new int[t.length + 1];
        out[0] = bos;
        System.arraycopy(t, 0, out, 1, t.length);
        return out;
    }

    // ================================================================================================= scoring

    /** log p(continuation | prompt) for each continuation, lm-evaluation-harness style. */
    public synchronized List<Scored> logLikelihoods(String prompt, List<String> continuations) {
        int[] ctx = encodePrompt(prompt);
        List<Request> reqs = new ArrayList<>();
        for (String c : continuations) reqs.add(new Request(ctx, tok.encode(c)));
        return score(reqs);
    }

    /**
     * Scores token-level requests in batches: sorted by length (longest first), packed so that each batch's
     * B x T stays within the model's {@link InferenceModel#maxTokens}; results in request order.
     */
    public synchronized List<Scored> score(List<Request> reqs) {
        int Tmax = model.config().maxSeqLen();
        int n = reqs.size();
        int[][] seqs = new int[n][];
        int[] contLen = new int[n];
        for (int i = 0; i < n; i++) {
            Request r = reqs.get(i);
            if (r.continuation().length == 0) throw new IllegalArgumentException("request " + i + ": empty continuation");
            if (r.context().length == 0) throw new IllegalArgumentException("request " + i + ": empty context (needs at least one token, e.g. BOS)");
            int total = r.context().length + r.continuation().length;
            int keep = Math.min(total, Tmax + 1);                               // left-truncate the context
            if (r.continuation().length >= keep) throw new IllegalArgumentException("request " + i + ": continuation of " + r.continuation().length + " tokens leaves no context within max_seq_len " + Tmax);
            int[] s = new int[keep];
            int drop = total - keep;
            System.arraycopy(r.context(), drop, s, 0, r.context().length - drop);
            System.arraycopy(r.continuation(), 0, s, r.context().length - drop, r.continuation().length);
            seqs[i] = s;
            contLen[i] = r.continuation().length;
        }
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) order[i] = i;
        Arrays.sort(order, Comparator.comparingInt((Integer i) -> -seqs[i].length).thenComparingInt(i -> i));
        Scored[] out = new Scored[n];
        int cap = model.maxTokens();
        for (int start = 0; start < n; ) {
            int T = seqs[order[start]].length - 1;                             // longest first: the batch's T
            int B = Math.max(1, Math.min(n - start, cap / T));
            List<int[]> batch = new ArrayList<>(B);
            for (int b = 0; b < B; b++) batch.add(seqs[order[start + b]]);
            int[] last = new int[B];
            for (int b = 0; b < B; b++) last[b] = contLen[order[start + b]];
            float[][] lp = model.tokenLogprobs(batch, last);                   // the continuations' rows only
            for (int b = 0; b < B; b++) {
                int i = order[start + b], k = contLen[i];
                float[] cont = lp[b];
                double sum = 0;
                for (float v : cont) sum += v;
                out[i] = new Scored(sum, k, cont);
            }
            start += B;
        }
        return Arrays.asList(out);
    }

    // ============================================================================================== generation

    /** Generates from a text prompt (BOS put before it); {@code callback} may be null. */
    public synchronized Generation generate(String prompt, GenerateParams p, TokenCallback callback) {
        return generate(encodePrompt(prompt), p, callback);
    }

    /**
     * Prefills {@code prompt} into a free key/value cache slot, then samples one token at a time until max_new_tokens,
     * an end-of-sequence token ({@code stopAtEos}), a stop string, or max_seq_len. Text is handed to {@code callback}
     * once it can no longer become part of a stop string or an incomplete UTF-8 character. (A {@link Decoder} with
     * one sequence.)
     */
    public synchronized Generation generate(int[] prompt, GenerateParams p, TokenCallback callback) {
        return Decoder.runAll(this, 1, List.of(prompt), List.of(p), callback == null ? null : List.of(callback)).get(0);
    }

    /**
     * Generates from several prompts decoded together ({@link Decoder}: up to the model's slots at once, the rest
     * joining as slots free); results in prompt order. {@code callbacks} may be null.
     */
    public synchronized List<Generation> generateAll(List<int[]> prompts, List<GenerateParams> params, List<TokenCallback> callbacks) {
        if (prompts.size() != params.size() || callbacks != null && callbacks.size() != prompts.size())
            throw new IllegalArgumentException(prompts.size() + " prompts, " + params.size() + " parameter sets");
        return Decoder.runAll(this, model.slots(), prompts, params, callbacks);
    }

    boolean isEos(int id) {
        for (int e : eos) if (e == id) return true;
        return false;
    }

    @Override
    public synchronized void close() {
        if (be != null) {                                   // built by load: owns model, tokenizer and backend
            model.close();
            tok.close();
            be.close();
        }
    }
}
