package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.common.UserError;
import dev.midtrain.common.AtomicFiles;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.model.OptimizerShard;
import dev.midtrain.model.ParamLayout;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The step directories of a run: {@code RUN/checkpoints/step_00000100/}, each holding
 * <pre>
 * model.safetensors        fp32 master weights, Hugging Face names (one file per rank: model-tpTT-of-TT-ppPP-of-PP-dpDD-of-DD,
 *                          the rank's data-parallel window of its (tensor-parallel, pipeline stage) slab; see {@link RankState})
 * optimizer.safetensors    AdamW moments: "m.NAME" and "v.NAME", fp32 (optimizer-tpTT-of-TT-ppPP-of-PP-dpDD-of-DD likewise)
 * trainer_state.json       {@link StateFile}
 * manifest.json            size and SHA-256 of every file above
 * COMMITTED                written last: the step and the manifest's SHA-256
 * </pre>
 * and {@code RUN/checkpoints/latest}, the name of the newest committed step.
 *
 * <p>A save is crash-safe: files are written (temp name, fsync, rename) into {@code .tmp-step_N/}, which is
 * fsync'd and renamed to {@code step_N/} (then the parent is fsync'd); COMMITTED is written after that, and the
 * {@code latest} pointer only after COMMITTED. Loading trusts only directories with COMMITTED, so a save killed at
 * any point leaves the previous committed step as the newest. Uncommitted leftovers are removed by the next
 * save's pruning. Several processes commit in two phases ({@link #savePart}).
 */
public final class StepDirectories {
    public static final String COMMITTED = "COMMITTED";
    public static final String LATEST = "latest";
    public static final String MANIFEST = "manifest.json";
    public static final String STATE = "trainer_state.json";
    static final Pattern STEP_DIR = Pattern.compile("step_(\\d{8,})");
    /** Test-only: milliseconds to sleep after each file of a save, so a test can kill a process mid-save. */
    public static final String SLOW_WRITE_PROPERTY = "midtrain.ckpt.testSlowWriteMillis";

    /**
     * One rank's part of a checkpoint in host memory: elements [window.start, window.start + window.count) of
     * tensor-parallel rank {@code layout.rank()}'s slab (fp32 master weights, AdamW m and v), where the window is
     * data-parallel rank {@code dpRank}'s equal share ({@link OptimizerShard#of} with ZeRO on; the whole slab when
     * dp = 1). The buffers hold the window from index 0.
     */
    public record RankState(ParamLayout layout, int ppRank, int pp, int dpRank, int dp, HostFloats params, HostFloats m, HostFloats v) {
        public RankState {
            if (dp < 1 || dpRank < 0 || dpRank >= dp) throw new IllegalArgumentException("dp rank " + dpRank + " of " + dp);
            if (pp < 1 || ppRank < 0 || ppRank >= pp) throw new IllegalArgumentException("pp rank " + ppRank + " of " + pp);
        }

        /** No pipeline: the whole model's slab of one tensor-parallel rank, data-parallel rank {@code dpRank}'s window. */
        public RankState(ParamLayout layout, int dpRank, int dp, HostFloats params, HostFloats m, HostFloats v) { this(layout, 0, 1, dpRank, dp, params, m, v); }

        /** The whole slab of one tensor-parallel rank (dp 1). */
        public RankState(ParamLayout layout, HostFloats params, HostFloats m, HostFloats v) { this(layout, 0, 1, params, m, v); }

        public OptimizerShard window() { return StepDirectories.window(layout.numel(), dp, dpRank); }
    }

    /** The slab window data-parallel rank {@code dpRank} of {@code dp} writes: its ZeRO shard, or everything at dp 1. */
    public static OptimizerShard window(long numel, int dp, int dpRank) { return OptimizerShard.of(numel, dp, dpRank, true); }

    /**
     * Which process of a multi-process run writes this part of a save ({@link #savePart}): process 0 commits.
     *
     * @param timeout how long process 0 waits for the other processes' parts before giving the step up
     */
    public record Part(int process, int processes, java.time.Duration timeout) {
        public static final Part SOLE = new Part(0, 1, java.time.Duration.ZERO);

        public Part {
            if (processes < 1 || process < 0 || process >= processes) throw new IllegalArgumentException("process " + process + " of " + processes);
        }
    }

