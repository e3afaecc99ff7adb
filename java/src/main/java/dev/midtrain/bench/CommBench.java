package dev.midtrain.bench;

import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.CpuNative;
import dev.midtrain.parallel.Communicator.Dtype;
import dev.midtrain.parallel.LaunchEnv;
import dev.midtrain.parallel.TcpCommunicator;
import dev.midtrain.parallel.TcpWorld;
import org.bytedeco.javacpp.Pointer;

import java.time.Duration;

/**
 * One process of the CPU communicator benchmark (benchmarks/comm.sh starts N of them on loopback):
 * `CommBench nprocs procIndex port`. Process 0 prints, per message size (1 MB .. 256 MB, fp32), the all-reduce time,
 * algorithm bandwidth (bytes / time) and bus bandwidth as nccl-tests define it (algbw x 2(n-1)/n: the bytes each rank
 * must move, comparable with the link speed), the machine's single-thread memcpy bandwidth over the same buffer, and
 * the latency of the per-step stop vote (all-reduce-max of one float over the world), and the point-to-point
 * bandwidth between processes 0 and 1 (one way, ping-pong; both ways at once, one p2p batch each).
 */
public final class CommBench {
    private CommBench() {}

    public static void main(String[] args) {
        int n = Integer.parseInt(args[0]), p = Integer.parseInt(args[1]), port = Integer.parseInt(args[2]);
        Backend.open("cpu", 0).close();                                 // loads the native kernels (add, copy)
        LaunchEnv env = new LaunchEnv(LaunchEnv.Source.FLAGS, n, p, 1, 0, "127.0.0.1", port);
        try (TcpWorld world = TcpWorld.start(env, null, Duration.ofSeconds(120), true)) {
            int[] members = new int[n];
            for (int r = 0; r < n; r++) members[r] = r;
            try (TcpCommunicator c = TcpCommunicator.connect(world, "world", members, p)) {
                long maxBytes = 256L << 20;
                Pointer buf = Pointer.malloc(maxBytes), other = Pointer.malloc(maxBytes);
                Pointer.memset(buf, 0, maxBytes);
                Pointer.memset(other, 1, maxBytes);
                if (p == 0) System.out.printf("%d processes, loopback TCP, fp32 all-reduce (sum)%n%10s %10s %12s %12s %14s%n", n,
                        "bytes", "time ms", "algbw GB/s", "busbw GB/s", "memcpy GB/s");
                for (long bytes = 1L << 20; bytes <= maxBytes; bytes *= 4) {
                    long count = bytes / 4;
                    int iters = bytes <= (16L << 20) ? 10 : 3;
                    c.allReduceSum(buf.address(), count, Dtype.F32);          // warm-up (scratch, TCP windows)
                    c.allReduceSum(buf.address(), 1, Dtype.F32);             // line up
                    long t0 = System.nanoTime();
                    for (int i = 0; i < iters; i++) c.allReduceSum(buf.address(), count, Dtype.F32);
                    double s = (System.nanoTime() - t0) / 1e9 / iters;
                    long m0 = System.nanoTime();
                    for (int i = 0; i < iters; i++) Backend.check(CpuNative.mt_cpu_copy_bytes(other.address(), buf.address(), bytes, 0L), "copy");
                    double ms = (System.nanoTime() - m0) / 1e9 / iters;
                    double alg = bytes / s / 1e9;
                    if (p == 0) System.out.printf("%10d %10.2f %12.3f %12.3f %14.2f%n", bytes, s * 1e3, alg, alg * 2.0 * (n - 1) / n, bytes / ms / 1e9);
                }
                // point-to-point (pipeline activations): ping-pong between processes 0 and 1, then both ways at once
                if (p == 0) System.out.printf("p2p between processes 0 and 1 (pipeline activations)%n%10s %12s %14s %16s%n",
                        "bytes", "one-way ms", "one-way GB/s", "both ways GB/s");
                for (long bytes = 1L << 20; bytes <= (64L << 20); bytes *= 4) {
                    long count = bytes / 4;
                    int iters = bytes <= (16L << 20) ? 10 : 3;
                    double oneWay = 0, both = 0;
                    for (int rep = 0; rep < 2; rep++) {                       // first round: warm-up
                        c.allReduceMax(other.address(), 1, Dtype.F32);        // line up
                        long t0 = System.nanoTime();
                        for (int i = 0; i < iters; i++) {
                            if (p == 0) { c.send(buf.address(), count, Dtype.F32, 1); c.recv(buf.address(), count, Dtype.F32, 1); }
                            else if (p == 1) { c.recv(buf.address(), count, Dtype.F32, 0); c.send(buf.address(), count, Dtype.F32, 0); }
                        }
                        oneWay = (System.nanoTime() - t0) / 1e9 / iters / 2;
                        c.allReduceMax(other.address(), 1, Dtype.F32);
                        t0 = System.nanoTime();
                        for (int i = 0; i < iters; i++)
                            if (p < 2) c.p2p(Dtype.F32, dev.midtrain.parallel.Communicator.P2p.send(buf.address(), count, 1 - p),
                                    dev.midtrain.parallel.Communicator.P2p.recv(other.address(), count, 1 - p));
                        both = (System.nanoTime() - t0) / 1e9 / iters;
                    }
                    if (p == 0) System.out.printf("%10d %12.2f %14.3f %16.3f%n", bytes, oneWay * 1e3, bytes / oneWay / 1e9, 2 * bytes / both / 1e9);
                }
                int votes = 2000;
                for (int i = 0; i < 100; i++) c.allReduceMax(buf.address(), 1, Dtype.F32);
                long t0 = System.nanoTime();
                for (int i = 0; i < votes; i++) c.allReduceMax(buf.address(), 1, Dtype.F32);
                if (p == 0) System.out.printf("stop vote (all-reduce-max of 1 float over %d processes): %.1f us per step%n", n,
                        (System.nanoTime() - t0) / 1e3 / votes);
                Pointer.free(buf);
                Pointer.free(other);
            }
        }
        System.exit(0);
    }
}
