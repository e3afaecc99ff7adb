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
        require(ffnDim > 0, "model.ffn_dim", "must be > 0, got " + ffnDim);
        require(ropeTheta > 0, "model.rope_theta", "must be > 0, got " + ropeTheta);
        require(normEps > 0 && normEps < 1, "model.norm_eps", "must be in (0, 1), got " + normEps);
        require(maxSeqLen > 0, "model.max_seq_len", "must be > 0, got " + maxSeqLen);
    }

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
