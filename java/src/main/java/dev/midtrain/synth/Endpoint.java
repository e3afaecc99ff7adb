package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Client of an OpenAI-compatible chat-completions endpoint (vLLM, SGLang, `midtrain serve`, a hosted API).
 *
 * <p>Contract of {@link #complete}: one logical request, sent until it gets an HTTP 200 or fails for good. Retried
 * (at most endpoint.max_retries times, counted in {@link Stats} as retry.CAUSE): HTTP 429 (waiting at least the
 * server's Retry-After, seconds or HTTP date), HTTP 5xx, a response not complete within request_timeout_s, and a
 * dropped or refused connection. The wait before retry k (k = 0, 1, ...) is "equal jitter" exponential backoff:
 * d = min(backoff_max_ms, backoff_initial_ms * 2^k), wait uniform in [d/2, d]. Other 4xx are not retried: 401/403/404
 * mean the endpoint or model is misconfigured and abort the stage ({@link UserError}); 408 is retried as a timeout;
 * any other 4xx (a prompt too long, a field the server refuses) is permanent for that request and rejects the record.
 * Rate limits (requests/s, tokens/min) are applied before every attempt. The API key goes only into the
 * Authorization header; it is never logged, written, or put into an exception message. Thread-safe.
 */
public final class Endpoint {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final SynthConfig.Endpoint cfg;
    private final String apiKey;
    private final HttpClient http;
    private final RateLimiter limiter;
    private final Stats stats;

    /** A 200 response: the assistant message's content, the raw body, the SHA-256 of its bytes and the usage the server reported. */
    public record Reply(String content, String rawBody, String sha256, long promptTokens, long completionTokens) {}

    /**
     * The request failed: retries exhausted ({@link #permanent} false: worth another run) or a 4xx the server will
     * give this request again (permanent: the record is rejected with {@link #reason}, e.g. http_400 for a prompt too long).
     */
    public static final class Failure extends Exception {
        final String reason;
        final boolean permanent;

        Failure(String reason, boolean permanent, String message) {
            super(message);
            this.reason = reason;
            this.permanent = permanent;
        }
    }

    /** A 200 response whose body is not a chat completion; {@link #sha256} is the hash of its bytes. */
    public static final class MalformedResponse extends Exception {
        final String sha256;

        MalformedResponse(String message, String sha256) {
            super(message);
            this.sha256 = sha256;
        }
    }

    public Endpoint(SynthConfig.Endpoint cfg, String apiKey, Stats stats) {
        this.cfg = cfg;
        this.apiKey = apiKey == null || apiKey.isBlank() ? null : apiKey;
        this.stats = stats;
        this.limiter = new RateLimiter(cfg.maxRequestsPerS(), cfg.maxTokensPerMin());
        this.http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofMillis((long) (cfg.connectTimeoutS() * 1000))).build();
    }

    /** Sends one chat completion for {@code stage} (its base_url or the endpoint's) and returns the 200 reply. */
    public Reply complete(SynthConfig.Stage stage, String system, String user, long seed) throws Failure, MalformedResponse, InterruptedException {
        ObjectNode body = JSON.createObjectNode();
        body.put("model", stage.model());
        var msgs = body.putArray("messages");
        msgs.addObject().put("role", "system").put("content", system);
        msgs.addObject().put("role", "user").put("content", user);
        body.put("temperature", stage.temperature());
        body.put("top_p", stage.topP());
        body.put("max_tokens", stage.maxTokens());
        body.put("seed", seed);
        if (cfg.jsonMode()) body.putObject("response_format").put("type", "json_object");
        String payload = body.toString();
        String base = stage.baseUrl() != null ? stage.baseUrl() : cfg.baseUrl();
        URI uri = URI.create(base + "/chat/completions");
        long estTokens = (system.length() + user.length()) / 4 + stage.maxTokens();
        HttpRequest.Builder rb = HttpRequest.newBuilder(uri).timeout(Duration.ofMillis((long) (cfg.requestTimeoutS() * 1000)))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(payload, StandardCharsets.UTF_8));
        if (apiKey != null) rb.header("Authorization", "Bearer " + apiKey);
        HttpRequest req = rb.build();
        String lastError = "";
        for (int attempt = 0; ; attempt++) {
            limiter.acquire(estTokens);
            stats.inc("requests");
            long retryAfterMs = 0;
            String cause;
            try {
                HttpResponse<byte[]> r = http.send(req, HttpResponse.BodyHandlers.ofByteArray());
                int code = r.statusCode();
                if (code == 200) {
                    Reply reply = parse(r.body());
                    limiter.correct(reply.promptTokens() + reply.completionTokens() - estTokens);
                    stats.add("tokens.prompt", reply.promptTokens());
                    stats.add("tokens.completion", reply.completionTokens());
                    return reply;
                }
                lastError = "HTTP " + code + " from " + uri;
                if (code == 429) {
                    cause = "http_429";
                    retryAfterMs = retryAfterMs(r.headers().firstValue("Retry-After").orElse(null));
                } else if (code >= 500) {
                    cause = "http_5xx";
                } else if (code == 401 || code == 403 || code == 404) {
                    stats.inc("failed.http_" + code);
                    throw new UserError(uri + ": HTTP " + code + " for model " + stage.model()
                            + (code == 404 ? " (wrong base_url or model name?)" : " (is $" + cfg.apiKeyEnv() + " set?)"), 1, null);
                } else if (code == 408) {
                    cause = "timeout";
                } else {
                    throw new Failure("http_" + code, true, "HTTP " + code + " from " + uri + ": "
                            + Templates.trim(new String(r.body(), StandardCharsets.UTF_8).strip(), 200));
                }
            } catch (HttpTimeoutException e) {
                cause = "timeout";
                lastError = "no complete response within " + cfg.requestTimeoutS() + " s from " + uri;
            } catch (IOException e) {
                cause = "io_error";
                lastError = "connection to " + uri + " failed: " + e.getClass().getSimpleName() + (e.getMessage() == null ? "" : " " + e.getMessage());
            }
            if (attempt >= cfg.maxRetries()) {
                stats.inc("failed.retries_exhausted");
                throw new Failure("retries_exhausted", false, lastError + " (after " + (attempt + 1) + " attempts)");
            }
            stats.inc("retry." + cause);
            long d = Math.min(cfg.backoffMaxMs(), cfg.backoffInitialMs() << Math.min(attempt, 30));
            long wait = d / 2 + (d > 1 ? ThreadLocalRandom.current().nextLong(d - d / 2 + 1) : 0);
            Thread.sleep(Math.max(wait, retryAfterMs));
        }
    }

    /**
     * Checks once, before a stage sends anything, that the server at {@code baseUrl} accepts connections (GET /models;
     * any HTTP status will do, some servers lack the route). A refused or timed-out connection is a one-line error
     * (exit 1) instead of every record spending its retries on a server that is not there.
     */
    public void probe(String baseUrl) throws InterruptedException {
        HttpRequest.Builder rb = HttpRequest.newBuilder(URI.create(baseUrl + "/models")).timeout(Duration.ofMillis((long) (cfg.connectTimeoutS() * 1000))).GET();
        if (apiKey != null) rb.header("Authorization", "Bearer " + apiKey);
        try {
            http.send(rb.build(), HttpResponse.BodyHandlers.discarding());
        } catch (IOException e) {
            throw new UserError(baseUrl + ": cannot reach the endpoint (" + e.getClass().getSimpleName()
                    + (e.getMessage() == null ? "" : ": " + e.getMessage()) + "); is the server running? (endpoint.base_url)", 1, null);
        }
    }

    /** The reply in a 200 body; its hash is of the bytes as received (not of a decoded and re-encoded string). */
    static Reply parse(byte[] bytes) throws MalformedResponse {
        String sha = Templates.Hashes.sha256(bytes), raw = new String(bytes, StandardCharsets.UTF_8);
        JsonNode root;
        try {
            root = JSON.readTree(bytes);
        } catch (IOException e) {
            throw new MalformedResponse("body is not JSON", sha);
        }
        JsonNode content = root == null ? null : root.path("choices").path(0).path("message").get("content");
        if (content == null || !content.isTextual()) throw new MalformedResponse("no choices[0].message.content string", sha);
        JsonNode usage = root.path("usage");
        return new Reply(content.asText(), raw, sha, usage.path("prompt_tokens").asLong(0),
                usage.path("completion_tokens").asLong(0));
    }

    /** Retry-After as delay-seconds or an HTTP date; 0 when absent or unparseable. */
    static long retryAfterMs(String v) {
        if (v == null || v.isBlank()) return 0;
        try {
            return Math.max(0, (long) (Double.parseDouble(v.strip()) * 1000));
        } catch (NumberFormatException e) {
            try {
                return Math.max(0, Duration.between(ZonedDateTime.now(), ZonedDateTime.parse(v.strip(), DateTimeFormatter.RFC_1123_DATE_TIME)).toMillis());
            } catch (RuntimeException e2) {
                return 0;
            }
        }
    }

    /**
     * Two token buckets: requests (capacity max(1, rate), refilled at rate/s) and tokens (capacity tokens/min,
     * refilled at tokens/min / 60 per second). A request waits until both hold its share; a reservation larger than
     * the bucket waits for a full bucket. Actual usage corrects the token bucket afterwards (it may go negative).
     */
    static final class RateLimiter {
        private final double rps, tpm;
        private double reqs, toks;
        private long last = System.nanoTime();

        RateLimiter(double requestsPerS, long tokensPerMin) {
            this.rps = requestsPerS;
            this.tpm = tokensPerMin;
            this.reqs = Math.max(1, rps);
            this.toks = tpm;
        }

        void acquire(long tokens) throws InterruptedException {
            if (rps <= 0 && tpm <= 0) return;
            while (true) {
                long waitNs;
                synchronized (this) {
                    refill();
                    double needT = Math.min(tokens, tpm);
                    boolean okR = rps <= 0 || reqs >= 1, okT = tpm <= 0 || toks >= needT;
                    if (okR && okT) {
                        if (rps > 0) reqs -= 1;
                        if (tpm > 0) toks -= tokens;
                        return;
                    }
                    double sR = okR ? 0 : (1 - reqs) / rps, sT = okT ? 0 : (needT - toks) / (tpm / 60.0);
                    waitNs = (long) (Math.max(sR, sT) * 1e9) + 1;
                }
                Thread.sleep(waitNs / 1_000_000, (int) (waitNs % 1_000_000));
            }
        }

        synchronized void correct(long tokens) { if (tpm > 0) toks = Math.min(tpm, toks - tokens); }

        private void refill() {
            long now = System.nanoTime();
            double s = (now - last) / 1e9;
            last = now;
            if (rps > 0) reqs = Math.min(Math.max(1, rps), reqs + s * rps);
            if (tpm > 0) toks = Math.min(tpm, toks + s * tpm / 60.0);
        }
    }
}
