package dev.midtrain.parallel;

import org.bytedeco.cuda.cudart.CUevent_st;
import org.bytedeco.cuda.cudart.CUstream_st;
import org.bytedeco.cuda.nccl.ncclComm;
import org.bytedeco.cuda.nccl.ncclConfig_t;
import org.bytedeco.cuda.nccl.ncclUniqueId;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

import static org.bytedeco.cuda.global.cudart.cudaErrorNotReady;
import static org.bytedeco.cuda.global.cudart.cudaEventCreateWithFlags;
import static org.bytedeco.cuda.global.cudart.cudaEventDestroy;
import static org.bytedeco.cuda.global.cudart.cudaEventDisableTiming;
import static org.bytedeco.cuda.global.cudart.cudaEventQuery;
import static org.bytedeco.cuda.global.cudart.cudaEventRecord;
import static org.bytedeco.cuda.global.cudart.cudaSuccess;
import static org.bytedeco.cuda.global.nccl.*;

/**
 * Collectives over NCCL (org.bytedeco.cuda.global.nccl) on CUDA device buffers. Each call only enqueues the
 * collective on the rank's stream (the backend's stream), ordered with the kernels around it; nothing synchronises
 * the host. The calling thread must have selected the rank's device (cudaSetDevice) before {@link #init}.
 *
 * <p>The world communicator is created from a unique id that rank 0 makes ({@link #newUniqueId}) and the
 * {@link TcpWorld} rendezvous hands to every process (its payload); tensor-, data- and KV-replica groups are split from it ({@link #split}),
 * so one id serves every group.
 *
 * <p><b>Watchdog</b> (the way PyTorch's NCCL watchdog works). Communicators are non-blocking (config.blocking = 0):
 * init, split and every collective return at once and are polled with {@code ncclCommGetAsyncError}, bounded by
 * {@code --dist-timeout}. After each collective a CUDA event is recorded on the stream; the {@link Watchdog} thread
 * polls every communicator's event and async error: a collective not finished within the timeout, or an async
 * error (a peer gone, a network failure), makes it {@code ncclCommAbort} every communicator of the process and
 * report one line (through the {@link TcpWorld}, which names a lost process) — then the process exits non-zero.
 */
public final class NcclCommunicator implements Communicator {
    private static final int UNDEF = Integer.MIN_VALUE;        // NCCL_CONFIG_UNDEF_INT
    private final ncclComm comm;
    private final CUstream_st stream;
    private final int rank, size;
    private final String name;
    private final Watchdog watchdog;
    private final CUevent_st done = new CUevent_st();
    private volatile long pendingSince;                        // nanoTime of the oldest collective not seen complete; 0: none
    private volatile String last = "no collective yet";
    private long seq;
    private volatile boolean closed;

