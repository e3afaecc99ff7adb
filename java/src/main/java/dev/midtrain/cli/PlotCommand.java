package dev.midtrain.cli;

import dev.midtrain.common.UserError;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.markers.SeriesMarkers;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** `midtrain plot RUN_DIR`: loss (train + validation), learning-rate and throughput curves from metrics.jsonl as PNGs. */
@Command(name = "plot", mixinStandardHelpOptions = true, description = "Render RUN_DIR/metrics.jsonl to RUN_DIR/plots/*.png.")
public final class PlotCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "RUN_DIR", description = "a run directory written by midtrain train") Path runDir;

    @Override
    public Integer call() {
        System.setProperty("java.awt.headless", "true");
        Path file = runDir.resolve("metrics.jsonl");
        List<String> lines;
        try {
            lines = Files.readAllLines(file);
        } catch (NoSuchFileException e) {
            throw new UserError(file + ": not found (is " + runDir + " a run directory?)");
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage());
        }
        Series loss = new Series(), val = new Series(), lr = new Series(), tps = new Series();
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
        } catch (IOException e) {
            throw new UserError(out + ": cannot write plots: " + e.getMessage());
        }
        System.out.println("wrote " + out.resolve("loss.png") + ", lr.png, throughput.png");
        return 0;
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
            if (v != null && v.isNumber() && Double.isFinite(v.asDouble())) { x.add(step); y.add(v.asDouble()); }
        }
    }
}