    /** Called before each file of a save is written (tests inject delays and failures here). */
    @FunctionalInterface
    public interface FileHook {
        void beforeFile(String name) throws IOException;
    }

    private final Path dir;
    private volatile FileHook hook = name -> { };

    public StepDirectories(Path checkpointsDir) { this.dir = checkpointsDir; }

    public static StepDirectories forRun(Path runDir) { return new StepDirectories(runDir.resolve("checkpoints")); }

    public Path dir() { return dir; }

    void setHook(FileHook h) { this.hook = h; }

    public static String stepName(long step) { return String.format("step_%08d", step); }

    public Path stepDir(long step) { return dir.resolve(stepName(step)); }

    public static String modelFile(int rank, int tp) { return modelFile(rank, tp, 0, 1); }

    public static String optimizerFile(int rank, int tp) { return optimizerFile(rank, tp, 0, 1); }

    /** {@code model[-tpTT-of-TT][-dpDD-of-DD].safetensors}: rank (tp, dp)'s window of the fp32 master weights. */
    public static String modelFile(int tpRank, int tp, int dpRank, int dp) { return modelFile(tpRank, tp, 0, 1, dpRank, dp); }

    /** {@code optimizer[-tpTT-of-TT][-dpDD-of-DD].safetensors}: the same window of the AdamW moments. */
    public static String optimizerFile(int tpRank, int tp, int dpRank, int dp) { return optimizerFile(tpRank, tp, 0, 1, dpRank, dp); }

    /** {@code model[-tpTT-of-TT][-ppPP-of-PP][-dpDD-of-DD].safetensors}: rank (tp, pp, dp)'s window of its stage's fp32 master weights. */
    public static String modelFile(int tpRank, int tp, int ppRank, int pp, int dpRank, int dp) { return fileName("model", tpRank, tp, ppRank, pp, dpRank, dp); }

    /** {@code optimizer[-tpTT-of-TT][-ppPP-of-PP][-dpDD-of-DD].safetensors}: the same window of the AdamW moments. */
    public static String optimizerFile(int tpRank, int tp, int ppRank, int pp, int dpRank, int dp) { return fileName("optimizer", tpRank, tp, ppRank, pp, dpRank, dp); }

    private static String fileName(String base, int tpRank, int tp, int ppRank, int pp, int dpRank, int dp) {
        return base + (tp == 1 ? "" : String.format("-tp%02d-of-%02d", tpRank, tp)) + (pp == 1 ? "" : String.format("-pp%02d-of-%02d", ppRank, pp))
                + (dp == 1 ? "" : String.format("-dp%02d-of-%02d", dpRank, dp)) + ".safetensors";
    }

    /** The file in which process {@code process} lists what it wrote (size and SHA-256 per file) for process 0. */
    public static String partFile(int process, int processes) { return String.format("part-%05d-of-%05d.json", process, processes); }

    /** Steps whose directory holds COMMITTED, ascending. */
    public List<Long> committedSteps() {
        TreeSet<Long> steps = new TreeSet<>();
        if (!Files.isDirectory(dir)) return List.of();
        try (Stream<Path> s = Files.list(dir)) {
            s.forEach(p -> {
                Matcher m = STEP_DIR.matcher(p.getFileName().toString());
                if (m.matches() && Files.isRegularFile(p.resolve(COMMITTED))) steps.add(Long.parseLong(m.group(1)));
            });
        } catch (IOException e) {
            throw new UserError(dir + ": cannot list checkpoints: " + e.getMessage(), 1, e);
        }
        return new ArrayList<>(steps);
    }

    /** The newest committed step directory (by scanning; the latest pointer is for people and tools). */
    public Optional<Path> newestCommitted() {
        List<Long> s = committedSteps();
        return s.isEmpty() ? Optional.empty() : Optional.of(stepDir(s.get(s.size() - 1)));
    }

    /**
     * Writes {@code state} and the ranks' tensors as step {@code state.step()}, commits it, moves the latest
     * pointer and prunes (keep the newest {@code keepLast} plus every step divisible by {@code keepEvery} > 0).
     * {@code ranks} must hold every rank (tp x pp x dp) of the state. On failure nothing is published and the exception
     * propagates.
     */
    public Path save(StateFile state, List<RankState> ranks, int keepLast, int keepEvery) throws IOException {
        return savePart(state, ranks, Part.SOLE, keepLast, keepEvery);
    }

