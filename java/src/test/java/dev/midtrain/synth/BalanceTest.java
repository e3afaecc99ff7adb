package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.common.UserError;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The balance stage on a skewed refined set (counts per discipline x tier from 0 to 60, like the outside run's 0-22
 * with 8 empty cells): targets are total x share(discipline) x share(tier) summing to the total, capped cells keep
 * exactly their target (the same records whatever the file order), short cells repeat up to max_repeat, the rest is a
 * deficit with the seeds to generate from.
 */
class BalanceTest {
    @TempDir Path tmp;
    final PrintStream quiet = new PrintStream(new ByteArrayOutputStream());
    static final List<String> DISC = List.of("biology", "chemistry", "mathematics", "physics");

    private List<String> refined(long seed) {
        Random r = new Random(3);
        List<String> lines = new ArrayList<>();
        int id = 0;
        for (String d : DISC)
            for (String t : SynthConfig.TIERS) {
                int n = d.equals("biology") && t.equals("H5") ? 0 : d.equals("physics") && t.equals("H4") ? 3 : r.nextInt(61);
                for (int i = 0; i < n; i++)
                    lines.add("{\"id\":\"r" + (id++) + "\",\"question\":\"q\",\"answer\":\"a\",\"discipline\":\"" + d + "\",\"difficulty\":\"" + t + "\"}");
            }
        lines.add("{\"id\":\"x\",\"question\":\"q\",\"answer\":\"a\",\"discipline\":\"history\",\"difficulty\":\"H1\"}");
        Collections.shuffle(lines, new Random(seed));
        return lines;
    }

    private List<JsonNode> out(Path work) throws Exception {
        List<JsonNode> l = new ArrayList<>();
        for (String s : Files.readAllLines(Balance.balanced(work))) l.add(JsonlLog.JSON.readTree(s));
        return l;
    }

    @Test
    void capsRepeatsAndDeficitsPerCell() throws Exception {
        Path w1 = Files.createDirectories(tmp.resolve("w1")), w2 = Files.createDirectories(tmp.resolve("w2"));
        Files.write(Pipeline.refined(w1), refined(1));
        Files.write(Pipeline.refined(w2), refined(2));                           // same records, other order
        Files.write(Pipeline.annotated(w1), List.of("{\"id\":\"s1\",\"discipline\":\"biology\",\"difficulty\":\"H2\"}",
                "{\"id\":\"s2\",\"discipline\":\"biology\",\"difficulty\":\"H4\"}", "{\"id\":\"s3\",\"discipline\":\"physics\",\"difficulty\":\"H5\"}"));
        Map<String, Double> ds = Map.of("biology", 1.0, "chemistry", 1.0, "mathematics", 2.0, "physics", 1.0);
        Map<String, Double> ts = Map.of("H1", 0.1, "H2", 0.15, "H3", 0.25, "H4", 0.25, "H5", 0.25);
        SynthConfig.Balance cfg = new SynthConfig.Balance(500L, ds, ts, 2, 7L);
        List<Balance.Cell> cells = Balance.run(cfg, w1, quiet);
        assertEquals(20, cells.size());
        assertEquals(500, cells.stream().mapToLong(Balance.Cell::target).sum(), "largest-remainder targets sum to the total");
        Map<String, Long> got = new HashMap<>();
        List<JsonNode> o1 = out(w1);
        for (JsonNode j : o1) got.merge(j.get("discipline").asText() + "/" + j.get("difficulty").asText(), 1L, Long::sum);
        for (Balance.Cell c : cells) {
            double exact = 500 * ds.get(c.discipline()) / 5.0 * ts.get(c.tier());
            assertTrue(Math.abs(c.target() - exact) < 1, c + " vs " + exact);
            assertEquals(Math.min(c.target(), 2 * c.available()), c.taken(), c.toString());
            assertEquals(c.taken(), (long) got.getOrDefault(c.discipline() + "/" + c.tier(), 0L), c.toString());
            assertEquals(c.target() - c.taken(), c.deficit());
            assertEquals(Math.max(0, c.taken() - c.available()), c.repeats());
        }
        Balance.Cell empty = cells.stream().filter(c -> c.discipline().equals("biology") && c.tier().equals("H5")).findFirst().orElseThrow();
        assertEquals(0, empty.taken());
        assertTrue(empty.deficit() > 0);
        Balance.Cell short3 = cells.stream().filter(c -> c.discipline().equals("physics") && c.tier().equals("H4")).findFirst().orElseThrow();
        assertEquals(6, short3.taken(), "3 records, each twice (max_repeat 2)");
        assertEquals(3, o1.stream().filter(j -> j.path("balance_repeat").asInt() == 1).filter(j -> j.get("discipline").asText().equals("physics")
                && j.get("difficulty").asText().equals("H4")).count());
        assertTrue(o1.stream().noneMatch(j -> j.get("discipline").asText().equals("history")), "a discipline without a share gets none");
        JsonNode rep = JsonlLog.JSON.readTree(Balance.report(w1).toFile());
        assertEquals(1, rep.get("outside_disciplines").asInt());
        JsonNode more = rep.get("generate_more");
        assertEquals("biology", more.get(0).get("discipline").asText());
        assertEquals(List.of("s2", "s1"), List.of(more.get(0).get("seed_ids").get(0).asText(), more.get(0).get("seed_ids").get(1).asText()), "hardest seeds first");

        Balance.run(cfg, w2, quiet);
        assertEquals(Files.readAllLines(Balance.balanced(w1)), Files.readAllLines(Balance.balanced(w2)), "independent of the input order");

        // uniform defaults: every discipline in the data, every tier
        List<Balance.Cell> uni = Balance.run(new SynthConfig.Balance(null, null, null, null, null), w2, quiet);
        assertEquals(25, uni.size(), "5 disciplines (history included) x 5 tiers");
        assertEquals(refined(1).size(), uni.stream().mapToLong(Balance.Cell::target).sum());

        assertThrows(dev.midtrain.config.Check.ConfigException.class, () -> new SynthConfig.Balance(0L, null, Map.of("H6", 1.0), 1, 0L));
        Files.write(Pipeline.refined(w2), List.of("{\"id\":\"a\",\"discipline\":\"x\"}"));
        UserError e = assertThrows(UserError.class, () -> Balance.run(cfg, w2, quiet));
        assertTrue(e.getMessage().endsWith("refined.jsonl:1: a refined record needs \"discipline\" and \"difficulty\" (H1-H5)"), e.getMessage());
    }
}
