package dev.midtrain.infer;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.DeviceBuffers;
import dev.midtrain.model.Block;
import dev.midtrain.model.Llama;
import dev.midtrain.model.MemoryPlan;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.model.TpHooks;

import java.util.List;
import java.util.function.ObjIntConsumer;

/**
 * Llama-3 forward only, for inference: the training model's {@link Block#forward} without gradients or optimizer
 * state, with one set of activation buffers reused by every layer and, for decoding, a key/value cache in place of
 * the causal attention. Two paths through the same kernel ABI (CPU and CUDA):
 * <ul>
 *   <li>{@link #tokenLogprobs}: a batch of token sequences of different lengths, right-padded to the longest; causal
 *       attention never lets a position see the padding after it, and padded positions are excluded from the result
 *       (their targets are ignored), so each sequence's log-probabilities equal those of an unpadded pass.</li>
 *   <li>{@link #prefill} / {@link #decode}: key/value-cache decoding (kernel {@code kvcache_attention_forward}:
 *       RoPE at absolute positions, cache append, GQA attention over the cache). The cache has {@link #slots} slots,
 *       one sequence each with its own length. A prompt is prefilled into its slot alone (in chunks of at most
 *       {@code maxTokens}); {@link #decode(int[], int[])} then advances M sequences by one token in one pass: every
 *       weight matrix is one GEMM with M rows, attention reads each sequence's own slot (per-sequence positions).
 *       Slots are handed out by {@link #acquireSlot} / {@link #releaseSlot} (thread-safe); the single-sequence calls
 *       without a slot argument use slot 0.</li>
 * </ul>
 * Weights: the fp32 layout of {@link ParamLayout} (tp = 1), held as floatX (fp32 on CPU, bf16 on CUDA).
 * A model is used by one thread at a time.
 *
 * <p>Dimension legend: B sequences, T padded length, N = B*T tokens (at most maxTokens), C model dim, NH/NKV heads,
 * HD head dim, QKV = (NH+2NKV)*HD, A = NH*HD, F FFN size, V vocabulary, Tmax = cache length (model.max_seq_len).
 */
public final class InferenceModel implements AutoCloseable {
    private final Backend be;
    private final ModelConfig cfg;
    private final ParamLayout layout;
    private final int xb, maxTokens, slots, C, L, NH, NKV, HD, QKV, A, V, Tmax, chunk;
    private final float eps;
    private final long paramsX;
    private final long oEmbed, oNormF, oHead;
    private final Block block;
    private final Block.Weights[] w;                     // [L] floatX
    // activations for up to maxTokens tokens, shared by all layers
    private final Block.Activations act;
    private final long x, ln, rstd, tmp;                 // x: the residual stream; ln, rstd, tmp: act's ln1, rstd1, resMid
    private final long logits, ceLse, ceTarget, tokens, targets, pos;
    private final long ropeCos, ropeSin;                 // float[Tmax, HD/2]
    private final long[] kv;                             // per layer floatX[S, Tmax, 2*NKV, HD]: S = slots
    private final long slotElems;                        // Tmax*2*NKV*HD: one slot of one layer's cache
    private final int[] cached;                          // [S] positions held by each slot
    private final boolean[] taken;                       // [S] handed out by acquireSlot
    private final DeviceBuffers buffers;
    private final long logitsF32;                        // float[chunk*V]: logits rows cast to fp32 (CUDA)

    /**
     * @param params    fp32 weights in {@code layout}'s order (host memory; copied, the caller keeps ownership)
     * @param maxTokens tokens of one forward call (B*T of a scoring batch, a prefill chunk); sizes the activations
     */
    public InferenceModel(Backend be, ParamLayout layout, HostFloats params, int maxTokens) {
        this(be, layout, params, maxTokens, 1);
    }

