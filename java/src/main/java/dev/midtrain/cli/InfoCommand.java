package dev.midtrain.cli;

import dev.midtrain.common.UserError;

import dev.midtrain.config.ConfigLoader;
import dev.midtrain.config.RunConfig;
import dev.midtrain.model.MemoryPlan;
import dev.midtrain.model.MemoryPlan.Layout;
import dev.midtrain.config.TrainConfig.Recompute;
import dev.midtrain.model.MemoryPlan.Stage;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** `midtrain info`: parameter count, the pipeline schedule's bubble and the per-device memory plan of a config. */
@Command(name = "info", mixinStandardHelpOptions = true, description = "Print parameter count and per-device memory estimate.")
public final class InfoCommand implements Callable<Integer> {
    @Option(names = "--config", required = true, description = "run config (YAML)") Path config;
    @Option(names = "--set", description = "override a config field, e.g. --set train.seq_len=4096") List<String> overrides = List.of();
    @Option(names = "--tp", description = "tensor-parallel degree (default: the config's)") Integer tp;
    @Option(names = "--dp", description = "data-parallel degree (default: the config's)") Integer dp;
    @Option(names = "--pp", description = "pipeline stages (default: the config's)") Integer pp;
    @Option(names = "--virtual-stages", description = "model chunks per pipeline rank: 1 = 1F1B, more = interleaved (default: the config's)")
    Integer virtualStages;
    @Option(names = "--sp", arity = "1", description = "sequence parallelism on (true) or off (false) (default: the config's)") Boolean sp;
    @Option(names = "--recompute", description = "none, selective or full (default: train.recompute)") String recompute;
    @Option(names = "--backend", description = "cpu (fp32 compute) or cuda (bf16 compute); default: the config's") String backend;
    @Option(names = "--device-gib", description = "memory per device (GiB, e.g. 80 for an H100): say whether the run fits and what would")
    Double deviceGib;
    @Option(names = "--gpus-per-node", description = "devices per node: tensor-parallel groups stay inside one (default: 8)") int gpusPerNode = 8;

