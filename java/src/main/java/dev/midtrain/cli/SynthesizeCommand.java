package dev.midtrain.cli;

import dev.midtrain.common.UserError;
import dev.midtrain.synth.Pipeline;
import dev.midtrain.synth.Report;
import dev.midtrain.synth.SynthConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** `midtrain synthesize`: the BoostQA data pipeline against an OpenAI-compatible endpoint (see {@link Pipeline}). */
@Command(name = "synthesize", mixinStandardHelpOptions = true,
        description = {"BoostQA synthesis: curate -> annotate -> generate -> refine -> balance -> report, JSONL in and out of WORK_DIR,",
                "against any OpenAI-compatible endpoint. A rerun skips finished records. See configs/synthesis/README.md."})
public final class SynthesizeCommand implements Callable<Integer> {
    @Option(names = "--config", required = true, description = "synthesis config (e.g. configs/synthesis/boostqa.yaml)") Path config;
    @Option(names = "--work", required = true, description = "work directory holding every stage's JSONL") Path work;
    @Option(names = "--input", arity = "1..*", description = "seed JSONL files for curate (text, or question [+ answer]; optional id, discipline)") List<Path> inputs = List.of();
    @Option(names = "--stage", split = ",", description = "stages to run, in pipeline order: curate, annotate, generate, refine, balance, report, all (default: all)")
    List<String> stages = List.of("all");

    @Override
    public Integer call() {
        List<String> run = new ArrayList<>();
        for (String s : stages) {
            if (s.equals("all")) run.addAll(Pipeline.STAGES);
            else if (Pipeline.STAGES.contains(s)) run.add(s);
            else throw new UserError("--stage: must be one of " + Pipeline.STAGES + " or all, got " + s);
        }
        if (run.contains("curate") && inputs.isEmpty()) throw new UserError("--input: the curate stage needs seed JSONL files");
        SynthConfig cfg = SynthConfig.load(config);
        String key = System.getenv(cfg.endpoint().apiKeyEnv());
        Pipeline p = new Pipeline(cfg, config, work, key, System.err);
        int code = 0;
        for (String s : Pipeline.STAGES) {
            if (!run.contains(s)) continue;
            int c = switch (s) {
                case "curate" -> p.curate(inputs);
                case "annotate" -> p.annotate();
                case "generate" -> p.generate();
                case "refine" -> p.refine();
                case "balance" -> {
                    dev.midtrain.synth.Balance.run(cfg.balance(), work, System.err);
                    yield 0;
                }
                default -> {
                    Report.run(work, cfg.grades(), System.out);
                    yield 0;
                }
            };
            code = Math.max(code, c);
        }
        return code;
    }
}
