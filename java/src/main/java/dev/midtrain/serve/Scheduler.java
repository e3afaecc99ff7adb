package dev.midtrain.serve;

import dev.midtrain.infer.Decoder;
import dev.midtrain.infer.Engine;
import dev.midtrain.infer.GenerateParams;
import dev.midtrain.infer.InferenceModel;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The one thread that uses the engine, behind a bounded queue. HTTP threads {@link #offer} jobs (false when the queue
 * holds {@code capacity} jobs: the server answers 429); the worker takes them in order. This class batches and
 * schedules; what goes on the wire (OpenAI's JSON) is {@link OpenAiFormat}'s: a job ends in a typed {@link Completion}
 * (non-streaming) or a sequence of typed {@link Event}s (streaming).
 *
 * <p><b>Continuous batching</b> (as vLLM, TGI and llama.cpp's server do it). The worker runs rounds. Each round it
 * takes queued jobs in order while fewer than {@code maxBatch} are generating, tokenizes and checks them (a bad one
 * is answered 400 alone), lets their prompts join the {@link Decoder} while it has free key/value cache slots (the
 * prompts joining in a round are prefilled together, right-padded into one pass, each into its own slot, and their
 * first tokens sampled), then runs one decode step for every running sequence at once (one GEMM with M = running
 * sequences per weight matrix), streaming requests included: each streamed piece is sent as soon as it is final. A
 * sequence that finishes leaves at once and its slot goes to the next prompt in the next round; a streaming client
 * that goes away is cancelled and frees its slot.
 *
 * <p><b>Scoring in slices.</b> A job whose prompts have all finished generating moves to the scoring line. Its
 * log-probabilities (echo and logprobs: lm-evaluation-harness's scoring requests) are computed in batched {@link
 * Engine#score} calls of at most one model pass ({@link InferenceModel#maxTokens} tokens) per round, between decode
 * steps, so a request that scores 256 long prompts takes many rounds and a 4-token request arriving behind it joins
 * the decoder in the next round instead of waiting for all of it. Each sequence samples with its own seed ({@link
 * Decoder}), so a seeded answer does not depend on its neighbours.
 *
 * <p><b>Log-probabilities.</b> Token log-probabilities come from the batched scoring pass, the same computation as
 * {@code midtrain eval}'s log-likelihoods. The alternatives (logprobs = k >= 1) come from one causal pass over the
 * sequence without the cache ({@link InferenceModel#positionLogits}: log-softmax of each position's logits, the k
 * largest); the chosen token's entry carries the scoring pass's value, so "is the token the argmax" compares like
 * with like.
 *
 * <p><b>Counters</b> (for /health): {@code batches} rounds that took jobs from the queue, {@code decodeSteps} batched
 * decode steps, {@code decodedTokens} the rows of those steps (tokens fed), {@code generatedTokens} tokens answered.
 */
final class Scheduler implements AutoCloseable {

    /** What a streaming job sends, in order: {@link Started}, {@link Text} pieces, then {@link Done} or {@link Failed}. */
    sealed interface Event permits Started, Text, Done, Failed {}

    /** The stream begins (a chat answer opens with the assistant role). */
    record Started() implements Event {}

    /** A piece of text that is final (never past a stop string or inside a UTF-8 character). */
    record Text(String piece) implements Event {}

    /** The end: why the generation finished (null: the client went away). */
    record Done(String finishReason) implements Event {}

    /** The job failed: before the first event a plain error answer, later the stream's last message. */
    record Failed(ApiError error) implements Event {}

    /**
     * One prompt's outcome. {@code full} = prompt + generated tokens; {@code tokenLogprobs[t-1]} = log p(full[t] |
     * full[<t]) for the scored positions (null when not scored); {@code alternatives.get(t - firstReported)}: the k
     * most likely next tokens at position t (id -> log p; null when k = 0).
     */
    record Choice(Object prompt, int[] promptTokens, Engine.Generation generation, int[] full, int firstReported,
                  float[] tokenLogprobs, List<Map<Integer, Double>> alternatives) {}

    /** A finished non-streaming job: one choice per prompt. */
    record Completion(List<Choice> choices) {}

    /** One request's work and its way back to the HTTP thread. */
    static final class Job {
        final CompletionRequest req;
        final String id, model;
        final long created = System.currentTimeMillis() / 1000;
        final CompletableFuture<Completion> result = new CompletableFuture<>();
        final BlockingQueue<Event> events = new LinkedBlockingQueue<>();    // streaming
        volatile boolean cancelled;
        List<Item> items;                                                   // the worker's: one per prompt
        int joined;                                                         // items[0..joined) have joined the decoder (or need no generation)
        int toScore;                                                        // scoring requests not yet computed

        Job(CompletionRequest req, String id, String model) {
            this.req = req;
            this.id = id;
            this.model = model;
        }

        /** Some prompt still waits for a slot or is decoding. */
        boolean generating() {
            for (Item it : items) if (it.seq != null && !it.seq.finished()) return true;
            return joined < items.size();
        }
    }

    private final Engine engine;
    private final int capacity, maxBatch;
    private final ArrayDeque<Job> queue = new ArrayDeque<>();
    private final Thread worker;
    private boolean closed, paused;
    private volatile boolean abort;
    final AtomicLong batches = new AtomicLong(), jobsDone = new AtomicLong(), scoredSequences = new AtomicLong(),
            decodeSteps = new AtomicLong(), decodedTokens = new AtomicLong(), generatedTokens = new AtomicLong(), prefills = new AtomicLong(),
            scoringPasses = new AtomicLong();
    private volatile int running;

    Scheduler(Engine engine, int capacity, int maxBatch) {
        if (capacity < 1 || maxBatch < 1) throw new IllegalArgumentException("capacity and maxBatch must be >= 1");
        this.engine = engine;
        this.capacity = capacity;
        this.maxBatch = maxBatch;
        worker = new Thread(this::loop, "midtrain-serve-worker");
        worker.setDaemon(true);
        worker.start();
    }

    /** Queues {@code j}; false when the queue is full. Throws a 503 {@link ApiError} once closing. */
    synchronized boolean offer(Job j) {
        if (closed) throw new ApiError(503, "server_shutting_down", null, "the server is shutting down");
        if (queue.size() >= capacity) return false;
        queue.addLast(j);
        notifyAll();
        return true;
    }

    synchronized int queued() { return queue.size(); }

    int capacity() { return capacity; }

    /** Sequences decoding now. */
    int running() { return running; }

    /** Tests: the worker takes nothing new from the queue while paused (so the queue can be filled). */
    synchronized void pause(boolean p) {
        paused = p;
        notifyAll();
    }

    /** Refuses new jobs, finishes the queued and running ones, stops the worker (waits at most {@code millis}). */
    @Override
    public void close() { close(30_000); }

    /** As {@link #close()}; {@code millis} 0: stop now, answering queued and running jobs 503. */
    void close(long millis) {
        synchronized (this) {
            closed = true;
            paused = false;
            if (millis <= 0) abort = true;
            notifyAll();
        }
        try {
            if (millis > 0) worker.join(millis);               // (join(0) would wait forever)
            if (worker.isAlive()) {                            // the grace is over: running jobs are answered 503
                abort = true;
                worker.interrupt();
                worker.join(5_000);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        List<Job> left;
        synchronized (this) {
            left = new ArrayList<>(queue);
            queue.clear();
        }
        for (Job j : left) fail(j, new ApiError(503, "server_shutting_down", null, "the server is shutting down"));
    }

    /**
     * Jobs to start: up to {@code room} from the head of the queue (none while paused). Blocks only when nothing is in
     * flight ({@code idle}); null when closed, drained and idle.
     */
    private synchronized List<Job> take(int room, boolean idle) throws InterruptedException {
        while (idle && (queue.isEmpty() || paused) && !(closed && queue.isEmpty()) && !abort) wait();
        if (abort || idle && queue.isEmpty()) return null;     // closed and drained, or stopped now
        List<Job> out = new ArrayList<>();
        while (!paused && out.size() < room && !queue.isEmpty()) out.add(queue.pollFirst());
        return out;
    }

    private void loop() {
        Decoder decoder = new Decoder(engine, maxBatch);
        List<Job> inFlight = new ArrayList<>(), scoring = new ArrayList<>();
        try {
            while (!abort) {
                List<Job> fresh = take(maxBatch - inFlight.size(), inFlight.isEmpty() && scoring.isEmpty());
                if (fresh == null) break;
                if (!fresh.isEmpty()) batches.incrementAndGet();
                try {
                    for (Job j : fresh) if (start(j)) inFlight.add(j);
                    round(decoder, inFlight, scoring);
                    scoreSlice(scoring);
                } catch (RuntimeException | Error e) {               // an engine failure: answer every job in flight
                    ApiError err = e instanceof ApiError a ? a : new ApiError(500, "server_error", null, "inference failed: " + e);
                    for (Job j : inFlight) fail(j, err);
                    for (Job j : scoring) fail(j, err);
                    jobsDone.addAndGet(inFlight.size() + scoring.size());
                    inFlight.clear();
                    scoring.clear();
                    decoder.close();
                }
                running = decoder.active();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        ApiError bye = new ApiError(503, "server_shutting_down", null, "the server is shutting down");
        for (Job j : inFlight) fail(j, bye);
        for (Job j : scoring) fail(j, bye);
        jobsDone.addAndGet(inFlight.size() + scoring.size());
        decoder.close();
        running = 0;
    }

    private static void fail(Job j, ApiError e) {
        j.result.completeExceptionally(e);
        j.events.add(new Failed(e));
    }

    // ================================================================================================ one round

    /** One prompt of a job: its tokens, its sequence in the decoder, what was generated, its scoring state. */
    private static final class Item {
        int[] prompt, full;
        Decoder.Sequence seq;
        Engine.Generation gen;
        int firstReported;
        boolean needsScore;
        float[] tokenLogprobs;
    }

    /** Tokenizes and checks a new job (false: answered with an error); a streaming job gets its first events. */
    private boolean start(Job j) {
        CompletionRequest r = j.req;
        int Tmax = engine.config().maxSeqLen();
        try {
            j.items = new ArrayList<>();
            for (int p = 0; p < r.prompts().size(); p++) {
                Item it = new Item();
                it.prompt = tokens(r, p);
                // The context is max_seq_len positions: a prompt of up to max_seq_len tokens gets its next token (the last
                // position's logits); echo with max_tokens 0 scores up to max_seq_len + 1 tokens (the last is only a target).
                boolean onlyScored = r.echo() && !r.stream() && r.maxTokens() == 0;
                int limit = onlyScored ? Tmax + 1 : Tmax;
                if (it.prompt.length > limit)
                    throw ApiError.badRequest("prompt", "prompt" + (r.prompts().size() > 1 ? "[" + p + "]" : "") + ": " + it.prompt.length
                            + " tokens do not fit the model's context of " + Tmax + " tokens (max_model_len): at most " + Tmax
                            + " prompt tokens when generating, " + (Tmax + 1) + " with echo and max_tokens 0"
                            + (r.echo() ? "; lm-evaluation-harness: max_length=" + (Tmax + 1) : ""));
                j.items.add(it);
            }
        } catch (ApiError e) {
            fail(j, e);
            jobsDone.incrementAndGet();
            return false;
        } catch (IllegalArgumentException e) {
            fail(j, ApiError.badRequest("prompt", e.getMessage()));
            jobsDone.incrementAndGet();
            return false;
        }
        if (r.stream()) {
            j.events.add(new Started());
            if (r.echo()) j.events.add(new Text(r.prompts().get(0) instanceof String s ? s : engine.decode(j.items.get(0).prompt)));
        }
        return true;
    }

    /**
     * Joins waiting prompts while slots are free, runs one decode step; jobs done generating move to {@code scoring}
     * (streams are answered at once).
     */
    private void round(Decoder decoder, List<Job> inFlight, List<Job> scoring) {
        // the prompts that wait, in order, as many as there are free places: prefilled together
        List<int[]> prompts = new ArrayList<>();
        List<GenerateParams> ps = new ArrayList<>();
        List<Engine.TokenCallback> cbs = new ArrayList<>();
        int free = maxBatch - decoder.active();
        collect:
        for (Job j : inFlight) {
            for (int k = j.joined; k < j.items.size(); k++) {
                Item it = j.items.get(k);
                if (j.cancelled || !needsGeneration(j.req)) continue;
                if (prompts.size() == free) break collect;
                prompts.add(it.prompt);
                ps.add(params(j.req));
                cbs.add(j.req.stream() ? streamTo(j) : null);
            }
        }
        List<Decoder.Sequence> joined = prompts.isEmpty() ? List.of() : decoder.joinAll(prompts, ps, cbs);
        int next = 0;
        for (Job j : inFlight) {                                   // hand the sequences out, in the same order
            while (j.joined < j.items.size()) {
                Item it = j.items.get(j.joined);
                if (j.cancelled || !needsGeneration(j.req)) { j.joined++; continue; }
                Decoder.Sequence sq = next < joined.size() ? joined.get(next) : null;
                if (sq == null) break;                             // no free slot: the rest wait for the next round
                next++;
                prefills.incrementAndGet();
                it.seq = sq;
                j.joined++;
            }
        }
        running = decoder.active();
        if (running == 0 && inFlight.stream().anyMatch(j -> j.joined < j.items.size()))
            java.util.concurrent.locks.LockSupport.parkNanos(1_000_000);   // every slot held outside the server (a direct engine call)
        long before = decoder.steps(), rowsBefore = decoder.decodedTokens();
        decoder.step();
        decodeSteps.addAndGet(decoder.steps() - before);
        decodedTokens.addAndGet(decoder.decodedTokens() - rowsBefore);

        List<Job> ready = new ArrayList<>();
        for (Job j : inFlight) {
            if (j.cancelled) for (Item it : j.items) if (it.seq != null && !it.seq.finished()) decoder.cancel(it.seq);
            if (j.cancelled || !j.generating()) ready.add(j);
        }
        inFlight.removeAll(ready);
        for (Job j : ready) {
            for (Item it : j.items) {
                it.gen = it.seq == null ? null : it.seq.result();
                int[] g = it.gen == null ? new int[0] : it.gen.tokens();
                generatedTokens.addAndGet(g.length);
                if (j.req.stream()) continue;
                it.full = concat(it.prompt, g);
                it.firstReported = j.req.echo() ? 1 : it.prompt.length;   // positions with a token log-probability
                it.needsScore = j.req.logprobs() >= 0 && it.full.length >= 2 && it.firstReported < it.full.length;
                if (it.needsScore) j.toScore++;
            }
            if (j.req.stream()) {
                jobsDone.incrementAndGet();
                Engine.Generation g = j.items.get(0).gen;
                j.events.add(new Done(j.cancelled || g == null ? null : g.finishReason()));
                continue;
            }
            scoring.add(j);
        }
    }

    /**
     * Scores the next slice of the scoring line, at most one model pass of tokens (at least one sequence), and
     * answers the jobs whose every prompt is scored.
     */
    private void scoreSlice(List<Job> scoring) {
        List<Engine.Request> requests = new ArrayList<>();
        List<Item> owners = new ArrayList<>();
        long budget = engine.model().maxTokens(), used = 0;
        fill:
        for (Job j : scoring) {
            for (Item it : j.items) {
                if (!it.needsScore || it.tokenLogprobs != null) continue;
                if (!requests.isEmpty() && used + it.full.length - 1 > budget) break fill;
                requests.add(new Engine.Request(new int[]{it.full[0]}, Arrays.copyOfRange(it.full, 1, it.full.length)));
                owners.add(it);
                used += it.full.length - 1;
            }
        }
        if (!requests.isEmpty()) {
            List<Engine.Scored> scored = engine.score(requests);
            scoringPasses.incrementAndGet();
            scoredSequences.addAndGet(requests.size());
            for (int i = 0; i < owners.size(); i++) owners.get(i).tokenLogprobs = scored.get(i).tokenLogprobs();
        }
        List<Job> done = new ArrayList<>();
        for (Job j : scoring) {
            boolean all = true;
            for (Item it : j.items) if (it.needsScore && it.tokenLogprobs == null) { all = false; break; }
            if (all) done.add(j);
        }
        scoring.removeAll(done);
        for (Job j : done) {
            jobsDone.incrementAndGet();
            try {
                List<Choice> choices = new ArrayList<>();
                for (int i = 0; i < j.items.size(); i++) {
                    Item it = j.items.get(i);
                    choices.add(new Choice(j.req.prompts().get(i), it.prompt, it.gen, it.full, it.firstReported, it.tokenLogprobs,
                            j.req.logprobs() >= 1 && it.needsScore ? alternatives(it, j.req.logprobs()) : null));
                }
                j.result.complete(new Completion(choices));
            } catch (RuntimeException ex) {
                fail(j, new ApiError(500, "server_error", null, "inference failed: " + ex));
            }
        }
    }

    /** A streamed job's pieces, as events (dropped once the client is gone). */
    private static Engine.TokenCallback streamTo(Job j) {
        return piece -> {
            if (!j.cancelled) j.events.add(new Text(piece));
        };
    }

    /** Streams always generate (at least one token); otherwise max_tokens 0 only scores (start() refused what does not fit). */
    private static boolean needsGeneration(CompletionRequest r) {
        return r.stream() || r.maxTokens() > 0;
    }

    /** For each reported position t >= firstReported: the k most likely next tokens after full[<t] (id -> log p). */
    private List<Map<Integer, Double>> alternatives(Item it, int k) {
        List<Map<Integer, Double>> out = new ArrayList<>();
        int from = Math.max(1, it.firstReported);             // logits after full[0..t-1] predict full[t]
        if (from >= it.full.length) return out;
        synchronized (engine) {
            engine.model().positionLogits(Arrays.copyOf(it.full, it.full.length - 1), from - 1, (logits, t) -> out.add(topK(logits, k)));
        }
        return out;
    }

    static Map<Integer, Double> topK(float[] logits, int k) {
        double max = Double.NEGATIVE_INFINITY;
        for (float x : logits) max = Math.max(max, x);
        double sum = 0;
        for (float x : logits) sum += Math.exp(x - max);
        double lse = max + Math.log(sum);
        Integer[] idx = new Integer[logits.length];
        for (int i = 0; i < idx.length; i++) idx[i] = i;
        Arrays.sort(idx, (a, b) -> logits[a] != logits[b] ? Float.compare(logits[b], logits[a]) : Integer.compare(a, b));
        Map<Integer, Double> out = new LinkedHashMap<>();
        for (int i = 0; i < Math.min(k, idx.length); i++) out.put(idx[i], logits[idx[i]] - lse);
        return out;
    }

    // ================================================================================================== shared

    private int[] tokens(CompletionRequest r, int i) {
        Object p = r.prompts().get(i);
        int[] ids;
        if (p instanceof int[] a) ids = a;
        else if (r.chat()) ids = engine.encode((String) p);          // the template starts with the begin-of-text token
        else ids = engine.encodePrompt((String) p);
        if (ids.length == 0) throw ApiError.badRequest("prompt", "prompt: empty");
        int V = engine.config().vocabSize();
        for (int t : ids) if (t < 0 || t >= V) throw ApiError.badRequest("prompt", "prompt: token id " + t + " outside the vocabulary [0, " + V + ")");
        return ids;
    }

    private static GenerateParams params(CompletionRequest r) {
        return new GenerateParams(Math.max(1, r.maxTokens()), r.temperature(), r.topP(), r.seed(), r.stop(), true);
    }

    private static int[] concat(int[] a, int[] b) {
        int[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
