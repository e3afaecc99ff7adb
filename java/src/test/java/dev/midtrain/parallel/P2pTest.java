package dev.midtrain.parallel;

import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.parallel.Communicator.Dtype;
import dev.midtrain.parallel.Communicator.P2p;
import org.bytedeco.javacpp.FloatPointer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

import static dev.midtrain.parallel.InProcessCommunicatorTest.buf;
import static dev.midtrain.parallel.InProcessCommunicatorTest.get;
import static dev.midtrain.parallel.InProcessCommunicatorTest.poisoned;
import static dev.midtrain.parallel.InProcessCommunicatorTest.random;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Point-to-point transfers (pipeline activations and gradients) on the in-process and the TCP communicator: the bytes
 * arrive unchanged (bitwise), in order per pair of ranks (several to one peer in one batch, and across batches), a
 * bidirectional exchange in one batch larger than the sockets' buffers completes, a count mismatch names both ranks,
 * a peer that never posts its side is named within the timeout. Then the pipeline groups in Megatron order.
 */
class P2pTest {
    private static final Duration TIMEOUT = Duration.ofSeconds(20);

    @BeforeAll
    static void loadNative() {
        new CpuBackend().close();
    }

    /** Runs {@code check} on an in-process group and on a TCP group (every "process" its own TcpWorld) of n ranks. */
    private static void onBoth(int n, Duration timeout, Function<List<? extends Communicator>, Void> check) throws Exception {
        List<InProcessCommunicator> ip = InProcessCommunicator.group(n, timeout);
        try {
            check.apply(ip);
        } finally {
            for (InProcessCommunicator c : ip) c.close();
        }
        List<TcpWorld> ws = new ArrayList<>();
        List<TcpCommunicator> tcp = TcpCommunicatorTest.group(n, timeout, ws);
        try {
            check.apply(tcp);
        } finally {
            TcpCommunicatorTest.closeAll(tcp, ws);
        }
    }

