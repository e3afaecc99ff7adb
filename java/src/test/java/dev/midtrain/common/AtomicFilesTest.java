package dev.midtrain.common;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The one atomic write: old file or complete new one, never a prefix; size and SHA-256 against MessageDigest. */
class AtomicFilesTest {
    @Test
    void writesPublishAndHashWhatWasWritten(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("a.bin");
        byte[] bytes = new byte[3 * 4096 + 17];
        new java.util.Random(5).nextBytes(bytes);
        AtomicFiles.Written w = AtomicFiles.writeBytes(f, bytes);
        assertArrayEquals(bytes, Files.readAllBytes(f));
        assertEquals(bytes.length, w.bytes());
        assertEquals(HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes)), w.sha256());
        assertEquals(w.sha256(), AtomicFiles.sha256(f));
        assertFalse(Files.exists(AtomicFiles.tempFor(f)));
    }

    @Test
    void aFailedWriteLeavesTheOldFileAndNoTemp(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("config.yaml");
        AtomicFiles.writeString(f, "old\n");
        assertThrows(IOException.class, () -> AtomicFiles.write(f, out -> {
            out.write(ByteBuffer.wrap("new, but only a pre".getBytes(StandardCharsets.UTF_8)));
            throw new IOException("disk full (simulated)");
        }));
        assertEquals("old\n", Files.readString(f));
        assertFalse(Files.exists(AtomicFiles.tempFor(f)));
        // a streamed write that is closed without commit is abandoned the same way
        try (AtomicFiles.Pending p = AtomicFiles.begin(f)) {
            p.channel().write(ByteBuffer.wrap(new byte[]{1, 2, 3}));
        }
        assertEquals("old\n", Files.readString(f));
        assertFalse(Files.exists(AtomicFiles.tempFor(f)));
    }
}
