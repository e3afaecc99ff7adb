package dev.midtrain.train;

import java.util.ArrayDeque;

/**
 * Loss volatility: the standard deviation of the last {@code window} values around their least-squares line
 * (residual sum of squares / (n - 2)), NaN until three values are in. Detrended so that a loss falling steadily
 * reads as calm and only the step-to-step scatter counts (a plain standard deviation over the window would mostly
 * measure the descent). Used for metrics.jsonl (window {@link MetricsLog#VOLATILITY_WINDOW_STEPS}) and by
 * {@code midtrain plot} (--window). Two passes over the window with centred x, so no cancellation.
 */
public final class RollingVolatility {
    private final int window;
    private final ArrayDeque<Double> values = new ArrayDeque<>();

    public RollingVolatility(int window) {
        if (window < 3) throw new IllegalArgumentException("window must be >= 3, got " + window);
        this.window = window;
    }

    /** Adds {@code v} (dropping the oldest beyond the window) and returns the volatility of the window. */
    public double add(double v) {
        values.addLast(v);
        if (values.size() > window) values.removeFirst();
        return value();
    }

    public double value() {
        int n = values.size();
        if (n < 3) return Double.NaN;
        double xm = (n - 1) / 2.0, ym = 0;
        for (double y : values) ym += y;
        ym /= n;
        double sxy = 0, sxx = 0;
        int i = 0;
        for (double y : values) {
            sxy += (i - xm) * (y - ym);
            sxx += (i - xm) * (i - xm);
            i++;
        }
        double slope = sxy / sxx, ss = 0;
        i = 0;
        for (double y : values) {
            double r = y - ym - slope * (i - xm);
            ss += r * r;
            i++;
        }
        return Math.sqrt(ss / (n - 2));
    }
}
