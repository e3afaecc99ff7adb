package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/** The synthesis pipeline's parts: the append log, the booster's draw, Retry-After, the rate limiter, JSON extraction. */
class SynthPartsTest {
    static final ObjectMapper JSON = new ObjectMapper();
    @TempDir Path tmp;

    @Test
    void appendLogDropsATornLastLineAndRefusesDuplicates() throws Exception {
        Path f = tmp.resolve("out.jsonl");
        Files.writeString(f, "{\"id\":\"a\",\"v\":1}\n{\"id\":\"b\",\"v\":2}\n{\"id\":\"c\",\"v\"");   // killed mid-write of c
        try (JsonlLog log = JsonlLog.open(f)) {
            assertEquals(Set.of("a", "b"), log.ids());
            log.append(JSON.createObjectNode().put("id", "c").put("v", 3));
            assertThrows(IllegalStateException.class, () -> log.append(JSON.createObjectNode().put("id", "a")));
        }
        assertEquals("{\"id\":\"a\",\"v\":1}\n{\"id\":\"b\",\"v\":2}\n{\"id\":\"c\",\"v\":3}\n", Files.readString(f));
        Files.writeString(f, "{\"id\":\"x\"}");   // a file that is one torn line
        try (JsonlLog log = JsonlLog.open(f)) {
            assertEquals(Set.of(), log.ids());
        }
        assertEquals(0, Files.size(f));
    }

    /**
     * The booster's Efraimidis-Spirakis draw against a naive reference: draw one seed at a time with probability
     * weight / (sum of the remaining weights). Both are averaged over 200 draws of 30 out of 100 seeds (20 per tier);
     * the expected H4/H5 share (~0.61 for weights 1,1,1,4,4) has a standard error of ~0.007 per average, so 0.03 is
     * over 3 standard errors of their difference.
     */
    @Test
    void boosterDrawsHighTiersInProportionToTheirWeights() {
        List<JsonNode> seeds = new ArrayList<>();
        for (int i = 0; i < 100; i++) seeds.add(JSON.createObjectNode().put("id", "seed" + i).put("difficulty", SynthConfig.TIERS.get(i % 5)));
        Map<String, Double> w = Map.of("H1", 1.0, "H2", 1.0, "H3", 1.0, "H4", 4.0, "H5", 4.0);
        double es = 0, naive = 0;
        Random rnd = new Random(42);
        int trials = 200;
        for (int t = 0; t < trials; t++) {
            Set<String> drawn = Pipeline.boosterDraw(seeds, new SynthConfig.Booster(stage(), true, w, 0.3, "H4", (long) t));
            assertEquals(30, drawn.size());
            es += seeds.stream().filter(s -> drawn.contains(s.get("id").asText()) && high(s)).count() / 30.0;
            List<JsonNode> left = new ArrayList<>(seeds);
            int hi = 0;
            for (int k = 0; k < 30; k++) {
                double total = left.stream().mapToDouble(s -> w.get(s.get("difficulty").asText())).sum(), u = rnd.nextDouble() * total;
                int j = 0;
                while ((u -= w.get(left.get(j).get("difficulty").asText())) > 0) j++;
                if (high(left.remove(j))) hi++;
            }
            naive += hi / 30.0;
        }
        es /= trials;
        naive /= trials;
        assertEquals(naive, es, 0.03, "ES " + es + " vs sequential " + naive);
        assertTrue(es > 0.55, "H4/H5 share " + es + " (uniform would be 0.4)");
        // same seed, same ids in another order: the same draw
        List<JsonNode> reversed = new ArrayList<>(seeds);
        java.util.Collections.reverse(reversed);
        SynthConfig.Booster b = new SynthConfig.Booster(stage(), true, w, 0.3, "H4", 5L);
        assertEquals(Pipeline.boosterDraw(seeds, b), Pipeline.boosterDraw(reversed, b));
    }

    private static boolean high(JsonNode s) { return s.get("difficulty").asText().compareTo("H4") >= 0; }

