package dev.midtrain.config;

import static dev.midtrain.config.Check.require;

/**
 * Gradient diagnostics (the {@code diagnostics} section): on every {@code every_steps}-th optimizer step, before the
 * step itself, the gradient of each data source's part of the global batch is computed on its own (the mean loss over
 * that source's target tokens), and its L2 norm and the cosine similarity between the sources' gradients, over the
 * whole model and per layer, go to metrics.jsonl ({@link dev.midtrain.train.GradientDiagnostics}). The training
 * step is unchanged (bit for bit); a measured step costs one extra forward+backward per source.
 *
 * @param everySteps measure every N optimizer steps (0 disables)
 */
public record DiagnosticsConfig(int everySteps) {
    public DiagnosticsConfig {
        require(everySteps >= 0, "diagnostics.every_steps", "must be >= 0 (0 disables), got " + everySteps);
    }

}
