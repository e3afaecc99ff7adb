package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import dev.midtrain.common.AtomicFiles;
import dev.midtrain.common.LongMap;
import dev.midtrain.common.UserError;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Near-duplicate removal with MinHash LSH (Broder 1997; the LSH banding of Leskovec, Rajaraman and Ullman, ch. 3).
 *
 * <p>A document's shingles are its runs of {@code shingle} consecutive {@link TextUnits} (words; single characters
 * for Chinese, Japanese, Thai; the whole document when shorter). Its signature holds, for each of
 * {@value #PERMUTATIONS} hash functions {@code h_j(x) = (a_j x + b_j) >>> 33} (a_j odd, 64-bit), the minimum over the
 * document's 64-bit shingle hashes; the fraction of equal entries of two signatures estimates the Jaccard similarity
 * of their shingle sets (standard error sqrt(J(1-J)/128), 0.035 at J = 0.8). LSH: the signature is cut into b bands of
 * r rows, r the largest divisor of 128 with a candidate probability 1 - (1 - t^r)^b >= 0.9 at the threshold t
 * (t 0.8: r 8, b 16, 0.947); two documents sharing one band are candidates, and a candidate whose estimated Jaccard
 * reaches t is a near-duplicate.
 *
 * <p>Documents are checked in input order and a document is dropped when it is a near-duplicate of one kept before
 * (in this source, or in a source given with --dedup-against, whose signatures prepare saved as
 * {@value #SIGNATURES_FILE}); so the first copy is kept and the result does not depend on the thread count.
 * Memory: 512 bytes per kept document plus b index entries. Not thread-safe; {@link #signature} is.
 */
public final class MinHashDedup {
    public static final String SIGNATURES_FILE = "minhash.bin";
    public static final int PERMUTATIONS = 128;
    private static final byte[] MAGIC = "MTMINH01".getBytes(java.nio.charset.StandardCharsets.US_ASCII);

    /**
     * @param shingle    units per shingle (default 5)
     * @param threshold  estimated Jaccard similarity at or above which a document is a near-duplicate (default 0.8)
     * @param against    prepared directories (written with dedup on) whose documents count as seen before
     */
    public record Params(int shingle, double threshold, List<Path> against) {
        public Params {
            if (shingle < 1) throw new UserError("--dedup-shingle: must be >= 1, got " + shingle);
            if (!(threshold > 0 && threshold <= 1)) throw new UserError("--dedup-threshold: must be in (0, 1], got " + threshold);
            against = against == null ? List.of() : List.copyOf(against);
        }
    }

    private final Params p;
    final int bands, rows;
    private final long[] a = new long[PERMUTATIONS], b = new long[PERMUTATIONS];
    private int[] sigs = new int[PERMUTATIONS * 1024];          // kept documents' signatures, flat
    private int[] docIndex = new int[1024];                     // per kept id: document index in its source
    private short[] sourceOf = new short[1024];                 // per kept id: index into sourceNames
    private final List<String> sourceNames = new ArrayList<>();
    private int count, ownFrom;
    private final Table[] tables;

    public MinHashDedup(Params p) {
        this.p = p;
        int r = 1;
        for (int cand = 1; cand <= PERMUTATIONS; cand *= 2) {
            double prob = 1 - Math.pow(1 - Math.pow(p.threshold(), cand), (double) PERMUTATIONS / cand);
            if (prob >= 0.9) r = cand;
        }
        rows = r;
        bands = PERMUTATIONS / r;
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(0x5EEDL);
        for (int j = 0; j < PERMUTATIONS; j++) {
            a[j] = rnd.nextLong() | 1;
            b[j] = rnd.nextLong();
        }
        tables = new Table[bands];
        for (int i = 0; i < bands; i++) tables[i] = new Table();
    }

    public Params params() { return p; }

    /** Loads the signatures of each --dedup-against directory (its documents count as seen); call before {@link #startSource}. */
    public void loadAgainst() {
        for (Path dir : p.against()) {
            String name = Manifest.read(dir).source();
            Path f = dir.resolve(SIGNATURES_FILE);
            try (FileChannel ch = FileChannel.open(f)) {
                ByteBuffer head = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN);
                while (head.hasRemaining() && ch.read(head) > 0) { }
                head.flip();
                byte[] magic = new byte[8];
                if (head.remaining() < 24) throw new UserError(f + ": truncated MinHash signature file");
                head.get(magic);
                int shingle = head.getInt(), perms = head.getInt();
                long n = head.getLong();
                if (!Arrays.equals(magic, MAGIC) || perms != PERMUTATIONS)
                    throw new UserError(f + ": not a MinHash signature file of this version");
                if (shingle != p.shingle())
                    throw new UserError(f + ": signatures use shingle " + shingle + ", this run --dedup-shingle " + p.shingle());
                if (ch.size() != 24 + n * PERMUTATIONS * 4) throw new UserError(f + ": size does not match its " + n + " signatures");
                sourceNames.add(name);
                ByteBuffer body = ByteBuffer.allocate(PERMUTATIONS * 4).order(ByteOrder.LITTLE_ENDIAN);
                int[] sig = new int[PERMUTATIONS];
                for (long d = 0; d < n; d++) {
                    body.clear();
                    while (body.hasRemaining() && ch.read(body) > 0) { }
                    body.flip();
                    body.asIntBuffer().get(sig);
                    add(sig, (int) d, sourceNames.size() - 1);
                }
            } catch (NoSuchFileException e) {
                throw new UserError(dir + ": no " + SIGNATURES_FILE + " (prepare that source with --dedup to dedup against it)");
            } catch (IOException e) {
                throw new UserError(f + ": cannot read: " + e.getMessage());
            }
        }
    }

    /** Documents added from now on belong to source {@code name} (the one being prepared). */
    public void startSource(String name) {
        sourceNames.add(name);
        ownFrom = count;
    }

    /** The document's signature; null for a document without units (nothing to compare). Thread-safe. */
    public int[] signature(List<String> units) { return signature(TextUnits.hashes(units)); }

    /** As {@link #signature(List)} from the units' hashes ({@link TextUnits#hashes}). Thread-safe. */
    public int[] signature(long[] uh) {
        int n = uh.length;
        if (n == 0) return null;
        int k = Math.min(p.shingle(), n), m = n - k + 1;
        long[] x = new long[m];                                       // shingle hashes
        for (int i = 0; i < m; i++) {
            long h = 0x9E3779B97F4A7C15L + k;
            for (int t = 0; t < k; t++) h = LongMap.mix(h * 31 + uh[i + t]);
            x[i] = h;
        }
        int[] sig = new int[PERMUTATIONS];
        for (int j = 0; j < PERMUTATIONS; j += 4) {                   // four permutations per pass: independent minima
            long a0 = a[j], a1 = a[j + 1], a2 = a[j + 2], a3 = a[j + 3], b0 = b[j], b1 = b[j + 1], b2 = b[j + 2], b3 = b[j + 3];
            long m0 = Long.MAX_VALUE, m1 = m0, m2 = m0, m3 = m0;
            for (int i = 0; i < m; i++) {
                long xi = x[i];
                m0 = Math.min(m0, (a0 * xi + b0) >>> 33);
                m1 = Math.min(m1, (a1 * xi + b1) >>> 33);
                m2 = Math.min(m2, (a2 * xi + b2) >>> 33);
                m3 = Math.min(m3, (a3 * xi + b3) >>> 33);
            }
            sig[j] = (int) m0;
            sig[j + 1] = (int) m1;
            sig[j + 2] = (int) m2;
            sig[j + 3] = (int) m3;
        }
        return sig;
    }

    /** A near-duplicate kept before: its label ("source#document") and estimated Jaccard similarity. */
    public record Match(String of, double jaccard) {}

    /** The most similar earlier document at or above the threshold, or null. */
    public Match find(int[] sig) {
        int best = -1, bestEq = -1;
        int need = (int) Math.ceil(p.threshold() * PERMUTATIONS - 1e-9);
        for (int band = 0; band < bands; band++) {
            for (int e = tables[band].first(bandKey(sig, band)); e >= 0; e = tables[band].next(e)) {
                int id = tables[band].value(e);
                int eq = 0, base = id * PERMUTATIONS;
                for (int j = 0; j < PERMUTATIONS; j++) if (sigs[base + j] == sig[j]) eq++;
                if (eq >= need && eq > bestEq) { best = id; bestEq = eq; }
            }
        }
        return best < 0 ? null : new Match(sourceNames.get(sourceOf[best]) + "#" + docIndex[best], (double) bestEq / PERMUTATIONS);
    }

    /** Adds a kept document of the current source ({@code index}: its position among the source's documents). */
    public void add(int[] sig, int index) { add(sig, index, sourceNames.size() - 1); }

    private void add(int[] sig, int index, int source) {
        if ((count + 1) * PERMUTATIONS > sigs.length) sigs = Arrays.copyOf(sigs, sigs.length * 2);
        if (count + 1 > docIndex.length) {
            docIndex = Arrays.copyOf(docIndex, docIndex.length * 2);
            sourceOf = Arrays.copyOf(sourceOf, sourceOf.length * 2);
        }
        System.arraycopy(sig, 0, sigs, count * PERMUTATIONS, PERMUTATIONS);
        docIndex[count] = index;
        sourceOf[count] = (short) source;
        for (int band = 0; band < bands; band++) tables[band].put(bandKey(sig, band), count);
        count++;
    }

    private long bandKey(int[] sig, int band) {
        long h = 0x632BE59BD9B4E019L + band;
        for (int j = band * rows; j < (band + 1) * rows; j++) h = LongMap.mix(h * 31 + sig[j]);
        return h;
    }

    /** Writes the current source's signatures (in document order) as {@value #SIGNATURES_FILE} into {@code dir}. */
    public void writeSignatures(Path dir) throws IOException {
        long n = count - ownFrom;
        AtomicFiles.write(dir.resolve(SIGNATURES_FILE), ch -> {
            ByteBuffer head = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN);
            head.put(MAGIC).putInt(p.shingle()).putInt(PERMUTATIONS).putLong(n).flip();
            while (head.hasRemaining()) ch.write(head);
            ByteBuffer body = ByteBuffer.allocate(PERMUTATIONS * 4 * 256).order(ByteOrder.LITTLE_ENDIAN);
            for (int id = ownFrom; id < count; id++) {
                if (body.remaining() < PERMUTATIONS * 4) {
                    body.flip();
                    while (body.hasRemaining()) ch.write(body);
                    body.clear();
                }
                for (int j = 0; j < PERMUTATIONS; j++) body.putInt(sigs[id * PERMUTATIONS + j]);
            }
            body.flip();
            while (body.hasRemaining()) ch.write(body);
        });
    }

    /** Multimap long -> int: a {@link LongMap} from each key to its newest entry, entries chained newest first. */
    private static final class Table {
        private final LongMap head = new LongMap(512, -1);
        private int[] next = new int[1024], val = new int[1024];
        private int entries;

        int first(long key) { return (int) head.get(key); }

        int next(int e) { return next[e]; }

        int value(int e) { return val[e]; }

        void put(long key, int v) {
            if (entries == val.length) {
                val = Arrays.copyOf(val, 2 * entries);
                next = Arrays.copyOf(next, 2 * entries);
            }
            val[entries] = v;
            next[entries] = (int) head.put(key, entries);
            entries++;
        }
    }
}
