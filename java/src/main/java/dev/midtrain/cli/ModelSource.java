package dev.midtrain.cli;

import picocli.CommandLine.Option;

import java.nio.file.Path;

/** The model of generate and eval: exactly one of --checkpoint (a step or run directory) and --init-from (picocli ArgGroup). */
final class ModelSource {
    @Option(names = "--checkpoint", required = true, description = "a committed step directory or a run directory (its newest step)") Path checkpoint;
    @Option(names = "--init-from", required = true, description = "a Hugging Face Llama checkpoint directory") Path hf;

    /** The directory to load: the step a run directory resolves to, or the Hugging Face directory. */
    Path model() { return checkpoint != null ? ExportCommand.resolveStep(checkpoint) : hf; }
}
