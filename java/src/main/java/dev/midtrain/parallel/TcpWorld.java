package dev.midtrain.parallel;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.ConnectException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.NoRouteToHostException;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

/**
 * The processes of a multi-process run, connected over TCP: the start-up rendezvous, the address book that
 * {@link TcpCommunicator} meshes connect through, and the watchdog channel.
 *
 * <p><b>Rendezvous.</b> Process 0 listens on {@link LaunchEnv#storePort()}; every other process connects, sends a
 * hello (index, process and rank counts, its data port, its host name) and waits. When all have arrived process 0
 * answers each with the address book and its payload (the NCCL unique id in NCCL mode, else empty). Every wait has
 * a deadline; on a timeout process 0 names the processes (and their ranks) that never arrived.
 *
 * <p><b>Watchdog.</b> The connections to process 0 stay open for the whole run. A process whose collective times
 * out, or sees a peer's connection close, reports one line to process 0 ({@link #report}); process 0 forwards the
 * first report to every process, and reports a process lost itself when its connection closes without a goodbye
 * (killed, crashed). Every process then aborts its communicators ({@link #onAbort}): a collective in flight or a
 * later one fails with that line, naming the lost rank, its host and the collective; a process that has not exited
 * {@link #HALT_GRACE_MS} later prints the line and halts with status 1. Process 0 lost: each process sees its
 * connection close and names it.
 *
 * <p><b>Which rank did not arrive.</b> A collective timeout is not reported as is: the ranks that time out are often
 * waiting for a rank that is itself waiting in another group (dp waits for a tp member that waits for the stuck rank).
 * Process 0 asks every process which of its ranks wait in a collective and for whom ({@link #reportTimeout}), and
 * names the ranks that are waited for but wait in no collective themselves: the roots of the chain, like
 * {@link InProcessCommunicator.Waits}. Without an answer in {@link #QUERY_MS} (or a cycle), the reporter's line stands.
 *
 * <p>Wire format (big-endian). Hello: magic "MTCW", version, procIndex, nprocs, worldSize, dataPort (ints), host
 * (UTF). Answer: status byte 0, then for each process its address (UTF), data port (int), host name (UTF), then the
 * payload (int length + bytes); or status 1 and an error (UTF). Then messages from either side: 1 + UTF = failure
 * report / abort notice, 2 = goodbye (a clean exit), 3 + UTF = collective timeout (to process 0), 4 = query of the waits
 * (from process 0), 5 + int n + n x (int rank, int k, k x int rank waited for, UTF collective) = the waits (answer).
 */
public final class TcpWorld implements AutoCloseable {
    private static final int MAGIC = 0x4D544357, VERSION = 2, DATA_MAGIC = 0x4D544344;
    private static final byte FAIL = 1, BYE = 2, TIMEOUT = 3, QUERY = 4, STATE = 5;
    static final long QUERY_MS = 1_500;                   // process 0 waits this long for the waits of every process
    static final long HALT_GRACE_MS = 5_000;
    private static final long RETRY_MS = 200, AGREE_MS = 3_000;

    /** One process: where its data port is, and the host name to name in messages. */
    public record Peer(String address, int dataPort, String host) {}

    private final LaunchEnv env;
    private final Duration timeout;
    private final ServerSocketChannel data;
    private final Thread acceptor;
    private final ConcurrentHashMap<String, CompletableFuture<SocketChannel>> incoming = new ConcurrentHashMap<>();
    private Peer[] book;
    private byte[] payload = new byte[0];
    // control channel: process 0 holds one socket per other process; the others hold one to process 0
    private Socket[] control;
    private final boolean[] said;                 // process 0: which processes said goodbye
    private volatile boolean closing;
    private volatile String abortReason;
    private final List<Runnable> abortHooks = new CopyOnWriteArrayList<>();
    private final boolean haltOnAbort;
    private final List<TcpCommunicator> comms = new CopyOnWriteArrayList<>();
    // process 0, while it asks for the waits of a timeout: global rank -> its wait, and which processes answered
    private final ConcurrentHashMap<Integer, TcpCommunicator.Wait> waits = new ConcurrentHashMap<>();
    private boolean[] answered;
    private boolean resolving;

