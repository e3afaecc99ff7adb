package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.cli.Cli;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * `midtrain synthesize` end to end against {@link FixtureServer} (recorded responses, injected faults), with the real
 * client: every stage, faults retried or rejected and counted, rerun idempotence, `prepare --format qa` on the
 * output, and SIGKILL in the middle of generate.
 */
class SynthesizeTest {
    static final Path FIX = Path.of("java/src/test/resources/synth");
    static final ObjectMapper JSON = new ObjectMapper();
    static final String SECRET = "sk-test-DO-NOT-LEAK-8f3a";
    @TempDir Path tmp;

    /**
     * A config for the fixture server: a 3 s request timeout (generous: a cold JVM on a loaded 2-core machine can take
     * over a second for its first requests; the slow fault answers after 4.5 s), short backoff.
     */
    static Path config(Path dir, String baseUrl, int concurrency) throws IOException {
        String yaml = """
                endpoint:
                  base_url: %s
                  api_key_env: MIDTRAIN_SYNTH_TEST_KEY
                  request_timeout_s: 3
                  concurrency: %d
                  max_requests_per_s: 500
                  max_tokens_per_min: 50000000
                  max_retries: 3
                  backoff_initial_ms: 20
                  backoff_max_ms: 100
                annotate: {model: judge, template: annotate}
                generate: {model: r1, template: generate, temperature: 0.6, top_p: 0.95, max_tokens: 2048}
                booster:
                  stage: {model: r1-boost, template: booster, temperature: 0.6, top_p: 0.95, max_tokens: 2048}
                  tier_weights: {H1: 1, H2: 1, H3: 1, H4: 4, H5: 4}
                  seeds_fraction: 1.0
                  min_accepted_tier: H4
                  seed: 7
                refine: {model: v3, template: refine}
                curate: {min_words: 8, decontaminate: [%s]}
                grades: [high_school, college, graduate]
                templates_dir: %s
                """.formatted(baseUrl, concurrency, FIX.resolve("bench.jsonl").toAbsolutePath(), Path.of("configs/synthesis").toAbsolutePath());
        return Files.writeString(dir.resolve("synth.yaml"), yaml);
    }

    static List<JsonNode> read(Path f) { return JsonlLog.read(f); }

    static Map<String, Long> counters(Path work, String stage) {
        Map<String, Long> sum = new TreeMap<>();
        for (JsonNode s : read(Pipeline.statsFile(work)))
            if (s.path("stage").asText().equals(stage)) s.path("counters").fields().forEachRemaining(e -> sum.merge(e.getKey(), e.getValue().asLong(), Long::sum));
        return sum;
    }

