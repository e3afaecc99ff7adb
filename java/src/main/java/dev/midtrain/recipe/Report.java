package dev.midtrain.recipe;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.AtomicFiles;
import dev.midtrain.synth.JsonlLog;
import dev.midtrain.train.MetricsLog;
import dev.midtrain.train.RollingVolatility;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The recipe's report: OUT/report/index.html (standalone: inline CSS and SVG, no script or font from the network),
 * report.md (the same tables; the charts as SVG files beside it) and report.json (every number, nothing that depends
 * on timing or paths, so two runs of one recipe compare equal).
 *
 * <p>Sections: the per-variant accuracy table; per variant the before / after heatmaps by discipline x H1-H5 with
 * 95% Wilson intervals and their difference with a 95% Newcombe (hybrid score) interval (it treats the two probes as
 * independent samples; they score the same items, so it is conservative); the data used (tokens, documents and drops
 * per source, decontamination per benchmark, the synthesis funnel and its discipline x difficulty balance); the
 * training curves per source with their rolling volatility and the gradient diagnostics; and every stage's exact
 * commands, key and git commit, the recipe and the resolved training config.
 */
final class Report {
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    static final List<String> TIERS = List.of("H1", "H2", "H3", "H4", "H5");

    record Inputs(Path recipeFile, String recipeText, String gitSha, List<RecipeRunner.VariantRun> variants) {}

    /** One probe result: acc per cell with items, and the micro averages. */
    record Probe(double acc, double accNorm, double macroAcc, int items, Map<String, Map<String, int[]>> cells) {
        static Probe read(Path resultsJson) throws IOException {
            JsonNode o = JSON.readTree(resultsJson.toFile());
            Map<String, Map<String, int[]>> cells = new TreeMap<>();
            for (JsonNode c : o.path("cells"))
                cells.computeIfAbsent(c.path("subject").asText(), k -> new TreeMap<>())
                        .put(c.path("difficulty").asText(), new int[]{c.path("items").asInt(), c.path("correct").asInt()});
            return new Probe(o.path("acc").asDouble(), o.path("acc_norm").asDouble(), o.path("macro_acc").asDouble(), o.path("items").asInt(), cells);
        }

        int[] cell(String subject, String tier) { return cells.getOrDefault(subject, Map.of()).get(tier); }
    }

    /** 95% Wilson score interval of k successes in n. */
    static double[] wilson(int k, int n) {
        if (n == 0) return new double[]{Double.NaN, Double.NaN};
        double z = 1.959963984540054, p = (double) k / n;
        double centre = (p + z * z / (2 * n)) / (1 + z * z / n);
        double half = z / (1 + z * z / n) * Math.sqrt(p * (1 - p) / n + z * z / (4.0 * n * n));
        return new double[]{Math.max(0, centre - half), Math.min(1, centre + half)};
    }

    /** Newcombe's hybrid score interval (method 10) for p1 - p2 from two Wilson intervals: {diff, lo, hi}. */
    static double[] newcombe(int k1, int n1, int k2, int n2) {
        double p1 = (double) k1 / n1, p2 = (double) k2 / n2;
        double[] w1 = wilson(k1, n1), w2 = wilson(k2, n2);
        double d = p1 - p2;
        return new double[]{d, d - Math.sqrt(sq(p1 - w1[0]) + sq(w2[1] - p2)), d + Math.sqrt(sq(w1[1] - p1) + sq(p2 - w2[0]))};
    }

    private static double sq(double x) { return x * x; }

    /** A training run's per-step numbers from metrics.jsonl (the last line of a step wins: a resumed run re-logs some). */
    record Curves(TreeMap<Long, JsonNode> steps) {
        static Curves read(Path metrics) throws IOException {
            TreeMap<Long, JsonNode> m = new TreeMap<>();
            if (Files.isRegularFile(metrics))
                for (String l : Files.readAllLines(metrics)) if (!l.isBlank()) { JsonNode o = JSON.readTree(l); m.put(o.path("step").asLong(), o); }
            return new Curves(m);
        }

