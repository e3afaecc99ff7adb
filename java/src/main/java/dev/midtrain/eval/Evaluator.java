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

    /**
     * Scores every item; prints one line saying how many requests were longer than the model's max_seq_len + 1
     * tokens and so lost context tokens from the left ({@link Engine#score}).
     */
    public static List<ItemResult> run(Engine e, List<McItem> test, Map<String, List<McItem>> shots) {
        List<Engine.Request> reqs = new ArrayList<>();
        for (McItem it : test) {
            int[] ctx = e.encodePrompt(McPrompt.context(it, shots.getOrDefault(it.subject(), List.of())));
            for (String c : it.choices()) reqs.add(new Engine.Request(ctx, e.encode(McPrompt.continuation(c))));
        }
        int limit = e.config().maxSeqLen() + 1, cut = 0, longest = 0;
        for (Engine.Request r : reqs) {
            int n = r.context().length + r.continuation().length;
            if (n > limit) cut++;
            longest = Math.max(longest, n);
        }
        if (cut > 0)                                                         // never a silent change of the prompt
            System.out.printf("eval: %d of %d scoring requests (context + choice, up to %d tokens) are longer than max_seq_len + 1 = %d tokens: "
                    + "their contexts lose tokens from the left, as lm-evaluation-harness does%n", cut, reqs.size(), longest, limit);
        List<Engine.Scored> s = e.score(reqs);
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
}