    @Test
    void everyStageAgainstARecordedServerWithFaults() throws Exception {
        try (FixtureServer server = new FixtureServer(FIX.resolve("responses.jsonl"), 4500, true)) {
            Path cfg = config(tmp, server.baseUrl(), 4), work = tmp.resolve("work");
            Cli.Run r = Cli.run("synthesize", "--config", cfg.toString(), "--work", work.toString(), "--input", FIX.resolve("seeds.jsonl").toString());
            assertEquals(0, r.code(), r.err() + r.out());
            System.out.println(r.err());

            // curate: 10 seed records -> 6 (a duplicate after normalization, a MinHash near-duplicate, one too short,
            // one sharing a 10-gram with the benchmark)
            assertEquals(6, read(Pipeline.seeds(work)).size());
            Map<String, String> curateRejects = new TreeMap<>();
            read(Pipeline.rejects(work, "curate")).forEach(j -> curateRejects.put(j.get("id").asText(), j.get("reason").asText()));
            assertEquals(Map.of("dup", "duplicate_text", "near", "near_duplicate", "short", "too_short", "leak", "contaminated"), curateRejects);

            // faults the server injected, and the client's count of the retries they caused
            assertEquals(2, server.served("429"));
            assertEquals(3, server.served("500"));
            assertEquals(1, server.served("slow"));
            assertEquals(1, server.served("drop"));
            assertEquals(0, server.served("no_match"));
            Map<String, Long> ann = counters(work, "annotate"), gen = counters(work, "generate"), ref = counters(work, "refine");
            System.out.println("annotate " + ann + "\ngenerate " + gen + "\nrefine " + ref);
            assertEquals(1, ann.get("retry.http_429"));
            assertEquals(2, ann.get("retry.http_5xx"));
            assertEquals(1, gen.get("retry.http_429"));
            assertEquals(1, gen.get("retry.http_5xx"));
            assertEquals(1, gen.get("retry.timeout"));
            assertEquals(1, gen.get("retry.io_error"));
            assertEquals(6 + 3, ann.get("requests"));                  // 6 seeds, 3 retries
            assertEquals(24 + 4, gen.get("requests"));                 // 6 seeds x (3 grades + booster), 4 retries
            assertEquals(21, ref.get("requests"));
            // Retry-After: 1 was honoured (the backoff alone is at most 100 ms)
            double annWall = read(Pipeline.statsFile(work)).stream().filter(s -> s.path("stage").asText().equals("annotate"))
                    .mapToDouble(s -> s.path("wall_s").asDouble()).sum();
            assertTrue(annWall >= 1.0, "annotate took " + annWall + " s");

            // content-level faults are rejected (not retried) and counted by reason
            Map<String, String> genRejects = new TreeMap<>(), refRejects = new TreeMap<>();
            read(Pipeline.rejects(work, "generate")).forEach(j -> genRejects.put(j.get("id").asText(), j.get("reason").asText()));
            read(Pipeline.rejects(work, "refine")).forEach(j -> refRejects.put(j.get("id").asText(), j.get("reason").asText()));
            assertEquals(Map.of("s4/mg/graduate", "malformed_json", "s1/mg/graduate", "schema_violation:difficulty", "s2/hd", "below_min_tier"), genRejects);
            assertEquals(Map.of("s3/mg/college", "inconsistent_answer", "s5/mg/high_school", "unsolvable", "s6/mg/high_school", "malformed_response"), refRejects);
            assertEquals(21, read(Pipeline.generated(work)).size());   // <think> and a ```json fence were unwrapped for s2/mg/high_school
            List<JsonNode> refined = read(Pipeline.refined(work));
            assertEquals(18, refined.size());

            // provenance on every record: one entry per stage, model entries hash a body the server really sent
            for (JsonNode rec : refined) {
                for (String f : List.of("id", "seed_id", "question", "answer", "discipline", "grade", "difficulty", "grade_requested", "branch"))
                    assertTrue(rec.path(f).isTextual(), f + " in " + rec);
                JsonNode prov = rec.get("provenance");
                assertEquals(List.of("curate", "annotate", "generate", "refine"), prov.findValuesAsText("stage"));
                for (int i = 1; i < 4; i++) {
                    JsonNode p = prov.get(i);
                    assertTrue(p.path("model").isTextual() && p.path("template").isTextual() && p.path("template_version").isInt(), p.toString());
                    assertTrue(p.path("sampling").has("temperature") && p.path("sampling").has("seed"), p.toString());
                    assertTrue(server.bodyHashes.contains(p.path("response_sha256").asText()), "hash of a served body: " + p);
                }
                assertFalse(rec.has("text"), "a text field would make prepare read it as plain text");
            }
            JsonNode s1 = refined.stream().filter(j -> j.get("id").asText().equals("s1/mg/college")).findFirst().orElseThrow();
            assertEquals("mathematics", s1.get("discipline").asText());
            assertEquals("H3", s1.get("difficulty").asText());
            assertEquals("college", s1.get("grade").asText());
            assertEquals("Worked again step by step. Final result: R-s1-college.", s1.get("answer").asText());
            assertEquals("r1", s1.get("provenance").get(2).get("model").asText());

            // report: tables, booster effect, downward degradation, warnings none
            String report = Files.readString(work.resolve("report.md"));
            assertTrue(report.contains("| graduate | 0 | 4 | 5 | 9 |"), report);   // multi-grade graduate: 4 refined, all judged college; booster: 5
            assertTrue(report.contains("| generate | malformed_json | 1 |"), report);
            assertTrue(report.contains("| refine | malformed_response | 1 |"), report);
            assertFalse(report.contains("WARNING"), report);
            var png = ImageIO.read(work.resolve("report.png").toFile());
            assertEquals(1400, png.getWidth());

            // rerun: nothing requested again, outputs unchanged
            long before = server.served("ok");
            List<String> outBefore = Files.readAllLines(Pipeline.refined(work));
            Cli.Run again = Cli.run("synthesize", "--config", cfg.toString(), "--work", work.toString(), "--stage", "annotate,generate,refine,report");
            assertEquals(0, again.code(), again.err());
            assertEquals(before, server.served("ok"));
            assertEquals(outBefore, Files.readAllLines(Pipeline.refined(work)));

            // refine's output is prepare --format qa input as it is
            Path prepared = tmp.resolve("prepared");
            Cli.Run prep = Cli.run("prepare", "--source", "boostqa", "--input", Pipeline.refined(work).toString(), "--tokenizer",
                    "data/tokenizer/tokenizer.json", "--out", prepared.toString(), "--format", "qa",
                    "--qa-template", "[{discipline} / {grade} / {difficulty}] {question}\\n{answer}");
            assertEquals(0, prep.code(), prep.err());
            JsonNode manifest = JSON.readTree(prepared.resolve("manifest.json").toFile());
            assertTrue(manifest.toString().contains("\"documents\":18"), manifest.toString());
        }
    }