        /** The per-step values of {@code field} (an object of name: number), by name; a field ending in "." takes every field with that prefix. */
        Map<String, double[][]> series(String field) {
            Map<String, List<double[]>> pts = new LinkedHashMap<>();
            steps.forEach((s, o) -> o.fields().forEachRemaining(f -> {
                if (!(field.endsWith(".") ? f.getKey().startsWith(field) : f.getKey().equals(field))) return;
                f.getValue().fields().forEachRemaining(e -> {
                    if (e.getValue().isNumber()) pts.computeIfAbsent(e.getKey(), k -> new ArrayList<>()).add(new double[]{s, e.getValue().asDouble()});
                });
            }));
            Map<String, double[][]> out = new LinkedHashMap<>();
            pts.forEach((k, v) -> out.put(k, v.toArray(double[][]::new)));
            return out;
        }

        /** Rolling volatility (std around the trend, {@link MetricsLog#VOLATILITY_WINDOW_STEPS} steps) of each source's loss. */
        Map<String, double[][]> volatility(Map<String, double[][]> loss) {
            Map<String, double[][]> out = new LinkedHashMap<>();
            loss.forEach((k, pts) -> {
                RollingVolatility rv = new RollingVolatility(MetricsLog.VOLATILITY_WINDOW_STEPS);
                List<double[]> v = new ArrayList<>();
                for (double[] p : pts) { double x = rv.add(p[1]); if (Double.isFinite(x)) v.add(new double[]{p[0], x}); }
                out.put(k, v.toArray(double[][]::new));
            });
            return out;
        }
    }

