package dev.midtrain.parallel;

import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.CpuNative;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;

import java.nio.FloatBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Collectives between ranks that are Java threads of one process, on host buffers of the CPU backend (fp32 only:
 * the CPU floatX is float). This is the stand-in for NCCL that lets tensor and data parallelism run in CI.
 *
 * <p>Deterministic: each element of a sum is reduced by one thread, in rank order ((x0 + x1) + x2) + ..., into a
 * scratch buffer shared by the group, so every rank gets bitwise the same result whatever the thread timing.
 * Synchronous: a call returns when the collective is complete on this rank.
 *
 * <p>Every wait has a timeout; when it expires the group is broken and every rank's call fails with a message naming
 * the ranks that never arrived. A rank whose thread fails calls {@link #abort} so that the others fail at once
 * instead of waiting out the timeout. A mismatch (ranks calling different collectives or counts) also breaks the group.
 */
public final class InProcessCommunicator implements Communicator {
    private final Group group;
    private final int rank;

    private InProcessCommunicator(Group group, int rank) {
        this.group = group;
        this.rank = rank;
    }

    /** One group of {@code size} ranks: element r is rank r's communicator, to be used by that rank's thread only. */
    public static List<InProcessCommunicator> group(int size, Duration timeout) {
        return group(null, java.util.stream.IntStream.range(0, size).toArray(), timeout, null);
    }

    /**
     * One group named {@code name} ("tp.0") of the world's global ranks {@code members}; the groups of one world share
     * {@code waits}, so a timeout names the rank at the root of a chain of waits (rank 0 waits in dp for rank 2, which
     * waits in tp for rank 3, which is in no collective: rank 3 is named), not the ranks that were waiting for it.
     */
    public static List<InProcessCommunicator> group(String name, int[] members, Duration timeout, Waits waits) {
        int size = members.length;
        if (size < 1) throw new IllegalArgumentException("group size must be >= 1, got " + size);
        Group g = new Group(size, timeout.toMillis(), name, members.clone(), waits);
        List<InProcessCommunicator> out = new ArrayList<>(size);
        for (int r = 0; r < size; r++) out.add(new InProcessCommunicator(g, r));
        return List.copyOf(out);
    }

    @Override public int rank() { return rank; }
    @Override public int size() { return group.size; }

    /** Breaks the group: every rank blocked in (or later entering) a collective fails with {@code reason}. */
    public void abort(String reason) { group.abort("rank " + rank + " aborted: " + reason); }

    @Override
    public void allReduceSum(long buf, long count, Dtype t) {
        allReduce(buf, count, t, "allReduceSum", (lo, hi) -> sumInto(group.scratch + 4 * lo, 4 * lo, hi - lo));
    }

    @Override
    public void allReduceMax(long buf, long count, Dtype t) {
        allReduce(buf, count, t, "allReduceMax", this::maxInto);
    }

    /**
     * Every rank reduces its chunk [lo, hi) of the posted buffers into the shared scratch ({@code reduceChunk}),
     * then, after a barrier, copies the whole result into its {@code buf}; a second barrier frees the scratch.
     */
    private void allReduce(long buf, long count, Dtype t, String op, ChunkReduce reduceChunk) {
        requireF32(t, op);
        if (group.size == 1 || count == 0) return;
        group.enter(rank, op, count, buf, 4 * count);
        reduceChunk.run(chunkStart(count, rank), chunkStart(count, rank + 1));
        group.sync(rank, op);
        copy(buf, group.scratch, 4 * count);
        group.sync(rank, op);
    }

    private interface ChunkReduce { void run(long lo, long hi); }

    @Override
    public void reduceScatterSum(long recv, long send, long count, Dtype t) {
        requireF32(t, "reduceScatterSum");
        if (count == 0) return;
        if (group.size == 1) { copy(recv, send, 4 * count); return; }
        group.enter(rank, "reduceScatterSum", count, send, 4 * count * group.size);
        long off = 4 * count * rank;
        sumInto(group.scratch + off, off, count);
        group.sync(rank, "reduceScatterSum");         // every rank has read every send buffer
        copy(recv, group.scratch + off, 4 * count);
        group.sync(rank, "reduceScatterSum");         // scratch free for the next collective
    }

    @Override
    public void allGather(long recv, long send, long count, Dtype t) {
        requireF32(t, "allGather");
        if (count == 0) return;
        if (group.size == 1) { copy(recv, send, 4 * count); return; }
        group.enter(rank, "allGather", count, send, 0);
        for (int r = 0; r < group.size; r++) copy(recv + 4 * count * r, group.posted[r], 4 * count);
        group.sync(rank, "allGather");                // nobody returns (and overwrites its send) while others read it
    }

    @Override
    public void broadcast(long buf, long count, Dtype t, int root) {
        requireF32(t, "broadcast");
        if (root < 0 || root >= group.size) throw new IllegalArgumentException("broadcast root " + root + " of " + group.size);
        if (group.size == 1 || count == 0) return;
        group.enter(rank, "broadcast(root " + root + ")", count, buf, 0);
        if (rank != root) copy(buf, group.posted[root], 4 * count);
        group.sync(rank, "broadcast");
    }

    /**
     * Rendezvous and zero-copy: a send posts its buffer in the (sender, receiver) mailbox and waits until the
     * receiver has copied it out; a receive copies the oldest message of its peer's mailbox (after the earlier
     * receives from that peer in the batch).
     */
    @Override
    public void p2p(Dtype t, P2p... ops) {
        requireF32(t, "p2p");
        for (P2p o : ops)
            if (o.peer() < 0 || o.peer() >= group.size || o.peer() == rank || o.count() < 0)
                throw new IllegalArgumentException("p2p on rank " + rank + " of " + group.size + ": bad transfer " + o);
        if (ops.length > 0) group.p2p(rank, ops);
    }

    /** The last rank to close frees the group's scratch. */
    @Override
    public void close() { group.close(); }

    // -------------------------------------------------------------------------------------------------- helpers

    /** dst[n] = posted_0[byteOffset..] + posted_1[byteOffset..] + ... in rank order. */
    private void sumInto(long dst, long byteOffset, long n) {
        if (n == 0) return;
        copy(dst, group.posted[0] + byteOffset, 4 * n);
        for (int r = 1; r < group.size; r++)
            Backend.check(CpuNative.mt_cpu_add(dst, dst, group.posted[r] + byteOffset, n, 0L), "add (in-process collective)");
    }

    /** scratch[lo, hi) = max over ranks of posted_r[lo, hi); NaN wins. */
    private void maxInto(long lo, long hi) {
        for (long off = lo; off < hi; off += Integer.MAX_VALUE / 4) {
            int n = (int) Math.min(hi - off, Integer.MAX_VALUE / 4);
            FloatBuffer out = view(group.scratch + 4 * off, n);
            out.put(0, view(group.posted[0] + 4 * off, n), 0, n);
            for (int r = 1; r < group.size; r++) {
                FloatBuffer in = view(group.posted[r] + 4 * off, n);
                // NaN propagates (like NCCL's max on NaN inputs): a non-finite value on any rank must not vanish
                for (int i = 0; i < n; i++) {
                    float a = out.get(i), b = in.get(i);
                    out.put(i, (a != a || b != b) ? Float.NaN : Math.max(a, b));
                }
            }
        }
    }

    private long chunkStart(long count, int r) { return count * r / group.size; }

    private static void copy(long dst, long src, long bytes) {
        if (dst == src || bytes == 0) return;
        Backend.check(CpuNative.mt_cpu_copy_bytes(dst, src, bytes, 0L), "copy_bytes (in-process collective)");
    }

    private static void requireF32(Dtype t, String op) {
        if (t != Dtype.F32) throw new IllegalArgumentException("in-process " + op + ": only F32 buffers (the CPU floatX is float), got " + t);
    }

    private static FloatBuffer view(long address, int n) {
        return new RawFloats(address, n).asBuffer();
    }

    private static final class RawFloats extends FloatPointer {
        RawFloats(long address, long n) {
            this.address = address;
            this.limit = n;
            this.capacity = n;
        }
    }

    /** A posted send: the sender's buffer, read by the receiver while the sender waits. */
    private static final class Message {
        final long addr, count;
        boolean taken;

        Message(long addr, long count) {
            this.addr = addr;
            this.count = count;
        }
    }

    /** Which collective each global rank of a world is waiting in (null: none), shared by the world's groups. */
    public static final class Waits {
        private final java.util.concurrent.atomic.AtomicReferenceArray<Group> in;

        public Waits(int worldSize) { in = new java.util.concurrent.atomic.AtomicReferenceArray<>(worldSize); }

        /**
         * The ranks at the root of the waits of {@code direct} (global ranks a timed-out rank waited for): follows each
         * rank that is itself waiting in another group to the members that group waits for; a rank in no collective is
         * a root. Read without the groups' locks (a diagnosis after a timeout, when nothing moves).
         */
        List<Integer> roots(List<Integer> direct) {
            java.util.TreeSet<Integer> roots = new java.util.TreeSet<>();
            java.util.Set<Integer> seen = new java.util.HashSet<>(direct);
            java.util.ArrayDeque<Integer> todo = new java.util.ArrayDeque<>(direct);
            while (!todo.isEmpty()) {
                int m = todo.poll();
                Group h = m < in.length() ? in.get(m) : null;
                if (h == null) { roots.add(m); continue; }
                int local = -1;
                for (int r = 0; r < h.size; r++) if (h.members[r] == m) local = r;
                if (local < 0) { roots.add(m); continue; }
                for (int r = 0; r < h.size; r++)
                    if (h.arrivals[r] < h.arrivals[local] && seen.add(h.members[r])) todo.add(h.members[r]);
            }
            return roots.isEmpty() ? direct : List.copyOf(roots);
        }
    }

    /** State shared by the ranks of one group: posted buffers, the shared scratch and a timed barrier. */
    private static final class Group {
        final int size;
        final long timeoutMs;
        final long[] posted;
        final String[] ops;
        final long[] counts;
        final long[] arrivals;          // barriers reached per rank (names the missing ranks on a timeout)
        final java.util.Map<Integer, java.util.ArrayDeque<Message>> mail = new java.util.HashMap<>();  // from*size+to
        final String name;              // null: an unnamed group (ranks named by their index in it)
        final int[] members;            // global rank of each rank of the group
        final Waits waits;              // the world's, or null
        int closed;
        long generation;
        int waiting;
        String broken;                  // non-null once the group is broken
        Pointer scratchOwner;
        long scratch, scratchBytes;

        Group(int size, long timeoutMs, String name, int[] members, Waits waits) {
            this.name = name;
            this.members = members;
            this.waits = waits;
            this.size = size;
            this.timeoutMs = timeoutMs;
            this.posted = new long[size];
            this.ops = new String[size];
            this.counts = new long[size];
            this.arrivals = new long[size];
        }

        /** Posts this rank's buffer and waits for all ranks; the last to arrive checks agreement and sizes scratch. */
        void enter(int rank, String op, long count, long buf, long scratchNeeded) {
            synchronized (this) {
                posted[rank] = buf;
                ops[rank] = op;
                counts[rank] = count;
                await(rank, op, () -> {
                    for (int r = 1; r < size; r++)
                        if (!ops[r].equals(ops[0]) || counts[r] != counts[0])
                            return "collective mismatch: rank 0 called " + ops[0] + "(" + counts[0] + "), rank " + r
                                    + " called " + ops[r] + "(" + counts[r] + ")";
                    if (scratchNeeded > scratchBytes) {
                        if (scratchOwner != null) Pointer.free(scratchOwner);
                        scratchOwner = Pointer.malloc(scratchNeeded + 256);
                        if (scratchOwner == null || scratchOwner.isNull()) {
                            scratchOwner = null; scratchBytes = 0;
                            return "cannot allocate " + scratchNeeded + " bytes of collective scratch";
                        }
                        scratch = (scratchOwner.address() + 255) & ~255L;
                        scratchBytes = scratchNeeded;
                    }
                    return null;
                });
            }
        }

        /** Names the ranks that did not arrive: the roots of the waits when the world's waits are known. */
        private String timeoutMessage(int rank, String op, List<Integer> missing) {
            String within = " within " + timeoutMs / 1000.0 + " s";
            if (name == null) return "ranks " + missing + " of " + size + " did not arrive at " + op + within;
            List<Integer> roots = waits == null ? missing : waits.roots(missing);
            if (roots.equals(missing)) return "global ranks " + missing + " did not arrive at " + name + " " + op + within;
            return "global ranks " + roots + " did not arrive at their next collective" + within + " (global rank " + members[rank]
                    + " waited in " + name + " " + op + " for ranks " + missing + ", which were waiting for them in other collectives)";
        }

        synchronized void sync(int rank, String op) { await(rank, op, () -> null); }

        /** One rank's p2p batch (see {@link InProcessCommunicator#p2p}); the caller is rank {@code rank}'s thread. */
        synchronized void p2p(int rank, P2p[] ops) {
            if (broken != null) throw new ParallelException("in-process p2p on rank " + rank + ": group broken: " + broken);
            List<Message> mine = new ArrayList<>();
            for (P2p o : ops) {
                if (!o.send()) continue;
                Message m = new Message(o.buf(), o.count());
                mailbox(rank, o.peer()).add(m);
                mine.add(m);
            }
            notifyAll();
            boolean[] got = new boolean[ops.length];
            long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
            while (true) {
                boolean done = true;
                java.util.Set<Integer> blocked = new java.util.HashSet<>();
                for (int i = 0; i < ops.length; i++) {
                    P2p o = ops[i];
                    if (o.send() || got[i]) continue;
                    Message m = blocked.contains(o.peer()) ? null : mailbox(o.peer(), rank).peek();
                    if (m == null) { blocked.add(o.peer()); done = false; continue; }
                    if (m.count != o.count()) {
                        broken = "p2p mismatch: rank " + o.peer() + " sent " + m.count + " elements, rank " + rank + " expected " + o.count();
                        notifyAll();
                        throw new ParallelException("in-process p2p: " + broken);
                    }
                    copy(o.buf(), m.addr, 4 * m.count);
                    mailbox(o.peer(), rank).poll();
                    m.taken = true;
                    got[i] = true;
                    notifyAll();
                }
                for (Message m : mine) done &= m.taken;
                if (done) return;
                if (broken != null) throw new ParallelException("in-process p2p on rank " + rank + ": group broken: " + broken);
                long leftMs = (deadline - System.nanoTime()) / 1_000_000L;
                if (leftMs <= 0) {
                    List<String> waits = new ArrayList<>();
                    for (int i = 0; i < ops.length; i++)
                        if (ops[i].send() ? !mine.get(sendIndex(ops, i)).taken : !got[i]) waits.add(ops[i].toString());
                    broken = "rank " + rank + " waited " + timeoutMs / 1000.0 + " s in p2p for " + String.join(", ", waits)
                            + " (the peer never posted its side)";
                    notifyAll();
                    throw new ParallelException("in-process p2p: " + broken);
                }
                try {
                    wait(leftMs);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    broken = "rank " + rank + " was interrupted in p2p";
                    notifyAll();
                    throw new ParallelException("in-process p2p: " + broken);
                }
            }
        }

        private static int sendIndex(P2p[] ops, int i) {
            int k = 0;
            for (int j = 0; j < i; j++) if (ops[j].send()) k++;
            return k;
        }

        private java.util.ArrayDeque<Message> mailbox(int from, int to) {
            return mail.computeIfAbsent(from * size + to, k -> new java.util.ArrayDeque<>());
        }

        synchronized void close() {
            if (++closed == size && scratchOwner != null) {
                Pointer.free(scratchOwner);
                scratchOwner = null;
                scratch = scratchBytes = 0;
            }
        }

        synchronized void abort(String reason) {
            if (broken == null) broken = reason;
            notifyAll();
        }

        /** Barrier with timeout (caller holds the monitor). {@code last} runs in the last arriving thread. */
        private void await(int rank, String op, java.util.function.Supplier<String> last) {
            if (broken != null) throw new ParallelException("in-process " + op + " on rank " + rank + ": group broken: " + broken);
            arrivals[rank]++;
            long gen = generation;
            if (++waiting == size) {
                waiting = 0;
                generation++;
                String err = last.get();
                if (err != null) broken = err;
                notifyAll();
                if (err != null) throw new ParallelException("in-process " + op + ": " + err);
                return;
            }
            long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
            if (waits != null) waits.in.set(members[rank], this);
            try {
                awaitOthers(rank, op, gen, deadline);
            } finally {
                if (waits != null) waits.in.set(members[rank], null);
            }
        }

        private void awaitOthers(int rank, String op, long gen, long deadline) {
            while (gen == generation && broken == null) {
                long leftMs = (deadline - System.nanoTime()) / 1_000_000L;
                if (leftMs <= 0) {
                    List<Integer> missing = new ArrayList<>();
                    long mine = arrivals[rank];
                    for (int r = 0; r < size; r++) if (arrivals[r] < mine) missing.add(members[r]);
                    broken = timeoutMessage(rank, op, missing);
                    notifyAll();
                    throw new ParallelException("in-process " + op + " on rank " + rank + ": " + broken);
                }
                try {
                    wait(leftMs);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    broken = "rank " + rank + " was interrupted in " + op;
                    notifyAll();
                    throw new ParallelException("in-process " + op + ": " + broken);
                }
            }
            // a group broken while this rank waited (timeout elsewhere, abort, or a mismatch found by the last arrival)
            if (broken != null) throw new ParallelException("in-process " + op + " on rank " + rank + ": group broken: " + broken);
        }
    }
}
