package dev.midtrain.synth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.midtrain.common.UserError;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * A local OpenAI-compatible endpoint that answers from recorded responses, so the synthesis stage of a recipe runs
 * on a laptop (a tiny model cannot write the JSON the pipeline asks for). responses.jsonl has one object per line:
 * {@code {"model": M, "match": [substrings...], "content": "the assistant message"}}; a chat-completions request is
 * answered by the first entry with its model whose substrings all occur in the request's messages, with HTTP 400
 * when none does (the pipeline rejects that record as permanent). {@code GET /v1/models} answers 200. Each answer
 * waits {@code delayMs} first (a real server's latency; lets a test kill a run mid-stage). Bound to 127.0.0.1 on a
 * free port; {@link #baseUrl()} is what endpoint.base_url must be.
 */
public final class RecordedServer implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final HttpServer server;
    private final ExecutorService pool;
    private final List<JsonNode> entries = new ArrayList<>();
    private final long delayMs;

    public RecordedServer(Path responses, long delayMs) {
        this.delayMs = delayMs;
        try {
            List<String> lines = Files.readAllLines(responses);
            for (int i = 0; i < lines.size(); i++) {
                if (lines.get(i).isBlank()) continue;
                JsonNode e;
                try {
                    e = JSON.readTree(lines.get(i));
                } catch (IOException ex) {
                    throw new UserError(responses + ":" + (i + 1) + ": not JSON");
                }
                if (!e.path("model").isTextual() || !e.path("match").isArray() || !e.path("content").isTextual())
                    throw new UserError(responses + ":" + (i + 1) + ": expected {\"model\", \"match\": [...], \"content\"}");
                entries.add(e);
            }
            server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 64);
        } catch (java.nio.file.NoSuchFileException e) {
            throw new UserError(responses + ": recorded responses not found");
        } catch (IOException e) {
            throw new UserError(responses + ": " + e.getMessage());
        }
        pool = Executors.newFixedThreadPool(4, r -> {
            Thread t = new Thread(r, "recorded-endpoint");
            t.setDaemon(true);
            return t;
        });
        server.setExecutor(pool);
        server.createContext("/v1/chat/completions", this::complete);
        server.createContext("/v1/models", ex -> send(ex, 200, "{\"object\": \"list\", \"data\": []}"));
        server.start();
    }

    public String baseUrl() { return "http://127.0.0.1:" + server.getAddress().getPort() + "/v1"; }

    private void complete(HttpExchange ex) throws IOException {
        JsonNode req = JSON.readTree(ex.getRequestBody().readAllBytes());
        String model = req.path("model").asText();
        StringBuilder text = new StringBuilder();
        req.path("messages").forEach(m -> text.append(m.path("content").asText()).append('\n'));
        for (JsonNode e : entries) {
            if (!e.path("model").asText().equals(model)) continue;
            boolean all = true;
            for (JsonNode m : e.path("match")) all &= text.indexOf(m.asText()) >= 0;
            if (!all) continue;
            try {
                Thread.sleep(delayMs);
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
            }
            String content = e.path("content").asText();
            ObjectNode o = JSON.createObjectNode().put("id", "chatcmpl-recorded").put("object", "chat.completion").put("model", model);
            o.putArray("choices").addObject().put("index", 0).put("finish_reason", "stop")
                    .putObject("message").put("role", "assistant").put("content", content);
            o.putObject("usage").put("prompt_tokens", text.length() / 4).put("completion_tokens", content.length() / 4)
                    .put("total_tokens", text.length() / 4 + content.length() / 4);
            send(ex, 200, o.toString());
            return;
        }
        send(ex, 400, "{\"error\": {\"message\": \"no recorded response for this request\"}}");
    }

    private static void send(HttpExchange ex, int code, String body) throws IOException {
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().add("Content-Type", "application/json");
        ex.sendResponseHeaders(code, b.length);
        try (var os = ex.getResponseBody()) {
            os.write(b);
        }
    }

    @Override
    public void close() {
        server.stop(0);
        pool.shutdownNow();
    }
}
