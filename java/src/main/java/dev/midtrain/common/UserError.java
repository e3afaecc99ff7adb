package dev.midtrain.common;

/**
 * An error caused by the user's input (a bad flag, config field, file or shape). {@link dev.midtrain.Main} prints its
 * message as one line, without a stack trace, and exits with {@link #exitCode()} (2 by default).
 * The message must name the file or field at fault.
 */
public class UserError extends RuntimeException {
    private final int exitCode;

    public UserError(String message) { this(message, 2, null); }

    public UserError(String message, Throwable cause) { this(message, 2, cause); }

    public UserError(String message, int exitCode, Throwable cause) {
        super(message, cause);
        this.exitCode = exitCode;
    }

    public int exitCode() { return exitCode; }
}