    private static SynthConfig.Stage stage() { return new SynthConfig.Stage("m", null, "booster", null, null, null); }

    /** A 4xx the server would repeat rejects the record (permanent); 401 stops the stage with a one-line user error. */
    @Test
    void clientErrorsAreNotRetried() throws Exception {
        var server = com.sun.net.httpserver.HttpServer.create(new java.net.InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), 0), 8);
        java.util.concurrent.atomic.AtomicInteger hits = new java.util.concurrent.atomic.AtomicInteger();
        server.createContext("/", ex -> {
            hits.incrementAndGet();
            ex.getRequestBody().readAllBytes();
            int code = ex.getRequestURI().getPath().startsWith("/a/") ? 401 : 400;
            byte[] b = "{\"error\": {\"message\": \"prompt too long\"}}".getBytes();
            ex.sendResponseHeaders(code, b.length);
            try (var os = ex.getResponseBody()) { os.write(b); }
        });
        server.start();
        try {
            String base = "http://127.0.0.1:" + server.getAddress().getPort();
            Stats stats = new Stats();
            Endpoint e = new Endpoint(new SynthConfig.Endpoint(base + "/v1", "UNSET_KEY_VAR", 5.0, null, 1, null, null, 3, 1L, 2L, true), null, stats);
            Endpoint.Failure f = assertThrows(Endpoint.Failure.class, () -> e.complete(stage(), "s", "u", 1));
            assertTrue(f.permanent);
            assertEquals("http_400", f.reason);
            assertEquals(1, hits.get(), "a 400 is not retried");
            SynthConfig.Stage other = new SynthConfig.Stage("m", base + "/a/v1", "booster", null, null, null);
            var u = assertThrows(dev.midtrain.common.UserError.class, () -> e.complete(other, "s", "u", 1));
            assertTrue(u.getMessage().contains("HTTP 401") && u.getMessage().contains("$UNSET_KEY_VAR"), u.getMessage());
            assertEquals(2, hits.get());
        } finally {
            server.stop(0);
        }
    }

    @Test
    void retryAfterSecondsOrHttpDate() {
        assertEquals(1000, Endpoint.retryAfterMs("1"));
        assertEquals(2500, Endpoint.retryAfterMs(" 2.5 "));
        assertEquals(0, Endpoint.retryAfterMs(null));
        assertEquals(0, Endpoint.retryAfterMs("soon"));
        String in30s = java.time.format.DateTimeFormatter.RFC_1123_DATE_TIME.format(java.time.ZonedDateTime.now(java.time.ZoneOffset.UTC).plusSeconds(30));
        long ms = Endpoint.retryAfterMs(in30s);
        assertTrue(ms > 28_000 && ms <= 30_000, "HTTP date 30 s ahead -> " + ms + " ms");
    }

    /** 50 requests/s: the first 50 pass at once (the bucket starts full), the next 20 need at least 20/50 s. */
    @Test
    void rateLimiterSpacesRequestsAndTokens() throws Exception {
        Endpoint.RateLimiter r = new Endpoint.RateLimiter(50, 0);
        long t0 = System.nanoTime();
        for (int i = 0; i < 50; i++) r.acquire(1);
        double burst = (System.nanoTime() - t0) / 1e9;
        for (int i = 0; i < 20; i++) r.acquire(1);
        double all = (System.nanoTime() - t0) / 1e9;
        assertTrue(burst < 0.2, "burst took " + burst);
        assertTrue(all - burst >= 0.38, "20 more requests at 50/s took " + (all - burst) + " s");
        // tokens: 6000/min = 100/s; 600 tokens beyond the full bucket need >= 6 s... so use a small budget: 3000/min = 50/s
        Endpoint.RateLimiter t = new Endpoint.RateLimiter(0, 3000);
        t.acquire(3000);                 // the whole bucket
        long t1 = System.nanoTime();
        t.acquire(20);                   // 20 tokens at 50/s
        double s = (System.nanoTime() - t1) / 1e9;
        assertTrue(s >= 0.38 && s < 2, "20 tokens at 50 tokens/s took " + s + " s");
    }

    @Test
    void jsonIsFoundInReasoningAndFencedAnswers() {
        assertEquals("H3", Pipeline.extractJson("<think>{not json} maybe H5</think>\n```json\n{\"difficulty\": \"H3\"}\n```").get("difficulty").asText());
        assertEquals(2, Pipeline.extractJson("Here: {\"a\": {\"b\": 1}, \"c\": 2} done").get("c").asInt());
        assertNull(Pipeline.extractJson("no json here"));
        assertNull(Pipeline.extractJson("{\"a\": 1"));
        assertNull(Pipeline.extractJson("[1, 2]"));
    }

    @Test
    void theFirstCompleteObjectThatValidatesIsTakenAfterProseWithBraces() throws Exception {
        Templates.Prompt p = Templates.load(Path.of("configs/synthesis"), "refine", Set.of("solvable"), Pipeline.REFINE_SLOTS);
        String good = "{\"solvable\": true, \"answer\": \"x\", \"consistent\": true, \"grade\": \"college\", \"difficulty\": \"H2\"}";
        // prose with braces first: first '{' to last '}' would not parse
        String reply = "The set {1, 2} has {two} elements; in JSON: " + good + " (note: {done})";
        JsonNode a = Pipeline.extractJson(reply, n -> p.violation(n) == null);
        assertNotNull(a, reply);
        assertEquals("college", a.get("grade").asText());
        // an example object that does not validate, then the answer
        String twice = "For example {\"grade\": \"?\"} - my answer: " + good;
        assertEquals("H2", Pipeline.extractJson(twice, n -> p.violation(n) == null).get("difficulty").asText());
        // nothing validates: the first complete object comes back, so its violation is what gets reported
        JsonNode first = Pipeline.extractJson("{\"grade\": \"?\"} and {\"x\": 1}", n -> p.violation(n) == null);
        assertEquals("?", first.get("grade").asText());
    }

    @Test
    void aTemplateSlotNoStageFillsIsRefusedWhenTheConfigLoads(@org.junit.jupiter.api.io.TempDir Path tmp) throws Exception {
        Path cfgDir = tmp.resolve("cfg");
        Files.createDirectories(cfgDir);
        Path shipped = Path.of("configs/synthesis");
        SynthConfig shippedCfg = SynthConfig.load(shipped.resolve("boostqa.yaml"));
        try (var files = Files.list(shipped)) {                          // the config and its templates (templates_dir: .)
            for (Path f : files.toList()) if (f.toString().endsWith(".yaml")) Files.copy(f, cfgDir.resolve(f.getFileName()));
        }
        Path refine = cfgDir.resolve(shippedCfg.refine().template() + ".yaml");
        Files.writeString(refine, Files.readString(refine).replace("\n  {question}", "\n  {question} {seed_txt}"));
        SynthConfig cfg = SynthConfig.load(cfgDir.resolve("boostqa.yaml"));
        dev.midtrain.common.UserError e = assertThrows(dev.midtrain.common.UserError.class,
                () -> new Pipeline(cfg, cfgDir.resolve("boostqa.yaml"), tmp.resolve("work"), null, System.err));
        assertTrue(e.getMessage().contains(refine.getFileName().toString()) && e.getMessage().contains("unknown slot {seed_txt}"), e.getMessage());
    }

    @Test
    void responseSha256IsTheHashOfTheRawBodyBytes() throws Exception {
        // a body with a byte-order mark and an escaped non-ASCII character: decoding and re-encoding changes the bytes
        byte[] body = ("\uFEFF{\"choices\": [{\"message\": {\"content\": \"caf\\u00e9\"}}], \"usage\": {}}").getBytes(java.nio.charset.StandardCharsets.UTF_8);
        byte[] withInvalid = java.util.Arrays.copyOf(body, body.length + 1);
        withInvalid[body.length] = (byte) 0xFF;                          // trailing invalid UTF-8 after the JSON
        for (byte[] b : List.of(body, withInvalid)) {
            String want = java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256").digest(b));
            String got;
            try {
                got = Endpoint.parse(b).sha256();
            } catch (Endpoint.MalformedResponse m) {
                got = m.sha256;
            }
            assertEquals(want, got);
        }
    }

    @Test
    void reportPngShowsEveryRejectLine(@TempDir Path tmp) throws Exception {
        Map<String, Map<String, Long>> rejects = new java.util.TreeMap<>();
        for (String st : List.of("annotate", "generate", "refine")) {
            Map<String, Long> m = new java.util.TreeMap<>();
            for (int i = 0; i < 12; i++) m.put("schema_violation:field_with_a_rather_long_name_" + i + "_" + "x".repeat(i * 20), (long) i + 1);
            rejects.put(st, m);
        }
        java.awt.FontMetrics fm = new java.awt.image.BufferedImage(1, 1, java.awt.image.BufferedImage.TYPE_INT_RGB).createGraphics().getFontMetrics();
        List<String> lines = Report.rejectLines(rejects, fm::stringWidth, 1364);
        String all = String.join("", lines).replace("    ", "");
        for (var st : rejects.entrySet())
            for (var r : st.getValue().entrySet()) assertTrue(all.contains(st.getKey() + "  " + r.getKey() + ": " + r.getValue()), r.getKey());
        for (String l : lines) assertTrue(fm.stringWidth(l) <= 1364, l);
        Path png = tmp.resolve("report.png");
        Report.png(png, Map.of(), Map.of(), new double[4], new double[4], Map.of(), List.of("a", "b"), rejects);
        java.awt.image.BufferedImage img = javax.imageio.ImageIO.read(png.toFile());
        assertTrue(lines.size() > 36, "36 rejects, some wrapped: " + lines.size() + " lines");
        assertTrue(img.getHeight() >= 2 * 420 + 24 + 18 * lines.size(), "the image is tall enough for every line: " + img.getHeight());
    }

    /** The shipped config loads; its paths resolve (the e2e test runs the shipped templates with its own config). */
    @Test
    void shippedConfigLoads() {
        Path file = Path.of("configs/synthesis/boostqa.yaml");
        SynthConfig c = SynthConfig.load(file);
        assertEquals("deepseek-ai/DeepSeek-R1", c.generate().model());
        assertEquals("H4", c.booster().minAcceptedTier());
        assertEquals(List.of("high_school", "college", "graduate"), c.grades());
        for (String d : c.curate().decontaminate()) assertTrue(Files.exists(file.getParent().resolve(d)), d);
        Path dir = file.getParent().resolve(c.templatesDir());
        Set<String> allSlots = new java.util.HashSet<>(Pipeline.BOOSTER_SLOTS);
        allSlots.addAll(Pipeline.REFINE_SLOTS);
        allSlots.addAll(Pipeline.ANNOTATE_SLOTS);
        for (String t : List.of(c.annotate().template(), c.generate().template(), c.booster().stage().template(), c.refine().template()))
            assertEquals(1, Templates.load(dir, t, Set.of(), allSlots).version());
        assertEquals(3, Templates.fragment(dir, "grades", "roles", c.grades()).entries().size());
    }

    @Test
    void schemaViolationsNameTheField() throws Exception {
        Templates.Prompt p = Templates.load(Path.of("configs/synthesis"), "refine", Set.of("solvable"), Pipeline.REFINE_SLOTS);
        ObjectNode ok = JSON.createObjectNode().put("solvable", true).put("answer", "x").put("consistent", true).put("grade", "college").put("difficulty", "H2");
        assertNull(p.violation(ok));
        assertTrue(p.violation(ok.deepCopy().put("solvable", "yes")).startsWith("schema_violation:solvable"));
        assertTrue(p.violation(ok.deepCopy().put("difficulty", "H6")).startsWith("schema_violation:difficulty"));
        ObjectNode missing = ok.deepCopy();
        missing.remove("answer");
        assertTrue(p.violation(missing).startsWith("schema_violation:answer"));
        assertTrue(p.violation(JSON.createArrayNode()).startsWith("schema_violation:not_an_object"));
    }
}
