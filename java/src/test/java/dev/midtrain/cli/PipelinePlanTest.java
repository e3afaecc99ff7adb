package dev.midtrain.cli;

import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.model.MemoryPlan;
import dev.midtrain.model.MemoryPlan.Layout;
import dev.midtrain.config.TrainConfig.Recompute;
import dev.midtrain.model.MemoryPlan.Stage;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The planner with pipeline stages, sequence parallelism and the recomputation choice: the figures docs/parallel.md
 * derives by hand (70B at tp 8 x pp 4 x dp 1 and tp 8 x pp 2 x dp 2, 8B at tp 2 x pp 2), recomputed here from the
 * model's shape without MemoryPlan; pp 1 equal to the tensor/data-parallel plan; the "does not fit" suggestion is the
 * fewest devices with tensor-parallel groups inside a node (issue 19 item 7: not tp 16 x dp 8 on 128 devices).
 */
class PipelinePlanTest {
    static final double GIB = 1L << 30;
    static final ModelConfig L70 = ConfigLoader.load(Path.of("configs/llama3-70b.yaml"), List.of()).model();
    static final ModelConfig L8 = ConfigLoader.load(Path.of("configs/llama3-8b.yaml"), List.of()).model();

    /** A rank's parameters by hand: layers of its stages at tensor-parallel rank 0, embedding on rank 0, norm + head on the last. */
    static long rankParams(long V, long C, long L, long NH, long NKV, long HD, long F, int tp, int pp, int rank) {
        long nkv = Math.max(1, NKV / tp);
        long layer = C * (NH / tp + 2 * nkv) * HD + NH / tp * HD * C + 3 * C * (F / tp) + 2 * C;
        long p = L / pp * layer;
        if (rank == 0) p += V / tp * C;
        if (rank == pp - 1) p += C + V / tp * C;
        return p;
    }

