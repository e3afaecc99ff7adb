package dev.midtrain.recipe;

import dev.midtrain.common.UserError;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/** `midtrain recipe run RECIPE.yaml`: the paper's experiment as one command (see {@link RecipeRunner}, docs/recipe.md). */
@Command(name = "recipe", mixinStandardHelpOptions = true, description = "Run a mid-training recipe: probe, synthesize, prepare, train, probe, report.",
        subcommands = RecipeCommand.Run.class)
public final class RecipeCommand implements Callable<Integer> {
    @Override
    public Integer call() { throw new UserError("recipe: give a subcommand: recipe run RECIPE.yaml (see 'midtrain recipe --help')"); }

    @Command(name = "run", mixinStandardHelpOptions = true,
            description = {"Run the stages probe-base, synthesize, prepare, train, probe, report of RECIPE.yaml for each of its variants.",
                    "Done stages (same inputs) are skipped, changed ones rerun, a killed one resumes."})
    static final class Run implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "RECIPE.yaml") Path recipe;
        @Option(names = "--from", paramLabel = "STAGE", description = "rerun this stage and every later one") String from;
        @Option(names = "--only", paramLabel = "STAGE", description = "rerun this stage alone (the earlier ones must be done)") String only;

        @Override
        public Integer call() throws Exception {
            Recipe r = Recipe.load(recipe);
            new RecipeRunner(recipe, Path.of(r.outDir()), from, only, System.out).run();
            return 0;
        }
    }
}
