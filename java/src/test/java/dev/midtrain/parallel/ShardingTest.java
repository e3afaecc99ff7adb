package dev.midtrain.parallel;


import dev.midtrain.config.ModelConfig;
import dev.midtrain.model.OptimizerShard;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.model.ParamLayout.Tensor;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** Tensor-parallel shard metadata, ZeRO-1 shard ranges and the launcher's failure handling. */
class ShardingTest {
    static final ModelConfig M = new ModelConfig(60, 24, 1, 6, 2, 36, 1e4, 1e-5, 8, false);

    /** Independent reference: the shard by explicit row/column slicing of the HF matrix. */
    static float[] slice(float[] full, int[] fullShape, ParamLayout.Split split, int idx, int count) {
        if (split == ParamLayout.Split.REPLICATED) return full.clone();
        int rows = fullShape[0], cols = fullShape.length > 1 ? fullShape[1] : 1;
        if (split == ParamLayout.Split.ROWS) {
            int r = rows / count;
            return Arrays.copyOfRange(full, idx * r * cols, (idx + 1) * r * cols);
        }
        int w = cols / count;
        float[] out = new float[rows * w];
        for (int i = 0; i < rows; i++) System.arraycopy(full, i * cols + idx * w, out, i * w, w);
        return out;
    }

    @Test
    void shardsTileEveryTensorExactlyOnce() {
        Random rng = new Random(3);
        for (int tp : new int[]{1, 2, 3, 6}) {          // tp 3, 6 > NKV 2? 3 is not a multiple of 2: only valid layouts
            if (tp > M.nKvHeads() && tp % M.nKvHeads() != 0) {
                int t = tp;
                assertThrows(IllegalArgumentException.class, () -> ParamLayout.of(M, t, 0, List.of("norm")));
                continue;
            }
            for (Tensor t0 : ParamLayout.of(M, 1, 0, List.of("norm")).tensors()) {
                float[] full = new float[(int) t0.fullNumel()];
                for (int i = 0; i < full.length; i++) full[i] = rng.nextFloat();
                float[] rebuilt = new float[full.length];
                Arrays.fill(rebuilt, Float.NaN);
                int[] holders = new int[full.length];
                for (int r = 0; r < tp; r++) {
                    Tensor t = ParamLayout.of(M, tp, r, List.of("norm")).get(t0.name());
                    float[] mine = t.shard(full);
                    assertArrayEquals(slice(full, t.fullShape(), t.split(), t.shardIndex(), t.shardCount()), mine, 0f, t.name() + " tp " + tp);
                    t.unshardInto(rebuilt, mine);
                    long prev = -1;
                    for (int i = 0; i < full.length; i++) {
                        long l = t.localIndex(i);
                        if (l >= 0) { holders[i]++; assertTrue(l > prev, "localIndex must be increasing"); prev = l; }
                    }
                }
                assertArrayEquals(full, rebuilt, 0f, t0.name() + " tp " + tp);
                int expectHolders = t0.split() == ParamLayout.Split.REPLICATED ? tp
                        : t0.name().contains("k_proj") || t0.name().contains("v_proj") ? dev.midtrain.config.Placement.of(M, tp).kvReplicas() : 1;
                for (int h : holders) assertEquals(expectHolders, h, t0.name() + " tp " + tp);
            }
        }
    }

    @Test
    void optimizerShardsCoverTheSlab() {
        for (long numel : new long[]{1, 7, 1000, 1001}) {
            for (int dp : new int[]{1, 2, 3, 8}) {
                long covered = 0;
                for (int d = 0; d < dp; d++) {
                    OptimizerShard s = OptimizerShard.of(numel, dp, d, true);
                    assertEquals(dp == 1 ? numel : OptimizerShard.shardElems(numel, dp) * dp, s.slabElems());
                    assertEquals(covered, Math.min(numel, s.start()), "shards are consecutive");
                    covered += s.count();
                    assertTrue(s.start() + s.count() <= numel);
                }
                assertEquals(numel, covered);
                OptimizerShard plain = OptimizerShard.of(numel, dp, dp - 1, false);
                assertEquals(0, plain.start());
                assertEquals(numel, plain.count());
            }
        }
    }

    @Test
    void launcherRethrowsTheFirstFailureAndStopsTheOthers() {
        LaunchEnv env = new LaunchEnv(LaunchEnv.Source.SINGLE, 1, 0, 4, 0, null, 1);
        long t0 = System.nanoTime();
        IllegalStateException e = assertThrows(IllegalStateException.class, () ->
                Launcher.run(env, 2, 2, 1, Launcher.Mode.IN_PROCESS, Duration.ofSeconds(60), ctx -> {
                    ProcessGroups g = ctx.groups(0);
                    if (ctx.topology().rank() == 3) throw new IllegalStateException("rank 3 broke");
                    try (var buf = new org.bytedeco.javacpp.FloatPointer(4)) {
                        g.world().allReduceSum(buf.address(), 4, Communicator.Dtype.F32);    // waits for rank 3
                    }
                    return 0;
                }));
        assertEquals("rank 3 broke", e.getMessage());
        assertEquals(3, e.getSuppressed().length, "the other ranks fail with the broken group");
        assertTrue(e.getSuppressed()[0].getMessage().contains("rank 3 failed: IllegalStateException: rank 3 broke"), e.getSuppressed()[0].getMessage());
        assertTrue(System.nanoTime() - t0 < 10_000_000_000L, "the others must not wait out the timeout");
    }
}
