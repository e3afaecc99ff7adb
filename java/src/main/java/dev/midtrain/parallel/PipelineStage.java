package dev.midtrain.parallel;

import dev.midtrain.kernels.Backend;
import dev.midtrain.model.Llama;
import dev.midtrain.parallel.Communicator.Dtype;
import dev.midtrain.parallel.Communicator.P2p;
import dev.midtrain.parallel.PipelineSchedule.Action;
import dev.midtrain.parallel.PipelineSchedule.Batch;
import dev.midtrain.parallel.PipelineSchedule.Compute;
import dev.midtrain.parallel.PipelineSchedule.Kind;
import dev.midtrain.parallel.PipelineSchedule.Transfer;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs one pipeline rank's part of an optimizer step: its {@link PipelineSchedule#program} over the step's
 * micro-batches, on its {@link Llama} stage (the layers of its virtual stages; embedding on the first, norm + head +
 * loss on the last), sending activations and their gradients to the neighbouring ranks over the pipeline group.
 *
 * <p>Memory: for every micro-batch in flight the rank keeps only its chunk's input (floatX[N,C]); the backward of a
 * micro-batch recomputes the chunk's forward from it ({@link Llama#stageBackward}), so a pipeline stage costs the
 * compute of full recomputation whatever train.recompute says (storing every in-flight micro-batch's activations is
 * not in this build). The numbers are those of the single-rank run: the same kernels on the same inputs in the same
 * order per micro-batch; only the gradient accumulation across micro-batches of a tied embedding's two copies and the
 * losses' summation differ (fp32 summation order).
 *
 * <p>Every rank returns the same loss and per-row losses: the last stage's, summed over the pipeline group (the others
 * add zeros), so metrics, the non-finite check and the stop vote agree everywhere.
 */
public final class PipelineStage implements AutoCloseable {
    private final Llama model;
    private final Backend be;
    private final Communicator pp;
    private final PipelineSchedule sched;
    private final int rank, perChunk, B, T, N, C;
    private final long bytes;
    private final Dtype dtype;
    private final ArrayDeque<Long> free = new ArrayDeque<>();
    private final List<Long> owned = new ArrayList<>();
    private final long scalars;
    private final float[] rowHost;
    private final double[] rowTmp;
    private long computeNanos, stepNanos;                  // of the last step (benchmarks/pipeline.sh: measured bubble)

    public PipelineStage(Llama model, Communicator pp, PipelineSchedule sched) {
        if (pp.size() != sched.pp()) throw new IllegalArgumentException("pipeline group of " + pp.size() + " for a schedule of " + sched.pp());
        this.model = model;
        this.be = model.backend();
        this.pp = pp;
        this.sched = sched;
        this.rank = pp.rank();
        if (model.localLayers() % sched.virtual() != 0) throw new IllegalArgumentException(model.localLayers() + " layers in " + sched.virtual() + " chunks");
        this.perChunk = model.localLayers() / sched.virtual();
        this.B = model.microBatchSeqs();
        this.T = model.seqLen();
        this.N = B * T;
        this.C = model.config().dim();
        this.bytes = (long) N * C * be.floatxBytes();
        this.dtype = Dtype.floatX(be.floatxBytes());
        this.rowHost = new float[2 + sched.microBatches() * B];
        this.rowTmp = new double[B];
        this.scalars = be.alloc(4L * rowHost.length);
    }

    public PipelineSchedule schedule() { return sched; }