    /**
     * One process's part of a save (two-phase commit across the processes of a run; {@link Part#SOLE} for one).
     * Every process writes the files of its own ranks into {@code .tmp-step_N/} (each fsync'd and renamed into
     * place), then its part file listing their sizes and SHA-256 (the vote: written last, fsync'd). Process 0 also
     * writes trainer_state.json, waits until every process's part is there (at most {@code part.timeout()}; a
     * process that failed writes a {@code .failed} part instead), and only then writes manifest.json (every file
     * of every rank), renames the directory to {@code step_N/}, writes COMMITTED and the latest pointer, and
     * prunes. A step some process did not finish is never published. Returns the committed directory (process
     * 0), or the temporary directory (other processes: the commit is process 0's).
     */
    public Path savePart(StateFile state, List<RankState> ranks, Part part, int keepLast, int keepEvery) throws IOException {
        int tp = state.tp(), dp = state.dp(), pp = ranks.isEmpty() ? 1 : ranks.get(0).pp();
        java.util.Set<Integer> seen = new java.util.HashSet<>();
        for (RankState r : ranks) {
            if (r.layout().tp() != tp || r.dp() != dp || r.pp() != pp)
                throw new IllegalArgumentException("rank state of tp " + r.layout().tp() + " x pp " + r.pp() + " x dp " + r.dp() + ", the state says tp " + tp
                        + " x pp " + pp + " x dp " + dp);
            if (!seen.add((r.ppRank() * dp + r.dpRank()) * tp + r.layout().rank()))
                throw new IllegalArgumentException("rank given twice: tp " + r.layout().rank() + " pp " + r.ppRank() + " dp " + r.dpRank());
        }
        if (part.processes() == 1 && seen.size() != tp * dp * pp)
            throw new IllegalArgumentException("state says tp " + tp + " x pp " + pp + " x dp " + dp + ", " + ranks.size() + " rank states given");
        boolean sole = part.processes() == 1, lead = part.process() == 0;
        Files.createDirectories(dir);
        String name = stepName(state.step());
        Path tmp = dir.resolve(".tmp-" + name), fin = dir.resolve(name);
        if (sole) AtomicFiles.deleteTree(tmp);       // several processes: process 0 cleared leftovers at start-up
        Files.createDirectories(tmp);
        long slow = Long.getLong(SLOW_WRITE_PROPERTY, 0L);
        ObjectNode files = JsonNodeFactory.instance.objectNode();
        try {
            for (RankState r : ranks) {
                ParamLayout l = r.layout();
                OptimizerShard w = r.window();
                String mf = modelFile(l.rank(), tp, r.ppRank(), pp, r.dpRank(), dp);
                writeFile(tmp, mf, files, slow, out -> Safetensors.write(out, tensors(l, w, "", r.params()), metadata(r, "model")));
                String of = optimizerFile(l.rank(), tp, r.ppRank(), pp, r.dpRank(), dp);
                List<Safetensors.OutTensor> opt = new ArrayList<>(tensors(l, w, "m.", r.m()));
                opt.addAll(tensors(l, w, "v.", r.v()));
                writeFile(tmp, of, files, slow, out -> Safetensors.write(out, opt, metadata(r, "adamw")));
            }
            if (lead) {
                String json = state.toJson();
                writeFile(tmp, STATE, files, slow, out -> out.write(java.nio.ByteBuffer.wrap(json.getBytes(java.nio.charset.StandardCharsets.UTF_8))));
            }
            if (!sole) {
                ObjectNode vote = JsonNodeFactory.instance.objectNode();
                vote.put("process", part.process()).put("step", state.step()).set("files", files);
                writeVote(tmp, partFile(part.process(), part.processes()), HfConfig.toText(vote));
                if (!lead) return tmp;
                for (int p = 1; p < part.processes(); p++) files.setAll((ObjectNode) awaitPart(tmp, p, part).get("files"));
            }
            ObjectNode manifest = JsonNodeFactory.instance.objectNode();
            manifest.put("format", "midtrain-manifest/1");
            manifest.put("step", state.step());
            manifest.put("tp", tp).put("dp", dp).put("pp", pp).put("processes", part.processes());
            manifest.set("files", files);
            hook.beforeFile(MANIFEST);
            AtomicFiles.Written mw = AtomicFiles.writeString(tmp.resolve(MANIFEST), HfConfig.toText(manifest));
            AtomicFiles.fsyncDir(tmp);
            if (Files.exists(fin)) {   // an uncommitted leftover of a killed save (or an older lineage's step): replace it
                Path trash = dir.resolve(".trash-" + name + "-" + System.nanoTime());
                Files.move(fin, trash);
                AtomicFiles.deleteTree(trash);
            }
            AtomicFiles.publish(tmp, fin);
            hook.beforeFile(COMMITTED);
            sleep(slow);
            AtomicFiles.writeString(fin.resolve(COMMITTED), "step " + state.step() + "\nmanifest_sha256 " + mw.sha256() + "\n");
        } catch (IOException | RuntimeException e) {
            if (sole || lead) {
                try { AtomicFiles.deleteTree(tmp); } catch (IOException ignored) { }
            } else {                                     // tell process 0 at once rather than letting it wait out the timeout
                try {
                    AtomicFiles.writeString(tmp.resolve(partFile(part.process(), part.processes()) + ".failed"), e + "\n");
                } catch (IOException ignored) { }
            }
            throw e;
        }
        AtomicFiles.writeString(dir.resolve(LATEST), name + "\n");
        prune(keepLast, keepEvery, sole);
        return fin;
    }

