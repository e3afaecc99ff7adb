package dev.midtrain.parallel;

import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.CpuNative;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.FloatBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;

/**
 * Collectives between ranks in different processes over TCP, on host buffers of the CPU backend (fp32 only): the
 * multi-process counterpart of {@link InProcessCommunicator}, so the whole multi-process path (launch, rendezvous,
 * watchdog, stop vote) runs on CPU and in CI. NCCL stays the GPU transport.
 *
 * <p><b>Same numbers as the in-process communicator.</b> An all-reduce is a reduce-scatter to chunk owners then an
 * all-gather: element i belongs to chunk r = [count*r/n, count*(r+1)/n) (the in-process split), its owner receives
 * every rank's chunk and sums them in rank order ((x0 + x1) + x2) + ... with the same add kernel; a reduce-scatter
 * sums rank r's window the same way. So a run gives bitwise the same results whether its ranks are threads of one
 * process or processes (tested).
 *
 * <p><b>Transport.</b> Each group is a full mesh of TCP connections ({@link TcpWorld#mesh}); every collective is one
 * non-blocking exchange (all sends and receives of a rank progress together on one selector, so large messages
 * cannot deadlock), zero-copy from the rank's buffers. Each message carries a 16-byte header (collective, sequence
 * number, bytes) so ranks calling different collectives fail with a mismatch instead of reading garbage.
 *
 * <p><b>Watchdog.</b> Every exchange is bounded by the world's timeout ({@code --dist-timeout}). A peer that sends
 * nothing in time, or whose connection closes (its process died), is reported through {@link TcpWorld#report},
 * which makes every process fail with the same line naming the lost rank, its host and the collective. A timeout
 * names the rank that did not arrive, not the ranks waiting for it: while in a collective each rank publishes whom it
 * still waits for ({@link #waiting}), and the world follows the waits to their roots ({@link TcpWorld#reportTimeout}).
 *
 * <p>Synchronous: a call returns when the collective is complete on this rank. Like every communicator, each rank
 * must be used by one thread only, and all ranks of a group must call the same collectives in the same order.
 */
public final class TcpCommunicator implements Communicator {
    private static final long SEGMENT = 1L << 30;          // bytes per ByteBuffer view (a ByteBuffer's limit is an int)

    private final TcpWorld world;
    private final String group;
    private final int[] members;
    private final int rank, size;
    private final SocketChannel[] ch;
    private final Selector selector;
    private long seq, p2pSeq;
    private static final int P2P_CODE = "p2p".hashCode();
    private final int[] sendSeq, recvSeq;                   // p2p messages sent to / received from each peer
    private volatile String current = "no collective yet";
    private volatile Wait waiting;                          // while in a collective: the global ranks not yet done
    private int waitKey;
    private final boolean[] busy, recv;                     // scratch of publishWait
    private Pointer scratchOwner;
    private long scratch, scratchBytes;
    private boolean closed;

    private TcpCommunicator(TcpWorld world, String group, int[] members, int rank, SocketChannel[] ch) throws IOException {
        this.world = world;
        this.group = group;
        this.members = members.clone();
        this.rank = rank;
        this.size = members.length;
        this.ch = ch;
        this.sendSeq = new int[size];
        this.recvSeq = new int[size];
        this.busy = new boolean[size];
        this.recv = new boolean[size];
        this.selector = Selector.open();
        for (int p = 0; p < size; p++) if (ch[p] != null) ch[p].register(selector, 0, p);
        world.onAbort(selector::wakeup);
        world.register(this);
    }

    /** Global rank {@code rank} waits in collective {@code what} for the global ranks {@code waitsFor}. */
    public record Wait(int rank, int[] waitsFor, String what) {}

    /** What this rank waits for now, null when it is in no collective (asked by the world's watchdog thread). */
    Wait waiting() { return waiting; }

    /**
     * Publishes the peers this rank still waits for: those it still receives from, else those it still sends to.
     * {@code busy[p]} and {@code recv[p]}: peer p's transfer is unfinished, and it still receives from p.
     */
    private void publishWait(boolean[] busy, boolean[] recv, String what) {
        int key = 0;
        for (int p = 0; p < size; p++) key += (busy[p] ? 1 : 0) + (recv[p] ? size + 1 : 0);
        Wait w = waiting;
        if (w != null && key == waitKey && w.what().equals(what)) return;       // unchanged: no allocation per select
        waitKey = key;
        List<Integer> on = new ArrayList<>();
        for (int p = 0; p < size; p++) if (busy[p] && recv[p]) on.add(members[p]);
        if (on.isEmpty()) for (int p = 0; p < size; p++) if (busy[p]) on.add(members[p]);
        waiting = new Wait(members[rank], on.stream().mapToInt(Integer::intValue).toArray(), what);
    }

