package dev.midtrain.cli;

import dev.midtrain.cli.Cli.Run;
import static dev.midtrain.cli.Cli.run;
import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.ckpt.DType;
import dev.midtrain.ckpt.HfCheckpoint;
import dev.midtrain.kernels.HostFloats;
import dev.midtrain.ckpt.TestAccess;
import dev.midtrain.ckpt.StateFile;
import dev.midtrain.train.TrainState;
import dev.midtrain.model.ParamLayout;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** HF -> engine (tp 1 and tp 2 rank slabs) -> step checkpoint -> `midtrain export` -> HF: bit-identical in fp32. */
class ExportCommandTest {
    @TempDir Path tmp;


    @Test
    void roundTripThroughStepCheckpointIsBitIdentical() throws Exception {
        var m = TestAccess.model();
        Path hf = tmp.resolve("hf");
        Map<String, float[]> values = TestAccess.writeHf(hf, m, DType.F32, 900, 17);
        for (int tp : new int[]{1, 2}) {
            List<StepDirectories.RankState> ranks = new ArrayList<>();
            try (HfCheckpoint ck = HfCheckpoint.open(hf)) {
                ck.validate(m);
                for (int r = 0; r < tp; r++) {
                    ParamLayout l = ParamLayout.of(m, tp, r, List.of("norm"));
                    HostFloats p = HostFloats.allocate(l.numel());
                    ck.loadInto(l, p);
                    ranks.add(new StepDirectories.RankState(l, p, HostFloats.allocate(l.numel()), HostFloats.allocate(l.numel())));
                }
                StateFile st = TestAccess.state(0, tp);
                TrainState fresh = new TrainState(1234);
                fresh.tokensSeenBefore = 5000;
                st = new StateFile(fresh, 0, st.configYaml(), st.engineVersion(), tp, 1, ck.config(), hf.toString());
                StepDirectories.forRun(tmp.resolve("run" + tp)).save(st, ranks, 2, 0);
            }
            Path out = tmp.resolve("out" + tp);
            // the run directory resolves to its newest committed step
            Run r = run("export", "--checkpoint", tmp.resolve("run" + tp).toString(), "--out", out.toString(), "--dtype", "fp32", "--max-shard-size", "1KB",
                    "--tokenizer", "data/tokenizer/tokenizer.json");          // no tokenizer in the HF source: one must be given
            assertEquals(0, r.code(), r.err());
            TestAccess.assertSameTensors(values, out, DType.F32);
            assertTrue(Files.exists(out.resolve("model-00002-of-" + String.format("%05d", Files.list(out).filter(p -> p.toString().endsWith(".safetensors")).count()) + ".safetensors")));
            for (var rs : ranks) { rs.params().close(); rs.m().close(); rs.v().close(); }
        }
    }

    @Test
    void usageAndInputErrorsAreOneLineExitTwo() throws Exception {
        Run r = run("export", "--checkpoint", tmp.resolve("nope").toString(), "--out", tmp.resolve("o").toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("nope: not found") && r.err().strip().lines().count() == 1, r.err());
        Files.createDirectories(tmp.resolve("empty"));
        r = run("export", "--checkpoint", tmp.resolve("empty").toString(), "--out", tmp.resolve("o").toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("no COMMITTED"), r.err());
        r = run("export", "--checkpoint", tmp.toString(), "--out", tmp.resolve("o").toString(), "--dtype", "int8");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--dtype"), r.err());
        r = run("export", "--checkpoint", tmp.toString(), "--out", tmp.resolve("o").toString(), "--max-shard-size", "lots");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--max-shard-size"), r.err());
        assertEquals(5_000_000_000L, ExportCommand.parseSize("5GB"));
        assertEquals(2L << 30, ExportCommand.parseSize("2GiB"));
        assertEquals(1500, ExportCommand.parseSize("1.5kb"));
        assertEquals(123, ExportCommand.parseSize("123"));
    }
}
