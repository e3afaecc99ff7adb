package dev.midtrain.optim;

import dev.midtrain.config.OptimConfig;
import dev.midtrain.kernels.Backend;
import dev.midtrain.model.Llama;
import dev.midtrain.model.ParamLayout;

import java.util.List;

/**
 * torch.optim.AdamW over the model's slabs through the fused adamw_update kernel: one call per maximal run of
 * parameters that share a weight-decay flag ({@link ParamLayout#decayRuns()}; the flag comes from
 * optimizer.weight_decay_exclude, norms by default). Bias corrections are computed here in double.
 * The update also rewrites the floatX compute copy when it is a separate slab (CUDA).
 */
public final class AdamW {
    private final Backend be;
    private final OptimConfig cfg;
    private final Llama.Slabs s;
    private final List<ParamLayout.DecayRun> runs;
    private final int xb;

    public AdamW(Llama model, OptimConfig cfg) {
        this.be = model.backend();
        this.cfg = cfg;
        this.s = model.slabs();
        this.runs = model.layout().decayRuns();      // clipped to this rank's optimizer shard in step()
        this.xb = be.floatxBytes();
    }

    /**
     * One update.
     *
     * @param t          AdamW's own step count, 1-based (optimizer steps actually taken: skipped steps do not count)
     * @param lr         this step's learning rate
     * @param gradScale  multiplies every gradient before the update (global-norm clipping)
     */
    public void step(long t, double lr, double gradScale) {
        if (t < 1) throw new IllegalArgumentException("AdamW step is 1-based, got " + t);
        float bc1 = (float) (1 - Math.pow(cfg.beta1(), t)), bc2 = (float) (1 - Math.pow(cfg.beta2(), t));
        long lo = s.shard().start(), hi = lo + s.shard().count();    // m and v hold [lo, hi)
        for (ParamLayout.DecayRun run : runs) {
            long off = Math.max(run.start(), lo), n = Math.min(run.end(), hi) - off;
            if (n <= 0) continue;
            float wd = run.weightDecay() ? (float) cfg.weightDecay() : 0f;
            long px = s.separateComputeCopy() ? s.paramsX() + off * xb : 0L;
            be.adamwUpdate(s.params() + 4 * off, px, s.grads() + 4 * off, s.m() + 4 * (off - lo), s.v() + 4 * (off - lo), n,
                    (float) lr, (float) cfg.beta1(), (float) cfg.beta2(), (float) cfg.eps(), wd, bc1, bc2, (float) gradScale);
        }
    }

    /**
     * The factor clip_grad_norm_ multiplies the gradients by: min(1, clip / (norm + 1e-6)); 1 when clipping is off
     * (clip = 0). Folded into the AdamW call rather than applied as a separate pass.
     */
    public static double clipScale(double gradNorm, double clip) {
        if (clip <= 0) return 1.0;
        return Math.min(1.0, clip / (gradNorm + 1e-6));
    }
}
