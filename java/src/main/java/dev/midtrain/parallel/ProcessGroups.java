package dev.midtrain.parallel;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The communicators of one rank: the world, its tensor-parallel group (all-reduce after row-parallel GEMMs, the
 * vocab-parallel head), its data-parallel group (gradient reduce-scatter / all-reduce, weight all-gather) and its KV
 * group (sums the k/v weight gradients of a KV head replicated over several tensor-parallel ranks). A group of one
 * rank is still a communicator (its collectives are copies or no-ops), so callers need no special cases.
 */
public record ProcessGroups(Topology topology, Communicator world, Communicator tp, Communicator dp, Communicator kv)
        implements AutoCloseable {

    /** Groups for every rank of a world of in-process (thread) ranks; element r belongs to global rank r. */
    public static List<ProcessGroups> inProcess(int tp, int dp, int kvReplicas, Duration timeout) {
        int world = tp * dp;
        InProcessCommunicator.Waits waits = new InProcessCommunicator.Waits(world);     // a timeout names the rank at the root
        List<InProcessCommunicator> w = InProcessCommunicator.group("world", IntStream.range(0, world).toArray(), timeout, waits);
        List<List<InProcessCommunicator>> tpGroups = new ArrayList<>(), dpGroups = new ArrayList<>(), kvGroups = new ArrayList<>();
        for (int d = 0; d < dp; d++) {
            int d0 = d;
            tpGroups.add(InProcessCommunicator.group("tp." + d, IntStream.range(0, tp).map(t -> d0 * tp + t).toArray(), timeout, waits));
        }
        for (int t = 0; t < tp; t++) {
            int t0 = t;
            dpGroups.add(InProcessCommunicator.group("dp." + t, IntStream.range(0, dp).map(d -> d * tp + t0).toArray(), timeout, waits));
        }
        for (int k = 0; k < world / kvReplicas; k++) {     // kv group k: ranks k*kvReplicas .. (Topology.kvGroup = rank / kvReplicas)
            int k0 = k;
            kvGroups.add(InProcessCommunicator.group("kv." + k, IntStream.range(0, kvReplicas).map(i -> k0 * kvReplicas + i).toArray(), timeout, waits));
        }
        List<ProcessGroups> out = new ArrayList<>(world);
        for (int r = 0; r < world; r++) {
            Topology topo = new Topology(tp, dp, r, kvReplicas);
            out.add(new ProcessGroups(topo, w.get(r), tpGroups.get(topo.dpRank()).get(topo.tpRank()),
                    dpGroups.get(topo.tpRank()).get(topo.dpRank()), kvGroups.get(topo.kvGroup()).get(topo.kvRank())));
        }
        return List.copyOf(out);
    }

    /**
     * This rank's groups over TCP ({@link TcpCommunicator}): ranks in several processes on the CPU backend. Collective
     * over the world: every rank connects its world, tensor-, data- and KV-group meshes in that order.
     */
    public static ProcessGroups tcp(TcpWorld world, Topology topo) {
        int tp = topo.tp(), dp = topo.dp(), kvr = topo.kvReplicas();
        int[] all = new int[topo.worldSize()], tpm = new int[tp], dpm = new int[dp], kvm = new int[kvr];
        for (int r = 0; r < all.length; r++) all[r] = r;
        for (int t = 0; t < tp; t++) tpm[t] = topo.dpRank() * tp + t;
        for (int d = 0; d < dp; d++) dpm[d] = d * tp + topo.tpRank();
        for (int k = 0; k < kvr; k++) kvm[k] = topo.kvGroup() * kvr + k;
        List<TcpCommunicator> made = new ArrayList<>();
        try {
            made.add(TcpCommunicator.connect(world, "world", all, topo.rank()));
            made.add(TcpCommunicator.connect(world, "tp." + topo.dpRank(), tpm, topo.tpRank()));
            made.add(TcpCommunicator.connect(world, "dp." + topo.tpRank(), dpm, topo.dpRank()));
            made.add(TcpCommunicator.connect(world, "kv." + topo.kvGroup(), kvm, topo.kvRank()));
        } catch (RuntimeException e) {
            for (TcpCommunicator c : made) c.close();
            throw e;
        }
        return new ProcessGroups(topo, made.get(0), made.get(1), made.get(2), made.get(3));
    }

    /** Splits the tensor-, data- and KV groups from an NCCL world communicator (collective over the world). */
    public static ProcessGroups nccl(NcclCommunicator world, Topology topo) {
        if (world.size() != topo.worldSize() || world.rank() != topo.rank())
            throw new IllegalArgumentException("NCCL world rank " + world.rank() + " of " + world.size() + " vs topology " + topo);
        NcclCommunicator tp = world.split(topo.dpRank(), topo.tpRank(), "tp." + topo.dpRank());
        NcclCommunicator dp = world.split(topo.tpRank(), topo.dpRank(), "dp." + topo.tpRank());
        NcclCommunicator kv = world.split(topo.kvGroup(), topo.kvRank(), "kv." + topo.kvGroup());
        return new ProcessGroups(topo, world, tp, dp, kv);
    }

    /** Breaks every group this rank belongs to (in-process: the other ranks' pending collectives fail at once). */
    public void abort(String reason) {
        for (Communicator c : List.of(world, tp, dp, kv)) {
            if (c instanceof InProcessCommunicator ip) ip.abort(reason);
            else if (c instanceof NcclCommunicator n) n.abort();
            // TcpCommunicator: aborted through its TcpWorld (every process is told)
        }
    }

    @Override
    public void close() {
        kv.close();
        dp.close();
        tp.close();
        world.close();
    }
}
