package dev.midtrain.bench;

import dev.midtrain.common.AtomicFiles;
import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.ckpt.DType;
import dev.midtrain.ckpt.HfCheckpoint;
import dev.midtrain.kernels.HostFloats;
import dev.midtrain.ckpt.Safetensors;
import dev.midtrain.ckpt.CommittedStep;
import dev.midtrain.ckpt.StateFile;
import dev.midtrain.train.TrainState;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.RunConfig;
import dev.midtrain.model.ParamLayout;

import java.nio.file.Path;
import java.util.List;

/**
 * Checkpoint I/O throughput on a Llama-shaped model (random values): a step save (fp32 params + AdamW m, v, with
 * fsync and SHA-256 while writing), opening it with SHA-256 verification, loading it back, a bf16 Hugging Face
 * export and a bf16 import into the fp32 slab. Files go to {@code dir} (deleted afterwards).
 *
 * <p>Usage: CheckpointBench [dir] [dim] [layers] [vocab] (defaults: target/bench-ckpt 768 12 32000: ~0.1 B params).
 */
public final class CheckpointBench {
    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args.length > 0 ? args[0] : "target/bench-ckpt");
        int dim = args.length > 1 ? Integer.parseInt(args[1]) : 768;
        int layers = args.length > 2 ? Integer.parseInt(args[2]) : 12;
        int vocab = args.length > 3 ? Integer.parseInt(args[3]) : 32000;
        int heads = dim / 64, ffn = dim * 8 / 3 / 64 * 64;
        String yaml = String.format("model: {vocab_size: %d, dim: %d, n_layers: %d, n_heads: %d, n_kv_heads: %d, ffn_dim: %d, "
                + "rope_theta: 500000.0, norm_eps: 1.0e-5, max_seq_len: 2048, tied_embeddings: false}%noptimizer: {lr: 1.0e-4}%n"
                + "train: {seq_len: 2048, micro_batch_seqs: 1, global_batch_seqs: 1, steps: 10}%ndata: null%n", vocab, dim, layers, heads, Math.max(1, heads / 4), ffn);
        RunConfig cfg = ConfigLoader.fromTree(ConfigLoader.YAML.readTree(yaml), "bench");
        ModelConfig m = cfg.model();
        ParamLayout l = ParamLayout.of(m);
        long n = l.numel();
        System.out.printf("model: dim %d, layers %d, vocab %d: %,d parameters (%.2f GB fp32 per slab)%n", dim, layers, vocab, n, 4e-9 * n);
        AtomicFiles.deleteTree(dir);
        try (HostFloats p = HostFloats.allocate(n); HostFloats mm = HostFloats.allocate(n); HostFloats v = HostFloats.allocate(n)) {
            for (long i = 0; i < n; i++) { float x = (float) Math.sin(i * 0.001); p.put(i, x); mm.put(i, x * 1e-3f); v.put(i, x * x * 1e-6f); }
            StepDirectories store = StepDirectories.forRun(dir.resolve("run"));
            TrainState one = new TrainState(cfg.train().seed());
            one.step = 1;
            StateFile st = new StateFile(one, 0, ConfigLoader.toYaml(cfg), "bench", 1, 1, null, null);
            double gb = 12e-9 * n;
            long t0 = System.nanoTime();
            Path step = store.save(st, List.of(new StepDirectories.RankState(l, p, mm, v)), 1, 0);
            double s = (System.nanoTime() - t0) / 1e9;
            System.out.printf("step save (params+m+v fp32, fsync, SHA-256): %.2f s, %.2f GB/s%n", s, gb / s);
            t0 = System.nanoTime();
            try (CommittedStep ck = CommittedStep.open(step, true)) {
                double o = (System.nanoTime() - t0) / 1e9;
                System.out.printf("open + SHA-256 verification: %.2f s, %.2f GB/s%n", o, gb / o);
                t0 = System.nanoTime();
                ck.loadParams(l, p);
                ck.loadOptimizer(l, mm, v);
                s = (System.nanoTime() - t0) / 1e9;
                System.out.printf("load params+m+v (mmap, warm page cache): %.2f s, %.2f GB/s%n", s, gb / s);
            }
            Path hf = dir.resolve("hf");
            t0 = System.nanoTime();
            HfCheckpoint.export(m, null, t -> new Safetensors.Source(p, l.get(t.name()).offset(), false), hf, DType.BF16, 1_000_000_000L);
            s = (System.nanoTime() - t0) / 1e9;
            System.out.printf("HF export bf16 (%.2f GB written): %.2f s, %.1f M params/s%n", 2e-9 * n, s, n / s / 1e6);
            t0 = System.nanoTime();
            try (HfCheckpoint ck = HfCheckpoint.open(hf)) { ck.loadInto(l, p); }
            s = (System.nanoTime() - t0) / 1e9;
            System.out.printf("HF import bf16 -> fp32 slab (warm page cache, non-finite check): %.2f s, %.1f M params/s%n", s, n / s / 1e6);
        }
        AtomicFiles.deleteTree(dir);
    }
}