    @Override
    public Integer call() {
        List<String> sets = new ArrayList<>(overrides);
        if (tp != null) sets.add("parallel.tp=" + tp);                     // validated against the model by the config
        if (dp != null) sets.add("parallel.dp=" + dp);
        if (pp != null) sets.add("parallel.pp=" + pp);
        if (virtualStages != null) sets.add("parallel.virtual_stages=" + virtualStages);
        if (sp != null) sets.add("parallel.sequence_parallel=" + sp);
        RunConfig cfg = ConfigLoader.load(config, sets);
        var m = cfg.model();
        var par = cfg.parallel();
        int t = par.tp(), d = par.dp(), p = par.pp(), v = par.virtualStages();
        if (deviceGib != null && !(deviceGib > 0)) throw new UserError("--device-gib: must be > 0, got " + deviceGib);
        if (gpusPerNode < 1) throw new UserError("--gpus-per-node: must be >= 1, got " + gpusPerNode);
        String be = backend != null ? backend : cfg.train() != null ? cfg.train().backend().yaml() : "cuda";
        if (!be.equals("cpu") && !be.equals("cuda")) throw new UserError("--backend: must be cpu or cuda, got " + be);
        Recompute rc = recompute != null ? Recompute.parse(recompute, "--recompute")
                : cfg.train() != null ? cfg.train().recompute() : Recompute.NONE;
        int mb = cfg.train() != null ? cfg.train().microBatchSeqs() : 1;
        int seq = cfg.train() != null ? cfg.train().seqLen() : m.maxSeqLen();
        int global = cfg.train() != null ? cfg.train().globalBatchSeqs() : mb * d;
        int micro = Math.max(1, global / (mb * d));                         // the pipeline's m per data-parallel rank
        int cb = be.equals("cpu") ? 4 : 2;
        Layout lay = new Layout(t, d, p, v, par.sequenceParallel(), par.zero1(), rc, micro);
        String bad = MemoryPlan.invalid(m, lay);
        if (bad != null) throw new UserError(config + ": " + bad);
        List<Stage> stages = MemoryPlan.stages(m, mb, seq, lay, cb);
        Stage big = MemoryPlan.largest(stages);
        long params = m.paramCount();

        System.out.printf("config          %s%n", config);
        System.out.printf("model           dim %d, layers %d, heads %d/%d kv, head dim %d, ffn %d, vocab %d, %s embeddings%n",
                m.dim(), m.nLayers(), m.nHeads(), m.nKvHeads(), m.headDim(), m.ffnDim(), m.vocabSize(), m.tiedEmbeddings() ? "tied" : "untied");
        System.out.printf("parameters      %,d (%.2fB)%n", params, params / 1e9);
        System.out.printf("flops/token     %.3g at seq %d (6N + causal attention)%n", m.flopsPerToken(seq), seq);
        System.out.printf("layout          %s on %d devices, %s compute, micro-batch %d x seq %d, ZeRO-1 %s, recompute %s%n",
                lay.describe(), lay.devices(), cb == 4 ? "fp32" : "bf16", mb, seq, par.zero1() ? "on" : "off", rc.yaml());
        if (p > 1)
            System.out.printf("pipeline        %s, %d micro-batches per step: bubble %.2f%% of the step ((pp-1)/(v*m+pp-1) = %d/%d)%n",
                    v == 1 ? "1F1B over " + p + " stages" : "interleaved, " + p + " ranks x " + v + " virtual stages",
                    micro, 100 * lay.bubble(), p - 1, v * micro + p - 1);
        boolean distributed = par.zero1() && d > 1;
        String shardOf = distributed ? String.format(", 1/%d shard: %,d of %,d", d, (big.params() + d - 1) / d, big.params()) : "";
        System.out.printf("optimizer       %s%n", distributed
                ? "distributed (ZeRO-1 + sharded master weights over dp " + d + "): reduce-scatter gradients, update the shard, all-gather the "
                  + (cb == 4 ? "fp32" : "bf16") + " weights"
                : par.zero1() ? "one data-parallel rank: not sharded" : "replicated (parallel.zero1=false): all-reduce gradients");
        System.out.println(p == 1 ? "per-device memory:" : String.format("per-device memory of pipeline rank %d of %d (the largest; %d layers, %d %s in flight):",
                big.rank(), p, big.layers(), big.inFlight(), v == 1 ? "micro-batches" : "chunk forwards"));
        System.out.printf("  master        %s  (fp32 weights%s)%n", MemoryPlan.gib(big.masterBytes()), shardOf);
        System.out.printf("  compute copy  %s  (%s)%n", MemoryPlan.gib(big.computeCopyBytes()), big.computeCopyBytes() == 0 ? "none: fp32 compute uses the master"
                : (cb == 4 ? "fp32" : "bf16") + ", all " + String.format("%,d", big.params()));
        System.out.printf("  gradients     %s  (fp32, all %,d)%n", MemoryPlan.gib(big.gradsBytes()), big.params());
        System.out.printf("  AdamW state   %s  (fp32 m and v%s)%n", MemoryPlan.gib(big.optimizerBytes()), distributed ? shardOf : "");
        StringBuilder acts = new StringBuilder(), totals = new StringBuilder();
        for (Recompute r : Recompute.values()) {
            Stage s = MemoryPlan.stages(m, mb, seq, new Layout(t, d, p, v, par.sequenceParallel(), par.zero1(), r, micro), cb).get(big.rank());
            String sep = r.ordinal() == 0 ? "" : " | ";
            acts.append(sep).append(MemoryPlan.gib(s.activationsBytes())).append("  (").append(r.yaml()).append(")");
            totals.append(sep).append(MemoryPlan.gib(s.totalBytes())).append("  (").append(r.yaml()).append(")");
        }
        System.out.printf("  activations   %s%n", acts);
        System.out.printf("  total         %s%n", totals);
        if (p > 1) {
            StringBuilder per = new StringBuilder();
            for (Stage s : stages) per.append(s.rank() == 0 ? "" : ", ").append("rank ").append(s.rank()).append(" ").append(MemoryPlan.gib(s.totalBytes()));
            System.out.printf("per stage       %s (recompute %s)%n", per, rc.yaml());
        }
        if (deviceGib != null) {
            long dev = (long) (deviceGib * (1L << 30));
            long budget = cb == 4 ? dev : MemoryPlan.usableBytes(dev);          // GPU: minus context/workspace reserve
            String verdict = MemoryPlan.checkFits(m, mb, seq, lay, global, cb, budget, gpusPerNode);
            System.out.printf("fits %.0f GiB?   %s%n", deviceGib, verdict == null
                    ? "yes (recompute " + rc.yaml() + ", " + MemoryPlan.gib(budget) + " available)"
                    : "no: " + verdict);
        }
        return 0;
    }
}
