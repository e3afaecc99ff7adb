package dev.midtrain.parallel;

/**
 * Collectives over one group of ranks (the world, a tensor-parallel group, a data-parallel group), on buffers in the
 * rank's backend memory passed as raw addresses, like every kernel call.
 *
 * <p>Three implementations: {@link NcclCommunicator} (CUDA device buffers, enqueued on the rank's stream, asynchronous
 * like a kernel), {@link InProcessCommunicator} (host buffers of the CPU backend, each rank a Java thread,
 * synchronous) and {@link TcpCommunicator} (host buffers of the CPU backend, ranks in several processes, over TCP,
 * synchronous, with the in-process communicator's reduction order: the same bits). Every rank of the group must call the same collectives in the same order with the same counts.
 *
 * <p>Every implementation bounds its waits (the in-process and TCP ones by {@code --dist-timeout}; NCCL through the
 * watchdog) and fails with a {@link ParallelException} whose one-line message names the rank at fault.
 *
 * <p>Determinism: the in-process and TCP implementations sum in rank order (r = 0, 1, ..., size-1) whatever the thread timing,
 * so a run is bitwise reproducible and every rank receives bitwise identical results. NCCL is deterministic for a
 * fixed topology, algorithm and message size (its ring/tree order does not depend on timing), and all ranks receive
 * identical all-reduce results.
 */
public sealed interface Communicator extends AutoCloseable permits InProcessCommunicator, TcpCommunicator, NcclCommunicator {

    /** Element type of a collective's buffers. The CPU backend has only F32 (its floatX is float). */
    enum Dtype {
        F32(4), BF16(2);

        public final int bytes;

        Dtype(int bytes) { this.bytes = bytes; }

        /** The dtype of a backend's compute elements (floatX): 4 bytes = F32, 2 bytes = BF16. */
        public static Dtype floatX(int floatxBytes) {
            return switch (floatxBytes) {
                case 4 -> F32;
                case 2 -> BF16;
                default -> throw new IllegalArgumentException("no collective dtype of " + floatxBytes + " bytes");
            };
        }
    }

    /** This rank's index in the group, 0..size-1. */
    int rank();

    /** Ranks in the group. */
    int size();

    /** buf[count] = sum over ranks of buf[count]  (in place). */
    void allReduceSum(long buf, long count, Dtype t);

    /** buf[count] = element-wise max over ranks of buf[count]  (in place). */
    void allReduceMax(long buf, long count, Dtype t);

    /**
     * recv[count] = sum over ranks r of send_r[rank*count .. (rank+1)*count).  send: [size*count].
     * In place when recv == send + rank*count*bytes; otherwise recv must not overlap send.
     */
    void reduceScatterSum(long recv, long send, long count, Dtype t);

    /**
     * recv[size*count] = send_0[count] | send_1[count] | ... (rank order).
     * In place when send == recv + rank*count*bytes; otherwise send must not overlap recv.
     */
    void allGather(long recv, long send, long count, Dtype t);

    /** buf[count] = root's buf[count] on every rank  (in place). */
    void broadcast(long buf, long count, Dtype t, int root);

    /**
     * One transfer of a {@link #p2p} batch: send {@code count} elements at {@code buf} to group rank {@code peer},
     * or receive {@code count} elements from it into {@code buf}.
     */
    record P2p(boolean send, long buf, long count, int peer) {
        public static P2p send(long buf, long count, int peer) { return new P2p(true, buf, count, peer); }

        public static P2p recv(long buf, long count, int peer) { return new P2p(false, buf, count, peer); }

        @Override
        public String toString() { return (send ? "send " : "recv ") + count + (send ? " to " : " from ") + "rank " + peer; }
    }

    /**
     * Point-to-point (pipeline activations and their gradients): posts every send and receive of {@code ops}
     * together and returns when all are complete (NCCL: one ncclGroupStart .. ncclGroupEnd of ncclSend / ncclRecv,
     * enqueued on the stream). A send to peer p is matched by p's next receive from this rank (first in, first out per
     * ordered pair of ranks; several transfers to one peer in one batch keep their order) and both must name the same
     * count, else the group fails with a mismatch naming both ranks. Rendezvous semantics: a send may complete only
     * when its receive is posted, so two ranks that send to each other must do it in one batch
     * ({@link dev.midtrain.parallel.PipelineSchedule} builds its batches that way, and its tests check that no
     * schedule can deadlock under these semantics). Bounded by the watchdog like a collective; a peer that never
     * posts its side is named in the failure. {@code peer} must differ from this rank.
     */
    void p2p(Dtype t, P2p... ops);

    /** buf[count] to group rank {@code peer} (a batch of one send; see {@link #p2p}). */
    default void send(long buf, long count, Dtype t, int peer) { p2p(t, P2p.send(buf, count, peer)); }

    /** buf[count] from group rank {@code peer} (a batch of one receive; see {@link #p2p}). */
    default void recv(long buf, long count, Dtype t, int peer) { p2p(t, P2p.recv(buf, count, peer)); }

    /** Releases the group's resources for this rank (NCCL: destroys the communicator). */
    @Override
    void close();
}
