package dev.midtrain.data;

/**
 * Deterministic mixing of sources by weight: sample i goes to the source with the largest deficit
 * {@code w_s * (i + 1) - taken_s} (w normalized to sum 1; ties to the earlier source), among sources not exhausted.
 * After n samples every source has taken within one sample of {@code w_s * n} (checked by MixTest for many weights),
 * and since all samples are equally long, the realized token mix tracks the weights within one sequence at every step.
 */
final class Mix {
    private final double[] w;
    private final long[] taken;
    private final long[] limit;   // per-source cap (validation: sequences available); Long.MAX_VALUE = unlimited
    private long n;

    Mix(double[] weights, long[] limit) {
        double sum = 0;
        for (double x : weights) sum += x;
        w = new double[weights.length];
        for (int s = 0; s < w.length; s++) w[s] = weights[s] / sum;
        taken = new long[w.length];
        this.limit = limit != null ? limit.clone() : null;
    }

    /** Source of the next sample, or -1 when every source is exhausted (only with limits). */
    int next() {
        int best = -1;
        double bestDeficit = 0;
        for (int s = 0; s < w.length; s++) {
            if (limit != null && taken[s] >= limit[s]) continue;
            double d = w[s] * (n + 1) - taken[s];
            if (best < 0 || d > bestDeficit) {
                best = s;
                bestDeficit = d;
            }
        }
        if (best < 0) return -1;
        taken[best]++;
        n++;
        return best;
    }

    /** Samples assigned to source s so far (the next sample of s has this index within s). */
    long taken(int s) { return taken[s]; }

    long count() { return n; }
}
