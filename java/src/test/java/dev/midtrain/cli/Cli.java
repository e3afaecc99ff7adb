package dev.midtrain.cli;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/** Runs the `midtrain` CLI in-process for tests, capturing what it prints. */
public final class Cli {
    private Cli() {}

    /** Exit code, standard output and standard error of one run. */
    public record Run(int code, String out, String err) {}

    /** Runs the CLI with stdout and stderr captured separately. */
    public static Run run(String... args) {
        PrintStream oldOut = System.out, oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            int code = dev.midtrain.Main.run(args);
            return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    /** Runs the CLI with stdout and stderr interleaved into {@code sink} (and echoed to the real stdout for the log). */
    public static int run(StringBuilder sink, String... args) {
        PrintStream oldOut = System.out, oldErr = System.err;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        try (PrintStream p = new PrintStream(buf, true, StandardCharsets.UTF_8)) {
            System.setOut(p);
            System.setErr(p);
            return dev.midtrain.Main.run(args);
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
            String text = buf.toString(StandardCharsets.UTF_8);
            sink.append(text);
            oldOut.print(text);
        }
    }
}
