package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;
import dev.midtrain.prepare.Decontaminator;
import dev.midtrain.prepare.EmbeddingDecontaminator;
import dev.midtrain.prepare.MinHashDedup;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BiFunction;

/**
 * The BoostQA synthesis stages over a work directory (arXiv 2508.01326, sections 2.1-2.3):
 * <pre>
 *   curate    seed JSONL (--input)  -> seeds.jsonl       dedup (exact, then MinHash near-duplicates), decontaminate,
 *                                                        min length (prepare.Decontaminator, prepare.MinHashDedup)
 *   annotate  seeds.jsonl           -> annotated.jsonl   + discipline, difficulty tier H1-H5 (LLM judge)
 *   generate  annotated.jsonl       -> generated.jsonl   multi-grade (one request per seed and grade) and
 *                                                        high-difficulty (booster-drawn seeds, outputs below
 *                                                        booster.min_accepted_tier rejected)
 *   refine    generated.jsonl       -> refined.jsonl     solvable? answer regenerated step by step, consistent?
 *                                                        judged grade and difficulty; `prepare --format qa` input
 *   balance   refined.jsonl         -> balanced.jsonl    target shares per discipline x tier: caps, repeats, deficits
 *                                                        with the seeds to generate more from ({@link Balance})
 * </pre>
 * Each model stage writes accepted records to its output and rejected ones to STAGE.rejects.jsonl (with the reason),
 * both append-only and fsync'd per record ({@link JsonlLog}); a rerun skips ids present in either, so a crash costs
 * at most the requests in flight. Records that failed for good at the transport level (retries exhausted) are in
 * neither file and are retried by the next run; the stage then exits 1. Every record carries "provenance", one entry
 * per stage: model, template name/version/hash, sampling parameters, SHA-256 of the raw HTTP response body and token
 * usage. Each stage run appends its counters to stats.jsonl.
 */
public final class Pipeline {
    public static final List<String> STAGES = List.of("curate", "annotate", "generate", "refine", "balance", "report");

    private final SynthConfig cfg;
    private final Path templatesDir, configDir, work;
    private final PrintStream log;
    private final String apiKey;

    public Pipeline(SynthConfig cfg, Path configFile, Path work, String apiKey, PrintStream log) {
        this.cfg = cfg;
        this.configDir = configFile.toAbsolutePath().getParent();
        this.templatesDir = configDir.resolve(cfg.templatesDir());
        this.work = work;
        this.apiKey = apiKey;
        this.log = log;
        checkTemplates();
    }

    // The slots each stage fills (a template may use any of them, and no other) and the output fields it reads.
    static final Set<String> ANNOTATE_SLOTS = Set.of("seed_text", "rubric", "discipline_hint"),
            GENERATE_SLOTS = Set.of("seed_text", "discipline", "grade", "grade_role", "rubric"),
            BOOSTER_SLOTS = Set.of("seed_text", "discipline", "grade", "grade_role", "rubric", "min_tier", "seed_difficulty"),
            REFINE_SLOTS = Set.of("question", "answer", "discipline", "rubric", "grades");
    static final Set<String> ANNOTATE_FIELDS = Set.of("discipline", "difficulty"), GENERATE_FIELDS = Set.of("question", "answer", "difficulty"),
            REFINE_FIELDS = Set.of("solvable", "consistent", "answer", "grade", "difficulty");

    /**
     * Loads every stage's template and the fragment files when the config loads, before any request is sent: a
     * missing file, a bad schema or a slot no stage fills is a one-line error naming the file, not a failure in the
     * middle of a later stage after earlier ones spent their requests.
     */
    private void checkTemplates() {
        Templates.load(templatesDir, cfg.annotate().template(), ANNOTATE_FIELDS, ANNOTATE_SLOTS);
        Templates.load(templatesDir, cfg.generate().template(), GENERATE_FIELDS, GENERATE_SLOTS);
        Templates.load(templatesDir, cfg.booster().stage().template(), GENERATE_FIELDS, BOOSTER_SLOTS);
        Templates.load(templatesDir, cfg.refine().template(), REFINE_FIELDS, REFINE_SLOTS);
        rubric();
        grades();
    }

