package dev.midtrain.parallel;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.data.SampleLog;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static dev.midtrain.cli.Cli.run;
import static dev.midtrain.parallel.ParallelCheckpointTest.cat;
import static dev.midtrain.parallel.ParallelTrainCommandTest.metrics;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A tp 2 x dp 2 checkpoint at step 10 resumed at the same layout (bit for bit) and as tp 1 x dp 4 and tp 4 x dp 1
 * (resharded weights, AdamW moments and loader position): every training sample of steps 1..20 is delivered exactly
 * once (compared by sample id with the uninterrupted run), and the losses stay within {@link #RESHARD_REL_TOL} of
 * the uninterrupted tp 2 x dp 2 run.
 */
class ReshardResumeTest {
    @TempDir Path tmp;

    /**
     * Relative loss and gradient-norm tolerance after a resume onto another layout: the restored state is exact, so
     * only the fp32 summation order of the new layout differs (tensor-parallel all-reduces, data-parallel gradient
     * sums), as between any two layouts from the same start (docs/parallel.md: 5e-6 over 10 steps).
     */
    static final double RESHARD_REL_TOL = 5e-6;

    static final String CONFIG = ParallelTrainCommandTest.CONFIG.replace("steps: 5", "steps: 20").replace("eval_every_steps: 5", "eval_every_steps: 0")
            + "checkpoint: {every_steps: 5, keep_last: 10, async: true}\n";

    @Test
    void resumeOntoOtherLayoutsKeepsEverySampleOnceAndTheLoss() throws Exception {
        Path c = tmp.resolve("c.yaml");
        Files.writeString(c, CONFIG);
        String[] common = {"--synthetic-data", "--peak-tflops", "0.1"};
        Path full = tmp.resolve("full"), cut = tmp.resolve("cut");
        List<String> fullIds = train(tmp.resolve("ids-full"), cat(new String[]{"train", "--config", c.toString(), "--run-dir", full.toString(),
                "--tp", "2", "--dp", "2"}, common));
        List<String> firstIds = train(tmp.resolve("ids-cut"), cat(new String[]{"train", "--config", c.toString(), "--run-dir", cut.toString(),
                "--tp", "2", "--dp", "2", "--stop-at-step", "10"}, common));
        assertEquals(fullIds.size(), 20 * 8, "8 sequences per step");
        assertEquals(10 * 8, firstIds.size());
        List<JsonNode> ref = metrics(full);
        for (String[] layout : new String[][]{{"2", "2"}, {"1", "4"}, {"4", "1"}}) {
            Path run = tmp.resolve("resume-tp" + layout[0] + "-dp" + layout[1]);
            copyTree(cut, run);
            List<String> ids = new ArrayList<>(firstIds);
            ids.addAll(train(tmp.resolve("ids-" + run.getFileName()), cat(new String[]{"train", "--resume", run.toString(), "--tp", layout[0], "--dp", layout[1]}, common)));
            String what = "tp " + layout[0] + " x dp " + layout[1];
            assertEquals(sorted(fullIds), sorted(ids), what + ": the samples of steps 1..20, each exactly once");
            List<JsonNode> got = metrics(run);
            assertEquals(20, got.size(), what);
            boolean same = layout[0].equals("2") && layout[1].equals("2");
            for (int i = 10; i < 20; i++) {
                double a = ref.get(i).get("loss").asDouble(), b = got.get(i).get("loss").asDouble();
                double na = ref.get(i).get("grad_norm").asDouble(), nb = got.get(i).get("grad_norm").asDouble();
                assertEquals(ref.get(i).get("tokens_per_source"), got.get(i).get("tokens_per_source"), what + " step " + (i + 1));
                if (same) {
                    // same layout resumed: the same computation as the uninterrupted run, exact on any processor
                    assertEquals(Double.doubleToRawLongBits(a), Double.doubleToRawLongBits(b), what + " step " + (i + 1) + " loss bit for bit");
                    assertEquals(Double.doubleToRawLongBits(na), Double.doubleToRawLongBits(nb), what + " step " + (i + 1) + " grad norm bit for bit");
                } else {
                    assertEquals(a, b, RESHARD_REL_TOL * a, what + " step " + (i + 1) + " loss");
                    assertEquals(na, nb, RESHARD_REL_TOL * na, what + " step " + (i + 1) + " grad norm");
                }
            }
            // the resharded run checkpoints in its own layout, which resumes again
            assertEquals(20L, StepDirectories.forRun(run).committedSteps().get(StepDirectories.forRun(run).committedSteps().size() - 1));
        }
    }

    /** Runs the CLI with the sample log on and returns the ids of the training samples it delivered. */
    static List<String> train(Path idsDir, String... args) throws IOException {
        StringBuilder out = new StringBuilder();
        System.setProperty(SampleLog.PROPERTY, idsDir.toString());
        try {
            assertEquals(0, run(out, args), out.toString());
        } finally {
            System.clearProperty(SampleLog.PROPERTY);
        }
        List<String> ids = new ArrayList<>();
        if (Files.isDirectory(idsDir)) try (Stream<Path> s = Files.list(idsDir)) {
            for (Path f : s.toList()) ids.addAll(Files.readAllLines(f));
        }
        return ids;
    }

    static List<String> sorted(List<String> ids) {
        List<String> s = new ArrayList<>(ids);
        s.sort(null);
        return s;
    }

    static void copyTree(Path from, Path to) throws IOException {
        try (Stream<Path> s = Files.walk(from)) {
            for (Path p : s.toList()) {
                Path q = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) Files.createDirectories(q);
                else Files.copy(p, q);
            }
        }
    }
}
