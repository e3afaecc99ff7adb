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
 * write is logged when it happens, is never published (see {@link StepDirectories#save}) and is thrown by the next
 * {@link #save} or by {@link #close}. One save is in flight at a time, so one set of buffers suffices.
 */
public final class AsyncSaver implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(AsyncSaver.class);

    /** Copies rank {@code layout.rank()}'s current params and AdamW moments into the host buffers. */
    @FunctionalInterface
    public interface Filler {
        void fill(ParamLayout layout, HostFloats params, HostFloats m, HostFloats v);
    }

    /** A rank whose state a save holds: tensor-parallel layout and data-parallel window (see {@link StepDirectories.RankState}). */
    public record Slot(ParamLayout layout, int ppRank, int pp, int dpRank, int dp) {
        /** No pipeline: the whole model's slab. */
        public Slot(ParamLayout layout, int dpRank, int dp) { this(layout, 0, 1, dpRank, dp); }
    }

    private final StepDirectories store;
    private volatile StepDirectories.Part part = StepDirectories.Part.SOLE;
    private final CheckpointConfig cfg;
    private final ExecutorService writer;
    private final List<StepDirectories.RankState> buffers = new ArrayList<>();
    private volatile Future<Path> pending;
    private long pendingStep = -1;
    private Path lastSaved;

    public AsyncSaver(StepDirectories store, CheckpointConfig cfg) {
        this.store = store;
        this.cfg = cfg;
        this.writer = cfg.async() ? Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "checkpoint-writer");
            t.setDaemon(true);   // close() joins it; daemon so a crashed trainer does not hang the JVM
            return t;
        }) : null;
    }

    public StepDirectories store() { return store; }

    /** Makes this process's saves parts of a multi-process two-phase commit ({@link StepDirectories#savePart}). */
    public void setPart(StepDirectories.Part part) { this.part = part; }

    /** Whether {@code step} is a periodic save point (checkpoint.every_steps). */
    public boolean due(long step) { return cfg.everySteps() > 0 && step % cfg.everySteps() == 0; }

    /**
     * Saves {@code state} with the tensors {@code filler} copies, for the given rank layouts (rank order).
     * Returns once the state is in host memory (async) or on disk (sync).
     */
    public synchronized void save(StateFile state, List<ParamLayout> layouts, Filler filler) {
        List<StepDirectories.RankState> ranks = beginSave(layouts.stream().map(l -> new Slot(l, 0, 1)).toList());
        for (StepDirectories.RankState r : ranks) filler.fill(r.layout(), r.params(), r.m(), r.v());
        finishSave(state, ranks);
    }

    /**
     * First half of {@link #save} for ranks that fill the buffers from their own threads (tensor/data parallelism):
     * waits for the in-flight save (throwing its failure) and returns the host buffers to fill, one per slot (each
     * holds the slot's data-parallel window).
     */
    public synchronized List<StepDirectories.RankState> beginSave(List<Slot> slots) {
        awaitPending();
        return buffersFor(slots);
    }

    /** Second half of {@link #save}: writes the filled buffers (in the background when checkpoint.async). */
    public synchronized void finishSave(StateFile state, List<StepDirectories.RankState> ranks) {
        if (writer == null) {
            lastSaved = write(state, ranks);
            return;
        }
        pendingStep = state.step();
        pending = writer.submit(() -> write(state, ranks));
    }

    private Path write(StateFile state, List<StepDirectories.RankState> ranks) {
        long t0 = System.nanoTime();
        try {
            StepDirectories.Part pt = part;
            Path p = store.savePart(state, ranks, pt, cfg.keepLast(), cfg.keepEvery());
            if (pt.process() != 0) {
                log.debug("checkpoint part {} of {} written in {} s", pt.process(), p, String.format("%.2f", (System.nanoTime() - t0) / 1e9));
                return store.stepDir(state.step());      // process 0 commits it
            }
            log.info("checkpoint {} saved in {} s", p, String.format("%.2f", (System.nanoTime() - t0) / 1e9));
            return p;
        } catch (Exception e) {
            log.error("checkpoint {} FAILED and was not published: {}", StepDirectories.stepName(state.step()), e.toString());
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

    private List<StepDirectories.RankState> buffersFor(List<Slot> slots) {
        boolean same = buffers.size() == slots.size();
        for (int i = 0; same && i < slots.size(); i++) {
            StepDirectories.RankState b = buffers.get(i);
            Slot sl = slots.get(i);
            same = b.layout().numel() == sl.layout().numel() && b.layout().rank() == sl.layout().rank() && b.layout().tp() == sl.layout().tp() && b.dpRank() == sl.dpRank() && b.dp() == sl.dp()
                    && b.ppRank() == sl.ppRank() && b.pp() == sl.pp();
        }
        if (!same) {
            freeBuffers();
            for (Slot sl : slots) {
                long n = StepDirectories.window(sl.layout().numel(), sl.dp(), sl.dpRank()).count();
                buffers.add(new StepDirectories.RankState(sl.layout(), sl.ppRank(), sl.pp(), sl.dpRank(), sl.dp(), HostFloats.allocate(n), HostFloats.allocate(n), HostFloats.allocate(n)));
            }
        }
        return List.copyOf(buffers);
    }

    private void freeBuffers() {
        for (StepDirectories.RankState r : buffers) { r.params().close(); r.m().close(); r.v().close(); }
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
