package dev.midtrain.kernels;

/** A kernel or device call returned a non-zero status. The message names the call and the status. */
public final class KernelException extends RuntimeException {
    private final int status;

    public KernelException(String kernel, int status) {
        super(kernel + " failed: " + describe(status));
        this.status = status;
    }

    public KernelException(String message) {
        super(message);
        this.status = 0;
    }

    public int status() { return status; }

    static String describe(int status) {
        return switch (status) {
            case -1 -> "invalid argument (MT_ERR_ARG)";
            case -2 -> "token id out of range (MT_ERR_RANGE)";
            case -3 -> "CUDA launch failed (MT_ERR_LAUNCH)";
            case -4 -> "unsupported sizes for this backend (MT_ERR_UNSUPPORTED)";
            default -> "status " + status;
        };
    }
}