    /**
     * Joins the group {@code name} (unique in the world) whose members are the global ranks {@code members}, as group
     * rank {@code me}. Collective over the group's ranks.
     */
    public static TcpCommunicator connect(TcpWorld world, String name, int[] members, int me) {
        if (me < 0 || me >= members.length) throw new IllegalArgumentException("group rank " + me + " of " + members.length);
        SocketChannel[] ch = members.length == 1 ? new SocketChannel[1] : world.mesh(name, members, me);
        try {
            return new TcpCommunicator(world, name, members, me, ch);
        } catch (IOException e) {
            for (SocketChannel c : ch) TcpWorld.closeQuietly(c);
            throw new ParallelException("group " + name + ": cannot open a selector: " + e.getMessage(), e);
        }
    }

    @Override public int rank() { return rank; }
    @Override public int size() { return size; }

    /** What this rank is doing or did last ("allReduceSum #12 of group tp.0"), for the watchdog's messages. */
    public String current() { return current; }

    @Override
    public void allReduceSum(long buf, long count, Dtype t) { allReduce(buf, count, t, false); }

    @Override
    public void allReduceMax(long buf, long count, Dtype t) { allReduce(buf, count, t, true); }

    private void allReduce(long buf, long count, Dtype t, boolean max) {
        String op = max ? "allReduceMax" : "allReduceSum";
        requireF32(t, op);
        if (size == 1 || count == 0) return;
        long slot = 4 * (count / size + 1);                    // largest chunk, bytes
        ensureScratch(slot * size);
        long[] sa = new long[size], sb = new long[size], ra = new long[size], rb = new long[size];
        long myLo = chunk(count, rank), myN = chunk(count, rank + 1) - myLo;
        for (int p = 0; p < size; p++) {
            long lo = chunk(count, p), n = chunk(count, p + 1) - lo;
            sa[p] = buf + 4 * lo; sb[p] = 4 * n;                   // my piece of p's chunk, to its owner p
            ra[p] = scratch + slot * p; rb[p] = 4 * myN;           // p's piece of my chunk
        }
        exchange(op, count, sa, sb, ra, rb);
        long acc = scratch + slot * rank;                          // my own slot holds the sum
        reduceRankOrder(acc, buf + 4 * myLo, slot, myN, max);
        copy(buf + 4 * myLo, acc, 4 * myN);
        for (int p = 0; p < size; p++) {
            long lo = chunk(count, p), n = chunk(count, p + 1) - lo;
            sa[p] = buf + 4 * myLo; sb[p] = 4 * myN;               // my reduced chunk to everyone
            ra[p] = buf + 4 * lo; rb[p] = 4 * n;                   // everyone's reduced chunk in place
        }
        exchange(op + "/gather", count, sa, sb, ra, rb);
    }

    @Override
    public void reduceScatterSum(long recv, long send, long count, Dtype t) {
        requireF32(t, "reduceScatterSum");
        if (count == 0) return;
        if (size == 1) { copy(recv, send, 4 * count); return; }
        long slot = 4 * count;
        ensureScratch(slot * size);
        long[] sa = new long[size], sb = new long[size], ra = new long[size], rb = new long[size];
        for (int p = 0; p < size; p++) {
            sa[p] = send + slot * p; sb[p] = slot;
            ra[p] = scratch + slot * p; rb[p] = slot;
        }
        exchange("reduceScatterSum", count, sa, sb, ra, rb);
        long acc = scratch + slot * rank;
        reduceRankOrder(acc, send + slot * rank, slot, count, false);
        copy(recv, acc, slot);
    }

    @Override
    public void allGather(long recv, long send, long count, Dtype t) {
        requireF32(t, "allGather");
        if (count == 0) return;
        long bytes = 4 * count;
        copy(recv + bytes * rank, send, bytes);
        if (size == 1) return;
        long[] sa = new long[size], sb = new long[size], ra = new long[size], rb = new long[size];
        for (int p = 0; p < size; p++) {
            sa[p] = recv + bytes * rank; sb[p] = bytes;
            ra[p] = recv + bytes * p; rb[p] = bytes;
        }
        exchange("allGather", count, sa, sb, ra, rb);
    }

