package dev.midtrain.parallel;

import dev.midtrain.parallel.Communicator.Dtype;
import org.bytedeco.javacpp.FloatPointer;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.IntFunction;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The in-process communicator against references computed here: sums in rank order in float, so equality is
 * bitwise (the contract is a deterministic rank-order reduction, not merely a close one). Outputs are poisoned with
 * NaN first; sizes include counts smaller than the group and odd counts.
 */
class InProcessCommunicatorTest {
    private static final Duration TIMEOUT = Duration.ofSeconds(20);

    /** Runs body(rank) on one thread per rank and returns the results by rank (rethrowing the first failure). */
    static <T> List<T> onRanks(int n, IntFunction<T> body) throws Exception {
        ExecutorService ex = Executors.newFixedThreadPool(n);
        try {
            List<Future<T>> fs = new ArrayList<>();
            for (int r = 0; r < n; r++) { int rr = r; fs.add(ex.submit(() -> body.apply(rr))); }
            List<T> out = new ArrayList<>();
            for (Future<T> f : fs) out.add(f.get());
            return out;
        } finally {
            ex.shutdownNow();
        }
    }

    static float[] random(long seed, int n) {
        Random r = new Random(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) r.nextGaussian() * (1 + r.nextInt(1000));
        return x;
    }

    static FloatPointer buf(float[] x) { return new FloatPointer(x); }

    static FloatPointer poisoned(int n) {
        float[] nan = new float[n];
        Arrays.fill(nan, Float.NaN);
        return new FloatPointer(nan);
    }

    static float[] get(FloatPointer p, int n) {
        float[] out = new float[n];
        p.get(out);
        return out;
    }

    @Test
    void allReduceSumIsTheRankOrderFloatSum() throws Exception {
        for (int size : new int[]{1, 2, 3, 4}) {
            for (int n : new int[]{1, 2, 7, 1000, 4099}) {
                List<InProcessCommunicator> g = InProcessCommunicator.group(size, TIMEOUT);
                float[] expect = new float[n];
                for (int r = 0; r < size; r++) {
                    float[] x = random(100 * r + n, n);
                    for (int i = 0; i < n; i++) expect[i] = r == 0 ? x[i] : expect[i] + x[i];
                }
                List<float[]> got = onRanks(size, r -> {
                    FloatPointer p = buf(random(100 * r + n, n));
                    g.get(r).allReduceSum(p.address(), n, Dtype.F32);
                    return get(p, n);
                });
                for (int r = 0; r < size; r++) assertArrayEquals(expect, got.get(r), 0f, "size " + size + " n " + n + " rank " + r);
            }
        }
    }

    @Test
    void allReduceMaxPropagatesNaN() throws Exception {
        int size = 3, n = 1001;
        List<InProcessCommunicator> g = InProcessCommunicator.group(size, TIMEOUT);
        List<float[]> got = onRanks(size, r -> {
            float[] x = random(7 + r, n);
            if (r == 2) x[500] = Float.NaN;
            FloatPointer p = buf(x);
            g.get(r).allReduceMax(p.address(), n, Dtype.F32);
            return get(p, n);
        });
        for (int i = 0; i < n; i++) {
            if (i == 500) { for (float[] o : got) assertTrue(Float.isNaN(o[i])); continue; }
            float m = Math.max(Math.max(random(7, n)[i], random(8, n)[i]), random(9, n)[i]);
            for (float[] o : got) assertEquals(m, o[i], 0f);
        }
    }

    @Test
    void reduceScatterInPlaceAndOutOfPlace() throws Exception {
        for (int size : new int[]{1, 2, 4}) {
            for (boolean inPlace : new boolean[]{false, true}) {
                int count = 333, n = count * size;
                List<InProcessCommunicator> g = InProcessCommunicator.group(size, TIMEOUT);
                float[] total = new float[n];
                for (int r = 0; r < size; r++) {
                    float[] x = random(31 * r, n);
                    for (int i = 0; i < n; i++) total[i] = r == 0 ? x[i] : total[i] + x[i];
                }
                List<float[]> got = onRanks(size, r -> {
                    FloatPointer send = buf(random(31 * r, n));
                    if (inPlace) {
                        long recv = send.address() + 4L * count * r;
                        g.get(r).reduceScatterSum(recv, send.address(), count, Dtype.F32);
                        return Arrays.copyOfRange(get(send, n), count * r, count * (r + 1));
                    }
                    FloatPointer recv = poisoned(count);
                    g.get(r).reduceScatterSum(recv.address(), send.address(), count, Dtype.F32);
                    java.lang.ref.Reference.reachabilityFence(send);   // only its address crossed: keep GC from freeing it mid-call
                    return get(recv, count);
                });
                for (int r = 0; r < size; r++)
                    assertArrayEquals(Arrays.copyOfRange(total, count * r, count * (r + 1)), got.get(r), 0f, "size " + size + " rank " + r);
            }
        }
    }

