package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.AtomicFiles;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.common.UserError;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.RunConfig;
import dev.midtrain.model.OptimizerShard;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.config.Placement;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * A committed step directory opened for reading (see {@link StepDirectories} for the layout). Opening checks the
 * commit marker, the manifest's own hash (recorded in COMMITTED) and the size and SHA-256 of every file it lists,
 * then parses trainer_state.json and the run config saved in it. Every failure names the file.
 */
public final class CommittedStep implements AutoCloseable {
    private final Path dir;
    private final StateFile state;
    private final RunConfig config;
    private final Map<String, String> sha256 = new java.util.HashMap<>();     // manifest: file -> SHA-256
    private final Map<String, Safetensors.Reader> readers = new java.util.HashMap<>();
    private final boolean hashOnRead;
    private ParamLayout[][] layouts;                                        // saved layouts, by [pipeline stage][tensor-parallel rank]
    private Map<String, Integer> stageOf;                                   // tensor name -> the first saved stage holding it

    private CommittedStep(Path dir, StateFile state, RunConfig config, boolean hashOnRead) {
        this.dir = dir;
        this.state = state;
        this.config = config;
        this.hashOnRead = hashOnRead;
    }

    /** Opens and verifies {@code dir}; {@code verifyHashes} false skips re-hashing the files (sizes are still checked). */
    public static CommittedStep open(Path dir, boolean verifyHashes) { return open(dir, verifyHashes, false); }

    /**
     * Opens {@code dir} checking the commit marker, the manifest and every file's size, but hashing (SHA-256
     * against the manifest) only trainer_state.json now and each tensor file when it is first read: a process of a
     * multi-process run verifies (and reads) only the files its ranks need.
     */
    public static CommittedStep openForRanks(Path dir) { return open(dir, false, true); }

