package dev.midtrain.model;

import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.OptimConfig;
import dev.midtrain.config.Placement;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Where every parameter lives in the one contiguous slab (fp32 master weights; the gradient slab, the AdamW m and v
 * slabs and the compute copy share the same layout), named by the Hugging Face Llama convention. This is the
 * engine's one Hugging Face name table: import, export, checkpoints and tensor-parallel sharding all read it.
 *
 * <p>Order, chosen so that fused GEMMs read one matrix: per layer q,k,v are adjacent (one [(NH+2NKV)*HD, C] matrix)
 * and gate,up are adjacent (one [2F, C] matrix).
 * <pre>
 * model.embed_tokens.weight                      [V/tp, C]            vocab-parallel (rows)
 * per layer i:
 *   model.layers.i.self_attn.q_proj.weight       [NH/tp*HD, C]        column-parallel (rows of the HF matrix)
 *   model.layers.i.self_attn.k_proj.weight       [NKVl*HD, C]         column-parallel; replicated when tp > NKV
 *   model.layers.i.self_attn.v_proj.weight       [NKVl*HD, C]
 *   model.layers.i.self_attn.o_proj.weight       [C, NH/tp*HD]        row-parallel (columns)
 *   model.layers.i.mlp.gate_proj.weight          [F/tp, C]            column-parallel
 *   model.layers.i.mlp.up_proj.weight            [F/tp, C]            column-parallel
 *   model.layers.i.mlp.down_proj.weight          [C, F/tp]            row-parallel
 *   model.layers.i.input_layernorm.weight        [C]                  replicated
 *   model.layers.i.post_attention_layernorm.weight [C]                replicated
 * model.norm.weight                              [C]                  replicated
 * lm_head.weight                                 [V/tp, C]            vocab-parallel; absent when tied
 * </pre>
 * NKVl = NKV/tp when tp <= NKV, else 1 (each KV head is replicated over tp/NKV ranks): see {@link Placement}.
 *
 * @param tp   tensor-parallel degree the layout is for
 * @param rank this layout's tensor-parallel rank
 */
public record ParamLayout(ModelConfig model, int tp, int rank, List<Tensor> tensors, long numel, Stage stage) {

    /** The whole model (no pipeline). */
    public ParamLayout(ModelConfig model, int tp, int rank, List<Tensor> tensors, long numel) {
        this(model, tp, rank, tensors, numel, Stage.all(model));
    }

    /**
     * What one pipeline rank holds: its layers (global indices, ascending; Hugging Face names keep them), the
     * embedding lookup (the first stage) and the final norm + LM head (the last). A tied embedding on a last stage
     * that is not also the first is a copy of the first stage's ({@link #tiedCopy}): both get the sum of their
     * gradients, so the copies stay equal.
     */
    public record Stage(int[] layers, boolean embed, boolean head) {
        public static Stage all(ModelConfig m) {
            int[] l = new int[m.nLayers()];
            for (int i = 0; i < l.length; i++) l[i] = i;
            return new Stage(l, true, true);
        }

        /** Pipeline rank {@code rank} of {@code pp} with {@code virtual} chunks: layers of virtual stages rank, rank + pp, ... */
        public static Stage of(ModelConfig m, int pp, int virtual, int rank) {
            int L = m.nLayers(), per = L / (pp * virtual);
            if (per * pp * virtual != L) throw new IllegalArgumentException(pp + " stages x " + virtual + " virtual do not divide " + L + " layers");
            int[] l = new int[per * virtual];
            for (int c = 0, k = 0; c < virtual; c++)
                for (int i = 0; i < per; i++) l[k++] = (c * pp + rank) * per + i;
            return new Stage(l, rank == 0, rank == pp - 1);
        }

        public boolean whole(ModelConfig m) { return embed && head && layers.length == m.nLayers(); }

        @Override
        public boolean equals(Object o) {
            return o instanceof Stage x && java.util.Arrays.equals(layers, x.layers) && embed == x.embed && head == x.head;
        }

        @Override
        public int hashCode() { return java.util.Arrays.hashCode(layers) * 31 + (embed ? 2 : 0) + (head ? 1 : 0); }

        @Override
        public String toString() { return "Stage" + java.util.Arrays.toString(layers) + (embed ? " embed" : "") + (head ? " head" : ""); }
    }

    /** Whether this layout's embedding tensor is the last stage's copy of a tied embedding (not counted in the norm twice). */
    public boolean tiedCopy() { return model.tiedEmbeddings() && stage.head() && !stage.embed(); }

    /** How a tensor is split over tensor-parallel ranks. */
    public enum Split { REPLICATED, ROWS, COLUMNS }