    public static Path seeds(Path work) { return work.resolve("seeds.jsonl"); }
    public static Path annotated(Path work) { return work.resolve("annotated.jsonl"); }
    public static Path generated(Path work) { return work.resolve("generated.jsonl"); }
    public static Path refined(Path work) { return work.resolve("refined.jsonl"); }
    public static Path rejects(Path work, String stage) { return work.resolve(stage + ".rejects.jsonl"); }
    public static Path statsFile(Path work) { return work.resolve("stats.jsonl"); }

    // ------------------------------------------------------------------ curate

    /** Curates {@code inputs} into seeds.jsonl (rewritten atomically; local and deterministic). Returns the exit code. */
    public int curate(List<Path> inputs) {
        if (inputs.isEmpty()) throw new UserError("--input: curate needs at least one seed JSONL file");
        long t0 = System.nanoTime();
        List<Path> benches = cfg.curate().decontaminate().stream().map(configDir::resolve).toList();
        Decontaminator decon = Decontaminator.load(benches);
        SynthConfig.Curate cc = cfg.curate();
        if (cc.embeddingThreshold() > 0 && benches.isEmpty()) throw new UserError("curate.embedding_threshold: needs curate.decontaminate benchmark files");
        try (EmbeddingDecontaminator emb = cc.embeddingThreshold() > 0 ? EmbeddingDecontaminator.load(new EmbeddingDecontaminator.Params(
                cc.embeddingModel() == null ? null : configDir.resolve(cc.embeddingModel()), cc.embeddingTokenizer() == null ? null : configDir.resolve(cc.embeddingTokenizer()),
                cc.embeddingThreshold()), benches) : null) {
            return curate(inputs, t0, benches, decon, emb);
        }
    }

