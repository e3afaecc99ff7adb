package dev.midtrain.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * Accuracy by discipline x difficulty: items, acc (with a 95% Wilson score interval) and acc_norm per cell, per
 * discipline, per tier and overall; micro average = over items, macro average = mean of the disciplines' accuracies.
 * Round-trips through JSON so that {@code --compare} can read an earlier result.
 */
public final class EvalReport {
    static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    public static final String ALL = "all";

    /** Counts of one cell. */
    public record Cell(int items, int correct, int correctNorm) {
        public double acc() { return items == 0 ? Double.NaN : correct / (double) items; }
        public double accNorm() { return items == 0 ? Double.NaN : correctNorm / (double) items; }
        /** 95% Wilson score interval of acc: {lo, hi}. */
        public double[] ci95() {
            if (items == 0) return new double[]{Double.NaN, Double.NaN};
            double z = 1.959963984540054, n = items, p = acc();
            double centre = (p + z * z / (2 * n)) / (1 + z * z / n);
            double half = z / (1 + z * z / n) * Math.sqrt(p * (1 - p) / n + z * z / (4 * n * n));
            return new double[]{Math.max(0, centre - half), Math.min(1, centre + half)};
        }
        Cell plus(Cell o) { return new Cell(items + o.items, correct + o.correct, correctNorm + o.correctNorm); }
    }

    private final String model;
    private final int shots;
    /** subject -> tier ("H1".."H5", "-") -> counts */
    private final Map<String, Map<String, Cell>> cells;

    public EvalReport(String model, int shots, Map<String, Map<String, Cell>> cells) {
        this.model = model;
        this.shots = shots;
        this.cells = cells;
    }

    public static EvalReport of(String model, int shots, List<Evaluator.ItemResult> results) {
        Map<String, Map<String, Cell>> cells = new TreeMap<>();
        for (Evaluator.ItemResult r : results)
            cells.computeIfAbsent(r.item().subject(), s -> new TreeMap<>())
                    .merge(r.item().tier(), new Cell(1, r.correct() ? 1 : 0, r.correctNorm() ? 1 : 0), Cell::plus);
        return new EvalReport(model, shots, cells);
    }

    /**
     * Why this report cannot be compared with {@code other}, or null when it can: another shot count, or another task
     * set (the subject x tier cells or their item counts differ). A comparison across those would be a table of
     * deltas between different questions.
     */
    public String incomparableWith(EvalReport other) {
        if (shots != other.shots) return "shot count " + other.shots + " != this run's " + shots;
        Map<String, Integer> a = itemCounts(), b = other.itemCounts();
        if (!a.equals(b)) {
            List<String> diff = new ArrayList<>();
            for (String k : union(new ArrayList<>(a.keySet()), new ArrayList<>(b.keySet())))
                if (!java.util.Objects.equals(a.get(k), b.get(k))) diff.add(k + " " + b.getOrDefault(k, 0) + " != " + a.getOrDefault(k, 0));
            return "another task set (items per subject/tier: " + String.join(", ", diff.subList(0, Math.min(4, diff.size())))
                    + (diff.size() > 4 ? ", ..." : "") + ")";
        }
        return null;
    }

    /** Items per "subject/tier" cell. */
    private Map<String, Integer> itemCounts() {
        Map<String, Integer> m = new TreeMap<>();
        cells.forEach((s, t) -> t.forEach((tier, c) -> m.put(s + "/" + tier, c.items())));
        return m;
    }

    /** A report with the cells (item counts, nothing scored) that {@code items} will give: for checks before scoring. */
    public static EvalReport shapeOf(int shots, List<McItem> items) {
        Map<String, Map<String, Cell>> cells = new TreeMap<>();
        for (McItem it : items) cells.computeIfAbsent(it.subject(), s -> new TreeMap<>()).merge(it.tier(), new Cell(1, 0, 0), Cell::plus);
        return new EvalReport("(to be scored)", shots, cells);
    }

    public String model() { return model; }
    public int shots() { return shots; }
    public List<String> subjects() { return new ArrayList<>(cells.keySet()); }

    public List<String> tiers() {
        TreeMap<String, Boolean> t = new TreeMap<>();
        cells.values().forEach(m -> m.keySet().forEach(k -> t.put(k, true)));
        return new ArrayList<>(t.keySet());
    }

    /** A cell; subject or tier may be {@link #ALL}. Empty cells have 0 items. */
    public Cell cell(String subject, String tier) {
        Cell c = new Cell(0, 0, 0);
        for (Map.Entry<String, Map<String, Cell>> s : cells.entrySet())
            if (subject.equals(ALL) || subject.equals(s.getKey()))
                for (Map.Entry<String, Cell> t : s.getValue().entrySet())
                    if (tier.equals(ALL) || tier.equals(t.getKey())) c = c.plus(t.getValue());
        return c;
    }

    public Cell total() { return cell(ALL, ALL); }
    public double microAcc() { return total().acc(); }
    public double microAccNorm() { return total().accNorm(); }
    public double macroAcc() { return cells.keySet().stream().mapToDouble(s -> cell(s, ALL).acc()).average().orElse(Double.NaN); }
    public double macroAccNorm() { return cells.keySet().stream().mapToDouble(s -> cell(s, ALL).accNorm()).average().orElse(Double.NaN); }

    // ------------------------------------------------------------------------------------------------- text

