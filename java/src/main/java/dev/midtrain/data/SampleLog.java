package dev.midtrain.data;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Test-only record of which training samples were delivered: with the system property {@link #PROPERTY} set to a
 * directory, each loader appends one line per training sequence it hands to the trainer (a unique id of the sample:
 * "source m" = the m-th sample drawn from that source for the blended loader, "window p" for the in-memory
 * stream) to {@code DIR/samples-PID.txt}. Tests of resumes onto another layout compare these ids with an
 * uninterrupted run's: no sample repeated or skipped. Off (no cost beyond a null check) otherwise.
 */
public final class SampleLog {
    public static final String PROPERTY = "midtrain.sampleLog";
    private static final ThreadLocal<Boolean> MUTED = ThreadLocal.withInitial(() -> false);

    private SampleLog() {}

    /** Whether ids are being recorded (and this thread is not reading samples for another rank). */
    public static boolean on() { return System.getProperty(PROPERTY) != null && !MUTED.get(); }

    /** Appends one sample id (call only when {@link #on()}). */
    public static synchronized void record(String id) {
        Path f = Path.of(System.getProperty(PROPERTY)).resolve("samples-" + ProcessHandle.current().pid() + ".txt");
        try {
            Files.createDirectories(f.getParent());
            Files.writeString(f, id + "\n", StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Stops recording on this thread (a tensor-parallel rank other than 0: its replica's rank 0 records). */
    public static void muteThread() { MUTED.set(true); }

    /** Runs {@code r} without recording (a data-parallel slice reading the other ranks' samples). */
    public static void muted(Runnable r) {
        boolean was = MUTED.get();
        MUTED.set(true);
        try {
            r.run();
        } finally {
            MUTED.set(was);
        }
    }
}
