package dev.midtrain.serve;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
 * holds {@code capacity} jobs: the server answers 429); the worker takes them in order.
 *
 * <p><b>Continuous batching</b> (as vLLM, TGI and llama.cpp's server do it). The worker runs rounds. Each round it
 * takes queued jobs in order while fewer than {@code maxBatch} are in flight, tokenizes and checks them (a bad one is
 * answered 400 alone), lets their prompts join the {@link Decoder} while it has free key/value cache slots (the
 * prompts joining in a round are prefilled together, right-padded into one pass, each into its own slot, and their
 * first tokens sampled), then runs one decode step for every running sequence at once
 * (one GEMM with M = running sequences per weight matrix), streaming requests included: each streamed piece is sent
 * as soon as it is final. A sequence that finishes leaves at once and its slot goes to the next prompt in the next
 * round; a streaming client that goes away is cancelled and frees its slot. A job whose prompts have all finished is
 * answered; the log-probabilities that the jobs finished in one round need (echo and logprobs: lm-evaluation-harness's
 * scoring requests) are computed in one batched {@link Engine#score} call, padded and packed by the engine. Each
 * sequence samples with its own seed ({@link Decoder}), so a seeded answer does not depend on its neighbours.
 *
 * <p><b>Log-probabilities</b> follow the OpenAI completions format: {@code tokens}, {@code token_logprobs} (null for
 * the first token of an echoed prompt), {@code top_logprobs} and {@code text_offset}. Token log-probabilities come
 * from the batched scoring pass, the same computation as {@code midtrain eval}'s log-likelihoods. The alternatives
 * ({@code logprobs} = k >= 1) come from one causal pass over the sequence without the cache
 * ({@link InferenceModel#positionLogits}: log-softmax of each position's logits, the k largest); the chosen token's
 * entry carries the scoring pass's value, so "is the token the argmax" compares like with like.
 *
 * <p><b>Counters</b> (for /health): {@code batches} rounds that took jobs from the queue, {@code decodeSteps} batched
 * decode steps, {@code decodedTokens} the rows of those steps (tokens fed), {@code generatedTokens} tokens answered.
 */
final class Scheduler implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    static final Object END = new Object();

    /** One request's work and its way back to the HTTP thread. */
    static final class Job {
        final CompletionRequest req;
        final String id, model;
        final long created = System.currentTimeMillis() / 1000;
        final CompletableFuture<ObjectNode> result = new CompletableFuture<>();
        final BlockingQueue<Object> events = new LinkedBlockingQueue<>();   // streaming: ObjectNode chunks, then END or an ApiError
        volatile boolean cancelled;
        List<Item> items;                                                   // the worker's: one per prompt
        int joined;                                                         // items[0..joined) have joined the decoder (or need no generation)

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
            decodeSteps = new AtomicLong(), decodedTokens = new AtomicLong(), generatedTokens = new AtomicLong(), prefills = new AtomicLong();
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

    void close(long millis) {
        synchronized (this) {
            closed = true;
            paused = false;
            notifyAll();
        }
        try {
            if (millis > 0) worker.join(millis);               // (join(0) would wait forever: a grace of 0 means stop now)
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
        while (idle && (queue.isEmpty() || paused) && !(closed && queue.isEmpty())) wait();
        if (idle && queue.isEmpty()) return null;              // closed and drained
        List<Job> out = new ArrayList<>();
        while (!paused && out.size() < room && !queue.isEmpty()) out.add(queue.pollFirst());
        return out;
    }

    private void loop() {
        Decoder decoder = new Decoder(engine, maxBatch);
        List<Job> inFlight = new ArrayList<>();
        try {
            while (!abort) {
                List<Job> fresh = take(maxBatch - inFlight.size(), inFlight.isEmpty());
                if (fresh == null) break;
                if (!fresh.isEmpty()) batches.incrementAndGet();
                try {
                    for (Job j : fresh) if (start(j)) inFlight.add(j);
                    round(decoder, inFlight);
                } catch (RuntimeException | Error e) {               // an engine failure: answer every job in flight
                    ApiError err = e instanceof ApiError a ? a : new ApiError(500, "server_error", null, "inference failed: " + e);
                    for (Job j : inFlight) fail(j, err);
                    jobsDone.addAndGet(inFlight.size());
                    inFlight.clear();
                    decoder.close();
                }
                running = decoder.active();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        ApiError bye = new ApiError(503, "server_shutting_down", null, "the server is shutting down");
        for (Job j : inFlight) fail(j, bye);
        jobsDone.addAndGet(inFlight.size());
        decoder.close();
        running = 0;
    }

    private static void fail(Job j, ApiError e) {
        j.result.completeExceptionally(e);
        j.events.add(e);
    }

    // ================================================================================================ one round

    /** One prompt of a job: its tokens, its sequence in the decoder, what was generated, the scoring request index. */
    private static final class Item {
        int[] prompt, full;
        Decoder.Sequence seq;
        Engine.Generation gen;
        int scored = -1, firstReported;
    }

    /** Tokenizes and checks a new job (false: answered with an error); a streaming job gets its first chunks. */
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
            if (r.chat()) j.events.add(chunk(j, JSON.createObjectNode().put("role", "assistant"), null));
            if (r.echo()) j.events.add(chunk(j, r.prompts().get(0) instanceof String s ? s : engine.decode(j.items.get(0).prompt), null));
        }
        return true;
    }

    /** Joins waiting prompts while slots are free, runs one decode step, answers the jobs that are done. */
    private void round(Decoder decoder, List<Job> inFlight) {
        // the prompts that wait, in order, as many as there are free places: prefilled together
        List<Job> owners = new ArrayList<>();
        List<int[]> prompts = new ArrayList<>();
        List<GenerateParams> ps = new ArrayList<>();
        List<Engine.TokenCallback> cbs = new ArrayList<>();
        int free = maxBatch - decoder.active();
        collect:
        for (Job j : inFlight) {
            for (int k = j.joined; k < j.items.size(); k++) {
                Item it = j.items.get(k);
                if (j.cancelled || !needsGeneration(j.req, it)) continue;
                if (prompts.size() == free) break collect;
                owners.add(j);
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
                if (j.cancelled || !needsGeneration(j.req, it)) { j.joined++; continue; }
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
        if (ready.isEmpty()) return;
        inFlight.removeAll(ready);
        List<Engine.Request> requests = new ArrayList<>();
        for (Job j : ready) {
            for (Item it : j.items) {
                it.gen = it.seq == null ? null : it.seq.result();
                int[] g = it.gen == null ? new int[0] : it.gen.tokens();
                generatedTokens.addAndGet(g.length);
                if (j.req.stream()) continue;
                it.full = concat(it.prompt, g);
                it.firstReported = j.req.echo() ? 1 : it.prompt.length;   // positions with a token log-probability
                if (j.req.logprobs() >= 0 && it.full.length >= 2 && it.firstReported < it.full.length) {
                    it.scored = requests.size();
                    requests.add(new Engine.Request(new int[]{it.full[0]}, Arrays.copyOfRange(it.full, 1, it.full.length)));
                }
            }
        }
        List<Engine.Scored> scored = requests.isEmpty() ? List.of() : engine.score(requests);
        scoredSequences.addAndGet(requests.size());
        for (Job j : ready) {
            jobsDone.incrementAndGet();
            if (j.req.stream()) {
                Engine.Generation g = j.items.get(0).gen;
                if (!j.cancelled && g != null) j.events.add(chunk(j, j.req.chat() ? JSON.createObjectNode() : "", g.finishReason()));
                j.events.add(END);
                continue;
            }
            try {
                j.result.complete(response(j, j.items, scored));
            } catch (RuntimeException ex) {
                fail(j, new ApiError(500, "server_error", null, "inference failed: " + ex));
            }
        }
    }

    /** A streamed job's pieces, as SSE chunks (dropped once the client is gone). */
    private static Engine.TokenCallback streamTo(Job j) {
        return piece -> {
            if (!j.cancelled) j.events.add(chunk(j, j.req.chat() ? JSON.createObjectNode().put("content", piece) : piece, null));
        };
    }

    /** Streams always generate (at least one token); otherwise max_tokens 0 only scores (start() refused what does not fit). */
    private boolean needsGeneration(CompletionRequest r, Item it) {
        return r.stream() || r.maxTokens() > 0;
    }

    private ObjectNode response(Job j, List<Item> items, List<Engine.Scored> scored) {
        ObjectNode o = JSON.createObjectNode();
        o.put("id", j.id);
        o.put("object", j.req.chat() ? "chat.completion" : "text_completion");
        o.put("created", j.created);
        o.put("model", j.model);
        ArrayNode choices = o.putArray("choices");
        long promptTokens = 0, completionTokens = 0;
        for (int i = 0; i < items.size(); i++) {
            Item it = items.get(i);
            String gen = it.gen == null ? "" : it.gen.text();
            ObjectNode c = choices.addObject();
            c.put("index", i);
            if (j.req.chat()) {
                ObjectNode m = c.putObject("message");
                m.put("role", "assistant");
                m.put("content", gen);
            } else {
                String echoed = j.req.echo() ? promptText(j.req, i, it) : "";
                c.put("text", echoed + gen);
                if (j.req.logprobs() >= 0) c.set("logprobs", logprobs(it, scored, j.req.logprobs()));
                else c.putNull("logprobs");
            }
            c.put("finish_reason", it.gen == null ? "length" : it.gen.finishReason());
            promptTokens += it.prompt.length;
            completionTokens += it.gen == null ? 0 : it.gen.tokens().length;
        }
        ObjectNode u = o.putObject("usage");
        u.put("prompt_tokens", promptTokens);
        u.put("completion_tokens", completionTokens);
        u.put("total_tokens", promptTokens + completionTokens);
        return o;
    }

    private String promptText(CompletionRequest r, int i, Item it) {
        Object p = r.prompts().get(i);
        return p instanceof String s ? s : engine.decode(it.prompt);
    }

    private ObjectNode logprobs(Item it, List<Engine.Scored> scored, int k) {
        ObjectNode lp = JSON.createObjectNode();
        ArrayNode tokens = lp.putArray("tokens"), values = lp.putArray("token_logprobs"), top = lp.putArray("top_logprobs"),
                offsets = lp.putArray("text_offset");
        float[] tl = it.scored >= 0 ? scored.get(it.scored).tokenLogprobs() : new float[0];   // tl[t-1] = log p(full[t] | full[<t])
        List<Map<Integer, Double>> alts = k >= 1 ? alternatives(it, k) : null;
        int offset = 0;
        for (int t = it.firstReported == 1 ? 0 : it.firstReported; t < it.full.length; t++) {
            String piece = engine.decode(new int[]{it.full[t]});
            tokens.add(piece);
            offsets.add(offset);
            offset += piece.length();
            if (t == 0) {                                     // the first token of an echoed prompt has no context
                values.addNull();
                top.addNull();
                continue;
            }
            double v = tl[t - 1];
            values.add(v);
            if (alts == null) { top.add(JSON.createObjectNode()); continue; }
            Map<Integer, Double> a = new LinkedHashMap<>(alts.get(t - it.firstReported));
            if (a.containsKey(it.full[t])) a.put(it.full[t], v);
            ObjectNode m = top.addObject();
            for (var e : a.entrySet()) {
                String s = engine.decode(new int[]{e.getKey()});
                if (!m.has(s) || m.get(s).asDouble() < e.getValue()) m.put(s, e.getValue());
            }
        }
        return lp;
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

    // ================================================================================================ streaming

    /** One SSE chunk: text (completions) or a delta object (chat), with finish_reason null until the last. */
    private static ObjectNode chunk(Job j, Object content, String finish) {
        ObjectNode o = JSON.createObjectNode();
        o.put("id", j.id);
        o.put("object", j.req.chat() ? "chat.completion.chunk" : "text_completion");
        o.put("created", j.created);
        o.put("model", j.model);
        ObjectNode c = o.putArray("choices").addObject();
        c.put("index", 0);
        if (content instanceof ObjectNode delta) c.set("delta", delta);
        else {
            c.put("text", (String) content);
            c.putNull("logprobs");
        }
        if (finish == null) c.putNull("finish_reason"); else c.put("finish_reason", finish);
        return o;
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