    /**
     * Forward and backward of every micro-batch (int32[B, T+1] each, the same on every stage) through the pipeline,
     * gradients accumulated (+=) into the stage's slab. {@code rowLoss[i][b]} receives the summed token loss of row b
     * of micro-batch i.
     *
     * @return the summed token loss of all micro-batches (the same on every pipeline rank)
     */
    public double step(int[][] micro, float dloss, double[][] rowLoss) {
        int m = sched.microBatches(), S = sched.stages();
        if (micro.length != m) throw new IllegalArgumentException(micro.length + " micro-batches for a schedule of " + m);
        Map<Long, Long> inputs = new HashMap<>(), gradsOut = new HashMap<>(), outbox = new HashMap<>();
        java.util.Arrays.fill(rowHost, 0f);
        double loss = 0;
        long start = System.nanoTime();
        computeNanos = 0;
        for (Action a : sched.program(rank)) {
            if (a instanceof Batch b) {
                P2p[] ops = new P2p[b.transfers().size()];
                List<Long> sent = new ArrayList<>();
                for (int i = 0; i < ops.length; i++) {
                    Transfer t = b.transfers().get(i);
                    if (t.send()) {
                        Long buf = outbox.remove(key(t.kind(), t.stage(), t.microBatch()));
                        if (buf == null) throw new IllegalStateException("rank " + rank + ": nothing to " + t);
                        ops[i] = P2p.send(buf, (long) N * C, t.peer());
                        sent.add(buf);
                    } else {
                        long buf = take();
                        ops[i] = P2p.recv(buf, (long) N * C, t.peer());
                        if (t.kind() == Kind.FORWARD) inputs.put(key(Kind.FORWARD, t.stage() + 1, t.microBatch()), buf);
                        else gradsOut.put(key(Kind.BACKWARD, t.stage() - 1, t.microBatch()), buf);
                    }
                }
                pp.p2p(dtype, ops);
                for (long buf : sent) free.push(buf);
                continue;
            }
            Compute c = (Compute) a;
            long c0 = System.nanoTime();
            int from = c.chunk() * perChunk, to = from + perChunk, mb = c.microBatch();
            long inKey = key(Kind.FORWARD, c.stage(), mb);
            long in = c.stage() == 0 ? 0 : need(inputs, inKey, c);
            if (c.kind() == Kind.FORWARD) {
                if (c.stage() == S - 1) continue;                  // the last stage runs its forward inside the backward
                long out = model.stageForward(micro[mb], from, to, in);
                long buf = take();
                be.copyBytes(buf, out, bytes);
                outbox.put(key(Kind.FORWARD, c.stage(), mb), buf);
            } else {
                long gradOut = c.stage() == S - 1 ? 0 : need(gradsOut, key(Kind.BACKWARD, c.stage(), mb), c);
                long gradIn = c.stage() == 0 ? 0 : take();
                double l = model.stageBackward(micro[mb], from, to, in, gradOut, gradIn, dloss);
                if (c.stage() == S - 1) {
                    loss += l;
                    model.rowLossSums(rowTmp);
                    for (int r = 0; r < B; r++) rowHost[2 + mb * B + r] = (float) rowTmp[r];
                }
                if (in != 0) { inputs.remove(inKey); free.push(in); }
                if (gradOut != 0) { gradsOut.remove(key(Kind.BACKWARD, c.stage(), mb)); free.push(gradOut); }
                if (gradIn != 0) outbox.put(key(Kind.BACKWARD, c.stage(), mb), gradIn);
            }
            be.synchronize();
            computeNanos += System.nanoTime() - c0;
        }
        stepNanos = System.nanoTime() - start;
        if (!inputs.isEmpty() || !gradsOut.isEmpty() || !outbox.isEmpty())
            throw new IllegalStateException("rank " + rank + ": tensors left after the step's program");
        // the last stage's loss (as fp32 high and low parts: the double survives) and row losses, to every stage
        float hi = (float) loss;
        rowHost[0] = hi;
        rowHost[1] = (float) (loss - hi);
        be.upload(scalars, rowHost);
        pp.allReduceSum(scalars, rowHost.length, Dtype.F32);
        be.download(rowHost, scalars);
        if (rowLoss != null)
            for (int i = 0; i < m; i++)
                for (int r = 0; r < B; r++) rowLoss[i][r] = rowHost[2 + i * B + r];
        return (double) rowHost[0] + (double) rowHost[1];
    }

    /** Seconds the last step's forwards and backwards took on this rank (the rest of {@link #lastStepSeconds} is waiting). */
    public double lastComputeSeconds() { return computeNanos / 1e9; }

    /** Seconds of the last step's program on this rank (computations and point-to-point). */
    public double lastStepSeconds() { return stepNanos / 1e9; }

    private static long key(Kind k, int stage, int mb) { return ((long) stage << 32 | mb) * 2 + (k == Kind.FORWARD ? 0 : 1); }

    private long need(Map<Long, Long> map, long key, Compute c) {
        Long v = map.get(key);
        if (v == null) throw new IllegalStateException("rank " + rank + ": " + c + " has no input (schedule and stage disagree)");
        return v;
    }

    private long take() {
        if (!free.isEmpty()) return free.pop();
        long buf = be.alloc(bytes);
        owned.add(buf);
        return buf;
    }

    @Override
    public void close() {
        for (long b : owned) be.free(b);
        owned.clear();
        free.clear();
        be.free(scalars);
    }
}
