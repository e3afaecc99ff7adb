package dev.midtrain.parallel;

import dev.midtrain.config.Placement;
import dev.midtrain.parallel.Communicator.Dtype;
import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.KernelAbi;
import dev.midtrain.model.Llama;
import dev.midtrain.model.OptimizerShard;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.model.ParamLayout.Split;
import dev.midtrain.model.ParamLayout.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * The optimizer-side communication of one rank, around {@link dev.midtrain.train.Trainer#step}:
 * <ol>
 *   <li>{@link #sumOverDp}: the step's valid-token count and loss sum over the data-parallel group (host scalars).</li>
 *   <li>{@link #reduceGradients}: k/v weight gradients summed over the KV group when a KV head is replicated
 *       (tp > NKV: each replica saw only its own query heads); then the data-parallel reduction: reduce-scatter into
 *       this rank's ZeRO-1 shard, or a plain all-reduce (parallel.zero1 = false).</li>
 *   <li>{@link #gradNormSquared}: each gradient element counted once in the world: a rank sums the squares of its
 *       data-parallel shard of the tensors it owns (replicated norms only on tensor-parallel rank 0, a replicated KV
 *       head only on its first replica), then one world all-reduce of the scalar.</li>
 *   <li>{@link #gatherParameters}: after AdamW updated the shard of the fp32 master weights (the only part this rank
 *       holds: Megatron's distributed optimizer) and of the compute copy, all-gather the compute copy over the
 *       data-parallel group.</li>
 * </ol>
 * With one rank every call is a no-op or a local computation.
 */
public final class Parallelism implements AutoCloseable {
    private final ProcessGroups g;          // null: a single rank
    private final Llama model;
    private final Backend be;
    private final Llama.Slabs s;
    private final long shardElems;          // dp shard length (ZeRO-1 reduce-scatter / all-gather count)
    private final boolean zero1;
    private final List<long[]> normRanges;  // [start, end) slab ranges this rank counts in the norm
    private final List<long[]> kvRanges;    // [start, end) of each layer's k|v gradients (replicated KV heads)
    private final long scalars, normScratch;
    private final float[] host = new float[3];
    private final PipelineStage pipeline;   // null without pipeline stages
    private final long[] tiedRange;         // [start, end) of a tied embedding's gradient summed over the embedding group, or null

    /** One rank, no communication. */
    public static Parallelism single(Llama model) { return new Parallelism(null, model, false); }

    public Parallelism(ProcessGroups groups, Llama model, boolean zero1) { this(groups, model, zero1, null); }

    /**
     * @param zero1    parallel.zero1: the model must have been built with {@link #optimizerShard} of the same setting
     * @param schedule the pipeline schedule (null: no pipeline); the model is then this rank's stage
     */
    public Parallelism(ProcessGroups groups, Llama model, boolean zero1, PipelineSchedule schedule) {
        this.g = groups;
        this.model = model;
        this.be = model.backend();
        this.s = model.slabs();
        this.zero1 = zero1;
        ParamLayout layout = model.layout();
        Topology t = groups == null ? new Topology(1, 1, 0, 1) : groups.topology();
        if ((schedule == null ? 1 : schedule.pp()) != t.pp()) throw new IllegalArgumentException("schedule vs topology " + t);
        this.pipeline = t.pp() > 1 ? new PipelineStage(model, groups.pp(), schedule) : null;
        if (layout.tp() != t.tp() || layout.rank() != t.tpRank())
            throw new IllegalArgumentException("layout tp rank " + layout.rank() + " of " + layout.tp() + " vs topology " + t);
        Placement pl = layout.placement();
        if (pl.kvReplicas() != t.kvReplicas()) throw new IllegalArgumentException(pl + " vs topology " + t);
        OptimizerShard expect = optimizerShard(layout.numel(), t, zero1);
        if (!s.shard().equals(expect)) throw new IllegalArgumentException("model optimizer shard " + s.shard() + ", expected " + expect);
        this.shardElems = OptimizerShard.shardElems(layout.numel(), t.dp());

        long dpLo = t.dp() == 1 ? 0 : Math.min(layout.numel(), shardElems * t.dpRank());
        long dpHi = t.dp() == 1 ? layout.numel() : Math.min(layout.numel(), shardElems * (t.dpRank() + 1));
        normRanges = new ArrayList<>();
        kvRanges = new ArrayList<>();
        for (Tensor x : layout.tensors()) {
            boolean kv = x.name().endsWith("k_proj.weight") || x.name().endsWith("v_proj.weight");
            boolean owned = x.split() == Split.REPLICATED ? t.tpRank() == 0 : !(kv && pl.kvReplicas() > 1) || pl.kvRank() == 0;
            if (layout.tiedCopy() && x.name().equals("model.embed_tokens.weight")) owned = false;   // counted on the first stage
            if (owned) addRange(normRanges, Math.max(dpLo, x.offset()), Math.min(dpHi, x.offset() + x.numel()));
            if (kv && pl.kvReplicas() > 1) addRange(kvRanges, x.offset(), x.offset() + x.numel());
        }
        scalars = be.alloc(4L * host.length);
        boolean tied = layout.model().tiedEmbeddings() && t.inEmbeddingGroup();
        tiedRange = tied ? new long[]{layout.offset("model.embed_tokens.weight"), layout.offset("model.embed_tokens.weight") + layout.get("model.embed_tokens.weight").numel()} : null;
        normScratch = be.alloc(4L * KernelAbi.NORM_SCRATCH_FLOATS);
    }

    /** The optimizer shard a rank at {@code t} uses (pass it to the Llama constructor). */
    public static OptimizerShard optimizerShard(long numel, Topology t, boolean zero1) {
        return OptimizerShard.of(numel, t.dp(), t.dpRank(), zero1);
    }

    private static void addRange(List<long[]> ranges, long lo, long hi) {
        if (hi <= lo) return;
        long[] last = ranges.isEmpty() ? null : ranges.get(ranges.size() - 1);
        if (last != null && last[1] == lo) last[1] = hi;
        else ranges.add(new long[]{lo, hi});
    }

    private boolean dpActive() { return g != null && g.dp().size() > 1; }

    /** Sum of a non-negative count over the data-parallel group, exact below 2^36 (two fp32 parts of 12 + 24 bits). */
    public long sumOverDp(long count) {
        if (!dpActive()) return count;
        if (count < 0 || count >= (1L << 36) / g.dp().size()) throw new IllegalArgumentException("count " + count + " out of range");
        host[0] = count >>> 12;
        host[1] = count & 0xFFF;
        float[] r = allReduceHost(2);
        return ((long) r[0] << 12) + (long) r[1];
    }

    /** Per-key sums of non-negative counts over the data-parallel group (every rank must hold the same keys). */
    public java.util.Map<String, Long> sumOverDp(java.util.Map<String, Long> counts) {
        if (!dpActive()) return counts;
        java.util.Map<String, Long> out = new java.util.TreeMap<>();
        for (var e : new java.util.TreeMap<>(counts).entrySet()) out.put(e.getKey(), sumOverDp((long) e.getValue()));
        return out;
    }

    /** Sum of a host value over the data-parallel group (fp32: for metrics such as the step's loss sum). */
    public double sumOverDp(double value) {
        if (!dpActive()) return value;
        host[0] = (float) value;
        return allReduceHost(1)[0];
    }

    private float[] allReduceHost(int n) {
        float[] v = new float[n];
        System.arraycopy(host, 0, v, 0, n);
        be.upload(scalars, v);
        g.dp().allReduceSum(scalars, n, Dtype.F32);
        be.download(v, scalars);
        return v;
    }

    /**
     * The stop vote of a step boundary: true on every rank when any rank wants to stop (a signal on any process,
     * --stop-at-step). One all-reduce-max of one value over the world; bounded by the watchdog like every collective.
     */
    public boolean agreeStop(boolean wish) {
        if (g == null || g.world().size() == 1) return wish;
        float[] v = {wish ? 1f : 0f};
        be.upload(scalars, v);
        g.world().allReduceMax(scalars, 1, Dtype.F32);
        be.download(v, scalars);
        return v[0] != 0f;
    }

    /** KV-replica sum, then the data-parallel reduce-scatter (ZeRO-1) or all-reduce of the gradient slab. */
    public void reduceGradients() {
        if (g == null) return;
        if (tiedRange != null)          // the two copies of a tied embedding (first and last stage): both get the sum
            g.emb().allReduceSum(s.grads() + 4 * tiedRange[0], tiedRange[1] - tiedRange[0], Dtype.F32);
        if (g.kv().size() > 1)
            for (long[] r : kvRanges) g.kv().allReduceSum(s.grads() + 4 * r[0], r[1] - r[0], Dtype.F32);
        if (g.dp().size() > 1) {
            if (zero1) g.dp().reduceScatterSum(s.grads() + 4 * shardElems * g.topology().dpRank(), s.grads(), shardElems, Dtype.F32);
            else g.dp().allReduceSum(s.grads(), s.numel(), Dtype.F32);
        }
    }

    /** Squared global gradient norm, each element of the full model counted once (after {@link #reduceGradients}). */
    public double gradNormSquared() {
        be.fillF32(scalars, 0f, 1);
        for (long[] r : normRanges) be.globalNormSquared(scalars, normScratch, s.grads() + 4 * r[0], r[1] - r[0]);
        if (g != null && g.world().size() > 1) g.world().allReduceSum(scalars, 1, Dtype.F32);
        float[] v = new float[1];
        be.download(v, scalars);
        return v[0];
    }

    /** After the optimizer updated this rank's shard: all-gather the weights (ZeRO-1) and refresh the compute copy. */
    public void gatherParameters() {
        if (!dpActive() || !zero1) return;
        // distributed optimizer: AdamW wrote this rank's shard of the compute copy; gather everyone's (bf16 on CUDA)
        int xb = be.floatxBytes();
        g.dp().allGather(s.paramsX(), s.paramsX() + (long) xb * shardElems * g.topology().dpRank(), shardElems, Dtype.floatX(xb));
    }

    public ProcessGroups groups() { return g; }

    /** This rank's pipeline stage runner, or null without pipeline stages. */
    public PipelineStage pipeline() { return pipeline; }

    @Override
    public void close() {
        if (pipeline != null) pipeline.close();
        be.free(scalars);
        be.free(normScratch);
    }
}
