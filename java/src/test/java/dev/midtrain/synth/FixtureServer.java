package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;

/**
 * A local OpenAI-compatible /v1/chat/completions server answering from recorded responses (responses.jsonl, written
 * by make_fixtures.py). A request is answered by the entry with its model whose "match" substrings all occur in the
 * request's messages; the entry's "faults" are served first, one per attempt: 429 (Retry-After: 1), 500, slow (no
 * answer for {@code slowMs}), drop (connection closed without a response); a server made without faults skips them.
 * Bound to 127.0.0.1 on a free port.
 */
final class FixtureServer implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final HttpServer server;
    private final ExecutorService pool = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "fixture-server");
        t.setDaemon(true);
        return t;
    });
    private final List<JsonNode> entries = new ArrayList<>();
    private final Map<Integer, AtomicInteger> attempts = new ConcurrentHashMap<>();
    final Map<String, LongAdder> served = new ConcurrentHashMap<>();   // fault or "ok" / "no_match" -> count
    final Map<String, LongAdder> authHeaders = new ConcurrentHashMap<>();
    final java.util.Set<String> bodyHashes = ConcurrentHashMap.newKeySet();   // SHA-256 of every 200 body sent
    volatile long delayMs = 0;
    private final long slowMs;

    private final boolean faults;

    FixtureServer(Path responses, long slowMs, boolean faults) throws IOException {
        this.slowMs = slowMs;
        this.faults = faults;
        for (String l : Files.readAllLines(responses)) if (!l.isBlank()) entries.add(JSON.readTree(l));
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 64);
        server.setExecutor(pool);
        server.createContext("/v1/chat/completions", this::handle);
        server.start();
    }

    String baseUrl() { return "http://127.0.0.1:" + server.getAddress().getPort() + "/v1"; }

    long served(String what) {
        LongAdder a = served.get(what);
        return a == null ? 0 : a.sum();
    }

    private void count(String what) { served.computeIfAbsent(what, k -> new LongAdder()).increment(); }

    private void handle(HttpExchange ex) throws IOException {
        JsonNode req = JSON.readTree(ex.getRequestBody().readAllBytes());
        String auth = ex.getRequestHeaders().getFirst("Authorization");
        authHeaders.computeIfAbsent(auth == null ? "(none)" : auth, k -> new LongAdder()).increment();
        String model = req.path("model").asText();
        StringBuilder text = new StringBuilder();
        req.path("messages").forEach(m -> text.append(m.path("content").asText()).append('\n'));
        int found = -1;
        for (int i = 0; i < entries.size() && found < 0; i++) {
            JsonNode e = entries.get(i);
            if (!e.path("model").asText().equals(model)) continue;
            boolean all = true;
            for (JsonNode m : e.path("match")) all &= text.indexOf(m.asText()) >= 0;
            if (all) found = i;
        }
        if (found < 0) {
            count("no_match");
            send(ex, 400, "{\"error\": {\"message\": \"no recorded response\"}}");
            return;
        }
        JsonNode e = entries.get(found);
        int attempt = attempts.computeIfAbsent(found, k -> new AtomicInteger()).getAndIncrement();
        if (faults && attempt < e.path("faults").size()) {
            String fault = e.path("faults").get(attempt).asText();
            count(fault);
            switch (fault) {
                case "429" -> {
                    ex.getResponseHeaders().add("Retry-After", "1");
                    send(ex, 429, "{\"error\": {\"message\": \"rate limited\"}}");
                }
                case "500" -> send(ex, 500, "{\"error\": {\"message\": \"internal error\"}}");
                case "slow" -> {
                    sleep(slowMs);
                    send(ex, 200, completion(model, text.length(), e.path("content").asText()));
                }
                case "drop" -> throw new IOException("fixture: dropping the connection");   // the server closes it unanswered
                default -> throw new IllegalStateException("unknown fault " + fault);
            }
            return;
        }
        sleep(delayMs);
        count("ok");
        send(ex, 200, e.has("body") ? e.get("body").asText() : completion(model, text.length(), e.path("content").asText()));
    }

    private static String completion(String model, int promptChars, String content) {
        ObjectNode o = JSON.createObjectNode().put("id", "chatcmpl-fixture").put("object", "chat.completion").put("model", model);
        o.putArray("choices").addObject().put("index", 0).put("finish_reason", "stop")
                .putObject("message").put("role", "assistant").put("content", content);
        o.putObject("usage").put("prompt_tokens", promptChars / 4).put("completion_tokens", content.length() / 4)
                .put("total_tokens", promptChars / 4 + content.length() / 4);
        return o.toString();
    }

    private void send(HttpExchange ex, int code, String body) throws IOException {
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        if (code == 200) bodyHashes.add(Templates.Hashes.sha256(b));
        ex.getResponseHeaders().add("Content-Type", "application/json");
        ex.sendResponseHeaders(code, b.length);
        try (var os = ex.getResponseBody()) {
            os.write(b);
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException ignored) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void close() {
        server.stop(0);
        pool.shutdownNow();
    }
}