    /**
     * Writes a process's part file (its vote) last. The directory is fsync'd before the vote becomes visible, and
     * never touched after: from the rename on, process 0 may publish (rename) the directory at any moment, and it
     * fsyncs the directory itself before it does, which makes the vote's own entry durable.
     */
    private static void writeVote(Path tmp, String partName, String text) throws IOException {
        AtomicFiles.fsyncDir(tmp);
        Path staged = tmp.resolve(partName + ".tmp"), vote = tmp.resolve(partName);
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(staged,
                java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.TRUNCATE_EXISTING,
                java.nio.file.StandardOpenOption.WRITE)) {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(text.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            while (b.hasRemaining()) ch.write(b);
            ch.force(true);
        }
        Files.move(staged, vote, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    /** Process 0's wait for process {@code p}'s part file; a failed part or the timeout gives the step up. */
    private JsonNode awaitPart(Path tmp, int p, Part part) throws IOException {
        Path f = tmp.resolve(partFile(p, part.processes())), failed = tmp.resolve(partFile(p, part.processes()) + ".failed");
        long deadline = System.nanoTime() + part.timeout().toNanos();
        while (!Files.exists(f)) {
            if (Files.exists(failed))
                throw new IOException("process " + p + " failed to write its part: " + Files.readString(failed).trim());
            if (System.nanoTime() > deadline)
                throw new IOException("process " + p + " did not finish its part of " + tmp.getFileName() + " within " + part.timeout().toSeconds() + " s");
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("interrupted while waiting for process " + p);
            }
        }
        JsonNode n = HfConfig.read(f);
        if (n.path("step").asLong(-1) != parseStep(tmp) || !n.path("files").isObject())
            throw new IOException(f + ": not a part of " + tmp.getFileName());
        return n;
    }

    private static long parseStep(Path tmp) {
        Matcher m = STEP_DIR.matcher(tmp.getFileName().toString().substring(".tmp-".length()));
        return m.matches() ? Long.parseLong(m.group(1)) : -1;
    }

    /**
     * Removes every uncommitted leftover ({@code .tmp-step_*}, {@code .trash-step_*}); process 0 of a multi-process run
     * calls it at start-up, before any process can write (writing starts after the first step's collectives).
     */
    public void removeUncommitted() throws IOException {
        if (!Files.isDirectory(dir)) return;
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : s.toList()) {
                String n = p.getFileName().toString();
                if (n.startsWith(".tmp-step_") || n.startsWith(".trash-step_")) AtomicFiles.deleteTree(p);
            }
        }
    }

    private void writeFile(Path tmp, String name, ObjectNode files, long slow, AtomicFiles.Body body) throws IOException {
        hook.beforeFile(name);
        AtomicFiles.Written w = AtomicFiles.write(tmp.resolve(name), body);
        files.putObject(name).put("bytes", w.bytes()).put("sha256", w.sha256());
        sleep(slow);
    }

    private static void sleep(long ms) throws IOException {
        if (ms <= 0) return;
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("checkpoint write interrupted");
        }
    }

    /**
     * The pieces of the layout's tensors inside window {@code w} (src holds the window from index 0): a tensor
     * wholly inside keeps its rank shape; one cut by the window's edge is stored flat ([elements]), in slab order.
     */
    static List<Safetensors.OutTensor> tensors(ParamLayout layout, OptimizerShard w, String prefix, HostFloats src) {
        if (src.numel() < w.count())
            throw new IllegalArgumentException("buffer holds " + src.numel() + " floats, the window needs " + w.count());
        List<Safetensors.OutTensor> out = new ArrayList<>();
        for (ParamLayout.Tensor t : layout.tensors()) {
            long[] piece = piece(t, w);
            if (piece == null) continue;
            long[] shape = piece[1] - piece[0] == t.numel() ? Shards.toLong(t.shape()) : new long[]{piece[1] - piece[0]};
            out.add(Safetensors.OutTensor.of(prefix + t.name(), DType.F32, shape, src, piece[0] - w.start()));
        }
        return out;
    }

    /** [lo, hi) slab range of tensor {@code t} inside window {@code w}, or null when they do not meet. */
    static long[] piece(ParamLayout.Tensor t, OptimizerShard w) {
        long lo = Math.max(t.offset(), w.start()), hi = Math.min(t.offset() + t.numel(), w.start() + w.count());
        return hi > lo ? new long[]{lo, hi} : null;
    }

    private static Map<String, String> metadata(RankState r, String content) {
        Map<String, String> m = new java.util.HashMap<>(Map.of("format", "pt", "midtrain_content", content, "midtrain_tp_rank", Integer.toString(r.layout().rank()),
                "midtrain_tp_size", Integer.toString(r.layout().tp()), "midtrain_dp_rank", Integer.toString(r.dpRank()),
                "midtrain_dp_size", Integer.toString(r.dp()), "midtrain_window", r.window().start() + "," + r.window().count()));
        if (r.pp() > 1) { m.put("midtrain_pp_rank", Integer.toString(r.ppRank())); m.put("midtrain_pp_size", Integer.toString(r.pp())); }
        return m;
    }

    /**
     * Deletes committed steps other than the newest {@code keepLast} and those divisible by {@code keepEvery}
     * (when > 0), and every uncommitted or temporary directory. The step {@code latest} names is always kept.
     */
    public void prune(int keepLast, int keepEvery) throws IOException { prune(keepLast, keepEvery, true); }

    /**
     * As {@link #prune(int, int)}; with {@code allTemporary} false (several processes write), only temporary
     * directories of steps older than the newest committed one are removed: a newer one may be another process's
     * save in progress.
     */
    public void prune(int keepLast, int keepEvery, boolean allTemporary) throws IOException {
        if (keepLast < 1) throw new IllegalArgumentException("keepLast " + keepLast);
        List<Long> committed = committedSteps();
        TreeSet<Long> keep = new TreeSet<>(committed.subList(Math.max(0, committed.size() - keepLast), committed.size()));
        if (keepEvery > 0) for (long s : committed) if (s % keepEvery == 0) keep.add(s);
        String latest = readLatest();
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : s.toList()) {
                String n = p.getFileName().toString();
                Matcher m = STEP_DIR.matcher(n);
                boolean drop;
                if (m.matches()) drop = !keep.contains(Long.parseLong(m.group(1))) && !n.equals(latest);
                else if (n.startsWith(".tmp-step_") && !allTemporary) {
                    Matcher t = STEP_DIR.matcher(n.substring(".tmp-".length()));
                    drop = t.matches() && !committed.isEmpty() && Long.parseLong(t.group(1)) < committed.get(committed.size() - 1);
                } else drop = n.startsWith(".tmp-step_") || n.startsWith(".trash-step_");
                if (drop) AtomicFiles.deleteTree(p);
            }
        }
        AtomicFiles.fsyncDir(dir);
    }

    /** The step directory name the latest pointer holds, or null. */
    public String readLatest() {
        try {
            Path p = dir.resolve(LATEST);
            return Files.exists(p) ? Files.readString(p).trim() : null;
        } catch (IOException e) {
            return null;
        }
    }
}
