package dev.midtrain.bench;

import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.kernels.HostFloats;
import dev.midtrain.ckpt.CommittedStep;
import dev.midtrain.ckpt.StateFile;
import dev.midtrain.train.TrainState;
import dev.midtrain.common.AtomicFiles;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.RunConfig;
import dev.midtrain.model.OptimizerShard;
import dev.midtrain.model.ParamLayout;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Distributed checkpoint throughput: the step of a dp-rank run (tp 1 x dp R, R ranks) saved and loaded by P
 * processes (this JVM is process {@code proc} of P and holds R/P ranks), against the same step written and read by
 * one process holding all R ranks (P = 1). Save: every process writes its ranks' windows (fp32 params + m + v,
 * fsync, SHA-256 while writing) and its part file; process 0 waits for every part and commits. Load: every process
 * opens the step (hashing only the files it reads) and loads its ranks (whole weight slab + its AdamW window). The
 * processes start each phase together at a wall-clock time agreed through files in {@code dir}; process 0 prints the
 * phase's wall time, from the start to the last process's end.
 *
 * <p>Usage: DistCheckpointBench proc procs ranks dir [dim layers vocab] (defaults 768 12 32000, ~0.1 B parameters).
 */
public final class DistCheckpointBench {
    public static void main(String[] args) throws Exception {
        int proc = Integer.parseInt(args[0]), procs = Integer.parseInt(args[1]), ranks = Integer.parseInt(args[2]);
        Path dir = Path.of(args[3]);
        int dim = args.length > 4 ? Integer.parseInt(args[4]) : 768, layers = args.length > 5 ? Integer.parseInt(args[5]) : 12;
        int vocab = args.length > 6 ? Integer.parseInt(args[6]) : 32000;
        if (ranks % procs != 0) throw new IllegalArgumentException("ranks " + ranks + " not a multiple of processes " + procs);
        int heads = dim / 64, ffn = dim * 8 / 3 / 64 * 64;
        String yaml = String.format("model: {vocab_size: %d, dim: %d, n_layers: %d, n_heads: %d, n_kv_heads: %d, ffn_dim: %d, "
                + "rope_theta: 500000.0, norm_eps: 1.0e-5, max_seq_len: 2048, tied_embeddings: false}%noptimizer: {lr: 1.0e-4}%n"
                + "train: {seq_len: 2048, micro_batch_seqs: 1, global_batch_seqs: %d, steps: 10}%ndata: null%nparallel: {tp: 1, dp: %d}%n",
                vocab, dim, layers, heads, Math.max(1, heads / 4), ffn, ranks, ranks);
        RunConfig cfg = ConfigLoader.fromTree(ConfigLoader.YAML.readTree(yaml), "bench");
        ParamLayout l = ParamLayout.of(cfg.model(), 1, 0, List.of("norm"));
        long n = l.numel();
        double gb = 12e-9 * n;                                    // params + m + v, fp32, of the whole step
        List<StepDirectories.RankState> mine = new ArrayList<>();
        int per = ranks / procs;
        for (int d = proc * per; d < (proc + 1) * per; d++) {
            OptimizerShard w = StepDirectories.window(n, ranks, d);
            HostFloats p = HostFloats.allocate(w.count()), m = HostFloats.allocate(w.count()), v = HostFloats.allocate(w.count());
            float[][] c = new float[3][1 << 20];
            for (long done = 0; done < w.count(); done += c[0].length) {
                int k = (int) Math.min(c[0].length, w.count() - done);
                for (int i = 0; i < k; i++) {
                    float x = (float) Math.sin((w.start() + done + i) * 0.001);
                    c[0][i] = x; c[1][i] = x * 1e-3f; c[2][i] = x * x * 1e-6f;
                }
                p.copyFrom(HostFloats.wrap(c[0]), 0, done, k);
                m.copyFrom(HostFloats.wrap(c[1]), 0, done, k);
                v.copyFrom(HostFloats.wrap(c[2]), 0, done, k);
            }
            mine.add(new StepDirectories.RankState(l, d, ranks, p, m, v));
        }
        TrainState one = new TrainState(cfg.train().seed());
        one.step = 1;
        StateFile st = new StateFile(one, 0, ConfigLoader.toYaml(cfg), "bench", 1, ranks, null, null);
        StepDirectories store = StepDirectories.forRun(dir.resolve("run"));
        StepDirectories.Part part = procs == 1 ? StepDirectories.Part.SOLE : new StepDirectories.Part(proc, procs, Duration.ofMinutes(10));

        long go = startTogether(dir, "save", proc, procs);
        store.savePart(st, mine, part, 1, 0);
        long saved = finishTogether(dir, "save", proc, procs);
        if (proc == 0) System.out.printf("save  %d process(es), %d rank(s): %.2f GB in %.2f s, %.2f GB/s%n", procs, ranks, gb, (saved - go) / 1e3, gb / ((saved - go) / 1e3));

        Path step = store.stepDir(1);
        go = startTogether(dir, "load", proc, procs);
        try (CommittedStep ck = CommittedStep.openForRanks(step); HostFloats p = HostFloats.allocate(n)) {
            for (StepDirectories.RankState r : mine) ck.loadRank(l, r.window(), p, r.m(), r.v());
        }
        long loaded = finishTogether(dir, "load", proc, procs);
        if (proc == 0) {
            System.out.printf("load  %d process(es), %d rank(s): %.2f GB in %.2f s, %.2f GB/s (warm page cache; each rank reads the whole weight slab: %.2f GB read)%n",
                    procs, ranks, gb, (loaded - go) / 1e3, gb / ((loaded - go) / 1e3), (8e-9 + 4e-9 * ranks) * n);
        }
        for (StepDirectories.RankState r : mine) { r.params().close(); r.m().close(); r.v().close(); }
    }

    /** Process 0 names a start time 2 s ahead (file {@code phase.go}); everyone sleeps until then. */
    private static long startTogether(Path dir, String phase, int proc, int procs) throws Exception {
        Path f = dir.resolve(phase + ".go");
        if (proc == 0) AtomicFiles.writeString(f, Long.toString(System.currentTimeMillis() + 2000));
        while (!Files.exists(f)) Thread.sleep(5);
        long go = Long.parseLong(Files.readString(f).trim());
        while (System.currentTimeMillis() < go) Thread.sleep(1);
        return go;
    }

    /** Every process records its end time; process 0 returns the last one. */
    private static long finishTogether(Path dir, String phase, int proc, int procs) throws Exception {
        AtomicFiles.writeString(dir.resolve(phase + ".done." + proc), Long.toString(System.currentTimeMillis()));
        if (proc != 0) return 0;
        long last = 0;
        for (int p = 0; p < procs; p++) {
            Path f = dir.resolve(phase + ".done." + p);
            while (!Files.exists(f)) Thread.sleep(5);
            last = Math.max(last, Long.parseLong(Files.readString(f).trim()));
        }
        return last;
    }
}