    /**
     * @param slots  key/value cache slots: sequences decoded together (each costs L*Tmax*2*NKV*HD floatX); at most
     *               {@code maxTokens}
     */
    public InferenceModel(Backend be, ParamLayout layout, HostFloats params, int maxTokens, int slots) {
        if (layout.tp() != 1) throw new IllegalArgumentException("inference runs one rank (tp 1), layout has tp " + layout.tp());
        if (maxTokens < 1) throw new IllegalArgumentException("maxTokens must be >= 1, got " + maxTokens);
        if (slots < 1 || slots > maxTokens) throw new IllegalArgumentException("slots must be in [1, maxTokens " + maxTokens + "], got " + slots);
        this.be = be;
        this.layout = layout;
        this.cfg = layout.model();
        this.maxTokens = maxTokens;
        this.slots = slots;
        xb = be.floatxBytes();
        C = cfg.dim(); L = cfg.nLayers(); NH = cfg.nHeads(); NKV = cfg.nKvHeads(); HD = cfg.headDim();
        QKV = (NH + 2 * NKV) * HD; A = NH * HD; V = cfg.vocabSize(); Tmax = cfg.maxSeqLen();
        eps = (float) cfg.normEps();
        chunk = Math.min(maxTokens, MemoryPlan.LOGITS_CHUNK_TOKENS);
        buffers = new DeviceBuffers(be, maxTokens, Math.max(maxTokens, V));

        long numel = layout.numel();
        paramsX = buffers.x(numel);
        if (xb == 4) be.copyHostToDevice(paramsX, addressOf(params), 4L * numel);
        else {                                           // fp32 host -> fp32 device staging -> floatX
            long stage = be.alloc(4L * numel);
            try { be.copyHostToDevice(stage, addressOf(params), 4L * numel); be.castF32ToX(paramsX, stage, numel); be.synchronize(); }
            finally { be.free(stage); }
        }
        ParamLayout.Offsets off = layout.offsets();                    // q|k|v: one [QKV, C] matrix; gate|up: one [2F, C]
        oEmbed = off.embed(); oNormF = off.normF(); oHead = off.head();
        block = new Block(be, layout, TpHooks.NONE, Block.Products.LINEAR);
        w = new Block.Weights[L];
        for (int l = 0; l < L; l++) w[l] = Block.Weights.of(off, l, paramsX, xb);
        long N = maxTokens;
        x = buffers.x(N * C);
        act = block.forwardOnlyActivations(buffers, N);
        ln = act.ln1(); rstd = act.rstd1(); tmp = act.resMid();
        logits = buffers.x((long) chunk * V);
        ceLse = buffers.f32(N); ceTarget = buffers.f32(N);
        tokens = buffers.f32(N); targets = buffers.f32(N); pos = buffers.f32(slots);
        logitsF32 = xb == 4 ? logits : buffers.f32((long) chunk * V);
        slotElems = (long) Tmax * 2 * NKV * HD;
        kv = new long[L];
        for (int l = 0; l < L; l++) kv[l] = buffers.x(slots * slotElems);
        cached = new int[slots];
        taken = new boolean[slots];

        // RoPE tables float[Tmax, HD/2], as model.Llama's (ModelConfig.ropeTables)
        float[][] rope = cfg.ropeTables(Tmax);
        ropeCos = buffers.f32(rope[0].length);
        ropeSin = buffers.f32(rope[1].length);
        be.upload(ropeCos, rope[0]);
        be.upload(ropeSin, rope[1]);
    }

    public ModelConfig config() { return cfg; }
    public Backend backend() { return be; }
    /** Tokens one forward call may hold (B*T of a scoring batch). */
    public int maxTokens() { return maxTokens; }
    /** Key/value cache slots: the most sequences {@link #decode(int[], int[])} advances at once. */
    public int slots() { return slots; }
    /** Positions currently in slot 0 of the key/value cache. */
    public int cachedPositions() { return cached[0]; }
    /** Positions currently in {@code slot}. */
    public int cachedPositions(int slot) { return cached[checkSlot(slot)]; }

