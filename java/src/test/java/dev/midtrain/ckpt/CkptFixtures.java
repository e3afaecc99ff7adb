package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.AtomicFiles;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.RunConfig;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.train.TrainState;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Trainer states and rank tensors for checkpoint tests: values are a deterministic function of (step, rank, slab, i). */
final class CkptFixtures {
    private CkptFixtures() {}

    static final ModelConfig M = HfCheckpointTest.M;

    static RunConfig config(int tp) { return config(tp, 1); }

    /** dp > 1: global_batch_seqs 8 (a multiple of micro_batch_seqs 2 x dp for dp 1, 2, 4). */
    static RunConfig config(int tp, int dp) {
        String yaml = "model: {vocab_size: 12, dim: 8, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 12, rope_theta: 500000.0, norm_eps: 1.0e-5, max_seq_len: 16, tied_embeddings: false}\n"
                + "optimizer: {lr: 1.0e-3}\n"
                + "train: {seq_len: 8, micro_batch_seqs: 2, global_batch_seqs: 4, steps: 100}\n"
                + "data: {sources: [{name: a, path: /nonexistent/a, weight: 1.0}, {name: b, path: /nonexistent/b, weight: 2.0}], valid_fraction: 0.0}\n"
                + "parallel: {tp: " + tp + ", dp: " + dp + "}\n";
        if (dp > 1) yaml = yaml.replace("global_batch_seqs: 4", "global_batch_seqs: 8");
        try {
            return ConfigLoader.fromTree(ConfigLoader.YAML.readTree(yaml), "test");
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    static StateFile state(long step, int tp) {
        TrainState s = new TrainState(1234);
        s.step = step;
        s.tokensTrained = step * 32;
        s.tokensSeenBefore = 1000;
        s.tokensPerSource.putAll(Map.of("a", step * 10, "b", step * 22));
        s.loaderState = JsonNodeFactory.instance.objectNode().put("cursor", step * 7).put("epoch", 0);
        return new StateFile(s, 1e-3, ConfigLoader.toYaml(config(tp)), "0.1.0", tp, 1, null, null);
    }

    static float value(long step, int rank, int slab, long i) {
        return (float) Math.sin(step * 1.3 + rank * 0.7 + slab * 0.37 + i * 0.011) * (slab == 2 ? 1e-3f : 1f);
    }

    static List<ParamLayout> layouts(int tp) {
        List<ParamLayout> l = new ArrayList<>();
        for (int r = 0; r < tp; r++) l.add(ParamLayout.of(M, tp, r, List.of("norm")));
        return l;
    }

    static void fill(long step, ParamLayout l, HostFloats p, HostFloats m, HostFloats v) {
        for (long i = 0; i < l.numel(); i++) {
            p.put(i, value(step, l.rank(), 0, i));
            m.put(i, value(step, l.rank(), 1, i));
            v.put(i, Math.abs(value(step, l.rank(), 2, i)));
        }
    }

    static List<StepDirectories.RankState> ranks(long step, int tp) {
        List<StepDirectories.RankState> out = new ArrayList<>();
        for (ParamLayout l : layouts(tp)) {
            var rs = new StepDirectories.RankState(l, HostFloats.allocate(l.numel()), HostFloats.allocate(l.numel()), HostFloats.allocate(l.numel()));
            fill(step, l, rs.params(), rs.m(), rs.v());
            out.add(rs);
        }
        return out;
    }

    /** Asserts a committed step holds exactly the fixture values of {@code step}. */
    static void assertStep(Path stepDir, long step, int tp) {
        try (CommittedStep ck = CommittedStep.open(stepDir, true)) {
            if (ck.stateFile().step() != step) throw new AssertionError("state step " + ck.stateFile().step() + " != " + step);
            for (ParamLayout l : layouts(tp)) {
                try (HostFloats p = HostFloats.allocate(l.numel()); HostFloats m = HostFloats.allocate(l.numel()); HostFloats v = HostFloats.allocate(l.numel())) {
                    for (long i = 0; i < l.numel(); i++) { p.put(i, Float.NaN); m.put(i, Float.NaN); v.put(i, Float.NaN); }
                    ck.loadParams(l, p);
                    ck.loadOptimizer(l, m, v);
                    for (long i = 0; i < l.numel(); i++) {
                        if (Float.floatToRawIntBits(p.get(i)) != Float.floatToRawIntBits(value(step, l.rank(), 0, i))
                                || m.get(i) != value(step, l.rank(), 1, i) || v.get(i) != Math.abs(value(step, l.rank(), 2, i)))
                            throw new AssertionError("rank " + l.rank() + " element " + i + " differs at step " + step);
                    }
                }
            }
        }
    }

    /** Rewrites manifest + COMMITTED so they vouch for the directory's current files (simulates a buggy writer). */
    static void reseal(Path stepDir) throws IOException {
        var manifest = (ObjectNode) HfConfig.read(stepDir.resolve(StepDirectories.MANIFEST));
        ObjectNode files = (ObjectNode) manifest.get("files");
        for (var it = files.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            ((ObjectNode) files.get(f)).put("bytes", Files.size(stepDir.resolve(f))).put("sha256", AtomicFiles.sha256(stepDir.resolve(f)));
        }
        var w = AtomicFiles.writeString(stepDir.resolve(StepDirectories.MANIFEST), HfConfig.toText(manifest));
        AtomicFiles.writeString(stepDir.resolve(StepDirectories.COMMITTED), "step 0\nmanifest_sha256 " + w.sha256() + "\n");
    }
}