    @Override
    public void broadcast(long buf, long count, Dtype t, int root) {
        requireF32(t, "broadcast");
        if (root < 0 || root >= size) throw new IllegalArgumentException("broadcast root " + root + " of " + size);
        if (size == 1 || count == 0) return;
        long[] sa = new long[size], sb = new long[size], ra = new long[size], rb = new long[size];
        for (int p = 0; p < size; p++) {
            if (rank == root) { sa[p] = buf; sb[p] = 4 * count; }
            else if (p == root) { ra[p] = buf; rb[p] = 4 * count; }
        }
        exchange("broadcast(root " + root + ")", count, sa, sb, ra, rb);
    }

    /**
     * Every transfer of the batch progresses on the selector together; transfers to one peer go in batch order, each
     * with a header (P2P, the per-direction message number, bytes) that the receiver checks.
     */
    @Override
    public void p2p(Dtype t, P2p... ops) {
        requireF32(t, "p2p");
        if (ops.length == 0) return;
        PeerIo[] io = new PeerIo[size];
        for (P2p o : ops) {
            if (o.peer() < 0 || o.peer() >= size || o.peer() == rank || o.count() < 0)
                throw new IllegalArgumentException("p2p on group " + group + " rank " + rank + " of " + size + ": bad transfer " + o);
            if (io[o.peer()] == null) io[o.peer()] = new PeerIo();
            (o.send() ? io[o.peer()].sends : io[o.peer()].recvs).add(o);
        }
        p2pSeq++;
        String what = "p2p #" + p2pSeq + " " + java.util.Arrays.toString(ops) + " of group " + group;
        current = what;
        checkAborted();
        int pending = 0;
        for (PeerIo x : io) if (x != null) pending++;
        long timeoutNs = world.timeout().toNanos();
        pump(io, pending, what, timeoutNs, () -> {
            List<String> silent = new ArrayList<>();
            for (int p = 0; p < size; p++) if (io[p] != null) silent.add(world.describeRank(members[p]));
            String agreed = world.reportTimeout("p2p timed out after " + timeoutNs / 1_000_000_000.0 + " s (--dist-timeout): "
                    + String.join(", ", silent) + " did not complete " + what);
            return new ParallelException(agreed.contains(what) ? agreed : agreed + " (global rank " + members[rank] + " stopped in " + what + ")");
        }, p -> p2pLost(p, what), p -> { p2pWrite(io[p], p); return true; }, p -> p2pRead(io[p], p, what));
    }

    /** A write or read step of one peer's half on the selector; false from a read: the peer closed its connection. */
    private interface IoStep { boolean run(int peer) throws IOException; }

    /**
     * Drives the peers' halves {@code x} (null: nothing with that peer) on the selector until every one is done:
     * {@code write} when the channel can take bytes and the half is sending, {@code read} when bytes came and it is
     * receiving. A deadline past {@code timeoutNs} throws {@code onTimeout}'s exception, a closed connection
     * {@code onLost}'s; the wait is published for the watchdog's diagnosis all along.
     */
    private void pump(Half[] x, int pending, String what, long timeoutNs, java.util.function.Supplier<ParallelException> onTimeout,
                      java.util.function.IntFunction<ParallelException> onLost, IoStep write, IoStep read) {
        long deadline = System.nanoTime() + timeoutNs;
        try {
            while (pending > 0) {
                checkAborted();
                for (int p = 0; p < size; p++) {
                    if (x[p] == null) continue;
                    ch[p].keyFor(selector).interestOps((x[p].sending() ? SelectionKey.OP_WRITE : 0) | (x[p].receiving() ? SelectionKey.OP_READ : 0));
                }
                long left = (deadline - System.nanoTime()) / 1_000_000L;
                if (left <= 0) throw onTimeout.get();
                for (int p = 0; p < size; p++) { busy[p] = x[p] != null; recv[p] = busy[p] && x[p].receiving(); }
                publishWait(busy, recv, what);
                selector.select(Math.min(left, 1000));
                for (SelectionKey k : selector.selectedKeys()) {
                    int p = (Integer) k.attachment();
                    Half h = x[p];
                    if (h == null || !k.isValid()) continue;
                    try {
                        if (k.isWritable() && h.sending()) write.run(p);
                        if (k.isReadable() && h.receiving() && !read.run(p)) throw onLost.apply(p);
                    } catch (IOException e) {
                        throw onLost.apply(p);                     // connection reset: the peer's process is gone
                    }
                    if (!h.sending() && !h.receiving()) { x[p] = null; pending--; k.interestOps(0); }
                }
                selector.selectedKeys().clear();
            }
        } catch (IOException e) {
            throw new ParallelException("group " + group + ": selector failed in " + what + ": " + e.getMessage(), e);
        } finally {
            waiting = null;
            for (int p = 0; p < size; p++) if (ch[p] != null && ch[p].keyFor(selector) != null && ch[p].keyFor(selector).isValid())
                ch[p].keyFor(selector).interestOps(0);
        }
    }

