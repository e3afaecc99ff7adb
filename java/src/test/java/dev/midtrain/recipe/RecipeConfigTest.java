package dev.midtrain.recipe;

import dev.midtrain.cli.Cli;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** Recipe files: bad input is one line naming the file and field, exit 2; variants deep-merge; the report's intervals. */
class RecipeConfigTest {
    @TempDir Path tmp;

    static final String OK = """
            out_dir: OUT
            tokenizer: data/tokenizer/tokenizer.json
            base: {init: random}
            probe: {tasks: [data/eval-sample/test.jsonl]}
            qa: {name: boostqa, files: [data/boostqa/sample.jsonl]}
            web: {name: knowedu, files: [data/knowedu/sample.jsonl]}
            train: {config: configs/tiny.yaml, set: {train.steps: 5}}
            """;

    Cli.Run run(String yaml, String... more) throws Exception {
        Path f = tmp.resolve("r.yaml");
        Files.writeString(f, yaml.replace("OUT", tmp.resolve("out").toString()));
        String[] args = new String[3 + more.length];
        args[0] = "recipe";
        args[1] = "run";
        args[2] = f.toString();
        System.arraycopy(more, 0, args, 3, more.length);
        return Cli.run(args);
    }

    void bad(String yaml, String expect, String... more) throws Exception {
        Cli.Run r = run(yaml, more);
        assertEquals(2, r.code(), r.out() + r.err());
        assertTrue(r.err().contains(expect), r.err());
        assertEquals(1, r.err().strip().lines().count(), "one line: " + r.err());
        assertFalse(r.err().contains("Exception"), r.err());
    }

    @Test
    void badRecipesAreOneLineErrors() throws Exception {
        bad(OK + "bogus: 1\n", "unknown field bogus");
        bad(OK.replace("base: {init: random}", "base: {init: pretrained}"), "base.init: must be random");
        bad(OK.replace("base: {init: random}", "base: {init: random, hf: /x}"), "base: give exactly one of");
        bad(OK.replace("probe: {tasks: [data/eval-sample/test.jsonl]}", "probe: {tasks: []}"), "probe.tasks");
        bad(OK.replace("data/knowedu/sample.jsonl", "data/knowedu/nope.jsonl"), "data/knowedu/nope.jsonl: not found");
        bad(OK + "variants: [{name: a}, {name: a}]\n", "variant name 'a' appears twice");
        bad(OK + "variants: [{name: a, overrides: {out_dir: x}}]\n", "cannot change variants or out_dir");
        bad(OK + "synthesize: {config: c.yaml, seeds: [s.jsonl], stages: [curate, refine]}\n", "must include generate");
        bad(OK, "stage 'frob': must be one of", "--only", "frob");
        bad(OK, "--from and --only", "--only", "train", "--from", "probe");
        bad("out_dir: [\n", "malformed YAML");
        bad(OK, "has not run yet", "--only", "train");
    }

    @Test
    void variantsDeepMergeTheirOverrides() throws Exception {
        var tree = Recipe.YAML.readTree(OK + """
                variants:
                  - name: a
                  - name: b
                    overrides: {train: {set: {optimizer.lr: 1.0e-3}}, web: {weight: 2.0}}
                """);
        var v = Recipe.variants(tree, "test");
        assertEquals(java.util.List.of("a", "b"), java.util.List.copyOf(v.keySet()));
        assertEquals(1, v.get("a").train().set().size());
        assertEquals(5, v.get("b").train().set().get("train.steps").asInt());           // kept
        assertEquals(1e-3, v.get("b").train().set().get("optimizer.lr").asDouble());   // added
        assertEquals(2.0, v.get("b").web().weight());
        assertEquals(1.0, v.get("a").web().weight());
    }

    /** Newcombe (1998), Statistics in Medicine 17:873, table II example (a): 56/70 - 48/80, method 10: [0.0524, 0.3339]. */
    @Test
    void differenceIntervalMatchesNewcombesExample() {
        double[] d = Report.newcombe(56, 70, 48, 80);
        assertEquals(0.2, d[0], 1e-12);
        assertEquals(0.0524, d[1], 5e-5);                 // the paper prints 4 decimals
        assertEquals(0.3339, d[2], 5e-5);
        double[] w = Report.wilson(81, 263);               // Wilson (1927) via Newcombe table I: 81/263 -> [0.2553, 0.3662]
        assertEquals(0.2553, w[0], 5e-5);
        assertEquals(0.3662, w[1], 5e-5);
    }
}
