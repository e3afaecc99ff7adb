package dev.midtrain.cli;

import dev.midtrain.common.UserError;

import dev.midtrain.ckpt.DType;
import dev.midtrain.ckpt.HfCheckpoint;
import dev.midtrain.ckpt.HfConfig;
import dev.midtrain.ckpt.ModelSource;
import dev.midtrain.ckpt.StateFile;
import dev.midtrain.ckpt.CommittedStep;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.config.RunConfig;
import dev.midtrain.data.Manifest;
import dev.midtrain.data.Preparer;
import dev.midtrain.infer.Engine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
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
    @Option(names = "--tokenizer", description = "tokenizer.json to ship (default: the --init-from checkpoint's, else the one the run's prepared data was made with)") Path tokenizer;
    @Option(names = "--config-layout", defaultValue = "auto",
            description = "config.json layout: transformers4 (rope_theta/rope_scaling, torch_dtype), transformers5 (rope_parameters, dtype), or auto "
                    + "(the layout of the config.json the run started from; transformers4 for a run from scratch, which both versions read)") String layout;

    /** The Llama-3 Instruct chat template (Hugging Face's, verbatim): written when the tokenizer has its special tokens. */
    static final String LLAMA3_CHAT_TEMPLATE = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
            + "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
            + "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
            + "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

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
            JsonNode base = baseConfig(st.hfConfig(), ck.config());
            HfConfig.Layout lay = switch (layout.toLowerCase(Locale.ROOT)) {
                case "auto" -> HfConfig.Layout.of(st.hfConfig());
                case "transformers4", "4" -> HfConfig.Layout.TRANSFORMERS_4;
                case "transformers5", "5" -> HfConfig.Layout.TRANSFORMERS_5;
                default -> throw new UserError("--config-layout: expected auto, transformers4 or transformers5, got " + layout);
            };
            Map<String, byte[]> extra = tokenizerFiles(step, st, ck.config(), tokenizer);
            HfCheckpoint.Exported ex = HfCheckpoint.export(ck.config().model(), base, ck::fullTensor, out, dt, maxBytes, extra, lay);
            System.out.printf("exported %s (step %d, %,d tokens seen in total) to %s: %d tensors, %s, %.3f GB in %d file(s), config.json in the %s layout%n",
                    step, st.step(), st.state().tokensTotal(), out, ex.tensors(), dt, ex.totalBytes() / 1e9, ex.files().size(),
                    lay == HfConfig.Layout.TRANSFORMERS_5 ? "transformers 5" : "transformers 4");
        }
        return 0;
    }

    /**
     * The files beside the weights: the --init-from checkpoint's tokenizer files and generation_config.json (kept in
     * RUN/hf_files), and a usable tokenizer in every case: tokenizer.json from {@code --tokenizer}, the --init-from
     * checkpoint or the run's prepared data (in that order), and a tokenizer_config.json naming its bos/eos tokens (and
     * the Llama-3 chat template when the tokenizer has its tokens) unless the --init-from checkpoint had one.
     * No tokenizer anywhere (a run on synthetic data) is an error that asks for --tokenizer.
     */
    static Map<String, byte[]> tokenizerFiles(Path step, StateFile st, RunConfig cfg, Path explicit) throws IOException {
        Map<String, byte[]> files = new TreeMap<>();
        Path side = sideFiles(step, st.initFrom());
        if (side != null && Files.isDirectory(side))
            for (String f : HfCheckpoint.SIDE_FILES) if (Files.isRegularFile(side.resolve(f))) files.put(f, Files.readAllBytes(side.resolve(f)));
        Path tok = explicit;
        if (tok == null && !files.containsKey("tokenizer.json")) tok = dataTokenizer(cfg);
        if (tok != null) {
            if (!Files.isRegularFile(tok)) throw new UserError(tok + ": tokenizer not found");
            files.put("tokenizer.json", Files.readAllBytes(tok));
            if (explicit != null) files.remove("tokenizer_config.json");     // the given tokenizer's own config is written below
        }
        if (!files.containsKey("tokenizer.json"))
            throw new UserError(step + ": the run has no tokenizer (no --init-from tokenizer.json, no prepared data manifest); pass --tokenizer FILE so the export is usable");
        if (!files.containsKey("tokenizer_config.json")) {
            Path tmp = Files.createTempFile("midtrain-export-tokenizer", ".json");
            try {
                Files.write(tmp, files.get("tokenizer.json"));
                files.put("tokenizer_config.json", HfConfig.toText(tokenizerConfig(tmp, cfg.model().maxSeqLen())).getBytes(StandardCharsets.UTF_8));
            } finally {
                Files.deleteIfExists(tmp);
            }
        }
        return files;
    }

    /** A tokenizer_config.json for {@code tokenizerJson}: bos/eos tokens it has, the Llama-3 chat template when it applies. */
    static ObjectNode tokenizerConfig(Path tokenizerJson, int maxSeqLen) {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        boolean bos = Preparer.Tok.tokenId(tokenizerJson, Preparer.DEFAULT_BOS) >= 0;
        o.put("add_bos_token", bos);
        o.put("add_eos_token", false);
        if (bos) o.put("bos_token", Preparer.DEFAULT_BOS);
        boolean chat = Preparer.Tok.tokenId(tokenizerJson, "<|start_header_id|>") >= 0 && Preparer.Tok.tokenId(tokenizerJson, "<|eot_id|>") >= 0;
        if (chat) o.put("chat_template", LLAMA3_CHAT_TEMPLATE);
        o.put("clean_up_tokenization_spaces", true);
        for (String e : Engine.EOS_TOKENS)
            if (Preparer.Tok.tokenId(tokenizerJson, e) >= 0) { o.put("eos_token", e); break; }
        o.put("model_max_length", maxSeqLen);
        o.put("tokenizer_class", "PreTrainedTokenizerFast");
        return o;
    }

    /** The tokenizer.json the run's prepared data was made with, or null (no data section, manifest gone). */
    static Path dataTokenizer(RunConfig cfg) {
        if (cfg.data() == null || cfg.data().sources().isEmpty()) return null;
        try {
            Path f = Path.of(Manifest.read(Path.of(cfg.data().sources().get(0).path())).tokenizer().file());
            return Files.isRegularFile(f) ? f : null;
        } catch (RuntimeException e) {
            return null;
        }
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

    /** The step directory export reads: a step, or a run directory's newest step ({@link ModelSource}); not an HF directory. */
    static Path resolveStep(Path p) {
        ModelSource src = ModelSource.open(p);
        if (src.kind() != ModelSource.Kind.STEP)
            throw new UserError(p + ": a Hugging Face checkpoint, not a training step or run directory (nothing to export)");
        return src.dir();
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
