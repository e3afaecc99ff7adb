package dev.midtrain.ckpt;

import dev.midtrain.config.ModelConfig;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;

/** Package-private test fixtures of dev.midtrain.ckpt, for tests in other packages. */
public final class TestAccess {
    private TestAccess() {}

    public static ModelConfig model() { return HfCheckpointTest.M; }

    public static Map<String, float[]> writeHf(Path dir, ModelConfig m, DType dt, long shardBytes, long seed) throws IOException {
        return TinyHf.write(dir, m, dt, shardBytes, seed);
    }

    public static StateFile state(long step, int tp) { return CkptFixtures.state(step, tp); }

    public static void assertSameTensors(Map<String, float[]> want, Path dir, DType dt) { HfCheckpointTest.assertSameTensors(want, dir, dt); }
}