    @Test
    void sigkillInTheMiddleOfGenerateThenRerunGivesTheUninterruptedOutput() throws Exception {
        try (FixtureServer server = new FixtureServer(FIX.resolve("responses.jsonl"), 4500, false)) {   // no faults: the kill is the fault here
            Path cfg = config(tmp, server.baseUrl(), 2), base = tmp.resolve("base");
            assertEquals(0, Cli.run("synthesize", "--config", cfg.toString(), "--work", base.toString(), "--input",
                    FIX.resolve("seeds.jsonl").toString(), "--stage", "curate,annotate").code());
            Path a = copy(base, tmp.resolve("a")), b = copy(base, tmp.resolve("b"));
            long t0 = System.nanoTime();
            Cli.Run ra = Cli.run("synthesize", "--config", cfg.toString(), "--work", a.toString(), "--stage", "generate");
            assertEquals(0, ra.code(), ra.err());

            System.err.printf("TIMING uninterrupted %.2f s%n", (System.nanoTime() - t0) / 1e9);
            server.delayMs = 150;   // ~24 x 150 ms / 2 in flight: the kill lands mid-stage
            List<String> output = Collections.synchronizedList(new ArrayList<>());
            Process p = start(output, "synthesize", "--config", cfg.toString(), "--work", b.toString(), "--stage", "generate");
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (lines(Pipeline.generated(b)) < 4) {
                if (System.nanoTime() > deadline || !p.isAlive()) {
                    p.destroyForcibly();
                    fail("child never wrote 4 records; output:\n" + String.join("\n", output));
                }
                Thread.sleep(5);
            }
            System.err.printf("TIMING kill at %.2f s%n", (System.nanoTime() - t0) / 1e9);
            p.destroyForcibly();   // SIGKILL
            assertTrue(p.waitFor(30, TimeUnit.SECONDS));
            assertEquals(137, p.exitValue(), "killed, not finished");
            long partial = lines(Pipeline.generated(b)) + lines(Pipeline.rejects(b, "generate"));
            assertTrue(partial < 24, "the kill must interrupt generate; " + partial + " of 24 were done");
            assertTrue(server.authHeaders.containsKey("Bearer " + SECRET), "the child sent the API key: " + server.authHeaders.keySet());

            server.delayMs = 0;
            Cli.Run rb = Cli.run("synthesize", "--config", cfg.toString(), "--work", b.toString(), "--stage", "generate");
            assertEquals(0, rb.code(), rb.err());
            assertTrue(rb.err().contains("already done"), rb.err());
            System.err.printf("TIMING rerun done %.2f s%n", (System.nanoTime() - t0) / 1e9);
            for (Path f : List.of(Pipeline.generated(a), Pipeline.rejects(a, "generate"))) {
                List<String> x = sorted(f), y = sorted(b.resolve(f.getFileName()));
                assertEquals(x.size(), y.size(), f.getFileName() + ": record count after kill + rerun");
                for (int i = 0; i < x.size(); i++) if (!x.get(i).equals(y.get(i))) fail(f.getFileName() + " differs after kill + rerun: " + firstDiff(x.get(i), y.get(i)));
                Set<String> ids = new HashSet<>();
                for (JsonNode j : read(b.resolve(f.getFileName()))) assertTrue(ids.add(j.get("id").asText()), "duplicate " + j.get("id"));
            }
            assertEquals(21, read(Pipeline.generated(b)).size());

            // the key never reaches a file or the log
            try (Stream<Path> files = Files.walk(b)) {
                for (Path f : files.filter(Files::isRegularFile).toList())
                    assertFalse(Files.readString(f).contains(SECRET), f + " contains the API key");
            }
            assertFalse(String.join("\n", output).contains(SECRET));
        }
    }