    private int curate(List<Path> inputs, long t0, List<Path> benches, Decontaminator decon, EmbeddingDecontaminator emb) {
        List<String> benchNames = benches.stream().map(p -> p.getFileName().toString()).toList();
        Set<String> seenText = new HashSet<>(), seenId = new HashSet<>();
        double nearT = cfg.curate().nearDuplicateThreshold();
        MinHashDedup near = nearT > 0 ? new MinHashDedup(new MinHashDedup.Params(cfg.curate().shingle(), nearT, List.of())) : null;
        if (near != null) near.startSource("seeds");
        String dedup = "exact normalized text" + (near != null ? ", MinHash Jaccard >= " + nearT + " (" + cfg.curate().shingle() + "-unit shingles)" : "");
        String deconDesc = Decontaminator.N + "-word / " + Decontaminator.N_CHAR + "-character n-grams"
                + (emb == null ? "" : " and " + emb.modelName() + " embeddings (cosine >= " + emb.threshold() + ")") + " vs " + benchNames;
        Map<String, Long> rejected = new java.util.TreeMap<>();
        StringBuilder seedsOut = new StringBuilder(), rejectsOut = new StringBuilder();
        long kept = 0;
        for (Path in : inputs) {
            try (BufferedReader r = dev.midtrain.prepare.Inputs.openText(in)) {
                String line;
                long n = 0;
                while ((line = r.readLine()) != null) {
                    n++;
                    if (line.isBlank()) continue;
                    String where = in.getFileName() + ":" + n;
                    JsonNode rec;
                    try {
                        rec = JsonlLog.JSON.readTree(line);
                    } catch (IOException e) {
                        throw new UserError(in + ":" + n + ": malformed JSON in seed file");
                    }
                    if (rec == null || !rec.isObject()) throw new UserError(in + ":" + n + ": seed record is not a JSON object");
                    String text = seedText(rec);
                    List<String> words = text == null ? List.of() : Decontaminator.normalize(text);
                    String textHash = Templates.Hashes.sha256(String.join(" ", words));
                    String id = rec.hasNonNull("id") ? rec.get("id").asText() : "seed-" + textHash.substring(0, 12);
                    String reason = null, detail = null;
                    if (text == null) reason = "missing_text";
                    else if (words.size() < cfg.curate().minWords()) reason = "too_short";
                    else if (!seenText.add(textHash)) reason = "duplicate_text";
                    else if (!seenId.add(id)) reason = "duplicate_id";
                    else {
                        long mask = decon.match(words);
                        if (mask != 0) {
                            reason = "contaminated";
                            List<String> hit = new ArrayList<>();
                            for (int b = 0; b < benchNames.size(); b++) if ((mask >>> b & 1) != 0) hit.add(benchNames.get(b));
                            detail = String.join(",", hit);
                        } else if (emb != null) {
                            EmbeddingDecontaminator.Hit h = emb.match(text);
                            if (h != null) {
                                reason = "contaminated_embedding";
                                detail = String.format("%s item %d, cosine %.4f", benchNames.get(h.benchmark()), h.item(), h.score());
                            }
                        }
                    }
                    if (reason == null && near != null) {     // near-duplicates last: only seeds that are kept enter the index
                        int[] sig = near.signature(words);
                        MinHashDedup.Match m = sig == null ? null : near.find(sig);
                        if (m != null) {
                            reason = "near_duplicate";
                            detail = String.format("of kept seed #%s, estimated Jaccard %.2f", m.of().replaceAll(".*#", ""), m.jaccard());
                        } else if (sig != null) near.add(sig, (int) kept);
                    }
                    ObjectNode prov = JsonlLog.JSON.createObjectNode().put("stage", "curate").put("source", where)
                            .put("dedup", dedup).put("decontamination", deconDesc);
                    if (reason != null) {
                        rejected.merge(reason, 1L, Long::sum);
                        ObjectNode rj = JsonlLog.JSON.createObjectNode().put("id", id).put("seed_id", id).put("stage", "curate").put("reason", reason);
                        if (detail != null) rj.put("detail", detail);
                        rj.set("provenance", prov);
                        rejectsOut.append(rj).append('\n');
                        continue;
                    }
                    ObjectNode seed = JsonlLog.JSON.createObjectNode().put("id", id).put("seed_id", id).put("seed_text", text);
                    if (rec.hasNonNull("discipline")) seed.put("discipline_hint", rec.get("discipline").asText());
                    seed.putArray("provenance").add(prov);
                    seedsOut.append(seed).append('\n');
                    kept++;
                }
            } catch (IOException e) {
                throw new UserError(in + ": cannot read: " + e.getMessage());
            }
        }
        try {
            Files.createDirectories(work);
            writeAtomically(seeds(work), seedsOut.toString().getBytes(StandardCharsets.UTF_8));
            writeAtomically(rejects(work, "curate"), rejectsOut.toString().getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UserError(work + ": cannot write seeds: " + e.getMessage(), 1, e);
        }
        Stats s = new Stats();
        s.add("accepted", kept);
        rejected.forEach((k, v) -> s.add("rejected." + k, v));
        writeStats("curate", s, t0);
        log.println("curate: " + kept + " seeds kept, rejected " + rejected + " -> " + seeds(work));
        return 0;
    }

    /** The seed text: "text", or "question" (+ "answer"), or null. */
    private static String seedText(JsonNode rec) {
        if (rec.path("text").isTextual() && !rec.get("text").asText().isBlank()) return rec.get("text").asText();
        if (rec.path("question").isTextual() && !rec.get("question").asText().isBlank())
            return rec.get("question").asText() + (rec.path("answer").isTextual() ? "\n" + rec.get("answer").asText() : "");
        return null;
    }

    // ------------------------------------------------------------------ annotate

    public int annotate() {
        Templates.Prompt tpl = Templates.load(templatesDir, cfg.annotate().template(), ANNOTATE_FIELDS, ANNOTATE_SLOTS);
        Templates.Fragment rubric = rubric();
        List<Work> items = new ArrayList<>();
        for (JsonNode seed : input(seeds(work), "curate")) {
            Map<String, String> slots = Map.of("seed_text", seed.get("seed_text").asText(), "rubric", rubricText(rubric),
                    "discipline_hint", seed.path("discipline_hint").asText("none"));
            items.add(new Work(seed.get("id").asText(), seed, cfg.annotate(), tpl, slots, (answer, rec) -> {
                rec.put("discipline", answer.get("discipline").asText());
                rec.put("difficulty", answer.get("difficulty").asText());
                return null;
            }));
        }
        return runModelStage("annotate", items, annotated(work), Map.of("rubric", rubric));
    }

    // ------------------------------------------------------------------ generate

    public int generate() {
        Templates.Prompt mg = Templates.load(templatesDir, cfg.generate().template(), GENERATE_FIELDS, GENERATE_SLOTS);
        SynthConfig.Booster b = cfg.booster();
        Templates.Prompt hd = Templates.load(templatesDir, b.stage().template(), GENERATE_FIELDS, BOOSTER_SLOTS);
        Templates.Fragment rubric = rubric(), grades = grades();
        List<JsonNode> seeds = input(annotated(work), "annotate");
        Set<String> boosted = b.enabled() ? boosterDraw(seeds, b) : Set.of();
        int minTier = SynthConfig.TIERS.indexOf(b.minAcceptedTier());
        String topGrade = cfg.grades().get(cfg.grades().size() - 1);
        List<Work> items = new ArrayList<>();
        for (JsonNode seed : seeds) {
            String sid = seed.get("id").asText();
            for (String g : cfg.grades()) {
                Map<String, String> slots = Map.of("seed_text", seed.get("seed_text").asText(), "discipline", seed.get("discipline").asText(),
                        "grade", g, "grade_role", grades.entries().get(g), "rubric", rubricText(rubric));
                items.add(new Work(sid + "/mg/" + g, seed, cfg.generate(), mg, slots, (answer, rec) -> {
                    qa(rec, seed, answer, "multi_grade", g);
                    return null;
                }));
            }
            if (boosted.contains(sid)) {
                Map<String, String> slots = Map.of("seed_text", seed.get("seed_text").asText(), "discipline", seed.get("discipline").asText(),
                        "grade", topGrade, "grade_role", grades.entries().get(topGrade), "rubric", rubricText(rubric),
                        "min_tier", b.minAcceptedTier(), "seed_difficulty", seed.get("difficulty").asText());
                items.add(new Work(sid + "/hd", seed, b.stage(), hd, slots, (answer, rec) -> {
                    qa(rec, seed, answer, "high_difficulty", topGrade);
                    int tier = SynthConfig.TIERS.indexOf(answer.get("difficulty").asText());
                    return tier < minTier ? "below_min_tier" : null;
                }));
            }
        }
        return runModelStage("generate", items, generated(work), Map.of("rubric", rubric, "grades", grades));
    }

    private static void qa(ObjectNode rec, JsonNode seed, JsonNode answer, String branch, String grade) {
        rec.put("branch", branch).put("grade_requested", grade).put("discipline", seed.get("discipline").asText())
                .put("seed_difficulty", seed.get("difficulty").asText())
                .put("question", answer.get("question").asText()).put("answer", answer.get("answer").asText())
                .put("difficulty", answer.get("difficulty").asText());
    }

    /**
     * The high-difficulty branch's seeds: round(seeds_fraction * n) seeds drawn without replacement with probability
     * proportional to tier_weights[tier] (Efraimidis-Spirakis keys u^(1/w), u a hash of booster.seed and the seed id,
     * so the draw is independent of file order and identical on every rerun).
     */
    static Set<String> boosterDraw(List<JsonNode> seeds, SynthConfig.Booster b) {
        record Keyed(String id, double key) {}
        List<Keyed> keyed = new ArrayList<>();
        for (JsonNode s : seeds) {
            double w = b.tierWeights().getOrDefault(s.get("difficulty").asText(), 0.0);
            if (w <= 0) continue;
            String id = s.get("id").asText();
            double u = (Long.parseLong(Templates.Hashes.sha256(b.seed() + "/" + id).substring(0, 13), 16) + 0.5) / (1L << 52);   // (0, 1)
            keyed.add(new Keyed(id, Math.log(u) / w));    // log(u^(1/w)): larger is drawn first
        }
        keyed.sort(Comparator.comparingDouble(Keyed::key).reversed().thenComparing(Keyed::id));
        int n = (int) Math.round(b.seedsFraction() * seeds.size());
        Set<String> out = new HashSet<>();
        for (int i = 0; i < Math.min(n, keyed.size()); i++) out.add(keyed.get(i).id());
        return out;
    }

    // ------------------------------------------------------------------ refine

    public int refine() {
        Templates.Prompt tpl = Templates.load(templatesDir, cfg.refine().template(), REFINE_FIELDS, REFINE_SLOTS);
        Templates.Fragment rubric = rubric(), grades = grades();
        StringBuilder gradeList = new StringBuilder();
        for (String g : cfg.grades()) gradeList.append("- ").append(g).append(": ").append(grades.entries().get(g)).append('\n');
        List<Work> items = new ArrayList<>();
        for (JsonNode gen : input(generated(work), "generate")) {
            Map<String, String> slots = Map.of("question", gen.get("question").asText(), "answer", gen.get("answer").asText(),
                    "discipline", gen.get("discipline").asText(), "rubric", rubricText(rubric), "grades", gradeList.toString().strip());
            items.add(new Work(gen.get("id").asText(), gen, cfg.refine(), tpl, slots, (answer, rec) -> {
                String grade = answer.get("grade").asText();
                if (!cfg.grades().contains(grade)) return "schema_violation:grade";
                if (!answer.get("solvable").asBoolean()) return "unsolvable";
                if (!answer.get("consistent").asBoolean()) return "inconsistent_answer";
                rec.put("answer_generated", gen.get("answer").asText());
                rec.put("answer", answer.get("answer").asText());
                rec.put("difficulty_generated", gen.get("difficulty").asText());
                rec.put("grade", grade).put("difficulty", answer.get("difficulty").asText());
                return null;
            }));
        }
        return runModelStage("refine", items, refined(work), Map.of("rubric", rubric, "grades", grades));
    }

    // ------------------------------------------------------------------ the model-call loop

    /**
     * One model call: the record to extend ({@code base}), the prompt, and {@code accept}, which adds the answer's
     * fields to the new record and returns a reject reason or null. The answer it sees already satisfies the schema.
     */
    private record Work(String id, JsonNode base, SynthConfig.Stage stage, Templates.Prompt tpl, Map<String, String> slots,
                        BiFunction<JsonNode, ObjectNode, String> accept) {}

    private int runModelStage(String stageName, List<Work> items, Path outFile, Map<String, Templates.Fragment> fragments) {
        long t0 = System.nanoTime();
        Stats stats = new Stats();
        Endpoint client = new Endpoint(cfg.endpoint(), apiKey, stats);
        try (JsonlLog out = JsonlLog.open(outFile); JsonlLog rej = JsonlLog.open(rejects(work, stageName))) {
            Set<String> done = new HashSet<>(out.ids());
            done.addAll(rej.ids());
            List<Work> todo = items.stream().filter(w -> !done.contains(w.id())).toList();
            try {
                for (String url : new java.util.TreeSet<>(todo.stream().map(w -> w.stage().baseUrl() != null ? w.stage().baseUrl() : cfg.endpoint().baseUrl()).toList()))
                    client.probe(url);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new UserError(stageName + ": interrupted", 1, e);
            }
            log.println(stageName + ": " + items.size() + " records, " + (items.size() - todo.size()) + " already done, "
                    + todo.size() + " to request (" + cfg.endpoint().concurrency() + " in flight)");
            int threads = cfg.endpoint().concurrency();
            ExecutorService pool = Executors.newFixedThreadPool(threads, r -> {
                Thread t = new Thread(r, "synth-" + stageName);
                t.setDaemon(true);
                return t;
            });
            Semaphore slots = new Semaphore(threads * 2);
            AtomicReference<RuntimeException> fatal = new AtomicReference<>();
            java.util.concurrent.atomic.AtomicInteger failStreak = new java.util.concurrent.atomic.AtomicInteger();
            java.util.concurrent.atomic.AtomicLong finished = new java.util.concurrent.atomic.AtomicLong();
            long every = Math.max(1, todo.size() / 10);
            try {
                for (Work w : todo) {
                    if (fatal.get() != null) break;
                    slots.acquire();
                    pool.execute(() -> {
                        try {
                            if (fatal.get() == null) one(stageName, w, fragments, client, out, rej, stats, failStreak);
                        } catch (RuntimeException e) {
                            fatal.compareAndSet(null, e);
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        } finally {
                            slots.release();
                            long f = finished.incrementAndGet();
                            if (f % every == 0 && f < todo.size())
                                log.println(stageName + ": " + f + "/" + todo.size() + " (" + stats.get("accepted") + " accepted)");
                        }
                    });
                }
                pool.shutdown();
                while (!pool.awaitTermination(1, TimeUnit.SECONDS)) { /* workers finish their records */ }
            } catch (InterruptedException e) {
                pool.shutdownNow();
                Thread.currentThread().interrupt();
                throw new UserError(stageName + ": interrupted", 1, e);
            }
            if (fatal.get() != null) {
                writeStats(stageName, stats, t0);
                throw fatal.get();
            }
        } catch (IOException e) {
            throw new UserError(outFile + ": " + e.getMessage(), 1, e);
        }
        writeStats(stageName, stats, t0);
        Map<String, Long> failed = stats.withPrefix("failed.");
        long nFailed = failed.values().stream().mapToLong(Long::longValue).sum();
        log.println(stageName + ": " + stats.get("accepted") + " accepted, rejected " + stats.withPrefix("rejected.")
                + ", retries " + stats.withPrefix("retry.") + (nFailed > 0 ? ", FAILED " + failed + " (not recorded; rerun to retry them)" : "")
                + " -> " + outFile);
        return nFailed > 0 ? 1 : 0;
    }

    /**
     * One record: request, validate, append to the output or the rejects. {@code failStreak} counts records in a row
     * whose retries ran out; at max(2, concurrency) the server is taken to be down and the stage stops (exit 1) rather
     * than spending every remaining record's retries.
     */
    private void one(String stageName, Work w, Map<String, Templates.Fragment> fragments, Endpoint client, JsonlLog out,
                     JsonlLog rej, Stats stats, java.util.concurrent.atomic.AtomicInteger failStreak) throws InterruptedException {
        String[] msgs = w.tpl().render(w.slots());
        long seed = Long.parseLong(Templates.Hashes.sha256(w.id()).substring(0, 7), 16);   // per-record, < 2^31
        ObjectNode prov = JsonlLog.JSON.createObjectNode().put("stage", stageName).put("model", w.stage().model());
        w.tpl().provenance().forEach((k, v) -> prov.putPOJO(k, v));
        ObjectNode frag = prov.putObject("fragments");
        new java.util.TreeMap<>(fragments).forEach((k, f) -> frag.set(k, JsonlLog.JSON.valueToTree(f.provenance())));
        ObjectNode sampling = JsonlLog.JSON.valueToTree(new java.util.TreeMap<>(w.stage().sampling()));
        sampling.put("seed", seed);
        prov.set("sampling", sampling);
        Endpoint.Reply reply;
        String reason = null, detail = null;
        JsonNode answer = null;
        try {
            reply = client.complete(w.stage(), msgs[0], msgs[1], seed);
            failStreak.set(0);
            prov.put("response_sha256", reply.sha256()).put("prompt_tokens", reply.promptTokens()).put("completion_tokens", reply.completionTokens());
            answer = extractJson(reply.content(), a -> w.tpl().violation(a) == null);
            if (answer == null) {
                reason = "malformed_json";
                detail = Templates.trim(reply.content().strip(), 120);
            } else {
                String v = w.tpl().violation(answer);
                if (v != null) {
                    int dash = v.indexOf(" - ");
                    reason = v.substring(0, dash);
                    detail = v.substring(dash + 3);
                }
            }
        } catch (Endpoint.MalformedResponse e) {
            failStreak.set(0);
            prov.put("response_sha256", e.sha256);
            reason = "malformed_response";
            detail = e.getMessage();
        } catch (Endpoint.Failure e) {
            log.println(stageName + ": " + w.id() + ": " + e.getMessage());
            if (!e.permanent) {                              // counted as failed.*; not recorded, retried by the next run
                if (failStreak.incrementAndGet() >= Math.max(2, cfg.endpoint().concurrency()))
                    throw new UserError(stageName + ": " + failStreak.get() + " records in a row failed after " + cfg.endpoint().maxRetries()
                            + " retries (last: " + e.getMessage() + "); stopping; a rerun resumes where this run stopped", 1, null);
                return;
            }
            failStreak.set(0);
            reason = e.reason;
            detail = Templates.trim(e.getMessage(), 300);
        }
        ObjectNode rec = JsonlLog.JSON.createObjectNode().put("id", w.id()).put("seed_id", w.base().get("seed_id").asText());
        if (reason == null) {
            reason = w.accept().apply(answer, rec);   // answer != null here
            if (reason != null) detail = Templates.trim(answer.toString(), 200);
        }
        if (reason != null) {
            ObjectNode rj = JsonlLog.JSON.createObjectNode().put("id", w.id()).put("seed_id", w.base().get("seed_id").asText())
                    .put("stage", stageName).put("reason", reason);
            if (detail != null) rj.put("detail", detail);
            rj.set("provenance", prov);
            rej.append(rj);
            stats.inc("rejected." + reason);
            return;
        }
        // carry the earlier fields the new record did not set (seed text, discipline, ...), then the provenance chain
        for (var it = w.base().fields(); it.hasNext(); ) {
            var e = it.next();
            if (!rec.has(e.getKey()) && !e.getKey().equals("provenance") && !stageName.equals("refine")) rec.set(e.getKey(), e.getValue());
        }
        if (stageName.equals("refine"))
            for (String f : List.of("question", "branch", "grade_requested", "discipline", "seed_difficulty"))
                if (w.base().has(f)) rec.set(f, w.base().get(f));
        ArrayNode chain = rec.putArray("provenance");
        if (w.base().get("provenance") instanceof ArrayNode prev) chain.addAll(prev);
        chain.add(prov);
        out.append(rec);
        stats.inc("accepted");
    }

    /**
     * The JSON object in a model's message: a reasoning model's {@code <think>...</think>} and Markdown code fences
     * are stripped, then the text from the first '{' to the last '}' must parse. Null when it does not.
     */
    static JsonNode extractJson(String content) { return extractJson(content, a -> true); }

    /**
     * The first complete JSON object in the message that {@code valid} accepts (prose with braces before it, several
     * objects, an object followed by text: each '{' starts a candidate, parsed as one JSON value up to its own end);
     * when none is accepted, the first complete object (so its schema violation is reported); null when there is none.
     */
    static JsonNode extractJson(String content, java.util.function.Predicate<JsonNode> valid) {
        String s = content;
        int think = s.lastIndexOf("</think>");
        if (think >= 0) s = s.substring(think + "</think>".length());
        JsonNode firstObject = null;
        for (int a = s.indexOf('{'); a >= 0; a = s.indexOf('{', a + 1)) {
            JsonNode n;
            try (com.fasterxml.jackson.core.JsonParser p = JsonlLog.JSON.getFactory().createParser(s.substring(a))) {
                n = JsonlLog.JSON.readTree(p);                  // one value; what follows it is not read
            } catch (IOException e) {
                continue;                                       // not a complete JSON value from this brace
            }
            if (n == null || !n.isObject()) continue;
            if (valid.test(n)) return n;
            if (firstObject == null) firstObject = n;
        }
        return firstObject;
    }

    // ------------------------------------------------------------------ helpers

    private List<JsonNode> input(Path file, String producer) {
        if (!Files.exists(file)) throw new UserError(file + ": not found (run the " + producer + " stage first)");
        return JsonlLog.read(file);
    }

    private Templates.Fragment rubric() { return Templates.fragment(templatesDir, "rubric", "tiers", SynthConfig.TIERS); }

    private Templates.Fragment grades() { return Templates.fragment(templatesDir, "grades", "roles", cfg.grades()); }

    private static String rubricText(Templates.Fragment rubric) {
        StringBuilder sb = new StringBuilder();
        for (String t : SynthConfig.TIERS) sb.append("- ").append(t).append(": ").append(rubric.entries().get(t)).append('\n');
        return sb.toString().strip();
    }

    private void writeStats(String stage, Stats s, long t0) {
        double wall = (System.nanoTime() - t0) / 1e9;
        ObjectNode o = JsonlLog.JSON.createObjectNode().put("stage", stage).put("finished_at", Instant.now().toString())
                .put("wall_s", Math.round(wall * 1000) / 1000.0);
        Map<String, Object> counters = new LinkedHashMap<>(s.snapshot());
        o.set("counters", JsonlLog.JSON.valueToTree(counters));
        o.put("requests_per_s", wall > 0 ? Math.round(s.get("requests") / wall * 1000) / 1000.0 : 0);
        try (JsonlLog l = JsonlLog.open(statsFile(work))) {
            o.put("id", stage + "@" + System.nanoTime() + "-" + l.ids().size());
            l.append(o);
        } catch (IOException e) {
            throw new UserError(statsFile(work) + ": " + e.getMessage(), 1, e);
        }
    }

    /** Temp file, fsync, atomic rename, directory fsync. */
    static void writeAtomically(Path file, byte[] bytes) throws IOException {
        Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
        try (var ch = java.nio.channels.FileChannel.open(tmp, java.nio.file.StandardOpenOption.CREATE,
                java.nio.file.StandardOpenOption.TRUNCATE_EXISTING, java.nio.file.StandardOpenOption.WRITE)) {
            var b = java.nio.ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) ch.write(b);
            ch.force(true);
        }
        Files.move(tmp, file, java.nio.file.StandardCopyOption.ATOMIC_MOVE, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        try (var d = java.nio.channels.FileChannel.open(file.toAbsolutePath().getParent(), java.nio.file.StandardOpenOption.READ)) {
            d.force(true);
        }
    }

    static Map<String, Long> count(List<JsonNode> recs, String field) {
        Map<String, Long> m = new HashMap<>();
        for (JsonNode r : recs) m.merge(r.path(field).asText("?"), 1L, Long::sum);
        return m;
    }
}