    private NcclCommunicator(ncclComm comm, CUstream_st stream, int rank, int size, String name, Watchdog watchdog) {
        this.comm = comm;
        this.stream = stream;
        this.rank = rank;
        this.size = size;
        this.name = name;
        this.watchdog = watchdog;
        cuda(cudaEventCreateWithFlags(done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
        watchdog.add(this);
    }

    /** NCCL_CONFIG_INITIALIZER with blocking = 0 (every call returns at once; completion is polled). */
    static ncclConfig_t nonBlocking() {
        ncclConfig_t c = new ncclConfig_t();
        c.size(c.sizeof()).magic(0xcafebeef).version(NCCL_VERSION_CODE).blocking(0)
                .cgaClusterSize(UNDEF).minCTAs(UNDEF).maxCTAs(UNDEF).netName(null).splitShare(UNDEF).trafficClass(UNDEF)
                .commName(null).collnetEnable(UNDEF).CTAPolicy(UNDEF).shrinkShare(UNDEF).nvlsCTAs(UNDEF)
                .nChannelsPerNetPeer(UNDEF).nvlinkCentricSched(UNDEF).graphUsageMode(UNDEF).numRmaCtx(UNDEF);
        return c;
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
        return init(uniqueId, size, rank, streamAddress, new Watchdog(Duration.ofMinutes(10), null));
    }

    /** As {@link #init(byte[], int, int, long)}, watched by {@code watchdog} (one per process). */
    public static NcclCommunicator init(byte[] uniqueId, int size, int rank, long streamAddress, Watchdog watchdog) {
        if (uniqueId.length != NCCL_UNIQUE_ID_BYTES)
            throw new IllegalArgumentException("NCCL unique id must be " + NCCL_UNIQUE_ID_BYTES + " bytes, got " + uniqueId.length);
        if (rank < 0 || rank >= size) throw new IllegalArgumentException("rank " + rank + " of " + size);
        ncclUniqueId id = new ncclUniqueId();
        id.internal().put(uniqueId);
        ncclComm comm = new ncclComm();
        String call = "ncclCommInitRankConfig(rank " + rank + " of " + size + ")";
        await(comm, ncclCommInitRankConfig(comm, size, id, rank, nonBlocking()), call, watchdog.startupNanos());
        return new NcclCommunicator(comm, streamOf(streamAddress), rank, size, "world", watchdog);
    }

    /**
     * A sub-group of this communicator: the ranks calling with the same {@code color}, ordered by {@code key}.
     * Collective over this communicator: every rank must call it.
     */
    public NcclCommunicator split(int color, int key) { return split(color, key, "color " + color); }

    /** As {@link #split(int, int)}, naming the group in the watchdog's messages ("tp.0"). */
    public NcclCommunicator split(int color, int key, String group) {
        ncclComm sub = new ncclComm();
        String call = "ncclCommSplit(" + group + ")";
        await(comm, ncclCommSplit(comm, color, key, sub, nonBlocking()), call, watchdog.startupNanos());
        await(sub, ncclSuccess, call, watchdog.startupNanos());
        int[] n = new int[1], r = new int[1];
        check(ncclCommCount(sub, n), "ncclCommCount");
        check(ncclCommUserRank(sub, r), "ncclCommUserRank");
        return new NcclCommunicator(sub, stream, r[0], n[0], group, watchdog);
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
        enqueued(ncclAllReduce(ptr(buf), ptr(buf), count, type(t), ncclSum, comm, stream), "ncclAllReduce(sum, " + count + ")");
    }

    @Override
    public void allReduceMax(long buf, long count, Dtype t) {
        enqueued(ncclAllReduce(ptr(buf), ptr(buf), count, type(t), ncclMax, comm, stream), "ncclAllReduce(max, " + count + ")");
    }

    @Override
    public void reduceScatterSum(long recv, long send, long count, Dtype t) {
        enqueued(ncclReduceScatter(ptr(send), ptr(recv), count, type(t), ncclSum, comm, stream), "ncclReduceScatter(" + count + ")");
    }

    @Override
    public void allGather(long recv, long send, long count, Dtype t) {
        enqueued(ncclAllGather(ptr(send), ptr(recv), count, type(t), comm, stream), "ncclAllGather(" + count + ")");
    }

    @Override
    public void broadcast(long buf, long count, Dtype t, int root) {
        enqueued(ncclBroadcast(ptr(buf), ptr(buf), count, type(t), root, comm, stream), "ncclBroadcast(" + count + ")");
    }

    /** One ncclGroupStart .. ncclGroupEnd of ncclSend / ncclRecv on the rank's stream (NCCL matches them in order per peer). */
    @Override
    public void p2p(Dtype t, P2p... ops) {
        if (ops.length == 0) return;
        for (P2p o : ops)
            if (o.peer() < 0 || o.peer() >= size || o.peer() == rank || o.count() < 0)
                throw new IllegalArgumentException("p2p on rank " + rank + " of " + size + " (group " + name + "): bad transfer " + o);
        check(ncclGroupStart(), "ncclGroupStart");
        int rc = ncclSuccess;
        for (P2p o : ops) {
            rc = o.send() ? ncclSend(ptr(o.buf()), o.count(), type(t), o.peer(), comm, stream)
                    : ncclRecv(ptr(o.buf()), o.count(), type(t), o.peer(), comm, stream);
            if (rc != ncclSuccess && rc != ncclInProgress) break;
        }
        int end = ncclGroupEnd();
        if (rc != ncclSuccess && rc != ncclInProgress) check(rc, "ncclSend/ncclRecv");
        enqueued(end, "p2p(" + java.util.Arrays.toString(ops) + ")");
    }

    /** A collective was issued: wait (bounded) for the non-blocking enqueue, then mark its end on the stream. */
    private void enqueued(int rc, String call) {
        if (closed) throw new ParallelException(call + " on group " + name + ": the communicator was aborted (" + watchdog.reason() + ")");
        seq++;
        last = call + " #" + seq + " of group " + name;
        await(comm, rc, last, watchdog.timeoutNanos());
        cuda(cudaEventRecord(done, stream), "cudaEventRecord");
        if (pendingSince == 0) pendingSince = System.nanoTime();
    }

    /** Polls a non-blocking call to completion; an error or the deadline aborts the communicator. */
    private static void await(ncclComm c, int rc, String call, long timeoutNanos) {
        if (rc != ncclSuccess && rc != ncclInProgress) check(rc, call);
        long deadline = System.nanoTime() + timeoutNanos;
        int[] st = new int[1];
        while (true) {
            check(ncclCommGetAsyncError(c, st), "ncclCommGetAsyncError");
            if (st[0] == ncclSuccess) return;
            if (st[0] != ncclInProgress) {
                ncclCommAbort(c);
                check(st[0], call);
            }
            if (System.nanoTime() > deadline) {
                ncclCommAbort(c);
                throw new ParallelException(call + " did not complete within " + timeoutNanos / 1e9 + " s (--dist-timeout); aborted");
            }
            Thread.onSpinWait();
        }
    }

    /** Breaks every pending collective of this communicator (after a peer failed); the object is closed after. */
    public void abort() {
        if (closed) return;
        closed = true;
        watchdog.remove(this);
        ncclCommAbort(comm);
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        watchdog.remove(this);
        cudaEventDestroy(done);
        check(ncclCommDestroy(comm), "ncclCommDestroy");
    }

    /**
     * One per process: polls every communicator's last collective (a CUDA event) and its async error every
     * {@link #POLL_MS}; on a timeout or an error it aborts them all and hands one line to {@code onFailure} (the
     * TcpWorld's report; null: print it and halt with status 1 after {@link TcpWorld#HALT_GRACE_MS}).
     */
    public static final class Watchdog implements AutoCloseable {
        static final long POLL_MS = 100;
        private final long timeoutNanos;
        private final Consumer<String> onFailure;
        private final List<NcclCommunicator> comms = new CopyOnWriteArrayList<>();
        private final Thread thread;
        private volatile String reason;
        private volatile boolean stopped;

        public Watchdog(Duration timeout, Consumer<String> onFailure) {
            this.timeoutNanos = timeout.toNanos();
            this.onFailure = onFailure;
            this.thread = new Thread(this::poll, "nccl-watchdog");
            thread.setDaemon(true);
            thread.start();
        }

        long timeoutNanos() { return timeoutNanos; }

        /** Init and split wait for every process (and build NCCL's rings): allowed longer than a collective. */
        long startupNanos() { return Math.max(timeoutNanos, Duration.ofMinutes(10).toNanos()); }

        String reason() { return reason; }

        void add(NcclCommunicator c) { comms.add(c); }

        void remove(NcclCommunicator c) { comms.remove(c); }

        private void poll() {
            int[] st = new int[1];
            while (!stopped && reason == null) {
                for (NcclCommunicator c : comms) {
                    if (c.closed) continue;
                    long since = c.pendingSince;
                    if (since != 0) {
                        int q = cudaEventQuery(c.done);
                        if (q == cudaSuccess) c.pendingSince = 0;
                        else if (q == cudaErrorNotReady && System.nanoTime() - since > timeoutNanos) {
                            fire("NCCL watchdog: " + c.last + " did not complete within " + timeoutNanos / 1e9 + " s (--dist-timeout)");
                            return;
                        }
                    }
                    if (ncclCommGetAsyncError(c.comm, st) == ncclSuccess && st[0] != ncclSuccess && st[0] != ncclInProgress) {
                        BytePointer m = ncclGetErrorString(st[0]);
                        fire("NCCL watchdog: group " + c.name + " failed during " + c.last + ": NCCL error " + st[0] + " (" + (m == null ? "?" : m.getString()) + ")");
                        return;
                    }
                }
                try {
                    Thread.sleep(POLL_MS);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }

        private void fire(String why) {
            reason = why;
            for (NcclCommunicator c : comms) c.abort();
            if (onFailure != null) {
                onFailure.accept(why);
                return;
            }
            try {
                Thread.sleep(TcpWorld.HALT_GRACE_MS);
            } catch (InterruptedException ignored) {
                // halt now
            }
            System.err.println("midtrain: " + why);
            Runtime.getRuntime().halt(1);
        }

        @Override
        public void close() {
            stopped = true;
            thread.interrupt();
        }
    }

    // -------------------------------------------------------------------------------------------------- helpers

    private static int type(Dtype t) {
        return switch (t) {
            case F32 -> ncclFloat32;
            case BF16 -> ncclBfloat16;
        };
    }

    private static void cuda(int rc, String call) {
        if (rc != cudaSuccess) throw new ParallelException(call + " failed: CUDA error " + rc);
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
