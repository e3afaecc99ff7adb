package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.common.UserError;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.CategoryChart;
import org.knowm.xchart.CategoryChartBuilder;

import javax.imageio.ImageIO;
import java.awt.Color;
import java.awt.Graphics2D;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * `synthesize --stage report`: what the pipeline made of its seeds, from the work directory's files alone.
 * Writes report.md (the tables, also printed) and report.png (four bar charts drawn with Java2D via XChart):
 * discipline x difficulty of seeds and of refined outputs, the H4/H5 share of the multi-grade branch (no booster)
 * and the high-difficulty branch (booster), grade requested vs grade judged by the refiner, rejects by stage and
 * reason, tokens used (from each record's provenance, rejects included) and requests per second (stats.jsonl).
 */
public final class Report {
    private static final List<String> MODEL_STAGES = List.of("annotate", "generate", "refine");

    private Report() {}

    /** Summary numbers the tests check. */
    public record Summary(double h45MultiGrade, double h45Booster, Map<String, Map<String, Long>> rejects, long tokens, List<String> warnings) {}

    public static Summary run(Path work, List<String> grades, PrintStream out) {
        List<JsonNode> seeds = JsonlLog.read(Pipeline.annotated(work)), gen = JsonlLog.read(Pipeline.generated(work)),
                ref = JsonlLog.read(Pipeline.refined(work));
        if (seeds.isEmpty() && gen.isEmpty() && ref.isEmpty() && JsonlLog.read(Pipeline.seeds(work)).isEmpty())
            throw new UserError(work + ": nothing to report (no seeds.jsonl, annotated.jsonl, generated.jsonl or refined.jsonl)");
        StringBuilder md = new StringBuilder("# BoostQA synthesis report: " + work + "\n\n");
        md.append("curated seeds: ").append(JsonlLog.read(Pipeline.seeds(work)).size()).append(", annotated: ").append(seeds.size())
                .append(", generated: ").append(gen.size()).append(", refined (final): ").append(ref.size()).append("\n\n");

        Map<String, Map<String, Long>> seedHist = hist(seeds, "discipline", "difficulty"), outHist = hist(ref, "discipline", "difficulty");
        md.append("## Seeds: discipline x difficulty (annotate)\n\n").append(table(seedHist, SynthConfig.TIERS));
        md.append("\n## Outputs: discipline x difficulty (judged by refine)\n\n").append(table(outHist, SynthConfig.TIERS));

        // H4/H5 share per branch: generator's own label (accepted by generate) and the refiner's judgement
        double[] genShare = h45(gen), refShare = h45(ref);
        md.append("\n## H4/H5 share of outputs\n\n| branch | generated (self-labelled) | refined (judged) |\n|---|---|---|\n");
        md.append(String.format("| multi-grade (no booster) | %s | %s |%n", pct(genShare[0], genShare[2]), pct(refShare[0], refShare[2])));
        md.append(String.format("| high-difficulty (booster) | %s | %s |%n", pct(genShare[1], genShare[3]), pct(refShare[1], refShare[3])));
        double mgShare = refShare[2] > 0 ? refShare[0] / refShare[2] : Double.NaN, bShare = refShare[3] > 0 ? refShare[1] / refShare[3] : Double.NaN;
        if (mgShare > 0 && bShare >= 0) md.append(String.format("%nbooster / no booster (refined): %.2fx (the paper reports 1.96x)%n", bShare / mgShare));

        Map<String, Map<String, Long>> gradeHist = hist(ref, "grade_requested", "grade");
        md.append("\n## Grade requested (rows) vs judged by refine (columns)\n\n").append(table(gradeHist, grades));

        Map<String, Map<String, Long>> rejects = new TreeMap<>();
        Map<String, long[]> tokens = new TreeMap<>();
        List<String> warnings = new ArrayList<>();
        for (String st : List.of("curate", "annotate", "generate", "refine")) {
            List<JsonNode> rj = JsonlLog.read(Pipeline.rejects(work, st));
            Map<String, Long> byReason = new TreeMap<>();
            long[] tok = tokens.computeIfAbsent(st, k -> new long[2]);
            for (JsonNode r : rj) {
                byReason.merge(r.path("reason").asText("?"), 1L, Long::sum);
                addTokens(r.path("provenance"), st, tok);
            }
            if (!byReason.isEmpty()) rejects.put(st, byReason);
            List<JsonNode> accepted = switch (st) {
                case "annotate" -> seeds;
                case "generate" -> gen;
                case "refine" -> ref;
                default -> List.of();
            };
            for (JsonNode r : accepted) for (JsonNode p : r.path("provenance")) addTokens(p, st, tok);
            Map<String, Long> bad = new TreeMap<>(byReason);
            bad.keySet().removeIf(k -> !(k.startsWith("malformed") || k.startsWith("schema_violation") || k.startsWith("http_")));
            long malformed = bad.values().stream().mapToLong(Long::longValue).sum(), total = accepted.size() + rj.size();
            if (MODEL_STAGES.contains(st) && total > 0 && malformed * 2 >= total)
                warnings.add(String.format("WARNING: %s: %d of %d responses were malformed, off-schema or refused %s: is the endpoint an "
                        + "instruction-tuned model that answers in JSON, with room for these prompts?", st, malformed, total, bad));
        }
        md.append("\n## Rejects\n\n| stage | reason | count |\n|---|---|---|\n");
        rejects.forEach((st, m) -> m.forEach((r, n) -> md.append("| ").append(st).append(" | ").append(r).append(" | ").append(n).append(" |\n")));

        Map<String, double[]> rate = new TreeMap<>();   // stage -> requests, wall_s, retries, failed
        for (JsonNode s : JsonlLog.read(Pipeline.statsFile(work))) {
            double[] a = rate.computeIfAbsent(s.path("stage").asText(), k -> new double[4]);
            JsonNode c = s.path("counters");
            a[0] += c.path("requests").asDouble();
            a[1] += s.path("wall_s").asDouble();
            for (var it = c.fields(); it.hasNext(); ) {
                var e = it.next();
                if (e.getKey().startsWith("retry.")) a[2] += e.getValue().asDouble();
                if (e.getKey().startsWith("failed.")) a[3] += e.getValue().asDouble();
            }
        }
        md.append("\n## Requests and tokens\n\n| stage | prompt tokens | completion tokens | requests | retries | failed | requests/s |\n|---|---|---|---|---|---|---|\n");
        long allTokens = 0;
        for (String st : MODEL_STAGES) {
            long[] t = tokens.getOrDefault(st, new long[2]);
            double[] a = rate.getOrDefault(st, new double[4]);
            allTokens += t[0] + t[1];
            md.append(String.format("| %s | %d | %d | %.0f | %.0f | %.0f | %.2f |%n", st, t[0], t[1], a[0], a[2], a[3], a[1] > 0 ? a[0] / a[1] : 0));
        }
        if (!warnings.isEmpty()) md.append("\n").append(String.join("\n", warnings)).append("\n");
        try {
            Pipeline.writeAtomically(work.resolve("report.md"), md.toString().getBytes(StandardCharsets.UTF_8));
            png(work.resolve("report.png"), seedHist, outHist, genShare, refShare, gradeHist, grades, rejects);
        } catch (IOException e) {
            throw new UserError(work + ": cannot write the report: " + e.getMessage(), 1, e);
        }
        out.print(md);
        out.println("\nwrote " + work.resolve("report.md") + " and " + work.resolve("report.png"));
        return new Summary(mgShare, bShare, rejects, allTokens, warnings);
    }

    private static void addTokens(JsonNode prov, String stage, long[] tok) {
        if (!prov.path("stage").asText().equals(stage)) return;
        tok[0] += prov.path("prompt_tokens").asLong();
        tok[1] += prov.path("completion_tokens").asLong();
    }

    /** {H4/H5 count multi-grade, H4/H5 count booster, total multi-grade, total booster}. */
    private static double[] h45(List<JsonNode> recs) {
        double[] a = new double[4];
        for (JsonNode r : recs) {
            int b = r.path("branch").asText().equals("high_difficulty") ? 1 : 0;
            String d = r.path("difficulty").asText();
            if (d.equals("H4") || d.equals("H5")) a[b]++;
            a[b + 2]++;
        }
        return a;
    }

    private static String pct(double k, double n) { return n == 0 ? "-" : String.format("%.1f%% (%.0f/%.0f)", 100 * k / n, k, n); }

    private static Map<String, Map<String, Long>> hist(List<JsonNode> recs, String row, String col) {
        Map<String, Map<String, Long>> m = new TreeMap<>();
        for (JsonNode r : recs) m.computeIfAbsent(r.path(row).asText("?"), k -> new TreeMap<>()).merge(r.path(col).asText("?"), 1L, Long::sum);
        return m;
    }

    private static String table(Map<String, Map<String, Long>> h, List<String> cols) {
        TreeSet<String> extra = new TreeSet<>();
        h.values().forEach(m -> m.keySet().stream().filter(k -> !cols.contains(k)).forEach(extra::add));
        List<String> all = new ArrayList<>(cols);
        all.addAll(extra);
        StringBuilder sb = new StringBuilder("| |");
        all.forEach(c -> sb.append(' ').append(c).append(" |"));
        sb.append(" total |\n|---|").append("---|".repeat(all.size() + 1)).append('\n');
        if (h.isEmpty()) return sb.append("| (none) |").append(" |".repeat(all.size() + 1)).append('\n').toString();
        h.forEach((r, m) -> {
            sb.append("| ").append(r).append(" |");
            all.forEach(c -> sb.append(' ').append(m.getOrDefault(c, 0L)).append(" |"));
            sb.append(' ').append(m.values().stream().mapToLong(Long::longValue).sum()).append(" |\n");
        });
        return sb.toString();
    }

    static void png(Path file, Map<String, Map<String, Long>> seedHist, Map<String, Map<String, Long>> outHist,
                    double[] genShare, double[] refShare, Map<String, Map<String, Long>> gradeHist, List<String> grades,
                    Map<String, Map<String, Long>> rejects) throws IOException {
        System.setProperty("java.awt.headless", "true");
        int w = 700, h = 420, lineH = 18;
        List<CategoryChart> charts = List.of(
                stacked("seeds: difficulty by discipline", "tier", SynthConfig.TIERS, seedHist, w, h),
                stacked("refined outputs: difficulty by discipline", "tier", SynthConfig.TIERS, outHist, w, h),
                shares(genShare, refShare, w, h),
                stacked("grade judged, by grade requested", "grade judged", grades, gradeHist, w, h));
        // the rejects text first, so the image is tall enough for all of it (one line per stage and reason, wrapped)
        BufferedImage probe = new BufferedImage(1, 1, BufferedImage.TYPE_INT_RGB);
        java.awt.FontMetrics fm = probe.createGraphics().getFontMetrics();
        List<String> lines = rejectLines(rejects, fm::stringWidth, 2 * w - 36);
        BufferedImage img = new BufferedImage(2 * w, 2 * h + 24 + lineH * (lines.size() + 1), BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, img.getWidth(), img.getHeight());
        for (int i = 0; i < charts.size(); i++) g.drawImage(BitmapEncoder.getBufferedImage(charts.get(i)), (i % 2) * w, (i / 2) * h, null);
        g.setColor(Color.BLACK);
        int y = 2 * h + 24;
        g.drawString("rejects by stage and reason:", 12, y);
        for (String line : lines) g.drawString(line, 24, y += lineH);
        g.dispose();
        ImageIO.write(img, "png", file.toFile());
    }

    /**
     * The rejects as text lines for the image: "stage  reason: count", one per stage and reason, each cut into pieces no
     * wider than {@code maxWidth} (continuations indented), so nothing runs off the image or is left out.
     */
    static List<String> rejectLines(Map<String, Map<String, Long>> rejects, java.util.function.ToIntFunction<String> width, int maxWidth) {
        List<String> out = new ArrayList<>();
        if (rejects.isEmpty()) out.add("(none)");
        rejects.forEach((stage, byReason) -> byReason.forEach((reason, n) -> {
            String rest = stage + "  " + reason + ": " + n;
            String indent = "";
            while (!rest.isEmpty()) {
                int k = rest.length();
                while (k > 1 && width.applyAsInt(indent + rest.substring(0, k)) > maxWidth) k--;
                out.add(indent + rest.substring(0, k));
                rest = rest.substring(k);
                indent = "    ";
            }
        }));
        return out;
    }

    private static CategoryChart stacked(String title, String xTitle, List<String> cols, Map<String, Map<String, Long>> h, int w, int hh) {
        CategoryChart c = new CategoryChartBuilder().width(w).height(hh).title(title).xAxisTitle(xTitle).yAxisTitle("count").build();
        c.getStyler().setStacked(true);
        if (h.isEmpty()) h = Map.of("(none)", Map.of());
        for (var e : h.entrySet()) {
            List<Long> ys = new ArrayList<>();
            for (String col : cols) ys.add(e.getValue().getOrDefault(col, 0L));
            c.addSeries(e.getKey(), new ArrayList<>(cols), ys);
        }
        return c;
    }

    private static CategoryChart shares(double[] gen, double[] ref, int w, int h) {
        CategoryChart c = new CategoryChartBuilder().width(w).height(h).title("H4/H5 share: no booster vs booster").xAxisTitle("branch")
                .yAxisTitle("% H4/H5").build();
        List<String> x = List.of("multi-grade", "booster");
        c.addSeries("generated", x, List.of(share(gen[0], gen[2]), share(gen[1], gen[3])));
        c.addSeries("refined", x, List.of(share(ref[0], ref[2]), share(ref[1], ref[3])));
        return c;
    }

    private static double share(double k, double n) { return n == 0 ? 0 : 100 * k / n; }
}
