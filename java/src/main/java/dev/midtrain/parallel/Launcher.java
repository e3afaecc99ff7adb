package dev.midtrain.parallel;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Runs this process's ranks, one thread each (one per GPU, or per CPU rank), and returns their results in rank order.
 * On the CPU backend a single process builds the thread communicators of the whole world ({@link
 * InProcessCommunicator}); several processes first meet in a {@link TcpWorld} (rendezvous + watchdog) and each rank
 * connects its groups over TCP ({@link TcpCommunicator}). NCCL mode exchanges the unique id through the same
 * rendezvous and lets each thread join the NCCL world on its own device and stream.
 *
 * <p>When a rank fails, every group of this process is aborted so the other ranks stop at their next collective
 * instead of waiting out the timeout; the first failure is rethrown (later ones are attached as suppressed).
 */
public final class Launcher {
    private Launcher() {}

    public enum Mode { IN_PROCESS, NCCL }

    /** The work of one rank. */
    @FunctionalInterface
    public interface RankBody<T> {
        T run(RankContext ctx) throws Exception;
    }

    /** What one rank's thread knows about its place; {@link #groups} gives its communicators. */
    public static final class RankContext {
        private final Topology topology;
        private final int localIndex, device;
        private final byte[] ncclId;
        private final Duration timeout;
        private final TcpWorld tcp;
        private final NcclCommunicator.Watchdog watchdog;
        private volatile ProcessGroups groups;

        RankContext(Topology topology, int localIndex, int device, ProcessGroups inProcess, byte[] ncclId, Duration timeout, TcpWorld tcp,
                    NcclCommunicator.Watchdog watchdog) {
            this.tcp = tcp;
            this.watchdog = watchdog;
            this.topology = topology;
            this.localIndex = localIndex;
            this.device = device;
            this.groups = inProcess;
            this.ncclId = ncclId;
            this.timeout = timeout;
        }

        public Topology topology() { return topology; }

        /** Index of this rank among the process's ranks. */
        public int localIndex() { return localIndex; }

        /** The CUDA device this rank uses (firstDevice + localIndex). */
        public int device() { return device; }

        public Duration timeout() { return timeout; }

        /**
         * This rank's communicators. In NCCL mode the first call joins the world on {@code streamAddress} (the
         * rank's cudaStream_t; the thread must have selected its device) and splits the groups: collective, so every
         * rank must call it. In-process mode ignores the stream; several CPU processes connect their TCP groups here.
         */
        public ProcessGroups groups(long streamAddress) {
            if (groups == null && ncclId == null) groups = ProcessGroups.tcp(tcp, topology);
            if (groups == null) {
                NcclCommunicator world = NcclCommunicator.init(ncclId, topology.worldSize(), topology.rank(), streamAddress, watchdog);
                groups = ProcessGroups.nccl(world, topology);
            }
            return groups;
        }

        void abort(String reason) {
            ProcessGroups g = groups;
            if (g != null) g.abort(reason);
        }
    }

    /**
     * Runs {@code body} on each of this process's ranks.
     *
     * @param kvReplicas tensor-parallel ranks sharing a KV head ({@link Topology#kvReplicas})
     * @param timeout    how long any collective or the rendezvous may wait for a missing rank
     */
    public static <T> List<T> run(LaunchEnv env, int tp, int dp, int kvReplicas, Mode mode, Duration timeout, RankBody<T> body) {
        return run(env, tp, dp, 1, kvReplicas, mode, timeout, body);
    }

    /** As above with {@code pp} pipeline stages (ranks in {@link Topology}'s order: tp innermost, then dp, then pp). */
    public static <T> List<T> run(LaunchEnv env, int tp, int dp, int pp, int kvReplicas, Mode mode, Duration timeout, RankBody<T> body) {
        if (env.worldSize() != tp * dp * pp)
            throw new IllegalArgumentException("launch world " + env.worldSize() + " != tp " + tp + " x dp " + dp + " x pp " + pp);
        List<ProcessGroups> inProcess = null;
        byte[] id = null;
        TcpWorld tcp = null;
        if (mode == Mode.NCCL) NcclCommunicator.load();
        if (env.multiProcess()) {
            tcp = TcpWorld.start(env, mode == Mode.NCCL && env.procIndex() == 0 ? NcclCommunicator.newUniqueId() : null, timeout, true);
            if (mode == Mode.NCCL) id = tcp.payload();
            LauncherWatch.attach(tcp);                                   // a lost launcher is reported to every process
        } else if (mode == Mode.IN_PROCESS) {
            inProcess = ProcessGroups.inProcess(tp, dp, pp, kvReplicas, timeout);
        } else {
            id = NcclCommunicator.newUniqueId();
        }
        // NCCL: one watchdog per process; its failures go through the TCP world (every process told, halts after)
        NcclCommunicator.Watchdog watchdog = mode == Mode.NCCL ? new NcclCommunicator.Watchdog(timeout, tcp == null ? null : tcp::report) : null;
        try {
            return runRanks(env, tp, dp, pp, kvReplicas, timeout, body, inProcess, id, tcp, watchdog);
        } finally {
            if (watchdog != null) watchdog.close();
            if (tcp != null) { LauncherWatch.attach(null); tcp.close(); }       // a clean exit says goodbye; after a failure it just closes
        }
    }

    private static <T> List<T> runRanks(LaunchEnv env, int tp, int dp, int pp, int kvReplicas, Duration timeout, RankBody<T> body,
                                        List<ProcessGroups> inProcess, byte[] id, TcpWorld tcp, NcclCommunicator.Watchdog watchdog) {
        int n = env.localRanks();
        List<RankContext> ctxs = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            int rank = env.firstRank() + i;
            ctxs.add(new RankContext(new Topology(tp, dp, pp, rank, kvReplicas), i, env.firstDevice() + i,
                    inProcess == null ? null : inProcess.get(rank), id, timeout, tcp, watchdog));
        }
        if (tcp != null) tcp.onAbort(() -> { for (RankContext c : ctxs) c.abort(tcp.abortReason()); });   // NCCL: ncclCommAbort
        List<T> results = new ArrayList<>(Collections.nCopies(n, null));
        List<Throwable> failures = Collections.synchronizedList(new ArrayList<>());
        List<Thread> threads = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            int li = i;
            RankContext ctx = ctxs.get(i);
            Thread t = new Thread(null, () -> {
                try {
                    results.set(li, body.run(ctx));
                } catch (Throwable e) {
                    failures.add(e);
                    String reason = e.getClass().getSimpleName() + ": " + e.getMessage();
                    for (RankContext c : ctxs) c.abort("rank " + ctx.topology().rank() + " failed: " + reason);
                    if (tcp != null && tcp.abortReason() == null)          // tell the other processes at once
                        tcp.report("rank " + ctx.topology().rank() + " (host " + TcpWorld.hostName() + ") failed: "
                                + (e instanceof ParallelException ? e.getMessage() : reason));
                }
            }, "rank-" + ctx.topology().rank(), 8L << 20);
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                for (RankContext c : ctxs) c.abort("launcher interrupted");
                throw new ParallelException("interrupted while waiting for the ranks", e);
            }
        }
        if (!failures.isEmpty()) {
            Throwable first = failures.get(0);
            for (Throwable f : failures.subList(1, failures.size())) if (f != first) first.addSuppressed(f);
            if (first instanceof RuntimeException re) throw re;
            if (first instanceof Error err) throw err;
            throw new ParallelException("rank failed: " + first, first);
        }
        return results;
    }
}
