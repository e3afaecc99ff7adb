package dev.midtrain.data;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/** Crash-safe file writing (temp name + fsync + rename + directory fsync) and SHA-256 helpers. */
final class AtomicFiles {
    private AtomicFiles() {}

    static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    static String hex(byte[] digest) { return HexFormat.of().formatHex(digest); }

    /** SHA-256 of a whole file, hex. */
    static String sha256(Path file) throws IOException {
        MessageDigest md = sha256();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            ByteBuffer buf = ByteBuffer.allocateDirect(1 << 20);
            while (ch.read(buf) > 0) {
                buf.flip();
                md.update(buf);
                buf.clear();
            }
        }
        return hex(md.digest());
    }

    /** Writes {@code bytes} to {@code file} via {@code .file.tmp}, fsync, atomic rename, directory fsync. */
    static void write(Path file, byte[] bytes) throws IOException {
        Path tmp = tempFor(file);
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) ch.write(b);
            ch.force(true);
        }
        commit(tmp, file);
    }

    static Path tempFor(Path file) { return file.resolveSibling("." + file.getFileName() + ".tmp"); }

    /** Renames a fully written and fsynced temp file onto its final name and makes the rename durable. */
    static void commit(Path tmp, Path file) throws IOException {
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        fsyncDir(file.toAbsolutePath().getParent());
    }

    static void fsyncDir(Path dir) throws IOException {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException e) {
            // some file systems refuse fsync on directories; the rename itself is still atomic
        }
    }

    /** A file channel that hashes and counts every byte written; close() fsyncs then closes the file. */
    static final class HashingChannel implements WritableByteChannel {
        final FileChannel file;
        final MessageDigest md = sha256();
        long bytes;

        HashingChannel(FileChannel file) { this.file = file; }

        @Override public int write(ByteBuffer src) throws IOException {
            ByteBuffer view = src.duplicate();
            int n = file.write(src);
            view.limit(view.position() + n);
            md.update(view);
            bytes += n;
            return n;
        }

        @Override public boolean isOpen() { return file.isOpen(); }

        @Override public void close() throws IOException {
            if (!file.isOpen()) return;
            file.force(true);
            file.close();
        }
    }
}