    static RecipeRunner.Outputs write(Inputs in, Path dir) throws IOException {
        Files.createDirectories(dir);
        ObjectNode numbers = JSON.createObjectNode();
        StringBuilder html = new StringBuilder(), md = new StringBuilder();
        html.append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>midtrain recipe report</title>\n<style>")
                .append(CSS).append("</style></head><body>\n");
        html.append("<h1>Mid-training recipe report</h1>\n<p class=\"meta\">recipe <code>").append(esc(in.recipeFile().toString()))
                .append("</code> &middot; engine commit <code>").append(esc(in.gitSha())).append("</code> &middot; ")
                .append(in.variants().size()).append(" variant(s)</p>\n");
        md.append("# Mid-training recipe report\n\nrecipe `").append(in.recipeFile()).append("`, engine commit `").append(in.gitSha()).append("`\n\n");

        // ---- per-variant table
        html.append("<h2>Accuracy by variant</h2>\n<table class=\"num\"><tr><th>variant</th><th>items</th><th>acc before</th><th>acc after</th>"
                + "<th>difference [95%]</th><th>acc_norm before</th><th>acc_norm after</th><th>macro acc before &rarr; after</th><th>tokens trained</th><th>final loss</th></tr>\n");
        md.append("## Accuracy by variant\n\n| variant | items | acc before | acc after | difference [95%] | acc_norm before | acc_norm after | macro acc before -> after | tokens trained | final loss |\n|---|---|---|---|---|---|---|---|---|---|\n");
        ArrayNode vnums = numbers.putArray("variants");
        Map<String, Probe[]> probes = new LinkedHashMap<>();
        Map<String, Curves> curves = new LinkedHashMap<>();
        for (RecipeRunner.VariantRun v : in.variants()) {
            Probe before = Probe.read(v.stageDirs().get("probe-base").resolve("eval/results.json"));
            Probe after = Probe.read(v.stageDirs().get("probe").resolve("eval/results.json"));
            probes.put(v.name(), new Probe[]{before, after});
            Curves c = Curves.read(v.stageDirs().get("train").resolve("run/metrics.jsonl"));
            curves.put(v.name(), c);
            int kb = (int) Math.round(before.acc() * before.items()), ka = (int) Math.round(after.acc() * after.items());
            double[] d = newcombe(ka, after.items(), kb, before.items());
            JsonNode last = c.steps().isEmpty() ? JSON.createObjectNode() : c.steps().lastEntry().getValue();
            String row = String.format(Locale.ROOT, "%s|%d|%.4f|%.4f|%+.4f [%+.4f, %+.4f]|%.4f|%.4f|%.4f &rarr; %.4f|%,d|%.4f", v.name(), after.items(),
                    before.acc(), after.acc(), d[0], d[1], d[2], before.accNorm(), after.accNorm(), before.macroAcc(), after.macroAcc(),
                    last.path("tokens").asLong(), last.path("loss").asDouble(Double.NaN));
            html.append("<tr><td>").append(String.join("</td><td>", row.split("\\|"))).append("</td></tr>\n");
            md.append("| ").append(row.replace("&rarr;", "->").replace("|", " | ")).append(" |\n");
            ObjectNode vn = vnums.addObject();
            vn.put("name", v.name()).put("items", after.items()).put("acc_before", before.acc()).put("acc_after", after.acc())
                    .put("acc_norm_before", before.accNorm()).put("acc_norm_after", after.accNorm()).put("diff", d[0]).put("diff_lo95", d[1]).put("diff_hi95", d[2])
                    .put("tokens", last.path("tokens").asLong()).put("final_loss", last.path("loss").asDouble(Double.NaN));
        }
        html.append("</table>\n");
        // probe.steps: the intermediate checkpoints' accuracy (the trend over tokens)
        StringBuilder steps = new StringBuilder();
        for (RecipeRunner.VariantRun v : in.variants()) {
            Path pd = v.stageDirs().get("probe");
            for (long st : v.recipe().probe().steps()) {
                Probe p = Probe.read(pd.resolve("step_" + st).resolve("results.json"));
                steps.append(String.format(Locale.ROOT, "%s|%d|%.4f|%.4f%n", v.name(), st, p.acc(), p.accNorm()));
                ObjectNode vn = (ObjectNode) vnums.get(indexOf(in, v));
                (vn.has("acc_at_step") ? (ObjectNode) vn.get("acc_at_step") : vn.putObject("acc_at_step")).put(Long.toString(st), p.acc());
            }
        }
        if (steps.length() > 0) {
            html.append("<h3>Intermediate steps</h3><table class=\"num\"><tr><th>variant</th><th>step</th><th>acc</th><th>acc_norm</th></tr>\n");
            md.append("\nIntermediate steps:\n\n| variant | step | acc | acc_norm |\n|---|---|---|---|\n");
            for (String l : steps.toString().split("\n")) {
                html.append("<tr><td>").append(esc(l).replace("|", "</td><td>")).append("</td></tr>\n");
                md.append("| ").append(l.replace("|", " | ")).append(" |\n");
            }
            html.append("</table>\n");
        }
        html.append("<p class=\"note\">Difference: after - before, with a 95% Newcombe hybrid score interval (conservative: both probes score the same items).</p>\n");
        md.append("\nDifference: after - before, 95% Newcombe hybrid score interval (conservative: both probes score the same items).\n\n");

        // ---- heatmaps per variant
        for (RecipeRunner.VariantRun v : in.variants()) {
            Probe[] p = probes.get(v.name());
            TreeSet<String> subjects = new TreeSet<>(p[0].cells().keySet());
            subjects.addAll(p[1].cells().keySet());
            html.append("<h2>Probe by discipline &times; difficulty: ").append(esc(v.name())).append("</h2>\n<div class=\"heat\">");
            md.append("## Probe by discipline x difficulty: ").append(v.name()).append("\n\n");
            ObjectNode cellNums = ((ObjectNode) vnums.get(indexOf(in, v))).putObject("cells");
            for (int which = 0; which < 3; which++) {
                String title = which == 0 ? "before (base)" : which == 1 ? "after (mid-trained)" : "difference (after - before)";
                html.append("<div><h3>").append(title).append("</h3><table class=\"hm\"><tr><th></th>");
                md.append("### ").append(title).append("\n\n| discipline |");
                for (String t : TIERS) { html.append("<th>").append(t).append("</th>"); md.append(' ').append(t).append(" |"); }
                html.append("</tr>\n");
                md.append("\n|---|").append("---|".repeat(TIERS.size())).append('\n');
                for (String s : subjects) {
                    html.append("<tr><th>").append(esc(s)).append("</th>");
                    md.append("| ").append(s).append(" |");
                    for (String t : TIERS) {
                        int[] b = p[0].cell(s, t), a = p[1].cell(s, t);
                        int[] one = which == 0 ? b : a;
                        if (which < 2) {
                            if (one == null || one[0] == 0) { html.append("<td class=\"na\">&ndash;</td>"); md.append(" - |"); continue; }
                            double acc = (double) one[1] / one[0];
                            double[] ci = wilson(one[1], one[0]);
                            html.append("<td style=\"background:").append(seq(acc)).append("\">").append(fmt(acc)).append("<small>[")
                                    .append(fmt(ci[0])).append(", ").append(fmt(ci[1])).append("] n=").append(one[0]).append("</small></td>");
                            md.append(String.format(Locale.ROOT, " %.2f [%.2f, %.2f] n=%d |", acc, ci[0], ci[1], one[0]));
                        } else {
                            if (a == null || b == null || a[0] == 0 || b[0] == 0) { html.append("<td class=\"na\">&ndash;</td>"); md.append(" - |"); continue; }
                            double[] d = newcombe(a[1], a[0], b[1], b[0]);
                            html.append("<td style=\"background:").append(div(d[0])).append("\">").append(String.format(Locale.ROOT, "%+.2f", d[0]))
                                    .append("<small>[").append(String.format(Locale.ROOT, "%+.2f, %+.2f", d[1], d[2])).append("]</small></td>");
                            md.append(String.format(Locale.ROOT, " %+.2f [%+.2f, %+.2f] |", d[0], d[1], d[2]));
                            cellNums.putObject(s + "/" + t).put("before", (double) b[1] / b[0]).put("after", (double) a[1] / a[0])
                                    .put("diff", d[0]).put("lo95", d[1]).put("hi95", d[2]).put("items", a[0]);
                        }
                    }
                    html.append("</tr>\n");
                    md.append('\n');
                }
                html.append("</table></div>");
                md.append('\n');
            }
            html.append("</div>\n");
        }

        // ---- data used
        html.append("<h2>Data used</h2>\n");
        md.append("## Data used\n\n");
        for (RecipeRunner.VariantRun v : in.variants()) {
            ObjectNode dn = ((ObjectNode) vnums.get(indexOf(in, v))).putObject("data");
            html.append("<h3>").append(esc(v.name())).append("</h3>\n<table class=\"num\"><tr><th>source</th><th>weight</th><th>documents kept</th><th>tokens prepared</th><th>tokens trained</th><th>dropped</th><th>decontamination (documents removed per benchmark)</th></tr>\n");
            md.append("### ").append(v.name()).append("\n\n| source | weight | documents kept | tokens prepared | tokens trained | dropped | decontamination |\n|---|---|---|---|---|---|---|\n");
            Curves c = curves.get(v.name());
            JsonNode trained = c.steps().isEmpty() ? JSON.createObjectNode() : c.steps().lastEntry().getValue().path("tokens_per_source");
            for (Recipe.Source src : List.of(v.recipe().qa(), v.recipe().web())) {
                JsonNode man = JSON.readTree(v.stageDirs().get("prepare").resolve(src.name()).resolve("manifest.json").toFile());
                StringBuilder dropped = new StringBuilder(), dec = new StringBuilder();
                man.path("dropped").fields().forEachRemaining(e -> { if (e.getValue().asLong() > 0) dropped.append(dropped.length() == 0 ? "" : ", ").append(e.getKey()).append(' ').append(e.getValue().asLong()); });
                for (JsonNode b : man.path("decontamination").path("benchmarks"))
                    dec.append(dec.length() == 0 ? "" : ", ").append(Path.of(b.path("file").asText()).getFileName()).append(' ').append(b.path("documents_removed").asLong());
                String row = String.join("|", src.name(), String.format(Locale.ROOT, "%.3f", src.weight()), String.format(Locale.ROOT, "%,d", man.path("documents").asLong()),
                        String.format(Locale.ROOT, "%,d", man.path("tokens").asLong()), String.format(Locale.ROOT, "%,d", trained.path(src.name()).asLong()),
                        dropped.length() == 0 ? "none" : dropped.toString(), dec.length() == 0 ? "none" : dec.toString());
                html.append("<tr><td>").append(esc(row).replace("|", "</td><td>")).append("</td></tr>\n");
                md.append("| ").append(row.replace("|", " | ")).append(" |\n");
                dn.putObject(src.name()).put("documents", man.path("documents").asLong()).put("tokens", man.path("tokens").asLong())
                        .put("tokens_trained", trained.path(src.name()).asLong()).put("dropped", dropped.toString()).put("decontamination", dec.toString());
            }
            html.append("</table>\n");
            md.append('\n');
            Path synth = v.stageDirs().get("synthesize");
            if (synth != null) synthesis(synth, html, md, dn.putObject("synthesis"));
        }

        // ---- training curves, volatility, gradient diagnostics
        html.append("<h2 id=\"curves\">Training curves</h2>\n");
        md.append("## Training curves\n\n");
        for (RecipeRunner.VariantRun v : in.variants()) {
            Curves c = curves.get(v.name());
            Map<String, double[][]> loss = c.series("loss_by_source"), vol = c.volatility(loss);
            Map<String, double[][]> gnorm = c.series("grad_norm_by_source"), gcos = c.series("grad_cosine"),
                    gcosLayer = c.series("grad_cosine_by_layer.");
            ObjectNode tn = ((ObjectNode) vnums.get(indexOf(in, v))).putObject("training");
            vol.forEach((k, pts) -> tn.put("volatility_last." + k, pts.length == 0 ? Double.NaN : pts[pts.length - 1][1]));
            loss.forEach((k, pts) -> tn.put("loss_last." + k, pts[pts.length - 1][1]));
            html.append("<h3>").append(esc(v.name())).append("</h3><div class=\"charts\">");
            md.append("### ").append(v.name()).append("\n\n");
            List<String[]> charts = new ArrayList<>();
            charts.add(new String[]{"loss by source", "loss"});
            charts.add(new String[]{"loss volatility (std around the trend, " + MetricsLog.VOLATILITY_WINDOW_STEPS + " steps)", "volatility"});
            if (!gnorm.isEmpty()) {
                charts.add(new String[]{"gradient norm of each source", "gnorm"});
                charts.add(new String[]{"cosine between the sources' gradients", "gcos"});
                charts.add(new String[]{"gradient cosine per layer", "gcos-layers"});
            }
            for (String[] ch : charts) {
                Map<String, double[][]> data = switch (ch[1]) {
                    case "loss" -> loss; case "volatility" -> vol; case "gnorm" -> gnorm; case "gcos" -> gcos; default -> gcosLayer;
                };
                String svg = Svg.lineChart(ch[0], data);
                String file = "curves-" + v.name() + "-" + ch[1] + ".svg";
                AtomicFiles.writeString(dir.resolve(file), svg);
                html.append("<figure>").append(svg).append("</figure>");
                md.append("![").append(ch[0]).append("](").append(file).append(")\n");
            }
            html.append("</div>\n");
            if (!gcos.isEmpty()) {
                double mean = 0;
                int n = 0;
                for (double[][] pts : gcos.values()) for (double[] p : pts) { mean += p[1]; n++; }
                mean /= Math.max(1, n);
                tn.put("grad_cosine_mean", mean);
                String line = String.format(Locale.ROOT, "Gradient diagnostics: %d measured steps, mean cosine between the sources' gradients %.3f "
                        + "(1: they agree, 0: orthogonal, < 0: they pull apart), next to the loss volatility above.", n, mean);
                html.append("<p>").append(esc(line)).append("</p>\n");
                md.append('\n').append(line).append('\n');
            }
            md.append('\n');
        }

        // ---- provenance
        html.append("<h2>How every number was made</h2>\n");
        md.append("## How every number was made\n\n");
        for (RecipeRunner.VariantRun v : in.variants()) {
            html.append("<h3>").append(esc(v.name())).append("</h3>\n<table class=\"prov\"><tr><th>stage</th><th>key</th><th>commit</th><th>commands</th></tr>\n");
            md.append("### ").append(v.name()).append("\n\n");
            for (var e : v.stageDirs().entrySet()) {
                JsonNode rec = JSON.readTree(e.getValue().resolve("record.json").toFile());
                StringBuilder cmds = new StringBuilder();
                for (JsonNode c : rec.path("commands")) {
                    List<String> parts = new ArrayList<>();
                    c.forEach(x -> parts.add(x.asText()));
                    cmds.append(String.join(" ", parts)).append('\n');
                }
                html.append("<tr><td>").append(e.getKey()).append("</td><td><code>").append(rec.path("key").asText().substring(0, 12))
                        .append("</code></td><td><code>").append(esc(rec.path("git_sha").asText())).append("</code></td><td><pre>")
                        .append(esc(cmds.toString().strip())).append("</pre></td></tr>\n");
                md.append("- **").append(e.getKey()).append("** (key `").append(rec.path("key").asText(), 0, 12).append("`, commit `")
                        .append(rec.path("git_sha").asText()).append("`)\n\n```\n").append(cmds.toString().strip()).append("\n```\n");
            }
            html.append("</table>\n");
            Path cfg = v.stageDirs().get("train").resolve("run/config.yaml");
            if (Files.isRegularFile(cfg)) {
                String text = Files.readString(cfg);
                html.append("<details><summary>resolved training config (").append(esc(v.name())).append(")</summary><pre>").append(esc(text)).append("</pre></details>\n");
                md.append("\nResolved training config:\n\n```yaml\n").append(text.strip()).append("\n```\n\n");
            }
        }
        html.append("<h3>The recipe</h3><pre>").append(esc(in.recipeText())).append("</pre>\n");
        md.append("### The recipe\n\n```yaml\n").append(in.recipeText().strip()).append("\n```\n");
        html.append(RENDER_CHECK).append("</body></html>\n");
        AtomicFiles.writeString(dir.resolve("report.json"), JSON.writeValueAsString(numbers));
        AtomicFiles.writeString(dir.resolve("report.md"), md.toString());
        AtomicFiles.writeString(dir.resolve("index.html"), html.toString());
        return RecipeRunner.Outputs.of(dir, List.of(List.of("(in-process) report over " + in.variants().size() + " variant(s)")),
                "index.html", "report.md", "report.json");
    }

