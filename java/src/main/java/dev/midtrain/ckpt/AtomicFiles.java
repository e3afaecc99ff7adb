package dev.midtrain.ckpt;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.stream.Stream;

/**
 * Crash-safe file publication: write to {@code NAME.tmp}, fsync it, rename it over {@code NAME} atomically, fsync
 * the directory. A reader sees the old file or the complete new one, never a prefix. Every write also computes the
 * SHA-256 of the bytes written (for checkpoint manifests) without reading the file back.
 */
public final class AtomicFiles {
    private AtomicFiles() {}

    /** Size and SHA-256 (lowercase hex) of a written file. */
    public record Written(long bytes, String sha256) {}

    @FunctionalInterface
    public interface Body {
        void write(WritableByteChannel out) throws IOException;
    }

    /** Writes {@code target} atomically through {@code body}; returns its size and hash. */
    public static Written write(Path target, Body body) throws IOException {
        Path tmp = target.resolveSibling(target.getFileName() + ".tmp");
        MessageDigest md = sha256();
        long[] count = {0};
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
            WritableByteChannel hashing = new WritableByteChannel() {
                @Override public int write(ByteBuffer src) throws IOException {
                    ByteBuffer dup = src.duplicate();
                    int n = ch.write(src);
                    dup.limit(dup.position() + n);
                    md.update(dup);
                    count[0] += n;
                    return n;
                }
                @Override public boolean isOpen() { return ch.isOpen(); }
                @Override public void close() { }
            };
            body.write(hashing);
            ch.force(true);
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(tmp);
            throw e;
        }
        publish(tmp, target);
        return new Written(count[0], HexFormat.of().formatHex(md.digest()));
    }

    public static Written writeString(Path target, String text) throws IOException {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        return write(target, out -> { ByteBuffer b = ByteBuffer.wrap(bytes); while (b.hasRemaining()) out.write(b); });
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

    /** Makes a directory's entries (creations, renames) durable. */
    public static void fsyncDir(Path dir) throws IOException {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        }
    }

    public static void fsyncFile(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
            ch.force(true);
        }
    }

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
        if (!Files.exists(root, java.nio.file.LinkOption.NOFOLLOW_LINKS)) return;
        try (Stream<Path> walk = Files.walk(root)) {
            for (Path p : (Iterable<Path>) walk.sorted(java.util.Comparator.reverseOrder())::iterator) Files.deleteIfExists(p);
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
