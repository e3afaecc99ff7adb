package dev.midtrain.recipe;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.cli.Cli;
import dev.midtrain.ckpt.StepDirectories;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * `midtrain recipe run` end to end on a small recipe (a 2-layer model, 60 steps, the shipped samples cut down, 60
 * probe items, synthesis against the recorded endpoint): an uninterrupted run; a run killed (SIGKILL) in the middle
 * of synthesize and then of train, rerun to the end, with the same report numbers; a rerun that does nothing;
 * variants that share what is identical and rerun only the one whose override changed; the report rendered by
 * headless Chromium.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class RecipeTest {
    static final ObjectMapper JSON = new ObjectMapper();
    @TempDir static Path tmp;
    Path straight;                       // the uninterrupted run's out_dir

    /** The recipe, with {@code outDir} and the variants section (may be empty). */
    String recipe(Path outDir, String variants) {
        return """
                out_dir: '%s'
                tokenizer: data/tokenizer/tokenizer.json
                base: {init: random}
                probe: {tasks: ['%s'], shots: 0, steps: [30]}
                synthesize:
                  config: data/synth-sample/synthesis.yaml
                  seeds: [data/synth-sample/seeds.jsonl]
                  replay: data/synth-sample/responses.jsonl
                  replay_delay_ms: 250
                qa: {name: boostqa, files: ['%s']}
                web: {name: knowedu, files: ['%s']}
                prepare: {decontaminate: [data/benchmarks/sample_bench.jsonl], threads: 1}
                train:
                  config: '%s'
                  set: {diagnostics.every_steps: 10}
                  args: [--peak-tflops, '1']
                %s""".formatted(outDir, tmp.resolve("probe.jsonl"), tmp.resolve("qa.jsonl"), tmp.resolve("web.jsonl"), tmp.resolve("small.yaml"), variants);
    }

    @BeforeAll
    void uninterruptedRun() throws Exception {
        List<String> probe = Files.readAllLines(Path.of("data/eval-sample/test.jsonl"));
        List<String> cut = new ArrayList<>();
        for (int i = 0; i < probe.size(); i += 3) cut.add(probe.get(i));   // 70 items over every discipline x tier
        Files.write(tmp.resolve("probe.jsonl"), cut);
        Files.write(tmp.resolve("qa.jsonl"), Files.readAllLines(Path.of("data/boostqa/sample.jsonl")).subList(0, 400));
        Files.write(tmp.resolve("web.jsonl"), Files.readAllLines(Path.of("data/knowedu/sample.jsonl")).subList(0, 150));
        Files.writeString(tmp.resolve("small.yaml"), """
                model: {vocab_size: 512, dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 64,
                        rope_theta: 500000.0, norm_eps: 1.0e-5, max_seq_len: 64, tied_embeddings: false}
                optimizer: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 5}
                train: {seq_len: 32, micro_batch_seqs: 4, global_batch_seqs: 8, steps: 60, log_every_steps: 20,
                        eval_every_steps: 30, eval_batches: 2, threads: 1}
                checkpoint: {every_steps: 10, keep_last: 2, keep_every: 30}
                """);
        straight = tmp.resolve("straight");
        Path r = tmp.resolve("straight.yaml");
        Files.writeString(r, recipe(straight, ""));
        Child c = Child.start(tmp.resolve("straight.log"), r);
        assertEquals(0, c.waitFor(600), c.log());
        assertTrue(Files.isRegularFile(straight.resolve("report/index.html")), c.log());
        // `midtrain plot` draws the gradient diagnostics the train stage logged
        Cli.Run plot = Cli.run("plot", stageFile(straight, "train", "run").toString());
        assertEquals(0, plot.code(), plot.out() + plot.err());
        for (String png : List.of("grad_norm_by_source.png", "grad_cosine.png"))
            assertTrue(Files.size(stageFile(straight, "train", "run/plots/" + png)) > 1000, png);
    }

    @Test
    void killedInSynthesizeAndTrainThenRerunGivesTheSameReportAndAnotherRunDoesNothing() throws Exception {
        Path out = tmp.resolve("killed"), r = tmp.resolve("killed.yaml");
        Files.writeString(r, recipe(out, ""));

        // 1. killed while synthesis is under way: some generated records written, the stage not recorded
        Child c = Child.start(tmp.resolve("k1.log"), r);
        c.killWhen(() -> lines(stageFile(out, "synthesize", "work/generated.jsonl")) >= 2, 300);
        assertNull(stageFile(out, "synthesize", "record.json"), "synthesize finished before the kill: " + c.log());
        // 2. rerun, killed while training: a committed checkpoint, the stage not recorded
        c = Child.start(tmp.resolve("k2.log"), r);
        c.killWhen(() -> stageFile(out, "train", "run/checkpoints/step_00000020/COMMITTED") != null, 300);
        assertTrue(c.full().contains("synthesize [main] resuming"), c.log());
        assertNull(stageFile(out, "train", "record.json"), "train finished before the kill: " + c.log());
        assertFalse(StepDirectories.forRun(stageFile(out, "train", "run")).committedSteps().contains(60L), c.log());
        // 3. rerun to the end: training resumes from its checkpoint
        c = Child.start(tmp.resolve("k3.log"), r);
        assertEquals(0, c.waitFor(600), c.log());
        assertTrue(c.full().contains("train [main] resuming") && c.full().contains("train --resume"), c.log());

        JsonNode a = JSON.readTree(straight.resolve("report/report.json").toFile()), b = JSON.readTree(out.resolve("report/report.json").toFile());
        assertEquals(a, b, "report numbers of the interrupted run differ from the uninterrupted one");
        JsonNode v = a.path("variants").get(0);
        assertTrue(v.path("data").path("synthesis").path("funnel").path("generated").asInt() > 0, a.toString());
        assertTrue(v.path("data").path("boostqa").path("decontamination").asText().contains("probe.jsonl"), a.toString());
        assertTrue(v.path("training").has("grad_cosine_mean"), a.toString());
        assertTrue(v.path("acc_at_step").has("30"), a.toString());                       // probe.steps
        for (String f : List.of("index.html", "report.md")) assertTrue(Files.size(out.resolve("report").resolve(f)) > 2000, f);

        // 4. no change: nothing runs, the report is left as it is
        byte[] html = Files.readAllBytes(out.resolve("report/index.html"));
        Cli.Run again = Cli.run("recipe", "run", r.toString());
        assertEquals(0, again.code(), again.out() + again.err());
        assertTrue(again.out().contains("0 stage(s) run") && again.out().contains("(nothing to do)"), again.out());
        assertFalse(again.out().contains("running"), again.out());
        assertArrayEquals(html, Files.readAllBytes(out.resolve("report/index.html")));

        // 5. variants: "same" has the stages of the run above (all shared); "lr" changes training only
        Files.writeString(r, recipe(out, """
                variants:
                  - name: same
                  - name: lr
                    overrides: {train: {set: {optimizer.lr: 2.0e-3}}}
                """));
        Cli.Run v1 = Cli.run("recipe", "run", r.toString());
        assertEquals(0, v1.code(), v1.out() + v1.err());
        assertEquals(Set.of("train [lr]", "probe [lr]", "report"), ran(v1.out()), v1.out());
        // changing the lr variant's override reruns its stages only
        Files.writeString(r, Files.readString(r).replace("optimizer.lr: 2.0e-3", "optimizer.lr: 1.0e-3"));
        Cli.Run v2 = Cli.run("recipe", "run", r.toString());
        assertEquals(0, v2.code(), v2.out() + v2.err());
        assertEquals(Set.of("train [lr]", "probe [lr]", "report"), ran(v2.out()), v2.out());
        JsonNode rep = JSON.readTree(out.resolve("report/report.json").toFile());
        assertEquals(2, rep.path("variants").size());
        assertEquals(a.path("variants").get(0).path("acc_after"), rep.path("variants").get(0).path("acc_after"));
        // --only probe reruns the probes and nothing else
        Cli.Run only = Cli.run("recipe", "run", r.toString(), "--only", "probe");
        assertEquals(0, only.code(), only.out() + only.err());
        assertEquals(Set.of("probe [same]", "probe [lr]"), ran(only.out()), only.out());
    }

    /** The report renders in headless Chromium: the page's own check after layout, and a screenshot that is not blank. */
    @Test
    void reportRendersInHeadlessChromium() throws Exception {
        String chromium = Stream.of("chromium", "chromium-browser", "google-chrome").filter(RecipeTest::onPath).findFirst().orElse(null);
        Assumptions.assumeTrue(chromium != null, "SKIPPED: no chromium on PATH (apt-get install -y chromium; .ci/run installs it)");
        Path html = straight.resolve("report/index.html").toAbsolutePath(), png = tmp.resolve("report.png");
        List<String> base = List.of(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--user-data-dir=" + tmp.resolve("chromium-profile"));
        Process dump = new ProcessBuilder(cat(base, "--dump-dom", html.toUri().toString())).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        String dom = new String(dump.getInputStream().readAllBytes());
        assertTrue(dump.waitFor(120, TimeUnit.SECONDS));
        assertTrue(dom.matches("(?s).*rendered: [1-9][0-9]* charts, [1-9][0-9]* heatmap cells.*"), "the page's render check: "
                + dom.replaceAll("(?s).*(<p id=\"render-check\"[^<]*).*", "$1"));
        Process shot = new ProcessBuilder(cat(base, "--window-size=1400,1800", "--screenshot=" + png, html.toUri().toString()))
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        assertTrue(shot.waitFor(120, TimeUnit.SECONDS));
        BufferedImage img = ImageIO.read(png.toFile());
        assertEquals(1400, img.getWidth());
        Set<Integer> colours = new HashSet<>();
        for (int y = 0; y < img.getHeight(); y += 7) for (int x = 0; x < img.getWidth(); x += 7) colours.add(img.getRGB(x, y));
        assertTrue(colours.size() > 50, "screenshot has " + colours.size() + " colours: blank?");
        if (System.getenv("MIDTRAIN_REPORT_SCREENSHOT") != null)                    // docs/images/recipe-report.png
            Files.copy(png, Path.of(System.getenv("MIDTRAIN_REPORT_SCREENSHOT")), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    }

    // ------------------------------------------------------------------------------------------------- helpers

    private static boolean onPath(String exe) {
        for (String d : System.getenv().getOrDefault("PATH", "").split(":")) if (Files.isExecutable(Path.of(d, exe))) return true;
        return false;
    }

    private static List<String> cat(List<String> a, String... more) {
        List<String> out = new ArrayList<>(a);
        out.addAll(List.of(more));
        return out;
    }

    /** The stages a run ran ("recipe: NAME [VARIANT] running"). */
    static Set<String> ran(String out) {
        Set<String> s = new HashSet<>();
        for (String l : out.split("\n"))
            if (l.startsWith("recipe: ") && (l.contains(" running (") || l.contains(" resuming (")))
                s.add(l.substring(8, l.lastIndexOf(l.contains(" running (") ? " running (" : " resuming (")).strip());
        return s;
    }

    /** A file in the (only) stage directory named STAGE-*; null while there is none. */
    static Path stageFile(Path out, String stage, String rel) {
        try (Stream<Path> s = Files.list(out.resolve("stages"))) {
            for (Path d : s.filter(p -> p.getFileName().toString().startsWith(stage + "-")).toList())
                if (Files.exists(d.resolve(rel))) return d.resolve(rel);
        } catch (IOException ignored) { }
        return null;
    }

    static long lines(Path f) {
        try {
            return f == null ? 0 : Files.readAllLines(f).stream().filter(l -> l.endsWith("}")).count();
        } catch (IOException e) {
            return 0;
        }
    }

    /** `midtrain recipe run` in a child JVM, output to a file. */
    record Child(Process p, Path logFile) {
        static Child start(Path log, Path recipe) throws IOException {
            List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-cp", System.getProperty("java.class.path"), "-Xss8m", "-Xmx512m", "--add-opens=java.base/java.nio=ALL-UNNAMED",
                    "dev.midtrain.Main", "recipe", "run", recipe.toString()));
            return new Child(new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start(), log);
        }

        int waitFor(int seconds) throws InterruptedException {
            if (!p.waitFor(seconds, TimeUnit.SECONDS)) { p.destroyForcibly(); fail("recipe run did not finish in " + seconds + " s: " + log()); }
            return p.exitValue();
        }

        /** SIGKILL as soon as {@code cond} holds (polled every 10 ms); fails if the run ends first. */
        void killWhen(BooleanSupplier cond, int seconds) throws InterruptedException {
            long end = System.nanoTime() + seconds * 1_000_000_000L;
            while (!cond.getAsBoolean()) {
                if (!p.isAlive()) fail("the run ended (exit " + p.exitValue() + ") before the kill point: " + log());
                if (System.nanoTime() > end) { p.destroyForcibly(); fail("kill point not reached in " + seconds + " s: " + log()); }
                Thread.sleep(10);
            }
            p.destroyForcibly();                                                // SIGKILL: no shutdown hook runs
            p.waitFor();
        }

        String full() {
            try {
                return Files.readString(logFile);
            } catch (IOException e) {
                return "";
            }
        }

        String log() {
            try {
                String s = Files.readString(logFile);
                return s.length() > 6000 ? "..." + s.substring(s.length() - 6000) : s;
            } catch (IOException e) {
                return "(no log)";
            }
        }
    }
}
