package dev.midtrain.train;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import sun.misc.Signal;
import sun.misc.SignalHandler;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * SIGTERM / SIGINT handling for training: the first signal only sets a flag; the trainer checks {@link #requested()}
 * at each step boundary, finishes the step, saves a checkpoint, waits for it and returns normally (exit code 0).
 * A second signal exits at once (status 128 + signal) for an impatient Ctrl-C. Installed handlers replace the JVM's
 * default (which would start shutdown mid-step); {@link #close} restores them.
 */
public final class GracefulStop implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(GracefulStop.class);

    private final AtomicInteger signals = new AtomicInteger();
    private volatile String signalName;
    private final SignalHandler[] previous = new SignalHandler[2];
    private static final String[] NAMES = {"TERM", "INT"};

    private final String action;

    private GracefulStop(String action) { this.action = action; }

    /** Installs handlers for SIGTERM and SIGINT. */
    public static GracefulStop install() { return install("finishing the current step, saving a checkpoint, then exiting"); }

    /** As {@link #install()}; {@code action} says what the first signal does (logged). */
    public static GracefulStop install(String action) {
        GracefulStop g = new GracefulStop(action);
        for (int i = 0; i < NAMES.length; i++) {
            final String name = NAMES[i];
            g.previous[i] = Signal.handle(new Signal(name), sig -> g.onSignal(name, sig.getNumber()));
        }
        return g;
    }

    private void onSignal(String name, int number) {
        if (signals.getAndIncrement() == 0) {
            signalName = "SIG" + name;
            log.warn("SIG{} received: {} (send it again to exit at once)", name, action);
        } else {
            log.warn("second SIG{}: exiting now without saving", name);
            Runtime.getRuntime().halt(128 + number);
        }
    }

    /** Whether a stop was requested (checked at step boundaries). */
    public boolean requested() { return signals.get() > 0; }

    /** What requested the stop ("SIGTERM", "SIGINT", ), or null. */
    public String reason() { return signalName; }

    @Override
    public void close() {
        for (int i = 0; i < NAMES.length; i++) if (previous[i] != null) Signal.handle(new Signal(NAMES[i]), previous[i]);
    }
}
