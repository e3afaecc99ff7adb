package dev.midtrain.model;

import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.OptimConfig;
import dev.midtrain.config.RunConfig;
import dev.midtrain.config.TrainConfig;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.train.MetricsLog;
import dev.midtrain.train.StepResult;
import dev.midtrain.train.TrainState;
import dev.midtrain.train.Trainer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The engine (CPU backend, fp32) against PyTorch golden fixtures written by scripts/golden/make_llama_golden.py:
 * an independent float64 implementation of Hugging Face LlamaForCausalLM + torch.optim.AdamW + clip_grad_norm_.
 * <ul>
 *   <li>llama_gqa.bin: V 61, C 40, 2 layers, 4 q / 2 kv heads (HD 10), F 45, T 11, B 3, untied; 10 steps of two
 *       accumulated micro-batches, warmup 3 then linear decay, clipping at 1.5 (active in steps 1-6, not 7-10),
 *       weight decay 0.1 except norms, two ignored targets.</li>
 *   <li>llama_tied.bin: V 37, C 32, 2 layers, 4 q / 1 kv head (MQA), F 29, T 7, B 2, tied embeddings, theta 5e5;
 *       3 steps, clipping active in step 3 only.</li>
 *   <li>llama_rope_llama3.bin: Llama-3.2 style: V 53, C 40, 2 layers, 4 q / 2 kv heads, F 36, T 13, B 3, tied
 *       embeddings, rope_scaling llama3 (factor 8, low 1, high 4, original context 16: one interpolated and four
 *       divided frequencies); 4 steps of two micro-batches.</li>
 * </ul>
 * Tolerances are relative to each tensor's largest magnitude (scale = max|expected|), since the reference is exact
 * to float64 and the engine's error is fp32 rounding (u = 6e-8) accumulated over sums of at most a few hundred terms:
 * measured errors are below 2e-6 x scale for logits and gradients; the bounds leave a 10x margin.
 */
class GoldenLlamaTest {
    private static CpuBackend be;

    @BeforeAll static void open() { be = new CpuBackend(); }
    @AfterAll static void shut() { be.close(); }

    /** Forward values (logits): fp32 matmul/softmax rounding, measured <= 4e-7 x scale. */
    private static final double LOGITS_TOL = 1e-5;
    /** Loss: a mean of log-sum-exps, measured <= 1e-7 relative. */
    private static final double LOSS_TOL = 1e-6;
    /** Gradients: one backward in fp32, measured <= 1.5e-6 x scale over all tensors. */
    private static final double GRAD_TOL = 2e-5;
    /**
     * After the AdamW steps: gradient differences pass through m / (sqrt(v) + eps), whose sensitivity to a gradient
     * element near zero is up to 1/eps. The fixtures use eps = 1e-4 so that this amplification stays bounded
     * (lr x 1e-7 / eps = 1e-5 at worst; with eps = 1e-6 single elements drifted by 3e-4 x scale, a few percent of
     * one update, which would hide real bugs under a loose bound). Measured: final weights <= 3.5e-6 x scale, step
     * losses and grad norms <= 1e-6 relative. A wrong weight decay (lr x wd x w ~ 1e-3 x scale per step) or bias
     * correction is far outside these bounds.
     */
    private static final double FINAL_WEIGHT_TOL = 3e-5;
    private static final double TRAJECTORY_TOL = 1e-5;

    static RunConfig runConfig(Golden g, boolean recompute) {
        var o = g.optimizer();
        ModelConfig mc = g.modelConfig();
        OptimConfig oc = new OptimConfig(o.get("lr").asDouble(), o.get("min_lr").asDouble(), o.get("warmup_steps").asInt(),
                o.get("beta1").asDouble(), o.get("beta2").asDouble(), o.get("eps").asDouble(), o.get("weight_decay").asDouble(),
                List.of("norm"), o.get("grad_clip_norm").asDouble());
        TrainConfig tc = TrainConfig.builder(g.seqLen(), g.batch(), g.batch() * g.microBatches(), g.steps())
                .evalBatches(0).seed(1).recompute(recompute).build();
        return new RunConfig(mc, oc, tc, null, null, null);
    }

