package dev.midtrain.parallel;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.NoRouteToHostException;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;

/**
 * Hands the NCCL unique id (128 bytes) from process 0 to every other process over TCP, and doubles as a start
 * barrier: process 0 answers nobody until all processes have checked in, so when {@link #exchange} returns every
 * process is up. Every wait has a deadline; on a timeout process 0 fails with the processes (and their ranks) that
 * never arrived and tells the ones that did, so every process exits with the same one-line reason.
 *
 * <p>Wire format (big-endian): hello = magic "MTRZ", version, procIndex, nprocs, worldSize (5 ints);
 * reply = status byte 0 + 128 id bytes, or status byte 1 + a UTF error message.
 */
public final class Rendezvous {
    public static final int ID_BYTES = 128;
    private static final int MAGIC = 0x4D54525A, VERSION = 1;
    private static final long RETRY_MS = 200;

    private Rendezvous() {}

    /**
     * Returns the world's unique id in every process: process 0 makes it with {@code makeId} and serves it on
     * {@code env.storePort()}, the others fetch it from {@code env.masterAddr()}. A single process just makes it.
     */
    public static byte[] exchange(LaunchEnv env, Supplier<byte[]> makeId, Duration timeout) {
        if (!env.multiProcess()) return checkId(makeId.get());
        if (env.procIndex() == 0) {
            byte[] id = checkId(makeId.get());
            serve(env.storePort(), env.nprocs(), env.localRanks(), id, timeout);
            return id;
        }
        return join(env.masterAddr(), env.storePort(), env.procIndex(), env.nprocs(), env.localRanks(), timeout);
    }

    /** Process 0: waits for processes 1..nprocs-1 (at most {@code timeout}), then sends each the id. */
    public static void serve(int port, int nprocs, int localRanks, byte[] id, Duration timeout) {
        checkId(id);
        long deadline = System.nanoTime() + timeout.toNanos();
        Socket[] peers = new Socket[nprocs];
        try (ServerSocket server = new ServerSocket()) {
            server.setReuseAddress(true);
            try {
                server.bind(new InetSocketAddress(port));
            } catch (IOException e) {
                throw new ParallelException("rendezvous: cannot listen on port " + port + ": " + e.getMessage(), e);
            }
            int arrived = 1;
            while (arrived < nprocs) {
                long leftMs = millisLeft(deadline);
                if (leftMs <= 0) {
                    String msg = "rendezvous on port " + port + " timed out after " + seconds(timeout) + ": "
                            + missing(peers, localRanks) + " did not arrive";
                    failAll(peers, msg);
                    throw new ParallelException(msg);
                }
                server.setSoTimeout((int) Math.min(leftMs, Integer.MAX_VALUE));
                Socket s;
                try {
                    s = server.accept();
                } catch (SocketTimeoutException e) {
                    continue;   // the deadline check above reports who is missing
                }
                int proc;
                try {
                    s.setSoTimeout((int) Math.max(1, Math.min(millisLeft(deadline), 10_000)));
                    DataInputStream in = new DataInputStream(s.getInputStream());
                    int magic = in.readInt(), version = in.readInt();
                    if (magic != MAGIC || version != VERSION) { s.close(); continue; }   // not one of ours: ignore it
                    proc = in.readInt();
                    int theirN = in.readInt(), theirWorld = in.readInt();
                    String bad = null;
                    if (theirN != nprocs || theirWorld != nprocs * localRanks)
                        bad = "process " + proc + " expects " + theirN + " processes and " + theirWorld + " ranks, process 0 expects "
                                + nprocs + " and " + nprocs * localRanks + " (same config and launch on every node?)";
                    else if (proc < 1 || proc >= nprocs) bad = "a process announced index " + proc + ", outside [1, " + nprocs + ")";
                    else if (peers[proc] != null) bad = "two processes announced index " + proc + " (duplicate node rank?)";
                    if (bad != null) {
                        String msg = "rendezvous on port " + port + ": " + bad;
                        replyError(s, msg);
                        failAll(peers, msg);
                        throw new ParallelException(msg);
                    }
                } catch (IOException e) {
                    s.close();      // a peer that broke off mid-hello will reconnect or be reported missing
                    continue;
                }
                peers[proc] = s;
                arrived++;
            }
            for (int p = 1; p < nprocs; p++) {
                try (Socket s = peers[p]) {
                    DataOutputStream out = new DataOutputStream(s.getOutputStream());
                    out.writeByte(0);
                    out.write(id);
                    out.flush();
                } catch (IOException e) {
                    throw new ParallelException("rendezvous: lost process " + p + " while sending the id: " + e.getMessage(), e);
                }
            }
        } catch (IOException e) {
            failAll(peers, "rendezvous server failed: " + e.getMessage());
            throw new ParallelException("rendezvous on port " + port + ": " + e.getMessage(), e);
        }
    }