    private TcpWorld(LaunchEnv env, Duration timeout, boolean haltOnAbort) throws IOException {
        this.env = env;
        this.haltOnAbort = haltOnAbort;
        this.timeout = timeout;
        this.said = new boolean[env.nprocs()];
        this.data = ServerSocketChannel.open();
        data.bind(new InetSocketAddress(0));
        acceptor = new Thread(this::acceptData, "tcp-world-accept");
        acceptor.setDaemon(true);
        acceptor.start();
    }

    /**
     * Joins the world of {@code env} (collective over the processes). {@code payload} is process 0's bytes for
     * everyone (the NCCL id), null for none. {@code haltOnAbort}: after an abort, halt the JVM if it is still alive
     * {@link #HALT_GRACE_MS} later (the CLI; tests that run several worlds in one JVM pass false).
     */
    public static TcpWorld start(LaunchEnv env, byte[] payload, Duration timeout, boolean haltOnAbort) {
        if (!env.multiProcess()) throw new IllegalArgumentException("a single process needs no TCP world");
        TcpWorld w;
        try {
            w = new TcpWorld(env, timeout, haltOnAbort);
        } catch (IOException e) {
            throw new ParallelException("cannot open a data port: " + e.getMessage(), e);
        }
        try {
            if (env.procIndex() == 0) w.serve(payload == null ? new byte[0] : payload);
            else w.join();
        } catch (RuntimeException e) {
            w.closeQuietly();
            throw e;
        }
        return w;
    }

    public LaunchEnv env() { return env; }

    public Duration timeout() { return timeout; }

    /** Process 0's payload (the NCCL unique id), empty when none was given. */
    public byte[] payload() { return payload.clone(); }

    /** The process that runs global rank {@code rank}. */
    public int processOf(int rank) { return rank / env.localRanks(); }

    /** "rank 5 (process 1, host gpu07)". */
    public String describeRank(int rank) {
        int p = processOf(rank);
        return "rank " + rank + " (process " + p + ", host " + book[p].host() + ")";
    }

    /** Registers what to do when the world is aborted (break this process's communicators). */
    public void onAbort(Runnable hook) {
        abortHooks.add(hook);
        if (abortReason != null) hook.run();
    }

    /** The agreed reason once the world is aborted, else null. */
    public String abortReason() { return abortReason; }

    /**
     * Reports a failure seen by this process ({@code reason} names the rank at fault, its host and the collective):
     * every process is told, the first report wins. Returns the agreed reason (waiting briefly for it).
     */
    public String report(String reason) { return report(reason, false); }

    /**
     * Reports a collective timeout ({@code reason} names the ranks this rank waited for): process 0 replaces it by a
     * line naming the ranks at the root of the waits (see the class comment). Returns the agreed reason.
     */
    public String reportTimeout(String reason) { return report(reason, true); }