    /** The model of a fixture, with its initial weights. */
    static Llama build(Golden g, boolean recompute) {
        RunConfig rc = runConfig(g, recompute);
        ParamLayout layout = ParamLayout.of(rc.model(), 1, 0, rc.optimizer().weightDecayExclude());
        Llama m = new Llama(be, layout, g.batch(), g.seqLen(), recompute, TpHooks.NONE);
        for (ParamLayout.Tensor t : layout.tensors()) m.setParam(t.name(), g.f("init." + t.name()));
        m.syncComputeCopy();
        return m;
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_gqa.bin", "llama_tied.bin", "llama_rope_llama3.bin"})
    void logitsAndLoss(String fixture) {
        Golden g = Golden.load(fixture);
        int[] batch = g.batch(0, 0);
        try (Llama m = build(g, false)) {
            checkTensor(fixture + " logits", g.f("logits0"), m.logits(batch), LOGITS_TOL);
            double loss = m.evaluate(batch) / Llama.validTargets(batch, g.batch(), g.seqLen());
            double expected = g.f("loss0")[0];
            System.out.printf("%-60s %.8f vs %.8f%n", fixture + " loss", loss, expected);
            assertEquals(expected, loss, LOSS_TOL * expected, fixture + " loss");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_gqa.bin", "llama_tied.bin", "llama_rope_llama3.bin"})
    void gradientsOfTheFirstStep(String fixture) {
        Golden g = Golden.load(fixture);
        try (Llama m = build(g, false)) {
            accumulateFirstStep(g, m);
            for (ParamLayout.Tensor t : m.layout().tensors())
                checkTensor(fixture + " d" + t.name(), g.f("grad." + t.name()), m.getGrad(t.name()), GRAD_TOL);
        }
    }

    /**
     * Recomputing each block in the backward runs the same kernels on the same inputs, shapes and row positions:
     * bitwise equal gradients on any processor (the kernels are deterministic; nothing is reordered).
     */
    @ParameterizedTest
    @ValueSource(strings = {"llama_gqa.bin", "llama_tied.bin", "llama_rope_llama3.bin"})
    void recomputeGivesIdenticalGradients(String fixture) {
        Golden g = Golden.load(fixture);
        try (Llama stored = build(g, false); Llama recomputed = build(g, true)) {
            double a = accumulateFirstStep(g, stored), b = accumulateFirstStep(g, recomputed);
            assertEquals(a, b, 0.0, "loss");
            for (ParamLayout.Tensor t : stored.layout().tensors())
                assertArrayEquals(stored.getGrad(t.name()), recomputed.getGrad(t.name()), 0f, t.name());
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_gqa.bin", "llama_tied.bin", "llama_rope_llama3.bin"})
    void trainingTrajectoryAndFinalWeights(String fixture) {
        Golden g = Golden.load(fixture);
        try (Llama m = build(g, false)) {
            Trainer trainer = new Trainer(runConfig(g, false), m, null, new TrainState(1), MetricsLog.quiet());
            float[] losses = g.f("losses"), norms = g.f("grad_norms"), lrs = g.f("lrs");
            boolean clipped = false, unclipped = false;
            for (int s = 0; s < g.steps(); s++) {
                int[][] micro = new int[g.microBatches()][];
                for (int mb = 0; mb < micro.length; mb++) micro[mb] = g.batch(s, mb);
                StepResult r = trainer.step(micro);
                System.out.printf("%s step %2d  loss %.7f vs %.7f  grad norm %.6f vs %.6f  lr %.6f%n",
                        fixture, s + 1, r.loss(), losses[s], r.gradNorm(), norms[s], r.lr());
                assertEquals(losses[s], r.loss(), TRAJECTORY_TOL * losses[s], "loss of step " + (s + 1));
                assertEquals(norms[s], r.gradNorm(), TRAJECTORY_TOL * norms[s], "grad norm of step " + (s + 1));
                assertEquals(lrs[s], r.lr(), 1e-6 * lrs[s], "lr of step " + (s + 1));   // the fixture stores fp32
                clipped |= r.clipScale() < 1;
                unclipped |= r.clipScale() == 1;
            }
            assertTrue(clipped && unclipped, "the fixture must exercise clipping on some steps and not on others");
            assertEquals(g.steps(), trainer.state().step);
            for (ParamLayout.Tensor t : m.layout().tensors())
                checkTensor(fixture + " final " + t.name(), g.f("final." + t.name()), m.getParam(t.name()), FINAL_WEIGHT_TOL);
        }
    }

    /** Step 1's micro-batches, gradients accumulated with dloss = 1/valid targets of the step; returns the loss sum. */
    private static double accumulateFirstStep(Golden g, Llama m) {
        int valid = 0;
        List<int[]> micro = new ArrayList<>();
        for (int mb = 0; mb < g.microBatches(); mb++) {
            micro.add(g.batch(0, mb));
            valid += Llama.validTargets(micro.get(mb), g.batch(), g.seqLen());
        }
        m.zeroGrad();
        double sum = 0;
        for (int[] mb : micro) sum += m.forwardBackward(mb, 1f / valid);
        return sum;
    }

    /** Every element within tol x max|expected|; prints the tensor's max difference. */
    static void checkTensor(String what, float[] expected, float[] actual, double tol) {
        assertEquals(expected.length, actual.length, what + ": length");
        double scale = 0, maxDiff = 0;
        for (float e : expected) scale = Math.max(scale, Math.abs(e));
        for (int i = 0; i < expected.length; i++) {
            double d = Math.abs((double) actual[i] - expected[i]);
            if (!(d <= maxDiff)) maxDiff = d;                      // NaN propagates into maxDiff
        }
        System.out.printf("%-60s maxdiff %.3e  scale %.3e  rel %.2e%n", what, maxDiff, scale, maxDiff / scale);
        assertTrue(maxDiff <= tol * scale, what + ": max difference " + maxDiff + " > " + tol + " x " + scale);
    }
}
