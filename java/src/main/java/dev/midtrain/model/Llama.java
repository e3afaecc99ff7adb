package dev.midtrain.model;

import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.TrainConfig.Recompute;
import dev.midtrain.config.Placement;
import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.DeviceBuffers;
import org.bytedeco.javacpp.FloatPointer;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Llama-3 for training, written out layer by layer (llm.c style): no autograd, every forward kernel has its backward
 * called in exact reverse order. One instance owns one device's parameters, gradients, AdamW moments and the
 * activations of one micro-batch geometry [B, T].
 *
 * <p>Memory: five slabs with {@link ParamLayout}'s layout, each one allocation so that zeroing, the global norm,
 * AdamW and checkpoint I/O are single passes: fp32 master weights, fp32 gradients, fp32 AdamW m and v, and the
 * floatX compute copy (on CPU floatX is fp32 and the compute copy IS the master slab; on CUDA a bf16 slab that
 * adamw_update rewrites). Weight gradients are accumulated (+=) into the fp32 gradient slab by the GEMMs, so calling
 * {@link #forwardBackward} on several micro-batches accumulates their gradients.
 *
 * <p>Tensor parallelism: dimensions are this rank's {@link Placement} (NH, NKV, F and V are the rank's shares)
 * and {@link TpHooks} is called where Megatron communicates. With tp == 1 the hooks are no-ops. The embedding is
 * vocabulary-parallel: a guard row before the embedding shard and the id remapping ({@link TpHooks#embeddingGuardRows},
 * {@link TpHooks#toEmbeddingRows}).
 *
 * <p>Data parallelism: an {@link OptimizerShard} sizes the slabs (padded for the reduce-scatter / all-gather) and
 * the AdamW moments (only this rank's ZeRO-1 shard).
 *
 * <p>Dimension legend: B micro-batch sequences, T sequence length, N = B*T tokens, C model dim, NH/NKV query/kv
 * heads, HD head dim, QKV = (NH+2NKV)*HD, A = NH*HD, F FFN size, V vocabulary (shard).
 */
public final class Llama implements AutoCloseable {
    /** Targets equal to this are not trained on (torch's default ignore_index). Inputs never take it. */
    public static final int IGNORE_INDEX = -100;

    private final Backend be;
    private final ModelConfig cfg;
    private final ParamLayout layout;
    private final Placement placement;
    private final TpHooks tp;
    private final boolean recompute;                    // full: store each block's input only
    private final Recompute mode;
    private final int xb;                               // bytes per floatX
    private final int B, T, N, C, L, V, vocabStart, chunk;
    private final int guard;                            // elements of the zero row before the embedding (vocab-parallel), else 0
    private final boolean lookup, hasHead;              // pipeline: first stage (embedding lookup), last stage (norm, head, loss)
    private final OptimizerShard shard;
    private final boolean masterSharded;               // fp32 master weights only for the shard (distributed optimizer)
    private final float eps;

    // ------------------------------------------------------------------------------------ slabs (one allocation each)
    private final long numel;
    private final long params, paramsX, grads, adamM, adamV;    // paramsX == params when floatX is fp32

    // element offsets of the embedding, final norm and head in the slabs; each layer's weights and gradients
    private final long oEmbed, oNormF, oHead;
    private final Block block;
    private final Block.Weights[] w, g;                 // [L]: floatX compute weights, fp32 gradients
    private final Block.Causal attention;

    // ------------------------------------------------------------------------------------ activations of one micro-batch
    private final long[] res;                           // L+1 x floatX[N,C]: block inputs; res[L] = final residual
    private final Block.Activations[] act;              // [L]: per layer, or (recompute) one shared set
    private final long lnf, rstdf;                      // floatX[N,C], float[N]
    private final long logits;                          // floatX[chunk, V], dlogits in place
    private final long ceLse, ceTarget, losses;         // float[N] each
    private final long tokens, targets;                 // int32[N] each
    private final long ropeCos, ropeSin;                // float[T, HD/2]
    // backward buffers
    private final long dres;                            // floatX[N,C]: gradient of the residual stream
    private final Block.Scratch scratch;                // dtmp (gradient of a norm output), dmid, dwide, norm, attn
    // host staging (no per-step allocation)
    private final float[] lossHost;
    private final int[] intStage;

    private final DeviceBuffers buffers;

    /**
     * @param layout          this rank's parameter layout (its weight-decay flags are the optimizer's)
     * @param microBatchSeqs  B
     * @param seqLen          T (at most model.max_seq_len)
     * @param recompute       store only each block's input and recompute the block in the backward
     * @param tp              tensor-parallel hooks ({@link TpHooks#NONE} when tp == 1)
     */
    public Llama(Backend be, ParamLayout layout, int microBatchSeqs, int seqLen, boolean recompute, TpHooks tp) {
        this(be, layout, microBatchSeqs, seqLen, recompute, tp, OptimizerShard.full(layout.numel()));
    }

    /** @param mode what the backward recomputes (none, selective, full) */
    public Llama(Backend be, ParamLayout layout, int microBatchSeqs, int seqLen, Recompute mode, TpHooks tp) {
        this(be, layout, microBatchSeqs, seqLen, mode, tp, OptimizerShard.full(layout.numel()));
    }

    /** @param shard this rank's optimizer shard and the padded slab length (data parallelism, ZeRO-1) */
    public Llama(Backend be, ParamLayout layout, int microBatchSeqs, int seqLen, boolean recompute, TpHooks tp, OptimizerShard shard) {
        this(be, layout, microBatchSeqs, seqLen, recompute ? Recompute.FULL : Recompute.NONE, tp, shard);
    }

    /**
     * @param mode what the backward recomputes: nothing, the norms and SwiGLU outputs (selective: see
     *             {@link Recompute#SELECTIVE}), or whole blocks from their inputs (full)
     */
    public Llama(Backend be, ParamLayout layout, int microBatchSeqs, int seqLen, Recompute mode, TpHooks tp, OptimizerShard shard) {
        this.be = be;
        this.mode = mode;
        boolean recompute = mode == Recompute.FULL;
        this.shard = shard;
        this.cfg = layout.model();
        this.layout = layout;
        this.tp = tp;
        this.recompute = recompute;
        if (seqLen > cfg.maxSeqLen()) throw new IllegalArgumentException("seq_len " + seqLen + " > max_seq_len " + cfg.maxSeqLen());
        xb = be.floatxBytes();
        B = microBatchSeqs; T = seqLen; N = B * T;
        this.buffers = new DeviceBuffers(be, N, N);                      // token ids in, per-token losses out
        C = cfg.dim(); L = layout.stage().layers().length;              // this stage's layers (all of them without a pipeline)
        lookup = layout.stage().embed();
        hasHead = layout.stage().head();
        placement = layout.placement();
        V = placement.vocab();
        vocabStart = placement.vocabStart();
        chunk = Math.min(N, MemoryPlan.LOGITS_CHUNK_TOKENS);
        eps = (float) cfg.normEps();

        ParamLayout.Offsets off = layout.offsets();                    // q|k|v: one [QKV, C] matrix; gate|up: one [2F, C]
        oEmbed = off.embed(); oNormF = off.normF(); oHead = off.head();

        numel = layout.numel();
        if (shard.slabElems() < numel) throw new IllegalArgumentException("optimizer shard slab " + shard.slabElems() + " < " + numel + " parameters");
        guard = lookup ? TpHooks.embeddingGuardRows(placement) * C : 0;
        if (guard > 0 && oEmbed != 0) throw new IllegalStateException("vocab-parallel embedding needs the embedding first in the layout");
        long slab = shard.slabElems();
        // Distributed optimizer (ZeRO-1 over dp > 1): the fp32 master weights exist only for this rank's shard; the
        // compute copy is a slab of its own, all-gathered after each update (an fp32 copy on the CPU, so that the
        // CPU runs the same code path). params is then a base address whose [start, start + count) alone is backed.
        masterSharded = shard.start() != 0 || shard.count() != numel;
        if (masterSharded) {
            long backed = allocF(shard.count());
            be.fillF32(backed, 0f, shard.count());
            params = backed - 4L * shard.start();
        } else {
            params = allocF(guard + slab) + 4L * guard; // [zero row | slab]: the row is the lookup target of foreign ids
            be.fillF32(params - 4L * guard, 0f, guard + slab);
        }
        grads = allocF(guard + slab) + 4L * guard;      // [scratch row | slab]: foreign ids' gradients land in the row
        adamM = allocF(shard.count());
        adamV = allocF(shard.count());
        paramsX = xb == 4 && !masterSharded ? params : allocX(guard + slab) + (long) xb * guard;
        if (paramsX != params) be.fillX(paramsX - (long) xb * guard, 0f, guard + slab);
        be.fillF32(grads - 4L * guard, 0f, guard + slab);
        be.fillF32(adamM, 0f, shard.count());
        be.fillF32(adamV, 0f, shard.count());

        long NC = (long) N * C;
        res = new long[L + 1];
        for (int l = 0; l <= L; l++) res[l] = allocX(NC);
        block = new Block(be, layout, tp, Block.Products.GEMM);
        w = new Block.Weights[L]; g = new Block.Weights[L];
        for (int l = 0; l < L; l++) { w[l] = Block.Weights.of(off, l, paramsX, xb); g[l] = Block.Weights.of(off, l, grads, 4); }
        act = new Block.Activations[L];                 // recompute: one set of block activations, rebuilt per layer
        for (int l = 0; l < L; l++)
            act[l] = l == 0 ? block.activations(buffers, N) : switch (mode) {
                case FULL -> act[0];
                case SELECTIVE -> block.selectiveActivations(buffers, N, act[0]);   // ln1, ln2, swi shared: rebuilt in the backward
                case NONE -> block.activations(buffers, N);
            };
        lnf = allocX(NC); rstdf = allocF(N);
        logits = allocX((long) chunk * V);
        ceLse = allocF(N); ceTarget = allocF(N); losses = allocF(N);
        tokens = allocF(N); targets = allocF(N);       // int32: same size as float
        dres = allocX(NC);
        scratch = block.scratch(buffers, B, T);
        lossHost = new float[N];
        intStage = new int[N];

        // RoPE tables float[T, HD/2] (ModelConfig.ropeTables: rope_scaling applied, double, stored fp32)
        float[][] rope = cfg.ropeTables(T);
        ropeCos = allocF(rope[0].length);
        ropeSin = allocF(rope[1].length);
        be.upload(ropeCos, rope[0]);
        be.upload(ropeSin, rope[1]);
        attention = block.causal(ropeCos, ropeSin, B, T);
    }

    // ================================================================================================ forward

    /**
     * Forward and backward of one micro-batch. {@code batch} is int32[B, T+1] (inputs = row[0:T], targets =
     * row[1:T+1], a target may be {@link #IGNORE_INDEX}); {@code dloss} = d(step loss)/d(one token's loss), i.e.
     * 1 / (valid targets of the whole optimizer step). Gradients are accumulated (+=) into the gradient slab.
     *
     * @return the sum of the token losses of this micro-batch (not scaled by dloss)
     */
    public double forwardBackward(int[] batch, float dloss) { return forwardBackward(batch, dloss, null); }

    /**
     * As {@link #forwardBackward(int[], float)} with the targets of the rows where {@code keepRows[b]} is false
     * ignored (their inputs still run, their loss and gradient are 0): one source's part of a blended micro-batch,
     * for the gradient diagnostics. {@code keepRows} null keeps every row.
     */
    public double forwardBackward(int[] batch, float dloss, boolean[] keepRows) {
        loadBatch(batch, keepRows);
        forward();
        double lossSum = head(dloss, true, null);
        backward();
        return lossSum;
    }

    /** Forward only: the summed token loss of one micro-batch (validation). No gradient is touched. */
    public double evaluate(int[] batch) {
        loadBatch(batch);
        forward();
        return head(0f, false, null);
    }

    /**
     * Per-row loss sums of the last {@link #forwardBackward} or {@link #evaluate}: out[b] = sum of the token losses of
     * row b (ignored targets count 0), float[B] into double. For per-source metrics.
     */
    public void rowLossSums(double[] out) {
        if (out.length != B) throw new IllegalArgumentException("out has " + out.length + " rows, expected " + B);
        for (int b = 0; b < B; b++) {
            double sum = 0;
            for (int t = 0; t < T; t++) sum += lossHost[b * T + t];
            out[b] = sum;
        }
    }

    /** Forward only, returning the logits float[N, V] (row-major over [B, T, V]); for tests. */
    public float[] logits(int[] batch) {
        float[] out = new float[N * V];
        loadBatch(batch);
        forward();
        head(0f, false, out);
        return out;
    }

    private void forward() {
        if (!lookup || !hasHead) throw new IllegalStateException("a pipeline stage runs stageForward / stageBackward");
        be.embeddingForward(res[0], tokens, wX(oEmbed) - (long) guard * xb, N, C, V + (guard > 0 ? 1 : 0)); // res[0][N,C] = wte[tokens]
        tp.allReduceX(res[0], (long) N * C);                          // vocab-parallel embedding: rows from one rank each
        for (int l = 0; l < L; l++) blockForward(l);
    }

    /** Block l: res[l+1][N,C] = block(res[l][N,C]), saving (or, with recompute, overwriting) its activations. */
    private void blockForward(int l) { block.forward(w[l], act[l], attention, res[l], res[l + 1], N); }

    /**
     * Final RMSNorm, LM head and cross-entropy in token chunks of at most {@link MemoryPlan#LOGITS_CHUNK_TOKENS}
     * (the logits buffer holds one chunk). With {@code backward}: dlogits in place, the head's weight gradient, and
     * dres = d(loss)/d(res[L]). {@code logitsOut} (tests) receives each chunk's logits before they are overwritten.
     *
     * @return the summed token loss
     */
    private double head(float dloss, boolean backward, float[] logitsOut) {
        long W = wX(oHead), dW = gF(oHead);                                              // [V,C]: lm_head or tied wte
        be.rmsnormForward(lnf, rstdf, res[L], wX(oNormF), N, C, eps);                     // lnf[N,C], rstdf[N]
        for (int c0 = 0; c0 < N; c0 += chunk) {
            int n = Math.min(chunk, N - c0);
            long lnfC = lnf + (long) c0 * C * xb, lseC = ceLse + 4L * c0, tlC = ceTarget + 4L * c0, tgC = targets + 4L * c0;
            be.gemm(false, true, n, V, C, 1f, lnfC, W, 0f, logits, false);                // logits[n,V] = lnf[n,C] @ W[V,C]^T
            if (logitsOut != null) copyChunkToHost(logitsOut, c0, n);
            be.crossentropyForward(lseC, tlC, logits, tgC, n, V, vocabStart, IGNORE_INDEX);
            tp.combineCrossEntropy(lseC, tlC, n);
            be.crossentropyBackward(logits, losses + 4L * c0, logits, lseC, tlC, tgC, dloss, n, V, vocabStart, IGNORE_INDEX);
            if (backward) {
                be.gemm(true, false, V, C, n, 1f, logits, lnfC, 1f, dW, true);            // dW[V,C] += dlogits^T @ lnf[n,C]
                be.gemm(false, false, n, C, V, 1f, logits, W, 0f, scratch.dtmp() + (long) c0 * C * xb, false); // dlnf[n,C] = dlogits @ W
            }
        }
        if (backward) {
            tp.allReduceX(scratch.dtmp(), (long) N * C);                                            // vocab-parallel head
            be.fillX(dres, 0f, (long) N * C);
            be.rmsnormBackward(dres, gF(oNormF), scratch.norm(), scratch.dtmp(), res[L], wX(oNormF), rstdf, N, C); // dres += d/d res[L]
        }
        buffers.getFloats(lossHost, losses, N);
        double sum = 0;
        for (int i = 0; i < N; i++) sum += lossHost[i];
        return sum;
    }

    // =============================================================================================== backward

    /** Blocks in reverse, then the embedding. On entry dres = d loss / d res[L]. */
    private void backward() {
        backwardLayers(0, L);
        be.embeddingBackward(gF(oEmbed) - 4L * guard, tokens, dres, N, C, V + (guard > 0 ? 1 : 0)); // dwte[tokens] += dres
    }

    /** Local blocks [from, to) in reverse; dres holds d/d res[to] on entry and d/d res[from] on exit. */
    private void backwardLayers(int from, int to) {
        for (int l = to - 1; l >= from; l--) {
            if (recompute && l < to - 1) blockForward(l);   // the shared buffers still hold block to-1 from the forward
            else if (mode == Recompute.SELECTIVE) block.recomputeCheap(w[l], act[l], res[l], N);
            blockBackward(l);
        }
    }

    // ========================================================================================= pipeline stage

    /**
     * Pipeline stage forward of local layers [from, to) (one model chunk; local index l is global layer
     * {@code layout.stage().layers()[l]}) on micro-batch {@code batch}: the input is the embedding of its tokens when
     * from == 0 on the first stage, else {@code input} (floatX[N,C], the previous stage's output). Returns the address
     * of the chunk's output floatX[N,C] (valid until the next call). No gradient is touched.
     */
    public long stageForward(int[] batch, int from, int to, long input) {
        loadBatch(batch);
        chunkInput(from, input);
        for (int l = from; l < to; l++) blockForward(l);
        return res[to];
    }

    /**
     * Pipeline stage backward of local layers [from, to) on micro-batch {@code batch}: recomputes the chunk's forward
     * from its input (the stage stores only the input of each micro-batch in flight), then, on the last chunk of the
     * last stage, the final norm, head and loss with d(step loss)/d(token loss) = {@code dloss}; elsewhere takes
     * d loss / d output from {@code gradOut} (floatX[N,C]). Then the chunk's blocks in reverse (weight gradients +=),
     * and the embedding's backward (first chunk of the first stage) or d loss / d input into {@code gradIn}.
     *
     * @return the micro-batch's summed token loss on the last chunk of the last stage, else 0
     */
    public double stageBackward(int[] batch, int from, int to, long input, long gradOut, long gradIn, float dloss) {
        loadBatch(batch);
        chunkInput(from, input);
        for (int l = from; l < to; l++) blockForward(l);
        double loss = 0;
        if (to == L && hasHead) loss = head(dloss, true, null);
        else be.copyBytes(dres, gradOut, (long) N * C * xb);
        backwardLayers(from, to);
        if (from == 0 && lookup)
            be.embeddingBackward(gF(oEmbed) - 4L * guard, tokens, dres, N, C, V + (guard > 0 ? 1 : 0));
        else be.copyBytes(gradIn, dres, (long) N * C * xb);
        return loss;
    }

    private void chunkInput(int from, long input) {
        if (from == 0 && lookup) {
            be.embeddingForward(res[0], tokens, wX(oEmbed) - (long) guard * xb, N, C, V + (guard > 0 ? 1 : 0));
            tp.allReduceX(res[0], (long) N * C);
        } else be.copyBytes(res[from], input, (long) N * C * xb);
    }

    /** Local layers of this stage. */
    public int localLayers() { return L; }

    /** Block l in reverse: dres holds d/d res[l+1] on entry and d/d res[l] on exit; weight gradients +=. */
    private void blockBackward(int l) { block.backward(w[l], g[l], act[l], attention, res[l], dres, scratch, N); }

    // =========================================================================================== parameters

    /** Gradients = 0 (one pass over the slab); call before the first micro-batch of a step. */
    public void zeroGrad() { be.fillF32(grads - 4L * guard, 0f, guard + shard.slabElems()); }

    /**
     * Deterministic initialization from {@code seed}: every matrix ~ N(0, std^2), with the residual-output
     * projections (o_proj, down_proj) scaled by 1/sqrt(2L) (GPT-2/Llama practice), RMSNorm weights = 1. Each tensor
     * draws from its own SplittableRandom stream (split from the seed in layout order), so a tensor's values do not
     * depend on how the others are stored. AdamW moments are zeroed. Under tensor parallelism every rank streams
     * each full tensor and keeps its shard, so the sharded model equals the unsharded one.
     */
    public void initialize(long seed, double std) {
        SplittableRandom root = new SplittableRandom(seed);
        int bufLen = 1 << 16;
        float[] buf = new float[bufLen];
        java.util.Map<String, ParamLayout.Tensor> mine = layout.byName();
        // every tensor of the whole model draws its stream in the whole layout's order, so a pipeline stage's tensors
        // (and the last stage's copy of a tied embedding) get the values of the unsplit model
        List<ParamLayout.Tensor> all = layout.stage().whole(cfg) ? layout.tensors() : layout.whole(List.of()).tensors();
        try (FloatPointer host = new FloatPointer(bufLen)) {
            for (ParamLayout.Tensor any : all) {
                SplittableRandom r = root.split();
                ParamLayout.Tensor t = mine.get(any.name());
                if (t == null) continue;
                boolean norm = t.shape().length == 1;
                double s = t.name().contains("o_proj") || t.name().contains("down_proj") ? std / Math.sqrt(2.0 * cfg.nLayers()) : std;
                long kept = 0;                              // shard elements written so far
                for (long done = 0; done < t.fullNumel(); done += bufLen) {
                    int n = (int) Math.min(bufLen, t.fullNumel() - done), k = 0;
                    for (int i = 0; i < n; i++) {
                        float v = norm ? 1f : (float) (r.nextGaussian() * s);
                        if (t.numel() == t.fullNumel() || t.localIndex(done + i) >= 0) buf[k++] = v;
                    }
                    if (k == 0) continue;
                    host.put(buf, 0, k);
                    stageMaster(t.offset() + kept, host.address(), k);
                    kept += k;
                }
            }
        }
        be.fillF32(adamM, 0f, shard.count());
        be.fillF32(adamV, 0f, shard.count());
        finishStaging();
    }

    /**
     * Sets the fp32 master weights from a host slab of all {@code layout.numel()} elements (a checkpoint, a Hugging
     * Face load) and refreshes the compute copy; a sharded master keeps only its shard.
     */
    public void setMasterWeights(long hostAddress) {
        stageMaster(0, hostAddress, numel);
        finishStaging();
    }

    /**
     * Writes slab elements [off, off + n) from host memory: into the master, or, when the master is sharded, into
     * the gradient slab used as a full fp32 staging buffer plus the part inside the shard into the master.
     */
    private void stageMaster(long off, long hostAddress, long n) {
        if (!masterSharded) { be.copyHostToDevice(params + 4L * off, hostAddress, 4L * n); return; }
        be.copyHostToDevice(grads + 4L * off, hostAddress, 4L * n);
        long a = Math.max(off, shard.start()), b = Math.min(off + n, shard.start() + shard.count());
        if (b > a) be.copyHostToDevice(params + 4L * a, hostAddress + 4L * (a - off), 4L * (b - a));
    }

    /** After staging: the compute copy from the full staged values, then the gradient slab zeroed again. */
    private void finishStaging() {
        if (!masterSharded) { syncComputeCopy(); return; }
        be.castF32ToX(paramsX, grads, numel);
        be.fillF32(grads, 0f, numel);
        be.synchronize();
    }

    /** Sets one named parameter's fp32 master values (host array of its shape); call {@link #syncComputeCopy} after. */
    public void setParam(String name, float[] values) {
        ParamLayout.Tensor t = layout.get(name);
        if (values.length != t.numel()) throw new IllegalArgumentException(name + ": " + values.length + " values for " + t.numel() + " elements");
        if (masterSharded) throw new IllegalStateException("setParam: the master weights are sharded (distributed optimizer); use setMasterWeights");
        be.upload(params + 4L * t.offset(), values);
    }

    /** One parameter's current fp32 values (from the fp32 compute copy when the master is sharded, CPU only). */
    public float[] getParam(String name) {
        if (!masterSharded) return download(params, name);
        if (xb != 4) throw new IllegalStateException("getParam: the master weights are sharded and the compute copy is not fp32");
        return download(paramsX, name);
    }

    public float[] getGrad(String name) { return download(grads, name); }

    private float[] download(long slab, String name) {
        ParamLayout.Tensor t = layout.get(name);
        float[] out = new float[Math.toIntExact(t.numel())];
        be.download(out, slab + 4L * t.offset());
        return out;
    }

    /** Refreshes the floatX compute copy from the fp32 master weights (no-op when they are the same slab). */
    public void syncComputeCopy() {
        if (masterSharded) be.castF32ToX(paramsX + (long) xb * shard.start(), params + 4L * shard.start(), shard.count());   // the rest: all-gather
        else if (paramsX != params) be.castF32ToX(paramsX, params, numel);
        be.synchronize();
    }

    /** The slabs, for the optimizer and checkpointing: addresses in this backend's memory, all with {@link #layout()}. */
    public Slabs slabs() { return new Slabs(params, paramsX, grads, adamM, adamV, numel, shard); }

    /**
     * @param params   fp32 master weights
     * @param paramsX  floatX compute copy; equal to {@code params} when floatX is fp32 (then pass 0 as param_x)
     * @param grads    fp32 gradients
     * @param m        fp32 AdamW first moments of elements [shard.start, shard.start + shard.count) of the layout
     * @param v        fp32 AdamW second moments, same range
     * @param numel    parameters in the layout (the weight and gradient slabs hold shard.slabElems >= numel)
     * @param shard    the part of the slab this rank's optimizer updates
     */
    public record Slabs(long params, long paramsX, long grads, long m, long v, long numel, OptimizerShard shard) {
        public boolean separateComputeCopy() { return paramsX != params; }

        /** Whether only [shard.start, shard.start + shard.count) of {@code params} exists (distributed optimizer). */
        public boolean masterSharded() { return shard.start() != 0 || shard.count() != numel; }
    }

    public ParamLayout layout() { return layout; }
    public ModelConfig config() { return cfg; }
    public Backend backend() { return be; }
    public int microBatchSeqs() { return B; }
    public int seqLen() { return T; }
    public boolean recompute() { return recompute; }

    // ================================================================================================= batch

    /** Splits int32[B, T+1] into inputs and targets on the host, validates them, and uploads both. */
    private void loadBatch(int[] batch) { loadBatch(batch, null); }

    private void loadBatch(int[] batch, boolean[] keepRows) {
        if (keepRows != null && keepRows.length != B) throw new IllegalArgumentException("keepRows has " + keepRows.length + " rows, expected " + B);
        if (batch.length != B * (T + 1))
            throw new IllegalArgumentException("micro-batch has " + batch.length + " tokens, expected " + B + " x " + (T + 1));
        int Vfull = cfg.vocabSize();
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                int in = batch[b * (T + 1) + t], tg = batch[b * (T + 1) + t + 1];
                if (in < 0 || in >= Vfull) throw new IllegalArgumentException("token id " + in + " at [" + b + "," + t + "] outside [0, " + Vfull + ")");
                if ((tg < 0 || tg >= Vfull) && tg != IGNORE_INDEX)
                    throw new IllegalArgumentException("target id " + tg + " at [" + b + "," + t + "] outside [0, " + Vfull + ")");
            }
        for (int b = 0; b < B; b++) System.arraycopy(batch, b * (T + 1), intStage, b * T, T);
        TpHooks.toEmbeddingRows(placement, intStage, N);                 // vocab-parallel: own ids -> 1..V, others -> 0
        buffers.putInts(tokens, intStage, N);
        for (int b = 0; b < B; b++) System.arraycopy(batch, b * (T + 1) + 1, intStage, b * T, T);
        if (keepRows != null)
            for (int b = 0; b < B; b++) if (!keepRows[b]) java.util.Arrays.fill(intStage, b * T, (b + 1) * T, IGNORE_INDEX);
        buffers.putInts(targets, intStage, N);
    }

    /** Valid (not ignored) targets in a micro-batch int32[B, T+1]. */
    public static int validTargets(int[] batch, int B, int T) {
        int n = 0;
        for (int b = 0; b < B; b++)
            for (int t = 1; t <= T; t++) if (batch[b * (T + 1) + t] != IGNORE_INDEX) n++;
        return n;
    }

    private void copyChunkToHost(float[] out, int c0, int n) {
        long count = (long) n * V;
        if (xb == 4) {
            try (FloatPointer h = new FloatPointer(count)) {
                be.copyDeviceToHost(h.address(), logits, 4L * count);
                h.get(out, c0 * V, (int) count);
            }
        } else {
            float[] tmp = new float[(int) count];
            be.downloadX(tmp, logits);
            System.arraycopy(tmp, 0, out, c0 * V, (int) count);
        }
    }

    // ================================================================================================ memory

    private long wX(long offset) { return paramsX + offset * xb; }
    private long gF(long offset) { return grads + 4L * offset; }

    private long allocF(long floats) { return buffers.f32(floats); }
    private long allocX(long elems) { return buffers.x(elems); }

    @Override
    public void close() { buffers.close(); }
}