    private static CommittedStep open(Path dir, boolean verifyHashes, boolean hashOnRead) {
        if (!Files.isDirectory(dir)) throw new UserError(dir + ": not a checkpoint step directory");
        Path committed = dir.resolve(StepDirectories.COMMITTED);
        if (!Files.isRegularFile(committed))
            throw new UserError(dir + ": not committed (no " + StepDirectories.COMMITTED + "): an interrupted save; use an earlier step");
        String manifestSha = null;
        try {
            for (String line : Files.readAllLines(committed)) if (line.startsWith("manifest_sha256 ")) manifestSha = line.substring(16).trim();
            if (manifestSha == null) throw new UserError(committed + ": corrupt commit marker (no manifest_sha256)");
            Path mf = dir.resolve(StepDirectories.MANIFEST);
            if (!Files.isRegularFile(mf)) throw new UserError(mf + ": missing");
            String got = AtomicFiles.sha256(mf);
            if (!got.equals(manifestSha)) throw new UserError(mf + ": SHA-256 " + got + " does not match the commit marker's " + manifestSha + " (corrupt checkpoint)");
            JsonNode manifest = HfConfig.read(mf);
            JsonNode files = manifest.get("files");
            if (files == null || !files.isObject() || !files.has(StepDirectories.STATE))
                throw new UserError(mf + ": no \"files\" entry for " + StepDirectories.STATE);
            for (Iterator<Map.Entry<String, JsonNode>> it = files.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                Path f = dir.resolve(e.getKey());
                if (!Files.isRegularFile(f)) throw new UserError(f + ": listed in the manifest but missing");
                long size = Files.size(f), want = e.getValue().path("bytes").asLong(-1);
                if (size != want) throw new UserError(f + ": " + size + " bytes, the manifest says " + want + " (truncated or corrupt checkpoint)");
                if (verifyHashes || hashOnRead && e.getKey().equals(StepDirectories.STATE)) {
                    String sha = AtomicFiles.sha256(f), wantSha = e.getValue().path("sha256").asText();
                    if (!sha.equals(wantSha))
                        throw new UserError(f + ": SHA-256 " + sha + " does not match the manifest's " + wantSha + " (corrupt checkpoint)");
                }
            }
            Path sf = dir.resolve(StepDirectories.STATE);
            StateFile state = StateFile.parse(Files.readString(sf), sf);
            RunConfig cfg;
            try {
                cfg = ConfigLoader.fromTree(ConfigLoader.YAML.readTree(state.configYaml()), sf + " (config_yaml)");
            } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                throw new UserError(sf + ": config_yaml is not valid YAML: " + e.getOriginalMessage().split("\n")[0]);
            }
            if (cfg.parallel().tp() != state.tp())
                throw new UserError(sf + ": tp " + state.tp() + " disagrees with config_yaml parallel.tp " + cfg.parallel().tp());
            if (cfg.parallel().dp() != state.dp())
                throw new UserError(sf + ": dp " + state.dp() + " disagrees with config_yaml parallel.dp " + cfg.parallel().dp());
            CommittedStep c = new CommittedStep(dir, state, cfg, hashOnRead);
            for (Iterator<Map.Entry<String, JsonNode>> it = files.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                c.sha256.put(e.getKey(), e.getValue().path("sha256").asText());
            }
            int pp = cfg.parallel().pp();
            for (int t = 0; t < state.tp(); t++)
                for (int q = 0; q < pp; q++)
                    for (int d = 0; d < state.dp(); d++)
                        for (String f : List.of(StepDirectories.modelFile(t, state.tp(), q, pp, d, state.dp()),
                                StepDirectories.optimizerFile(t, state.tp(), q, pp, d, state.dp())))
                            if (!c.sha256.containsKey(f)) throw new UserError(dir.resolve(f) + ": missing (not in the manifest)");
            if (!hashOnRead) {                           // eager: open every reader now (header validation of every file)
                try {
                    for (String f : c.sha256.keySet()) if (f.endsWith(".safetensors")) c.reader(f);
                } catch (RuntimeException e) {
                    c.close();
                    throw e;
                }
            }
            return c;
        } catch (NoSuchFileException e) {
            throw new UserError(e.getFile() + ": missing");
        } catch (IOException e) {
            throw new UserError(dir + ": cannot read checkpoint: " + e.getMessage(), e);
        }
    }

    public Path dir() { return dir; }

    /** Its trainer_state.json: the training state and the run it came from. */
    public StateFile stateFile() { return state; }

    /** The resolved run config the checkpoint was written with. */
    public RunConfig config() { return config; }

    /** Pipeline stages the step was saved with (parallel.pp of its config; 1 before pipelines). */
    public int pp() { return config.parallel().pp(); }

    /** The layout of tensor-parallel rank {@code rank} as saved (a step saved without pipeline stages). */
    public ParamLayout layout(int rank) { return layout(rank, 0); }

    /** The layout of tensor-parallel rank {@code tpRank} of pipeline stage {@code ppRank} as saved. */
    public synchronized ParamLayout layout(int tpRank, int ppRank) {
        int pp = pp();
        if (layouts == null) layouts = new ParamLayout[pp][state.tp()];
        if (layouts[ppRank][tpRank] == null)
            layouts[ppRank][tpRank] = ParamLayout.of(new Placement(config.model(), state.tp(), tpRank),
                    config.optimizer() == null ? null : config.optimizer().weightDecayExclude(),
                    ParamLayout.Stage.of(config.model(), pp, config.parallel().virtualStages(), ppRank));
        return layouts[ppRank][tpRank];
    }

    /**
     * The saved pipeline stage holding tensor {@code name} (the first, for a tied embedding: the last stage's copy
     * holds the same values, its gradient being the sum of both).
     */
    private synchronized int stageOf(String name) {
        if (stageOf == null) {
            Map<String, Integer> m = new java.util.HashMap<>();
            for (int q = pp() - 1; q >= 0; q--) for (ParamLayout.Tensor t : layout(0, q).tensors()) m.put(t.name(), q);
            stageOf = m;
        }
        Integer q = stageOf.get(name);
        if (q == null) throw new UserError(dir + ": no saved stage holds tensor " + name);
        return q;
    }

    /** Loads rank {@code layout.rank()}'s fp32 master weights into {@code dst}. The layout must match the saved one. */
    public void loadParams(ParamLayout layout, HostFloats dst) {
        checkRank(layout);
        checkLength(dst, layout.numel());
        readRange("", layout.rank(), 0, 0, layout.numel(), dst, 0);
    }

    /** Loads rank {@code layout.rank()}'s AdamW moments into {@code m} and {@code v}. */
    public void loadOptimizer(ParamLayout layout, HostFloats m, HostFloats v) {
        checkRank(layout);
        checkLength(m, layout.numel());
        checkLength(v, layout.numel());
        readRange("m.", layout.rank(), 0, 0, layout.numel(), m, 0);
        readRange("v.", layout.rank(), 0, 0, layout.numel(), v, 0);
    }

    private int checkRank(ParamLayout layout) {
        if (layout.tp() != state.tp())
            throw new UserError(dir + ": saved with tensor-parallel degree " + state.tp() + ", cannot load into tp " + layout.tp());
        if (pp() != 1 || !layout.stage().whole(layout.model()))
            throw new IllegalArgumentException(dir + ": saved with " + pp() + " pipeline stages; load a stage through loadRank");
        return layout.rank();
    }

    private static void checkLength(HostFloats h, long n) {
        if (h.numel() < n) throw new IllegalArgumentException("destination holds " + h.numel() + ", needs " + n);
    }

    /**
     * Loads one rank of any layout, resharding when the checkpoint's tp, pp or dp differ: {@code params} gets the
     * rank's whole slab of fp32 master weights ({@code layout.numel()}: its stage's tensors), {@code m} and {@code v}
     * the AdamW moments of its optimizer window {@code w} ({@code w.count()} elements, from index 0). Each tensor
     * comes from the saved stage holding it (by name). With the saved tp, each tensor is read from the saved rank's
     * files where they overlap (only the data-parallel files covering the
     * requested ranges are opened); with another tp each needed tensor is assembled whole from the saved ranks and
     * the rank's slice is cut from it. Copies values only, so the same layout restores bit for bit.
     */
    public void loadRank(ParamLayout layout, OptimizerShard w, HostFloats params, HostFloats m, HostFloats v) {
        checkLength(params, layout.numel());
        checkLength(m, w.count());
        checkLength(v, w.count());
        boolean sameTp = layout.tp() == state.tp();
        for (ParamLayout.Tensor t : layout.tensors()) {
            long[] in = StepDirectories.piece(t, w);                        // the part of t inside the optimizer window
            if (sameTp) {
                int q = stageOf(t.name());
                ParamLayout.Tensor old = layout(layout.rank(), q).get(t.name());
                readRange("", layout.rank(), q, old.offset(), old.offset() + t.numel(), params, t.offset());
                if (in != null) for (String k : List.of("m.", "v."))
                    readRange(k, layout.rank(), q, old.offset() + in[0] - t.offset(), old.offset() + in[1] - t.offset(), k.equals("m.") ? m : v, in[0] - w.start());
                continue;
            }
            for (String k : in == null ? List.of("") : List.of("", "m.", "v.")) {
                try (HostFloats full = assemble(k, t.name()); HostFloats piece = HostFloats.allocate(t.numel())) {
                    takePiece(t, full, piece);
                    if (k.isEmpty()) params.copyFrom(piece, 0, t.offset(), t.numel());
                    else (k.equals("m.") ? m : v).copyFrom(piece, in[0] - t.offset(), in[0] - w.start(), in[1] - in[0]);
                }
            }
        }
    }

    /** The rank's piece of a full tensor (the inverse of {@link Shards#placePiece}). */
    static void takePiece(ParamLayout.Tensor t, HostFloats full, HostFloats piece) {
        switch (t.split()) {
            case REPLICATED -> piece.copyFrom(full, 0, 0, t.numel());
            case ROWS -> piece.copyFrom(full, (long) t.shardIndex() * t.numel(), 0, t.numel());
            case COLUMNS -> {
                long rows = t.shape()[0], cols = t.shape()[1], fullCols = t.fullShape()[1];
                for (long i = 0; i < rows; i++) piece.copyFrom(full, i * fullCols + (long) t.shardIndex() * cols, i * cols, cols);
            }
        }
    }

    /** One full (Hugging Face shaped) tensor of kind "" (weights), "m." or "v.", assembled from the saved ranks. */
    private HostFloats assemble(String kind, String name) {
        int q = stageOf(name);
        ParamLayout.Tensor any = layout(0, q).get(name);
        HostFloats out = HostFloats.allocate(Shards.numel(any.fullShape()));
        boolean[] placed = new boolean[state.tp()];
        try {
            for (int r = 0; r < state.tp(); r++) {
                ParamLayout.Tensor t = layout(r, q).get(name);
                if (placed[t.shardIndex()]) continue;        // a replicated piece (REPLICATED, or a KV head shared by ranks)
                placed[t.shardIndex()] = true;
                try (HostFloats piece = HostFloats.allocate(t.numel())) {
                    readRange(kind, r, q, t.offset(), t.offset() + t.numel(), piece, 0);
                    Shards.placePiece(t, piece, out);
                }
            }
            return out;
        } catch (RuntimeException e) {
            out.close();
            throw e;
        }
    }

    /**
     * Reads elements [lo, hi) of the slab of saved tensor-parallel rank {@code tpRank} of stage {@code ppRank}, of
     * kind "" (weights), "m." or "v.", into {@code dst[dstOff ..]}, from the data-parallel window files that hold them.
     */
    private void readRange(String kind, int tpRank, int ppRank, long lo, long hi, HostFloats dst, long dstOff) {
        ParamLayout l = layout(tpRank, ppRank);
        int pp = pp();
        for (int d = 0; d < state.dp(); d++) {
            OptimizerShard w = StepDirectories.window(l.numel(), state.dp(), d);
            long a = Math.max(lo, w.start()), b = Math.min(hi, w.start() + w.count());
            if (a >= b) continue;
            Safetensors.Reader r = reader(kind.isEmpty() ? StepDirectories.modelFile(tpRank, state.tp(), ppRank, pp, d, state.dp())
                    : StepDirectories.optimizerFile(tpRank, state.tp(), ppRank, pp, d, state.dp()));
            for (ParamLayout.Tensor t : l.tensors()) {
                long[] p = StepDirectories.piece(t, w);
                if (p == null || p[1] <= a || p[0] >= b) continue;
                String name = kind + t.name();
                if (!r.has(name)) throw new UserError(r.file() + ": tensor " + name + " missing");
                Safetensors.TensorInfo info = r.get(name);
                if (info.numel() != p[1] - p[0])
                    throw new UserError(r.file() + ": tensor " + name + " holds " + info.numel() + " elements, the layout puts " + (p[1] - p[0]) + " in this file");
                long x = Math.max(a, p[0]), y = Math.min(b, p[1]);
                r.readF32(info, x - p[0], y - x, dst, dstOff + x - lo);
            }
        }
    }

    /** The reader of a file of this step (opened once; verified against the manifest's SHA-256 first when hashing on read). */
    private synchronized Safetensors.Reader reader(String file) {
        Safetensors.Reader r = readers.get(file);
        if (r != null) return r;
        Path f = dir.resolve(file);
        if (!sha256.containsKey(file)) throw new UserError(f + ": missing (not in the manifest)");
        if (hashOnRead) {
            try {
                String got = AtomicFiles.sha256(f);
                if (!got.equals(sha256.get(file)))
                    throw new UserError(f + ": SHA-256 " + got + " does not match the manifest's " + sha256.get(file) + " (corrupt checkpoint)");
            } catch (IOException e) {
                throw new UserError(f + ": cannot read: " + e.getMessage(), e);
            }
        }
        r = Safetensors.Reader.open(f);
        readers.put(file, r);
        return r;
    }

    /** One full (unsharded, Hugging Face shaped) parameter tensor, assembled from the rank files; the caller closes it. */
    public Safetensors.Source fullTensor(ParamLayout.Tensor full) {
        return new Safetensors.Source(assemble("", full.name()), 0, true);
    }

    @Override
    public synchronized void close() {
        readers.values().forEach(Safetensors.Reader::close);
        readers.clear();
    }
}
