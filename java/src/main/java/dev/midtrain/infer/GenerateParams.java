package dev.midtrain.infer;

import java.util.List;

/**
 * How {@link Engine#generate} picks tokens and when it stops. Validated at construction (one-line messages naming the
 * option).
 *
 * @param maxNewTokens  at most this many generated tokens (>= 1)
 * @param temperature   0 = greedy (argmax; ties go to the lowest id); > 0 = sample from softmax(logits / temperature)
 * @param topP          nucleus sampling: keep the smallest set of most probable tokens whose mass reaches top_p (0, 1]
 * @param seed          seeds the sampler: equal seeds and inputs give equal outputs
 * @param stop          stop strings: generation ends before the first occurrence of any of them (which is not returned)
 * @param stopAtEos     end at an end-of-sequence token (the tokenizer's end-of-text / end-of-turn ids; not returned)
 */
public record GenerateParams(int maxNewTokens, double temperature, double topP, long seed, List<String> stop, boolean stopAtEos) {
    public GenerateParams {
        if (maxNewTokens < 1) throw new IllegalArgumentException("max_new_tokens must be >= 1, got " + maxNewTokens);
        if (!(temperature >= 0) || Double.isInfinite(temperature)) throw new IllegalArgumentException("temperature must be >= 0, got " + temperature);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
        stop = stop == null ? List.of() : List.copyOf(stop);
        for (String s : stop) if (s.isEmpty()) throw new IllegalArgumentException("stop strings must not be empty");
    }

    /** Greedy decoding of up to {@code maxNewTokens}, stopping at EOS. */
    public static GenerateParams greedy(int maxNewTokens) {
        return new GenerateParams(maxNewTokens, 0, 1, 0, List.of(), true);
    }
}
