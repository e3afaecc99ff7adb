package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.vector.BitVectorHelper;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowFileWriter;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

import java.io.IOException;
import java.nio.ByteOrder;
import java.io.UncheckedIOException;
import dev.midtrain.common.AtomicFiles;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Appends int32 token ids to Arrow IPC <em>file</em>-format shards ({@code shard-NNNNN.arrow}): one non-null int32
 * column {@value Manifest#COLUMN}, record batches of {@code batchTokens} values (the last one of a shard shorter), at
 * most {@code shardTokens} values per shard. Each shard is written under a temp name, fsynced and renamed when
 * complete, so a crash never leaves a partial file under a shard name. Not thread-safe.
 */
final class ShardWriter implements AutoCloseable {
    /** Largest shard: the loader maps a shard with one MappedByteBuffer (< 2 GiB). */
    static final long MAX_SHARD_TOKENS = (1L << 29) - (1L << 20);
    static final Schema SCHEMA = new Schema(List.of(
            new Field(Manifest.COLUMN, FieldType.notNullable(new ArrowType.Int(32, true)), null)));

    private final Path dir;
    private final int batchTokens;
    private final long shardTokens;
    private final BufferAllocator alloc;
    private final int[] batch;
    private int batchLen;
    private final List<Manifest.ShardFile> done = new ArrayList<>();

    // the open shard
    private Path tmp;
    private AtomicFiles.Pending pending;
    private VectorSchemaRoot root;
    private ArrowFileWriter writer;
    private long shardLen;
    private int shardBatches;
    private int shardMax = -1;

    ShardWriter(Path dir, int batchTokens, long shardTokens, BufferAllocator alloc) {
        if (batchTokens <= 0 || shardTokens < batchTokens || shardTokens > MAX_SHARD_TOKENS)
            throw new IllegalArgumentException("need 0 < batchTokens <= shardTokens <= " + MAX_SHARD_TOKENS);
        this.dir = dir;
        this.batchTokens = batchTokens;
        this.shardTokens = shardTokens;
        this.alloc = alloc;
        this.batch = new int[batchTokens];
    }

    static String shardName(int index) { return String.format("shard-%05d.arrow", index); }

    /** Appends ids[off, off+len). */
    void append(int[] ids, int off, int len) {
        while (len > 0) {
            int n = (int) Math.min(Math.min(len, batchTokens - batchLen), shardTokens - shardLen - batchLen);
            System.arraycopy(ids, off, batch, batchLen, n);
            batchLen += n;
            off += n;
            len -= n;
            if (batchLen == batchTokens || shardLen + batchLen == shardTokens) flushBatch();
            if (shardLen == shardTokens) closeShard();
        }
    }

    private void flushBatch() {
        if (batchLen == 0) return;
        try {
            if (writer == null) openShard();
            IntVector v = (IntVector) root.getVector(0);
            v.allocateNew(batchLen);
            int max = shardMax;
            for (int i = 0; i < batchLen; i++) max = Math.max(max, batch[i]);
            shardMax = max;
            // bulk copy (as v.set(i, t) for each i, with the validity bits of [0, batchLen) set and the rest left 0)
            v.getDataBuffer().nioBuffer(0, batchLen * Integer.BYTES).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().put(batch, 0, batchLen);
            ArrowBuf valid = v.getValidityBuffer();
            valid.setOne(0L, (long) (batchLen / 8));
            for (int i = batchLen / 8 * 8; i < batchLen; i++) BitVectorHelper.setBit(valid, i);
            v.setValueCount(batchLen);
            root.setRowCount(batchLen);
            writer.writeBatch();
            shardLen += batchLen;
            shardBatches++;
            batchLen = 0;
        } catch (IOException e) {
            throw new UncheckedIOException(tmp + ": write failed: " + e.getMessage(), e);
        }
    }

    private void openShard() throws IOException {
        Path file = dir.resolve(shardName(done.size()));
        tmp = AtomicFiles.tempFor(file);
        pending = AtomicFiles.begin(file);
        root = VectorSchemaRoot.create(SCHEMA, alloc);
        writer = new ArrowFileWriter(root, null, pending.channel());
        writer.start();
        shardLen = 0;
        shardBatches = 0;
        shardMax = -1;
    }

    private void closeShard() {
        if (writer == null) return;
        String name = shardName(done.size());
        AtomicFiles.Written w;
        try {
            writer.end();
            writer.close();
            root.close();
            w = pending.commit();   // fsync, rename, directory fsync
        } catch (IOException e) {
            throw new UncheckedIOException(tmp + ": write failed: " + e.getMessage(), e);
        }
        done.add(new Manifest.ShardFile(name, w.bytes(), w.sha256(), shardLen, shardBatches, shardMax));
        writer = null;
        root = null;
        pending = null;
        shardLen = 0;
        shardBatches = 0;
        shardMax = -1;
    }

    /** Flushes and closes the last shard; returns every shard written, in order. */
    List<Manifest.ShardFile> finish() {
        flushBatch();
        closeShard();
        return List.copyOf(done);
    }

    /** Abandons the open shard (its temp file is removed). */
    @Override
    public void close() {
        if (writer == null) return;
        try {
            writer.close();
        } catch (Exception ignored) {
        }
        root.close();
        try {
            pending.close();        // deletes the temp file
        } catch (IOException ignored) {
        }
        writer = null;
    }
}
