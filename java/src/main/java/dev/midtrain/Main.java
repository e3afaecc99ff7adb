package dev.midtrain;

import dev.midtrain.cli.Commands;

/** Entry point of bin/midtrain: picocli subcommands, one-line errors with a non-zero exit code. */
public final class Main {
    private Main() {}

    public static void main(String[] args) {
        System.exit(Commands.execute(args));
    }
}