    @Test
    void allGatherInPlaceAndOutOfPlace() throws Exception {
        for (int size : new int[]{1, 3, 4}) {
            for (boolean inPlace : new boolean[]{false, true}) {
                int count = 17, n = count * size;
                List<InProcessCommunicator> g = InProcessCommunicator.group(size, TIMEOUT);
                float[] expect = new float[n];
                for (int r = 0; r < size; r++) System.arraycopy(random(5 + r, count), 0, expect, r * count, count);
                List<float[]> got = onRanks(size, r -> {
                    FloatPointer recv = poisoned(n);
                    if (inPlace) {
                        recv.position(count * r).put(random(5 + r, count)).position(0);
                        g.get(r).allGather(recv.address(), recv.address() + 4L * count * r, count, Dtype.F32);
                    } else {
                        FloatPointer send = buf(random(5 + r, count));
                        g.get(r).allGather(recv.address(), send.address(), count, Dtype.F32);
                        java.lang.ref.Reference.reachabilityFence(send);   // only its address crossed: keep GC from freeing it mid-call
                    }
                    return get(recv, n);
                });
                for (float[] o : got) assertArrayEquals(expect, o, 0f);
            }
        }
    }

    @Test
    void broadcastFromEveryRoot() throws Exception {
        int size = 3, n = 50;
        List<InProcessCommunicator> g = InProcessCommunicator.group(size, TIMEOUT);
        for (int root = 0; root < size; root++) {
            int rt = root;
            List<float[]> got = onRanks(size, r -> {
                FloatPointer p = r == rt ? buf(random(77, n)) : poisoned(n);
                g.get(r).broadcast(p.address(), n, Dtype.F32, rt);
                return get(p, n);
            });
            for (float[] o : got) assertArrayEquals(random(77, n), o, 0f);
        }
    }

    @Test
    void manyCollectivesInSequenceStayConsistent() throws Exception {
        // Back-to-back collectives of different sizes reuse (and regrow) the shared scratch.
        int size = 4;
        List<InProcessCommunicator> g = InProcessCommunicator.group(size, TIMEOUT);
        List<float[]> got = onRanks(size, r -> {
            float acc = 0;
            for (int it = 0; it < 200; it++) {
                int n = 1 + (it * 37) % 300;
                FloatPointer p = buf(random(it * 10 + r, n));
                g.get(r).allReduceSum(p.address(), n, Dtype.F32);
                acc += get(p, n)[n - 1];
            }
            return new float[]{acc};
        });
        for (float[] o : got) assertEquals(got.get(0)[0], o[0], 0f);
    }

    @Test
    void rejectsBf16AndMismatchedCollectives() throws Exception {
        List<InProcessCommunicator> g = InProcessCommunicator.group(2, TIMEOUT);
        assertThrows(IllegalArgumentException.class, () -> g.get(0).allReduceSum(0, 1, Dtype.BF16));
        List<String> errs = onRanks(2, r -> {
            FloatPointer p = buf(new float[8]);
            try {
                if (r == 0) g.get(r).allReduceSum(p.address(), 8, Dtype.F32);
                else g.get(r).allGather(p.address(), p.address(), 4, Dtype.F32);
                return "no error";
            } catch (ParallelException e) {
                return e.getMessage();
            }
        });
        for (String e : errs) assertTrue(e.contains("collective mismatch"), e);
    }

    @Test
    void timeoutNamesTheMissingRank() throws Exception {
        List<InProcessCommunicator> g = InProcessCommunicator.group(3, Duration.ofMillis(300));
        List<String> errs = onRanks(2, r -> {      // rank 2 never calls
            FloatPointer p = buf(new float[4]);
            try {
                g.get(r).allReduceSum(p.address(), 4, Dtype.F32);
                return "no error";
            } catch (ParallelException e) {
                return e.getMessage();
            }
        });
        for (String e : errs) assertTrue(e.contains("ranks [2] of 3 did not arrive"), e);
    }