    @Test
    void llama70bTp8Pp4Dp1ByHand() {
        long V = 128256, C = 8192, L = 80, NH = 64, NKV = 8, HD = 128, F = 28672, N = 8192;
        int tp = 8, pp = 4, m = 512;
        long p0 = rankParams(V, C, L, NH, NKV, HD, F, tp, pp, 0);
        assertEquals(2_270_756_864L, p0);
        // per token per layer kept (bf16): selective = x, qkv, attention out, residual, gate|up; + 2 rstd and NH/tp lse (fp32)
        long qkv = (NH / tp + 2 * (NKV / tp)) * HD, a = NH / tp * HD, f = F / tp;
        long selective = (2 * C + qkv + a + 2 * f) * 2 + (2 + NH / tp) * 4;
        long stored = (4 * C + qkv + a + 3 * f) * 2 + (2 + NH / tp) * 4;
        // 1F1B: rank 0 holds pp = 4 micro-batches of its 20 layers; + two layers' working set; + p2p buffers (2 x N x C bf16)
        long act = N * selective * 4 * (L / pp) + 2 * N * stored + 2 * N * C * 2;
        long total = 4 * p0 + 2 * p0 + 4 * p0 + 8 * p0 + act;
        List<Stage> st = MemoryPlan.stages(L70, 1, 8192, new Layout(tp, 1, pp, 1, false, true, Recompute.SELECTIVE, m), 2);
        assertEquals(p0, st.get(0).params());
        assertEquals(act, st.get(0).activationsBytes());
        assertEquals(total, st.get(0).totalBytes());
        assertEquals(0, MemoryPlan.largest(st).rank(), "the first stage holds the most under 1F1B");
        assertEquals(71.30, total / GIB, 0.005);
        // the last rank: the head (norm + lm_head + one logits chunk) but one micro-batch in flight
        long p3 = rankParams(V, C, L, NH, NKV, HD, F, tp, pp, 3);
        long act3 = N * selective * (L / pp) + 2 * N * stored + 2 * N * C * 2 + N * (2 * C * 2 + 4) + 1024 * (V / tp) * 2;
        assertEquals(18 * p3 + act3, st.get(3).totalBytes());

        Cli.Run r = Cli.run("info", "--config", "configs/llama3-70b.yaml", "--tp", "8", "--pp", "4", "--dp", "1", "--recompute", "selective", "--device-gib", "80");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("bubble 0.58% of the step ((pp-1)/(v*m+pp-1) = 3/515)"), r.out());
        assertTrue(r.out().contains(String.format("  total         %.2f GiB  (none) | %.2f GiB  (selective)", 
                MemoryPlan.stages(L70, 1, 8192, new Layout(tp, 1, pp, 1, false, true, Recompute.NONE, m), 2).get(0).totalBytes() / GIB, total / GIB)), r.out());
        assertTrue(r.out().contains("fits 80 GiB?   yes (recompute selective"), r.out());
    }

    @Test
    void llama70bTp8Pp2Dp2ByHand() {
        long V = 128256, C = 8192, L = 80, NH = 64, NKV = 8, HD = 128, F = 28672, N = 8192;
        int tp = 8, pp = 2, dp = 2, m = 256;
        long p0 = rankParams(V, C, L, NH, NKV, HD, F, tp, pp, 0);
        long shard = (p0 + dp - 1) / dp;
        long full = C * 2;                                                  // full recompute keeps each layer's input
        long stored = (4 * C + (NH / tp + 2) * HD + NH / tp * HD + 3 * (F / tp)) * 2 + (2 + NH / tp) * 4;
        long act = N * full * 2 * (L / pp) + 2 * 2 * N * stored / 2 * 1 + 2 * N * C * 2;
        act = N * full * 2 * (L / pp) + 2 * N * stored + 2 * N * C * 2;
        long total = 4 * shard + 2 * p0 + 4 * p0 + 8 * shard + act;
        Stage s0 = MemoryPlan.stages(L70, 1, 8192, new Layout(tp, dp, pp, 1, false, true, Recompute.FULL, m), 2).get(0);
        assertEquals(total, s0.totalBytes());
        assertEquals(60.94, total / GIB, 0.005);
        assertEquals(1 / 257.0, new Layout(tp, dp, pp, 1, false, true, Recompute.FULL, m).bubble(), 1e-15);
    }

    @Test
    void llama8bTp2Pp2ByHandAndInterleavedInFlight() {
        long V = 128256, C = 4096, L = 32, NH = 32, NKV = 8, HD = 128, F = 14336, N = 8192;
        int tp = 2, pp = 2, m = 512;
        long p0 = rankParams(V, C, L, NH, NKV, HD, F, tp, pp, 0);
        assertEquals(2_007_629_824L, p0);
        long stored = (4 * C + (NH / tp + 2 * NKV / tp) * HD + NH / tp * HD + 3 * (F / tp)) * 2 + (2 + NH / tp) * 4;
        long act = N * C * 2 * 2 * (L / pp) + 2 * N * stored + 2 * N * C * 2;
        Stage s0 = MemoryPlan.stages(L8, 1, 8192, new Layout(tp, 1, pp, 1, false, true, Recompute.FULL, m), 2).get(0);
        assertEquals(18 * p0 + act, s0.totalBytes());
        assertEquals(37.09, s0.totalBytes() / GIB, 0.005);
        // sequence parallelism divides the C-wide tensors by tp: under full recompute the kept layer inputs halve
        Stage sp = MemoryPlan.stages(L8, 1, 8192, new Layout(tp, 1, pp, 1, true, true, Recompute.FULL, m), 2).get(0);
        assertEquals(act - N * C * 2 * (L / pp) - N * C * 2, sp.activationsBytes());
        // interleaved (2 virtual stages): rank 0 keeps (pp-1)*2 + (v-1)*pp + 1 = 5 chunk forwards of 8 layers alive
        Stage iv = MemoryPlan.stages(L8, 1, 8192, new Layout(tp, 1, pp, 2, false, true, Recompute.FULL, m), 2).get(0);
        assertEquals(5, iv.inFlight());
        assertEquals(N * C * 2 * 5 * 8 + 2 * N * stored + 2 * N * C * 2, iv.activationsBytes());
    }

    @Test
    void withoutAPipelineThePlanIsTheTensorDataParallelOne() {
        for (int[] td : new int[][]{{1, 8}, {2, 4}, {8, 1}}) {
            MemoryPlan old = MemoryPlan.of(L8, 1, 8192, td[0], td[1], true, 2);
            for (Recompute r : new Recompute[]{Recompute.NONE, Recompute.FULL}) {
                Stage s = MemoryPlan.stages(L8, 1, 8192, new Layout(td[0], td[1], 1, 1, false, true, r, 64), 2).get(0);
                assertEquals(old.totalBytes(r == Recompute.FULL), s.totalBytes(), "tp " + td[0] + " dp " + td[1] + " " + r);
            }
        }
    }

    @Test
    void doesNotFitSuggestsTheFewestDevicesWithTensorGroupsInsideANode() {
        Cli.Run r = Cli.run("info", "--config", "configs/llama3-70b.yaml", "--tp", "8", "--pp", "1", "--dp", "8", "--recompute", "none", "--device-gib", "80");
        assertEquals(0, r.code(), r.err());
        String line = r.out().lines().filter(l -> l.startsWith("fits 80 GiB?")).findFirst().orElseThrow();
        assertTrue(line.contains("no: tp 8 x pp 1 x dp 8 needs"), line);
        assertTrue(line.contains("train.recompute=full"), line);
        var mt = java.util.regex.Pattern.compile("--tp (\\d+) --pp (\\d+) --dp (\\d+) on (\\d+) devices").matcher(line);
        assertTrue(mt.find(), line);
        int tp = Integer.parseInt(mt.group(1)), pp = Integer.parseInt(mt.group(2)), dp = Integer.parseInt(mt.group(3)), n = Integer.parseInt(mt.group(4));
        assertTrue(tp <= 8 && 8 % tp == 0, "tensor-parallel group inside a node of 8: " + line);
        assertEquals(tp * pp * dp, n);
        assertTrue(n < 64, "fewer devices than tp 8 x dp 8: " + line);
        // nothing with fewer devices fits (brute force over the same space, any recomputation and sequence parallelism)
        long budget = MemoryPlan.usableBytes(80L << 30);
        for (int t : new int[]{1, 2, 4, 8})
            for (int p = 1; p <= 80; p++) {
                if (80 % p != 0) continue;
                for (int d = 1; t * p * d < n; d++) {
                    if (512 % d != 0) continue;
                    for (Recompute rc : Recompute.values())
                        for (boolean sp : t > 1 ? new boolean[]{false, true} : new boolean[]{false}) {
                            Layout l = new Layout(t, d, p, 1, sp, true, rc, 512 / d);
                            if (MemoryPlan.invalid(L70, l) != null) continue;
                            assertTrue(MemoryPlan.largest(MemoryPlan.stages(L70, 1, 8192, l, 2)).totalBytes() > budget, "fits on fewer devices: " + l);
                        }
                }
            }
        // a node of 4 GPUs: tp stays <= 4
        Cli.Run r4 = Cli.run("info", "--config", "configs/llama3-70b.yaml", "--tp", "8", "--dp", "8", "--recompute", "none", "--device-gib", "80", "--gpus-per-node", "4");
        var m4 = java.util.regex.Pattern.compile("--tp (\\d+) --pp").matcher(r4.out());
        assertTrue(m4.find(), r4.out());
        assertTrue(Integer.parseInt(m4.group(1)) <= 4, r4.out());
    }

    @Test
    void badPipelineLayoutsAreOneLineErrors() {
        Cli.Run r = Cli.run("info", "--config", "configs/llama3-8b.yaml", "--pp", "3");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("parallel.pp") && r.err().contains("must divide model.n_layers (32)"), r.err());
        Cli.Run v = Cli.run("info", "--config", "configs/llama3-8b.yaml", "--virtual-stages", "2");
        assertEquals(2, v.code());
        assertTrue(v.err().contains("parallel.virtual_stages") && v.err().contains("needs parallel.pp > 1"), v.err());
        Cli.Run s = Cli.run("info", "--config", "configs/llama3-8b.yaml", "--sp", "true", "--tp", "1");
        assertEquals(2, s.code());
        assertTrue(s.err().contains("parallel.sequence_parallel"), s.err());
        Cli.Run rc = Cli.run("info", "--config", "configs/llama3-8b.yaml", "--recompute", "some");
        assertEquals(2, rc.code());
        assertTrue(rc.err().contains("--recompute: must be none, selective or full"), rc.err());
    }
}