    /** A free slot, emptied and marked taken, or -1 when all are taken. */
    public synchronized int acquireSlot() {
        for (int s = 0; s < slots; s++)
            if (!taken[s]) { taken[s] = true; cached[s] = 0; return s; }
        return -1;
    }

    /** Gives {@code slot} back to {@link #acquireSlot}. */
    public synchronized void releaseSlot(int slot) { taken[checkSlot(slot)] = false; }

    // ============================================================================================ batched scoring

    /**
     * Log-probabilities of each next token: for sequence s of length n >= 2, element t (0..n-2) is
     * log p(seq[t+1] | seq[0..t]). The sequences are right-padded to the longest and run as one batch
     * [B, T]; B*T must be at most {@link #maxTokens} and T at most model.max_seq_len.
     */
    public float[][] tokenLogprobs(List<int[]> seqs) {
        int[] all = new int[seqs.size()];
        for (int b = 0; b < all.length; b++) all[b] = seqs.get(b).length - 1;
        return tokenLogprobs(seqs, all);
    }

    /**
     * The last {@code last[b]} elements of {@link #tokenLogprobs(List)}'s row b (1 <= last[b] <= n-1): a choice's
     * continuation when scoring. Only those rows go through the final norm, the LM head and the log-softmax (in
     * multiple-choice scoring, a few tokens of each ~100-token sequence: the vocabulary GEMM shrinks with them).
     */
    public float[][] tokenLogprobs(List<int[]> seqs, int[] last) {
        int B = seqs.size(), T = 0;
        if (last.length != B) throw new IllegalArgumentException(last.length + " continuation lengths for " + B + " sequences");
        for (int b = 0; b < B; b++) {
            int[] s = seqs.get(b);
            if (s.length < 2) throw new IllegalArgumentException("a scored sequence needs at least 2 tokens, got " + s.length);
            if (last[b] < 1 || last[b] > s.length - 1) throw new IllegalArgumentException("last " + last[b] + " of a " + s.length + "-token sequence: need 1.." + (s.length - 1));
            T = Math.max(T, s.length - 1);
        }
        if (B == 0) return new float[0][];
        if (T > Tmax) throw new IllegalArgumentException("sequence of " + (T + 1) + " tokens exceeds max_seq_len + 1 = " + (Tmax + 1));
        if ((long) B * T > maxTokens) throw new IllegalArgumentException(B + " x " + T + " tokens exceed the batch capacity " + maxTokens);
        int N = B * T, R = 0;
        for (int k : last) R += k;
        int[] in = new int[N], tg = new int[R];
        for (int b = 0, r = 0; b < B; b++) {
            int[] s = seqs.get(b);
            for (int t = 0; t < T; t++) in[b * T + t] = t < s.length - 1 ? checkId(s[t]) : 0;   // padding: any valid id, never seen by real rows
            for (int t = s.length - 1 - last[b]; t < s.length - 1; t++) tg[r++] = checkId(s[t + 1]);
        }
        buffers.putInts(targets, tg, R);
        forwardFull(in, B, T);
        long rowBytes = (long) C * xb;                                          // gather the scored rows: tmp[R,C]
        for (int b = 0, r = 0; b < B; r += last[b], b++)
            be.copyBytes(tmp + r * rowBytes, x + ((long) b * T + seqs.get(b).length - 1 - last[b]) * rowBytes, last[b] * rowBytes);
        be.rmsnormForward(ln, rstd, tmp, wX(oNormF), R, C, eps);
        for (int c0 = 0; c0 < R; c0 += chunk) {
            int n = Math.min(chunk, R - c0);
            be.linear(logits, ln + (long) c0 * C * xb, wX(oHead), n, V, C);        // logits[n,V] = ln @ W[V,C]^T
            be.crossentropyForward(ceLse + 4L * c0, ceTarget + 4L * c0, logits, targets + 4L * c0, n, V, 0, Llama.IGNORE_INDEX);
        }
        float[] lse = new float[R], tl = new float[R];
        buffers.getFloats(lse, ceLse, R);
        buffers.getFloats(tl, ceTarget, R);
        float[][] out = new float[B][];
        for (int b = 0, r = 0; b < B; b++) {
            out[b] = new float[last[b]];
            for (int t = 0; t < last[b]; t++, r++) out[b][t] = tl[r] - lse[r];  // log softmax at the target
        }
        return out;
    }

