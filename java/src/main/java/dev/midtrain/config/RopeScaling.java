package dev.midtrain.config;

import static dev.midtrain.config.Check.require;

/**
 * Llama-3.1 RoPE frequency scaling ({@code rope_scaling} with {@code rope_type: llama3} in Hugging Face's config.json;
 * the YAML keys are the same). Hugging Face's {@code _compute_llama3_parameters}: with base inverse frequencies
 * {@code f_i = theta^(-2i/HD)} and wavelengths {@code w_i = 2 pi / f_i},
 * <pre>
 *   w_i &lt; original / high_freq_factor   f_i unchanged                       (high frequencies)
 *   w_i &gt; original / low_freq_factor    f_i / factor                        (low frequencies)
 *   otherwise                           (1 - s) f_i / factor + s f_i,  s = (original / w_i - low) / (high - low)
 * </pre>
 * Llama-3.1/3.2: factor 8 (3.2: 32), low 1, high 4, original 8192. The attention scale is unchanged (factor 1).
 *
 * @param ropeType                       "llama3" (the only scaling implemented)
 * @param factor                         divisor of the low frequencies (> 0)
 * @param lowFreqFactor                  original / low_freq_factor is the longest wavelength left unscaled... (> 0)
 * @param highFreqFactor                 ...and original / high_freq_factor the shortest one scaled (> low_freq_factor)
 * @param originalMaxPositionEmbeddings  context length (tokens) of the unscaled pre-training
 */
public record RopeScaling(String ropeType, double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositionEmbeddings) {
    public static final String LLAMA3 = "llama3";

    public RopeScaling {
        require(LLAMA3.equals(ropeType), "model.rope_scaling.rope_type", "must be llama3 (the only scaling implemented), got " + ropeType);
        require(factor > 0 && Double.isFinite(factor), "model.rope_scaling.factor", "must be > 0, got " + factor);
        require(lowFreqFactor > 0 && Double.isFinite(lowFreqFactor), "model.rope_scaling.low_freq_factor", "must be > 0, got " + lowFreqFactor);
        require(highFreqFactor > lowFreqFactor && Double.isFinite(highFreqFactor), "model.rope_scaling.high_freq_factor",
                "must be > low_freq_factor (" + lowFreqFactor + "), got " + highFreqFactor);
        require(originalMaxPositionEmbeddings > 0, "model.rope_scaling.original_max_position_embeddings",
                "must be > 0, got " + originalMaxPositionEmbeddings);
    }

    /** Scales base inverse frequencies {@code invFreq} (double, HD/2 of them) in place, as Hugging Face does. */
    public void apply(double[] invFreq) {
        double lowWavelen = originalMaxPositionEmbeddings / lowFreqFactor, highWavelen = originalMaxPositionEmbeddings / highFreqFactor;
        for (int i = 0; i < invFreq.length; i++) {
            double f = invFreq[i], wavelen = 2 * Math.PI / f;
            if (wavelen < highWavelen) continue;
            if (wavelen > lowWavelen) { invFreq[i] = f / factor; continue; }
            double s = (originalMaxPositionEmbeddings / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
            invFreq[i] = (1 - s) * f / factor + s * f;
        }
    }
}
