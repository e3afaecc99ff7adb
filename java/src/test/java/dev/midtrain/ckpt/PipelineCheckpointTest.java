package dev.midtrain.ckpt;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.Placement;
import dev.midtrain.config.RunConfig;
import dev.midtrain.kernels.HostFloats;
import dev.midtrain.model.OptimizerShard;
import dev.midtrain.model.ParamLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static dev.midtrain.ckpt.DistributedCheckpointTest.slab;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A tp 2 x pp 2 x dp 2 step (4 layers, tied embeddings: the last stage saves its copy of the embedding) written as one
 * file pair per (tp, pp, dp) rank, and every rank of other tp x pp x dp layouts (pp 1, pp 4, interleaved pp 2 x 2
 * virtual, tp 4) loading its stage's weights and its optimizer window's AdamW moments from it. Loading only copies
 * values, so each must equal the slab built from the full tensors bit for bit (outputs poisoned with NaN first).
 */
class PipelineCheckpointTest {
    @TempDir Path tmp;

    static RunConfig config(int tp, int pp, int dp) throws Exception {
        String yaml = "model: {vocab_size: 12, dim: 8, n_layers: 4, n_heads: 4, n_kv_heads: 2, ffn_dim: 12, rope_theta: 500000.0, norm_eps: 1.0e-5,"
                + " max_seq_len: 16, tied_embeddings: true}\n"
                + "optimizer: {lr: 1.0e-3}\n"
                + "train: {seq_len: 8, micro_batch_seqs: 1, global_batch_seqs: 8, steps: 100}\n"
                + "data: {sources: [{name: a, path: /nonexistent/a, weight: 1.0}], valid_fraction: 0.0}\n"
                + "parallel: {tp: " + tp + ", dp: " + dp + ", pp: " + pp + "}\n";
        return ConfigLoader.fromTree(ConfigLoader.YAML.readTree(yaml), "test");
    }

    static ParamLayout layout(RunConfig c, int tp, int tpRank, int pp, int virtual, int ppRank) {
        return ParamLayout.of(new Placement(c.model(), tp, tpRank), List.of("norm"), ParamLayout.Stage.of(c.model(), pp, virtual, ppRank));
    }

    @Test
    void everyLayoutLoadsItsStageFromAPipelineCheckpoint() throws Exception {
        int TP = 2, PP = 2, DP = 2;
        long step = 7;
        RunConfig cfg = config(TP, PP, DP);
        List<StepDirectories.RankState> ranks = new ArrayList<>();
        for (int q = 0; q < PP; q++)
            for (int d = 0; d < DP; d++)
                for (int t = 0; t < TP; t++) {
                    ParamLayout l = layout(cfg, TP, t, PP, 1, q);
                    OptimizerShard w = StepDirectories.window(l.numel(), DP, d);
                    HostFloats[] h = new HostFloats[3];
                    for (int k = 0; k < 3; k++) {
                        float[] s = slab(step, k, l);
                        h[k] = HostFloats.allocate(Math.max(1, w.count()));
                        for (long i = 0; i < w.count(); i++) h[k].put(i, s[(int) (w.start() + i)]);
                    }
                    ranks.add(new StepDirectories.RankState(l, q, PP, d, DP, h[0], h[1], h[2]));
                }
        StateFile s0 = CkptFixtures.state(step, TP);
        StateFile st = new StateFile(s0.state(), s0.lr(), ConfigLoader.toYaml(cfg), s0.engineVersion(), TP, DP, null, null);
        Path dir = StepDirectories.forRun(tmp).save(st, ranks, 2, 0);
        JsonNode manifest = HfConfig.read(dir.resolve(StepDirectories.MANIFEST));
        assertEquals(2, manifest.get("pp").asInt());
        assertEquals(2 * TP * PP * DP + 1, manifest.get("files").size(), "a model and an optimizer file per (tp, pp, dp) rank, and the state");
        assertTrue(manifest.get("files").has("model-tp01-of-02-pp01-of-02-dp01-of-02.safetensors"), manifest.toString());

        try (CommittedStep ck = CommittedStep.open(dir, true)) {
            assertEquals(2, ck.pp());
            // {tp, pp, virtual, dp}
            for (int[] lay : new int[][]{{2, 2, 1, 2}, {1, 1, 1, 1}, {1, 4, 1, 1}, {2, 2, 2, 1}, {4, 1, 1, 2}, {1, 2, 1, 4}}) {
                int tp = lay[0], pp = lay[1], virtual = lay[2], dp = lay[3];
                for (int r = 0; r < tp * pp * dp; r++) {
                    int t = r % tp, d = r / tp % dp, q = r / (tp * dp);
                    ParamLayout l = layout(cfg, tp, t, pp, virtual, q);
                    OptimizerShard w = OptimizerShard.of(l.numel(), dp, d, true);
                    try (HostFloats p = HostFloats.allocate(l.numel()); HostFloats m = HostFloats.allocate(Math.max(1, w.count()));
                         HostFloats v = HostFloats.allocate(Math.max(1, w.count()))) {
                        for (HostFloats h : List.of(p, m, v)) for (long i = 0; i < h.numel(); i++) h.put(i, Float.NaN);
                        ck.loadRank(l, w, p, m, v);
                        float[] sp = slab(step, 0, l), sm = slab(step, 1, l), sv = slab(step, 2, l);
                        String what = "tp " + tp + " x pp " + pp + " (" + virtual + " virtual) x dp " + dp + " rank " + r;
                        for (int i = 0; i < sp.length; i++) assertEquals(Float.floatToRawIntBits(sp[i]), Float.floatToRawIntBits(p.get(i)), what + " weight " + i);
                        for (int i = 0; i < w.count(); i++) {
                            assertEquals(Float.floatToRawIntBits(sm[(int) w.start() + i]), Float.floatToRawIntBits(m.get(i)), what + " m " + i);
                            assertEquals(Float.floatToRawIntBits(sv[(int) w.start() + i]), Float.floatToRawIntBits(v.get(i)), what + " v " + i);
                        }
                    }
                }
            }
        }
    }
}