    private static <T> List<T> onRanks(int n, java.util.function.IntFunction<T> body) {
        try {
            return TcpCommunicatorTest.onRanks(n, body);
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void aRingInOneBatchDeliversEveryMessageInOrder() throws Exception {
        for (int n : new int[]{2, 3, 4}) {
            onBoth(n, TIMEOUT, cs -> {
                // each rank sends two messages (odd sizes) to its successor and receives two from its predecessor, in one batch,
                // then a second batch of one message each way round the ring the other direction
                int a = 1 + 7 * n, b = 4099;
                List<float[][]> got = onRanks(n, r -> {
                    Communicator c = cs.get(r);
                    int next = (r + 1) % n, prev = (r + n - 1) % n;
                    FloatPointer s1 = buf(random(10L * r + 1, a)), s2 = buf(random(10L * r + 2, b)), r1 = poisoned(a), r2 = poisoned(b);
                    c.p2p(Dtype.F32, P2p.send(s1.address(), a, next), P2p.recv(r1.address(), a, prev),
                            P2p.send(s2.address(), b, next), P2p.recv(r2.address(), b, prev));
                    FloatPointer s3 = buf(random(10L * r + 3, 5)), r3 = poisoned(5);
                    c.p2p(Dtype.F32, P2p.recv(r3.address(), 5, next), P2p.send(s3.address(), 5, prev));
                    java.lang.ref.Reference.reachabilityFence(s1);
                    java.lang.ref.Reference.reachabilityFence(s2);
                    java.lang.ref.Reference.reachabilityFence(s3);
                    return new float[][]{get(r1, a), get(r2, b), get(r3, 5)};
                });
                for (int r = 0; r < n; r++) {
                    int prev = (r + n - 1) % n, next = (r + 1) % n;
                    assertArrayEquals(random(10L * prev + 1, a), got.get(r)[0], 0f, "first message to " + r);
                    assertArrayEquals(random(10L * prev + 2, b), got.get(r)[1], 0f, "second message to " + r);
                    assertArrayEquals(random(10L * next + 3, 5), got.get(r)[2], 0f, "reverse ring to " + r);
                }
                return null;
            });
        }
    }

    @Test
    void separateSendAndReceiveCallsAndAnExchangeLargerThanTheSocketBuffers() throws Exception {
        onBoth(2, TIMEOUT, cs -> {
            int big = 3_000_001;                           // 12 MB each way: far beyond the kernel's socket buffers
            List<float[]> got = onRanks(2, r -> {
                Communicator c = cs.get(r);
                int other = 1 - r;
                FloatPointer small = r == 0 ? buf(random(5, 17)) : poisoned(17);
                if (r == 0) c.send(small.address(), 17, Dtype.F32, 1);
                else c.recv(small.address(), 17, Dtype.F32, 0);
                FloatPointer s = buf(random(100 + r, big)), g = poisoned(big);
                c.p2p(Dtype.F32, P2p.send(s.address(), big, other), P2p.recv(g.address(), big, other));
                java.lang.ref.Reference.reachabilityFence(s);
                float[] out = new float[17 + big];
                System.arraycopy(get(small, 17), 0, out, 0, 17);
                System.arraycopy(get(g, big), 0, out, 17, big);
                return out;
            });
            for (int r = 0; r < 2; r++) {
                assertArrayEquals(random(5, 17), java.util.Arrays.copyOf(got.get(r), 17), 0f, "small message on " + r);
                assertArrayEquals(random(100 + (1 - r), big), java.util.Arrays.copyOfRange(got.get(r), 17, 17 + big), 0f, "exchange on " + r);
            }
            return null;
        });
    }

    @Test
    void aCountMismatchNamesBothRanks() throws Exception {
        onBoth(2, TIMEOUT, cs -> {
            List<String> errs = onRanks(2, r -> {
                FloatPointer p = poisoned(10);
                try {
                    if (r == 0) cs.get(0).send(p.address(), 10, Dtype.F32, 1);
                    else cs.get(1).recv(p.address(), 9, Dtype.F32, 0);
                    return "no error";
                } catch (ParallelException e) {
                    return e.getMessage();
                }
            });
            String e1 = errs.get(1);
            assertTrue(e1.contains("mismatch"), e1);
            assertTrue(e1.contains("rank 0") && e1.contains("rank 1"), e1);
            assertFalse(errs.get(0).equals("no error") && cs.get(0) instanceof InProcessCommunicator, "the in-process sender fails too: " + errs.get(0));
            return null;
        });
    }

    @Test
    void aPeerThatNeverPostsItsSideIsNamedWithinTheTimeout() throws Exception {
        onBoth(2, Duration.ofMillis(1500), cs -> {
            long t0 = System.nanoTime();
            FloatPointer p = poisoned(10);
            ParallelException e = assertThrows(ParallelException.class, () -> cs.get(0).recv(p.address(), 10, Dtype.F32, 1));
            double s = (System.nanoTime() - t0) / 1e9;
            assertTrue(s >= 1.4 && s < 6, "within the timeout: " + s);
            assertTrue(e.getMessage().contains("rank 1"), e.getMessage());
            assertTrue(e.getMessage().contains("p2p"), e.getMessage());
            return null;
        });
    }

    @Test
    void badTransfersAreRefused() {
        List<InProcessCommunicator> ip = InProcessCommunicator.group(2, TIMEOUT);
        assertThrows(IllegalArgumentException.class, () -> ip.get(0).send(0, 1, Dtype.F32, 0));     // to itself
        assertThrows(IllegalArgumentException.class, () -> ip.get(0).send(0, 1, Dtype.F32, 2));     // no such rank
        assertThrows(IllegalArgumentException.class, () -> ip.get(0).send(0, 1, Dtype.BF16, 1));    // CPU: fp32 only
    }

    @Test
    void megatronRankOrderTensorInnermostThenDataThenPipeline() throws Exception {
        int tp = 2, dp = 2, pp = 3, world = tp * dp * pp;
        for (int r = 0; r < world; r++) {
            Topology t = new Topology(tp, dp, pp, r, 1);
            assertEquals(r, t.rankOf(t.tpRank(), t.dpRank(), t.ppRank()));
            assertEquals(r % 2, t.tpRank());
            assertEquals(r / 2 % 2, t.dpRank());
            assertEquals(r / 4, t.ppRank());
        }
        // every group of the world, checked by all-gathering the members' global ranks over it
        List<ProcessGroups> pgs = ProcessGroups.inProcess(tp, dp, pp, 1, TIMEOUT);
        List<float[][]> got = onRanks(world, r -> {
            ProcessGroups pg = pgs.get(r);
            Communicator[] cs = {pg.tp(), pg.dp(), pg.pp(), pg.world()};
            float[][] res = new float[cs.length][];
            for (int i = 0; i < cs.length; i++) {
                FloatPointer recv = poisoned(cs[i].size()), send = buf(new float[]{r});
                cs[i].allGather(recv.address(), send.address(), 1, Dtype.F32);
                java.lang.ref.Reference.reachabilityFence(send);
                res[i] = get(recv, cs[i].size());
            }
            return res;
        });
        for (int r = 0; r < world; r++) {
            int t = r % 2, d = r / 2 % 2, p = r / 4;
            assertArrayEquals(new float[]{p * 4 + d * 2, p * 4 + d * 2 + 1}, got.get(r)[0], 0f, "tp group of " + r);
            assertArrayEquals(new float[]{p * 4 + t, p * 4 + 2 + t}, got.get(r)[1], 0f, "dp group of " + r);
            assertArrayEquals(new float[]{d * 2 + t, 4 + d * 2 + t, 8 + d * 2 + t}, got.get(r)[2], 0f, "pp group of " + r);
            assertArrayEquals(toFloats(new Topology(tp, dp, pp, r, 1).ppGroup()), got.get(r)[2], 0f);
            assertEquals(world, got.get(r)[3].length);
        }
        for (ProcessGroups pg : pgs) pg.close();
    }

    private static float[] toFloats(int[] x) {
        float[] f = new float[x.length];
        for (int i = 0; i < x.length; i++) f[i] = x[i];
        return f;
    }
}
