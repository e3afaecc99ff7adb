package dev.midtrain.parallel;

import com.fasterxml.jackson.databind.JsonNode;
import dev.midtrain.ckpt.ModelSource;
import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.kernels.HostFloats;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static dev.midtrain.cli.Cli.run;
import static dev.midtrain.parallel.ParallelCheckpointTest.cat;
import static dev.midtrain.parallel.ParallelTrainCommandTest.metrics;
import static dev.midtrain.parallel.ReshardResumeTest.copyTree;
import static dev.midtrain.parallel.ReshardResumeTest.sorted;
import static dev.midtrain.parallel.ReshardResumeTest.train;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Checkpoints of pipeline runs (one file set per (tp, pp) shard and data-parallel window) resumed onto other
 * tp x pp x dp layouts, threads in one JVM, the 4-layer tied-embedding model of {@link PipelineLaunchTest}, 10 steps
 * checkpointed at step 5: a tp 2 x pp 2 checkpoint resumed at the same layout (bit for bit), as tp 1 x pp 1 x dp 4
 * and as pp 4 (another stage split); and back: a tp 1 x dp 4 checkpoint resumed as tp 2 x pp 2 with 2 virtual
 * stages (interleaved). Every training sample of steps 1..10 is delivered exactly once (by sample id, against the
 * uninterrupted run) and losses and gradient norms continue within {@link #TOL} of the uninterrupted tp 2 x pp 2 run.
 */
class PipelineResumeTest {
    @TempDir Path tmp;

    /**
     * Relative loss and gradient-norm tolerance after a resume onto another layout: the restored weights, moments
     * and loader position are exact, so only the fp32 summation order of the new layout differs, which keeps any two
     * layouts within 5e-6 over 10 steps ({@link PipelineLaunchTest#TOL}); 1e-5 is the bound for resumes.
     */
    static final double TOL = 1e-5;

    static final String CONFIG = PipelineLaunchTest.CONFIG + "checkpoint: {every_steps: 5, keep_last: 10, async: true}\n";

    private final MultiProcessTrainTest procs = new MultiProcessTrainTest();

    @AfterEach
    void killChildren() throws InterruptedException { procs.killChildren(); }

    @Test
    void pipelineCheckpointsResumeOntoOtherLayouts() throws Exception {
        Path c = tmp.resolve("c.yaml");
        Files.writeString(c, CONFIG);
        String[] common = {"--synthetic-data", "--peak-tflops", "0.1"};
        String[] pipe = {"--tp", "2", "--pp", "2", "--dp", "1"};
        Path full = tmp.resolve("full"), cut = tmp.resolve("cut");
        List<String> fullIds = train(tmp.resolve("ids-full"), cat(cat(new String[]{"train", "--config", c.toString(), "--run-dir", full.toString()}, pipe), common));
        List<String> firstIds = train(tmp.resolve("ids-cut"), cat(cat(new String[]{"train", "--config", c.toString(), "--run-dir", cut.toString(),
                "--stop-at-step", "5"}, pipe), common));
        assertEquals(10 * 8, fullIds.size(), "8 sequences per step");
        assertEquals(5 * 8, firstIds.size());
        // one file pair per (tp, pp) shard
        Path step5 = StepDirectories.forRun(cut).stepDir(5);
        for (int t = 0; t < 2; t++)
            for (int q = 0; q < 2; q++)
                for (String f : List.of(StepDirectories.modelFile(t, 2, q, 2, 0, 1), StepDirectories.optimizerFile(t, 2, q, 2, 0, 1)))
                    assertTrue(Files.isRegularFile(step5.resolve(f)), f);
        List<JsonNode> ref = metrics(full);

        for (String[] layout : new String[][]{{"2", "2", "1", "1"}, {"1", "1", "4", "1"}, {"1", "4", "1", "1"}}) {
            String what = "tp 2 x pp 2 -> tp " + layout[0] + " x pp " + layout[1] + " x dp " + layout[2];
            Path run = tmp.resolve("resume-" + String.join("-", layout));
            copyTree(cut, run);
            List<String> ids = new ArrayList<>(firstIds);
            ids.addAll(train(tmp.resolve("ids-" + run.getFileName()), cat(new String[]{"train", "--resume", run.toString(), "--tp", layout[0], "--pp", layout[1],
                    "--dp", layout[2], "--virtual-stages", layout[3]}, common)));
            check(what, fullIds, ids, ref, metrics(run), layout[0].equals("2") && layout[1].equals("2"));
            List<Long> steps = StepDirectories.forRun(run).committedSteps();
            assertEquals(10L, steps.get(steps.size() - 1), what + ": the resumed run checkpoints in its own layout");
        }

        // a stage's file gone: a one-line error naming it, exit 2, before anything runs
        Path broken = tmp.resolve("broken");
        copyTree(cut, broken);
        String lost = StepDirectories.modelFile(1, 2, 1, 2, 0, 1);
        Files.delete(StepDirectories.forRun(broken).stepDir(5).resolve(lost));
        StringBuilder err = new StringBuilder();
        assertEquals(2, run(err, cat(new String[]{"train", "--resume", broken.toString(), "--tp", "1", "--pp", "1", "--dp", "4"}, common)), err.toString());
        assertTrue(err.toString().contains(lost + ": listed in the manifest but missing"), err.toString());
        assertFalse(err.toString().contains("\tat "), "no stack trace");

        // and back: a tp 1 x dp 4 checkpoint resumed as tp 2 x pp 2, interleaved (2 virtual stages per rank)
        Path dpCut = tmp.resolve("dp-cut"), back = tmp.resolve("back");
        List<String> ids = new ArrayList<>(train(tmp.resolve("ids-dp-cut"), cat(new String[]{"train", "--config", c.toString(), "--run-dir", dpCut.toString(),
                "--dp", "4", "--stop-at-step", "5"}, common)));
        copyTree(dpCut, back);
        ids.addAll(train(tmp.resolve("ids-back"), cat(new String[]{"train", "--resume", back.toString(), "--tp", "2", "--pp", "2", "--dp", "1",
                "--virtual-stages", "2"}, common)));
        check("tp 1 x dp 4 -> tp 2 x pp 2 (2 virtual)", fullIds, ids, ref, metrics(back), false);
    }

    /**
     * --init-from with pipeline stages: a tp 2 x pp 2 run's directory into pp 4, and its export (fp32, Hugging Face
     * layout) into tp 2 x pp 2 with 2 virtual stages. One step at lr 1e-30 cannot move the weights, so each new run's
     * first checkpoint, saved in its own stage split, holds the source's weights bit for bit.
     */
    @Test
    void initFromIntoPipelineStages() throws Exception {
        Path c = tmp.resolve("c.yaml"), a = tmp.resolve("a"), hf = tmp.resolve("hf"), tok = tmp.resolve("tokenizer.json");
        Files.writeString(c, CONFIG.replace("steps: 10", "steps: 2"));
        String[] common = {"--synthetic-data", "--peak-tflops", "0.1"};
        StringBuilder s = new StringBuilder();
        assertEquals(0, run(s, cat(new String[]{"train", "--config", c.toString(), "--run-dir", a.toString(), "--tp", "2", "--pp", "2"}, common)), s.toString());
        Files.writeString(tok, "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}\n");
        s.setLength(0);
        assertEquals(0, run(s, "export", "--checkpoint", a.toString(), "--out", hf.toString(), "--dtype", "fp32", "--tokenizer", tok.toString()), s.toString());
        String[] still = {"--set", "optimizer.lr=1.0e-30", "--set", "optimizer.min_lr=0", "--set", "train.steps=1"};
        String[][] cases = {{"--init-from", a.toString(), "--pp", "4"}, {"--init-from", hf.toString(), "--tp", "2", "--pp", "2", "--virtual-stages", "2"}};
        for (int k = 0; k < cases.length; k++) {
            Path b = tmp.resolve("b" + k);
            s.setLength(0);
            assertEquals(0, run(s, cat(cat(new String[]{"train", "--config", c.toString(), "--run-dir", b.toString()}, cases[k]), cat(still, common))), s.toString());
            assertTrue(s.toString().contains("initialized from "), s.toString());
            try (HostFloats want = ModelSource.open(a).loadFull(); HostFloats got = ModelSource.open(StepDirectories.forRun(b).stepDir(1)).loadFull()) {
                assertEquals(want.numel(), got.numel());
                for (long i = 0; i < want.numel(); i++)
                    if (Float.floatToRawIntBits(want.get(i)) != Float.floatToRawIntBits(got.get(i)))
                        throw new AssertionError(String.join(" ", cases[k]) + ": element " + i + ": " + got.get(i) + " != " + want.get(i));
            }
        }
    }

    /**
     * Two processes through `midtrain launch` (one pipeline stage each, TCP point-to-point) save step 5 by the
     * two-phase commit, one file pair per stage; the run resumes in one process as tp 2 x pp 2 threads and continues
     * within {@link #TOL} of the uninterrupted tp 2 x pp 2 run.
     */
    @Test
    void stageProcessesCommitOneCheckpoint() throws Exception {
        Path c = tmp.resolve("c.yaml"), full = tmp.resolve("full"), run = tmp.resolve("procs");
        Files.writeString(c, CONFIG);
        String[] common = {"--synthetic-data", "--peak-tflops", "0.1"};
        StringBuilder s = new StringBuilder();
        assertEquals(0, run(s, cat(new String[]{"train", "--config", c.toString(), "--run-dir", full.toString(), "--tp", "2", "--pp", "2"}, common)), s.toString());
        List<String> out = Collections.synchronizedList(new ArrayList<>());
        Process p = procs.jvm(Map.of(), out, cat(new String[]{"launch", "--nproc-per-node", "2", "--master-port", "" + MultiProcessTrainTest.masterPort(), "--",
                "train", "--config", c.toString(), "--run-dir", run.toString(), "--pp", "2", "--stop-at-step", "5"}, common));
        assertTrue(p.waitFor(240, TimeUnit.SECONDS), "launch finished:\n" + MultiProcessTrainTest.text(out));
        assertEquals(0, p.exitValue(), MultiProcessTrainTest.text(out));
        assertEquals(List.of(5L), StepDirectories.forRun(run).committedSteps());
        Path step5 = StepDirectories.forRun(run).stepDir(5);
        for (int q = 0; q < 2; q++) assertTrue(Files.isRegularFile(step5.resolve(StepDirectories.modelFile(0, 1, q, 2, 0, 1))), "stage " + q + " weights");
        s.setLength(0);
        assertEquals(0, run(s, cat(new String[]{"train", "--resume", run.toString(), "--tp", "2", "--pp", "2"}, common)), s.toString());
        check("2 processes of pp 2 -> tp 2 x pp 2 threads", null, null, metrics(full), metrics(run), false);
    }

    private static void check(String what, List<String> fullIds, List<String> ids, List<JsonNode> ref, List<JsonNode> got, boolean bitForBit) {
        if (fullIds != null) assertEquals(sorted(fullIds), sorted(ids), what + ": the samples of steps 1..10, each exactly once");
        assertEquals(10, got.size(), what);
        double worst = 0;
        for (int i = 5; i < 10; i++) {
            assertEquals(ref.get(i).get("tokens_per_source"), got.get(i).get("tokens_per_source"), what + " step " + (i + 1));
            for (String k : new String[]{"loss", "grad_norm"}) {
                double a = ref.get(i).get(k).asDouble(), b = got.get(i).path(k).asDouble(Double.NaN);
                if (bitForBit)   // the same computation as the uninterrupted run
                    assertEquals(Double.doubleToRawLongBits(a), Double.doubleToRawLongBits(b), what + " step " + (i + 1) + " " + k + " bit for bit");
                double rel = Math.abs(a - b) / Math.abs(a);
                worst = Math.max(worst, rel);
                assertTrue(rel <= TOL, what + ": " + k + " at step " + (i + 1) + ": " + b + " vs " + a);
            }
        }
        System.out.printf("pipeline resume %s: worst relative difference %.2e%n", what, worst);
    }
}
