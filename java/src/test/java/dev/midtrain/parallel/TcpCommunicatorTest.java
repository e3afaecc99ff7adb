package dev.midtrain.parallel;

import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.parallel.Communicator.Dtype;
import org.bytedeco.javacpp.FloatPointer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.net.ServerSocket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;

import static dev.midtrain.parallel.InProcessCommunicatorTest.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The TCP communicator against the in-process one: same inputs, bitwise the same outputs (the contract: the same
 * chunks, summed in rank order with the same add kernel), for every collective, group sizes 1-4, counts smaller than
 * the group, odd counts, NaN-poisoned outputs. Each "process" is a {@link TcpWorld} of its own in this JVM (own
 * ports and connections, loopback). Then the watchdog: a peer that dies mid-collective, and one that never answers.
 */
class TcpCommunicatorTest {
    private static final Duration TIMEOUT = Duration.ofSeconds(20);

    @BeforeAll
    static void loadNative() {
        new CpuBackend().close();                     // loads the native library (add, copy kernels)
    }

    static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0)) { return s.getLocalPort(); }
    }

    /** n worlds of one rank each, started concurrently, then one group over all of them. */
    static List<TcpCommunicator> group(int n, Duration timeout, List<TcpWorld> worlds) throws Exception {
        int port = freePort();
        List<TcpWorld> ws = onRanks(n, p -> TcpWorld.start(new LaunchEnv(LaunchEnv.Source.FLAGS, n, p, 1, 0, "127.0.0.1", port), null, timeout, false));
        worlds.addAll(ws);
        int[] members = new int[n];
        for (int r = 0; r < n; r++) members[r] = r;
        return onRanks(n, r -> TcpCommunicator.connect(ws.get(r), "g", members, r));
    }

    static void closeAll(List<TcpCommunicator> cs, List<TcpWorld> ws) {
        for (TcpCommunicator c : cs) c.close();
        for (TcpWorld w : ws) TcpWorld.closeQuietly(w::closeForTest);
    }

    @Test
    void everyCollectiveEqualsTheInProcessCommunicatorBitForBit() throws Exception {
        for (int size : new int[]{1, 2, 3, 4}) {
            if (size == 1) continue;                  // a world needs two processes; size 1 is a copy (InProcessCommunicatorTest)
            List<TcpWorld> ws = new ArrayList<>();
            List<TcpCommunicator> tcp = group(size, TIMEOUT, ws);
            List<InProcessCommunicator> ip = InProcessCommunicator.group(size, TIMEOUT);
            try {
                for (int n : new int[]{1, 3, 7, 1000, 4099, 70_001}) {
                    int nn = n;
                    for (String op : new String[]{"sum", "max", "rs", "ag", "bc"}) {
                        List<float[]> a = onRanks(size, r -> apply(op, tcp.get(r), r, nn));
                        List<float[]> b = onRanks(size, r -> apply(op, ip.get(r), r, nn));
                        for (int r = 0; r < size; r++)
                            assertArrayEquals(b.get(r), a.get(r), 0f, op + " size " + size + " n " + n + " rank " + r);
                        if (op.equals("sum")) assertFalse(Float.isNaN(a.get(0)[0]), "output written");
                    }
                }
            } finally {
                for (InProcessCommunicator c : ip) c.close();
                closeAll(tcp, ws);
            }
        }
    }

    /** One collective on rank r's fresh random input (seeded by rank and n); the output, NaN-poisoned before. */
    static float[] apply(String op, Communicator c, int r, int n) {
        int size = c.size();
        switch (op) {
            case "sum", "max" -> {
                float[] x = random(31L * r + n, n);
                if (op.equals("max") && n > 5 && r == 1) x[5] = Float.NaN;      // NaN propagates
                FloatPointer p = buf(x);
                if (op.equals("sum")) c.allReduceSum(p.address(), n, Dtype.F32);
                else c.allReduceMax(p.address(), n, Dtype.F32);
                return get(p, n);
            }
            case "rs" -> {
                FloatPointer send = buf(random(77L * r + n, n * size)), recv = poisoned(n);
                c.reduceScatterSum(recv.address(), send.address(), n, Dtype.F32);
                java.lang.ref.Reference.reachabilityFence(send);   // only its address crossed: keep GC from freeing it mid-call
                return get(recv, n);
            }
            case "ag" -> {
                FloatPointer send = buf(random(55L * r + n, n)), recv = poisoned(n * size);
                c.allGather(recv.address(), send.address(), n, Dtype.F32);
                java.lang.ref.Reference.reachabilityFence(send);   // only its address crossed: keep GC from freeing it mid-call
                return get(recv, n * size);
            }
            default -> {
                FloatPointer p = r == size - 1 ? buf(random(99L + n, n)) : poisoned(n);
                c.broadcast(p.address(), n, Dtype.F32, size - 1);
                return get(p, n);
            }
        }
    }

    @Test
    void aDeadPeerIsNamedByEverySurvivor() throws Exception {
        List<TcpWorld> ws = new ArrayList<>();
        List<TcpCommunicator> tcp = group(3, TIMEOUT, ws);
        try {
            long t0 = System.nanoTime();
            List<String> errors = onRanks(3, r -> {
                if (r == 2) {                         // "killed": connections closed without a goodbye
                    tcp.get(2).close();
                    ws.get(2).closeForTest();
                    return null;
                }
                FloatPointer p = buf(random(r, 1000));
                try {
                    for (int i = 0; i < 100; i++) tcp.get(r).allReduceSum(p.address(), 1000, Dtype.F32);
                    return "no failure";
                } catch (ParallelException e) {
                    return e.getMessage();
                }
            });
            for (int r = 0; r < 2; r++) {
                assertTrue(errors.get(r).contains("lost rank 2 (process 2, host "), errors.get(r));
                assertFalse(errors.get(r).contains("\n"), "one line");
            }
            assertTrue((System.nanoTime() - t0) / 1e9 < 10, "detected at once, not after the timeout");
        } finally {
            closeAll(tcp, ws);
        }
    }

    @Test
    void aSilentPeerTimesOutNamingItAndTheCollective() throws Exception {
        List<TcpWorld> ws = new ArrayList<>();
        List<TcpCommunicator> tcp = group(2, Duration.ofMillis(1500), ws);
        try {
            long t0 = System.nanoTime();
            FloatPointer p = buf(random(1, 10));
            ParallelException e = assertThrows(ParallelException.class, () -> tcp.get(0).allReduceSum(p.address(), 10, Dtype.F32));
            double s = (System.nanoTime() - t0) / 1e9;
            assertTrue(s >= 1.4 && s < 6, "within the timeout: " + s);
            assertTrue(e.getMessage().contains("rank 1 (process 1, host "), e.getMessage());
            assertTrue(e.getMessage().contains("allReduceSum #1"), e.getMessage());
            // the silent process was told too (process 0 forwards the first report)
            for (int i = 0; i < 40 && ws.get(1).abortReason() == null; i++) Thread.sleep(50);
            assertEquals(e.getMessage(), ws.get(1).abortReason());
        } finally {
            closeAll(tcp, ws);
        }
    }

    @Test
    void aTimeoutNamesTheRankAtTheRootOfAChainOfWaitsNotTheRanksWaitingForIt() throws Exception {
        // four processes, tp 2 x dp 2 (tp.0 = {0,1}, tp.1 = {2,3}, dp.0 = {0,2}, dp.1 = {1,3}): rank 3 stops calling
        // collectives; rank 2 waits for it in tp.1, rank 0 waits for rank 2 in dp.0, rank 1 for rank 3 in dp.1. Rank 0
        // times out first (the others start 0.3 s later), on rank 2, which is itself waiting: every process must name
        // rank 3, and only rank 3.
        int port = freePort();
        List<TcpWorld> ws = onRanks(4, p -> TcpWorld.start(new LaunchEnv(LaunchEnv.Source.FLAGS, 4, p, 1, 0, "127.0.0.1", port), null, Duration.ofMillis(1000), false));
        List<TcpCommunicator> tp = onRanks(4, r -> TcpCommunicator.connect(ws.get(r), "tp." + r / 2, new int[]{r / 2 * 2, r / 2 * 2 + 1}, r % 2));
        List<TcpCommunicator> dp = onRanks(4, r -> TcpCommunicator.connect(ws.get(r), "dp." + r % 2, new int[]{r % 2, r % 2 + 2}, r / 2));
        try {
            List<String> errs = onRanks(4, r -> {
                FloatPointer p = buf(new float[4]);
                try {
                    if (r == 3) { Thread.sleep(3500); return "idle"; }
                    if (r > 0) Thread.sleep(300);              // rank 0 times out first, waiting for rank 2
                    if (r == 2) tp.get(2).allReduceSum(p.address(), 4, Dtype.F32);
                    else dp.get(r).allReduceSum(p.address(), 4, Dtype.F32);
                    return "no error";
                } catch (ParallelException e) {
                    return e.getMessage();
                } catch (InterruptedException e) {
                    throw new RuntimeException(e);
                }
            });
            for (int r = 0; r < 3; r++) {
                String e = errs.get(r);
                assertTrue(e.startsWith("collective timed out after 1.0 s (--dist-timeout): rank 3 (process 3, host "), e);
                assertTrue(e.contains("did not arrive at its next collective: rank 1 (process 1, host ") && e.contains("waits for it in allReduceSum #1 (4 elements) of group dp.1"), e);
                assertTrue(e.contains("rank 2 (process 2, host ") && e.contains("waits for it in allReduceSum #1 (4 elements) of group tp.1"), e);
                assertFalse(e.contains("rank 2 (process 2, host " + TcpWorld.hostName() + ") did not"), "rank 2 was waiting, not missing: " + e);
                assertFalse(e.contains("\n"), "one line");
            }
            assertEquals("idle", errs.get(3));
            assertTrue(errs.get(0).startsWith(ws.get(3).abortReason()), "the idle process was told the same line: " + ws.get(3).abortReason());
        } finally {
            for (TcpCommunicator c : dp) c.close();
            closeAll(tp, ws);
        }
    }

    static <T> List<T> onRanks(int n, java.util.function.IntFunction<T> body) throws Exception {
        try {
            return InProcessCommunicatorTest.onRanks(n, body);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof Exception ex) throw ex;
            throw e;
        }
    }
}
