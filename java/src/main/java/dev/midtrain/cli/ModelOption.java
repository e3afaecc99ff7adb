package dev.midtrain.cli;

import picocli.CommandLine.Option;

import java.nio.file.Path;

/**
 * The model of generate and eval: exactly one of --checkpoint and --init-from (picocli ArgGroup). Both are opened by
 * {@link dev.midtrain.ckpt.ModelSource}, which tells a step, run or Hugging Face directory apart; the two names are
 * kept because users know them.
 */
final class ModelOption {
    @Option(names = "--checkpoint", required = true, description = "a committed step directory or a run directory (its newest step)") Path checkpoint;
    @Option(names = "--init-from", required = true, description = "a Hugging Face Llama checkpoint directory (config.json in the transformers 4 or 5 layout)") Path hf;

    /** The directory to load (a step, run or Hugging Face directory). */
    Path model() { return checkpoint != null ? checkpoint : hf; }
}
