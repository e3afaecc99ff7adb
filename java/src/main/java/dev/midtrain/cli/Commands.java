package dev.midtrain.cli;

import dev.midtrain.common.UserError;

import dev.midtrain.kernels.KernelException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.PrintWriter;
import java.util.List;

/** The `midtrain` command and its subcommands; turns every user-facing failure into one line and an exit code. */
@Command(name = "midtrain", mixinStandardHelpOptions = true, version = "midtrain 0.1.0",
        description = "Llama-3 mid-training engine (Java orchestration, C/OpenMP and CUDA kernels).",
        subcommands = {TrainCommand.class, LaunchCommand.class, PrepareCommand.class, InfoCommand.class, ExportCommand.class, PlotCommand.class,
                SynthesizeCommand.class, EvalCommand.class, GenerateCommand.class, ServeCommand.class})
public final class Commands {

    /** Runs the CLI and returns the process exit code (0 ok, 1 runtime failure, 2 usage or input error). */
    public static int execute(String... args) { return execute(List.of(), args); }

    /** As {@link #execute(String...)}, with more subcommands (annotated picocli commands) added to the top level. */
    public static int execute(List<Object> moreSubcommands, String... args) {
        CommandLine cli = new CommandLine(new Commands());
        for (Object c : moreSubcommands) cli.addSubcommand(c);
        // picocli lets --help win over an unknown command; refuse it instead (`midtrain frobnicate --help` is a typo)
        if (args.length > 0 && !args[0].startsWith("-") && !cli.getSubcommands().containsKey(args[0])) {
            cli.getErr().println("midtrain: unknown command '" + oneLine(args[0]) + "' (see 'midtrain --help')");
            return 2;
        }
        cli.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            Throwable t = unwrap(ex);
            PrintWriter err = cmd.getErr();
            if (t instanceof UserError u) {
                err.println("midtrain: " + oneLine(u.getMessage()));
                return u.exitCode();
            }
            if (t instanceof dev.midtrain.parallel.ParallelException d) {          // a rank missing, a peer gone, an NCCL error
                err.println("midtrain: " + oneLine(d.getMessage()));
                return 1;
            }
            if (t instanceof KernelException k) {
                err.println("midtrain: " + oneLine(k.getMessage()));
                return 1;
            }
            if (t instanceof OutOfMemoryError) {
                err.println("midtrain: out of memory: " + oneLine(t.getMessage()));
                return 1;
            }
            // An engine bug, not a user error: keep the stack trace for the report.
            err.println("midtrain: internal error: " + t);
            t.printStackTrace(err);
            return 1;
        });
        cli.setParameterExceptionHandler((ex, parsed) -> {
            PrintWriter err = ex.getCommandLine().getErr();
            err.println("midtrain: " + ex.getMessage() + " (see '" + ex.getCommandLine().getCommandName() + " --help')");
            return 2;
        });
        return cli.execute(args);
    }

    /** The CLI's promise: a user-facing failure is one line, whatever a library put in the message. */
    static String oneLine(String message) {
        return message == null ? "(no message)" : message.strip().replaceAll("\\s*\\R\\s*", "; ");
    }

    private static Throwable unwrap(Throwable t) {
        while ((t instanceof java.util.concurrent.ExecutionException || t instanceof java.util.concurrent.CompletionException)
                && t.getCause() != null) t = t.getCause();
        return t;
    }
}
