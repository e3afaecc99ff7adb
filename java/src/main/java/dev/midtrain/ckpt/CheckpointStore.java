package dev.midtrain.ckpt;

import dev.midtrain.common.UserError;

import dev.midtrain.common.AtomicFiles;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
 * model.safetensors        fp32 master weights, Hugging Face names (tp > 1: model-tp{r}-of-{tp}.safetensors, rank shapes)
 * optimizer.safetensors    AdamW moments: "m.NAME" and "v.NAME", fp32 (tp > 1: optimizer-tp{r}-of-{tp}.safetensors)
 * trainer_state.json       {@link TrainerState}
 * manifest.json            size and SHA-256 of every file above
 * COMMITTED                written last: the step and the manifest's SHA-256
 * </pre>
 * and {@code RUN/checkpoints/latest}, the name of the newest committed step.
 *
 * <p>A save is crash-safe: files are written (temp name, fsync, rename) into {@code .tmp-step_N/}, which is
 * fsync'd and renamed to {@code step_N/} (then the parent is fsync'd); COMMITTED is written after that, and the
 * {@code latest} pointer only after COMMITTED. Loading trusts only directories with COMMITTED, so a save killed at
 * any point leaves the previous committed step as the newest. Uncommitted leftovers are removed by the next
 * save's pruning.
 */
public final class CheckpointStore {
    public static final String COMMITTED = "COMMITTED";
    public static final String LATEST = "latest";
    public static final String MANIFEST = "manifest.json";
    public static final String STATE = "trainer_state.json";
    static final Pattern STEP_DIR = Pattern.compile("step_(\\d{8,})");
    /** Test-only: milliseconds to sleep after each file of a save, so a test can kill a process mid-save. */
    public static final String SLOW_WRITE_PROPERTY = "midtrain.ckpt.testSlowWriteMillis";

    /** One tensor-parallel rank's state in host memory: fp32 params, AdamW m and v, all laid out by {@code layout}. */
    public record RankState(ParamLayout layout, HostFloats params, HostFloats m, HostFloats v) {}

    /** Called before each file of a save is written (tests inject delays and failures here). */
    @FunctionalInterface
    public interface FileHook {
        void beforeFile(String name) throws IOException;
    }

    private final Path dir;
    private volatile FileHook hook = name -> { };

    public CheckpointStore(Path checkpointsDir) { this.dir = checkpointsDir; }

    public static CheckpointStore forRun(Path runDir) { return new CheckpointStore(runDir.resolve("checkpoints")); }

    public Path dir() { return dir; }

    void setHook(FileHook h) { this.hook = h; }

    public static String stepName(long step) { return String.format("step_%08d", step); }

    public Path stepDir(long step) { return dir.resolve(stepName(step)); }

    public static String modelFile(int rank, int tp) {
        return tp == 1 ? "model.safetensors" : String.format("model-tp%02d-of-%02d.safetensors", rank, tp);
    }

    public static String optimizerFile(int rank, int tp) {
        return tp == 1 ? "optimizer.safetensors" : String.format("optimizer-tp%02d-of-%02d.safetensors", rank, tp);
    }

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
     * On failure nothing is published and the exception propagates.
     */
    public Path save(TrainerState state, List<RankState> ranks, int keepLast, int keepEvery) throws IOException {
        int tp = ranks.size();
        if (tp != state.tp()) throw new IllegalArgumentException("state says tp " + state.tp() + ", " + tp + " rank states given");
        Files.createDirectories(dir);
        String name = stepName(state.step());
        Path tmp = dir.resolve(".tmp-" + name), fin = dir.resolve(name);
        AtomicFiles.deleteTree(tmp);
        Files.createDirectories(tmp);
        long slow = Long.getLong(SLOW_WRITE_PROPERTY, 0L);
        ObjectNode files = JsonNodeFactory.instance.objectNode();
        try {
            for (int i = 0; i < tp; i++) {
                RankState r = ranks.get(i);
                if (r.layout().tp() != tp || r.layout().rank() != i)
                    throw new IllegalArgumentException("rank states must be in rank order 0.." + (tp - 1));
                String mf = modelFile(r.layout().rank(), tp);
                writeFile(tmp, mf, files, slow, out -> Safetensors.write(out, tensors(r.layout(), "", r.params()), metadata(r.layout(), "model")));
                String of = optimizerFile(r.layout().rank(), tp);
                List<Safetensors.OutTensor> opt = new ArrayList<>(tensors(r.layout(), "m.", r.m()));
                opt.addAll(tensors(r.layout(), "v.", r.v()));
                writeFile(tmp, of, files, slow, out -> Safetensors.write(out, opt, metadata(r.layout(), "adamw")));
            }
            String json = state.toJson();
            writeFile(tmp, STATE, files, slow, out -> out.write(java.nio.ByteBuffer.wrap(json.getBytes(java.nio.charset.StandardCharsets.UTF_8))));
            ObjectNode manifest = JsonNodeFactory.instance.objectNode();
            manifest.put("format", "midtrain-manifest/1");
            manifest.put("step", state.step());
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
            try { AtomicFiles.deleteTree(tmp); } catch (IOException ignored) { }
            throw e;
        }
        AtomicFiles.writeString(dir.resolve(LATEST), name + "\n");
        prune(keepLast, keepEvery);
        return fin;
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

    static List<Safetensors.OutTensor> tensors(ParamLayout layout, String prefix, HostFloats src) {
        if (src.numel() < layout.numel())
            throw new IllegalArgumentException("slab holds " + src.numel() + " floats, layout needs " + layout.numel());
        List<Safetensors.OutTensor> out = new ArrayList<>();
        for (ParamLayout.Tensor t : layout.tensors())
            out.add(Safetensors.OutTensor.of(prefix + t.name(), DType.F32, Shards.toLong(t.shape()), src, t.offset()));
        return out;
    }

    private static Map<String, String> metadata(ParamLayout l, String content) {
        return Map.of("format", "pt", "midtrain_content", content, "midtrain_tp_rank", Integer.toString(l.rank()),
                "midtrain_tp_size", Integer.toString(l.tp()));
    }

    /**
     * Deletes committed steps other than the newest {@code keepLast} and those divisible by {@code keepEvery}
     * (when > 0), and every uncommitted or temporary directory. The step {@code latest} names is always kept.
     */
    public void prune(int keepLast, int keepEvery) throws IOException {
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
                else drop = n.startsWith(".tmp-step_") || n.startsWith(".trash-step_");
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
