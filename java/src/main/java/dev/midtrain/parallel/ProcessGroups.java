package dev.midtrain.parallel;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The communicators of one rank: the world, its tensor-parallel group (all-reduce after row-parallel GEMMs, the
 * vocab-parallel head), its data-parallel group (gradient reduce-scatter / all-reduce, weight all-gather; the ranks
 * of one pipeline stage), its KV group (sums the k/v weight gradients of a KV head replicated over several
 * tensor-parallel ranks) and its pipeline group (point-to-point activations and their gradients between stages, the
 * tied embedding's gradient between first and last stage) and its embedding group (Megatron's: the first and the last
 * stage of its pipeline, which sum the two copies' gradients of a tied embedding; a group of one on the other stages
 * and without a pipeline). Group membership is {@link Topology}'s (Megatron order:
 * tp innermost, then dp, then pp). A group of one rank is still a communicator (its collectives are copies or no-ops),
 * so callers need no special cases.
 */
public record ProcessGroups(Topology topology, Communicator world, Communicator tp, Communicator dp, Communicator kv,
                            Communicator pp, Communicator emb) implements AutoCloseable {

    /** Groups for every rank of a world of in-process (thread) ranks without a pipeline; element r belongs to global rank r. */
    public static List<ProcessGroups> inProcess(int tp, int dp, int kvReplicas, Duration timeout) {
        return inProcess(tp, dp, 1, kvReplicas, timeout);
    }

    /** Groups for every rank of a world of in-process (thread) ranks; element r belongs to global rank r. */
    public static List<ProcessGroups> inProcess(int tp, int dp, int pp, int kvReplicas, Duration timeout) {
        int world = tp * dp * pp;
        InProcessCommunicator.Waits waits = new InProcessCommunicator.Waits(world);     // a timeout names the rank at the root
        List<InProcessCommunicator> w = InProcessCommunicator.group("world", IntStream.range(0, world).toArray(), timeout, waits);
        java.util.Map<String, List<InProcessCommunicator>> groups = new java.util.HashMap<>();
        java.util.function.BiFunction<String, int[], List<InProcessCommunicator>> group =
                (name, members) -> groups.computeIfAbsent(name, k -> InProcessCommunicator.group(name, members, timeout, waits));
        List<ProcessGroups> out = new ArrayList<>(world);
        for (int r = 0; r < world; r++) {
            Topology t = new Topology(tp, dp, pp, r, kvReplicas);
            int k0 = t.kvGroup();         // kv group k: ranks k*kvReplicas .. (Topology.kvGroup = rank / kvReplicas)
            int[] kv = IntStream.range(0, kvReplicas).map(i -> k0 * kvReplicas + i).toArray();
            out.add(new ProcessGroups(t, w.get(r), group.apply("tp." + t.tpGroupIndex(), t.tpGroup()).get(t.tpRank()),
                    group.apply("dp." + t.dpGroupIndex(), t.dpGroup()).get(t.dpRank()), group.apply("kv." + k0, kv).get(t.kvRank()),
                    group.apply("pp." + t.ppGroupIndex(), t.ppGroup()).get(t.ppRank()),
                    t.inEmbeddingGroup() ? group.apply("emb." + t.ppGroupIndex(), t.embeddingGroup()).get(t.ppRank() == 0 ? 0 : 1)
                            : group.apply("self." + r, new int[]{r}).get(0)));
        }
        return List.copyOf(out);
    }

    /**
     * This rank's groups over TCP ({@link TcpCommunicator}): ranks in several processes on the CPU backend. Collective
     * over the world: every rank connects its world, tensor-, data-, KV- and pipeline-group meshes in that order.
     */
    public static ProcessGroups tcp(TcpWorld world, Topology t) {
        int kvr = t.kvReplicas();
        int[] all = new int[t.worldSize()], kvm = new int[kvr];
        for (int r = 0; r < all.length; r++) all[r] = r;
        for (int k = 0; k < kvr; k++) kvm[k] = t.kvGroup() * kvr + k;
        List<TcpCommunicator> made = new ArrayList<>();
        try {
            made.add(TcpCommunicator.connect(world, "world", all, t.rank()));
            made.add(TcpCommunicator.connect(world, "tp." + t.tpGroupIndex(), t.tpGroup(), t.tpRank()));
            made.add(TcpCommunicator.connect(world, "dp." + t.dpGroupIndex(), t.dpGroup(), t.dpRank()));
            made.add(TcpCommunicator.connect(world, "kv." + t.kvGroup(), kvm, t.kvRank()));
            made.add(TcpCommunicator.connect(world, "pp." + t.ppGroupIndex(), t.ppGroup(), t.ppRank()));
            made.add(t.inEmbeddingGroup()
                    ? TcpCommunicator.connect(world, "emb." + t.ppGroupIndex(), t.embeddingGroup(), t.ppRank() == 0 ? 0 : 1)
                    : TcpCommunicator.connect(world, "self." + t.rank(), new int[]{t.rank()}, 0));
        } catch (RuntimeException e) {
            for (TcpCommunicator c : made) c.close();
            throw e;
        }
        return new ProcessGroups(t, made.get(0), made.get(1), made.get(2), made.get(3), made.get(4), made.get(5));
    }

    /** Splits the tensor-, data-, KV and pipeline groups from an NCCL world communicator (collective over the world). */
    public static ProcessGroups nccl(NcclCommunicator world, Topology t) {
        if (world.size() != t.worldSize() || world.rank() != t.rank())
            throw new IllegalArgumentException("NCCL world rank " + world.rank() + " of " + world.size() + " vs topology " + t);
        NcclCommunicator tp = world.split(t.tpGroupIndex(), t.tpRank(), "tp." + t.tpGroupIndex());
        NcclCommunicator dp = world.split(t.dpGroupIndex(), t.dpRank(), "dp." + t.dpGroupIndex());
        NcclCommunicator kv = world.split(t.kvGroup(), t.kvRank(), "kv." + t.kvGroup());
        NcclCommunicator pp = world.split(t.ppGroupIndex(), t.ppRank(), "pp." + t.ppGroupIndex());
        NcclCommunicator emb = t.inEmbeddingGroup() ? world.split(t.ppGroupIndex(), t.ppRank(), "emb." + t.ppGroupIndex())
                : world.split(t.worldSize() + t.rank(), 0, "self." + t.rank());
        return new ProcessGroups(t, world, tp, dp, kv, pp, emb);
    }

    /** Breaks every group this rank belongs to (in-process: the other ranks' pending collectives fail at once). */
    public void abort(String reason) {
        for (Communicator c : List.of(world, tp, dp, kv, pp, emb)) {
            if (c instanceof InProcessCommunicator ip) ip.abort(reason);
            else if (c instanceof NcclCommunicator n) n.abort();
            // TcpCommunicator: aborted through its TcpWorld (every process is told)
        }
    }

    @Override
    public void close() {
        emb.close();
        pp.close();
        kv.close();
        dp.close();
        tp.close();
        world.close();
    }
}