    private ParallelException p2pLost(int p, String what) {
        String agreed = world.report("lost " + world.describeRank(members[p]) + ": its connection closed during " + what);
        return new ParallelException(agreed.contains(what) ? agreed : agreed + " (global rank " + members[rank] + " stopped in " + what + ")");
    }

    /** One peer's side of an exchange in flight: a header and payload out, a header and payload in. */
    private abstract static class Half {
        final ByteBuffer headOut = ByteBuffer.allocate(16), headIn = ByteBuffer.allocate(16);
        long sendAddr, sendLeft, recvAddr, recvLeft, recvExpect;
        ByteBuffer sendView, recvView;

        abstract boolean sending();

        abstract boolean receiving();
    }

    /** One peer's transfers of a p2p batch, in order. */
    private static final class PeerIo extends Half {
        final java.util.ArrayDeque<P2p> sends = new java.util.ArrayDeque<>(), recvs = new java.util.ArrayDeque<>();
        boolean sendActive, recvActive;

        @Override boolean sending() { return sendActive || !sends.isEmpty(); }

        @Override boolean receiving() { return recvActive || !recvs.isEmpty(); }
    }

    private void p2pWrite(PeerIo x, int p) throws IOException {
        while (true) {
            if (!x.sendActive) {
                P2p o = x.sends.poll();
                if (o == null) return;
                x.headOut.clear();
                x.headOut.putInt(P2P_CODE).putInt(sendSeq[p]++).putLong(4 * o.count()).flip();
                x.sendAddr = o.buf();
                x.sendLeft = 4 * o.count();
                x.sendView = null;
                x.sendActive = true;
            }
            if (x.headOut.hasRemaining()) {
                ch[p].write(x.headOut);
                if (x.headOut.hasRemaining()) return;
            }
            while (x.sendLeft > 0) {
                if (x.sendView == null || !x.sendView.hasRemaining()) x.sendView = bytes(x.sendAddr, (int) Math.min(SEGMENT, x.sendLeft));
                int w = ch[p].write(x.sendView);
                x.sendAddr += w;
                x.sendLeft -= w;
                if (w == 0) return;
            }
            x.sendActive = false;
        }
    }

    /** False on end of stream (the peer closed its connection). */
    private boolean p2pRead(PeerIo x, int p, String what) throws IOException {
        while (true) {
            if (!x.recvActive) {
                P2p o = x.recvs.poll();
                if (o == null) return true;
                x.headIn.clear();
                x.recvAddr = o.buf();
                x.recvExpect = x.recvLeft = 4 * o.count();
                x.recvView = null;
                x.recvActive = true;
            }
            if (x.headIn.hasRemaining()) {
                if (ch[p].read(x.headIn) < 0) return false;
                if (x.headIn.hasRemaining()) return true;
                x.headIn.flip();
                int code = x.headIn.getInt(), seqNo = x.headIn.getInt();
                long n = x.headIn.getLong();
                x.headIn.position(16);
                if (code != P2P_CODE || seqNo != recvSeq[p] || n != x.recvExpect) {
                    String msg = "p2p mismatch in group " + group + ": " + world.describeRank(members[rank]) + " in " + what + " expected message #"
                            + recvSeq[p] + " of " + x.recvExpect + " bytes from " + world.describeRank(members[p]) + ", which sent "
                            + (code == P2P_CODE ? "message #" + seqNo + " of " + n + " bytes" : "a collective");
                    throw new ParallelException(world.report(msg));
                }
                recvSeq[p]++;
            }
            while (x.recvLeft > 0) {
                if (x.recvView == null || !x.recvView.hasRemaining()) x.recvView = bytes(x.recvAddr, (int) Math.min(SEGMENT, x.recvLeft));
                int r = ch[p].read(x.recvView);
                if (r < 0) return false;
                x.recvAddr += r;
                x.recvLeft -= r;
                if (r == 0) return true;
            }
            x.recvActive = false;
        }
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        world.unregister(this);
        TcpWorld.closeQuietly(selector);
        for (SocketChannel c : ch) TcpWorld.closeQuietly(c);
        if (scratchOwner != null) Pointer.free(scratchOwner);
        scratchOwner = null;
    }

