package dev.midtrain.parallel;

import dev.midtrain.model.MemoryPlan;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The order in which every pipeline rank runs the forward and backward passes of a step's micro-batches, and the
 * point-to-point batches between them. Pure logic: {@link PipelineStage} executes a rank's {@link #program}.
 *
 * <p><b>Stages.</b> {@code pp} ranks each hold {@code virtual} model chunks; chunk c of rank p is virtual stage
 * s = c * pp + p of S = virtual * pp (Megatron's interleaving: rank p holds layers of stages p, p + pp, ...). With
 * {@code virtual} = 1 this is the plain 1F1B schedule (PipeDream-Flush).
 *
 * <p><b>Order</b> (Megatron-LM's {@code forward_backward_pipelining_with[out]_interleaving}). A rank runs
 * {@code m * virtual} forwards and as many backwards: first {@code warmup} forwards, then alternately one forward and
 * one backward, then the remaining backwards. warmup = pp - p - 1 for 1F1B, (pp - p - 1) * 2 + (virtual - 1) * pp
 * interleaved (capped at m * virtual). The k-th forward of a rank is micro-batch (k / (pp*virtual)) * pp + k % pp of
 * chunk (k % (pp*virtual)) / pp; the k-th backward the same with the chunk reversed. Interleaving needs m to be a
 * multiple of pp (as in Megatron). The first stage keeps the most activations alive: pp micro-batches under 1F1B.
 *
 * <p><b>Communication.</b> Between computations a rank posts p2p batches (one {@link Communicator#p2p} call each):
 * sends of its outputs (activation to the next stage after a forward, input gradient to the previous stage after a
 * backward) and receives of its later inputs, grouped so that both ends of every transfer are in batches of the same
 * tick of a unit-time clock (see {@link #buildPrograms}); in the steady state of 1F1B this is Megatron's
 * send_forward_recv_backward / send_backward_recv_forward. {@link #checkDeadlockFree} replays every
 * rank's program under rendezvous semantics (a send completes only when the peer has posted the matching receive,
 * messages matched first-in first-out per ordered pair of ranks, as NCCL and {@link Communicator#p2p} do) and checks
 * that every program finishes, that each matched pair is the same tensor, and that every micro-batch passes every
 * stage forward and backward exactly once.
 *
 * <p><b>Bubble.</b> With forward time f and backward time b per micro-batch of a whole rank's layers, the step takes
 * (m + (pp - 1) / virtual) * (f + b): the idle fraction is (pp - 1) / (virtual * m + pp - 1), i.e. the bubble time
 * (pp - 1) / virtual * (f + b) relative to the ideal m * (f + b) is (pp - 1) / (virtual * m) (Narayanan et al. 2021).
 * {@link #makespan} computes the step time of the actual order (every computation as early as its input and its rank
 * allow) so tests check the formula against the schedule itself.
 */
public final class PipelineSchedule {
    public enum Kind { FORWARD, BACKWARD }

    /** One step of a rank's program: a computation or a p2p batch. */
    public sealed interface Action permits Compute, Batch {}

    /** Forward or backward of {@code microBatch} through virtual stage {@code stage} (chunk {@code chunk} of this rank). */
    public record Compute(Kind kind, int chunk, int stage, int microBatch) implements Action {
        @Override
        public String toString() { return (kind == Kind.FORWARD ? "F" : "B") + microBatch + "@s" + stage; }
    }

    /**
     * One tensor on the wire: the output of {@code stage}'s forward (kind FORWARD, to stage + 1) or its input gradient
     * (kind BACKWARD, to stage - 1), of {@code microBatch}; {@code peer} is the other pipeline rank.
     */
    public record Transfer(boolean send, Kind kind, int stage, int microBatch, int peer) {
        /** The virtual stage at this rank's end: the producer for a send, the consumer for a receive. */
        public int localStage() { return send ? stage : kind == Kind.FORWARD ? stage + 1 : stage - 1; }

        @Override
        public String toString() {
            return (send ? "send " : "recv ") + (kind == Kind.FORWARD ? "act" : "grad") + microBatch + "@s" + stage + (send ? " to " : " from ") + peer;
        }
    }

    /** The transfers a rank posts together (one {@link Communicator#p2p} call); never empty. */
    public record Batch(List<Transfer> transfers) implements Action {
        public Batch { transfers = List.copyOf(transfers); }
    }

    private final int pp, virtual, m;
    private final List<List<Compute>> orders = new ArrayList<>();
    private final List<List<Action>> programs = new ArrayList<>();

    /**
     * @param pp           pipeline ranks
     * @param virtual      model chunks per rank (1: 1F1B; more: interleaved)
     * @param microBatches micro-batches per step (per data-parallel rank); a multiple of pp when interleaved
     */
    public PipelineSchedule(int pp, int virtual, int microBatches) {
        if (pp < 1 || virtual < 1 || microBatches < 1)
            throw new IllegalArgumentException("pipeline of " + pp + " ranks x " + virtual + " chunks, " + microBatches + " micro-batches");
        if (virtual > 1 && pp == 1) throw new IllegalArgumentException("virtual pipeline stages need parallel.pp > 1");
        if (virtual > 1 && microBatches % pp != 0)
            throw new IllegalArgumentException("the interleaved schedule needs micro-batches per step (" + microBatches
                    + ") to be a multiple of parallel.pp (" + pp + ")");
        this.pp = pp;
        this.virtual = virtual;
        this.m = microBatches;
        for (int p = 0; p < pp; p++) orders.add(List.copyOf(buildOrder(p)));
        buildPrograms();
    }

    private PipelineSchedule(PipelineSchedule base, List<List<Action>> programs) {
        this.pp = base.pp;
        this.virtual = base.virtual;
        this.m = base.m;
        this.orders.addAll(base.orders);
        for (List<Action> p : programs) this.programs.add(List.copyOf(p));
    }

    /** The same orders with other programs (tests of the replay). */
    PipelineSchedule withPrograms(List<List<Action>> programs) { return new PipelineSchedule(this, programs); }

    public int pp() { return pp; }

    public int virtual() { return virtual; }

    public int microBatches() { return m; }

    /** Virtual stages in all (pp x virtual). */
    public int stages() { return pp * virtual; }

    /** The rank holding virtual stage s. */
    public int rankOf(int stage) { return stage % pp; }

    /** The virtual stage of chunk c on rank p. */
    public int stageOf(int rank, int chunk) { return chunk * pp + rank; }

    /** Rank p's computations in order. */
    public List<Compute> order(int rank) { return orders.get(rank); }

    /** Rank p's computations with the p2p batches between them. */
    public List<Action> program(int rank) { return programs.get(rank); }

    /** Forwards a rank runs before its first backward. */
    public int warmup(int rank) {
        int w = virtual == 1 ? pp - rank - 1 : (pp - rank - 1) * 2 + (virtual - 1) * pp;
        return Math.min(w, m * virtual);
    }

    /** Chunk forwards rank p holds alive at its peak ({@link MemoryPlan#inFlight}, the planner's formula). */
    public static int inFlight(int pp, int virtual, int microBatches, int rank) { return MemoryPlan.inFlight(pp, virtual, microBatches, rank); }

    /** The idle fraction of a step: (pp - 1) / (virtual * m + pp - 1) ({@link MemoryPlan#bubbleFraction}). */
    public static double bubbleFraction(int pp, int virtual, int microBatches) { return MemoryPlan.bubbleFraction(pp, virtual, microBatches); }

    private List<Compute> buildOrder(int p) {
        int total = m * virtual, w = warmup(p);
        List<Compute> out = new ArrayList<>(2 * total);
        for (int k = 0; k < w; k++) out.add(nth(p, k, Kind.FORWARD));
        for (int k = 0; k < total - w; k++) {
            out.add(nth(p, w + k, Kind.FORWARD));
            out.add(nth(p, k, Kind.BACKWARD));
        }
        for (int k = total - w; k < total; k++) out.add(nth(p, k, Kind.BACKWARD));
        return out;
    }

    /** The k-th forward or backward of rank p (Megatron's get_model_chunk_id / microbatch id). */
    private Compute nth(int p, int k, Kind kind) {
        int group = pp * virtual, inGroup = k % group;
        int chunk = inGroup / pp;
        if (kind == Kind.BACKWARD) chunk = virtual - 1 - chunk;
        int mb = virtual == 1 ? k : (k / group) * pp + inGroup % pp;
        return new Compute(kind, chunk, stageOf(p, chunk), mb);
    }

    /**
     * The p2p batches: every computation is placed on a unit-time clock (each forward and backward one tick, as early
     * as its rank and its input allow, in the rank's order); a tensor produced at tick T is sent in the producer's
     * batch of tick T and received in the consumer's batch of tick T, so both ends of every transfer are in batches of
     * the same tick and each pair of ranks lists them in the same order. Deadlock-free by construction (a computation
     * starting at tick s needs only batches of ticks <= s, which every rank reaches after its computations that start
     * earlier), and checked by {@link #checkDeadlockFree}. The clock only shapes the batches; at run time each rank
     * simply runs its program.
     */
    private void buildPrograms() {
        int S = stages();
        List<List<Integer>> starts = new ArrayList<>();
        List<java.util.TreeMap<Integer, List<Transfer>>> ticks = new ArrayList<>();
        for (int p = 0; p < pp; p++) { starts.add(new ArrayList<>()); ticks.add(new java.util.TreeMap<>()); }
        place(1, 1, (p, c, start, end) -> {                     // unit ticks: exact in double
            starts.get(p).add((int) start);
            int to = c.kind() == Kind.FORWARD ? c.stage() + 1 : c.stage() - 1;
            if (to >= 0 && to < S) {
                int q = rankOf(to), tick = (int) end;
                ticks.get(p).computeIfAbsent(tick, k -> new ArrayList<>()).add(new Transfer(true, c.kind(), c.stage(), c.microBatch(), q));
                ticks.get(q).computeIfAbsent(tick, k -> new ArrayList<>()).add(new Transfer(false, c.kind(), c.stage(), c.microBatch(), p));
            }
        });
        java.util.Comparator<Transfer> fifo = java.util.Comparator.comparingInt(Transfer::peer).thenComparing(Transfer::send)
                .thenComparing(Transfer::kind).thenComparingInt(Transfer::stage).thenComparingInt(Transfer::microBatch);
        for (int p = 0; p < pp; p++) {
            List<Action> out = new ArrayList<>();
            var pending = ticks.get(p);
            List<Compute> order = orders.get(p);
            for (int i = 0; i <= order.size(); i++) {
                int limit = i < order.size() ? starts.get(p).get(i) : Integer.MAX_VALUE;
                while (!pending.isEmpty() && pending.firstKey() <= limit) {
                    List<Transfer> t = new ArrayList<>(pending.pollFirstEntry().getValue());
                    t.sort(fifo);
                    out.add(new Batch(t));
                }
                if (i < order.size()) out.add(order.get(i));
            }
            programs.add(List.copyOf(out));
        }
    }

    /**
     * Replays every rank's program under rendezvous semantics; throws IllegalStateException naming the stuck ranks
     * and what they wait for, or a mismatched pair, or a computation missing, repeated or out of order.
     */
    public void checkDeadlockFree() {
        int S = stages();
        // every (stage, micro-batch) forward once and backward once, backward after forward, on the right rank
        for (int p = 0; p < pp; p++) {
            boolean[][] f = new boolean[S][m], b = new boolean[S][m];
            for (Compute c : orders.get(p)) {
                if (rankOf(c.stage()) != p) throw new IllegalStateException("rank " + p + " runs " + c + " of another rank");
                boolean[][] seen = c.kind() == Kind.FORWARD ? f : b;
                if (seen[c.stage()][c.microBatch()]) throw new IllegalStateException("rank " + p + " runs " + c + " twice");
                if (c.kind() == Kind.BACKWARD && !f[c.stage()][c.microBatch()]) throw new IllegalStateException("rank " + p + " runs " + c + " before its forward");
                seen[c.stage()][c.microBatch()] = true;
            }
            for (int c = 0; c < virtual; c++)
                for (int mb = 0; mb < m; mb++)
                    if (!f[stageOf(p, c)][mb] || !b[stageOf(p, c)][mb]) throw new IllegalStateException("rank " + p + " never runs micro-batch " + mb + " of stage " + stageOf(p, c));
        }
        // rendezvous replay: pc[p] = index of the action rank p is at; a posted batch's transfers complete in pairs
        int[] pc = new int[pp];
        Map<Long, Integer> sentOn = new HashMap<>(), recvOn = new HashMap<>();       // per ordered pair: messages matched
        boolean[][] done = new boolean[pp][];
        while (true) {
            boolean progress = false, finished = true;
            for (int p = 0; p < pp; p++) {
                List<Action> prog = programs.get(p);
                while (pc[p] < prog.size() && prog.get(pc[p]) instanceof Compute) { pc[p]++; progress = true; done[p] = null; }
                if (pc[p] == prog.size()) continue;
                finished = false;
                Batch bt = (Batch) prog.get(pc[p]);
                if (done[p] == null) done[p] = new boolean[bt.transfers().size()];
            }
            if (finished) return;
            // match: transfer i of rank p with its counterpart in the peer's current batch, first-in first-out per pair
            for (int p = 0; p < pp; p++) {
                if (pc[p] == programs.get(p).size()) continue;
                Batch bt = (Batch) programs.get(p).get(pc[p]);
                for (int i = 0; i < bt.transfers().size(); i++) {
                    Transfer t = bt.transfers().get(i);
                    if (done[p][i] || !t.send()) continue;
                    int q = t.peer();
                    if (pc[q] == programs.get(q).size()) continue;
                    Batch other = (Batch) programs.get(q).get(pc[q]);
                    // the next message on p -> q is matched by q's first pending receive from p in its batch
                    for (int j = 0; j < other.transfers().size(); j++) {
                        Transfer r = other.transfers().get(j);
                        if (r.send() || r.peer() != p || done[q][j]) continue;
                        if (r.kind() != t.kind() || r.stage() != t.stage() || r.microBatch() != t.microBatch())
                            throw new IllegalStateException("rank " + p + " " + t + " is matched by rank " + q + " " + r + " (first in, first out)");
                        done[p][i] = done[q][j] = true;
                        long key = (long) p * pp + q;
                        sentOn.merge(key, 1, Integer::sum);
                        recvOn.merge(key, 1, Integer::sum);
                        progress = true;
                        break;
                    }
                }
            }
            for (int p = 0; p < pp; p++) {
                if (pc[p] == programs.get(p).size() || done[p] == null) continue;
                boolean all = true;
                for (boolean d : done[p]) all &= d;
                if (all) { pc[p]++; done[p] = null; progress = true; }
            }
            if (!progress) {
                StringBuilder sb = new StringBuilder("pipeline schedule pp " + pp + " x " + virtual + " chunks, " + m + " micro-batches deadlocks:");
                for (int p = 0; p < pp; p++)
                    if (pc[p] < programs.get(p).size()) sb.append(" rank ").append(p).append(" waits in ").append(programs.get(p).get(pc[p]));
                throw new IllegalStateException(sb.toString());
            }
        }
    }

    /**
     * Step time of this schedule when one forward of a whole rank's layers takes {@code forward} and one backward
     * {@code backward} (each chunk 1/virtual of that), communication free: every computation starts as soon as its
     * rank is free and its input exists.
     */
    public double makespan(double forward, double backward) {
        return place(forward / virtual, backward / virtual, null);
    }

    /** Called for each computation as {@link #place} puts it on the clock. */
    private interface Placed { void at(int rank, Compute c, double start, double end); }

    /**
     * Puts every computation on a clock, in each rank's order, as early as its rank is free and its input exists (a
     * forward lasts {@code f}, a backward {@code b}); tells {@code placed} (may be null) of each; returns the time the
     * last rank finishes. Throws when no computation can start (a cyclic order).
     */
    private double place(double f, double b, Placed placed) {
        int S = stages();
        double[][] fEnd = new double[S][m], bEnd = new double[S][m];
        for (double[] x : fEnd) Arrays.fill(x, Double.NaN);
        for (double[] x : bEnd) Arrays.fill(x, Double.NaN);
        int[] next = new int[pp];
        double[] free = new double[pp];
        int left = 2 * S * m;
        while (left > 0) {
            boolean progress = false;
            for (int p = 0; p < pp; p++) {
                while (next[p] < orders.get(p).size()) {
                    Compute c = orders.get(p).get(next[p]);
                    double ready;
                    if (c.kind() == Kind.FORWARD) ready = c.stage() == 0 ? 0 : fEnd[c.stage() - 1][c.microBatch()];
                    else ready = c.stage() == S - 1 ? fEnd[c.stage()][c.microBatch()] : bEnd[c.stage() + 1][c.microBatch()];
                    if (Double.isNaN(ready)) break;
                    double start = Math.max(ready, free[p]), end = start + (c.kind() == Kind.FORWARD ? f : b);
                    (c.kind() == Kind.FORWARD ? fEnd : bEnd)[c.stage()][c.microBatch()] = end;
                    free[p] = end;
                    if (placed != null) placed.at(p, c, start, end);
                    next[p]++;
                    left--;
                    progress = true;
                }
            }
            if (!progress) throw new IllegalStateException("no computation can start: the order is cyclic");
        }
        double t = 0;
        for (double x : free) t = Math.max(t, x);
        return t;
    }

    /** Most forwards of one rank whose backward has not run yet, at any moment (activations alive), over its chunks. */
    public int peakInFlight(int rank) {
        int live = 0, peak = 0;
        for (Compute c : orders.get(rank)) {
            live += c.kind() == Kind.FORWARD ? 1 : -1;
            peak = Math.max(peak, live);
        }
        return peak;
    }
}
