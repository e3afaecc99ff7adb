package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.UserError;

import java.io.BufferedReader;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * An append-only JSON Lines file: one record per line, each appended with a single write and fsync'd before
 * {@link #append} returns, so a record the caller saw written survives a crash or SIGKILL. On open, a torn last line
 * (a write cut short by a kill) is truncated away, and the ids already present are loaded so that a rerun skips them.
 * Thread-safe.
 */
public final class JsonlLog implements Closeable {
    static final ObjectMapper JSON = new ObjectMapper();
    private final Path file;
    private final FileChannel ch;
    private final Set<String> ids = new HashSet<>();

    private JsonlLog(Path file) throws IOException {
        this.file = file;
        Files.createDirectories(file.toAbsolutePath().getParent());
        this.ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
        long size = ch.size(), keep = size;
        if (size > 0) {   // find the end of the last complete line
            ByteBuffer one = ByteBuffer.allocate(1);
            while (keep > 0) {
                one.clear();
                ch.read(one, keep - 1);
                if (one.get(0) == '\n') break;
                keep--;
            }
            if (keep < size) {
                ch.truncate(keep);
                ch.force(true);
            }
        }
        ch.position(keep);
        for (JsonNode r : read(file)) ids.add(r.path("id").asText());
    }

    /** Opens (creating) {@code file} for appending. */
    public static JsonlLog open(Path file) {
        try {
            return new JsonlLog(file);
        } catch (IOException e) {
            throw new UserError(file + ": cannot open for appending: " + e.getMessage(), 1, e);
        }
    }

    /** Ids of the records in the file (loaded at open, plus those appended since). */
    public synchronized Set<String> ids() { return Set.copyOf(ids); }

    /** Appends {@code record} (it must have an "id") as one line and fsyncs; a duplicate id is refused. */
    public synchronized void append(JsonNode record) {
        String id = record.path("id").asText();
        if (!ids.add(id)) throw new IllegalStateException(file + ": duplicate id " + id);
        try {
            ByteBuffer b = ByteBuffer.wrap((JSON.writeValueAsString(record) + "\n").getBytes(StandardCharsets.UTF_8));
            while (b.hasRemaining()) ch.write(b);
            ch.force(false);
        } catch (IOException e) {
            throw new UserError(file + ": cannot append: " + e.getMessage(), 1, e);
        }
    }

    @Override
    public synchronized void close() throws IOException { ch.close(); }

    /** Every record of a JSON Lines file; a malformed line is an error naming file:line. Missing file = none. */
    public static List<JsonNode> read(Path file) {
        List<JsonNode> out = new ArrayList<>();
        if (!Files.exists(file)) return out;
        try (BufferedReader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            String line;
            long n = 0;
            while ((line = r.readLine()) != null) {
                n++;
                if (line.isBlank()) continue;
                try {
                    JsonNode rec = JSON.readTree(line);
                    if (rec == null || !rec.isObject()) throw new UserError(file + ":" + n + ": not a JSON object");
                    out.add(rec);
                } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                    throw new UserError(file + ":" + n + ": malformed JSON: " + e.getOriginalMessage().split("\n")[0]);
                }
            }
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage());
        }
        return out;
    }
}
