package dev.midtrain;

import dev.midtrain.bench.BenchCommand;
import dev.midtrain.cli.Commands;
import dev.midtrain.recipe.RecipeCommand;

import java.util.List;

/**
 * Entry point of bin/midtrain: picocli subcommands, one-line errors with a non-zero exit code. The benchmarks are
 * and the recipe (which runs the other commands through {@code cli}) are added here, so that {@code cli} depends on
 * neither {@code bench} nor {@code recipe}.
 */
public final class Main {
    private Main() {}

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** The whole `midtrain` command line; returns the exit code. */
    public static int run(String... args) {
        return Commands.execute(List.of(new BenchCommand(), new RecipeCommand()), args);
    }
}
