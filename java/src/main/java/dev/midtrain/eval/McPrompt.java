package dev.midtrain.eval;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Prompts the way lm-evaluation-harness scores multiple choice: the context is the k shots (each a solved question)
 * and the question, the continuations are the choices; the model's choice is the continuation with the highest
 * log-likelihood ({@code acc}), or the highest log-likelihood per character ({@code acc_norm}).
 *
 * <pre>
 * Question: {shot question}\nAnswer: {shot answer text}\n\n     (k times)
 * Question: {question}\nAnswer:                                  continuation: " " + choice
 * </pre>
 *
 * Shots: the dev items of the same subject in file order, shuffled (Fisher-Yates driven by SplitMix64 from the seed),
 * the first k; every test item of a subject gets the same shots. scripts/golden/make_eval_golden.py implements the
 * same rules for the PyTorch reference.
 */
public final class McPrompt {
    private McPrompt() {}

    public static String context(McItem item, List<McItem> shots) {
        StringBuilder s = new StringBuilder();
        for (McItem sh : shots)
            s.append("Question: ").append(sh.question()).append("\nAnswer: ").append(sh.choices().get(sh.answer())).append("\n\n");
        return s.append("Question: ").append(item.question()).append("\nAnswer:").toString();
    }

    public static String continuation(String choice) { return " " + choice; }

    /** The k shots of each subject present in {@code test}, drawn from {@code dev}. */
    public static Map<String, List<McItem>> shots(List<McItem> test, List<McItem> dev, int k, long seed) {
        Map<String, List<McItem>> out = new LinkedHashMap<>();
        for (McItem t : test)
            out.computeIfAbsent(t.subject(), s -> {
                List<McItem> pool = new ArrayList<>();
                for (McItem d : dev) if (d.subject().equals(s)) pool.add(d);
                shuffle(pool, seed);
                return List.copyOf(pool.subList(0, Math.min(k, pool.size())));
            });
        return out;
    }

    /** Fisher-Yates with SplitMix64 (Steele, Lea, Flood 2014): j = next() mod (i+1), unsigned. */
    static <T> void shuffle(List<T> xs, long seed) {
        long state = seed;
        for (int i = xs.size() - 1; i > 0; i--) {
            state += 0x9E3779B97F4A7C15L;
            long z = state;
            z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
            z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
            z = z ^ (z >>> 31);
            int j = (int) Long.remainderUnsigned(z, i + 1);
            T tmp = xs.get(i);
            xs.set(i, xs.get(j));
            xs.set(j, tmp);
        }
    }
}