    // ------------------------------------------------------------------------------------------- the exchange

    /** One peer's half of an exchange: a header + payload to send, a header + payload to receive. */
    private static final class Xfer extends Half {
        @Override boolean sending() { return headOut.hasRemaining() || sendLeft > 0; }

        @Override boolean receiving() { return headIn.hasRemaining() || recvLeft > 0; }
    }

    /**
     * Sends sb[p] bytes at sa[p] to every peer p and receives rb[p] bytes into ra[p] from it, all at once. Peers
     * with nothing to send and nothing to receive take no part; a zero-byte message still carries its header.
     */
    private void exchange(String op, long count, long[] sa, long[] sb, long[] ra, long[] rb) {
        seq++;
        String what = op + " #" + seq + " (" + count + " elements) of group " + group;
        current = what;
        checkAborted();
        int code = op.hashCode();
        Xfer[] x = new Xfer[size];
        int pending = 0;
        for (int p = 0; p < size; p++) {
            if (p == rank) continue;
            boolean send = sb[p] > 0 || (sa[p] != 0), recv = rb[p] > 0 || (ra[p] != 0);
            if (!send && !recv) continue;
            Xfer xf = new Xfer();
            if (send) {
                xf.headOut.putInt(code).putInt((int) seq).putLong(sb[p]).flip();
                xf.sendAddr = sa[p];
                xf.sendLeft = sb[p];
            } else xf.headOut.position(16);
            if (recv) {
                xf.recvAddr = ra[p];
                xf.recvExpect = rb[p];
                xf.recvLeft = rb[p];
            } else xf.headIn.position(16);
            x[p] = xf;
            pending++;
        }
        long timeoutNs = world.timeout().toNanos();
        pump(x, pending, what, timeoutNs, () -> lost(x, what, timeoutNs, -1), p -> lost(x, what, timeoutNs, p),
                p -> { write(x[p], ch[p]); return true; }, p -> read(x[p], ch[p], code, op, p));
    }

    private static void write(Xfer xf, SocketChannel c) throws IOException {
        if (xf.headOut.hasRemaining()) {
            c.write(xf.headOut);
            if (xf.headOut.hasRemaining()) return;
        }
        while (xf.sendLeft > 0) {
            if (xf.sendView == null || !xf.sendView.hasRemaining()) {
                int n = (int) Math.min(SEGMENT, xf.sendLeft);
                xf.sendView = bytes(xf.sendAddr, n);
            }
            int w = c.write(xf.sendView);
            xf.sendAddr += w;
            xf.sendLeft -= w;
            if (w == 0) return;
        }
    }

    /** False on end of stream (the peer closed its connection). */
    private boolean read(Xfer xf, SocketChannel c, int code, String op, int p) throws IOException {
        if (xf.headIn.hasRemaining()) {
            if (c.read(xf.headIn) < 0) return false;
            if (xf.headIn.hasRemaining()) return true;
            xf.headIn.flip();
            int theirCode = xf.headIn.getInt(), theirSeq = xf.headIn.getInt();
            long theirBytes = xf.headIn.getLong();
            xf.headIn.position(16);
            if (theirCode != code || theirSeq != (int) seq || theirBytes != xf.recvExpect) {
                String msg = "collective mismatch in group " + group + ": " + world.describeRank(members[rank]) + " is in " + op + " #" + seq
                        + " expecting " + xf.recvExpect + " bytes from " + world.describeRank(members[p]) + ", which sent "
                        + theirBytes + " bytes of another collective (#" + theirSeq + ")";
                throw new ParallelException(world.report(msg));
            }
        }
        while (xf.recvLeft > 0) {
            if (xf.recvView == null || !xf.recvView.hasRemaining()) {
                int n = (int) Math.min(SEGMENT, xf.recvLeft);
                xf.recvView = bytes(xf.recvAddr, n);
            }
            int r = c.read(xf.recvView);
            if (r < 0) return false;
            xf.recvAddr += r;
            xf.recvLeft -= r;
            if (r == 0) return true;
        }
        return true;
    }