    private static int indexOf(Inputs in, RecipeRunner.VariantRun v) { return in.variants().indexOf(v); }

    /** The synthesis funnel (records per step, rejects by reason) and the discipline x difficulty balance of the QA pairs. */
    private static void synthesis(Path stageDir, StringBuilder html, StringBuilder md, ObjectNode n) throws IOException {
        Path work = stageDir.resolve("work");
        Map<String, Long> funnel = new LinkedHashMap<>();
        for (String f : List.of("seeds", "annotated", "generated", "refined")) {
            Path p = work.resolve(f + ".jsonl");
            if (Files.isRegularFile(p)) funnel.put(f, (long) JsonlLog.read(p).size());
        }
        Map<String, Long> rejects = new TreeMap<>();
        try (var s = Files.list(work)) {
            for (Path p : s.filter(x -> x.getFileName().toString().endsWith(".rejects.jsonl")).sorted().toList()) {
                String stage = p.getFileName().toString().replace(".rejects.jsonl", "");
                for (JsonNode r : JsonlLog.read(p)) rejects.merge(stage + ": " + r.path("reason").asText("?"), 1L, Long::sum);
            }
        }
        Map<String, Map<String, Integer>> balance = new TreeMap<>();
        for (JsonNode q : JsonlLog.read(stageDir.resolve("qa.jsonl")))
            balance.computeIfAbsent(q.path("discipline").asText("?"), k -> new TreeMap<>()).merge(q.path("difficulty").asText("?"), 1, Integer::sum);
        StringBuilder f = new StringBuilder();
        funnel.forEach((k, v) -> f.append(f.length() == 0 ? "" : " &rarr; ").append(k).append(' ').append(v));
        StringBuilder r = new StringBuilder();
        rejects.forEach((k, v) -> r.append(r.length() == 0 ? "" : ", ").append(k).append(' ').append(v));
        html.append("<p>Synthesis funnel: ").append(f).append(". Rejected: ").append(r.length() == 0 ? "none" : esc(r.toString())).append(".</p>\n");
        md.append("Synthesis funnel: ").append(f.toString().replace("&rarr;", "->")).append(". Rejected: ").append(r.length() == 0 ? "none" : r).append(".\n\n");
        html.append("<table class=\"num\"><tr><th>QA pairs</th>");
        md.append("| QA pairs |");
        for (String t : TIERS) { html.append("<th>").append(t).append("</th>"); md.append(' ').append(t).append(" |"); }
        html.append("</tr>\n");
        md.append("\n|---|").append("---|".repeat(TIERS.size())).append('\n');
        balance.forEach((d, m) -> {
            html.append("<tr><th>").append(esc(d)).append("</th>");
            md.append("| ").append(d).append(" |");
            for (String t : TIERS) { html.append("<td>").append(m.getOrDefault(t, 0)).append("</td>"); md.append(' ').append(m.getOrDefault(t, 0)).append(" |"); }
            html.append("</tr>\n");
            md.append('\n');
        });
        html.append("</table>\n");
        md.append('\n');
        n.set("funnel", JSON.valueToTree(funnel));
        n.set("rejects", JSON.valueToTree(rejects));
        n.set("balance", JSON.valueToTree(balance));
    }

