package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.AtomicFiles;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.model.ParamLayout;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A Hugging Face Llama checkpoint directory: {@code config.json} plus either {@code model.safetensors} or shards
 * listed by {@code model.safetensors.index.json} ({@code {"metadata": {"total_size": N}, "weight_map": {name: file}}}).
 * Weights may be F32, BF16, F16 or F64; they load into fp32 master weights, sliced for a tensor-parallel rank.
 */
public final class HfCheckpoint implements AutoCloseable {
    public static final String CONFIG = "config.json";
    public static final String SINGLE = "model.safetensors";
    public static final String INDEX = "model.safetensors.index.json";
    /**
     * Files of a Hugging Face checkpoint directory besides the weights that an export carries over unchanged when
     * the run started from one (--init-from copies them into the run directory, {@link #SIDE_FILES_DIR}).
     */
    public static final List<String> SIDE_FILES = List.of("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "tokenizer.model", "generation_config.json");
    /** Where a run keeps the {@link #SIDE_FILES} of its --init-from checkpoint: RUN_DIR/hf_files/. */
    public static final String SIDE_FILES_DIR = "hf_files";
    /** Default largest shard written by {@link #export} (bytes of tensor data), transformers' default. */
    public static final long DEFAULT_MAX_SHARD_BYTES = 5_000_000_000L;

    private final Path dir;
    private final JsonNode config;
    private final List<Safetensors.Reader> readers;
    private final Map<String, Shards.Ref> tensors;

    private HfCheckpoint(Path dir, JsonNode config, List<Safetensors.Reader> readers, Map<String, Shards.Ref> tensors) {
        this.dir = dir;
        this.config = config;
        this.readers = readers;
        this.tensors = tensors;
    }

    public static HfCheckpoint open(Path dir) {
        if (!Files.isDirectory(dir)) throw new UserError(dir + ": not a directory (expected a Hugging Face checkpoint)");
        JsonNode config = HfConfig.read(dir.resolve(CONFIG));
        List<Safetensors.Reader> readers = new ArrayList<>();
        Map<String, Shards.Ref> tensors = new LinkedHashMap<>();
        try {
            Path index = dir.resolve(INDEX);
            if (Files.exists(index)) {
                JsonNode idx = HfConfig.read(index);
                JsonNode wm = idx.get("weight_map");
                if (wm == null || !wm.isObject()) throw new UserError(index + ": missing \"weight_map\" object");
                Map<String, Safetensors.Reader> byFile = new TreeMap<>();
                for (Iterator<Map.Entry<String, JsonNode>> it = wm.fields(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> e = it.next();
                    String file = e.getValue().asText();
                    if (!e.getValue().isTextual() || file.contains("/") || file.contains("\\") || file.startsWith("."))
                        throw new UserError(index + ": weight_map." + e.getKey() + ": bad file name " + e.getValue());
                    Safetensors.Reader r = byFile.get(file);
                    if (r == null) {
                        r = Safetensors.Reader.open(dir.resolve(file));
                        byFile.put(file, r);
                        readers.add(r);
                    }
                    if (!r.has(e.getKey()))
                        throw new UserError(r.file() + ": tensor " + e.getKey() + " listed in " + INDEX + " is missing from the file");
                    tensors.put(e.getKey(), new Shards.Ref(r, r.get(e.getKey())));
                }
            } else if (Files.exists(dir.resolve(SINGLE))) {
                Safetensors.Reader r = Safetensors.Reader.open(dir.resolve(SINGLE));
                readers.add(r);
                for (var t : r.tensors().values()) tensors.put(t.name(), new Shards.Ref(r, t));
            } else {
                throw new UserError(dir + ": no " + SINGLE + " or " + INDEX + " (not a Hugging Face safetensors checkpoint)");
            }
        } catch (RuntimeException e) {
            readers.forEach(Safetensors.Reader::close);
            throw e;
        }
        return new HfCheckpoint(dir, config, readers, tensors);
    }

    public Path dir() { return dir; }

    public JsonNode config() { return config; }

    public Map<String, Shards.Ref> tensors() { return tensors; }

    /** Fails, naming every mismatching field on one line, when config.json does not describe {@code m}. */
    public void validate(ModelConfig m) { HfConfig.validate(dir.resolve(CONFIG), config, m); }

    /**
     * Loads this rank's parameters into {@code dst} (fp32, numel = layout.numel()) at the layout's offsets.
     * Fails naming the file and tensor on a missing tensor, a shape mismatch, a non-finite value or an extra
     * tensor the layout does not have (except rotary inv_freq buffers, and lm_head.weight of a tied model).
     */
    public void loadInto(ParamLayout layout, HostFloats dst) {
        if (dst.numel() < layout.numel())
            throw new IllegalArgumentException("destination holds " + dst.numel() + " floats, layout needs " + layout.numel());
        checkTensors(layout.stage().whole(layout.model()) ? layout : layout.whole(null));   // a pipeline stage: the file holds every stage
        for (ParamLayout.Tensor t : layout.tensors()) {
            Shards.Ref ref = tensors.get(t.name());
            Shards.readSlice(ref, t, dst, 0);
            Shards.checkFinite(ref, dst, t.offset(), t.numel());
        }
    }

    /**
     * Checks the file headers against {@code layout} without reading tensor data: every parameter present with its
     * full shape, no tensor the layout does not have (except rotary inv_freq buffers, and lm_head.weight of a tied
     * model). Fails naming the file and tensor.
     */
    public void checkTensors(ParamLayout layout) {
        Map<String, ParamLayout.Tensor> want = layout.byName();
        for (String name : tensors.keySet()) {
            if (want.containsKey(name) || name.endsWith(".rotary_emb.inv_freq")) continue;
            if (name.equals("lm_head.weight") && layout.model().tiedEmbeddings()) continue;
            throw new UserError(tensors.get(name).where() + ": not a Llama parameter the model config has");
        }
        for (ParamLayout.Tensor t : layout.tensors()) {
            Shards.Ref ref = tensors.get(t.name());
            if (ref == null) throw new UserError(dir + ": tensor " + t.name() + " is missing from the checkpoint");
            Shards.checkShape(ref, t.fullShape(), "the model config");
        }
    }

    @Override
    public void close() { readers.forEach(Safetensors.Reader::close); }

    // ------------------------------------------------------------------------------------------------ export

    /** Supplies one full (unsharded) tensor as fp32, e.g. read from a step checkpoint and assembled from ranks. */
    @FunctionalInterface
    public interface FullTensors {
        Safetensors.Source open(ParamLayout.Tensor full);
    }

    /** What {@link #export} wrote. */
    public record Exported(List<String> files, long totalBytes, int tensors) {}

    /**
     * Writes a Hugging Face Llama checkpoint into {@code out} (which must not exist or be empty): config.json
     * (see {@link HfConfig#toJson}), {@code model-0000k-of-0000n.safetensors} shards of at most
     * {@code maxShardBytes} of tensor data each (a larger tensor gets a shard of its own; greedy in parameter
     * order, as transformers does) and model.safetensors.index.json. Written into a sibling temporary directory
     * and renamed into place, so a crash leaves no half-written export at {@code out}.
     */
    public static Exported export(ModelConfig m, JsonNode baseConfig, FullTensors source, Path out, DType dtype, long maxShardBytes) throws IOException {
        return export(m, baseConfig, source, out, dtype, maxShardBytes, Map.of(), HfConfig.Layout.of(baseConfig));
    }

    /**
     * Copies the {@link #SIDE_FILES} present in {@code dir} (tokenizer files, generation_config.json) into {@code to}
     * unchanged; returns their names. A null or missing {@code dir} copies nothing.
     */
    public static List<String> copySideFiles(Path dir, Path to) throws IOException {
        List<String> copied = new ArrayList<>();
        if (dir == null || !Files.isDirectory(dir)) return copied;
        for (String f : SIDE_FILES) {
            Path src = dir.resolve(f);
            if (!Files.isRegularFile(src)) continue;
            AtomicFiles.write(to.resolve(f), ch -> {
                try (var in = java.nio.channels.FileChannel.open(src)) {
                    long pos = 0, size = in.size();
                    while (pos < size) pos += in.transferTo(pos, size - pos, ch);
                }
            });
            copied.add(f);
        }
        return copied;
    }

    /**
     * As above; {@code extraFiles}: further files of the export by name (tokenizer.json, tokenizer_config.json,
     * generation_config.json...), written with the rest before the directory is published;
     * {@code layout}: the transformers layout of the config.json written (its one dtype field names {@code dtype}).
     */
    public static Exported export(ModelConfig m, JsonNode baseConfig, FullTensors source, Path out, DType dtype, long maxShardBytes,
                                  Map<String, byte[]> extraFiles, HfConfig.Layout layout) throws IOException {
        if (dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16)
            throw new UserError("--dtype: must be bf16, fp16 or fp32, got " + dtype);
        if (maxShardBytes <= 0) throw new UserError("--max-shard-size: must be > 0, got " + maxShardBytes);
        if (Files.exists(out)) {
            if (!Files.isDirectory(out)) throw new UserError(out + ": exists and is not a directory");
            try (var s = Files.list(out)) {
                if (s.findAny().isPresent()) throw new UserError(out + ": exists and is not empty (refusing to overwrite)");
            }
        }
        Path parent = out.toAbsolutePath().getParent();
        Files.createDirectories(parent);
        Path tmp = parent.resolve("." + out.getFileName() + ".tmp-" + ProcessHandle.current().pid());
        AtomicFiles.deleteTree(tmp);
        Files.createDirectories(tmp);
        try {
            ParamLayout full = ParamLayout.of(m);
            List<List<Safetensors.OutTensor>> shards = new ArrayList<>();
            List<Safetensors.OutTensor> cur = new ArrayList<>();
            long curBytes = 0, total = 0;
            for (ParamLayout.Tensor t : full.tensors()) {
                var ot = new Safetensors.OutTensor(t.name(), dtype, Shards.toLong(t.fullShape()), () -> source.open(t));
                if (!cur.isEmpty() && curBytes + ot.nbytes() > maxShardBytes) {
                    shards.add(cur);
                    cur = new ArrayList<>();
                    curBytes = 0;
                }
                cur.add(ot);
                curBytes += ot.nbytes();
                total += ot.nbytes();
            }
            if (!cur.isEmpty()) shards.add(cur);
            ObjectNode weightMap = JsonNodeFactory.instance.objectNode();
            Map<String, String> sortedMap = new TreeMap<>();
            List<String> files = new ArrayList<>();
            for (int i = 0; i < shards.size(); i++) {
                String name = String.format("model-%05d-of-%05d.safetensors", i + 1, shards.size());
                List<Safetensors.OutTensor> list = shards.get(i);
                AtomicFiles.write(tmp.resolve(name), ch -> Safetensors.write(ch, list, Map.of("format", "pt")));
                for (var ot : list) sortedMap.put(ot.name(), name);
                files.add(name);
            }
            sortedMap.forEach(weightMap::put);
            ObjectNode index = JsonNodeFactory.instance.objectNode();
            index.putObject("metadata").put("total_size", total);
            index.set("weight_map", weightMap);
            AtomicFiles.writeString(tmp.resolve(INDEX), HfConfig.toText(index));
            String torchDtype = dtype == DType.F32 ? "float32" : dtype == DType.BF16 ? "bfloat16" : "float16";
            AtomicFiles.writeString(tmp.resolve(CONFIG), HfConfig.toText(HfConfig.toJson(m, torchDtype, baseConfig, layout)));
            files.add(INDEX);
            files.add(CONFIG);
            for (Map.Entry<String, byte[]> e : new TreeMap<>(extraFiles).entrySet()) {
                if (files.contains(e.getKey()) || e.getKey().contains("/")) throw new IllegalArgumentException("extra file " + e.getKey());
                AtomicFiles.write(tmp.resolve(e.getKey()), ch -> ch.write(java.nio.ByteBuffer.wrap(e.getValue())));
                files.add(e.getKey());
            }
            AtomicFiles.fsyncDir(tmp);
            AtomicFiles.publish(tmp, out);
            return new Exported(files, total, full.tensors().size());
        } catch (IOException | RuntimeException e) {
            AtomicFiles.deleteTree(tmp);
            throw e;
        }
    }
}
