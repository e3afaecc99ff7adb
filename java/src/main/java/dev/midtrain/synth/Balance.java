package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The balance stage: refined.jsonl -> balanced.jsonl with target shares per discipline x difficulty tier (the paper's
 * final set is balanced by discipline and difficulty). A cell's target is {@code total * share(discipline) *
 * share(tier)}, rounded by largest remainder so the targets sum to the total. A cell holding more records than its
 * target keeps a deterministic sample (the smallest SHA-256 of seed and record id: the same records on every run, in
 * any file order); a cell holding fewer is upsampled by repeating its records up to {@code max_repeat} times each
 * (each repeat marked {@code "balance_repeat": k}); what is still missing is a deficit, reported per cell with the
 * seeds to generate more from (that discipline's seeds, hardest tier first) in balance.json, so a generate rerun can
 * fill it. Output order: by cell (discipline, tier), then by the sample order. Everything is local and deterministic.
 */
public final class Balance {
    private Balance() {}

    public static Path balanced(Path work) { return work.resolve("balanced.jsonl"); }
    public static Path report(Path work) { return work.resolve("balance.json"); }

    /** One cell's outcome. */
    public record Cell(String discipline, String tier, long available, long target, long taken, long repeats, long deficit) {}

    /** Runs the stage; returns the cells (also written to balance.json). */
    public static List<Cell> run(SynthConfig.Balance cfg, Path work, PrintStream log) {
        Path in = Pipeline.refined(work);
        List<JsonNode> recs = new ArrayList<>();
        try (BufferedReader r = Files.newBufferedReader(in, StandardCharsets.UTF_8)) {
            String line;
            int n = 0;
            while ((line = r.readLine()) != null) {
                n++;
                if (line.isBlank()) continue;
                JsonNode j;
                try {
                    j = JsonlLog.JSON.readTree(line);
                } catch (IOException e) {
                    throw new UserError(in + ":" + n + ": malformed JSON");
                }
                if (!j.path("discipline").isTextual() || !SynthConfig.TIERS.contains(j.path("difficulty").asText()))
                    throw new UserError(in + ":" + n + ": a refined record needs \"discipline\" and \"difficulty\" (H1-H5)");
                recs.add(j);
            }
        } catch (NoSuchFileException e) {
            throw new UserError(in + ": not found (run the refine stage first)");
        } catch (IOException e) {
            throw new UserError(in + ": cannot read: " + e.getMessage());
        }
        if (recs.isEmpty()) log.printf("balance: %s holds no records%n", in);

        TreeSet<String> disciplines = new TreeSet<>(cfg.disciplines().keySet());
        if (disciplines.isEmpty()) for (JsonNode j : recs) disciplines.add(j.get("discipline").asText());
        Map<String, Double> dShare = shares(cfg.disciplines(), disciplines), tShare = shares(cfg.tiers(), new TreeSet<>(SynthConfig.TIERS));
        long total = cfg.total() > 0 ? cfg.total() : recs.size();

        // targets by largest remainder
        List<String[]> cells = new ArrayList<>();
        List<Double> exact = new ArrayList<>();
        for (String d : disciplines) for (String t : SynthConfig.TIERS) { cells.add(new String[]{d, t}); exact.add(total * dShare.get(d) * tShare.get(t)); }
        long[] target = new long[cells.size()];
        long assigned = 0;
        for (int i = 0; i < target.length; i++) { target[i] = (long) Math.floor(exact.get(i)); assigned += target[i]; }
        List<Integer> order = new ArrayList<>();
        for (int i = 0; i < target.length; i++) order.add(i);
        order.sort(Comparator.comparingDouble((Integer i) -> -(exact.get(i) - target[i])).thenComparing(i -> i));
        for (int k = 0; assigned < total && k < order.size(); k++, assigned++) target[order.get(k)]++;

        Map<String, List<JsonNode>> byCell = new TreeMap<>();
        for (JsonNode j : recs) byCell.computeIfAbsent(j.get("discipline").asText() + "\u0000" + j.get("difficulty").asText(), k -> new ArrayList<>()).add(j);
        StringBuilder out = new StringBuilder();
        List<Cell> result = new ArrayList<>();
        ArrayNode cellsJson = JsonlLog.JSON.createArrayNode();
        long dropped = 0, repeated = 0, missing = 0, outside = 0;
        for (var e : byCell.entrySet()) if (!disciplines.contains(e.getKey().split("\u0000")[0])) outside += e.getValue().size();
        for (int i = 0; i < cells.size(); i++) {
            String d = cells.get(i)[0], t = cells.get(i)[1];
            List<JsonNode> have = new ArrayList<>(byCell.getOrDefault(d + "\u0000" + t, List.of()));
            have.sort(Comparator.comparing(j -> key(cfg.seed(), j.path("id").asText(j.toString()))));
            long want = target[i], taken = 0, repeats = 0;
            for (int rep = 0; rep < cfg.maxRepeat() && taken < want; rep++) {
                for (JsonNode j : have) {
                    if (taken == want) break;
                    ObjectNode o = j.deepCopy();
                    if (rep > 0) { o.put("balance_repeat", rep); repeats++; }
                    out.append(o.toString()).append('\n');
                    taken++;
                }
                if (have.isEmpty()) break;
            }
            long deficit = want - taken;
            dropped += Math.max(0, have.size() - taken);
            repeated += repeats;
            missing += deficit;
            Cell c = new Cell(d, t, have.size(), want, taken, repeats, deficit);
            result.add(c);
            cellsJson.add(JsonlLog.JSON.valueToTree(c));
        }
        ObjectNode rep = JsonlLog.JSON.createObjectNode();
        rep.put("input", in.toString()).put("records", recs.size()).put("total_target", total).put("written", total - missing)
                .put("dropped_by_caps", dropped).put("outside_disciplines", outside).put("repeats", repeated).put("deficit", missing)
                .put("max_repeat", cfg.maxRepeat()).put("seed", cfg.seed());
        rep.set("discipline_shares", JsonlLog.JSON.valueToTree(dShare));
        rep.set("tier_shares", JsonlLog.JSON.valueToTree(tShare));
        rep.set("cells", cellsJson);
        rep.set("generate_more", generateMore(result, work));
        try {
            Pipeline.writeAtomically(balanced(work), out.toString().getBytes(StandardCharsets.UTF_8));
            Pipeline.writeAtomically(report(work), JsonlLog.JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(rep));
        } catch (IOException e) {
            throw new UserError(work + ": " + e.getMessage());
        }
        log.printf("balance: %,d refined -> %,d balanced (target %,d): %,d capped away, %,d repeats, deficit %,d in %d cell(s) -> %s, %s%n",
                recs.size(), total - missing, total, dropped, repeated, missing, result.stream().filter(c -> c.deficit() > 0).count(),
                balanced(work), report(work));
        return result;
    }

    /** Per discipline with a deficit: how many more items and the seed ids to generate them from (hardest first). */
    private static ArrayNode generateMore(List<Cell> cells, Path work) {
        Map<String, Map<String, Long>> need = new LinkedHashMap<>();
        for (Cell c : cells) if (c.deficit() > 0) need.computeIfAbsent(c.discipline(), k -> new TreeMap<>()).put(c.tier(), c.deficit());
        ArrayNode arr = JsonlLog.JSON.createArrayNode();
        if (need.isEmpty()) return arr;
        Map<String, List<String[]>> seeds = new TreeMap<>();                // discipline -> [id, tier]
        Path ann = Pipeline.annotated(work);
        if (Files.exists(ann)) {
            try (BufferedReader r = Files.newBufferedReader(ann, StandardCharsets.UTF_8)) {
                String line;
                while ((line = r.readLine()) != null) {
                    if (line.isBlank()) continue;
                    JsonNode j = JsonlLog.JSON.readTree(line);
                    seeds.computeIfAbsent(j.path("discipline").asText(), k -> new ArrayList<>()).add(new String[]{j.path("id").asText(), j.path("difficulty").asText()});
                }
            } catch (IOException e) {
                throw new UserError(ann + ": cannot read: " + e.getMessage());
            }
        }
        for (var e : need.entrySet()) {
            List<String[]> s = new ArrayList<>(seeds.getOrDefault(e.getKey(), List.of()));
            s.sort(Comparator.comparing((String[] x) -> x[1]).reversed().thenComparing(x -> x[0]));
            ObjectNode o = JsonlLog.JSON.createObjectNode().put("discipline", e.getKey());
            o.set("missing_per_tier", JsonlLog.JSON.valueToTree(e.getValue()));
            ArrayNode ids = o.putArray("seed_ids");
            for (String[] x : s) ids.add(x[0]);
            arr.add(o);
        }
        return arr;
    }

    private static Map<String, Double> shares(Map<String, Double> given, TreeSet<String> names) {
        Map<String, Double> out = new TreeMap<>();
        double sum = 0;
        for (String n : names) sum += given.isEmpty() ? 1 : given.getOrDefault(n, 0.0);
        for (String n : names) out.put(n, (given.isEmpty() ? 1 : given.getOrDefault(n, 0.0)) / sum);
        return out;
    }

    private static String key(long seed, String id) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest((seed + "\u0000" + id).getBytes(StandardCharsets.UTF_8)));
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
