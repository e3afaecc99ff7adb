package dev.midtrain.eval;

import dev.midtrain.infer.Engine;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Scores multiple-choice items with an {@link Engine}: every (context, choice) pair in length-sorted batches. */
public final class Evaluator {
    private Evaluator() {}

    /** @param ll log-likelihood of each choice; pred / predNorm: the acc and acc_norm picks (first among ties) */
    public record ItemResult(McItem item, double[] ll, int pred, int predNorm) {
        public boolean correct() { return pred == item.answer(); }
        public boolean correctNorm() { return predNorm == item.answer(); }
    }

    /** Scores every item ({@link #score}: lm-evaluation-harness's window and the line saying when it truncates). */
    public static List<ItemResult> run(Engine e, List<McItem> test, Map<String, List<McItem>> shots) {
        List<Engine.Request> reqs = new ArrayList<>();
        for (McItem it : test) {
            int[] ctx = e.encodePrompt(McPrompt.context(it, shots.getOrDefault(it.subject(), List.of())));
            for (String c : it.choices()) reqs.add(new Engine.Request(ctx, e.encode(McPrompt.continuation(c))));
        }
        List<Engine.Scored> s = score(e, reqs);
        List<ItemResult> out = new ArrayList<>(test.size());
        int k = 0;
        for (McItem it : test) {
            int n = it.choices().size();
            double[] ll = new double[n];
            int pred = 0, predNorm = 0;
            double bestNorm = Double.NEGATIVE_INFINITY;
            for (int i = 0; i < n; i++) {
                ll[i] = s.get(k++).logprob();
                String cont = McPrompt.continuation(it.choices().get(i));
                double norm = ll[i] / cont.codePointCount(0, cont.length());        // per character, as lm-eval's acc_norm
                if (ll[i] > ll[pred]) pred = i;
                if (norm > bestNorm) { bestNorm = norm; predNorm = i; }
            }
            out.add(new ItemResult(it, ll, pred, predNorm));
        }
        return out;
    }

    /**
     * Scores (context, continuation) requests as lm-evaluation-harness's {@code local-completions} model does with the
     * documented {@code max_length = max_seq_len + 1} (docs/serve.md): context + continuation keep their last
     * max_seq_len tokens (the harness keeps max_length - 1 and spends the last position on a generated token it
     * drops), so long items lose the same context tokens through both. Prints one line saying how many requests were
     * truncated: never a silent change of the prompt.
     */
    public static List<Engine.Scored> score(Engine e, List<Engine.Request> reqs) {
        int window = e.config().maxSeqLen(), cut = 0, longest = 0;
        List<Engine.Request> kept = new ArrayList<>(reqs.size());
        for (Engine.Request r : reqs) {
            int n = r.context().length + r.continuation().length;
            longest = Math.max(longest, n);
            Engine.Request w = window(r, window);
            if (w != r) cut++;
            kept.add(w);
        }
        if (cut > 0)
            System.out.printf("eval: %d of %d scoring requests (context + choice, up to %d tokens) are longer than max_seq_len = %d tokens: "
                    + "their contexts lose tokens from the left, as lm-evaluation-harness's local-completions does (max_length=%d)%n",
                    cut, reqs.size(), longest, window, window + 1);
        return e.score(kept);
    }

    /** {@code r} with its context left-truncated so that context + continuation is at most {@code window} tokens. */
    public static Engine.Request window(Engine.Request r, int window) {
        int drop = r.context().length + r.continuation().length - window;
        if (drop <= 0) return r;
        if (drop >= r.context().length)
            throw new IllegalArgumentException("a continuation of " + r.continuation().length + " tokens leaves no context within max_seq_len " + window);
        return new Engine.Request(java.util.Arrays.copyOfRange(r.context(), drop, r.context().length), r.continuation());
    }
}
