package dev.midtrain.cli;

import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.kernels.HostFloats;
import dev.midtrain.ckpt.ModelSource;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * train --init-from a run directory (ModelSource: its newest step), into another tensor-parallel degree: the new run's
 * first checkpoint, after one step that cannot move the weights (lr 1e-30), holds the source step's weights bit for bit.
 */
class InitFromStepTest {
    @Test
    void initFromARunDirectoryIntoAnotherTpLayout(@TempDir Path tmp) throws Exception {
        Path cfg = tmp.resolve("c.yaml"), a = tmp.resolve("a"), b = tmp.resolve("b");
        Files.writeString(cfg, TrainCommandTest.CONFIG.replace("steps: 6", "steps: 2"));
        StringBuilder s = new StringBuilder();
        assertEquals(0, run(s, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", a.toString()), s.toString());
        s.setLength(0);
        assertEquals(0, run(s, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", b.toString(), "--init-from", a.toString(),
                "--tp", "2", "--set", "optimizer.lr=1.0e-30", "--set", "optimizer.min_lr=0", "--set", "train.steps=1"), s.toString());
        assertTrue(s.toString().contains("initialized from " + a), s.toString());
        try (HostFloats want = ModelSource.open(a).loadFull(); HostFloats got = ModelSource.open(StepDirectories.forRun(b).stepDir(1)).loadFull()) {
            assertEquals(want.numel(), got.numel());
            for (long i = 0; i < want.numel(); i++)
                if (Float.floatToRawIntBits(want.get(i)) != Float.floatToRawIntBits(got.get(i)))
                    throw new AssertionError("element " + i + ": " + got.get(i) + " != " + want.get(i));
        }
    }
}
