package dev.midtrain.cli;

import dev.midtrain.infer.Engine;
import picocli.CommandLine.Option;

import java.nio.file.Path;

/** How generate, eval and serve load a model for inference (a picocli mixin): tokenizer, backend, CPU threads. */
final class EngineOptions {
    @Option(names = "--tokenizer", description = "tokenizer.json (default: beside the checkpoint, or its run's prepared data)") Path tokenizer;
    @Option(names = "--backend", defaultValue = "cpu", description = "cpu or cuda (default ${DEFAULT-VALUE})") String backend;
    @Option(names = "--threads", defaultValue = "0", description = "CPU threads (0: all cores)") int threads;

    /**
     * Loads {@code model} (a step directory or a Hugging Face directory) with {@link Engine.Options}: {@code batchTokens}
     * 0 is the engine's default, {@code slots} the sequences decoded together.
     */
    Engine load(Path model, int batchTokens, int slots) {
        return Engine.load(model, tokenizer, new Engine.Options(backend, batchTokens, threads, slots));
    }
}
