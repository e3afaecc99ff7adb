package dev.midtrain.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.ckpt.ModelSource;
import dev.midtrain.common.UserError;
import dev.midtrain.eval.EvalReport;
import dev.midtrain.eval.Evaluator;
import dev.midtrain.eval.Heatmap;
import dev.midtrain.eval.McItem;
import dev.midtrain.eval.McPrompt;
import dev.midtrain.eval.McTasks;
import dev.midtrain.infer.Engine;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * `midtrain eval`: multiple-choice accuracy of a checkpoint by discipline x difficulty (lm-evaluation-harness style
 * log-likelihood scoring, see {@link McPrompt}), written as a table, OUT/results.json and OUT/heatmap.png; with
 * {@code --compare OTHER} (a checkpoint, or a results.json of an earlier run) also the deltas this - OTHER.
 */
@Command(name = "eval", mixinStandardHelpOptions = true,
        description = "Score multiple-choice tasks (JSONL, or Hugging Face Arrow in MMLU / CMMLU layouts) by log-likelihood.")
public final class EvalCommand implements Callable<Integer> {
    @ArgGroup(exclusive = true, multiplicity = "1") ModelOption source;
    @Mixin EngineOptions engine;

    @Option(names = "--tasks", required = true, arity = "1..*", description = "task files (JSONL or Arrow)") List<Path> tasks;
    @Option(names = "--dev", arity = "1..*", description = "dev-split files for the shots (default: each task file's sibling with test -> dev in its name)") List<Path> dev;
    @Option(names = "--shots", defaultValue = "0", description = "k-shot prompts from the dev split (default 0)") int shots;
    @Option(names = "--seed", defaultValue = "1234", description = "seed of the shot selection (default 1234)") long seed;
    @Option(names = "--compare", description = "another checkpoint (step, run or Hugging Face directory) or an earlier results.json") Path compare;
    @Option(names = "--out", defaultValue = "eval-results", description = "output directory (default ./eval-results)") Path out;
    @Option(names = "--batch-tokens", defaultValue = "0", description = "tokens per forward batch (0 = 4 x max_seq_len)") int batchTokens;
    @Option(names = "--limit", defaultValue = "0", description = "score only the first N items (0 = all)") int limit;

    @Override
    public Integer call() throws IOException {
        if (shots < 0) throw new UserError("--shots: must be >= 0, got " + shots);
        if (limit < 0) throw new UserError("--limit: must be >= 0, got " + limit);
        List<McItem> test = new ArrayList<>(), devItems = new ArrayList<>();
        for (Path t : tasks) test.addAll(McTasks.load(t));
        if (limit > 0 && test.size() > limit) test = new ArrayList<>(test.subList(0, limit));
        if (shots > 0) {
            List<Path> devFiles = new ArrayList<>();
            if (dev != null) devFiles.addAll(dev);
            else for (Path t : tasks) { Path d = McTasks.devSibling(t); if (d != null) devFiles.add(d); }
            if (devFiles.isEmpty()) throw new UserError("--shots " + shots + ": no dev split (pass --dev FILE, or put a dev file beside the tasks)");
            for (Path d : devFiles) devItems.addAll(McTasks.load(d));
        }
        Map<String, List<McItem>> shotMap = McPrompt.shots(test, devItems, shots, seed);
        Path model = source.model();

        // the --compare target is checked before model A is scored: a bad path or an incomparable result fails fast
        EvalReport other = null;
        Path cmp = null;
        if (compare != null) {
            if (Files.isRegularFile(compare) && compare.toString().endsWith(".json")) {
                other = EvalReport.fromJson(compare);
                String why = EvalReport.shapeOf(shots, test).incomparableWith(other);
                if (why != null) throw new UserError("--compare " + compare + ": " + why + "; rerun both with the same --tasks, --limit and --shots");
            } else {
                cmp = ModelSource.open(compare).dir();                           // a step, run or Hugging Face directory
            }
        }
        Run a = evaluate(model, test, shotMap);
        Run b = null;
        if (cmp != null) {
            b = evaluate(cmp, test, shotMap);
            other = b.report;
        }
        System.out.print(a.report.table());
        if (b != null) System.out.print(b.report.table());
        if (other != null) System.out.print(a.report.compareTable(other));

        Files.createDirectories(out);
        ObjectNode json = a.json();
        if (other != null) {
            ObjectNode c = json.putObject("compare");
            c.set("other", b != null ? b.json() : other.toJson());
            c.put("delta_acc", a.report.microAcc() - other.microAcc());
            c.put("delta_macro_acc", a.report.macroAcc() - other.macroAcc());
        }
        writeAtomically(out.resolve("results.json"), new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(json));
        Heatmap.write(out.resolve("heatmap.png"), a.report, other);
        System.out.printf(Locale.ROOT, "wrote %s, %s%n", out.resolve("results.json"), out.resolve("heatmap.png"));
        return 0;
    }

    /** One model's results: the report and the per-item log-likelihoods. */
    record Run(EvalReport report, List<Evaluator.ItemResult> items, double seconds) {
        ObjectNode json() {
            ObjectNode o = report.toJson();
            o.put("seconds", seconds);
            o.put("items_per_s", items.size() / seconds);
            ArrayNode arr = o.putArray("per_item");
            for (Evaluator.ItemResult r : items) {
                ObjectNode n = arr.addObject();
                n.put("where", r.item().where()).put("subject", r.item().subject()).put("difficulty", r.item().tier())
                        .put("answer", r.item().answer()).put("pred", r.pred()).put("pred_norm", r.predNorm());
                ArrayNode ll = n.putArray("loglikelihoods");
                for (double v : r.ll()) ll.add(v);
            }
            return o;
        }
    }

    private Run evaluate(Path model, List<McItem> test, Map<String, List<McItem>> shotMap) {
        try (Engine e = engine.load(model, batchTokens, 1)) {
            long t0 = System.nanoTime();
            List<Evaluator.ItemResult> r = Evaluator.run(e, test, shotMap);
            double s = (System.nanoTime() - t0) / 1e9;
            System.out.printf(Locale.ROOT, "%s: %d items (%d choices) in %.1f s, %.1f items/s%n", model, test.size(),
                    test.stream().mapToInt(i -> i.choices().size()).sum(), s, test.size() / s);
            return new Run(EvalReport.of(model.toString(), shots, r), r, s);
        } catch (IllegalArgumentException ex) {
            throw new UserError(model + ": " + ex.getMessage());
        }
    }

    static void writeAtomically(Path file, String text) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        Files.writeString(tmp, text);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
