package dev.midtrain.ckpt;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.common.UserError;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.kernels.HostFloats;
import dev.midtrain.model.OptimizerShard;
import dev.midtrain.model.ParamLayout;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The one way a command gets a model from disk: {@code generate}, {@code eval}, {@code serve} and
 * {@code train --init-from} all open their directory here. Detects what the directory is,
 * <ul>
 *   <li>a committed step directory ({@code RUN/checkpoints/step_N} with {@code COMMITTED}),</li>
 *   <li>a run directory (its newest committed step), or</li>
 *   <li>a Hugging Face checkpoint ({@code config.json} in either transformers layout, read by {@link HfConfig},
 *       plus {@code model.safetensors} or an index of shards),</li>
 * </ul>
 * gives its {@link ModelConfig}, and loads its weights as fp32, whole or sliced for a tensor-parallel rank.
 * Opening reads only the config (a step's state file, a Hugging Face config.json); weights are read by the load calls.
 *
 * @param kind      what {@code dir} is
 * @param dir       the step directory or Hugging Face directory (a run directory resolved to its newest step)
 * @param model     the model's architecture
 * @param hfConfig  the Hugging Face config.json as read (HF), or the one the step's run was initialized from (may be null)
 */
public record ModelSource(Kind kind, Path dir, ModelConfig model, JsonNode hfConfig) {
    public enum Kind { STEP, HF }

    /** Detects and opens {@code path}; one line naming the path when it is none of the three. */
    public static ModelSource open(Path path) {
        if (Files.isRegularFile(path.resolve(StepDirectories.COMMITTED))) return step(path);
        if (Files.isDirectory(path.resolve("checkpoints")) && !Files.exists(path.resolve(HfCheckpoint.CONFIG)))
            return step(StepDirectories.forRun(path).newestCommitted()
                    .orElseThrow(() -> new UserError(path + ": run directory has no committed checkpoint")));
        if (Files.isRegularFile(path.resolve(HfCheckpoint.CONFIG))) {
            JsonNode j = HfConfig.read(path.resolve(HfCheckpoint.CONFIG));
            return new ModelSource(Kind.HF, path, HfConfig.modelConfig(path.resolve(HfCheckpoint.CONFIG), j), j);
        }
        if (!Files.exists(path)) throw new UserError(path + ": not found");
        if (!Files.isDirectory(path)) throw new UserError(path + ": not a directory (expected a step, run or Hugging Face checkpoint directory)");
        throw new UserError(path + ": neither a committed step directory (no COMMITTED), a run directory (no checkpoints/) "
                + "nor a Hugging Face checkpoint (no config.json)");
    }

    private static ModelSource step(Path dir) {
        try (CommittedStep ck = CommittedStep.open(dir, false)) {
            return new ModelSource(Kind.STEP, dir, ck.config().model(), ck.stateFile().hfConfig());
        }
    }

    /** Where {@code model} differs from the run's model {@code m}: one line naming this source and every field. */
    public void requireMatches(ModelConfig m) {
        List<String> mm = HfConfig.mismatches(model, m);
        if (!mm.isEmpty()) {
            Path what = kind == Kind.HF ? dir.resolve(HfCheckpoint.CONFIG) : dir;
            throw new UserError(what + ": checkpoint does not match the run's model config: " + String.join("; ", mm));
        }
    }

    /**
     * Checks, without reading tensor data, that the weights are there with the shapes of {@link #model} (Hugging Face:
     * the safetensors headers; a step: its manifest, checked when opened), so a bad checkpoint is refused before a
     * command creates anything.
     */
    public void checkTensors() {
        if (kind == Kind.HF) try (HfCheckpoint hf = HfCheckpoint.open(dir)) { hf.checkTensors(ParamLayout.of(model)); }
    }

    /** All weights, fp32, in the unsharded layout of {@link #model} (step checkpoints: SHA-256 verified). */
    public HostFloats loadFull() {
        ParamLayout layout = ParamLayout.of(model);
        HostFloats params = HostFloats.allocate(layout.numel());
        try {
            loadInto(layout, params, true);
            return params;
        } catch (RuntimeException e) {
            params.close();
            throw e;
        }
    }

    /**
     * Loads the weights of {@code layout} (a tensor-parallel rank's slices, any tp) into {@code dst} at its offsets.
     * Fails naming the file and tensor on a missing tensor, a shape mismatch or a non-finite value.
     */
    public void loadInto(ParamLayout layout, HostFloats dst) { loadInto(layout, dst, true); }

    private void loadInto(ParamLayout layout, HostFloats dst, boolean verify) {
        if (kind == Kind.HF) {
            try (HfCheckpoint hf = HfCheckpoint.open(dir)) { hf.loadInto(layout, dst); }
            return;
        }
        try (CommittedStep ck = CommittedStep.open(dir, verify)) {
            if (ck.stateFile().tp() == layout.tp() && ck.pp() == 1 && layout.stage().whole(layout.model())) { ck.loadParams(layout, dst); return; }
            try (HostFloats none = HostFloats.allocate(1)) {                 // another tp or stage split: resharded, no optimizer window
                ck.loadRank(layout, new OptimizerShard(0, 0, layout.numel()), dst, none, none);
            }
        }
    }
}
