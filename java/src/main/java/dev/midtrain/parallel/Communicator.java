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

    /** Releases the group's resources for this rank (NCCL: destroys the communicator). */
    @Override
    void close();
}
