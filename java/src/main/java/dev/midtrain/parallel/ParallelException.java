package dev.midtrain.parallel;

/**
 * A collective, rendezvous or launch failed (a rank missing past its timeout, a peer that closed its connection, an
 * NCCL error). The message is one line that names the ranks, host or call at fault.
 */
public final class ParallelException extends RuntimeException {
    public ParallelException(String message) { super(message); }

    public ParallelException(String message, Throwable cause) { super(message, cause); }
}
