package dev.midtrain.cli;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** `midtrain generate` with several prompts: decoded together, each answer equal to that prompt generated alone. */
class GenerateCommandTest {
    static final String HF = EvalCommandTest.HF, TOK = EvalCommandTest.TOK;

    @Test
    void severalPromptsDecodeTogetherAndEachEqualsItsOwnRun() {
        List<String> prompts = List.of("Photosynthesis converts light into", "Water", "The capital of France is the city of");
        Cli.Run all = Cli.run("generate", "--init-from", HF, "--tokenizer", TOK, "--prompt", prompts.get(0), "--prompt", prompts.get(1),
                "--prompt", prompts.get(2), "--max-new-tokens", "10", "--ignore-eos");
        assertEquals(0, all.code(), all.err());
        assertTrue(all.err().contains("3 prompts decoded together: 30 tokens"), all.err());
        for (int i = 0; i < prompts.size(); i++) {
            Cli.Run one = Cli.run("generate", "--init-from", HF, "--tokenizer", TOK, "--prompt", prompts.get(i), "--max-new-tokens", "10", "--ignore-eos");
            assertEquals(0, one.code(), one.err());
            String text = one.out().replaceFirst("\\R$", "");                 // prompt + generated text
            assertTrue(all.out().contains("=== prompt " + i + " ===\n" + text + "\n"), "prompt " + i + ": " + text + "\nvs\n" + all.out());
        }
    }
}
