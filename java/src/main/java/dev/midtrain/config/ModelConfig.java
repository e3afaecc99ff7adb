package dev.midtrain.config;

import static dev.midtrain.config.Check.require;

/**
 * Llama-3 architecture. Field names follow the YAML keys (snake_case there); Hugging Face's config.json names are
 * mapped in {@code ckpt.HfConfig}. Validated at construction: every error names its field.
 *
 * @param vocabSize       vocabulary size V (Llama-3: 128256)
 * @param dim             model width C (hidden_size)
 * @param nLayers         transformer blocks L
 * @param nHeads          query heads NH
 * @param nKvHeads        key/value heads NKV (grouped-query attention), divides nHeads
 * @param ffnDim          SwiGLU hidden size F (intermediate_size)
 * @param ropeTheta       RoPE base (Llama-3: 500000)
 * @param normEps         RMSNorm epsilon
 * @param maxSeqLen       longest sequence the model is configured for (tokens)
 * @param tiedEmbeddings  whether lm_head shares the embedding matrix
 * @param ropeScaling     Llama-3.1 frequency scaling, or null for plain RoPE
 */
public record ModelConfig(int vocabSize, int dim, int nLayers, int nHeads, int nKvHeads, int ffnDim,
                          double ropeTheta, double normEps, int maxSeqLen, boolean tiedEmbeddings, RopeScaling ropeScaling) {
    /** Plain RoPE (no rope_scaling). */
    public ModelConfig(int vocabSize, int dim, int nLayers, int nHeads, int nKvHeads, int ffnDim,
                       double ropeTheta, double normEps, int maxSeqLen, boolean tiedEmbeddings) {
        this(vocabSize, dim, nLayers, nHeads, nKvHeads, ffnDim, ropeTheta, normEps, maxSeqLen, tiedEmbeddings, null);
    }

    public ModelConfig {
        require(vocabSize > 0, "model.vocab_size", "must be > 0, got " + vocabSize);
        require(dim > 0, "model.dim", "must be > 0, got " + dim);
        require(nLayers > 0, "model.n_layers", "must be > 0, got " + nLayers);
        require(nHeads > 0, "model.n_heads", "must be > 0, got " + nHeads);
        require(nKvHeads > 0, "model.n_kv_heads", "must be > 0, got " + nKvHeads);
        require(nHeads % nKvHeads == 0, "model.n_kv_heads", "must divide model.n_heads (" + nHeads + "), got " + nKvHeads);
        require(dim % nHeads == 0, "model.dim", "must be divisible by model.n_heads (" + nHeads + "), got " + dim);
        require((dim / nHeads) % 2 == 0, "model.dim", "head dim dim/n_heads must be even for RoPE, got " + dim / nHeads);
        require(nLayers <= MAX_LAYERS, "model.n_layers", "must be <= " + MAX_LAYERS + " (the parameter layout lists every layer's tensors; Llama-3 405B has 126), got " + nLayers);
        require(ffnDim > 0, "model.ffn_dim", "must be > 0, got " + ffnDim);
        require(ropeTheta > 0, "model.rope_theta", "must be > 0, got " + ropeTheta);
        require(normEps > 0 && normEps < 1, "model.norm_eps", "must be in (0, 1), got " + normEps);
        require(maxSeqLen > 0, "model.max_seq_len", "must be > 0, got " + maxSeqLen);
        checkSize(vocabSize, dim, nLayers, nHeads, nKvHeads, ffnDim, tiedEmbeddings);
    }

    /**
     * The most parameters a model may have: training holds 16 bytes per parameter (fp32 weights, gradients, AdamW m
     * and v), and every byte count is a signed 64-bit integer, so 2^63 / 16 = 2^59 (5.8e17; Llama-3 405B has 4.1e11).
     */
    public static final long MAX_PARAMS = 1L << 59;

    /** The most transformer blocks a config may ask for. */
    public static final int MAX_LAYERS = 4096;

    /**
     * Refuses sizes whose parameter count would exceed {@link #MAX_PARAMS} (or overflow a 64-bit count on the way,
     * which would print a negative size), naming the field that makes the largest part: model.dim for a layer's
     * attention weights, model.ffn_dim for its SwiGLU weights, model.vocab_size for the embeddings, model.n_layers for
     * the total.
     */
    private static void checkSize(int V, int C, int L, int NH, int NKV, int F, boolean tied) {
        long HD = C / NH;
        long attn = times(times(C, HD), 2L * NH + 2L * NKV);             // q, k, v, o
        long ffn = times(times(C, F), 3);
        long embed = times(times(V, C), tied ? 1 : 2);
        sizeOk("model.dim", C, attn, "one layer's attention weights");
        sizeOk("model.ffn_dim", F, ffn, "one layer's SwiGLU weights");
        sizeOk("model.vocab_size", V, embed, "the embeddings");
        sizeOk("model.n_layers", L, plus(times(L, plus(plus(attn, ffn), 2L * C)), plus(embed, C)), "the model");
    }

    private static void sizeOk(String field, long value, long params, String what) {
        require(params <= MAX_PARAMS, field, value + " makes " + what + " " + (params == Long.MAX_VALUE ? "more than 2^63" : String.format("%.3g", (double) params))
                + " parameters, over the limit of 2^59 (5.8e17: 16 bytes of training state per parameter, counted in 64-bit bytes)");
    }

    private static long times(long a, long b) {
        long r = Math.multiplyHigh(a, b) != 0 || a * b < 0 ? Long.MAX_VALUE : a * b;
        return r;
    }

    private static long plus(long a, long b) { return a > Long.MAX_VALUE - b ? Long.MAX_VALUE : a + b; }

    /**
     * RoPE inverse frequencies, double[HD/2]: {@code theta^(-2i/HD)}, then {@link RopeScaling#apply} when set. Computed
     * once here; the model turns them into the cos/sin tables that the CPU and CUDA rope kernels both read.
     */
    public double[] ropeInverseFrequencies() {
        int HD = headDim();
        double[] f = new double[HD / 2];
        for (int i = 0; i < f.length; i++) f[i] = 1.0 / Math.pow(ropeTheta, 2.0 * i / HD);
        if (ropeScaling != null) ropeScaling.apply(f);
        return f;
    }

    /**
     * The RoPE tables the rope kernels read, {cos, sin}, each float[positions, HD/2] (Hugging Face convention):
     * angle(t, i) = t * inv_freq[i] ({@link #ropeInverseFrequencies}), computed in double, stored fp32.
     */
    public float[][] ropeTables(int positions) {
        int half = headDim() / 2;
        double[] invFreq = ropeInverseFrequencies();
        float[] cos = new float[positions * half], sin = new float[positions * half];
        for (int t = 0; t < positions; t++)
            for (int i = 0; i < half; i++) {
                double angle = t * invFreq[i];
                cos[t * half + i] = (float) Math.cos(angle);
                sin[t * half + i] = (float) Math.sin(angle);
            }
        return new float[][]{cos, sin};
    }

    /** Head dimension HD = dim / nHeads. */
    public int headDim() { return dim / nHeads; }

    /** Total parameters (exact, from the layout). */
    public long paramCount() {
        long C = dim, HD = headDim();
        long perLayer = C * (nHeads + 2L * nKvHeads) * HD      // q, k, v
                + (long) nHeads * HD * C                        // o
                + 3L * C * ffnDim                               // gate, up, down
                + 2L * C;                                       // two RMSNorm weights
        long embed = (long) vocabSize * C;
        return embed + (tiedEmbeddings ? 0 : embed) + nLayers * perLayer + C;
    }

    /** Parameters that take part in matmuls: all but the input embedding lookup (the LM head counts, tied or not). */
    public long matmulParamCount() { return paramCount() - (tiedEmbeddings ? 0 : (long) vocabSize * dim); }

    /**
     * Model FLOPs per trained token, for MFU: 6 N over the matmul parameters (forward + backward) plus causal
     * attention 6 L T C (QK^T and AV: 12 L T C forward + backward, halved by the causal mask), PaLM's convention.
     */
    public double flopsPerToken(int seqLen) {
        return 6.0 * matmulParamCount() + 6.0 * nLayers * (double) seqLen * dim;
    }
}
