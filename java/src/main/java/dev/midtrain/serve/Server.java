package dev.midtrain.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.infer.Engine;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The OpenAI-compatible HTTP server of {@code midtrain serve}: {@code POST /v1/completions},
 * {@code POST /v1/chat/completions}, {@code GET /v1/models}, {@code GET /health}.
 *
 * <p>HTTP: {@link Http}, this package's HTTP/1.1 transport (keep-alive, chunked bodies and server-sent events), with
 * the limits a server facing slow or hostile clients needs: a cap on open connections (503 beyond it), a deadline
 * for reading each request, an idle timeout between requests and a deadline for each write.
 *
 * <p>Limits: a body above {@code maxBodyBytes} is 413 (checked on Content-Length before reading, and while reading);
 * malformed JSON, an invalid field or a malformed request (Content-Length, chunking) is 400 with an OpenAI-style
 * error object; an unknown model name is OpenAI's 404 (code model_not_found); a full queue ({@link Scheduler}) is
 * 429; after {@link #close} starts, 503.
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
    public record Options(String host, int port, String modelId, int queue, int maxBatch, int maxBodyBytes, int maxNewTokens,
                          int maxConnections, int idleTimeoutSeconds, int readTimeoutSeconds) {
        public static final int MAX_CONNECTIONS = 512, IDLE_TIMEOUT_S = 60, READ_TIMEOUT_S = 30;

        public Options {
            if (port < 0 || port > 65535) throw new IllegalArgumentException("--port: expected 0..65535, got " + port);
            if (queue < 1) throw new IllegalArgumentException("--max-queue: must be >= 1, got " + queue);
            if (maxBatch < 1) throw new IllegalArgumentException("--max-batch: must be >= 1, got " + maxBatch);
            if (maxBodyBytes < 1024) throw new IllegalArgumentException("--max-body-bytes: must be >= 1024, got " + maxBodyBytes);
            if (maxNewTokens < 1) throw new IllegalArgumentException("--max-new-tokens: must be >= 1, got " + maxNewTokens);
            if (maxConnections < 1) throw new IllegalArgumentException("--max-connections: must be >= 1, got " + maxConnections);
            if (idleTimeoutSeconds < 1) throw new IllegalArgumentException("--idle-timeout-seconds: must be >= 1, got " + idleTimeoutSeconds);
            if (readTimeoutSeconds < 1) throw new IllegalArgumentException("--read-timeout-seconds: must be >= 1, got " + readTimeoutSeconds);
        }

        /** The default connection limits ({@link #MAX_CONNECTIONS}, {@link #IDLE_TIMEOUT_S}, {@link #READ_TIMEOUT_S}). */
        public Options(String host, int port, String modelId, int queue, int maxBatch, int maxBodyBytes, int maxNewTokens) {
            this(host, port, modelId, queue, maxBatch, maxBodyBytes, maxNewTokens, MAX_CONNECTIONS, IDLE_TIMEOUT_S, READ_TIMEOUT_S);
        }

        Http.Limits limits() {
            return new Http.Limits(maxConnections, idleTimeoutSeconds * 1000L, readTimeoutSeconds * 1000L, readTimeoutSeconds * 1000L, maxBodyBytes);
        }
    }

    private final Engine engine;
    private final Options opt;
    private final ChatTemplate chat;
    private final Scheduler scheduler;
    private final OpenAiFormat format;
    private final Http http;
    private final AtomicLong ids = new AtomicLong();
    private volatile boolean closing;

    Server(Engine engine, ChatTemplate chat, Options opt) throws IOException {
        this.engine = engine;
        this.opt = opt;
        this.chat = chat;
        this.scheduler = new Scheduler(engine, opt.queue(), opt.maxBatch());
        this.format = new OpenAiFormat(engine::decode);
        this.http = new Http(opt.host(), opt.port(), opt.limits(), this::handle, JSON.writeValueAsBytes(errorBody(
                new ApiError(503, "server_busy", null, "too many open connections (" + opt.maxConnections() + ", --max-connections); retry later"))));
    }

    /**
     * Starts serving {@code engine}; the chat template comes from {@code tokenizer_config.json} in the first of
     * {@code templateDirs} that has one (else the built-in Llama-3 format).
     */
    public static Server start(Engine engine, java.util.List<java.nio.file.Path> templateDirs, Options opt) throws IOException {
        return new Server(engine, ChatTemplate.find(templateDirs), opt);
    }

    public int port() { return http.port(); }

    /** Connections open now (tests). */
    int openConnections() { return http.openConnections(); }

    /** Where the chat template came from (for the startup line). */
    public String chatTemplateSource() { return chat.source; }

    Scheduler scheduler() { return scheduler; }

    /**
     * Clean shutdown: new requests get 503, queued and running ones finish (at most {@code graceSeconds}; 0: none,
     * they are answered 503 at once), then the listener and every connection close. Does not close the engine.
     */
    public void close(int graceSeconds) {
        closing = true;
        scheduler.close(graceSeconds * 1000L);                 // every queued request answered (or 503 after the grace)
        http.close();                                          // the answers are written by now
    }

    @Override
    public void close() { close(10); }

    // ================================================================================================== routing

    private void handle(Http.Exchange ex) throws IOException {
        try {
            if (ex.error() != null) {                          // malformed at the HTTP level: answered in JSON
                Http.Failure f = ex.error();
                throw new ApiError(f.status(), f.status() == 413 ? "request_too_large" : "invalid_request_error", null, f.message());
            }
            String path = ex.path(), method = ex.method();
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
                    JsonNode model = body.get("model");
                    if (model != null && !model.isNull() && !model.asText().equals(opt.modelId()))
                        throw ApiError.unknownModel(model.isTextual() ? model.asText() : model.toString(), opt.modelId());
                    CompletionRequest req = isChat ? CompletionRequest.chat(body, opt.maxNewTokens(), chat)
                            : CompletionRequest.completion(body, opt.maxNewTokens());
                    Scheduler.Job job = new Scheduler.Job(req, (isChat ? "chatcmpl-" : "cmpl-") + ids.incrementAndGet(), opt.modelId());
                    if (!scheduler.offer(job))
                        throw new ApiError(429, "rate_limit_exceeded", null, "the request queue is full (" + scheduler.capacity() + " waiting); retry later");
                    if (req.stream()) streamEvents(ex, job);
                    else send(ex, 200, format.completion(job, await(job)));
                }
                default -> throw new ApiError(404, "not_found", null, "no route " + path
                        + " (routes: /v1/completions, /v1/chat/completions, /v1/models, /health)");
            }
        } catch (ApiError e) {
            sendError(ex, e);
        } catch (RuntimeException e) {
            sendError(ex, new ApiError(500, "server_error", null, "internal error: " + e));
        }
    }

    private static void requireMethod(String method, String want) {
        if (!method.equals(want)) throw new ApiError(405, "method_not_allowed", null, method + " not allowed here; use " + want);
    }

    private static Scheduler.Completion await(Scheduler.Job job) {
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

    /** Server-sent events: one "data: {chunk}" per event that sends one, then "data: [DONE]". */
    private void streamEvents(Http.Exchange ex, Scheduler.Job job) throws IOException {
        Scheduler.Event first = take(job);
        if (first instanceof Scheduler.Failed f) throw f.error();   // refused before anything was generated: a plain error
        OutputStream out = ex.startStream(200, "text/event-stream; charset=utf-8", Map.of("Cache-Control", "no-cache"));
        try {
            for (Scheduler.Event ev = first; ; ev = take(job)) {
                ObjectNode chunk = format.chunk(job, ev);
                if (chunk != null) {
                    out.write(("data: " + JSON.writeValueAsString(chunk) + "\n\n").getBytes(StandardCharsets.UTF_8));
                    out.flush();
                }
                if (ev instanceof Scheduler.Done || ev instanceof Scheduler.Failed) break;
            }
            out.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
            out.close();
        } catch (IOException e) {
            job.cancelled = true;                               // the generation stops at its next token
            throw e;
        }
    }

    private static Scheduler.Event take(Scheduler.Job job) {
        try {
            return job.events.take();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            job.cancelled = true;
            return new Scheduler.Failed(new ApiError(503, "server_shutting_down", null, "interrupted"));
        }
    }

    // ====================================================================================================== I/O

    private JsonNode readJson(Http.Exchange ex) {
        byte[] buf = ex.body();                                // Content-Length, chunking and --max-body-bytes checked by Http
        if (buf.length == 0) throw ApiError.badRequest(null, "empty body; expected a JSON object");
        JsonNode body;
        try {
            body = JSON.readTree(buf);
        } catch (JsonProcessingException e) {
            throw ApiError.badRequest(null, "malformed JSON: " + e.getOriginalMessage());
        } catch (IOException e) {                              // reading a byte array: only malformed input
            throw ApiError.badRequest(null, "malformed JSON: " + e.getMessage());
        }
        if (body == null || !body.isObject()) throw ApiError.badRequest(null, "expected a JSON object");
        return body;
    }

    private static ObjectNode errorBody(ApiError e) { return OpenAiFormat.errorBody(e); }

    private static void sendError(Http.Exchange ex, ApiError e) throws IOException {
        if (e.status == 413 || e.status == 429 || e.status == 503) ex.close();
        send(ex, e.status, errorBody(e), e.status == 429 ? Map.of("Retry-After", "1") : Map.of());
    }

    private static void send(Http.Exchange ex, int status, ObjectNode body) throws IOException {
        send(ex, status, body, Map.of());
    }

    private static void send(Http.Exchange ex, int status, ObjectNode body, Map<String, String> extra) throws IOException {
        ex.send(status, "application/json", extra, JSON.writeValueAsBytes(body));
    }
}
