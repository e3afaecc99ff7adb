package dev.midtrain.parallel;

import org.bytedeco.cuda.cudart.CUstream_st;
import org.bytedeco.cuda.nccl.ncclComm;
import org.bytedeco.cuda.nccl.ncclConfig_t;
import org.bytedeco.cuda.nccl.ncclUniqueId;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;

import static org.bytedeco.cuda.global.nccl.*;

/**
 * Collectives over NCCL (org.bytedeco.cuda.global.nccl) on CUDA device buffers. Each call only enqueues the
 * collective on the rank's stream (the backend's stream), ordered with the kernels around it; nothing synchronises
 * the host. The calling thread must have selected the rank's device (cudaSetDevice) before {@link #init}.
 *
 * <p>The world communicator is created from a unique id that rank 0 makes ({@link #newUniqueId}) and the
 * {@link Rendezvous} hands to every process; tensor-, data- and KV-replica groups are split from it ({@link #split}),
 * so one id serves every group.
 */
public final class NcclCommunicator implements Communicator {
    private final ncclComm comm;
    private final CUstream_st stream;
    private final int rank, size;
    private boolean closed;

    private NcclCommunicator(ncclComm comm, CUstream_st stream, int rank, int size) {
        this.comm = comm;
        this.stream = stream;
        this.rank = rank;
        this.size = size;
    }

    /** A fresh NCCL unique id (NCCL_UNIQUE_ID_BYTES = 128 bytes), made once by world rank 0. */
    public static byte[] newUniqueId() {
        ncclUniqueId id = new ncclUniqueId();
        check(ncclGetUniqueId(id), "ncclGetUniqueId");
        byte[] b = new byte[NCCL_UNIQUE_ID_BYTES];
        id.internal().get(b);
        return b;
    }

    /**
     * Joins the world communicator as {@code rank} of {@code size}; blocks until every rank has joined (NCCL's own
     * bootstrap, which times out after NCCL's connect timeout).
     *
     * @param streamAddress the rank's cudaStream_t as a raw address (0 = the legacy default stream)
     */
    public static NcclCommunicator init(byte[] uniqueId, int size, int rank, long streamAddress) {
        if (uniqueId.length != NCCL_UNIQUE_ID_BYTES)
            throw new IllegalArgumentException("NCCL unique id must be " + NCCL_UNIQUE_ID_BYTES + " bytes, got " + uniqueId.length);
        if (rank < 0 || rank >= size) throw new IllegalArgumentException("rank " + rank + " of " + size);
        ncclUniqueId id = new ncclUniqueId();
        id.internal().put(uniqueId);
        ncclComm comm = new ncclComm();
        check(ncclCommInitRank(comm, size, id, rank), "ncclCommInitRank(rank " + rank + " of " + size + ")");
        return new NcclCommunicator(comm, streamOf(streamAddress), rank, size);
    }

    /**
     * A sub-group of this communicator: the ranks calling with the same {@code color}, ordered by {@code key}.
     * Collective over this communicator: every rank must call it.
     */
    public NcclCommunicator split(int color, int key) {
        ncclComm sub = new ncclComm();
        check(ncclCommSplit(comm, color, key, sub, (ncclConfig_t) null), "ncclCommSplit(color " + color + ")");
        int[] n = new int[1], r = new int[1];
        check(ncclCommCount(sub, n), "ncclCommCount");
        check(ncclCommUserRank(sub, r), "ncclCommUserRank");
        return new NcclCommunicator(sub, stream, r[0], n[0]);
    }

    /** The NCCL library version, e.g. 22703 for 2.27.3. */
    public static int version() {
        int[] v = new int[1];
        check(ncclGetVersion(v), "ncclGetVersion");
        return v[0];
    }

    @Override public int rank() { return rank; }
    @Override public int size() { return size; }

    @Override
    public void allReduceSum(long buf, long count, Dtype t) {
        check(ncclAllReduce(ptr(buf), ptr(buf), count, type(t), ncclSum, comm, stream), "ncclAllReduce(sum, " + count + ")");
    }

    @Override
    public void allReduceMax(long buf, long count, Dtype t) {
        check(ncclAllReduce(ptr(buf), ptr(buf), count, type(t), ncclMax, comm, stream), "ncclAllReduce(max, " + count + ")");
    }

    @Override
    public void reduceScatterSum(long recv, long send, long count, Dtype t) {
        check(ncclReduceScatter(ptr(send), ptr(recv), count, type(t), ncclSum, comm, stream), "ncclReduceScatter(" + count + ")");
    }

    @Override
    public void allGather(long recv, long send, long count, Dtype t) {
        check(ncclAllGather(ptr(send), ptr(recv), count, type(t), comm, stream), "ncclAllGather(" + count + ")");
    }

    @Override
    public void broadcast(long buf, long count, Dtype t, int root) {
        check(ncclBroadcast(ptr(buf), ptr(buf), count, type(t), root, comm, stream), "ncclBroadcast(" + count + ")");
    }

    /** Breaks every pending collective of this communicator (after a peer failed); the object is closed after. */
    public void abort() {
        if (closed) return;
        closed = true;
        ncclCommAbort(comm);
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        check(ncclCommDestroy(comm), "ncclCommDestroy");
    }

    // -------------------------------------------------------------------------------------------------- helpers

    private static int type(Dtype t) {
        return switch (t) {
            case F32 -> ncclFloat32;
            case BF16 -> ncclBfloat16;
        };
    }

    static void check(int rc, String call) {
        if (rc != 0) {
            BytePointer msg = ncclGetErrorString(rc);
            throw new ParallelException(call + " failed: NCCL error " + rc + " (" + (msg == null ? "?" : msg.getString()) + ")");
        }
    }

    private static Pointer ptr(long address) { return new RawPointer(address); }

    private static CUstream_st streamOf(long address) {
        return address == 0 ? null : new CUstream_st(new RawPointer(address));
    }

    private static final class RawPointer extends Pointer {
        RawPointer(long address) { this.address = address; }
    }

    /** Loads the NCCL JNI glue (and libnccl.so.2); throws a one-line error naming what is missing. */
    public static void load() {
        try {
            Loader.load(org.bytedeco.cuda.global.nccl.class);
        } catch (UnsatisfiedLinkError e) {
            throw new ParallelException("cannot load NCCL (libnccl.so.2 with the org.bytedeco cuda preset): " + e.getMessage()
                    + "; put its directory on LD_LIBRARY_PATH (see docs/parallel.md)", e);
        }
    }
}