    /** The failure of an exchange: reported to the world, which agrees on one line for every process. */
    private ParallelException lost(Xfer[] x, String what, long timeoutNs, int closedPeer) {
        String reason;
        boolean timedOut = closedPeer < 0;
        if (closedPeer >= 0) {
            reason = "lost " + world.describeRank(members[closedPeer]) + ": its connection closed during " + what;
        } else {
            List<String> silent = new ArrayList<>();
            for (int p = 0; p < x.length; p++) if (x[p] != null && x[p].receiving()) silent.add(world.describeRank(members[p]));
            if (silent.isEmpty()) for (int p = 0; p < x.length; p++) if (x[p] != null) silent.add(world.describeRank(members[p]));
            reason = "collective timed out after " + timeoutNs / 1_000_000_000.0 + " s (--dist-timeout): " + String.join(", ", silent)
                    + " did not complete " + what;
        }
        String agreed = timedOut ? world.reportTimeout(reason) : world.report(reason);
        return new ParallelException(agreed.contains(what) ? agreed : agreed + " (global rank " + members[rank] + " stopped in " + what + ")");
    }

    private void checkAborted() {
        String r = world.abortReason();
        if (r != null) throw new ParallelException(r + " (global rank " + members[rank] + " stopped in " + current + ")");
    }

    // -------------------------------------------------------------------------------------------- helpers

    /**
     * acc[n] = x_0 + x_1 + ... in rank order (or the NaN-propagating max), where x_p is the piece received from p at
     * scratch + slot*p and this rank's own piece is at {@code own}. acc is this rank's own slot.
     */
    private void reduceRankOrder(long acc, long own, long slot, long n, boolean max) {
        if (n == 0) return;
        copy(acc, rank == 0 ? own : scratch, 4 * n);
        for (int p = 1; p < size; p++) {
            long src = p == rank ? own : scratch + slot * p;
            if (!max) Backend.check(CpuNative.mt_cpu_add(acc, acc, src, n, 0L), "add (tcp collective)");
            else maxInto(acc, src, n);
        }
    }

    private static void maxInto(long acc, long src, long n) {
        for (long off = 0; off < n; off += Integer.MAX_VALUE / 4) {
            int m = (int) Math.min(n - off, Integer.MAX_VALUE / 4);
            FloatBuffer out = new RawFloats(acc + 4 * off, m).asBuffer(), in = new RawFloats(src + 4 * off, m).asBuffer();
            // NaN propagates (like NCCL's max): a non-finite value on any rank must not vanish
            for (int i = 0; i < m; i++) {
                float a = out.get(i), b = in.get(i);
                out.put(i, (a != a || b != b) ? Float.NaN : Math.max(a, b));
            }
        }
    }

    private long chunk(long count, int r) { return count * r / size; }

    private void ensureScratch(long bytes) {
        if (bytes <= scratchBytes) return;
        if (scratchOwner != null) Pointer.free(scratchOwner);
        scratchOwner = Pointer.malloc(bytes + 256);
        if (scratchOwner == null || scratchOwner.isNull()) {
            scratchOwner = null;
            scratchBytes = 0;
            throw new ParallelException("cannot allocate " + bytes + " bytes of collective scratch");
        }
        scratch = (scratchOwner.address() + 255) & ~255L;
        scratchBytes = bytes;
    }

    private static void copy(long dst, long src, long bytes) {
        if (dst == src || bytes == 0) return;
        Backend.check(CpuNative.mt_cpu_copy_bytes(dst, src, bytes, 0L), "copy_bytes (tcp collective)");
    }

    private static void requireF32(Dtype t, String op) {
        if (t != Dtype.F32) throw new IllegalArgumentException("tcp " + op + ": only F32 buffers (the CPU floatX is float), got " + t);
    }

    private static ByteBuffer bytes(long address, int n) { return new RawBytes(address, n).asByteBuffer(); }

    private static final class RawBytes extends BytePointer {
        RawBytes(long address, long n) {
            this.address = address;
            this.limit = n;
            this.capacity = n;
        }
    }

    private static final class RawFloats extends FloatPointer {
        RawFloats(long address, long n) {
            this.address = address;
            this.limit = n;
            this.capacity = n;
        }
    }
}