    /** The discipline x difficulty table: "acc% [lo-hi] n" per cell, rows and a total row/column. */
    public String table() {
        List<String> tiers = tiers();
        StringBuilder s = new StringBuilder();
        s.append(String.format(Locale.ROOT, "%s, %d-shot: %d items | acc %.1f%% (micro), %.1f%% (macro) | acc_norm %.1f%% (micro), %.1f%% (macro)%n",
                model, shots, total().items(), 100 * microAcc(), 100 * macroAcc(), 100 * microAccNorm(), 100 * macroAccNorm()));
        s.append(String.format("%-18s", "discipline"));
        for (String t : tiers) s.append(String.format("%-20s", t));
        s.append(String.format("%-20s%n", ALL));
        List<String> rows = new ArrayList<>(cells.keySet());
        rows.add(ALL);
        for (String subj : rows) {
            s.append(String.format("%-18s", subj.length() > 17 ? subj.substring(0, 17) : subj));
            for (String t : tiers) s.append(String.format("%-20s", fmt(cell(subj, t))));
            s.append(String.format("%-20s%n", fmt(cell(subj, ALL))));
        }
        return s.toString();
    }

    private static String fmt(Cell c) {
        if (c.items() == 0) return "-";
        double[] ci = c.ci95();
        return String.format(Locale.ROOT, "%5.1f [%2.0f-%3.0f] %d", 100 * c.acc(), 100 * ci[0], 100 * ci[1], c.items());
    }

    /** Side by side: this (A) and other (B) per cell, with delta = A - B in accuracy points. */
    public String compareTable(EvalReport other) {
        List<String> tiers = union(tiers(), other.tiers());
        List<String> rows = union(subjects(), other.subjects());
        rows.add(ALL);
        StringBuilder s = new StringBuilder();
        s.append(String.format(Locale.ROOT, "A = %s%nB = %s%nacc (micro): A %.1f%%, B %.1f%%, delta %+.1f | acc (macro): A %.1f%%, B %.1f%%, delta %+.1f%n",
                model, other.model, 100 * microAcc(), 100 * other.microAcc(), 100 * (microAcc() - other.microAcc()),
                100 * macroAcc(), 100 * other.macroAcc(), 100 * (macroAcc() - other.macroAcc())));
        s.append(String.format("%-18s", "discipline"));
        List<String> cols = new ArrayList<>(tiers);
        cols.add(ALL);
        for (String t : cols) s.append(String.format("%-20s", t + " A/B/delta"));
        s.append('\n');
        for (String subj : rows) {
            s.append(String.format("%-18s", subj.length() > 17 ? subj.substring(0, 17) : subj));
            for (String t : cols) {
                Cell a = cell(subj, t), b = other.cell(subj, t);
                s.append(String.format("%-20s", a.items() == 0 && b.items() == 0 ? "-" : String.format(Locale.ROOT, "%.0f/%.0f/%+.0f",
                        100 * a.acc(), 100 * b.acc(), 100 * (a.acc() - b.acc()))));
            }
            s.append('\n');
        }
        return s.toString();
    }

    static List<String> union(List<String> a, List<String> b) {
        TreeMap<String, Boolean> m = new TreeMap<>();
        a.forEach(x -> m.put(x, true));
        b.forEach(x -> m.put(x, true));
        return new ArrayList<>(m.keySet());
    }

    // ------------------------------------------------------------------------------------------------- JSON

    public ObjectNode toJson() {
        ObjectNode o = JSON.createObjectNode();
        o.put("model", model);
        o.put("shots", shots);
        o.put("items", total().items());
        o.put("acc", microAcc());
        o.put("acc_norm", microAccNorm());
        o.put("macro_acc", macroAcc());
        o.put("macro_acc_norm", macroAccNorm());
        ArrayNode arr = o.putArray("cells");
        cells.forEach((subj, m) -> m.forEach((tier, c) -> {
            ObjectNode n = arr.addObject();
            double[] ci = c.ci95();
            n.put("subject", subj).put("difficulty", tier).put("items", c.items()).put("correct", c.correct())
                    .put("correct_norm", c.correctNorm()).put("acc", c.acc()).put("acc_lo95", ci[0]).put("acc_hi95", ci[1])
                    .put("acc_norm", c.accNorm());
        }));
        ObjectNode bySubject = o.putObject("by_subject");
        for (String subj : cells.keySet()) bySubject.put(subj, cell(subj, ALL).acc());
        ObjectNode byTier = o.putObject("by_difficulty");
        for (String t : tiers()) byTier.put(t, cell(ALL, t).acc());
        return o;
    }

    public static EvalReport fromJson(Path file) {
        try {
            JsonNode o = JSON.readTree(Files.readString(file));
            Map<String, Map<String, Cell>> cells = new TreeMap<>();
            for (JsonNode n : o.path("cells"))
                cells.computeIfAbsent(n.path("subject").asText(), s -> new TreeMap<>())
                        .put(n.path("difficulty").asText(), new Cell(n.path("items").asInt(), n.path("correct").asInt(), n.path("correct_norm").asInt()));
            if (cells.isEmpty()) throw new UserError(file + ": no cells (not a midtrain eval result)");
            return new EvalReport(o.path("model").asText(file.toString()), o.path("shots").asInt(), cells);
        } catch (IOException e) {
            throw new UserError(file + ": cannot read an eval result: " + e.getMessage().split("\n")[0]);
        }
    }
}
