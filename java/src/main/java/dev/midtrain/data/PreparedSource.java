package dev.midtrain.data;

import dev.midtrain.common.AtomicFiles;

import dev.midtrain.common.UserError;
import org.apache.arrow.flatbuf.Buffer;
import org.apache.arrow.flatbuf.FieldNode;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.RecordBatch;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.ipc.ArrowFileReader;
import org.apache.arrow.vector.ipc.ReadChannel;
import org.apache.arrow.vector.ipc.message.ArrowBlock;
import org.apache.arrow.vector.ipc.message.MessageMetadataResult;
import org.apache.arrow.vector.ipc.message.MessageSerializer;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;

import java.io.IOException;
import java.nio.ByteOrder;
import java.nio.IntBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * One prepared source opened for reading: its token stream (all shards, in manifest order) as a random-access array
 * of int32, read straight from memory-mapped shard files (no copy through Arrow buffers).
 *
 * <p>Opening checks, always: the manifest; every shard's existence and exact byte size; that it is an Arrow IPC file
 * with the schema {tokens: int32 not null}, uncompressed record batches without nulls whose rows sum to the
 * manifest's count and whose data lie inside the file. With {@code verifySha256} it also hashes every shard (reads
 * all data; off by default for start-up speed). Every failure is a {@link UserError} naming the file.
 * Thread-safe for concurrent {@link #read} calls.
 */
public final class PreparedSource implements TokenStream, AutoCloseable {
    private final String name;
    private final Path dir;
    private final Manifest manifest;
    private final long[] batchStart;     // [nBatches + 1] token offset of each record batch in the stream
    private final IntBuffer[] batchData; // [nBatches] little-endian views of each batch's int32 data
    private final int[] batchFile;       // [nBatches] index into manifest.files()

    private PreparedSource(String name, Path dir, Manifest manifest, long[] batchStart, IntBuffer[] batchData, int[] batchFile) {
        this.name = name;
        this.dir = dir;
        this.manifest = manifest;
        this.batchStart = batchStart;
        this.batchData = batchData;
        this.batchFile = batchFile;
    }

    /** Opens and checks {@code dir}; {@code name} is the source name used in messages. */
    public static PreparedSource open(String name, Path dir, boolean verifySha256) {
        Manifest m = Manifest.read(dir);
        List<Long> starts = new ArrayList<>();
        List<IntBuffer> data = new ArrayList<>();
        List<Integer> owner = new ArrayList<>();
        long pos = 0;
        try (BufferAllocator alloc = new RootAllocator()) {
            for (int fi = 0; fi < m.files().size(); fi++) {
                Manifest.ShardFile f = m.files().get(fi);
                Path file = dir.resolve(f.name());
                long size;
                try {
                    size = Files.size(file);
                } catch (NoSuchFileException e) {
                    throw new UserError(file + ": shard listed in " + dir.resolve(Manifest.FILE) + " is missing");
                } catch (IOException e) {
                    throw new UserError(file + ": cannot read: " + e.getMessage());
                }
                if (size != f.bytes())
                    throw new UserError(file + ": " + size + " bytes, manifest says " + f.bytes() + " (truncated or replaced; re-run midtrain prepare)");
                if (size >= Integer.MAX_VALUE) throw new UserError(file + ": shard larger than 2 GiB is not supported");
                if (verifySha256) {
                    String sha;
                    try {
                        sha = AtomicFiles.sha256(file);
                    } catch (IOException e) {
                        throw new UserError(file + ": cannot read: " + e.getMessage());
                    }
                    if (!sha.equals(f.sha256()))
                        throw new UserError(file + ": SHA-256 " + sha + " does not match the manifest's " + f.sha256() + " (corrupt; re-run midtrain prepare)");
                }
                long rows = mapShard(file, size, alloc, pos, starts, data);
                if (rows != f.tokens())
                    throw new UserError(file + ": holds " + rows + " tokens, manifest says " + f.tokens());
                while (owner.size() < data.size()) owner.add(fi);
                pos += rows;
            }
        }
        long[] bs = new long[starts.size() + 1];
        for (int i = 0; i < starts.size(); i++) bs[i] = starts.get(i);
        bs[starts.size()] = pos;
        return new PreparedSource(name, dir, m, bs, data.toArray(IntBuffer[]::new), owner.stream().mapToInt(Integer::intValue).toArray());
    }

    /**
     * The largest token id in shard {@code file} (-1 when empty), read from its record batches; a negative id is a
     * {@link UserError} naming the file. Shard verification at train start calls it on every shard it hashes.
     */
    public static int maxTokenId(Path file) {
        List<IntBuffer> data = new ArrayList<>();
        try (BufferAllocator alloc = new RootAllocator()) {
            mapShard(file, Files.size(file), alloc, 0, new ArrayList<>(), data);
        } catch (IOException e) {
            throw new UserError(file + ": cannot read: " + e.getMessage());
        }
        int max = -1, min = 0;
        int[] buf = new int[1 << 16];
        for (IntBuffer b : data)
            for (int p = 0, n = b.limit(); p < n; p += buf.length) {
                int len = Math.min(buf.length, n - p);
                b.get(p, buf, 0, len);
                for (int i = 0; i < len; i++) {
                    max = Math.max(max, buf[i]);
                    min = Math.min(min, buf[i]);
                }
            }
        if (min < 0) throw new UserError(file + ": holds negative token id " + min + " (corrupt; re-run midtrain prepare)");
        return max;
    }

    /** Parses the shard's footer and batch headers, maps the file, appends one view per non-empty batch. */
    private static long mapShard(Path file, long size, BufferAllocator alloc, long pos, List<Long> starts, List<IntBuffer> data) {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            List<ArrowBlock> blocks;
            try (ArrowFileReader r = new ArrowFileReader(new NonClosingChannel(ch), alloc)) {
                List<Field> fields = r.getVectorSchemaRoot().getSchema().getFields();
                if (fields.size() != 1 || !fields.get(0).getName().equals(Manifest.COLUMN)
                        || !(fields.get(0).getType() instanceof ArrowType.Int t && t.getBitWidth() == 32 && t.getIsSigned()))
                    throw new UserError(file + ": schema " + fields + ", expected one int32 column '" + Manifest.COLUMN + "'");
                blocks = r.getRecordBlocks();
            }
            MappedByteBuffer map = ch.map(FileChannel.MapMode.READ_ONLY, 0, size);
            map.order(ByteOrder.LITTLE_ENDIAN);
            long rowsTotal = 0;
            for (ArrowBlock b : blocks) {
                ch.position(b.getOffset());
                MessageMetadataResult msg = MessageSerializer.readMessage(new ReadChannel(new NonClosingChannel(ch)));
                if (msg == null || msg.headerType() != MessageHeader.RecordBatch)
                    throw new UserError(file + ": block at offset " + b.getOffset() + " is not a record batch");
                RecordBatch rb = (RecordBatch) msg.getMessage().header(new RecordBatch());
                if (rb.compression() != null) throw new UserError(file + ": compressed record batches are not supported");
                long rows = rb.length();
                FieldNode node = rb.nodesLength() == 1 ? rb.nodes(0) : null;
                if (node == null || rb.buffersLength() != 2 || node.length() != rows || node.nullCount() != 0)
                    throw new UserError(file + ": record batch at offset " + b.getOffset() + " is not a non-null int32 column");
                Buffer buf = rb.buffers(1);
                long body = b.getOffset() + b.getMetadataLength();
                long start = body + buf.offset();
                if (buf.length() < rows * 4 || start < 0 || start + rows * 4 > size || start % 4 != 0)
                    throw new UserError(file + ": record batch at offset " + b.getOffset() + " points outside the file (corrupt)");
                if (rows == 0) continue;
                IntBuffer view = map.slice((int) start, (int) (rows * 4)).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer();
                starts.add(pos + rowsTotal);
                data.add(view);
                rowsTotal += rows;
            }
            return rowsTotal;
        } catch (UserError e) {
            throw e;
        } catch (Exception e) {
            throw new UserError(file + ": not a valid Arrow IPC file (" + e.getClass().getSimpleName() + ": " + e.getMessage() + "); re-run midtrain prepare");
        }
    }

    @Override public String name() { return name; }

    public Path dir() { return dir; }

    public Manifest manifest() { return manifest; }

    /** Every document ends with the tokenizer's end-of-text id (midtrain prepare appends it). */
    @Override public int eosId() { return manifest.tokenizer().eosId(); }

    /** Tokens in the stream. */
    @Override public long tokens() { return batchStart[batchStart.length - 1]; }

    /** Copies stream tokens [pos, pos + len) into dst[off, off + len). */
    @Override public void read(long pos, int[] dst, int off, int len) {
        if (pos < 0 || len < 0 || pos + len > tokens()) throw new IndexOutOfBoundsException(pos + "+" + len + " > " + tokens());
        int b = batchOf(pos);
        while (len > 0) {
            int in = (int) (pos - batchStart[b]);
            int n = (int) Math.min(len, batchStart[b + 1] - pos);
            batchData[b].get(in, dst, off, n);
            pos += n;
            off += n;
            len -= n;
            b++;
        }
    }

    @Override
    public String where(long pos) {
        if (pos < 0 || pos >= tokens()) return "source " + name + ", token " + pos + " (out of range)";
        int b = batchOf(pos);
        int f = batchFile[b];
        long fileStart = batchStart[b];
        while (b > 0 && batchFile[b - 1] == f) fileStart = batchStart[--b];
        return dir.resolve(manifest.files().get(f).name()) + " value " + (pos - fileStart);
    }

    private int batchOf(long pos) {
        int lo = 0, hi = batchData.length - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) >>> 1;
            if (batchStart[mid] <= pos) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    }

    /** Refuses ids outside [0, vocabSize): names the source and the shard (uses the manifest's per-file maximum). */
    @Override public void checkVocab(int vocabSize) {
        for (Manifest.ShardFile f : manifest.files())
            if (f.maxTokenId() >= vocabSize)
                throw new UserError("data source " + name + ": " + dir.resolve(f.name()) + " holds token id " + f.maxTokenId()
                        + " >= model vocab_size " + vocabSize + " (prepared with tokenizer " + manifest.tokenizer().file() + ")");
        if (manifest.tokenizer().eosId() >= vocabSize)
            throw new UserError("data source " + name + ": end-of-text id " + manifest.tokenizer().eosId() + " >= model vocab_size " + vocabSize);
    }

    /** Scans every token (slow: reads all data) and checks that the manifest's maxima are right and ids are >= 0. */
    public void scanIds() {
        int[] buf = new int[1 << 16];
        for (int b = 0; b < batchData.length; b++) {
            int max = -1;
            long n = batchStart[b + 1] - batchStart[b];
            for (long p = 0; p < n; p += buf.length) {
                int len = (int) Math.min(buf.length, n - p);
                batchData[b].get((int) p, buf, 0, len);
                for (int i = 0; i < len; i++) {
                    if (buf[i] < 0) throw new UserError("data source " + name + ": " + dir.resolve(manifest.files().get(batchFile[b]).name()) + " holds negative token id " + buf[i]);
                    max = Math.max(max, buf[i]);
                }
            }
            Manifest.ShardFile f = manifest.files().get(batchFile[b]);
            if (max > f.maxTokenId())
                throw new UserError("data source " + name + ": " + dir.resolve(f.name()) + " holds token id " + max + " above the manifest's max_token_id " + f.maxTokenId());
        }
    }

    @Override
    public void close() {
        // mapped buffers are released by the garbage collector; nothing else is held open
    }

    /** Lets Arrow's reader use a channel without closing it. */
    private record NonClosingChannel(FileChannel ch) implements java.nio.channels.SeekableByteChannel {
        @Override public int read(java.nio.ByteBuffer dst) throws IOException { return ch.read(dst); }
        @Override public int write(java.nio.ByteBuffer src) { throw new UnsupportedOperationException(); }
        @Override public long position() throws IOException { return ch.position(); }
        @Override public java.nio.channels.SeekableByteChannel position(long p) throws IOException { ch.position(p); return this; }
        @Override public long size() throws IOException { return ch.size(); }
        @Override public java.nio.channels.SeekableByteChannel truncate(long size) { throw new UnsupportedOperationException(); }
        @Override public boolean isOpen() { return ch.isOpen(); }
        @Override public void close() {}
    }
}
