package dev.midtrain.cli;

import dev.midtrain.common.UserError;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.lines.SeriesLines;
import org.knowm.xchart.style.markers.SeriesMarkers;
import dev.midtrain.train.MetricsLog;
import dev.midtrain.train.RollingVolatility;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * `midtrain plot RUN_DIR`: loss (train + validation), learning-rate and throughput curves from metrics.jsonl as PNGs;
 * with per-source metrics also loss_by_source.png (each source's training loss, and its held-out loss as markers)
 * and volatility.png (standard deviation of each source's and the blend's step loss around its linear trend over
 * --window steps, {@link RollingVolatility}). A source has the same colour in both.
 */
@Command(name = "plot", mixinStandardHelpOptions = true, description = "Render RUN_DIR/metrics.jsonl to RUN_DIR/plots/*.png.")
public final class PlotCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "RUN_DIR", description = "a run directory written by midtrain train") Path runDir;
    @Option(names = "--window", description = "steps in the rolling loss-volatility window (default ${DEFAULT-VALUE})")
    int window = MetricsLog.VOLATILITY_WINDOW_STEPS;

    @Override
    public Integer call() {
        System.setProperty("java.awt.headless", "true");
        if (window < 3) throw new UserError("--window: must be >= 3 steps, got " + window);
        Path file = runDir.resolve("metrics.jsonl");
        List<String> lines;
        try {
            lines = Files.readAllLines(file);
        } catch (NoSuchFileException e) {
            throw new UserError(file + ": not found (is " + runDir + " a run directory?)");
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage());
        }
        Series loss = new Series(), val = new Series(), lr = new Series(), tps = new Series(), vol = new Series();
        Map<String, Series> bySource = new LinkedHashMap<>(), valBySource = new LinkedHashMap<>(), volBySource = new LinkedHashMap<>();
        Map<String, Series> gradNorm = new LinkedHashMap<>(), gradCos = new LinkedHashMap<>();       // diagnostics.every_steps
        Map<String, Series> evalAcc = new LinkedHashMap<>(), evalAccNorm = new LinkedHashMap<>();   // eval.tasks during training
        RollingVolatility blendStd = new RollingVolatility(window);
        Map<String, RollingVolatility> sourceStd = new LinkedHashMap<>();
        ObjectMapper json = new ObjectMapper();
        for (int i = 0; i < lines.size(); i++) {
            if (lines.get(i).isBlank()) continue;
            JsonNode o;
            try {
                o = json.readTree(lines.get(i));
            } catch (IOException e) {
                throw new UserError(file + ": line " + (i + 1) + " is not JSON");
            }
            if (o == null || !o.has("step")) throw new UserError(file + ": line " + (i + 1) + " has no step field");
            double step = o.get("step").asDouble();
            loss.add(step, o.get("loss"));
            val.add(step, o.get("val_loss"));
            lr.add(step, o.get("lr"));
            tps.add(step, o.get("tokens_per_s"));
            JsonNode l = o.get("loss");
            if (l != null && l.isNumber()) vol.add(step, blendStd.add(l.asDouble()));
            o.path("loss_by_source").fields().forEachRemaining(e -> {
                bySource.computeIfAbsent(e.getKey(), k -> new Series()).add(step, e.getValue());
                if (e.getValue().isNumber())
                    volBySource.computeIfAbsent(e.getKey(), k -> new Series())
                            .add(step, sourceStd.computeIfAbsent(e.getKey(), k -> new RollingVolatility(window)).add(e.getValue().asDouble()));
            });
            o.path("grad_norm_by_source").fields().forEachRemaining(e -> gradNorm.computeIfAbsent(e.getKey(), k -> new Series()).add(step, e.getValue()));
            o.path("grad_cosine").fields().forEachRemaining(e -> gradCos.computeIfAbsent(e.getKey() + " (model)", k -> new Series()).add(step, e.getValue()));
            o.fields().forEachRemaining(f -> {
                if (f.getKey().startsWith("grad_cosine_by_layer."))
                    f.getValue().fields().forEachRemaining(e -> gradCos.computeIfAbsent(e.getKey(), k -> new Series()).add(step, e.getValue()));
            });
            o.path("eval_acc").fields().forEachRemaining(e -> evalAcc.computeIfAbsent(e.getKey(), k -> new Series()).add(step, e.getValue()));
            o.path("eval_acc_norm").fields().forEachRemaining(e -> evalAccNorm.computeIfAbsent(e.getKey(), k -> new Series()).add(step, e.getValue()));
            o.path("val_loss_by_source").fields().forEachRemaining(e ->
                    valBySource.computeIfAbsent(e.getKey(), k -> new Series()).add(step, e.getValue()));
        }
        if (loss.x.isEmpty()) throw new UserError(file + ": no finite loss values to plot");
        Path out = runDir.resolve("plots");
        try {
            Files.createDirectories(out);
            XYChart lossChart = chart("loss", "loss (mean token cross-entropy)");
            lossChart.addSeries("train", loss.x, loss.y).setMarker(SeriesMarkers.NONE);
            if (!val.x.isEmpty()) lossChart.addSeries("validation", val.x, val.y).setMarker(SeriesMarkers.CIRCLE);
            save(lossChart, out.resolve("loss"));
            XYChart lrChart = chart("learning rate", "lr");
            lrChart.addSeries("lr", lr.x, lr.y).setMarker(SeriesMarkers.NONE);
            save(lrChart, out.resolve("lr"));
            XYChart tpsChart = chart("throughput", "tokens / s");
            tpsChart.addSeries("tokens/s", tps.x, tps.y).setMarker(SeriesMarkers.NONE);
            save(tpsChart, out.resolve("throughput"));
            if (!bySource.isEmpty()) {
                XYChart src = chart("loss by source", "loss (mean token cross-entropy)");
                List<String> names = new ArrayList<>(bySource.keySet());
                valBySource.keySet().forEach(k -> { if (!names.contains(k)) names.add(k); });
                bySource.forEach((k, v) -> { if (!v.x.isEmpty()) src.addSeries("train " + k, v.x, v.y).setMarker(SeriesMarkers.NONE)
                        .setLineColor(colour(names, k)); });
                valBySource.forEach((k, v) -> {
                    if (v.x.isEmpty()) return;
                    XYSeries sv = src.addSeries("validation " + k, v.x, v.y);
                    sv.setMarker(SeriesMarkers.CIRCLE);
                    sv.setMarkerColor(colour(names, k));
                    sv.setLineColor(colour(names, k));
                    sv.setLineStyle(SeriesLines.DASH_DASH);
                });
                save(src, out.resolve("loss_by_source"));
                XYChart volChart = chart("loss volatility (std around the trend over " + window + " steps)", "std of the step loss");
                if (!vol.x.isEmpty()) volChart.addSeries("blend", vol.x, vol.y).setMarker(SeriesMarkers.NONE).setLineColor(java.awt.Color.BLACK);
                volBySource.forEach((k, v) -> { if (!v.x.isEmpty()) volChart.addSeries(k, v.x, v.y).setMarker(SeriesMarkers.NONE)
                        .setLineColor(colour(names, k)); });
                if (!volChart.getSeriesMap().isEmpty()) save(volChart, out.resolve("volatility"));
            }
            if (!gradNorm.isEmpty()) {
                List<String> names = new ArrayList<>(bySource.keySet());
                XYChart gn = chart("gradient norm of each source's part of the batch", "L2 norm of the source's mean-loss gradient");
                gradNorm.forEach((k, v) -> { if (!v.x.isEmpty()) gn.addSeries(k, v.x, v.y).setMarker(SeriesMarkers.CIRCLE).setLineColor(colour(names, k)); });
                save(gn, out.resolve("grad_norm_by_source"));
                XYChart gc = chart("cosine between the sources' gradients (model and per layer)", "cosine similarity");
                gradCos.forEach((k, v) -> {
                    if (v.x.isEmpty()) return;
                    XYSeries sc = gc.addSeries(k, v.x, v.y);
                    sc.setMarker(SeriesMarkers.NONE);
                    if (k.endsWith("(model)")) { sc.setLineColor(java.awt.Color.BLACK); sc.setLineWidth(3f); }
                });
                save(gc, out.resolve("grad_cosine"));
            }
            if (!evalAcc.isEmpty()) {
                XYChart ev = chart("multiple-choice accuracy during training (eval.tasks)", "accuracy");
                evalAcc.forEach((k, v) -> { if (!v.x.isEmpty()) ev.addSeries("acc " + k, v.x, v.y).setMarker(SeriesMarkers.CIRCLE); });
                evalAccNorm.forEach((k, v) -> { if (!v.x.isEmpty()) ev.addSeries("acc_norm " + k, v.x, v.y).setMarker(SeriesMarkers.DIAMOND); });
                save(ev, out.resolve("eval"));
            }
        } catch (IOException e) {
            throw new UserError(out + ": cannot write plots: " + e.getMessage());
        }
        System.out.println("wrote " + out.resolve("loss.png") + ", lr.png, throughput.png"
                + (bySource.isEmpty() ? "" : ", loss_by_source.png, volatility.png") + (evalAcc.isEmpty() ? "" : ", eval.png")
                + (gradNorm.isEmpty() ? "" : ", grad_norm_by_source.png, grad_cosine.png"));
        return 0;
    }

    private static final java.awt.Color[] PALETTE = {new java.awt.Color(0x1f77b4), new java.awt.Color(0xd62728),
            new java.awt.Color(0x2ca02c), new java.awt.Color(0xff7f0e), new java.awt.Color(0x9467bd), new java.awt.Color(0x8c564b)};

    /** One colour per source, the same in every chart. */
    private static java.awt.Color colour(List<String> names, String source) {
        return PALETTE[Math.max(0, names.indexOf(source)) % PALETTE.length];
    }

    private static XYChart chart(String title, String yTitle) {
        XYChart c = new XYChartBuilder().width(900).height(500).title(title).xAxisTitle("step").yAxisTitle(yTitle).build();
        c.getStyler().setDefaultSeriesRenderStyle(XYSeries.XYSeriesRenderStyle.Line);
        return c;
    }

    private static void save(XYChart c, Path withoutExtension) throws IOException {
        BitmapEncoder.saveBitmap(c, withoutExtension.toString(), BitmapEncoder.BitmapFormat.PNG);
    }

    /** Points with a finite value (skipped steps have null loss; val_loss appears only on evaluated steps). */
    private static final class Series {
        final List<Double> x = new ArrayList<>(), y = new ArrayList<>();

        void add(double step, JsonNode v) {
            if (v != null && v.isNumber()) add(step, v.asDouble());
        }

        void add(double step, double v) {
            if (Double.isFinite(v)) { x.add(step); y.add(v); }
        }
    }
}
