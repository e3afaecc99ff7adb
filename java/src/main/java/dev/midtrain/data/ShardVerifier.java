package dev.midtrain.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import dev.midtrain.common.AtomicFiles;
import dev.midtrain.common.UserError;
import dev.midtrain.config.DataConfig;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Checks every shard of a run's prepared sources against the SHA-256 in its manifest when training starts (a flipped
 * bit would otherwise train silently), and its token ids against the manifest's max_token_id (which the run then
 * checks against the model's vocabulary, before the run directory exists): shards are hashed in parallel, one per thread, with a progress line every 10%
 * for large data. Shards already verified by this run (same path, size and modification time, in
 * RUN_DIR/{@value #CACHE_FILE}) are not read again, so a resume costs nothing. {@code midtrain train --no-verify-data}
 * skips the check (the loader still checks sizes, Arrow structure and token ranges).
 */
public final class ShardVerifier {
    public static final String CACHE_FILE = "verified_shards.json";
    private static final ObjectMapper JSON = new ObjectMapper();

    private ShardVerifier() {}

    /** A verified shard: absolute path, size, modification time (ISO-8601), SHA-256. */
    public record Entry(String path, long size, String mtime, String sha256) {}

    /** What {@link #verify} did. */
    public record Result(List<Entry> entries, int hashed, int cached, long bytesHashed, double seconds) {}

    /**
     * Verifies every shard of {@code cfg}'s sources; {@code cache} (may be absent) lists shards this run verified
     * before. A mismatch is a one-line {@link UserError} naming the shard.
     */
    public static Result verify(DataConfig cfg, Path cache, int threads, PrintStream log) {
        Map<String, Entry> known = readCache(cache);
        List<Entry> ok = new ArrayList<>();
        List<Path> todo = new ArrayList<>();
        List<String> want = new ArrayList<>();
        List<Integer> wantMax = new ArrayList<>();
        long total = 0;
        for (DataConfig.Source s : cfg.sources()) {
            Path dir = Path.of(s.path());
            for (Manifest.ShardFile f : Manifest.read(dir).files()) {
                Path file = dir.resolve(f.name()).toAbsolutePath().normalize();
                Entry e = known.get(file.toString());
                try {
                    if (e != null && e.sha256().equals(f.sha256()) && e.size() == Files.size(file)
                            && e.mtime().equals(Files.getLastModifiedTime(file).toInstant().toString())) {
                        ok.add(e);
                        continue;
                    }
                    total += Files.size(file);
                } catch (IOException ex) {
                    throw new UserError(file + ": shard listed in " + dir.resolve(Manifest.FILE) + " is missing or unreadable");
                }
                todo.add(file);
                want.add(f.sha256());
                wantMax.add(f.maxTokenId());
            }
        }
        int cached = ok.size();
        long t0 = System.nanoTime();
        if (todo.isEmpty()) return new Result(ok, 0, cached, 0, 0);
        final long all = total;
        if (log != null)
            log.printf("data: verifying SHA-256 of %d shard(s), %.2f GB, %d thread(s) (--no-verify-data skips)%n", todo.size(), all / 1e9, threads);
        AtomicLong done = new AtomicLong();
        int[] nextTenth = {1};
        ExecutorService pool = Executors.newFixedThreadPool(Math.max(1, Math.min(threads, todo.size())), r -> {
            Thread t = new Thread(r, "verify-shards");
            t.setDaemon(true);
            return t;
        });
        try {
            List<Future<Entry>> fs = new ArrayList<>();
            for (int i = 0; i < todo.size(); i++) {
                Path file = todo.get(i);
                String expected = want.get(i);
                int expectedMax = wantMax.get(i);
                fs.add(pool.submit(() -> {
                    long size = Files.size(file);
                    String mtime = Files.getLastModifiedTime(file).toInstant().toString();
                    String sha = sha256(file, n -> {
                        long d = done.addAndGet(n);
                        if (log != null && all > (1L << 30)) synchronized (nextTenth) {
                            while (d * 10 >= all * (long) nextTenth[0] && nextTenth[0] < 10)
                                log.printf("data: verified %d%% (%.2f of %.2f GB)%n", 10 * nextTenth[0]++, d / 1e9, all / 1e9);
                        }
                    });
                    if (!sha.equals(expected))
                        throw new UserError(file + ": SHA-256 " + sha + " does not match the manifest's " + expected
                                + " (corrupt or modified shard; re-run midtrain prepare, or --no-verify-data to skip the check)");
                    // the manifest's max_token_id is what the run checks against the model's vocabulary at start: it
                    // must be the shard's true maximum, or an id past the vocabulary would only fail mid-run
                    int max = PreparedSource.maxTokenId(file);
                    if (max > expectedMax)
                        throw new UserError(file + ": holds token id " + max + " above its manifest's max_token_id " + expectedMax
                                + " (manifest edited or written by another tool; re-run midtrain prepare)");
                    return new Entry(file.toString(), size, mtime, sha);
                }));
            }
            for (Future<Entry> f : fs) ok.add(f.get());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException re) throw re;
            throw new UserError("cannot read a shard: " + e.getCause().getMessage());
        } finally {
            pool.shutdownNow();
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        if (log != null)
            log.printf("data: %d shard(s) verified, %.2f GB in %.2f s (%.2f GB/s)%s%n", todo.size(), all / 1e9, secs, all / 1e9 / Math.max(secs, 1e-9),
                    cached > 0 ? "; " + cached + " unchanged since this run verified them" : "");
        return new Result(ok, todo.size(), cached, all, secs);
    }

    /** Saves the verified shards as {@code cache} (atomically). */
    public static void writeCache(Path cache, Result r) {
        ArrayNode arr = JSON.createArrayNode();
        for (Entry e : r.entries()) arr.add(JSON.valueToTree(e));
        try {
            AtomicFiles.writeString(cache, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(arr) + "\n");
        } catch (IOException e) {
            throw new java.io.UncheckedIOException("cannot write " + cache, e);
        }
    }

    private static Map<String, Entry> readCache(Path cache) {
        Map<String, Entry> m = new HashMap<>();
        if (cache == null || !Files.isRegularFile(cache)) return m;
        try {
            for (JsonNode n : JSON.readTree(cache.toFile())) {
                Entry e = JSON.treeToValue(n, Entry.class);
                if (e.path() != null && e.sha256() != null && e.mtime() != null) m.put(e.path(), e);
            }
        } catch (IOException | RuntimeException e) {
            return new HashMap<>();                                          // an unreadable cache only costs a re-hash
        }
        return m;
    }

    /** SHA-256 of a file, reporting bytes read. */
    static String sha256(Path file, java.util.function.LongConsumer progress) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        byte[] buf = new byte[1 << 20];
        try (InputStream in = Files.newInputStream(file)) {
            for (int n; (n = in.read(buf)) > 0; ) {
                md.update(buf, 0, n);
                progress.accept(n);
            }
        }
        return HexFormat.of().formatHex(md.digest());
    }
}
