package dev.midtrain.kernels;

/** A kernel or device call returned a non-zero status. The message names the call and the status. */
public final class KernelException extends RuntimeException {
    private final int status;

    public KernelException(String kernel, int status) {
        super(kernel + " failed: " + KernelAbi.describe(status));
        this.status = status;
    }

    public KernelException(String message) {
        super(message);
        this.status = 0;
    }

    public int status() { return status; }
}
