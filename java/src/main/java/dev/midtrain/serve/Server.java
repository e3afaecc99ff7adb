package dev.midtrain.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.midtrain.infer.Engine;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The OpenAI-compatible HTTP server of {@code midtrain serve}: {@code POST /v1/completions},
 * {@code POST /v1/chat/completions}, {@code GET /v1/models}, {@code GET /health}.
 *
 * <p>HTTP: the JDK's own {@code com.sun.net.httpserver} (module jdk.httpserver, a supported, exported JDK API):
 * HTTP/1.1 with keep-alive and chunked responses (server-sent events for {@code "stream": true}), no dependency to
 * add to the jar or the GPU bundle. What a framework would add (routing, HTTP/2, TLS) this server does not need: it
 * has four routes, listens on loopback by default, and is meant to sit behind a proxy when exposed.
 *
 * <p>Limits: a body above {@code maxBodyBytes} is 413 (checked on Content-Length before reading, and while reading);
 * malformed JSON or an invalid field is 400 with an OpenAI-style error object; a full queue ({@link Scheduler}) is
 * 429; after {@link #close} starts, 503. Handler threads: {@code queue capacity + 16}, so every queued request has a
 * thread waiting for it and refusals are answered at once.
 */
public final class Server implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * @param host          address to bind (127.0.0.1 by default in the CLI)
     * @param port          TCP port, 0 = any free port ({@link #port()} says which)
     * @param modelId       the id reported by /v1/models and in responses
     * @param queue         requests waiting for the engine before 429
     * @param maxBatch      requests in flight at once: sequences decoded together (at most the engine's key/value
     *                      cache slots, {@link Engine.Options#slots}) and requests scored in one batch
     * @param maxBodyBytes  largest accepted request body
     * @param maxNewTokens  largest max_tokens a request may ask for
     */
    public record Options(String host, int port, String modelId, int queue, int maxBatch, int maxBodyBytes, int maxNewTokens) {
        public Options {
            if (port < 0 || port > 65535) throw new IllegalArgumentException("--port: expected 0..65535, got " + port);
            if (queue < 1) throw new IllegalArgumentException("--max-queue: must be >= 1, got " + queue);
            if (maxBatch < 1) throw new IllegalArgumentException("--max-batch: must be >= 1, got " + maxBatch);
            if (maxBodyBytes < 1024) throw new IllegalArgumentException("--max-body-bytes: must be >= 1024, got " + maxBodyBytes);
            if (maxNewTokens < 1) throw new IllegalArgumentException("--max-new-tokens: must be >= 1, got " + maxNewTokens);
        }
    }

    private final Engine engine;
    private final Options opt;
    private final ChatTemplate chat;
    private final Scheduler scheduler;
    private final HttpServer http;
    private final ExecutorService pool;
    private final AtomicLong ids = new AtomicLong();
    private volatile boolean closing;

    Server(Engine engine, ChatTemplate chat, Options opt) throws IOException {
        this.engine = engine;
        this.opt = opt;
        this.chat = chat;
        this.scheduler = new Scheduler(engine, opt.queue(), opt.maxBatch());
        this.http = HttpServer.create(new InetSocketAddress(opt.host(), opt.port()), 128);
        this.pool = Executors.newFixedThreadPool(opt.queue() + 16, r -> {
            Thread t = new Thread(r, "midtrain-serve-http");
            t.setDaemon(true);
            return t;
        });
        http.setExecutor(pool);
        http.createContext("/", this::handle);
        http.start();
    }

    /**
     * Starts serving {@code engine}; the chat template comes from {@code tokenizer_config.json} in the first of
     * {@code templateDirs} that has one (else the built-in Llama-3 format).
     */
    public static Server start(Engine engine, java.util.List<java.nio.file.Path> templateDirs, Options opt) throws IOException {
        return new Server(engine, ChatTemplate.find(templateDirs), opt);
    }

    public int port() { return http.getAddress().getPort(); }

    /** Where the chat template came from (for the startup line). */
    public String chatTemplateSource() { return chat.source; }

    Scheduler scheduler() { return scheduler; }

    /**
     * Clean shutdown: new requests get 503, queued and running ones finish (at most {@code graceSeconds}), then the
     * listener closes. Does not close the engine.
     */
    public void close(int graceSeconds) {
        closing = true;
        scheduler.close(graceSeconds * 1000L);                 // every queued request answered (or 503 after the grace)
        http.stop(1);                                          // Java 17's stop waits out its delay; the answers are written by now
        pool.shutdown();
        try {
            pool.awaitTermination(graceSeconds, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        pool.shutdownNow();
    }

    @Override
    public void close() { close(10); }

    // ================================================================================================== routing

    private void handle(HttpExchange ex) {
        try (ex) {
            try {
                String path = ex.getRequestURI().getPath(), method = ex.getRequestMethod();
                switch (path) {
                    case "/health", "/v1/health" -> {
                        requireMethod(method, "GET");
                        ObjectNode o = JSON.createObjectNode();
                        o.put("status", closing ? "shutting_down" : "ok");
                        o.put("model", opt.modelId());
                        o.put("queued", scheduler.queued());
                        o.put("queue_capacity", scheduler.capacity());
                        o.put("batches", scheduler.batches.get());
                        o.put("requests_done", scheduler.jobsDone.get());
                        o.put("sequences_scored", scheduler.scoredSequences.get());
                        o.put("running", scheduler.running());
                        o.put("kv_slots", engine.model().slots());
                        o.put("prefills", scheduler.prefills.get());
                        o.put("decode_steps", scheduler.decodeSteps.get());
                        o.put("decoded_tokens", scheduler.decodedTokens.get());
                        o.put("generated_tokens", scheduler.generatedTokens.get());
                        send(ex, closing ? 503 : 200, o);
                    }
                    case "/v1/models" -> {
                        requireMethod(method, "GET");
                        ObjectNode o = JSON.createObjectNode();
                        o.put("object", "list");
                        ObjectNode m = o.putArray("data").addObject();
                        m.put("id", opt.modelId());
                        m.put("object", "model");
                        m.put("created", 0);
                        m.put("owned_by", "midtrain");
                        m.put("max_model_len", engine.config().maxSeqLen());
                        send(ex, 200, o);
                    }
                    case "/v1/completions", "/v1/chat/completions" -> {
                        requireMethod(method, "POST");
                        boolean isChat = path.endsWith("chat/completions");
                        JsonNode body = readJson(ex);
                        CompletionRequest req = isChat ? CompletionRequest.chat(body, opt.maxNewTokens(), chat)
                                : CompletionRequest.completion(body, opt.maxNewTokens());
                        Scheduler.Job job = new Scheduler.Job(req, (isChat ? "chatcmpl-" : "cmpl-") + ids.incrementAndGet(), opt.modelId());
                        if (!scheduler.offer(job))
                            throw new ApiError(429, "rate_limit_exceeded", null, "the request queue is full (" + scheduler.capacity() + " waiting); retry later");
                        if (req.stream()) streamEvents(ex, job);
                        else send(ex, 200, await(job));
                    }
                    default -> throw new ApiError(404, "not_found", null, "no route " + path
                            + " (routes: /v1/completions, /v1/chat/completions, /v1/models, /health)");
                }
            } catch (ApiError e) {
                sendError(ex, e);
            } catch (RuntimeException e) {
                sendError(ex, new ApiError(500, "server_error", null, "internal error: " + e));
            }
        } catch (IOException e) {
            // the client went away; nothing to answer
        }
    }

    private static void requireMethod(String method, String want) {
        if (!method.equals(want)) throw new ApiError(405, "method_not_allowed", null, method + " not allowed here; use " + want);
    }

    private static ObjectNode await(Scheduler.Job job) {
        try {
            return job.result.get();
        } catch (ExecutionException e) {
            if (e.getCause() instanceof ApiError a) throw a;
            throw new ApiError(500, "server_error", null, "inference failed: " + e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ApiError(503, "server_shutting_down", null, "interrupted");
        }
    }

    /** Server-sent events: one "data: {chunk}" per piece of text, then "data: [DONE]". */
    private static void streamEvents(HttpExchange ex, Scheduler.Job job) throws IOException {
        Object first = take(job);
        if (first instanceof ApiError e) throw e;             // refused before anything was generated: a plain error
        ex.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
        ex.getResponseHeaders().set("Cache-Control", "no-cache");
        ex.sendResponseHeaders(200, 0);
        OutputStream out = ex.getResponseBody();
        try {
            for (Object ev = first; ev != Scheduler.END; ev = take(job)) {
                if (ev instanceof ApiError e) {
                    out.write(("data: " + JSON.writeValueAsString(errorBody(e)) + "\n\n").getBytes(StandardCharsets.UTF_8));
                    break;
                }
                out.write(("data: " + JSON.writeValueAsString(ev) + "\n\n").getBytes(StandardCharsets.UTF_8));
                out.flush();
            }
            out.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException e) {
            job.cancelled = true;                               // the generation stops at its next token
            throw e;
        }
    }

    private static Object take(Scheduler.Job job) {
        try {
            return job.events.take();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            job.cancelled = true;
            return new ApiError(503, "server_shutting_down", null, "interrupted");
        }
    }

    // ====================================================================================================== I/O

    private JsonNode readJson(HttpExchange ex) throws IOException {
        String len = ex.getRequestHeaders().getFirst("Content-Length");
        if (len != null) {
            long n;
            try {
                n = Long.parseLong(len.trim());
            } catch (NumberFormatException e) {
                throw ApiError.badRequest(null, "Content-Length: not a number");
            }
            if (n > opt.maxBodyBytes()) throw tooLarge(n);
        }
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        try (InputStream in = ex.getRequestBody()) {
            byte[] b = new byte[8192];
            for (int r; (r = in.read(b)) > 0; ) {
                buf.write(b, 0, r);
                if (buf.size() > opt.maxBodyBytes()) throw tooLarge(buf.size());
            }
        }
        if (buf.size() == 0) throw ApiError.badRequest(null, "empty body; expected a JSON object");
        JsonNode body;
        try {
            body = JSON.readTree(buf.toByteArray());
        } catch (JsonProcessingException e) {
            throw ApiError.badRequest(null, "malformed JSON: " + e.getOriginalMessage());
        }
        if (body == null || !body.isObject()) throw ApiError.badRequest(null, "expected a JSON object");
        return body;
    }

    private ApiError tooLarge(long n) {
        return new ApiError(413, "request_too_large", null, "request body of " + n + " bytes exceeds the limit of " + opt.maxBodyBytes()
                + " bytes (--max-body-bytes)");
    }

    private static ObjectNode errorBody(ApiError e) {
        ObjectNode o = JSON.createObjectNode();
        ObjectNode err = o.putObject("error");
        err.put("message", e.getMessage());
        err.put("type", e.type);
        if (e.param != null) err.put("param", e.param); else err.putNull("param");
        err.put("code", e.status);
        return o;
    }

    private static void sendError(HttpExchange ex, ApiError e) throws IOException {
        if (e.status == 413 || e.status == 429 || e.status == 503) ex.getResponseHeaders().set("Connection", "close");
        if (e.status == 429) ex.getResponseHeaders().set("Retry-After", "1");
        send(ex, e.status, errorBody(e));
    }

    private static void send(HttpExchange ex, int status, ObjectNode body) throws IOException {
        byte[] b = JSON.writeValueAsBytes(body);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, b.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(b);
        }
    }
}
