package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.UserError;
import dev.midtrain.config.CheckpointConfig;
import dev.midtrain.model.ParamLayout;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Saves at step boundaries without stalling training. {@link #save} first waits for the previous save (and throws
 * if it failed), then has the caller copy its state into reusable host buffers (device-to-host on GPU, a memcpy on
 * CPU), then writes them: on a background thread when {@code checkpoint.async}, else inline. A failed background
 * write is logged when it happens, is never published (see {@link CheckpointStore#save}) and is thrown by the next
 * {@link #save} or by {@link #close}. One save is in flight at a time, so one set of buffers suffices.
 */
public final class Checkpointer implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(Checkpointer.class);

    /** Copies rank {@code layout.rank()}'s current params and AdamW moments into the host buffers. */
    @FunctionalInterface
    public interface Filler {
        void fill(ParamLayout layout, HostFloats params, HostFloats m, HostFloats v);
    }

    /** A rank whose state a save holds: tensor-parallel layout and data-parallel window (see {@link CheckpointStore.RankState}). */
    public record Slot(ParamLayout layout, int dpRank, int dp) {}

    private final CheckpointStore store;
    private volatile CheckpointStore.Part part = CheckpointStore.Part.SOLE;
    private final CheckpointConfig cfg;
    private final ExecutorService writer;
    private final List<CheckpointStore.RankState> buffers = new ArrayList<>();
    private volatile Future<Path> pending;
    private long pendingStep = -1;
    private Path lastSaved;

    public Checkpointer(CheckpointStore store, CheckpointConfig cfg) {
        this.store = store;
        this.cfg = cfg;
        this.writer = cfg.async() ? Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "checkpoint-writer");
            t.setDaemon(true);   // close() joins it; daemon so a crashed trainer does not hang the JVM
            return t;
        }) : null;
    }

    public CheckpointStore store() { return store; }

    /** Makes this process's saves parts of a multi-process two-phase commit ({@link CheckpointStore#savePart}). */
    public void setPart(CheckpointStore.Part part) { this.part = part; }

    /** Whether {@code step} is a periodic save point (checkpoint.every_steps). */
    public boolean due(long step) { return cfg.everySteps() > 0 && step % cfg.everySteps() == 0; }

    /**
     * Saves {@code state} with the tensors {@code filler} copies, for the given rank layouts (rank order).
     * Returns once the state is in host memory (async) or on disk (sync).
     */
    public synchronized void save(StateFile state, List<ParamLayout> layouts, Filler filler) {
        List<CheckpointStore.RankState> ranks = beginSave(layouts.stream().map(l -> new Slot(l, 0, 1)).toList());
        for (CheckpointStore.RankState r : ranks) filler.fill(r.layout(), r.params(), r.m(), r.v());
        finishSave(state, ranks);
    }

    /**
     * First half of {@link #save} for ranks that fill the buffers from their own threads (tensor/data parallelism):
     * waits for the in-flight save (throwing its failure) and returns the host buffers to fill, one per slot (each
     * holds the slot's data-parallel window).
     */
    public synchronized List<CheckpointStore.RankState> beginSave(List<Slot> slots) {
        awaitPending();
        return buffersFor(slots);
    }

    /** Second half of {@link #save}: writes the filled buffers (in the background when checkpoint.async). */
    public synchronized void finishSave(StateFile state, List<CheckpointStore.RankState> ranks) {
        if (writer == null) {
            lastSaved = write(state, ranks);
            return;
        }
        pendingStep = state.step();
        pending = writer.submit(() -> write(state, ranks));
    }

    private Path write(StateFile state, List<CheckpointStore.RankState> ranks) {
        long t0 = System.nanoTime();
        try {
            CheckpointStore.Part pt = part;
            Path p = store.savePart(state, ranks, pt, cfg.keepLast(), cfg.keepEvery());
            if (pt.process() != 0) {
                log.debug("checkpoint part {} of {} written in {} s", pt.process(), p, String.format("%.2f", (System.nanoTime() - t0) / 1e9));
                return store.stepDir(state.step());      // process 0 commits it
            }
            log.info("checkpoint {} saved in {} s", p, String.format("%.2f", (System.nanoTime() - t0) / 1e9));
            return p;
        } catch (Exception e) {
            log.error("checkpoint {} FAILED and was not published: {}", CheckpointStore.stepName(state.step()), e.toString());
            throw new UserError("checkpoint " + store.stepDir(state.step()) + " was not saved: " + e, 1, e);
        }
    }

    /** Waits for the in-flight save; throws its failure (once). */
    public synchronized void awaitPending() {
        if (pending == null) return;
        Future<Path> f = pending;
        pending = null;
        try {
            lastSaved = f.get();
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof UserError u) throw u;
            throw new UserError("checkpoint step " + pendingStep + " was not saved: " + c, 1, c);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new UserError("interrupted while waiting for checkpoint step " + pendingStep, 1, e);
        }
    }

    /** The directory of the last save known to have completed, or null. */
    public synchronized Path lastSaved() { return lastSaved; }

    private List<CheckpointStore.RankState> buffersFor(List<Slot> slots) {
        boolean same = buffers.size() == slots.size();
        for (int i = 0; same && i < slots.size(); i++) {
            CheckpointStore.RankState b = buffers.get(i);
            Slot sl = slots.get(i);
            same = b.layout().numel() == sl.layout().numel() && b.layout().rank() == sl.layout().rank() && b.layout().tp() == sl.layout().tp() && b.dpRank() == sl.dpRank() && b.dp() == sl.dp();
        }
        if (!same) {
            freeBuffers();
            for (Slot sl : slots) {
                long n = CheckpointStore.window(sl.layout().numel(), sl.dp(), sl.dpRank()).count();
                buffers.add(new CheckpointStore.RankState(sl.layout(), sl.dpRank(), sl.dp(), HostFloats.allocate(n), HostFloats.allocate(n), HostFloats.allocate(n)));
            }
        }
        return List.copyOf(buffers);
    }

    private void freeBuffers() {
        for (CheckpointStore.RankState r : buffers) { r.params().close(); r.m().close(); r.v().close(); }
        buffers.clear();
    }

    /**
     * Gives up the save in flight without waiting (the run failed): its writer is interrupted, so process 0 stops
     * waiting for the other processes' parts and nothing is published. The buffers are left to the exiting process
     * (the writer may still hold them).
     */
    public void abandon() {
        Future<Path> f = pending;
        if (f != null && !f.isDone()) log.warn("checkpoint step {} abandoned (not published): the run failed", pendingStep);
        if (f != null) f.cancel(true);
        if (writer != null) writer.shutdownNow();
    }

    /** Waits for the in-flight save (throwing its failure), then frees the buffers. */
    @Override
    public synchronized void close() {
        try {
            awaitPending();
        } finally {
            if (writer != null) writer.shutdownNow();
            freeBuffers();
        }
    }
}
