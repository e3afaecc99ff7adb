package dev.midtrain.serve;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The one thread that uses the engine, behind a bounded queue. HTTP threads {@link #offer} jobs (false when the queue
 * holds {@code capacity} jobs: the server answers 429); the worker takes them in order.
 *
 * <p><b>Batching.</b> The worker takes the job at the head together with the non-streaming jobs queued right behind it
 * (at most {@code maxBatch} jobs): their generations run one after another (the engine's KV cache holds one sequence),
 * and every log-probability they need (echo and logprobs: lm-evaluation-harness's scoring requests) is computed in
 * one batched {@link Engine#score} call, padded and packed by the engine. A streaming job runs alone.
 *
 * <p><b>Log-probabilities</b> follow the OpenAI completions format: {@code tokens}, {@code token_logprobs} (null for
 * the first token of an echoed prompt), {@code top_logprobs} and {@code text_offset}. Token log-probabilities come
 * from the batched scoring pass, the same computation as {@code midtrain eval}'s log-likelihoods. The alternatives
 * ({@code logprobs} = k >= 1) come from a key/value-cache pass over the sequence (log-softmax of each position's
 * logits, the k largest); the chosen token's entry carries the scoring pass's value, so "is the token the argmax"
 * compares like with like.
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

        Job(CompletionRequest req, String id, String model) {
            this.req = req;
            this.id = id;
            this.model = model;
        }
    }

    private final Engine engine;
    private final int capacity, maxBatch;
    private final ArrayDeque<Job> queue = new ArrayDeque<>();
    private final Thread worker;
    private boolean closed, paused;
    final AtomicLong batches = new AtomicLong(), jobsDone = new AtomicLong(), scoredSequences = new AtomicLong();

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

    /** Tests: the worker takes nothing while paused (so the queue can be filled). */
    synchronized void pause(boolean p) {
        paused = p;
        notifyAll();
    }

    /** Refuses new jobs, finishes the queued ones, stops the worker (waits at most {@code millis}). */
    @Override
    public void close() { close(30_000); }

    void close(long millis) {
        synchronized (this) {
            closed = true;
            paused = false;
            notifyAll();
        }
        try {
            worker.join(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (worker.isAlive()) worker.interrupt();
        List<Job> left;
        synchronized (this) {
            left = new ArrayList<>(queue);
            queue.clear();
        }
        for (Job j : left) fail(j, new ApiError(503, "server_shutting_down", null, "the server is shutting down"));
    }

    private synchronized List<Job> take() throws InterruptedException {
        while ((queue.isEmpty() || paused) && !(closed && queue.isEmpty())) wait();
        if (queue.isEmpty()) return null;                      // closed and drained
        List<Job> batch = new ArrayList<>();
        batch.add(queue.pollFirst());
        if (!batch.get(0).req.stream())
            while (batch.size() < maxBatch && !queue.isEmpty() && !queue.peekFirst().req.stream()) batch.add(queue.pollFirst());
        return batch;
    }

    private void loop() {
        try {
            List<Job> batch;
            while ((batch = take()) != null) {
                batches.incrementAndGet();
                try {
                    if (batch.get(0).req.stream()) stream(batch.get(0));
                    else complete(batch);
                } catch (RuntimeException | Error e) {                   // an engine failure: answer every job of the batch
                    for (Job j : batch) fail(j, e instanceof ApiError a ? a : new ApiError(500, "server_error", null, "inference failed: " + e));
                }
                jobsDone.addAndGet(batch.size());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void fail(Job j, ApiError e) {
        j.result.completeExceptionally(e);
        j.events.add(e);
    }

    // ============================================================================================ non-streaming

    /** One prompt of a job: its tokens, what was generated, and the scoring request index (or -1). */
    private static final class Item {
        int[] prompt, full;
        Engine.Generation gen;
        int scored = -1, firstReported;
    }

    private void complete(List<Job> batch) {
        List<Engine.Request> requests = new ArrayList<>();
        Map<Job, List<Item>> items = new LinkedHashMap<>();
        int Tmax = engine.config().maxSeqLen();
        for (Job j : batch) {
            try {
                List<Item> list = new ArrayList<>();
                for (int p = 0; p < j.req.prompts().size(); p++) {
                    Item it = new Item();
                    it.prompt = tokens(j.req, p);
                    if (j.req.echo() ? it.prompt.length > Tmax + 1 : it.prompt.length >= Tmax)
                        throw ApiError.badRequest("prompt", "prompt" + (j.req.prompts().size() > 1 ? "[" + p + "]" : "") + ": " + it.prompt.length
                                + " tokens leave no room within the model's max_seq_len " + Tmax + (j.req.echo() ? " (+1 when only scored)" : ""));
                    if (j.req.maxTokens() > 0 && it.prompt.length < Tmax) it.gen = engine.generate(it.prompt, params(j.req), null);
                    int[] g = it.gen == null ? new int[0] : it.gen.tokens();
                    it.full = concat(it.prompt, g);
                    it.firstReported = j.req.echo() ? 1 : it.prompt.length;   // positions with a token log-probability
                    if (j.req.logprobs() >= 0 && it.full.length >= 2 && it.firstReported < it.full.length) {
                        it.scored = requests.size();
                        requests.add(new Engine.Request(new int[]{it.full[0]}, Arrays.copyOfRange(it.full, 1, it.full.length)));
                    }
                    list.add(it);
                }
                items.put(j, list);
            } catch (ApiError e) {
                fail(j, e);
            } catch (IllegalArgumentException e) {
                fail(j, ApiError.badRequest("prompt", e.getMessage()));
            }
        }
        List<Engine.Scored> scored = requests.isEmpty() ? List.of() : engine.score(requests);
        scoredSequences.addAndGet(requests.size());
        for (var e : items.entrySet()) {
            Job j = e.getKey();
            try {
                j.result.complete(response(j, e.getValue(), scored));
            } catch (RuntimeException ex) {
                fail(j, new ApiError(500, "server_error", null, "inference failed: " + ex));
            }
        }
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
        InferenceModel m = engine.model();
        List<Map<Integer, Double>> out = new ArrayList<>();
        synchronized (engine) {
            m.reset();
            float[] logits = m.prefill(Arrays.copyOf(it.full, Math.max(1, it.firstReported)));   // predicts full[firstReported]
            for (int t = Math.max(1, it.firstReported); t < it.full.length; t++) {
                out.add(topK(logits, k));
                if (t + 1 < it.full.length) logits = m.decode(it.full[t]);
            }
            m.reset();
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

    private void stream(Job j) {
        CompletionRequest r = j.req;
        int[] prompt;
        try {
            prompt = tokens(r, 0);
            if (prompt.length >= engine.config().maxSeqLen())
                throw ApiError.badRequest("prompt", "prompt: " + prompt.length + " tokens leave no room within the model's max_seq_len " + engine.config().maxSeqLen());
        } catch (ApiError e) {
            fail(j, e);
            return;
        } catch (IllegalArgumentException e) {
            fail(j, ApiError.badRequest("prompt", e.getMessage()));
            return;
        }
        if (r.chat()) j.events.add(chunk(j, JSON.createObjectNode().put("role", "assistant"), null));
        if (r.echo()) j.events.add(chunk(j, r.prompts().get(0) instanceof String s ? s : engine.decode(prompt), null));
        try {
            Engine.Generation g = engine.generate(prompt, params(r), piece -> {
                if (j.cancelled) throw new CancellationException("client gone");
                j.events.add(chunk(j, r.chat() ? JSON.createObjectNode().put("content", piece) : piece, null));
            });
            j.events.add(chunk(j, r.chat() ? JSON.createObjectNode() : "", g.finishReason()));
            j.events.add(END);
        } catch (CancellationException e) {
            j.events.add(END);
        }
    }

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
