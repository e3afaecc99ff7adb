package dev.midtrain.cli;

import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.RunConfig;
import dev.midtrain.model.MemoryPlan;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * `midtrain info` for Llama-3 8B with the distributed optimizer: the per-device numbers of tp 1 x dp 8 against a hand
 * computation from the model's shape (not from MemoryPlan), and the 80 GB verdicts of tp 1 x dp 8 and tp 2 x dp 4.
 */
class InfoCommandTest {
    static final double GIB = 1L << 30;

    @Test
    void llama8bAtTp1Dp8FitsWithTheDistributedOptimizerByHand() {
        // Llama-3 8B: V 128256, C 4096, L 32, NH 32, NKV 8, HD 128, F 14336, untied embeddings
        long V = 128256, C = 4096, L = 32, NH = 32, NKV = 8, HD = 128, F = 14336, dp = 8, N = 8192;
        long P = 2 * V * C + L * (C * (NH + 2 * NKV) * HD + NH * HD * C + 3 * C * F + 2 * C) + C;
        assertEquals(8_030_261_248L, P);
        long shard = (P + dp - 1) / dp;                          // 1/8 of the parameters, rounded up
        long master = 4 * shard, computeCopy = 2 * P, grads = 4 * P, adam = 8 * shard;
        // recompute: each layer's input (bf16), two layers' working activations, final norm + one logits chunk
        long perToken = (4 * C + (NH + 2 * NKV) * HD + NH * HD + 3 * F) * 2 + (2 + NH) * 4;
        long activations = N * C * 2 * L + 2 * N * perToken + N * (2 * C * 2 + 4) + 1024 * V * 2;
        long total = master + computeCopy + grads + adam + activations;

        RunConfig cfg = ConfigLoader.load(Path.of("configs/llama3-8b.yaml"), List.of());
        MemoryPlan plan = MemoryPlan.of(cfg.model(), 1, 8192, 1, 8, true, 2);
        assertEquals(master, plan.masterBytes());
        assertEquals(computeCopy, plan.computeCopyBytes());
        assertEquals(grads, plan.gradsBytes());
        assertEquals(adam, plan.optimizerBytes());
        assertEquals(activations, plan.activationsRecomputeBytes());
        assertEquals(total, plan.totalBytes(true));
        assertTrue(total < 75 * GIB, "under 80 GiB minus 1 GiB and 5%: " + total / GIB);

        Cli.Run r = Cli.run("info", "--config", "configs/llama3-8b.yaml", "--tp", "1", "--dp", "8", "--device-gib", "80");
        assertEquals(0, r.code(), r.err());
        String o = r.out();
        assertTrue(o.contains("optimizer       distributed (ZeRO-1 + sharded master weights over dp 8)"), o);
        assertLine(o, "master", master, "1/8 shard: 1,003,782,656 of 8,030,261,248");
        assertLine(o, "compute copy", computeCopy, "bf16");
        assertLine(o, "gradients", grads, "fp32");
        assertLine(o, "AdamW state", adam, "1/8 shard");
        assertTrue(o.contains(String.format("| %.2f GiB  (full)", activations / GIB)), o);
        assertTrue(o.contains(String.format("| %.2f GiB  (full)", total / GIB)) && o.contains("fits 80 GiB?   yes"), o);
        // without the distributed optimizer (replicated fp32 master) it did not fit: 86.8 GiB
        long replicated = total - master + 4 * P;
        assertTrue(replicated > 75 * GIB, "replicated master: " + replicated / GIB);

        Cli.Run r2 = Cli.run("info", "--config", "configs/llama3-8b.yaml", "--tp", "2", "--dp", "4", "--device-gib", "80");
        assertEquals(0, r2.code(), r2.err());
        assertTrue(r2.out().contains("fits 80 GiB?   yes"), r2.out());
    }

    static void assertLine(String out, String label, long bytes, String detail) {
        String line = out.lines().filter(l -> l.startsWith("  " + label + " ")).findFirst().orElseThrow(() -> new AssertionError(label + " missing: " + out));
        assertTrue(line.contains(String.format("%.2f GiB", bytes / GIB)) && line.contains(detail), line);
    }
}