    /**
     * One parameter tensor of this rank.
     *
     * @param name         Hugging Face name
     * @param offset       element offset in the slab
     * @param shape        this rank's shape (row-major)
     * @param fullShape    the unsharded Hugging Face shape
     * @param split        how the full tensor is split
     * @param shardIndex   which slice of the full tensor this rank holds along the split dimension
     * @param shardCount   how many slices the full tensor is cut into along the split dimension
     * @param weightDecay  whether AdamW applies weight decay (set by the optimizer config; default: not for norms)
     */
    public record Tensor(String name, long offset, int[] shape, int[] fullShape, Split split, int shardIndex, int shardCount,
                         boolean weightDecay) {
        public long numel() {
            long n = 1;
            for (int d : shape) n *= d;
            return n;
        }

        /** Elements of the unsharded Hugging Face tensor. */
        public long fullNumel() {
            long n = 1;
            for (int d : fullShape) n *= d;
            return n;
        }

        /**
         * Where element {@code fullIndex} (row-major in the unsharded tensor) sits in this rank's shard, or -1 when
         * this rank does not hold it. Monotonic in fullIndex over the elements held, so streaming the full tensor in
         * order yields the shard in order.
         */
        public long localIndex(long fullIndex) {
            if (fullIndex < 0 || fullIndex >= fullNumel()) throw new IndexOutOfBoundsException(name + ": element " + fullIndex);
            switch (split) {
                case REPLICATED: return fullIndex;
                case ROWS: {
                    long rowElems = fullNumel() / fullShape[0], first = (long) shardIndex * shape[0] * rowElems;
                    long local = fullIndex - first;
                    return local >= 0 && local < numel() ? local : -1;
                }
                default: {      // COLUMNS of a matrix [rows, cols]
                    int cols = fullShape[1], w = shape[1];
                    long row = fullIndex / cols, col = fullIndex % cols - (long) shardIndex * w;
                    return col >= 0 && col < w ? row * w + col : -1;
                }
            }
        }

        /** This rank's shard of the full tensor (row-major values of {@link #fullShape}). */
        public float[] shard(float[] full) {
            if (full.length != fullNumel()) throw new IllegalArgumentException(name + ": " + full.length + " values for " + fullNumel() + " elements");
            float[] out = new float[Math.toIntExact(numel())];
            for (int i = 0; i < full.length; i++) {
                long l = localIndex(i);
                if (l >= 0) out[(int) l] = full[i];
            }
            return out;
        }

        /** Writes this rank's shard {@code local} into its place in the full tensor (the inverse of {@link #shard}). */
        public void unshardInto(float[] full, float[] local) {
            if (full.length != fullNumel() || local.length != numel())
                throw new IllegalArgumentException(name + ": shard of " + local.length + " / full of " + full.length + " values");
            for (int i = 0; i < full.length; i++) {
                long l = localIndex(i);
                if (l >= 0) full[i] = local[(int) l];
            }
        }
    }

    public static ParamLayout of(ModelConfig m, int tp, int rank, List<String> noDecaySubstrings) {
        return of(new Placement(m, tp, rank), noDecaySubstrings);
    }

    /** The layout of one tensor-parallel rank; the per-rank sizes are the placement's. */
    public static ParamLayout of(Placement pl, List<String> noDecaySubstrings) { return of(pl, noDecaySubstrings, Stage.all(pl.model())); }

    /** The layout of one tensor-parallel rank of one pipeline stage: only the stage's tensors, in the same order. */
    public static ParamLayout of(Placement pl, List<String> noDecaySubstrings, Stage stage) {
        ModelConfig m = pl.model();
        int tp = pl.tp(), rank = pl.rank();
        int C = m.dim(), HD = m.headDim(), V = m.vocabSize(), F = m.ffnDim();
        int nh = pl.heads(), nkv = pl.kvHeads(), f = pl.ffn(), v = pl.vocab();
        int kvShards = pl.kvShards(), kvIndex = pl.kvIndex();

        Builder b = new Builder(noDecaySubstrings == null ? OptimConfig.defaultWeightDecayExclude() : noDecaySubstrings);
        if (stage.embed() || (stage.head() && m.tiedEmbeddings()))
            b.add("model.embed_tokens.weight", new int[]{v, C}, new int[]{V, C}, Split.ROWS, rank, tp);
        for (int i : stage.layers()) {
            String p = "model.layers." + i + ".";
            b.add(p + "self_attn.q_proj.weight", new int[]{nh * HD, C}, new int[]{m.nHeads() * HD, C}, Split.ROWS, rank, tp);
            b.add(p + "self_attn.k_proj.weight", new int[]{nkv * HD, C}, new int[]{m.nKvHeads() * HD, C}, Split.ROWS, kvIndex, kvShards);
            b.add(p + "self_attn.v_proj.weight", new int[]{nkv * HD, C}, new int[]{m.nKvHeads() * HD, C}, Split.ROWS, kvIndex, kvShards);
            b.add(p + "self_attn.o_proj.weight", new int[]{C, nh * HD}, new int[]{C, m.nHeads() * HD}, Split.COLUMNS, rank, tp);
            b.add(p + "mlp.gate_proj.weight", new int[]{f, C}, new int[]{F, C}, Split.ROWS, rank, tp);
            b.add(p + "mlp.up_proj.weight", new int[]{f, C}, new int[]{F, C}, Split.ROWS, rank, tp);
            b.add(p + "mlp.down_proj.weight", new int[]{C, f}, new int[]{C, F}, Split.COLUMNS, rank, tp);
            b.add(p + "input_layernorm.weight", new int[]{C}, new int[]{C}, Split.REPLICATED, 0, 1);
            b.add(p + "post_attention_layernorm.weight", new int[]{C}, new int[]{C}, Split.REPLICATED, 0, 1);
        }
        if (stage.head()) {
            b.add("model.norm.weight", new int[]{C}, new int[]{C}, Split.REPLICATED, 0, 1);
            if (!m.tiedEmbeddings()) b.add("lm_head.weight", new int[]{v, C}, new int[]{V, C}, Split.ROWS, rank, tp);
        }
        return new ParamLayout(m, tp, rank, Collections.unmodifiableList(b.tensors), b.offset, stage);
    }