    /**
     * Logits float[V] after the last token of {@code seq}, recomputing the whole sequence without the cache (one
     * causal pass; the cache is not touched). The reference that cached decoding is tested against.
     */
    public float[] recomputeLogits(int[] seq) {
        if (seq.length == 0 || seq.length > Math.min(Tmax, maxTokens))
            throw new IllegalArgumentException("sequence of " + seq.length + " tokens: need 1.." + Math.min(Tmax, maxTokens));
        for (int t : seq) checkId(t);
        forwardFull(seq, 1, seq.length);
        return rowLogits(seq.length - 1, 1)[0];
    }

    /**
     * The logits after each prefix of {@code seq}: {@code sink} gets (float[V] logits after seq[0..t], t) for t from
     * {@code from} to n-1, in order, from one causal pass without the cache (no slot is touched). Host memory: one
     * row at a time.
     */
    public void positionLogits(int[] seq, int from, ObjIntConsumer<float[]> sink) {
        if (seq.length == 0 || seq.length > Math.min(Tmax, maxTokens))
            throw new IllegalArgumentException("sequence of " + seq.length + " tokens: need 1.." + Math.min(Tmax, maxTokens));
        if (from < 0 || from >= seq.length) throw new IllegalArgumentException("from " + from + " outside [0, " + seq.length + ")");
        for (int t : seq) checkId(t);
        forwardFull(seq, 1, seq.length);
        rowLogits(from, seq.length - from, (row, i) -> sink.accept(row, from + i));
    }

    /** Embedding and every block for in = int32[B,T] (positions 0..T-1 per sequence); hidden states left in x. */
    private void forwardFull(int[] in, int B, int T) {
        int N = B * T;
        buffers.putInts(tokens, in, N);
        be.embeddingForward(x, tokens, wX(oEmbed), N, C, V);                   // x[N,C] = wte[tokens]
        Block.Attention causal = block.causal(ropeCos, ropeSin, B, T);        // padding sits after every real row
        for (int l = 0; l < L; l++) block.forward(w[l], act, causal, x, x, N);
    }

    // ====================================================================================== key/value cache decoding

    /** Empties slot 0 (a new sequence). */
    public void reset() { cached[0] = 0; }

    /** Empties {@code slot}. */
    public void reset(int slot) { cached[checkSlot(slot)] = 0; }

    /** {@link #prefill(int, int[])} into slot 0. */
    public float[] prefill(int[] toks) { return prefill(0, toks); }

    /** {@link #decode(int[], int[])} of one token in slot 0. */
    public float[] decode(int token) { return decode(new int[]{0}, new int[]{token})[0]; }

    /**
     * Appends {@code toks} to the sequence cached in {@code slot} (in chunks of at most {@link #maxTokens}, the slot
     * alone) and returns the logits float[V] after the last one.
     */
    public float[] prefill(int slot, int[] toks) {
        checkSlot(slot);
        if (toks.length == 0) throw new IllegalArgumentException("prefill of no tokens");
        if (cached[slot] + toks.length > Tmax)
            throw new IllegalArgumentException((cached[slot] + toks.length) + " positions exceed max_seq_len " + Tmax);
        for (int t : toks) checkId(t);
        int n = 0;
        for (int c0 = 0; c0 < toks.length; c0 += maxTokens) {
            n = Math.min(maxTokens, toks.length - c0);
            int[] part = new int[n];
            System.arraycopy(toks, c0, part, 0, n);
            buffers.putInts(tokens, part, n);
            buffers.putInts(pos, new int[]{cached[slot]}, 1);
            be.embeddingForward(x, tokens, wX(oEmbed), n, C, V);
            int[] one = {slot};
            for (int l = 0; l < L; l++) block.forward(w[l], act, cached(l, one, n), x, x, n);
            cached[slot] += n;
        }
        return rowLogits(n - 1, 1)[0];
    }

