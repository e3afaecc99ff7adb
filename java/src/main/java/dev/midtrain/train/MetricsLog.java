package dev.midtrain.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Training metrics: one JSON line per step in RUN_DIR/metrics.jsonl (step, loss, grad_norm, lr, tokens,
 * tokens_per_s, mfu, skipped, tokens_per_source, val_loss when evaluated) and a progress line on the console every
 * log period (plus every skipped step and every evaluation).
 *
 * <p>Per source: {@code loss_by_source} (the step's mean token loss of each source's rows), {@code
 * loss_volatility_by_source} and {@code loss_volatility} (standard deviation of the per-source and blended step
 * losses around their linear trend over the last {@link #VOLATILITY_WINDOW_STEPS} logged steps of this process,
 * {@link RollingVolatility}; from the third step on, and restarted on resume) and, on evaluated steps,
 * {@code val_loss_by_source}.
 *
 * <p>MFU = flopsPerToken(T) x tokens/s / peak FLOP/s, with ModelConfig.flopsPerToken's convention (6N + causal
 * attention); no MFU is reported when the peak is unknown (0).
 */
public final class MetricsLog implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Steps in the rolling window of the logged loss volatility. */
    public static final int VOLATILITY_WINDOW_STEPS = 20;
    private final PrintStream console;          // null: quiet
    private final BufferedWriter jsonl;         // null: no file
    private final int logEvery;
    private final long totalSteps;
    private final double flopsPerToken, peakFlops;
    // progress-line interval accumulators
    private double intervalSeconds;
    private long intervalTokens;
    private double emaStepSeconds = Double.NaN;
    private final RollingVolatility volatility = new RollingVolatility(VOLATILITY_WINDOW_STEPS);
    private final java.util.Map<String, RollingVolatility> volatilityBySource = new java.util.LinkedHashMap<>();

    /**
     * @param console        progress lines go here (null: none)
     * @param jsonlPath      metrics file, appended to (null: none)
     * @param flopsPerToken  model FLOPs per trained token
     * @param peakFlops      the device's peak FLOP/s for MFU (0: unknown, MFU not reported)
     */
    public MetricsLog(PrintStream console, Path jsonlPath, int logEvery, long totalSteps, double flopsPerToken, double peakFlops) {
        this.console = console;
        this.logEvery = logEvery;
        this.totalSteps = totalSteps;
        this.flopsPerToken = flopsPerToken;
        this.peakFlops = peakFlops;
        try {
            this.jsonl = jsonlPath == null ? null : Files.newBufferedWriter(jsonlPath, StandardCharsets.UTF_8,
                    StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open " + jsonlPath, e);
        }
    }

    /** Extra per-step objects (e.g. eval_acc by task) attached by step listeners, written with the next record. */
    private final java.util.Map<String, java.util.Map<String, Double>> attached = new java.util.LinkedHashMap<>();

    /** Adds {@code key: {name: value, ...}} to the next recorded step's JSON line and prints it with that step. */
    public synchronized void attach(String key, java.util.Map<String, Double> values) { attached.put(key, new java.util.LinkedHashMap<>(values)); }

    private final java.util.Set<String> quiet = new java.util.HashSet<>();

    /** As {@link #attach}, written to metrics.jsonl only (per-layer detail that would flood the console). */
    public synchronized void attachQuiet(String key, java.util.Map<String, Double> values) {
        attach(key, values);
        quiet.add(key);
    }

    public static MetricsLog quiet() { return new MetricsLog(null, null, 1, 1, 0, 0); }

    /** Records one completed step; {@code valLoss} is NaN when no evaluation ran. */
    public void record(StepResult r, TrainState s, double stepSeconds, double valLoss) {
        record(r, s, stepSeconds, valLoss, java.util.Map.of());
    }

    /** As {@link #record(StepResult, TrainState, double, double)}, with the held-out loss per source (empty: none). */
    public void record(StepResult r, TrainState s, double stepSeconds, double valLoss, java.util.Map<String, Double> valLossBySource) {
        double tps = r.tokens() / stepSeconds;
        double mfu = peakFlops > 0 ? flopsPerToken * tps / peakFlops : Double.NaN;
        intervalSeconds += stepSeconds;
        intervalTokens += r.tokens();
        emaStepSeconds = Double.isNaN(emaStepSeconds) ? stepSeconds : 0.9 * emaStepSeconds + 0.1 * stepSeconds;
        double vol = Double.isFinite(r.loss()) ? volatility.add(r.loss()) : volatility.value();
        java.util.Map<String, Double> volBySource = new java.util.LinkedHashMap<>();
        r.lossBySource().forEach((k, v) -> {
            RollingVolatility w = volatilityBySource.computeIfAbsent(k, x -> new RollingVolatility(VOLATILITY_WINDOW_STEPS));
            volBySource.put(k, Double.isFinite(v) ? w.add(v) : w.value());
        });
        java.util.Map<String, java.util.Map<String, Double>> extra;
        java.util.Set<String> quietKeys;
        synchronized (this) {
            extra = new java.util.LinkedHashMap<>(attached);
            quietKeys = new java.util.HashSet<>(quiet);
            attached.clear();
            quiet.clear();
        }
        if (jsonl != null) writeJson(r, s, tps, mfu, valLoss, vol, volBySource, valLossBySource, extra);
        if (console == null) return;
        extra.forEach((k, m) -> {
            if (quietKeys.contains(k)) return;
            StringBuilder b = new StringBuilder();
            m.forEach((n, v) -> b.append(b.length() == 0 ? "" : ", ").append(n).append(String.format(" %.4f", v)));
            console.printf("step %6d/%d | %s: %s%n", r.step(), totalSteps, k, b);
        });
        if (r.skipped())
            console.printf("step %d: SKIPPED (non-finite loss %s or grad norm %s), %d skipped so far%n",
                    r.step(), r.loss(), r.gradNorm(), s.skippedSteps);
        boolean due = r.step() % logEvery == 0 || r.step() == totalSteps || r.step() == 1;
        if (due) {
            double itps = intervalTokens / intervalSeconds;
            String mfuText = peakFlops > 0 ? String.format("%5.1f%%", 100 * flopsPerToken * itps / peakFlops) : "  n/a";
            console.printf("step %6d/%d | loss %8.4f | grad norm %8.4f | lr %.3e | %,10.0f tok/s | MFU %s | ETA %s%n",
                    r.step(), totalSteps, r.loss(), r.gradNorm(), r.lr(), itps, mfuText,
                    duration(emaStepSeconds * (totalSteps - r.step())));
            intervalSeconds = 0;
            intervalTokens = 0;
        }
        if (!Double.isNaN(valLoss)) {
            StringBuilder per = new StringBuilder();
            valLossBySource.forEach((k, v) -> per.append(per.length() == 0 ? " (" : ", ").append(k).append(String.format(" %.4f", v)));
            if (per.length() > 0) per.append(')');
            console.printf("step %6d/%d | val loss %8.4f%s%n", r.step(), totalSteps, valLoss, per);
        }
    }

    private void writeJson(StepResult r, TrainState s, double tps, double mfu, double valLoss, double vol,
                           java.util.Map<String, Double> volBySource, java.util.Map<String, Double> valLossBySource,
                           java.util.Map<String, java.util.Map<String, Double>> extra) {
        ObjectNode o = JSON.createObjectNode();
        o.put("step", r.step());
        putNumber(o, "loss", r.loss());
        putNumber(o, "grad_norm", r.gradNorm());
        o.put("lr", r.lr());
        o.put("tokens", s.tokensTrained);
        o.put("tokens_per_s", tps);
        putNumber(o, "mfu", mfu);
        o.put("skipped", s.skippedSteps);
        o.put("skipped_step", r.skipped());
        ObjectNode per = o.putObject("tokens_per_source");
        s.tokensPerSource.forEach(per::put);
        if (!r.lossBySource().isEmpty()) {
            ObjectNode lb = o.putObject("loss_by_source");
            r.lossBySource().forEach((k, v) -> putNumber(lb, k, v));
            ObjectNode vb = o.putObject("loss_volatility_by_source");
            volBySource.forEach((k, v) -> putNumber(vb, k, v));
        }
        putNumber(o, "loss_volatility", vol);
        if (!Double.isNaN(valLoss)) o.put("val_loss", valLoss);
        if (!valLossBySource.isEmpty()) {
            ObjectNode vb = o.putObject("val_loss_by_source");
            valLossBySource.forEach((k, v) -> putNumber(vb, k, v));
        }
        extra.forEach((k, m) -> {
            ObjectNode e = o.putObject(k);
            m.forEach((n, v) -> putNumber(e, n, v));
        });
        try {
            jsonl.write(JSON.writeValueAsString(o));
            jsonl.write('\n');
            jsonl.flush();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write metrics", e);
        }
    }

    /** JSON has no NaN/Infinity: non-finite values are written as null. */
    private static void putNumber(ObjectNode o, String key, double v) {
        if (Double.isFinite(v)) o.put(key, v); else o.putNull(key);
    }

    static String duration(double seconds) {
        if (!Double.isFinite(seconds)) return "?";
        long s = Math.round(seconds);
        if (s >= 3600) return String.format("%dh%02dm", s / 3600, s / 60 % 60);
        if (s >= 60) return String.format("%dm%02ds", s / 60, s % 60);
        return s + "s";
    }

    @Override
    public void close() {
        if (jsonl != null) {
            try { jsonl.close(); } catch (IOException e) { throw new UncheckedIOException(e); }
        }
    }
}
