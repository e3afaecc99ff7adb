package dev.midtrain.parallel;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The {@link TcpWorld} rendezvous between separate JVM processes on the loopback interface: process 0's payload (the
 * NCCL unique id in NCCL mode; here random bytes) reaches every process, and every failure is one line everywhere.
 */
class RendezvousTest {

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) { return s.getLocalPort(); }
    }

    static Process start(int proc, int n, int local, int port, long timeoutMs) throws IOException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        return new ProcessBuilder(java, "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path"),
                RendezvousProbe.class.getName(), "" + proc, "" + n, "" + local, "" + port, "" + timeoutMs)
                .redirectErrorStream(true).start();
    }

    static LaunchEnv env(int nprocs, int proc, int localRanks, int port) {
        return new LaunchEnv(LaunchEnv.Source.FLAGS, nprocs, proc, localRanks, 0, "127.0.0.1", port);
    }

    record Result(int exit, String out) {}

    static Result finish(Process p) throws Exception {
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "probe process hung");
        return new Result(p.exitValue(), new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim());
    }

    @Test
    void threeProcessesGetTheSameId() throws Exception {
        int port = freePort();
        List<Process> ps = new ArrayList<>();
        // the joiners start first: they must retry until process 0 listens
        ps.add(start(2, 3, 4, port, 30_000));
        ps.add(start(1, 3, 4, port, 30_000));
        Thread.sleep(300);
        ps.add(start(0, 3, 4, port, 30_000));
        List<Result> rs = new ArrayList<>();
        for (Process p : ps) rs.add(finish(p));
        for (Result r : rs) {
            assertEquals(0, r.exit(), r.out());
            assertTrue(r.out().matches("ID [0-9a-f]{256}"), r.out());
            assertEquals(rs.get(0).out(), r.out());
        }
    }

    @Test
    void missingProcessIsNamedByEveryone() throws Exception {
        int port = freePort();
        Process p0 = start(0, 4, 2, port, 2_000), p1 = start(1, 4, 2, port, 2_000), p3 = start(3, 4, 2, port, 2_000);
        Result r0 = finish(p0), r1 = finish(p1), r3 = finish(p3);       // process 2 never starts
        assertEquals(1, r0.exit(), r0.out());
        assertTrue(r0.out().contains("process 2 (ranks 4-5) of 4 did not arrive"), r0.out());
        for (Result r : List.of(r1, r3)) {
            assertEquals(1, r.exit(), r.out());
            assertTrue(r.out().contains("process 0 reports:") && r.out().contains("process 2 (ranks 4-5) of 4 did not arrive"), r.out());
        }
    }

    @Test
    void joinerWithoutMasterTimesOut() {
        int port;
        try { port = freePort(); } catch (IOException e) { throw new RuntimeException(e); }
        long t0 = System.nanoTime();
        ParallelException e = assertThrows(ParallelException.class,
                () -> TcpWorld.start(env(2, 1, 1, port), null, Duration.ofMillis(600), false));
        assertTrue(e.getMessage().contains("did not accept a connection within 0.6 s"), e.getMessage());
        assertTrue(System.nanoTime() - t0 < 5_000_000_000L);
    }

    @Test
    void mismatchedWorldIsRejected() throws Exception {
        int port = freePort();
        ParallelException[] serverErr = new ParallelException[1];
        Thread server = new Thread(() -> {
            try {
                TcpWorld.start(env(2, 0, 8, port), new byte[128], Duration.ofSeconds(10), false).close();
            } catch (ParallelException e) {
                serverErr[0] = e;
            }
        });
        server.start();
        ParallelException e = assertThrows(ParallelException.class,
                () -> TcpWorld.start(env(2, 1, 4, port), null, Duration.ofSeconds(10), false));   // 4 local ranks vs 8
        server.join(10_000);
        assertTrue(e.getMessage().contains("expects 2 processes and 8 ranks, process 0 expects 2 and 16"), e.getMessage());
        assertNotNull(serverErr[0]);
        assertEquals(serverErr[0].getMessage(), e.getMessage().replace("process 0 reports: ", ""));
    }

    @Test
    void singleProcessNeedsNoNetwork() {
        LaunchEnv env = new LaunchEnv(LaunchEnv.Source.SINGLE, 1, 0, 8, 0, null, 1);
        assertFalse(env.multiProcess());            // Launcher makes a single process's id itself
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TcpWorld.start(env, new byte[128], Duration.ofMillis(1), false));
        assertTrue(e.getMessage().contains("single process"), e.getMessage());
    }
}