    public static ParamLayout of(ModelConfig m) { return of(m, 1, 0, List.of("norm")); }

    /** What this rank holds (heads, KV heads, FFN and vocabulary slices). */
    public Placement placement() { return new Placement(model, tp, rank); }

    /** The same tensor-parallel rank's layout of the whole model (initialization draws every tensor in its order). */
    public ParamLayout whole(List<String> noDecaySubstrings) { return of(placement(), noDecaySubstrings); }

    private static final class Builder {
        final List<String> noDecay;
        final List<Tensor> tensors = new ArrayList<>();
        long offset;

        Builder(List<String> noDecay) { this.noDecay = noDecay; }

        void add(String name, int[] shape, int[] full, Split split, int idx, int count) {
            boolean decay = noDecay.stream().noneMatch(name::contains);
            Tensor t = new Tensor(name, offset, shape, full, split, idx, count, decay);
            tensors.add(t);
            offset += t.numel();
        }
    }

    public Map<String, Tensor> byName() {
        Map<String, Tensor> map = new LinkedHashMap<>();
        for (Tensor t : tensors) map.put(t.name(), t);
        return map;
    }

    public Tensor get(String name) {
        for (Tensor t : tensors) if (t.name().equals(name)) return t;
        throw new IllegalArgumentException("no parameter named " + name);
    }

    /**
     * Slab offsets of what the model's kernels read: the embedding, the final norm, the LM head (the embedding when
     * tied) and per layer the fused q|k|v and gate|up matrices (their parts are adjacent), o, down and the two norms.
     */
    public record Offsets(long embed, long normF, long head, long[] qkv, long[] o, long[] gateUp, long[] down, long[] ln1, long[] ln2) {}

    public Offsets offsets() {
        int L = stage.layers().length;                   // local layers: index l is global layer stage.layers()[l]
        boolean hasEmbed = stage.embed() || tiedCopy();
        long embed = hasEmbed ? offset("model.embed_tokens.weight") : -1;
        long[] qkv = new long[L], o = new long[L], gateUp = new long[L], down = new long[L], ln1 = new long[L], ln2 = new long[L];
        for (int l = 0; l < L; l++) {
            String p = "model.layers." + stage.layers()[l] + ".";
            qkv[l] = offset(p + "self_attn.q_proj.weight");
            o[l] = offset(p + "self_attn.o_proj.weight");
            gateUp[l] = offset(p + "mlp.gate_proj.weight");
            down[l] = offset(p + "mlp.down_proj.weight");
            ln1[l] = offset(p + "input_layernorm.weight");
            ln2[l] = offset(p + "post_attention_layernorm.weight");
            Tensor q = get(p + "self_attn.q_proj.weight"), k = get(p + "self_attn.k_proj.weight"), gate = get(p + "mlp.gate_proj.weight");
            if (offset(p + "self_attn.k_proj.weight") != qkv[l] + q.numel() || offset(p + "self_attn.v_proj.weight") != qkv[l] + q.numel() + k.numel()
                    || offset(p + "mlp.up_proj.weight") != gateUp[l] + gate.numel())
                throw new IllegalStateException("ParamLayout does not keep q|k|v and gate|up adjacent");
        }
        long normF = stage.head() ? offset("model.norm.weight") : -1;
        long head = !stage.head() ? -1 : model.tiedEmbeddings() ? embed : offset("lm_head.weight");
        return new Offsets(embed, normF, head, qkv, o, gateUp, down, ln1, ln2);
    }

    /** Element offset of a named parameter. */
    public long offset(String name) { return get(name).offset(); }

    /** Slab elements [start, end) of consecutive tensors that all take weight decay or all do not. */
    public record DecayRun(long start, long end, boolean weightDecay) {}

    /** Maximal runs of consecutive tensors with the same weight-decay flag (AdamW is one call per run). */
    public List<DecayRun> decayRuns() {
        List<DecayRun> runs = new ArrayList<>();
        for (Tensor t : tensors) {
            DecayRun last = runs.isEmpty() ? null : runs.get(runs.size() - 1);
            if (last != null && last.weightDecay() == t.weightDecay() && last.end() == t.offset())
                runs.set(runs.size() - 1, new DecayRun(last.start(), t.offset() + t.numel(), last.weightDecay()));
            else runs.add(new DecayRun(t.offset(), t.offset() + t.numel(), t.weightDecay()));
        }
        return runs;
    }
}
