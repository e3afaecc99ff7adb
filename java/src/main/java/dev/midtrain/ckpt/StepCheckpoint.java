package dev.midtrain.ckpt;

import dev.midtrain.common.AtomicFiles;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.common.UserError;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.RunConfig;
import dev.midtrain.model.ParamLayout;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * A committed step directory opened for reading (see {@link CheckpointStore} for the layout). Opening checks the
 * commit marker, the manifest's own hash (recorded in COMMITTED) and the size and SHA-256 of every file it lists,
 * then parses trainer_state.json and the run config saved in it. Every failure names the file.
 */
public final class StepCheckpoint implements AutoCloseable {
    private final Path dir;
    private final TrainerState state;
    private final RunConfig config;
    private final List<Safetensors.Reader> model = new ArrayList<>(), optimizer = new ArrayList<>();

    private StepCheckpoint(Path dir, TrainerState state, RunConfig config) {
        this.dir = dir;
        this.state = state;
        this.config = config;
    }

    /** Opens and verifies {@code dir}; {@code verifyHashes} false skips re-hashing the files (sizes are still checked). */
    public static StepCheckpoint open(Path dir, boolean verifyHashes) {
        if (!Files.isDirectory(dir)) throw new UserError(dir + ": not a checkpoint step directory");
        Path committed = dir.resolve(CheckpointStore.COMMITTED);
        if (!Files.isRegularFile(committed))
            throw new UserError(dir + ": not committed (no " + CheckpointStore.COMMITTED + "): an interrupted save; use an earlier step");
        String manifestSha = null;
        try {
            for (String line : Files.readAllLines(committed)) if (line.startsWith("manifest_sha256 ")) manifestSha = line.substring(16).trim();
            if (manifestSha == null) throw new UserError(committed + ": corrupt commit marker (no manifest_sha256)");
            Path mf = dir.resolve(CheckpointStore.MANIFEST);
            if (!Files.isRegularFile(mf)) throw new UserError(mf + ": missing");
            String got = AtomicFiles.sha256(mf);
            if (!got.equals(manifestSha)) throw new UserError(mf + ": SHA-256 " + got + " does not match the commit marker's " + manifestSha + " (corrupt checkpoint)");
            JsonNode manifest = HfConfig.read(mf);
            JsonNode files = manifest.get("files");
            if (files == null || !files.isObject() || !files.has(CheckpointStore.STATE))
                throw new UserError(mf + ": no \"files\" entry for " + CheckpointStore.STATE);
            for (Iterator<Map.Entry<String, JsonNode>> it = files.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                Path f = dir.resolve(e.getKey());
                if (!Files.isRegularFile(f)) throw new UserError(f + ": listed in the manifest but missing");
                long size = Files.size(f), want = e.getValue().path("bytes").asLong(-1);
                if (size != want) throw new UserError(f + ": " + size + " bytes, the manifest says " + want + " (truncated or corrupt checkpoint)");
                if (verifyHashes) {
                    String sha = AtomicFiles.sha256(f), wantSha = e.getValue().path("sha256").asText();
                    if (!sha.equals(wantSha))
                        throw new UserError(f + ": SHA-256 " + sha + " does not match the manifest's " + wantSha + " (corrupt checkpoint)");
                }
            }
            Path sf = dir.resolve(CheckpointStore.STATE);
            TrainerState state = TrainerState.parse(Files.readString(sf), sf);
            RunConfig cfg;
            try {
                cfg = ConfigLoader.fromTree(ConfigLoader.YAML.readTree(state.configYaml()), sf + " (config_yaml)");
            } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                throw new UserError(sf + ": config_yaml is not valid YAML: " + e.getOriginalMessage().split("\n")[0]);
            }
            if (cfg.parallel().tp() != state.tp())
                throw new UserError(sf + ": tp " + state.tp() + " disagrees with config_yaml parallel.tp " + cfg.parallel().tp());
            StepCheckpoint c = new StepCheckpoint(dir, state, cfg);
            try {
                for (int r = 0; r < state.tp(); r++) {
                    c.model.add(Safetensors.Reader.open(dir.resolve(CheckpointStore.modelFile(r, state.tp()))));
                    c.optimizer.add(Safetensors.Reader.open(dir.resolve(CheckpointStore.optimizerFile(r, state.tp()))));
                }
            } catch (RuntimeException e) {
                c.close();
                throw e;
            }
            return c;
        } catch (NoSuchFileException e) {
            throw new UserError(e.getFile() + ": missing");
        } catch (IOException e) {
            throw new UserError(dir + ": cannot read checkpoint: " + e.getMessage(), e);
        }
    }

    public Path dir() { return dir; }

    public TrainerState state() { return state; }

    /** The resolved run config the checkpoint was written with. */
    public RunConfig config() { return config; }

    /** The layout of tensor-parallel rank {@code rank} as saved. */
    public ParamLayout layout(int rank) {
        return ParamLayout.of(config.model(), state.tp(), rank, config.optimizer() == null ? null : config.optimizer().weightDecayExclude());
    }

    /** Loads rank {@code layout.rank()}'s fp32 master weights into {@code dst}. The layout must match the saved one. */
    public void loadParams(ParamLayout layout, HostFloats dst) {
        load(model.get(checkRank(layout)), layout, "", dst);
    }

    /** Loads rank {@code layout.rank()}'s AdamW moments into {@code m} and {@code v}. */
    public void loadOptimizer(ParamLayout layout, HostFloats m, HostFloats v) {
        Safetensors.Reader r = optimizer.get(checkRank(layout));
        load(r, layout, "m.", m);
        load(r, layout, "v.", v);
    }

    private int checkRank(ParamLayout layout) {
        if (layout.tp() != state.tp())
            throw new UserError(dir + ": saved with tensor-parallel degree " + state.tp() + ", cannot load into tp " + layout.tp());
        return layout.rank();
    }

    private static void load(Safetensors.Reader r, ParamLayout layout, String prefix, HostFloats dst) {
        if (dst.numel() < layout.numel()) throw new IllegalArgumentException("destination holds " + dst.numel() + ", layout needs " + layout.numel());
        for (ParamLayout.Tensor t : layout.tensors()) {
            String name = prefix + t.name();
            if (!r.has(name)) throw new UserError(r.file() + ": tensor " + name + " missing");
            Shards.readWhole(new Shards.Ref(r, r.get(name)), t, dst, 0);
        }
        int expected = layout.tensors().size();
        long have = r.tensors().keySet().stream().filter(n -> n.startsWith(prefix) && (!prefix.isEmpty() || !n.startsWith("m.") && !n.startsWith("v."))).count();
        if (have != expected) throw new UserError(r.file() + ": holds " + have + " " + (prefix.isEmpty() ? "parameter" : prefix + "*") + " tensors, the layout has " + expected);
    }

    /** One full (unsharded, Hugging Face shaped) parameter tensor, assembled from the rank files; the caller closes it. */
    public Safetensors.Source fullTensor(ParamLayout.Tensor full) {
        HostFloats out = HostFloats.allocate(Shards.numel(full.fullShape()));
        boolean[] placed = new boolean[state.tp()];
        try {
            for (int r = 0; r < state.tp(); r++) {
                ParamLayout.Tensor t = layout(r).get(full.name());
                if (placed[t.shardIndex()]) continue;        // a replicated piece (REPLICATED, or a KV head shared by ranks)
                placed[t.shardIndex()] = true;
                Safetensors.Reader rd = model.get(r);
                if (!rd.has(t.name())) throw new UserError(rd.file() + ": tensor " + t.name() + " missing");
                Shards.Ref ref = new Shards.Ref(rd, rd.get(t.name()));
                Shards.checkShape(ref, t.shape(), "tensor-parallel rank " + r);
                if (t.split() == ParamLayout.Split.COLUMNS) {
                    try (HostFloats piece = HostFloats.allocate(t.numel())) {
                        rd.readF32(ref.info(), 0, t.numel(), piece, 0);
                        Shards.placePiece(t, piece, out);
                    }
                } else {
                    rd.readF32(ref.info(), 0, t.numel(), out, (long) t.shardIndex() * t.numel());
                }
            }
            return new Safetensors.Source(out, 0, true);
        } catch (RuntimeException e) {
            out.close();
            throw e;
        }
    }

    @Override
    public void close() {
        model.forEach(Safetensors.Reader::close);
        optimizer.forEach(Safetensors.Reader::close);
    }
}