    /**
     * Prefills B prompts together, {@code prompts[i]} appended to the sequence in slot {@code slotIds[i]}, and returns
     * the logits float[B][V] after each one's last token. The prompts are right-padded to the longest (T) and run as
     * one [B, T] pass: every weight matrix is one GEMM with B*T rows, attention runs once per run of consecutive slot
     * ids. Padding rows write keys and values past their sequence's end, which its next tokens overwrite; attention
     * never reads past a row's own position, so padding changes nothing but the GEMMs' M (float rounding, as for
     * {@link #decode(int[], int[])}). Needs B*T <= {@link #maxTokens} and every slot's length + T <= max_seq_len.
     */
    public float[][] prefill(int[] slotIds, int[][] prompts) {
        int B = slotIds.length, T = 0;
        if (B == 0 || B != prompts.length) throw new IllegalArgumentException("prefill: " + B + " slots, " + prompts.length + " prompts");
        for (int[] p : prompts) {
            if (p.length == 0) throw new IllegalArgumentException("prefill of no tokens");
            T = Math.max(T, p.length);
        }
        if ((long) B * T > maxTokens) throw new IllegalArgumentException(B + " x " + T + " prompt tokens exceed maxTokens " + maxTokens);
        int N = B * T;
        int[] in = new int[N], p = new int[B], last = new int[B];
        boolean[] seen = new boolean[slots];
        for (int b = 0; b < B; b++) {
            int s = checkSlot(slotIds[b]);
            if (seen[s]) throw new IllegalArgumentException("prefill: slot " + s + " listed twice");
            seen[s] = true;
            if (cached[s] + T > Tmax) throw new IllegalArgumentException("slot " + s + ": " + (cached[s] + T) + " positions exceed max_seq_len " + Tmax);
            for (int t = 0; t < prompts[b].length; t++) in[b * T + t] = checkId(prompts[b][t]);   // padding: id 0
            p[b] = cached[s];
            last[b] = b * T + prompts[b].length - 1;
        }
        buffers.putInts(tokens, in, N);
        buffers.putInts(pos, p, B);
        be.embeddingForward(x, tokens, wX(oEmbed), N, C, V);                 // x[B*T,C]
        for (int l = 0; l < L; l++) block.forward(w[l], act, cached(l, slotIds, T), x, x, N);
        for (int b = 0; b < B; b++) cached[slotIds[b]] += prompts[b].length;
        float[][] out = new float[B][];
        for (int b = 0; b < B; b++)                                          // the last real row of each prompt
            be.rmsnormForward(ln + (long) b * C * xb, rstd + 4L * b, x + (long) last[b] * C * xb, wX(oNormF), 1, C, eps);
        head(B, (row, i) -> out[i] = row);
        return out;
    }

    /**
     * Layer l's attention with the cache for rows [B, Tq] of qkv, sequence b in slot slotIds[b] at position pos[b]:
     * RoPE, append, attend ({@code kvcache_attention_forward}), one kernel call per run of consecutive slots.
     */
    private Block.Attention cached(int l, int[] slotIds, int Tq) {
        return a -> {
            int B = slotIds.length;
            for (int i0 = 0; i0 < B; ) {
                int i1 = i0 + 1;
                while (i1 < B && slotIds[i1] == slotIds[i1 - 1] + 1) i1++;
                be.kvcacheAttentionForward(a.atty() + (long) i0 * Tq * A * xb, kvSlot(l, slotIds[i0]), a.qkv() + (long) i0 * Tq * QKV * xb,
                        ropeCos, ropeSin, pos + 4L * i0, i1 - i0, Tq, Tmax, NH, NKV, HD);
                i0 = i1;
            }
        };
    }

