package dev.midtrain.infer;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Continuous batching over the model's key/value cache slots, as serving engines do it (vLLM, TGI, llama.cpp's
 * server): a sequence {@link #join joins} whenever a slot is free (its prompt is prefilled into the slot, together
 * with the other prompts joining at the same time ({@link #joinAll}), and its first token sampled), each {@link #step} advances every active sequence by one token in one batched decode
 * ({@link InferenceModel#decode(int[], int[])}: one GEMM with M = active sequences per weight matrix), and a sequence
 * that finishes (max_new_tokens, EOS, a stop string, max_seq_len) or is {@link #cancel cancelled} leaves at once and
 * gives its slot back.
 *
 * <p>Each sequence has its own {@link GenerateParams} and its own {@link Sampler} (seeded by its seed, one draw per
 * token), so what a sequence generates does not depend on which others share its steps, except through the logits:
 * a batched step's GEMMs may sum in another order than a single-sequence step's (BLAS blocking depends on M), so
 * logits agree to float rounding and a token can only differ where two candidates are that close (a greedy near-tie,
 * or a uniform draw that lands within rounding of a cumulative-probability boundary).
 *
 * <p>Used by one thread at a time; each call holds the engine's lock, so other engine calls (scoring) interleave
 * between steps.
 */
public final class Decoder implements AutoCloseable {
    /** One generation: its prompt, parameters, the tokens and text so far, and (once finished) the result. */
    public final class Sequence {
        final int[] prompt;
        final GenerateParams params;
        final Sampler sampler;
        final Engine.TokenCallback callback;
        final List<Integer> out = new ArrayList<>();
        int slot = -1, next;
        String text = "";
        int emitted;
        Engine.Generation result;
        /** Caller's tag (the scheduler's job). */
        public Object tag;

        Sequence(int[] prompt, GenerateParams p, Engine.TokenCallback cb) {
            this.prompt = prompt;
            this.params = p;
            this.sampler = new Sampler(p.temperature(), p.topP(), p.seed());
            this.callback = cb;
        }

        public boolean finished() { return result != null; }
        /** The finished generation (null while running). */
        public Engine.Generation result() { return result; }
        public int generatedTokens() { return out.size(); }
    }

    private final Engine engine;
    private final InferenceModel model;
    private final int maxActive;
    private final List<Sequence> active = new ArrayList<>();
    private long steps, decodedRows, prefills;

    /** @param maxActive  at most this many sequences at once (further limited by the model's free slots) */
    public Decoder(Engine engine, int maxActive) {
        if (maxActive < 1) throw new IllegalArgumentException("maxActive must be >= 1, got " + maxActive);
        this.engine = engine;
        this.model = engine.model();
        this.maxActive = maxActive;
    }

    /** Sequences running now. */
    public int active() { return active.size(); }
    /** Batched decode steps run so far. */
    public long steps() { return steps; }
    /** Tokens fed through decode steps so far (the sum of M over steps). */
    public long decodedTokens() { return decodedRows; }
    /** Prompts prefilled so far. */
    public long prefills() { return prefills; }

    /**
     * Starts a generation if a slot is free: prefills {@code prompt} into the slot and samples the first token, which
     * may already finish it (then its slot is free again). Returns null when {@code maxActive} sequences run or the
     * model has no free slot. Invalid prompts throw IllegalArgumentException and take no slot.
     */
    public Sequence join(int[] prompt, GenerateParams p, Engine.TokenCallback callback) {
        return joinAll(List.of(prompt), List.of(p), callback == null ? null : java.util.Collections.singletonList(callback)).get(0);
    }

    /**
     * {@link #join} for several prompts at once, in order, as long as slots are free (null for the rest). The prompts
     * that fit are prefilled together, right-padded into [B, T] passes of at most the model's maxTokens tokens (one
     * GEMM per weight matrix per pass); a prompt too long to share a pass is prefilled alone. Every prompt is checked
     * before any takes a slot.
     */
    public List<Sequence> joinAll(List<int[]> prompts, List<GenerateParams> params, List<Engine.TokenCallback> callbacks) {
        int Tmax = model.config().maxSeqLen(), V = model.config().vocabSize();
        for (int[] prompt : prompts) {
            if (prompt.length == 0) throw new IllegalArgumentException("empty prompt");
            // a prompt of max_seq_len tokens still gives one token (the logits after its last position); then "length"
            if (prompt.length > Tmax) throw new IllegalArgumentException("prompt of " + prompt.length + " tokens exceeds max_seq_len " + Tmax);
            for (int t : prompt) if (t < 0 || t >= V) throw new IllegalArgumentException("token id " + t + " outside [0, " + V + ")");
        }
        List<Sequence> out = new ArrayList<>(java.util.Collections.nCopies(prompts.size(), null));
        List<Sequence> started = new ArrayList<>();
        synchronized (engine) {
            for (int i = 0; i < prompts.size() && active.size() + started.size() < maxActive; i++) {
                int slot = model.acquireSlot();
                if (slot < 0) break;
                Sequence s = new Sequence(prompts.get(i), params.get(i), callbacks == null ? null : callbacks.get(i));
                s.slot = slot;
                started.add(s);
                out.set(i, s);
            }
            if (started.isEmpty()) return out;
            try {
                float[][] logits = new float[started.size()][];
                int cap = model.maxTokens();
                for (int g0 = 0; g0 < started.size(); ) {                     // passes of B x T <= maxTokens
                    int g1 = g0, T = 0;
                    while (g1 < started.size() && (long) (g1 - g0 + 1) * Math.max(T, started.get(g1).prompt.length) <= cap)
                        T = Math.max(T, started.get(g1++).prompt.length);
                    if (g1 == g0) {                                           // longer than one pass: alone, in chunks
                        logits[g0] = model.prefill(started.get(g0).slot, started.get(g0).prompt);
                        g1 = g0 + 1;
                    } else {
                        int[] slots = new int[g1 - g0];
                        int[][] ps = new int[g1 - g0][];
                        for (int i = g0; i < g1; i++) { slots[i - g0] = started.get(i).slot; ps[i - g0] = started.get(i).prompt; }
                        float[][] l = model.prefill(slots, ps);
                        System.arraycopy(l, 0, logits, g0, l.length);
                    }
                    g0 = g1;
                }
                prefills += started.size();
                active.addAll(started);
                for (int i = 0; i < started.size(); i++) accept(started.get(i), logits[i]);
            } catch (RuntimeException | Error e) {
                for (Sequence s : started) { active.remove(s); model.releaseSlot(s.slot); s.slot = -1; }
                throw e;
            }
        }
        for (Sequence s : started) if (s.finished()) leave(s);
        return out;
    }

    /**
     * One decode step for every active sequence (one batched pass, slots in ascending order); returns those that
     * finished in it, whose slots are free again. Nothing to do: an empty list.
     */
    public List<Sequence> step() {
        if (active.isEmpty()) return List.of();
        List<Sequence> run = new ArrayList<>(active);
        run.sort(Comparator.comparingInt(s -> s.slot));
        int M = run.size();
        int[] slots = new int[M], toks = new int[M];
        for (int i = 0; i < M; i++) { slots[i] = run.get(i).slot; toks[i] = run.get(i).next; }
        float[][] logits;
        synchronized (engine) {
            logits = model.decode(slots, toks);
        }
        steps++;
        decodedRows += M;
        List<Sequence> done = new ArrayList<>();
        for (int i = 0; i < M; i++) {
            Sequence s = run.get(i);
            accept(s, logits[i]);
            if (s.finished()) { leave(s); done.add(s); }
        }
        return done;
    }

    /** Ends {@code s} now (a client gone): its slot is freed and it gets no result. */
    public void cancel(Sequence s) {
        if (active.contains(s)) leave(s);
    }

    /** Ends every sequence (an engine failure, shutdown). */
    @Override
    public void close() {
        for (Sequence s : new ArrayList<>(active)) leave(s);
    }

    private void leave(Sequence s) {
        active.remove(s);
        if (s.slot >= 0) model.releaseSlot(s.slot);
        s.slot = -1;
    }

    /** Takes the logits after the sequence's last token: samples, checks EOS / stop strings / limits, streams text. */
    private void accept(Sequence s, float[] logits) {
        GenerateParams p = s.params;
        int Tmax = model.config().maxSeqLen();
        int next = s.sampler.next(logits);
        if (p.stopAtEos() && engine.isEos(next)) { finish(s, "stop"); return; }
        s.out.add(next);
        s.text = engine.decode(s.out.stream().mapToInt(Integer::intValue).toArray());
        int cut = firstStop(s.text, p.stop());
        if (cut >= 0) { s.text = s.text.substring(0, cut); finish(s, "stop"); return; }
        int safe = safeLength(s.text, p.stop());
        if (s.callback != null && safe > s.emitted) { s.callback.onText(s.text.substring(s.emitted, safe)); s.emitted = safe; }
        if (s.out.size() >= p.maxNewTokens() || s.prompt.length + s.out.size() >= Tmax) { finish(s, "length"); return; }
        s.next = next;
    }

    private void finish(Sequence s, String reason) {
        if (s.callback != null && s.text.length() > s.emitted) s.callback.onText(s.text.substring(s.emitted));
        s.emitted = s.text.length();
        s.result = new Engine.Generation(s.text, s.out.stream().mapToInt(Integer::intValue).toArray(), s.prompt.length, reason);
    }

    private static int firstStop(String text, List<String> stops) {
        int best = -1;
        for (String s : stops) {
            int i = text.indexOf(s);
            if (i >= 0 && (best < 0 || i < best)) best = i;
        }
        return best;
    }

    /** Length of the prefix of {@code text} that is final: no trailing U+FFFD (a partial character), no stop prefix. */
    private static int safeLength(String text, List<String> stops) {
        int n = text.length();
        while (n > 0 && text.charAt(n - 1) == '\uFFFD') n--;
        int hold = 0;
        for (String s : stops)
            for (int k = Math.min(s.length() - 1, n); k > hold; k--)
                if (text.startsWith(s.substring(0, k), n - k)) { hold = k; break; }
        return n - hold;
    }

    /** Runs {@code prompts} to the end, joining each as a slot frees (continuous batching); results in prompt order. */
    static List<Engine.Generation> runAll(Engine engine, int maxActive, List<int[]> prompts, List<GenerateParams> params,
                                         List<Engine.TokenCallback> callbacks) {
        Decoder d = new Decoder(engine, maxActive);
        Sequence[] seqs = new Sequence[prompts.size()];
        try {
            int joined = 0;
            while (true) {
                if (joined < seqs.length) {
                    List<Sequence> js = d.joinAll(prompts.subList(joined, seqs.length), params.subList(joined, seqs.length),
                            callbacks == null ? null : callbacks.subList(joined, seqs.length));
                    for (Sequence s : js) {
                        if (s == null) break;
                        seqs[joined++] = s;
                    }
                }
                if (d.active() == 0) {
                    if (joined == seqs.length) break;
                    throw new IllegalStateException("no free key/value cache slot (the model has " + engine.model().slots() + ")");
                }
                d.step();
            }
        } finally {
            d.close();
        }
        return Arrays.stream(seqs).map(Sequence::result).toList();
    }
}