    /** Process {@code procIndex} > 0: connects to process 0 (retrying until it listens) and receives the id. */
    public static byte[] join(String host, int port, int procIndex, int nprocs, int localRanks, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        String where = host + ":" + port;
        while (true) {
            long leftMs = millisLeft(deadline);
            if (leftMs <= 0)
                throw new ParallelException("rendezvous: process 0 at " + where + " did not accept a connection within " + seconds(timeout));
            try (Socket s = new Socket()) {
                try {
                    s.connect(new InetSocketAddress(host, port), (int) Math.min(leftMs, 5_000));
                } catch (UnknownHostException e) {
                    throw new ParallelException("rendezvous: unknown master host '" + host + "'", e);
                } catch (ConnectException | NoRouteToHostException | SocketTimeoutException e) {
                    sleep(Math.min(RETRY_MS, Math.max(1, millisLeft(deadline))));
                    continue;    // process 0 is not listening yet
                }
                DataOutputStream out = new DataOutputStream(s.getOutputStream());
                out.writeInt(MAGIC);
                out.writeInt(VERSION);
                out.writeInt(procIndex);
                out.writeInt(nprocs);
                out.writeInt(nprocs * localRanks);
                out.flush();
                DataInputStream in = new DataInputStream(s.getInputStream());
                s.setSoTimeout((int) Math.max(1, millisLeft(deadline) + 5_000));   // process 0 reports its own timeout first
                int status;
                try {
                    status = in.readUnsignedByte();
                } catch (SocketTimeoutException e) {
                    throw new ParallelException("rendezvous: no answer from process 0 at " + where + " within " + seconds(timeout)
                            + " (are all " + nprocs + " processes started?)", e);
                } catch (EOFException e) {
                    throw new ParallelException("rendezvous: process 0 at " + where + " closed the connection without an answer", e);
                }
                if (status != 0) throw new ParallelException("process 0 reports: " + in.readUTF());
                byte[] id = new byte[ID_BYTES];
                in.readFully(id);
                return id;
            } catch (IOException e) {
                throw new ParallelException("rendezvous with process 0 at " + where + " failed: " + e.getMessage(), e);
            }
        }
    }

    // -------------------------------------------------------------------------------------------------- helpers

    private static String missing(Socket[] peers, int localRanks) {
        List<String> miss = new ArrayList<>();
        for (int p = 1; p < peers.length; p++)
            if (peers[p] == null) miss.add(p + " (ranks " + p * localRanks + (localRanks > 1 ? "-" + ((p + 1) * localRanks - 1) : "") + ")");
        return "process" + (miss.size() > 1 ? "es " : " ") + String.join(", ", miss) + " of " + peers.length;
    }

    private static void failAll(Socket[] peers, String msg) {
        for (Socket s : peers) if (s != null) replyError(s, msg);
    }

    /** Sends a peer the error reply (byte 1, then the message, at most 8000 characters) and closes its socket. */
    static void replyError(Socket s, String msg) {
        try (s) {
            DataOutputStream out = new DataOutputStream(s.getOutputStream());
            out.writeByte(1);
            out.writeUTF(msg.length() > 8000 ? msg.substring(0, 8000) : msg);
            out.flush();
        } catch (IOException ignored) {
            // that peer is gone; it will report its own error
        }
    }

    private static byte[] checkId(byte[] id) {
        if (id == null || id.length != ID_BYTES) throw new IllegalArgumentException("unique id must be " + ID_BYTES + " bytes");
        return id;
    }

    private static long millisLeft(long deadlineNanos) { return (deadlineNanos - System.nanoTime()) / 1_000_000L; }

    private static String seconds(Duration d) { return d.toMillis() / 1000.0 + " s"; }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ParallelException("rendezvous interrupted", e);
        }
    }
}
