package dev.midtrain.train;

import java.util.ArrayDeque;

/**
 * Loss volatility: the sample standard deviation (n - 1 in the denominator) of the last {@code window} values, NaN
 * until two values are in. Used for metrics.jsonl (window {@link MetricsLog#VOLATILITY_WINDOW_STEPS}) and by
 * {@code midtrain plot} (--window). A falling loss contributes its trend within the window too; compare sources at the
 * same step. Two-pass over the window (at most a few hundred values), so no cancellation.
 */
public final class RollingStd {
    private final int window;
    private final ArrayDeque<Double> values = new ArrayDeque<>();

    public RollingStd(int window) {
        if (window < 2) throw new IllegalArgumentException("window must be >= 2, got " + window);
        this.window = window;
    }

    /** Adds {@code v} (dropping the oldest beyond the window) and returns the standard deviation of the window. */
    public double add(double v) {
        values.addLast(v);
        if (values.size() > window) values.removeFirst();
        return std();
    }

    public double std() {
        int n = values.size();
        if (n < 2) return Double.NaN;
        double mean = 0;
        for (double x : values) mean += x;
        mean /= n;
        double ss = 0;
        for (double x : values) ss += (x - mean) * (x - mean);
        return Math.sqrt(ss / (n - 1));
    }
}
