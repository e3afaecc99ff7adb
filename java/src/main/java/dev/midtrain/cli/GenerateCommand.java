package dev.midtrain.cli;

import dev.midtrain.common.UserError;
import dev.midtrain.infer.Engine;
import dev.midtrain.infer.GenerateParams;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/**
 * `midtrain generate`: text from a checkpoint (KV-cache decoding). One prompt: streamed to stdout as it is produced.
 * Several ({@code --prompt} repeated): decoded together in one batch (infer.Decoder, one key/value cache slot each),
 * each printed under a {@code === prompt i ===} header when all are done.
 */
@Command(name = "generate", mixinStandardHelpOptions = true, description = "Generate text from a checkpoint (greedy or sampled).")
public final class GenerateCommand implements Callable<Integer> {
    @ArgGroup(exclusive = true, multiplicity = "1") ModelOption source;
    @Mixin EngineOptions engine;

    @Option(names = "--prompt", required = true, description = "the prompt text (repeatable: several prompts are decoded together)") List<String> prompts;
    @Option(names = "--max-new-tokens", defaultValue = "64", description = "default ${DEFAULT-VALUE}") int maxNewTokens;
    @Option(names = "--temperature", defaultValue = "0", description = "0 = greedy (default)") double temperature;
    @Option(names = "--top-p", defaultValue = "1", description = "nucleus sampling mass in (0, 1] (default 1)") double topP;
    @Option(names = "--seed", defaultValue = "0", description = "sampling seed (default 0)") long seed;
    @Option(names = "--stop", description = "stop string (repeatable)") List<String> stop;
    @Option(names = "--ignore-eos", description = "keep generating past end-of-sequence tokens") boolean ignoreEos;

    @Override
    public Integer call() {
        GenerateParams p;
        try {
            p = new GenerateParams(maxNewTokens, temperature, topP, seed, stop, !ignoreEos);
        } catch (IllegalArgumentException e) {
            throw new UserError("--" + e.getMessage().replace("_", "-"));
        }
        Path model = source.model();
        try (Engine e = engine.load(model, 0, prompts.size())) {
            long t0 = System.nanoTime();
            if (prompts.size() == 1) {
                String prompt = prompts.get(0);
                System.out.print(prompt);
                Engine.Generation g = e.generate(prompt, p, piece -> { System.out.print(piece); System.out.flush(); });
                double s = (System.nanoTime() - t0) / 1e9;
                System.out.println();
                System.err.printf(Locale.ROOT, "[%d prompt tokens, %d generated, finish: %s, %.1f tokens/s]%n",
                        g.promptTokens(), g.tokens().length, g.finishReason(), g.tokens().length / s);
            } else {
                List<int[]> ids = prompts.stream().map(e::encodePrompt).toList();
                List<Engine.Generation> gs = e.generateAll(ids, Collections.nCopies(ids.size(), p), null);
                double s = (System.nanoTime() - t0) / 1e9;
                int total = 0;
                for (int i = 0; i < gs.size(); i++) {
                    Engine.Generation g = gs.get(i);
                    System.out.printf("=== prompt %d ===%n%s%s%n", i, prompts.get(i), g.text());
                    System.err.printf(Locale.ROOT, "[prompt %d: %d prompt tokens, %d generated, finish: %s]%n",
                            i, g.promptTokens(), g.tokens().length, g.finishReason());
                    total += g.tokens().length;
                }
                System.err.printf(Locale.ROOT, "[%d prompts decoded together: %d tokens, %.1f tokens/s]%n", gs.size(), total, total / s);
            }
        } catch (IllegalArgumentException ex) {
            throw new UserError(model + ": " + ex.getMessage());
        }
        return 0;
    }
}