    @Test
    void aTimeoutNamesTheRankAtTheRootOfAChainOfWaitsNotTheRanksWaitingForIt() throws Exception {
        // tp 2 x dp 2: rank 3 never enters a collective; rank 2 waits for it in tp.1; rank 0 waits for rank 2 in dp.0,
        // rank 1 for rank 3 in dp.1. Rank 0 times out first, on rank 2, which is itself waiting: rank 3 is named.
        List<ProcessGroups> g = ProcessGroups.inProcess(2, 2, 1, Duration.ofMillis(600));
        List<String> errs = onRanks(4, r -> {
            FloatPointer p = buf(new float[4]);
            try {
                if (r == 3) { Thread.sleep(2000); return "idle"; }
                if (r == 2) { Thread.sleep(150); g.get(2).tp().allReduceSum(p.address(), 4, Dtype.F32); }
                else g.get(r).dp().allReduceSum(p.address(), 4, Dtype.F32);
                return "no error";
            } catch (ParallelException e) {
                return e.getMessage();
            } catch (InterruptedException e) {
                throw new RuntimeException(e);
            }
        });
        assertTrue(errs.get(0).contains("global ranks [3] did not arrive at their next collective")
                && errs.get(0).contains("global rank 0 waited in dp.0 allReduceSum for ranks [2]"), errs.get(0));
        assertTrue(errs.get(1).contains("global ranks [3] did not arrive at dp.1 allReduceSum"), errs.get(1));
        assertTrue(errs.get(2).contains("global ranks [3] did not arrive at tp.1 allReduceSum"), errs.get(2));
        assertEquals("idle", errs.get(3));
    }

    @Test
    void abortReleasesWaitingRanks() throws Exception {
        List<InProcessCommunicator> g = InProcessCommunicator.group(2, Duration.ofSeconds(60));
        long t0 = System.nanoTime();
        List<String> errs = onRanks(2, r -> {
            if (r == 1) {
                try { Thread.sleep(100); } catch (InterruptedException e) { throw new RuntimeException(e); }
                g.get(1).abort("out of memory");
                return "aborted";
            }
            FloatPointer p = buf(new float[4]);
            try {
                g.get(0).allReduceSum(p.address(), 4, Dtype.F32);
                return "no error";
            } catch (ParallelException e) {
                return e.getMessage();
            }
        });
        assertTrue(errs.get(0).contains("rank 1 aborted: out of memory"), errs.get(0));
        assertTrue(System.nanoTime() - t0 < 10_000_000_000L, "abort must not wait out the timeout");
    }

    @Test
    void processGroupsPartitionTheWorld() throws Exception {
        // tp 4 x dp 2 with KV heads replicated over 2 ranks: check each group's members by all-gathering global ranks.
        int tp = 4, dp = 2;
        List<ProcessGroups> pgs = ProcessGroups.inProcess(tp, dp, 2, TIMEOUT);
        List<float[][]> got = onRanks(tp * dp, r -> {
            ProcessGroups pg = pgs.get(r);
            float[][] res = new float[3][];
            Communicator[] cs = {pg.tp(), pg.dp(), pg.kv()};
            for (int i = 0; i < 3; i++) {
                FloatPointer recv = poisoned(cs[i].size());
                FloatPointer send = buf(new float[]{r});
                cs[i].allGather(recv.address(), send.address(), 1, Dtype.F32);
                java.lang.ref.Reference.reachabilityFence(send);
                res[i] = get(recv, cs[i].size());
            }
            return res;
        });
        for (int r = 0; r < tp * dp; r++) {
            int d = r / tp, t = r % tp;
            assertArrayEquals(new float[]{d * tp, d * tp + 1, d * tp + 2, d * tp + 3}, got.get(r)[0], 0f, "tp group of " + r);
            assertArrayEquals(new float[]{t, t + tp}, got.get(r)[1], 0f, "dp group of " + r);
            int k0 = r - r % 2;
            assertArrayEquals(new float[]{k0, k0 + 1}, got.get(r)[2], 0f, "kv group of " + r);
        }
    }
}
