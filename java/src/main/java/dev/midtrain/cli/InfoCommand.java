package dev.midtrain.cli;

import dev.midtrain.common.UserError;

import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.RunConfig;
import dev.midtrain.model.MemoryPlan;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** `midtrain info`: parameter count and the per-device memory plan of a config. */
@Command(name = "info", mixinStandardHelpOptions = true, description = "Print parameter count and per-device memory estimate.")
public final class InfoCommand implements Callable<Integer> {
    @Option(names = "--config", required = true, description = "run config (YAML)") Path config;
    @Option(names = "--set", description = "override a config field, e.g. --set train.seq_len=4096") List<String> overrides = List.of();
    @Option(names = "--tp", description = "tensor-parallel degree (default: the config's)") Integer tp;
    @Option(names = "--dp", description = "data-parallel degree (default: the config's)") Integer dp;
    @Option(names = "--backend", description = "cpu (fp32 compute) or cuda (bf16 compute); default: the config's") String backend;
    @Option(names = "--device-gib", description = "memory per device (GiB, e.g. 80 for an H100): say whether the run fits and what would")
    Double deviceGib;

    @Override
    public Integer call() {
        List<String> sets = new ArrayList<>(overrides);
        if (tp != null) sets.add("parallel.tp=" + tp);                     // validated against the model by the config
        if (dp != null) sets.add("parallel.dp=" + dp);
        RunConfig cfg = ConfigLoader.load(config, sets);
        var m = cfg.model();
        int t = cfg.parallel().tp(), d = cfg.parallel().dp();
        if (deviceGib != null && !(deviceGib > 0)) throw new UserError("--device-gib: must be > 0, got " + deviceGib);
        String be = backend != null ? backend : cfg.train() != null ? cfg.train().backend().yaml() : "cuda";
        if (!be.equals("cpu") && !be.equals("cuda")) throw new UserError("--backend: must be cpu or cuda, got " + be);
        int mb = cfg.train() != null ? cfg.train().microBatchSeqs() : 1;
        int seq = cfg.train() != null ? cfg.train().seqLen() : m.maxSeqLen();
        MemoryPlan plan = MemoryPlan.of(m, mb, seq, t, d, cfg.parallel().zero1(), be.equals("cpu") ? 4 : 2);

        System.out.printf("config          %s%n", config);
        System.out.printf("model           dim %d, layers %d, heads %d/%d kv, head dim %d, ffn %d, vocab %d, %s embeddings%n",
                m.dim(), m.nLayers(), m.nHeads(), m.nKvHeads(), m.headDim(), m.ffnDim(), m.vocabSize(), m.tiedEmbeddings() ? "tied" : "untied");
        System.out.printf("parameters      %,d (%.2fB)%n", plan.params(), plan.params() / 1e9);
        System.out.printf("flops/token     %.3g at seq %d (6N + causal attention)%n", m.flopsPerToken(seq), seq);
        System.out.printf("layout          tp %d x dp %d, %s compute, micro-batch %d x seq %d, ZeRO-1 %s%n",
                t, d, be.equals("cpu") ? "fp32" : "bf16", mb, seq, cfg.parallel().zero1() ? "on" : "off");
        boolean distributed = cfg.parallel().zero1() && d > 1;
        String shardOf = distributed ? String.format(", 1/%d shard: %,d of %,d", d, (plan.rankParams() + d - 1) / d, plan.rankParams()) : "";
        System.out.printf("optimizer       %s%n", distributed
                ? "distributed (ZeRO-1 + sharded master weights over dp " + d + "): reduce-scatter gradients, update the shard, all-gather the "
                  + (be.equals("cpu") ? "fp32" : "bf16") + " weights"
                : cfg.parallel().zero1() ? "one data-parallel rank: not sharded" : "replicated (parallel.zero1=false): all-reduce gradients");
        System.out.println("per-device memory:");
        System.out.printf("  master        %s  (fp32 weights%s)%n", MemoryPlan.gib(plan.masterBytes()), shardOf);
        System.out.printf("  compute copy  %s  (%s)%n", MemoryPlan.gib(plan.computeCopyBytes()), plan.computeCopyBytes() == 0 ? "none: fp32 compute uses the master"
                : (be.equals("cpu") ? "fp32" : "bf16") + ", all " + String.format("%,d", plan.rankParams()));
        System.out.printf("  gradients     %s  (fp32, all %,d)%n", MemoryPlan.gib(plan.gradsBytes()), plan.rankParams());
        System.out.printf("  AdamW state   %s  (fp32 m and v%s)%n", MemoryPlan.gib(plan.optimizerBytes()), cfg.parallel().zero1() && d > 1 ? shardOf : "");
        System.out.printf("  activations   %s  (stored) | %s  (recompute)%n", MemoryPlan.gib(plan.activationsBytes()), MemoryPlan.gib(plan.activationsRecomputeBytes()));
        System.out.printf("  total         %s  (stored) | %s  (recompute)%n", MemoryPlan.gib(plan.totalBytes(false)), MemoryPlan.gib(plan.totalBytes(true)));
        if (deviceGib != null) {
            long dev = (long) (deviceGib * (1L << 30));
            boolean rc = cfg.train() != null && cfg.train().recompute();
            long budget = be.equals("cpu") ? dev : MemoryPlan.usableBytes(dev);    // GPU: minus context/workspace reserve
            String verdict = MemoryPlan.checkFits(m, mb, seq, t, d, cfg.parallel().zero1(), be.equals("cpu") ? 4 : 2, rc, budget);
            System.out.printf("fits %.0f GiB?   %s%n", deviceGib, verdict == null
                    ? "yes (" + (rc ? "recompute" : "stored activations") + ", " + MemoryPlan.gib(budget) + " available)"
                    : "no: " + verdict);
        }
        return 0;
    }
}
