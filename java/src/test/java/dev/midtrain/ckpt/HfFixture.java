package dev.midtrain.ckpt;

import dev.midtrain.config.ModelConfig;

import java.io.IOException;
import java.nio.file.Path;

/** {@link TinyHf} for tests in other packages: a random fp32 Hugging Face Llama checkpoint in one safetensors file. */
public final class HfFixture {
    private HfFixture() {}

    public static void write(Path dir, ModelConfig m, long seed) throws IOException {
        TinyHf.write(dir, m, DType.F32, 0, seed);
    }
}