    @Test
    void badConfigAndFlagsAreOneLineUserErrors() throws Exception {
        Path cfg = config(tmp, "http://127.0.0.1:9/v1", 2);
        Files.writeString(cfg, Files.readString(cfg).replace("min_accepted_tier: H4", "min_accepted_tier: H9"));
        Cli.Run r = Cli.run("synthesize", "--config", cfg.toString(), "--work", tmp.resolve("w").toString(), "--stage", "report");
        assertEquals(2, r.code());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().contains("booster.min_accepted_tier"), r.err());
        Files.writeString(cfg, Files.readString(cfg).replace("min_accepted_tier: H9", "min_accepted_tier: H4").replace("template: refine}", "template: refine, max_tokens: 0}"));
        Cli.Run r2 = Cli.run("synthesize", "--config", cfg.toString(), "--work", tmp.resolve("w").toString(), "--stage", "report");
        assertEquals(2, r2.code());
        assertTrue(r2.err().contains("refine.max_tokens"), r2.err());
        Cli.Run r3 = Cli.run("synthesize", "--config", cfg.toString(), "--work", tmp.resolve("w").toString(), "--stage", "bake");
        assertEquals(2, r3.code());
        assertTrue(r3.err().contains("--stage"), r3.err());
        Cli.Run r4 = Cli.run("synthesize", "--config", cfg.toString(), "--work", tmp.resolve("w").toString(), "--stage", "curate");
        assertEquals(2, r4.code());
        assertTrue(r4.err().contains("--input"), r4.err());
    }

    /** A server that is down (503 on every completion, up for /models) stops the stage after a streak, not after every record. */
    @Test
    void aServerThatStaysDownStopsTheStage() throws Exception {
        var server = com.sun.net.httpserver.HttpServer.create(new java.net.InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), 0), 8);
        java.util.concurrent.atomic.AtomicInteger completions = new java.util.concurrent.atomic.AtomicInteger();
        server.createContext("/", ex -> {
            ex.getRequestBody().readAllBytes();
            boolean models = ex.getRequestURI().getPath().endsWith("/models");
            if (!models) completions.incrementAndGet();
            ex.sendResponseHeaders(models ? 200 : 503, -1);
            ex.close();
        });
        server.start();
        try {
            Path cfg = config(tmp, "http://127.0.0.1:" + server.getAddress().getPort() + "/v1", 1), work = tmp.resolve("w");
            assertEquals(0, Cli.run("synthesize", "--config", cfg.toString(), "--work", work.toString(), "--input",
                    FIX.resolve("seeds.jsonl").toString(), "--stage", "curate").code());
            Cli.Run r = Cli.run("synthesize", "--config", cfg.toString(), "--work", work.toString(), "--stage", "annotate");
            assertEquals(1, r.code(), r.err());
            assertTrue(r.err().contains("2 records in a row failed after 3 retries"), r.err());
            assertEquals(2 * 4, completions.get(), "two records, four attempts each, then stop (6 seeds were waiting)");
            assertEquals(0, lines(Pipeline.annotated(work)) + lines(Pipeline.rejects(work, "annotate")), "failed records are not recorded");
            assertEquals(2, counters(work, "annotate").get("failed.retries_exhausted"));
        } finally {
            server.stop(0);
        }
        // nothing listening: one line, exit 1, before any record is tried
        Path cfg = config(tmp, "http://127.0.0.1:" + server.getAddress().getPort() + "/v1", 1);
        Cli.Run r = Cli.run("synthesize", "--config", cfg.toString(), "--work", tmp.resolve("w").toString(), "--stage", "annotate");
        assertEquals(1, r.code(), r.err());
        assertTrue(r.err().contains("cannot reach the endpoint"), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
    }

    static Process start(List<String> output, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "-Xmx256m", "-XX:TieredStopAtLevel=1", "dev.midtrain.Main"));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        pb.environment().put("MIDTRAIN_SYNTH_TEST_KEY", SECRET);
        Process p = pb.start();
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream()))) {
                for (String l; (l = r.readLine()) != null; ) output.add(l);
            } catch (IOException ignored) { }
        });
        t.setDaemon(true);
        t.start();
        return p;
    }

    static String firstDiff(String x, String y) {
        int i = 0;
        while (i < Math.min(x.length(), y.length()) && x.charAt(i) == y.charAt(i)) i++;
        int from = Math.max(0, i - 80);
        return "uninterrupted ..." + x.substring(from, Math.min(x.length(), i + 80)) + "... vs rerun ..." + y.substring(from, Math.min(y.length(), i + 80)) + "...";
    }

    static long lines(Path f) throws IOException {
        if (!Files.exists(f)) return 0;
        return Files.readString(f).chars().filter(c -> c == '\n').count();
    }

    static List<String> sorted(Path f) throws IOException {
        List<String> l = new ArrayList<>(Files.readAllLines(f));
        Collections.sort(l);
        return l;
    }

    static Path copy(Path from, Path to) throws IOException {
        Files.createDirectories(to);
        try (Stream<Path> s = Files.list(from)) {
            for (Path f : s.toList()) Files.copy(f, to.resolve(f.getFileName()));
        }
        return to;
    }
}