    static String fmt(double v) { return String.format(Locale.ROOT, "%.2f", v); }

    /** White to blue for an accuracy in [0, 1]. */
    static String seq(double v) {
        double t = Math.max(0, Math.min(1, v));
        return String.format(Locale.ROOT, "rgb(%d,%d,%d)", (int) (255 - 200 * t), (int) (255 - 120 * t), 255);
    }

    /** Red (worse) through white to green (better) for a difference in [-0.5, 0.5]. */
    static String div(double d) {
        double t = Math.max(-1, Math.min(1, d * 2));
        return t >= 0 ? String.format(Locale.ROOT, "rgb(%d,255,%d)", (int) (255 - 130 * t), (int) (255 - 130 * t))
                : String.format(Locale.ROOT, "rgb(255,%d,%d)", (int) (255 + 130 * t), (int) (255 + 130 * t));
    }

    static String esc(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }

    private static final String CSS = """
            body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px 32px;color:#222;max-width:1400px}
            h1{font-size:24px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ccc}h3{font-size:15px}
            table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px}
            table.num td{text-align:right}table.hm td{text-align:center;min-width:72px}table.hm small{display:block;font-size:10px;color:#444}
            td.na{color:#aaa}.heat{display:flex;flex-wrap:wrap;gap:24px}.charts{display:flex;flex-wrap:wrap;gap:12px}
            figure{margin:0}pre{font-size:11px;white-space:pre-wrap;margin:0}.meta,.note{color:#555;font-size:13px}
            table.prov td{vertical-align:top}
            """;

    /** After layout: every chart has a size and every heatmap a cell, or the page says it did not render (the test reads this). */
    private static final String RENDER_CHECK = """
            <p id="render-check" class="note">not checked</p>
            <script>
            (function(){var svgs=document.querySelectorAll('svg'),ok=svgs.length>0;
            svgs.forEach(function(s){var b=s.getBoundingClientRect();if(!(b.width>0&&b.height>0))ok=false;});
            if(document.querySelectorAll('table.hm td').length===0)ok=false;
            document.getElementById('render-check').textContent=(ok?'rendered: ':'NOT RENDERED: ')+svgs.length+' charts, '
            +document.querySelectorAll('table.hm td').length+' heatmap cells';})();
            </script>
            """;
}
