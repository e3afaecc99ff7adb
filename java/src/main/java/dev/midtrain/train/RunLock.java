package dev.midtrain.train;

import dev.midtrain.common.UserError;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;

/**
 * The lock of a run directory, held by process 0 of a training for its whole life: RUN_DIR/run.lock, an OS file lock
 * (fcntl; NFS through its lock manager) plus "host pid start-time" written inside for the message. A second training
 * (or a second set of processes) on the directory is refused with one line naming the holder. The OS drops the lock
 * when its process dies, however it dies, so a stale file left by a SIGKILLed run never blocks a resume.
 */
public final class RunLock implements AutoCloseable {
    public static final String FILE = "run.lock";

    private final FileChannel channel;
    private final FileLock lock;

    private RunLock(FileChannel channel, FileLock lock) {
        this.channel = channel;
        this.lock = lock;
    }

    /** Locks {@code runDir} (which must exist) or throws a {@link UserError} (exit 2) naming the holder. */
    public static RunLock acquire(Path runDir) {
        Path file = runDir.resolve(FILE);
        FileChannel ch = null;
        try {
            ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
            FileLock l;
            try {
                l = ch.tryLock();
            } catch (OverlappingFileLockException e) {
                l = null;                                           // held by this JVM (another training in-process)
            }
            if (l == null) {
                String holder = Files.readString(file, StandardCharsets.UTF_8).strip();
                ch.close();
                throw new UserError("run directory " + runDir + " is in use by another training: " + (holder.isEmpty() ? "unknown holder" : holder)
                        + " (lock " + file + "); stop it first, or use another --run-dir");
            }
            String me = "host " + host() + " pid " + ProcessHandle.current().pid() + " since " + Instant.now() + "\n";
            ch.truncate(0);
            ch.write(ByteBuffer.wrap(me.getBytes(StandardCharsets.UTF_8)), 0);
            ch.force(true);
            return new RunLock(ch, l);
        } catch (IOException e) {
            if (ch != null) try { ch.close(); } catch (IOException ignored) { /* failing anyway */ }
            throw new UserError("run directory " + runDir + ": cannot lock " + file + ": " + e.getMessage());
        }
    }

    private static String host() {
        try {
            return InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            String h = System.getenv("HOSTNAME");
            return h != null ? h : ManagementFactory.getRuntimeMXBean().getName();
        }
    }

    /** Releases the lock (the file stays; its content is only a hint). */
    @Override
    public void close() {
        try {
            lock.release();
            channel.close();
        } catch (IOException ignored) {
            // the OS releases the lock when the process exits anyway
        }
    }
}