    private String report(String reason, boolean timedOut) {
        if (abortReason == null) {
            if (env.procIndex() == 0) {
                if (timedOut) resolve(reason);
                else abortAll(reason);
            } else {
                try {
                    send(control[0], timedOut ? TIMEOUT : FAIL, reason);
                } catch (IOException e) {
                    abortLocal(reason);                // process 0 is gone too: our own line it is
                }
            }
        }
        long deadline = System.nanoTime() + AGREE_MS * 1_000_000L;
        synchronized (this) {
            while (abortReason == null && System.nanoTime() < deadline) {
                try {
                    wait(100);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
        }
        if (abortReason == null) abortLocal(reason);
        return abortReason;
    }

    void register(TcpCommunicator c) { comms.add(c); }

    void unregister(TcpCommunicator c) { comms.remove(c); }

    /** Process 0: asks every process for its waits (once), then aborts everyone naming the roots. */
    private void resolve(String fallback) {
        synchronized (this) {
            if (resolving || abortReason != null) return;
            resolving = true;
            answered = new boolean[env.nprocs()];
            answered[0] = true;
        }
        Thread t = new Thread(() -> {
            for (int p = 1; p < control.length; p++) {
                boolean ask = control[p] != null && !said[p];
                if (ask) {
                    try {
                        send(control[p], QUERY, null);
                    } catch (IOException e) {
                        ask = false;
                    }
                }
                if (!ask) synchronized (this) { answered[p] = true; }
            }
            for (TcpCommunicator.Wait w : localWaits()) waits.put(w.rank(), w);
            long deadline = System.nanoTime() + QUERY_MS * 1_000_000L;
            synchronized (this) {
                while (abortReason == null && System.nanoTime() < deadline && !allAnswered()) {
                    try {
                        wait(50);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        break;
                    }
                }
            }
            abortAll(roots(waits, fallback));
        }, "tcp-world-resolve");
        t.setDaemon(true);
        t.start();
    }

    private synchronized boolean allAnswered() {
        for (boolean a : answered) if (!a) return false;
        return true;
    }

    private List<TcpCommunicator.Wait> localWaits() {
        List<TcpCommunicator.Wait> out = new ArrayList<>();
        for (TcpCommunicator c : comms) {
            TcpCommunicator.Wait w = c.waiting();
            if (w != null) out.add(w);
        }
        return out;
    }

    /**
     * The line naming the ranks that are waited for but wait in no collective (each with up to 3 of the ranks
     * waiting for it and where); {@code fallback} when there is none (a cycle, or nobody answered).
     */
    String roots(java.util.Map<Integer, TcpCommunicator.Wait> w, String fallback) {
        java.util.TreeMap<Integer, List<String>> roots = new java.util.TreeMap<>();
        for (TcpCommunicator.Wait x : new java.util.TreeMap<>(w).values())
            for (int r : x.waitsFor()) if (!w.containsKey(r)) roots.computeIfAbsent(r, k -> new ArrayList<>()).add(describeRank(x.rank()) + " waits for it in " + x.what());
        if (roots.isEmpty()) return fallback;
        List<String> parts = new ArrayList<>();
        for (var e : roots.entrySet()) {
            List<String> by = e.getValue();
            parts.add(describeRank(e.getKey()) + " did not arrive at its next collective: " + String.join("; ", by.subList(0, Math.min(3, by.size())))
                    + (by.size() > 3 ? "; and " + (by.size() - 3) + " more ranks" : ""));
        }
        return "collective timed out after " + timeout.toMillis() / 1000.0 + " s (--dist-timeout): " + String.join("; ", parts);
    }

    // ------------------------------------------------------------------------------------------- data meshes

    /**
     * The TCP connections of one group, by group rank (null at {@code me}): lower ranks are dialled, higher ranks
     * dial in. {@code group} names the group uniquely in the world ("tp.1"); {@code members} are global ranks.
     */
    SocketChannel[] mesh(String group, int[] members, int me) {
        SocketChannel[] out = new SocketChannel[members.length];
        long deadline = System.nanoTime() + timeout.toNanos();
        try {
            for (int j = 0; j < me; j++) {
                Peer p = book[processOf(members[j])];
                SocketChannel ch = SocketChannel.open();
                ch.socket().connect(new InetSocketAddress(p.address(), p.dataPort()), (int) Math.max(1, millisLeft(deadline)));
                ch.socket().setTcpNoDelay(true);
                byte[] g = group.getBytes(StandardCharsets.UTF_8);
                ByteBuffer hello = ByteBuffer.allocate(16 + g.length);
                hello.putInt(DATA_MAGIC).putInt(members[me]).putInt(members[j]).putInt(g.length).put(g).flip();
                while (hello.hasRemaining()) ch.write(hello);
                out[j] = ch;
            }
            for (int j = me + 1; j < members.length; j++) {
                String key = key(group, members[j], members[me]);
                try {
                    out[j] = incoming.computeIfAbsent(key, k -> new CompletableFuture<>()).get(Math.max(1, millisLeft(deadline)), TimeUnit.MILLISECONDS);
                } catch (java.util.concurrent.TimeoutException e) {
                    throw new ParallelException("group " + group + ": " + describeRank(members[j]) + " did not connect within "
                            + timeout.toMillis() / 1000.0 + " s");
                } catch (java.util.concurrent.ExecutionException | InterruptedException e) {
                    throw new ParallelException("group " + group + ": connecting " + describeRank(members[j]) + " failed: " + e.getMessage(), e);
                }
                incoming.remove(key);
            }
            for (SocketChannel ch : out) if (ch != null) ch.configureBlocking(false);
            return out;
        } catch (IOException e) {
            for (SocketChannel ch : out) closeQuietly(ch);
            throw new ParallelException("group " + group + " of rank " + members[me] + ": cannot connect: " + e.getMessage(), e);
        }
    }

    private static String key(String group, int from, int to) { return group + "/" + from + "->" + to; }

    private void acceptData() {
        while (data.isOpen()) {
            try {
                SocketChannel ch = data.accept();
                ch.socket().setTcpNoDelay(true);
                ByteBuffer head = ByteBuffer.allocate(16);
                readFully(ch, head);
                head.flip();
                if (head.getInt() != DATA_MAGIC) { ch.close(); continue; }      // not one of ours
                int from = head.getInt(), to = head.getInt(), len = head.getInt();
                if (len < 0 || len > 1024) { ch.close(); continue; }
                ByteBuffer g = ByteBuffer.allocate(len);
                readFully(ch, g);
                String group = new String(g.array(), StandardCharsets.UTF_8);
                incoming.computeIfAbsent(key(group, from, to), k -> new CompletableFuture<>()).complete(ch);
            } catch (IOException e) {
                if (!data.isOpen()) return;
            }
        }
    }

    private static void readFully(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) if (ch.read(b) < 0) throw new EOFException();
    }

    // -------------------------------------------------------------------------------------------- rendezvous

    private void serve(byte[] myPayload) {
        int n = env.nprocs(), port = env.storePort();
        long deadline = System.nanoTime() + timeout.toNanos();
        payload = myPayload;
        control = new Socket[n];
        book = new Peer[n];
        book[0] = new Peer(env.masterAddr(), data.socket().getLocalPort(), hostName());
        try (ServerSocket server = new ServerSocket()) {
            server.setReuseAddress(true);
            try {
                server.bind(new InetSocketAddress(port));
            } catch (IOException e) {
                throw new ParallelException("rendezvous: cannot listen on port " + port + " (" + env.portOrigin() + "): " + e.getMessage(), e);
            }
            int arrived = 1;
            while (arrived < n) {
                long leftMs = millisLeft(deadline);
                if (leftMs <= 0) {
                    String msg = "rendezvous on port " + port + " timed out after " + timeout.toMillis() / 1000.0 + " s: " + missing() + " did not arrive";
                    failAll(msg);
                    throw new ParallelException(msg);
                }
                server.setSoTimeout((int) Math.min(leftMs, Integer.MAX_VALUE));
                Socket s;
                try {
                    s = server.accept();
                } catch (SocketTimeoutException e) {
                    continue;
                }
                try {
                    s.setSoTimeout((int) Math.max(1, Math.min(millisLeft(deadline), 10_000)));
                    DataInputStream in = new DataInputStream(s.getInputStream());
                    if (in.readInt() != MAGIC || in.readInt() != VERSION) { s.close(); continue; }
                    int proc = in.readInt(), theirN = in.readInt(), theirWorld = in.readInt(), dataPort = in.readInt();
                    String host = in.readUTF();
                    String bad = null;
                    if (theirN != n || theirWorld != env.worldSize())
                        bad = "process " + proc + " expects " + theirN + " processes and " + theirWorld + " ranks, process 0 expects "
                                + n + " and " + env.worldSize() + " (same config and launch on every node?)";
                    else if (proc < 1 || proc >= n) bad = "a process announced index " + proc + ", outside [1, " + n + ")";
                    else if (control[proc] != null) bad = "two processes announced index " + proc + " (duplicate node rank?)";
                    if (bad != null) {
                        String msg = "rendezvous on port " + port + ": " + bad;
                        replyError(s, msg);
                        failAll(msg);
                        throw new ParallelException(msg);
                    }
                    s.setSoTimeout(0);
                    control[proc] = s;
                    book[proc] = new Peer(s.getInetAddress().getHostAddress(), dataPort, host);
                    arrived++;
                } catch (IOException e) {
                    s.close();
                }
            }
        } catch (IOException e) {
            failAll("rendezvous server failed: " + e.getMessage());
            throw new ParallelException("rendezvous on port " + port + ": " + e.getMessage(), e);
        }
        for (int p = 1; p < n; p++) {
            try {
                DataOutputStream out = new DataOutputStream(control[p].getOutputStream());
                out.writeByte(0);
                for (Peer q : book) {
                    out.writeUTF(q.address());
                    out.writeInt(q.dataPort());
                    out.writeUTF(q.host());
                }
                out.writeInt(payload.length);
                out.write(payload);
                out.flush();
            } catch (IOException e) {
                String msg = "rendezvous: lost process " + p + " (host " + book[p].host() + ") while answering: " + e.getMessage();
                failAll(msg);
                throw new ParallelException(msg, e);
            }
        }
        for (int p = 1; p < n; p++) {
            int pp = p;
            Thread t = new Thread(() -> watchPeer(pp), "tcp-world-watch-" + p);
            t.setDaemon(true);
            t.start();
        }
    }

    private void join() {
        long deadline = System.nanoTime() + timeout.toNanos();
        String where = env.masterAddr() + ":" + env.storePort();
        while (true) {
            long leftMs = millisLeft(deadline);
            if (leftMs <= 0)
                throw new ParallelException("rendezvous: process 0 at " + where + " did not accept a connection within " + timeout.toMillis() / 1000.0 + " s");
            Socket s = new Socket();
            try {
                try {
                    s.connect(new InetSocketAddress(env.masterAddr(), env.storePort()), (int) Math.min(leftMs, 5_000));
                } catch (UnknownHostException e) {
                    throw new ParallelException("rendezvous: unknown master host '" + env.masterAddr() + "'", e);
                } catch (ConnectException | NoRouteToHostException | SocketTimeoutException e) {
                    s.close();
                    sleep(Math.min(RETRY_MS, Math.max(1, millisLeft(deadline))));
                    continue;
                }
                DataOutputStream out = new DataOutputStream(s.getOutputStream());
                out.writeInt(MAGIC);
                out.writeInt(VERSION);
                out.writeInt(env.procIndex());
                out.writeInt(env.nprocs());
                out.writeInt(env.worldSize());
                out.writeInt(data.socket().getLocalPort());
                out.writeUTF(hostName());
                out.flush();
                DataInputStream in = new DataInputStream(s.getInputStream());
                s.setSoTimeout((int) Math.max(1, millisLeft(deadline) + 5_000));
                int status;
                try {
                    status = in.readUnsignedByte();
                } catch (SocketTimeoutException e) {
                    throw new ParallelException("rendezvous: no answer from process 0 at " + where + " within " + timeout.toMillis() / 1000.0
                            + " s (are all " + env.nprocs() + " processes started?)", e);
                } catch (EOFException e) {
                    throw new ParallelException("rendezvous: process 0 at " + where + " closed the connection without an answer", e);
                }
                if (status != 0) throw new ParallelException("process 0 reports: " + in.readUTF());
                book = new Peer[env.nprocs()];
                for (int p = 0; p < book.length; p++) book[p] = new Peer(in.readUTF(), in.readInt(), in.readUTF());
                book[0] = new Peer(env.masterAddr(), book[0].dataPort(), book[0].host());   // reach process 0 as we did
                int len = in.readInt();
                if (len < 0 || len > 1 << 16) throw new ParallelException("rendezvous: bad payload length " + len + " from " + where);
                payload = new byte[len];
                in.readFully(payload);
                s.setSoTimeout(0);
                control = new Socket[]{s};
                Thread t = new Thread(this::watchMaster, "tcp-world-watch-0");
                t.setDaemon(true);
                t.start();
                return;
            } catch (IOException e) {
                closeQuietly(s);
                throw new ParallelException("rendezvous with process 0 at " + where + " failed: " + e.getMessage(), e);
            } catch (RuntimeException e) {
                closeQuietly(s);
                throw e;
            }
        }
    }

    // ---------------------------------------------------------------------------------------------- watchdog

    /** Process 0: reads process p's reports; its connection closing without a goodbye means the process is lost. */
    private void watchPeer(int p) {
        try {
            DataInputStream in = new DataInputStream(control[p].getInputStream());
            while (true) {
                byte type = in.readByte();
                if (type == FAIL) abortAll(in.readUTF());
                else if (type == TIMEOUT) resolve(in.readUTF());
                else if (type == STATE) {
                    int n = in.readInt();
                    for (int i = 0; i < n; i++) {
                        int rank = in.readInt(), k = in.readInt();
                        int[] on = new int[k];
                        for (int j = 0; j < k; j++) on[j] = in.readInt();
                        waits.put(rank, new TcpCommunicator.Wait(rank, on, in.readUTF()));
                    }
                    synchronized (this) {
                        if (answered != null) answered[p] = true;
                        notifyAll();
                    }
                } else if (type == BYE) {
                    synchronized (this) { said[p] = true; notifyAll(); }
                    return;
                }
            }
        } catch (IOException e) {
            if (!closing && !said[p]) abortAll("lost " + describeProcess(p) + ": its connection closed (killed or crashed?)");
        }
    }

    /** Processes 1..n-1: reads the abort notices of process 0; its connection closing means process 0 is lost. */
    private void watchMaster() {
        try {
            DataInputStream in = new DataInputStream(control[0].getInputStream());
            while (true) {
                byte type = in.readByte();
                if (type == FAIL) abortLocal(in.readUTF());
                else if (type == QUERY) sendWaits(localWaits());
            }
        } catch (IOException e) {
            if (!closing) abortLocal("lost " + describeProcess(0) + ": its connection closed (killed or crashed?)");
        }
    }

    private String describeProcess(int p) {
        int lo = p * env.localRanks(), hi = lo + env.localRanks() - 1;
        return (lo == hi ? "rank " + lo : "ranks " + lo + "-" + hi) + " (process " + p + ", host " + book[p].host() + ")";
    }

    /** Process 0: the first reason wins; every other process is told. */
    private synchronized void abortAll(String reason) {
        if (abortReason != null) return;
        for (int p = 1; p < control.length; p++) {
            if (control[p] == null || said[p]) continue;
            try {
                send(control[p], FAIL, reason);
            } catch (IOException ignored) {
                // that process is gone as well
            }
        }
        abortLocal(reason);
    }

    private void abortLocal(String reason) {
        synchronized (this) {
            if (abortReason != null || closing) return;
            abortReason = reason;
            notifyAll();
        }
        for (Runnable h : abortHooks) {
            try {
                h.run();
            } catch (RuntimeException ignored) {
                // best effort: the halt below still ends the process
            }
        }
        if (!haltOnAbort) return;
        Thread halt = new Thread(() -> {
            try {
                Thread.sleep(HALT_GRACE_MS);
            } catch (InterruptedException e) {
                return;
            }
            System.err.println("midtrain: " + reason);
            System.err.flush();
            Runtime.getRuntime().halt(1);
        }, "tcp-world-halt");
        halt.setDaemon(true);
        halt.start();
    }

    private void sendWaits(List<TcpCommunicator.Wait> ws) throws IOException {
        Socket s = control[0];
        synchronized (s) {
            DataOutputStream out = new DataOutputStream(s.getOutputStream());
            out.writeByte(STATE);
            out.writeInt(ws.size());
            for (TcpCommunicator.Wait w : ws) {
                out.writeInt(w.rank());
                out.writeInt(w.waitsFor().length);
                for (int r : w.waitsFor()) out.writeInt(r);
                out.writeUTF(w.what().length() > 1000 ? w.what().substring(0, 1000) : w.what());
            }
            out.flush();
        }
    }

    private static void send(Socket s, byte type, String msg) throws IOException {
        synchronized (s) {
            DataOutputStream out = new DataOutputStream(s.getOutputStream());
            out.writeByte(type);
            if (msg != null) out.writeUTF(msg.length() > 4000 ? msg.substring(0, 4000) : msg);
            out.flush();
        }
    }

    /** A clean exit: says goodbye (process 0 first waits, bounded, for everyone's goodbye), then closes everything. */
    @Override
    public void close() {
        if (control != null && abortReason == null) {
            if (env.procIndex() == 0) {
                long deadline = System.nanoTime() + timeout.toNanos();
                synchronized (this) {
                    while (abortReason == null && System.nanoTime() < deadline && !allSaid()) {
                        try {
                            wait(100);
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                            break;
                        }
                    }
                }
            } else {
                closing = true;
                try {
                    send(control[0], BYE, null);
                } catch (IOException ignored) {
                    // process 0 is gone; nothing to tell
                }
            }
        }
        closing = true;
        closeQuietly();
    }

    /** Closes every connection without a goodbye, as a killed process would (tests). */
    void closeForTest() { closeQuietly(); }

    private boolean allSaid() {
        for (int p = 1; p < said.length; p++) if (!said[p]) return false;
        return true;
    }

    private void closeQuietly() {
        closing = true;
        closeQuietly(data);
        if (control != null) for (Socket s : control) closeQuietly(s);
        for (CompletableFuture<SocketChannel> f : incoming.values()) if (f.isDone()) closeQuietly(f.getNow(null));
    }

    private void failAll(String msg) {
        if (control == null) return;
        for (Socket s : control) if (s != null) replyError(s, msg);
    }

    /** Sends a peer the error answer (status 1, then the message, at most 8000 characters) and closes its socket. */
    private static void replyError(Socket s, String msg) {
        try (s) {
            DataOutputStream out = new DataOutputStream(s.getOutputStream());
            out.writeByte(FAIL);
            out.writeUTF(msg.length() > 8000 ? msg.substring(0, 8000) : msg);
            out.flush();
        } catch (IOException ignored) {
            // that peer is gone; it will report its own error
        }
    }


    private String missing() {
        List<String> miss = new ArrayList<>();
        int lr = env.localRanks();
        for (int p = 1; p < control.length; p++)
            if (control[p] == null) miss.add(p + " (ranks " + p * lr + (lr > 1 ? "-" + ((p + 1) * lr - 1) : "") + ")");
        return "process" + (miss.size() > 1 ? "es " : " ") + String.join(", ", miss) + " of " + control.length;
    }

    static String hostName() {
        String h = System.getenv("HOSTNAME");
        if (h != null && !h.isBlank()) return h;
        try {
            return InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            return "unknown-host";
        }
    }

    static void closeQuietly(AutoCloseable c) {
        if (c == null) return;
        try {
            c.close();
        } catch (Exception ignored) {
            // closing on a failure path
        }
    }

    private static long millisLeft(long deadlineNanos) { return (deadlineNanos - System.nanoTime()) / 1_000_000L; }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ParallelException("rendezvous interrupted", e);
        }
    }
}
