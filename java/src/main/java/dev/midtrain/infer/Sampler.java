package dev.midtrain.infer;

import java.util.SplittableRandom;

/**
 * Picks the next token from logits: greedy (temperature 0), or a draw from softmax(logits / temperature) restricted
 * to the top-p nucleus. Computed in double; deterministic for a seed (SplittableRandom, one draw per token).
 */
public final class Sampler {
    private final double temperature, topP;
    private final SplittableRandom rng;

    public Sampler(double temperature, double topP, long seed) {
        this.temperature = temperature;
        this.topP = topP;
        this.rng = new SplittableRandom(seed);
    }

    public int next(float[] logits) {
        if (temperature == 0) return argmax(logits);
        int V = logits.length;
        double max = Double.NEGATIVE_INFINITY;
        for (float l : logits) max = Math.max(max, l);
        double[] p = new double[V];
        double sum = 0;
        for (int i = 0; i < V; i++) sum += p[i] = Math.exp((logits[i] - max) / temperature);
        double u = rng.nextDouble();
        if (topP >= 1) {                                     // plain sampling: inverse CDF in id order
            double target = u * sum, c = 0;
            for (int i = 0; i < V; i++) if ((c += p[i]) > target) return i;
            return lastPositive(p);
        }
        // nucleus: ids by probability descending (ties by id), keep the prefix whose mass first reaches topP * sum
        Integer[] order = new Integer[V];
        for (int i = 0; i < V; i++) order[i] = i;
        java.util.Arrays.sort(order, (a, b) -> p[a] != p[b] ? Double.compare(p[b], p[a]) : Integer.compare(a, b));
        double kept = 0;
        int k = 0;
        while (k < V && kept < topP * sum) kept += p[order[k++]];
        double target = u * kept, c = 0;
        for (int j = 0; j < k; j++) if ((c += p[order[j]]) > target) return order[j];
        return order[k - 1];
    }

    /** Index of the largest logit, the lowest index among ties (torch.argmax's documented first-occurrence rule). */
    public static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    private static int lastPositive(double[] p) {
        for (int i = p.length - 1; i >= 0; i--) if (p[i] > 0) return i;
        return 0;
    }
}
