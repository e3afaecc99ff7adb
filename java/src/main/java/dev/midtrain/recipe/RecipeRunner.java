package dev.midtrain.recipe;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.ckpt.DType;
import dev.midtrain.ckpt.HfCheckpoint;
import dev.midtrain.kernels.HostFloats;
import dev.midtrain.ckpt.Safetensors;
import dev.midtrain.cli.Commands;
import dev.midtrain.common.AtomicFiles;
import dev.midtrain.common.UserError;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.RunConfig;
import dev.midtrain.model.Llama;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.model.TpHooks;
import dev.midtrain.synth.Pipeline;
import dev.midtrain.synth.RecordedServer;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * Runs a {@link Recipe}: for each variant, the stages base (only for base.init: random), probe-base, synthesize,
 * prepare, train and probe, then one report over all variants. Each stage runs the engine's own command in this
 * process ({@link Commands#execute}: the same code and checks as `midtrain eval|synthesize|prepare|train`).
 *
 * <p>Content-addressed stages: a stage's key is the SHA-256 of its name, its recipe section, the hashes of its input
 * files and the records of the stages it reads; its directory is OUT/stages/NAME-KEY12. A stage is done when that
 * directory holds record.json (written atomically last: inputs, outputs with their hashes, the exact commands, the git
 * commit, seconds). So a rerun skips what is done, a change of anything a stage reads gives it a new key and it
 * runs again, variants whose stage inputs are identical share one directory, and a killed stage (no record) runs
 * again in its directory: synthesis skips the records it already has, training continues with --resume from its
 * newest committed checkpoint (bit-exact on CPU).
 *
 * <p>{@code --from STAGE} reruns STAGE and every later stage (ignoring their records); {@code --only STAGE} reruns
 * that stage alone; the stages before must be done.
 */
public final class RecipeRunner {
    public static final List<String> STAGES = List.of("probe-base", "synthesize", "prepare", "train", "probe", "report");
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT)
            .configure(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true);

    private final Path recipeFile;
    private final Path out;
    private final PrintStream log;
    private final String from, only;
    private final Set<String> forcedDone = new HashSet<>();        // forced stage directories already rerun this time
    private final FileHashes hashes;
    private final String gitSha;
    int ran, skipped;

    public RecipeRunner(Path recipeFile, Path out, String from, String only, PrintStream log) {
        for (String s : new String[]{from, only})
            if (s != null && !STAGES.contains(s)) throw new UserError("stage '" + s + "': must be one of " + STAGES);
        if (from != null && only != null) throw new UserError("--from and --only: give one of them");
        this.recipeFile = recipeFile;
        this.out = out;
        this.from = from;
        this.only = only;
        this.log = log;
        this.hashes = new FileHashes(out.resolve("file-hashes.json"));
        this.gitSha = GitSha.of(Path.of("."));
    }

    /** What one variant's stages produced. */
    public record VariantRun(String name, Recipe recipe, Map<String, Path> stageDirs, Path base) {}

    /** Runs every variant's stages and the report; returns the variants' stage directories. */
    public List<VariantRun> run() throws IOException {
        JsonNode tree = Recipe.readTree(recipeFile);
        Map<String, Recipe> variants = Recipe.variants(tree, recipeFile.toString());
        Files.createDirectories(out.resolve("stages"));
        List<VariantRun> runs = new ArrayList<>();
        try {
            for (var e : variants.entrySet()) {
                try {
                    runs.add(runVariant(e.getKey(), e.getValue()));
                } catch (OnlyDone d) {
                    if (only.equals("report")) throw d;
                }
            }
            if (only != null && !only.equals("report")) throw new OnlyDone();
        } catch (OnlyDone d) {
            hashes.save();
            log.printf("recipe: --only %s: %d stage(s) run%n", only, ran);
            return runs;
        }
        Report.Inputs ri = new Report.Inputs(recipeFile, Files.readString(recipeFile), gitSha, runs);
        stage("report", null, Map.of("variants", reportKey(runs)), dir -> Report.write(ri, out.resolve("report")), true);
        hashes.save();
        log.printf("recipe: %d stage(s) run, %d done before%s; report: %s%n", ran, skipped, ran == 0 ? " (nothing to do)" : "",
                out.resolve("report").resolve("index.html"));
        return runs;
    }

    private VariantRun runVariant(String name, Recipe r) throws IOException {
        Map<String, Path> dirs = new LinkedHashMap<>();
        String tok = hashes.of(Path.of(r.tokenizer()));
        // the base model: a Hugging Face directory (hashed by config.json and the safetensors index/sizes) or a seeded init
        Path base;
        String baseHash;
        if (r.base().hf() != null) {
            base = Path.of(r.base().hf());
            baseHash = hashes.ofModelDir(base);
        } else {
            RunConfig rc = trainConfig(r);                                     // the init depends on the model, seed and std only
            Map<String, String> in = new TreeMap<>(Map.of("model", Recipe.canonical(rc.model()),
                    "init", "seed " + rc.train().seed() + " std " + rc.train().initStd(), "tokenizer", tok));
            Path d = stage("base", name, in, dir -> initRandomBase(r, dir.resolve("hf")), false);
            dirs.put("base", d);
            base = d.resolve("hf");
            baseHash = recordDigest(d);
        }
        Map<String, String> probeIn = probeInputs(r, tok);
        probeIn.put("model", baseHash);
        dirs.put("probe-base", stage("probe-base", name, probeIn, dir -> eval(r, List.of("--init-from", base.toString()), dir.resolve("eval")), false));

        Path qaFile = null;
        if (r.synthesize() != null) {
            Recipe.Synthesize s = r.synthesize();
            Map<String, String> in = new TreeMap<>();
            in.put("section", Recipe.canonical(s));
            in.put("config", hashes.of(Path.of(s.config())));
            for (String f : s.seeds()) in.put("seed:" + f, hashes.of(Path.of(f)));
            if (s.replay() != null) in.put("replay", hashes.of(Path.of(s.replay())));
            for (String t : decontaminationFiles(r)) in.put("decontaminate:" + t, hashes.of(Path.of(t)));
            Path d = stage("synthesize", name, in, dir -> synthesize(r, dir), false);
            dirs.put("synthesize", d);
            qaFile = d.resolve("qa.jsonl");
        }

        Map<String, String> prepIn = new TreeMap<>();
        prepIn.put("section", Recipe.canonical(r.prepare()) + Recipe.canonical(r.qa().name()) + Recipe.canonical(r.web().name()));
        prepIn.put("tokenizer", tok);
        if (qaFile != null) prepIn.put("synthesized", recordDigest(dirs.get("synthesize")));
        for (String f : r.qa().files()) prepIn.put("qa:" + f, hashes.of(Path.of(f)));
        for (String f : r.web().files()) prepIn.put("web:" + f, hashes.of(Path.of(f)));
        for (String t : decontaminationFiles(r)) prepIn.put("decontaminate:" + t, hashes.of(Path.of(t)));
        Path synthesized = qaFile;
        Path prep = stage("prepare", name, prepIn, dir -> prepare(r, synthesized, dir), false);
        dirs.put("prepare", prep);

        Map<String, String> trainIn = new TreeMap<>();
        trainIn.put("section", Recipe.canonical(r.train()) + "|weights " + r.qa().weight() + " " + r.web().weight());
        trainIn.put("config", hashes.of(Path.of(r.train().config())));
        trainIn.put("prepared", recordDigest(prep));
        trainIn.put("base", baseHash);
        Path train = stage("train", name, trainIn, dir -> train(r, base, prep, dir), false);
        dirs.put("train", train);

        Map<String, String> probeAfter = probeInputs(r, tok);
        probeAfter.put("model", recordDigest(train));
        probeAfter.put("before", recordDigest(dirs.get("probe-base")));
        Path pb = dirs.get("probe-base");
        dirs.put("probe", stage("probe", name, probeAfter, dir -> probeAfter(r, train.resolve("run"), pb, dir), false));
        return new VariantRun(name, r, dirs, base);
    }

    // ============================================================================================= stage machinery

    /** A stage's work: runs in {@code dir} and returns the outputs to record (relative path -> SHA-256) and the commands. */
    interface Body {
        Outputs run(Path dir) throws IOException;
    }

    /** What a stage produced: files (path relative to the stage directory -> SHA-256) and the commands it ran. */
    record Outputs(Map<String, String> files, List<List<String>> commands) {
        static Outputs of(Path dir, List<List<String>> commands, String... files) throws IOException {
            Map<String, String> m = new TreeMap<>();
            for (String f : files) m.put(f, AtomicFiles.sha256(dir.resolve(f)));
            return new Outputs(m, commands);
        }
    }

    /** Stages in order; base (the seeded init) is a prerequisite that runs when missing and is never forced. */
    private static int order(String stage) { return stage.equals("base") ? -1 : STAGES.indexOf(stage); }

    private boolean forced(String stage) {
        if (stage.equals("base")) return false;
        if (only != null) return only.equals(stage);
        return from != null && order(stage) >= order(from);
    }

    private boolean mustBeDone(String stage) {
        String pivot = only != null ? only : from;
        return pivot != null && !stage.equals("base") && order(stage) < order(pivot);
    }

    /** --only STAGE: the stages after it are not run (thrown past them to the end of the variant). */
    private static final class OnlyDone extends RuntimeException {
        OnlyDone() { super(null, null, false, false); }
    }

    /**
     * Runs a stage unless done: OUT/stages/NAME-KEY12 (or OUT/report for the report), record.json written last.
     * {@code fixedDir}: the report, one directory whose record's key decides.
     */
    private Path stage(String name, String variant, Map<String, String> inputs, Body body, boolean fixedDir) throws IOException {
        String key = sha256(name + "\n" + Recipe.canonical(new TreeMap<>(inputs)));
        Path dir = fixedDir ? out.resolve("report") : out.resolve("stages").resolve(name + "-" + key.substring(0, 12));
        Path record = dir.resolve("record.json");
        String who = name + (variant == null ? "" : " [" + variant + "]");
        if (only != null && order(name) > order(only)) throw new OnlyDone();
        boolean done = Files.isRegularFile(record) && key.equals(JSON.readTree(record.toFile()).path("key").asText());
        boolean force = forced(name) && !forcedDone.contains(dir.toString());
        if (done && !force) {
            skipped++;
            log.printf("recipe: %-11s done (%s)%n", who, out.relativize(dir));
            return dir;
        }
        if (mustBeDone(name) && !done)
            throw new UserError(who + ": has not run yet (" + out.relativize(dir) + "); run without --from/--only first");
        if (force) {
            forcedDone.add(dir.toString());
            Files.deleteIfExists(record);
            if (!name.equals("synthesize") && !name.equals("report")) AtomicFiles.deleteTree(dir);   // a forced stage starts over
        }
        Files.createDirectories(dir);
        boolean resumed = Files.exists(dir.resolve("inputs.json"));
        AtomicFiles.writeString(dir.resolve("inputs.json"), JSON.writeValueAsString(inputs));
        log.printf("recipe: %-11s %s (%s)%n", who, resumed ? "resuming" : "running", out.relativize(dir));
        long t0 = System.nanoTime();
        Outputs o = body.run(dir);
        ObjectNode rec = JSON.createObjectNode();
        rec.put("stage", name).put("key", key).put("git_sha", gitSha).put("seconds", (System.nanoTime() - t0) / 1e9)
                .put("finished_at", java.time.Instant.now().toString()).put("resumed", resumed);
        rec.set("inputs", JSON.valueToTree(inputs));
        rec.set("outputs", JSON.valueToTree(o.files()));
        ArrayNode cmds = rec.putArray("commands");
        for (List<String> c : o.commands()) cmds.add(JSON.valueToTree(c));
        AtomicFiles.writeString(record, JSON.writeValueAsString(rec));
        ran++;
        return dir;
    }

    /** A done stage's identity for the stages that read it: its key and its outputs' hashes. */
    private static String recordDigest(Path stageDir) throws IOException {
        JsonNode r = JSON.readTree(stageDir.resolve("record.json").toFile());
        return sha256(r.path("key").asText() + r.path("outputs").toString());
    }

    private String reportKey(List<VariantRun> runs) throws IOException {
        StringBuilder sb = new StringBuilder("report v1\n").append(Files.readString(recipeFile)).append('\n');
        for (VariantRun v : runs) {
            sb.append(v.name());
            for (var e : v.stageDirs().entrySet()) sb.append(' ').append(e.getKey()).append('=').append(recordDigest(e.getValue()));
            sb.append('\n');
        }
        return sha256(sb.toString());
    }

    static String sha256(String s) {
        try {
            return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256").digest(s.getBytes(java.nio.charset.StandardCharsets.UTF_8)));
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Runs one engine command in this process; a non-zero exit stops the recipe with the stage named. */
    private void exec(String stage, List<List<String>> log, List<String> args) {
        log.add(prefixed(args));
        this.log.println("recipe: $ midtrain " + String.join(" ", args));
        int code = Commands.execute(args.toArray(String[]::new));
        if (code != 0) throw new UserError(stage + ": `midtrain " + args.get(0) + "` exited " + code + " (see above); rerun the recipe to continue", code == 2 ? 2 : 1, null);
    }

    private static List<String> prefixed(List<String> args) {
        List<String> c = new ArrayList<>();
        c.add("midtrain");
        c.addAll(args);
        return c;
    }

    // ============================================================================================= the stages

    private Outputs initRandomBase(Recipe r, Path hf) throws IOException {
        RunConfig cfg = trainConfig(r);
        AtomicFiles.deleteTree(hf);
        try (dev.midtrain.kernels.Backend be = dev.midtrain.kernels.Backend.open("cpu", 0);
             Llama m = new Llama(be, ParamLayout.of(cfg.model()), 1, Math.min(8, cfg.model().maxSeqLen()), false, TpHooks.NONE)) {
            m.initialize(cfg.train().seed(), cfg.train().initStd());
            float[] all = new float[Math.toIntExact(m.layout().numel())];
            be.download(all, m.slabs().params());
            HostFloats slab = HostFloats.wrap(all);
            ParamLayout l = m.layout();
            HfCheckpoint.export(cfg.model(), null, t -> new Safetensors.Source(slab, l.get(t.name()).offset(), false), hf, DType.F32,
                    HfCheckpoint.DEFAULT_MAX_SHARD_BYTES, Map.of("tokenizer.json", Files.readAllBytes(Path.of(r.tokenizer()))),
                    dev.midtrain.ckpt.HfConfig.Layout.TRANSFORMERS_5);
        }
        log.printf("recipe: base: the seeded initialization of %s (train.seed %d) saved to %s%n", r.train().config(), cfg.train().seed(), hf);
        return Outputs.of(hf.getParent(), List.of(List.of("(in-process) seeded init of " + r.train().config() + " -> hf/")), "hf/config.json");
    }

    /** The run config the train stage uses (the file and the recipe's train.set, data left to the recipe). */
    static RunConfig trainConfig(Recipe r) {
        List<String> sets = new ArrayList<>();
        r.train().set().forEach((k, v) -> sets.add(k + "=" + v.toString()));
        return ConfigLoader.load(Path.of(r.train().config()), sets);
    }

    private Map<String, String> probeInputs(Recipe r, String tok) throws IOException {
        Map<String, String> in = new TreeMap<>();
        in.put("section", Recipe.canonical(r.probe()));
        in.put("tokenizer", tok);
        for (String t : r.probe().tasks()) {
            in.put("task:" + t, hashes.of(Path.of(t)));
            if (r.probe().shots() > 0) {
                Path devFile = dev.midtrain.eval.McTasks.devSibling(Path.of(t));
                if (devFile != null && Files.exists(devFile)) in.put("dev:" + devFile, hashes.of(devFile));
            }
        }
        return in;
    }

    private List<String> evalArgs(Recipe r, List<String> model, Path outDir) {
        List<String> a = new ArrayList<>(List.of("eval"));
        a.addAll(model);
        a.add("--tasks");
        a.addAll(r.probe().tasks());
        a.addAll(List.of("--shots", Integer.toString(r.probe().shots()), "--limit", Integer.toString(r.probe().limit()),
                "--tokenizer", r.tokenizer(), "--out", outDir.toString()));
        return a;
    }

    private Outputs eval(Recipe r, List<String> model, Path outDir) throws IOException {
        List<List<String>> cmds = new ArrayList<>();
        exec("probe-base", cmds, evalArgs(r, model, outDir));
        return Outputs.of(outDir.getParent(), cmds, "eval/results.json");
    }

    private Outputs probeAfter(Recipe r, Path run, Path before, Path dir) throws IOException {
        List<List<String>> cmds = new ArrayList<>();
        List<String> a = evalArgs(r, List.of("--checkpoint", run.toString()), dir.resolve("eval"));
        a.addAll(List.of("--compare", before.resolve("eval").resolve("results.json").toString()));
        exec("probe", cmds, a);
        List<String> files = new ArrayList<>(List.of("eval/results.json"));
        for (long step : r.probe().steps()) {
            Path s = StepDirectories.forRun(run).stepDir(step);
            if (!Files.isRegularFile(s.resolve(StepDirectories.COMMITTED)))
                throw new UserError("probe.steps: step " + step + " has no committed checkpoint in " + run + " (keep it with checkpoint.keep_every)");
            exec("probe", cmds, evalArgs(r, List.of("--checkpoint", s.toString()), dir.resolve("step_" + step)));
            files.add("step_" + step + "/results.json");
        }
        return Outputs.of(dir, cmds, files.toArray(String[]::new));
    }

    /** The benchmark files prepare (and curate) remove: the probe's JSONL task files, then prepare.decontaminate. */
    static List<String> decontaminationFiles(Recipe r) {
        List<String> out = new ArrayList<>();
        for (String t : r.probe().tasks()) if (t.endsWith(".jsonl") || t.endsWith(".jsonl.gz")) out.add(t);
        for (String b : r.prepare().decontaminate()) if (!out.contains(b)) out.add(b);
        return out;
    }

    private Outputs synthesize(Recipe r, Path dir) throws IOException {
        Recipe.Synthesize s = r.synthesize();
        Path cfgFile = Path.of(s.config()).toAbsolutePath();
        ObjectNode tree = (ObjectNode) ConfigLoader.YAML.readTree(Files.readString(cfgFile));
        for (var e : s.set().entrySet()) setPath(tree, e.getKey(), e.getValue(), "synthesize.set");
        Path base = cfgFile.getParent();
        tree.put("templates_dir", base.resolve(tree.path("templates_dir").asText(".")).normalize().toString());
        ObjectNode curate = tree.has("curate") ? (ObjectNode) tree.get("curate") : tree.putObject("curate");
        ArrayNode dec = curate.putArray("decontaminate");
        List<String> seen = new ArrayList<>();
        JsonNode orig = ConfigLoader.YAML.readTree(Files.readString(cfgFile)).path("curate").path("decontaminate");
        for (JsonNode d : orig) seen.add(base.resolve(d.asText()).normalize().toString());
        for (String d : decontaminationFiles(r)) if (!seen.contains(Path.of(d).toAbsolutePath().normalize().toString())) seen.add(Path.of(d).toAbsolutePath().normalize().toString());
        seen.forEach(dec::add);
        Path work = dir.resolve("work");
        List<List<String>> cmds = new ArrayList<>();
        RecordedServer server = s.replay() == null ? null : new RecordedServer(Path.of(s.replay()), s.replayDelayMs());
        try {
            if (server != null) ((ObjectNode) tree.get("endpoint")).put("base_url", server.baseUrl());
            Path resolved = dir.resolve("synthesis.yaml");
            AtomicFiles.writeString(resolved, ConfigLoader.YAML.writeValueAsString(tree));
            List<String> a = new ArrayList<>(List.of("synthesize", "--config", resolved.toString(), "--work", work.toString(), "--input"));
            a.addAll(s.seeds());
            List<String> stages = new ArrayList<>(s.stages());
            stages.add("report");
            a.addAll(List.of("--stage", String.join(",", stages)));
            exec("synthesize", cmds, a);
        } finally {
            if (server != null) server.close();
        }
        // the QA pairs in a fixed order (by id): completion order varies with concurrency and with a resumed run
        Path last = s.stages().contains("refine") ? Pipeline.refined(work) : Pipeline.generated(work);
        List<JsonNode> recs = new ArrayList<>();
        for (String line : Files.readAllLines(last)) if (!line.isBlank()) recs.add(JSON.readTree(line));
        recs.sort(java.util.Comparator.comparing(n -> n.path("id").asText()));
        StringBuilder sb = new StringBuilder();
        ObjectMapper compact = new ObjectMapper();
        for (JsonNode n : recs) sb.append(compact.writeValueAsString(n)).append('\n');
        AtomicFiles.writeString(dir.resolve("qa.jsonl"), sb.toString());
        log.printf("recipe: synthesize: %d QA pairs from %s%n", recs.size(), work.relativize(last));
        return Outputs.of(dir, cmds, "qa.jsonl");
    }

    /** Sets a dotted key (a.b.c) in a YAML tree; the sections on the way must be mappings. */
    static void setPath(ObjectNode tree, String dotted, JsonNode value, String where) {
        String[] parts = dotted.split("\\.");
        ObjectNode node = tree;
        for (int i = 0; i < parts.length - 1; i++) {
            JsonNode child = node.get(parts[i]);
            if (child == null) child = node.putObject(parts[i]);
            if (!(child instanceof ObjectNode o)) throw new UserError(where + "." + dotted + ": " + parts[i] + " is not a section");
            node = o;
        }
        node.set(parts[parts.length - 1], value);
    }

    private Outputs prepare(Recipe r, Path synthesized, Path dir) throws IOException {
        List<List<String>> cmds = new ArrayList<>();
        List<String> files = new ArrayList<>();
        for (Recipe.Source src : List.of(r.qa(), r.web())) {
            Path o = dir.resolve(src.name());
            List<String> a = new ArrayList<>(List.of("prepare", "--source", src.name(), "--format", src == r.qa() ? "qa" : "text", "--input"));
            if (src == r.qa() && synthesized != null) a.add(synthesized.toString());
            a.addAll(src.files());
            a.addAll(List.of("--tokenizer", r.tokenizer(), "--out", o.toString(), "--no-progress"));
            List<String> dec = decontaminationFiles(r);
            if (!dec.isEmpty()) { a.add("--decontaminate"); a.addAll(dec); }
            if (r.prepare().dedup()) a.add("--dedup");
            if (r.prepare().threads() > 0) a.addAll(List.of("--threads", Integer.toString(r.prepare().threads())));
            exec("prepare", cmds, a);
            files.add(src.name() + "/manifest.json");
        }
        return Outputs.of(dir, cmds, files.toArray(String[]::new));
    }

    private Outputs train(Recipe r, Path base, Path prep, Path dir) throws IOException {
        Path run = dir.resolve("run");
        List<List<String>> cmds = new ArrayList<>();
        boolean resume = StepDirectories.forRun(run).newestCommitted().isPresent();
        if (!resume) AtomicFiles.deleteTree(run);                               // killed before its first checkpoint: start over
        List<String> a = new ArrayList<>(List.of("train"));
        if (resume) a.addAll(List.of("--resume", run.toString()));
        else {
            a.addAll(List.of("--config", r.train().config(), "--run-dir", run.toString(), "--init-from", base.toString()));
            r.train().set().forEach((k, v) -> a.addAll(List.of("--set", k + "=" + v.toString())));
            String sources = "[{name: " + r.qa().name() + ", path: '" + prep.resolve(r.qa().name()) + "', weight: " + r.qa().weight() + "}, "
                    + "{name: " + r.web().name() + ", path: '" + prep.resolve(r.web().name()) + "', weight: " + r.web().weight() + "}]";
            a.addAll(List.of("--set", "data.sources=" + sources));
        }
        a.addAll(r.train().args());
        exec("train", cmds, a);
        Path last = StepDirectories.forRun(run).newestCommitted()
                .orElseThrow(() -> new UserError("train: " + run + " has no committed checkpoint after training"));
        // a SIGTERM or --stop-at-step in train.args ends `train` with exit 0 and a checkpoint short of the end: not done
        long step = JSON.readTree(last.resolve(StepDirectories.STATE).toFile()).path("step").asLong();
        int steps = ConfigLoader.load(run.resolve("config.yaml"), List.of()).train().steps();
        if (step < steps) throw new UserError("train: stopped at step " + step + " of " + steps + "; rerun the recipe to continue", 1, null);
        String rel = dir.relativize(last.resolve(StepDirectories.STATE)).toString();
        return Outputs.of(dir, cmds, rel);
    }
}
