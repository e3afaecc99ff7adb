package dev.midtrain.model;

import dev.midtrain.config.ModelConfig;
import dev.midtrain.config.OptimConfig;
import dev.midtrain.config.ParallelConfig;
import dev.midtrain.config.RunConfig;
import dev.midtrain.config.TrainConfig;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.train.MetricsLog;
import dev.midtrain.train.StepResult;
import dev.midtrain.train.TrainState;
import dev.midtrain.train.Trainer;
import org.junit.jupiter.api.Test;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Selective recomputation (the two RMSNorm outputs and the SwiGLU output rebuilt in the backward from the kept
 * block input, residual and gate|up) against no recomputation: 5 optimizer steps with fresh random batches (an odd
 * sequence length, ignored targets), losses, gradient norms, every gradient of the first step and the final weights
 * bitwise equal (the recomputed values come from the same deterministic kernels on the same inputs). Full
 * recomputation is run too, as a check that the comparison can see a difference in code path but not in numbers.
 */
class SelectiveRecomputeTest {
    static final ModelConfig M = new ModelConfig(64, 32, 3, 8, 2, 40, 10000.0, 1e-5, 16, false);
    static final int B = 2, T = 11, MICRO = 2, STEPS = 5;

    record Run(double[] losses, double[] norms, Map<String, float[]> grads, Map<String, float[]> weights) {}

    static Run run(dev.midtrain.config.TrainConfig.Recompute mode, int[][][] batches) {
        OptimConfig oc = new OptimConfig(1e-2, 1e-3, 2, 0.9, 0.95, 1e-4, 0.1, List.of("norm"), 1.0);
        TrainConfig tc = TrainConfig.builder(T, B, B * MICRO, STEPS).evalBatches(0).seed(3).initStd(0.05).threads(1).build();
        RunConfig rc = new RunConfig(M, oc, tc, null, null, new ParallelConfig(1, 1, true));
        ParamLayout layout = ParamLayout.of(M, 1, 0, List.of("norm"));
        try (CpuBackend be = new CpuBackend();
             Llama model = new Llama(be, layout, B, T, mode, TpHooks.NONE, OptimizerShard.full(layout.numel()))) {
            model.initialize(3, 0.05);
            Trainer tr = new Trainer(rc, model, null, new TrainState(3), MetricsLog.quiet());
            double[] losses = new double[STEPS], norms = new double[STEPS];
            Map<String, float[]> grads = new LinkedHashMap<>(), weights = new LinkedHashMap<>();
            for (int s = 0; s < STEPS; s++) {
                StepResult r = tr.step(batches[s]);
                losses[s] = r.loss();
                norms[s] = r.gradNorm();
                if (s == 0) for (ParamLayout.Tensor t : layout.tensors()) grads.put(t.name(), model.getGrad(t.name()));
            }
            for (ParamLayout.Tensor t : layout.tensors()) weights.put(t.name(), model.getParam(t.name()));
            return new Run(losses, norms, grads, weights);
        }
    }

    @Test
    void selectiveEqualsNoneBitForBit() {
        Random r = new Random(System.nanoTime());                 // fresh inputs every run
        int[][][] batches = new int[STEPS][MICRO][B * (T + 1)];
        for (int[][] s : batches) for (int[] mb : s) for (int i = 0; i < mb.length; i++) mb[i] = r.nextInt(64);
        batches[1][0][T] = dev.midtrain.model.Llama.IGNORE_INDEX;
        Run none = run(dev.midtrain.config.TrainConfig.Recompute.NONE, batches), sel = run(dev.midtrain.config.TrainConfig.Recompute.SELECTIVE, batches),
                full = run(dev.midtrain.config.TrainConfig.Recompute.FULL, batches);
        for (Run other : List.of(sel, full)) {
            assertArrayEquals(none.losses(), other.losses(), 0.0);
            assertArrayEquals(none.norms(), other.norms(), 0.0);
            for (String n : none.grads().keySet()) {
                assertArrayEquals(none.grads().get(n), other.grads().get(n), 0f, "gradient of " + n);
                assertArrayEquals(none.weights().get(n), other.weights().get(n), 0f, "weights of " + n);
            }
        }
        assertTrue(none.losses()[0] > 1, "a real loss: " + none.losses()[0]);
    }
}