    /**
     * One decode step for M = {@code slotIds.length} sequences at once: appends {@code toks[i]} to the sequence in
     * slot {@code slotIds[i]} and returns the logits float[M][V] of each one's next token. Every weight matrix is one
     * GEMM with M rows; attention runs once per run of consecutive slot ids (the kernel takes B consecutive slots with
     * positions pos[B]), so listing the slots in ascending order makes it one call. Slot ids must be distinct.
     *
     * <p>Row i's result equals a single-sequence decode of the same slot up to the GEMM's summation order, which a
     * BLAS may choose by M: the logits agree to float rounding, not bit for bit (InferenceModelTest measures it).
     */
    public float[][] decode(int[] slotIds, int[] toks) {
        int M = slotIds.length;
        if (M == 0 || M != toks.length) throw new IllegalArgumentException("decode: " + M + " slots, " + toks.length + " tokens");
        if (M > maxTokens) throw new IllegalArgumentException("decode of " + M + " sequences exceeds maxTokens " + maxTokens);
        int[] p = new int[M];
        boolean[] seen = new boolean[slots];
        for (int i = 0; i < M; i++) {
            int s = checkSlot(slotIds[i]);
            if (seen[s]) throw new IllegalArgumentException("decode: slot " + s + " listed twice");
            seen[s] = true;
            checkId(toks[i]);
            if (cached[s] + 1 > Tmax) throw new IllegalArgumentException("slot " + s + ": " + (cached[s] + 1) + " positions exceed max_seq_len " + Tmax);
            p[i] = cached[s];
        }
        buffers.putInts(tokens, toks, M);
        buffers.putInts(pos, p, M);
        be.embeddingForward(x, tokens, wX(oEmbed), M, C, V);                 // x[M,C]
        for (int l = 0; l < L; l++) block.forward(w[l], act, cached(l, slotIds, 1), x, x, M); // one GEMM per weight for all M
        for (int s : slotIds) cached[s]++;
        return rowLogits(0, M);
    }

    /** Final norm and LM head of rows r0..r0+n-1 of x: logits float[n][V]. */
    private float[][] rowLogits(int r0, int n) {
        float[][] out = new float[n][];
        rowLogits(r0, n, (row, i) -> out[i] = row);
        return out;
    }

    /** Final norm and LM head of rows r0..r0+n-1 of x: sink gets (float[V], i). */
    private void rowLogits(int r0, int n, ObjIntConsumer<float[]> sink) {
        be.rmsnormForward(ln, rstd, x + (long) r0 * C * xb, wX(oNormF), n, C, eps);
        head(n, sink);
    }

    /** LM head of rows 0..n-1 of ln, in chunks of {@code chunk} rows: sink gets (float[V] logits, i). */
    private void head(int n, ObjIntConsumer<float[]> sink) {
        for (int c0 = 0; c0 < n; c0 += chunk) {
            int m = Math.min(chunk, n - c0);
            be.linear(logits, ln + (long) c0 * C * xb, wX(oHead), m, V, C);  // logits[m,V] = ln @ W[V,C]^T
            if (xb != 4) be.castXToF32(logitsF32, logits, (long) m * V);
            for (int i = 0; i < m; i++) {
                float[] row = new float[V];
                buffers.getFloats(row, logitsF32 + 4L * i * V, V);
                sink.accept(row, c0 + i);
            }
        }
    }

    private long kvSlot(int l, int slot) { return kv[l] + (long) slot * slotElems * xb; }

    private int checkSlot(int s) {
        if (s < 0 || s >= slots) throw new IllegalArgumentException("slot " + s + " outside [0, " + slots + ")");
        return s;
    }

    private int checkId(int id) {
        if (id < 0 || id >= V) throw new IllegalArgumentException("token id " + id + " outside [0, " + V + ")");
        return id;
    }

    private static long addressOf(HostFloats h) {
        if (h.address() == 0) throw new IllegalArgumentException("weights must be off-heap HostFloats");
        return h.address();
    }

    private long wX(long offset) { return paramsX + offset * xb; }

    @Override
    public void close() { buffers.close(); }
}
