package dev.midtrain.cli;

import dev.midtrain.common.UserError;

import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.ckpt.DType;
import dev.midtrain.ckpt.HfCheckpoint;
import dev.midtrain.ckpt.StateFile;
import dev.midtrain.ckpt.CommittedStep;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.config.RunConfig;
import dev.midtrain.data.Manifest;
import dev.midtrain.data.Preparer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

/** `midtrain export`: a committed step checkpoint to a Hugging Face Llama checkpoint directory. */
@Command(name = "export", mixinStandardHelpOptions = true,
        description = "Write a Hugging Face Llama checkpoint (config.json, sharded safetensors, index) from a training checkpoint.")
public final class ExportCommand implements Callable<Integer> {
    @Option(names = "--checkpoint", required = true,
            description = "a step directory (RUN/checkpoints/step_N) or a run directory (its newest committed step)") Path checkpoint;
    @Option(names = "--out", required = true, description = "output directory (must not exist or be empty)") Path out;
    @Option(names = "--dtype", defaultValue = "bf16", description = "bf16 (default), fp16 or fp32 (exact master weights)") String dtype;
    @Option(names = "--max-shard-size", defaultValue = "5GB", description = "largest safetensors shard, e.g. 5GB, 500MB, 2GiB (default 5GB)") String maxShard;

    @Override
    public Integer call() throws IOException {
        DType dt = switch (dtype.toLowerCase(Locale.ROOT)) {
            case "bf16", "bfloat16" -> DType.BF16;
            case "fp16", "f16", "float16" -> DType.F16;
            case "fp32", "f32", "float32" -> DType.F32;
            default -> throw new UserError("--dtype: must be bf16, fp16 or fp32, got " + dtype);
        };
        long maxBytes = parseSize(maxShard);
        Path step = resolveStep(checkpoint);
        try (CommittedStep ck = CommittedStep.open(step, true)) {
            StateFile st = ck.stateFile();
            HfCheckpoint.Exported ex = HfCheckpoint.export(ck.config().model(), baseConfig(st.hfConfig(), ck.config()), ck::fullTensor, out, dt,
                    maxBytes, sideFiles(step, st.initFrom()));
            System.out.printf("exported %s (step %d, %,d tokens seen in total) to %s: %d tensors, %s, %.3f GB in %d file(s)%n",
                    step, st.step(), st.state().tokensTotal(), out, ex.tensors(), dt, ex.totalBytes() / 1e9, ex.files().size());
        }
        return 0;
    }

    /**
     * The tokenizer files and generation_config.json to carry over: those --init-from copied into the run directory
     * (RUN/hf_files), else those still in the --init-from directory; null when the run did not start from one.
     */
    static Path sideFiles(Path step, String initFrom) {
        Path run = step.toAbsolutePath().getParent() == null ? null : step.toAbsolutePath().getParent().getParent();
        if (run != null && Files.isDirectory(run.resolve(HfCheckpoint.SIDE_FILES_DIR))) return run.resolve(HfCheckpoint.SIDE_FILES_DIR);
        return initFrom == null ? null : Path.of(initFrom);
    }

    /**
     * The config.json fields an export keeps from the source (token ids...): the --init-from checkpoint's config.json;
     * for a run trained from scratch, bos/eos ids from the tokenizer the run's prepared data was made with.
     */
    static JsonNode baseConfig(JsonNode hfConfig, RunConfig cfg) {
        if (hfConfig != null && !hfConfig.isNull()) return hfConfig;
        if (cfg.data() == null || cfg.data().sources().isEmpty()) return null;
        try {
            Manifest.Tokenizer t = Manifest.read(Path.of(cfg.data().sources().get(0).path())).tokenizer();
            ObjectNode o = JsonNodeFactory.instance.objectNode();
            o.put("eos_token_id", t.eosId());
            int bos = Files.isRegularFile(Path.of(t.file())) ? Preparer.Tok.tokenId(Path.of(t.file()), Preparer.DEFAULT_BOS) : -1;
            if (bos >= 0) o.put("bos_token_id", bos);
            return o;
        } catch (RuntimeException e) {
            return null;                                                    // prepared data moved away: no ids to add
        }
    }

    static Path resolveStep(Path p) {
        if (Files.isRegularFile(p.resolve(StepDirectories.COMMITTED))) return p;
        if (Files.isDirectory(p.resolve("checkpoints"))) {
            return StepDirectories.forRun(p).newestCommitted()
                    .orElseThrow(() -> new UserError(p + ": run directory has no committed checkpoint"));
        }
        if (Files.isDirectory(p)) throw new UserError(p + ": not a committed step directory (no COMMITTED) nor a run directory");
        throw new UserError(p + ": not found");
    }

    /** "5GB" = 5e9 bytes, "2GiB" = 2 * 2^30, "500MB", "123" (bytes). */
    static long parseSize(String s) {
        String t = s.trim().toUpperCase(Locale.ROOT);
        long mult = 1;
        String[][] units = {{"KIB", "1024"}, {"MIB", "1048576"}, {"GIB", "1073741824"}, {"KB", "1000"}, {"MB", "1000000"}, {"GB", "1000000000"}, {"B", "1"}};
        for (String[] u : units) {
            if (t.endsWith(u[0])) { mult = Long.parseLong(u[1]); t = t.substring(0, t.length() - u[0].length()).trim(); break; }
        }
        try {
            double v = Double.parseDouble(t);
            long bytes = (long) (v * mult);
            if (!(v > 0) || bytes <= 0) throw new NumberFormatException();
            return bytes;
        } catch (NumberFormatException e) {
            throw new UserError("--max-shard-size: expected a positive size like 5GB or 500MB, got " + s);
        }
    }
}
