package dev.midtrain.common;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.stream.Stream;

/**
 * The one crash-safe file publication of the project (checkpoints, prepared data, run configs): write to
 * {@code .NAME.tmp}, fsync it, rename it over {@code NAME} atomically, fsync the directory. A reader sees the old
 * file or the complete new one, never a prefix. Every write also computes the SHA-256 of the bytes written (for
 * manifests) without reading the file back.
 */
public final class AtomicFiles {
    private AtomicFiles() {}

    /** Size and SHA-256 (lowercase hex) of a written file. */
    public record Written(long bytes, String sha256) {}

    @FunctionalInterface
    public interface Body {
        void write(WritableByteChannel out) throws IOException;
    }

    /** The temp name a write of {@code target} goes through (hidden, next to it, so the rename stays on one file system). */
    public static Path tempFor(Path target) { return target.resolveSibling("." + target.getFileName() + ".tmp"); }

    /** Writes {@code target} atomically through {@code body}; returns its size and hash. */
    public static Written write(Path target, Body body) throws IOException {
        try (Pending p = begin(target)) {
            body.write(p.channel());
            return p.commit();
        }
    }

    public static Written writeString(Path target, String text) throws IOException {
        return writeBytes(target, text.getBytes(StandardCharsets.UTF_8));
    }

    public static Written writeBytes(Path target, byte[] bytes) throws IOException {
        return write(target, out -> { ByteBuffer b = ByteBuffer.wrap(bytes); while (b.hasRemaining()) out.write(b); });
    }

    /** Starts a streamed write of {@code target}: write through {@link Pending#channel()}, then {@link Pending#commit()}. */
    public static Pending begin(Path target) throws IOException {
        Path tmp = tempFor(target);
        return new Pending(target, tmp, FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE));
    }

    /**
     * A write in progress to the temp file. {@link #channel()} hashes and counts every byte (its close() is a no-op,
     * so writers that close their channel do no harm); {@link #commit()} fsyncs, renames and fsyncs the directory;
     * {@link #close()} without a commit deletes the temp file.
     */
    public static final class Pending implements AutoCloseable {
        private final Path target, tmp;
        private final FileChannel file;
        private final MessageDigest md = sha256();
        private long bytes;
        private boolean committed;

        private Pending(Path target, Path tmp, FileChannel file) {
            this.target = target;
            this.tmp = tmp;
            this.file = file;
        }

        public WritableByteChannel channel() {
            return new WritableByteChannel() {
                @Override public int write(ByteBuffer src) throws IOException {
                    ByteBuffer view = src.duplicate();
                    int n = file.write(src);
                    view.limit(view.position() + n);
                    md.update(view);
                    bytes += n;
                    return n;
                }
                @Override public boolean isOpen() { return file.isOpen(); }
                @Override public void close() { }
            };
        }

        public Written commit() throws IOException {
            file.force(true);
            file.close();
            publish(tmp, target);
            committed = true;
            return new Written(bytes, HexFormat.of().formatHex(md.digest()));
        }

        @Override public void close() throws IOException {
            if (committed) return;
            file.close();
            Files.deleteIfExists(tmp);
        }
    }

    /** Renames {@code from} over {@code to} atomically (file or directory) and fsyncs {@code to}'s directory. */
    public static void publish(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            throw new IOException("filesystem cannot rename " + from + " atomically", e);
        }
        fsyncDir(to.toAbsolutePath().getParent());
    }

    /** Makes a directory's entries (creations, renames, deletions) durable. */
    public static void fsyncDir(Path dir) throws IOException {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        }
    }

    /** SHA-256 of a whole file, lowercase hex. */
    public static String sha256(Path file) throws IOException {
        MessageDigest md = sha256();
        ByteBuffer buf = ByteBuffer.allocateDirect(4 << 20);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            while (ch.read(buf.clear()) >= 0) md.update(buf.flip());
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /** Deletes a file tree if it exists (best effort on races; errors propagate). */
    public static void deleteTree(Path root) throws IOException {
        if (!Files.exists(root, LinkOption.NOFOLLOW_LINKS)) return;
        try (Stream<Path> walk = Files.walk(root)) {
            for (Path p : (Iterable<Path>) walk.sorted(Comparator.reverseOrder())::iterator) Files.deleteIfExists(p);
        }
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
