package dev.midtrain.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.eval.Evaluator;
import dev.midtrain.infer.Engine;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletableFuture;

import static dev.midtrain.serve.ServeTest.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The server at its edges, with what other tools really send: lm-evaluation-harness's scoring requests (made by
 * lm-eval 0.4.13's own code, scripts/lmeval/make_requests.py), requests at and past the context limit, unknown model
 * names, malformed Content-Length, clients that send half a request and hold the connection, a cap on connections,
 * a long scoring request beside a short one, and a shutdown with no grace. Loopback only; every wait is bounded.
 */
class ServeEdgesTest {
    private final List<Socket> sockets = Collections.synchronizedList(new ArrayList<>());

    @BeforeAll
    static void setUp() throws Exception { ServeTest.setUp(); }

    @AfterAll
    static void tearDown() { ServeTest.tearDown(); }

    @AfterEach
    void closeSockets() {
        for (Socket s : sockets) try { s.close(); } catch (Exception ignored) { }
    }

    static int[] ints(JsonNode a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).asInt();
        return out;
    }

    @Test
    void lmEvalScoringRequestsAtTheContextLimitScoreLikeEval() throws Exception {
        int Tmax = CFG.maxSeqLen();
        List<String> lines;
        try (InputStream in = ServeEdgesTest.class.getResourceAsStream("/lmeval/requests.jsonl")) {
            lines = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8)).lines().filter(l -> !l.isBlank()).toList();
        }
        int atLimit = 0, truncated = 0;
        for (String line : lines) {
            JsonNode rec = JSON.readTree(line);
            JsonNode payload = rec.get("payload");
            int[] sent = ints(payload.get("prompt").get(0));
            int ctxlen = rec.get("ctxlen").asInt();
            int[] ctx = ints(rec.get("context_tokens")), cont = ints(rec.get("continuation_tokens"));
            JsonNode r = ok(post(server, "/v1/completions", JSON.writeValueAsString(payload)));
            JsonNode choice = r.get("choices").get(0);
            JsonNode lp = choice.get("logprobs").get("token_logprobs");
            // what lm-eval's parse_logprobs reads: one generated token after the echoed prompt, dropped by [ctxlen:-1]
            assertEquals(sent.length + 1, lp.size(), "echoed prompt + 1 generated token, " + sent.length + " tokens sent");
            assertEquals(1, r.get("usage").get("completion_tokens").asInt(), line);
            double ll = 0;
            for (int t = ctxlen; t < lp.size() - 1; t++) ll += lp.get(t).asDouble();
            // the engine's scoring (midtrain eval's) of the same tokens
            double want = engine.score(List.of(new Engine.Request(Arrays.copyOfRange(sent, 0, ctxlen),
                    Arrays.copyOfRange(sent, ctxlen, sent.length)))).get(0).logprob();
            assertEquals(want, ll, 1e-4, "log-likelihood of " + rec.get("continuation"));
            if (sent.length == Tmax) atLimit++;
            if (ctx.length + cont.length > Tmax) truncated++;
            // what midtrain eval scores (BOS + context, the continuation encoded alone) is what lm-eval encoded
            if (!rec.get("context").asText().isEmpty()) {
                assertArrayEquals(engine.encodePrompt(rec.get("context").asText()), ctx, "add_bos_token=True: lm-eval's context = eval's");
                assertArrayEquals(engine.encode(rec.get("continuation").asText()), cont, "continuation tokens");
            }
            // and midtrain eval's window keeps the tokens lm-eval sent, long items included (the same context tokens lost)
            Engine.Request kept = Evaluator.window(new Engine.Request(ctx, cont), Tmax);
            assertEquals(ctxlen, kept.context().length, "context tokens kept of " + rec.get("continuation"));
            int[] evalTokens = Arrays.copyOf(kept.context(), kept.context().length + kept.continuation().length);
            System.arraycopy(kept.continuation(), 0, evalTokens, kept.context().length, kept.continuation().length);
            assertArrayEquals(sent, evalTokens, "tokens eval scores = tokens lm-eval sent, " + (ctx.length + cont.length) + "-token item");
            double eval = Evaluator.score(engine, List.of(new Engine.Request(ctx, cont))).get(0).logprob();
            assertEquals(eval, ll, 1e-4, "midtrain eval's log-likelihood = lm-eval's, " + (ctx.length + cont.length) + "-token item");
        }
        assertTrue(atLimit >= 3 && truncated >= 2, "the stream reaches the context limit: " + atLimit + " at it, " + truncated + " truncated");
    }

    @Test
    void promptsPastTheContextAreRefusedWithTheLimitOrScoredWhenTheyFit() throws Exception {
        int Tmax = CFG.maxSeqLen();
        List<Integer> full = new ArrayList<>();
        for (int i = 0; i < Tmax + 2; i++) full.add(5 + (i * 7) % 400);
        // max_seq_len tokens + 1 generated: the last position's logits give the token
        JsonNode a = ok(post("/v1/completions", obj("prompt", full.subList(0, Tmax), "echo", true, "max_tokens", 1, "logprobs", 1, "temperature", 0)));
        assertEquals(1, a.get("usage").get("completion_tokens").asInt());
        assertEquals(Tmax + 1, a.get("choices").get(0).get("logprobs").get("token_logprobs").size());
        // max_seq_len + 1 tokens: scored with max_tokens 0, refused naming the limit with max_tokens 1
        JsonNode b = ok(post("/v1/completions", obj("prompt", full.subList(0, Tmax + 1), "echo", true, "max_tokens", 0, "logprobs", 0)));
        assertEquals(0, b.get("usage").get("completion_tokens").asInt());
        assertEquals(Tmax + 1, b.get("choices").get(0).get("logprobs").get("token_logprobs").size());
        HttpResponse<String> c = post("/v1/completions", obj("prompt", full.subList(0, Tmax + 1), "echo", true, "max_tokens", 1, "logprobs", 1));
        refused(c, 400, "prompt");
        String msg = JSON.readTree(c.body()).get("error").get("message").asText();
        assertTrue(msg.contains("context of " + Tmax + " tokens") && msg.contains("max_length=" + (Tmax + 1)), msg);
        refused(post("/v1/completions", obj("prompt", full.subList(0, Tmax + 2), "echo", true, "max_tokens", 0, "logprobs", 0)), 400, "prompt");
    }

    @Test
    void anUnknownModelIsOpenAisNotFoundAndAMalformedContentLengthIsJson400() throws Exception {
        HttpResponse<String> r = post("/v1/completions", obj("model", "gpt-4o", "prompt", "hi", "max_tokens", 1));
        assertEquals(404, r.statusCode(), r.body());
        JsonNode e = JSON.readTree(r.body()).get("error");
        assertEquals("model_not_found", e.get("code").asText());
        assertEquals("invalid_request_error", e.get("type").asText());
        assertTrue(e.get("message").asText().contains("gpt-4o"), r.body());
        for (String len : new String[]{"abc", "-5", "1e3", "99999999999999999999"}) {
            String answer = raw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + len
                    + "\r\n\r\n{\"prompt\": \"hi\"}");
            assertTrue(answer.startsWith("HTTP/1.1 400 "), len + ": " + answer);
            JsonNode err = JSON.readTree(answer.substring(answer.indexOf("\r\n\r\n") + 4)).get("error");
            assertTrue(err.get("message").asText().contains("Content-Length"), answer);
            assertEquals(400, err.get("code").asInt());
        }
        // JSON nested deeper than the parser allows: a 400, not a dead connection thread
        refused(post(server, "/v1/completions", "{\"prompt\": " + "[".repeat(2000) + "]".repeat(2000) + "}"), 400, null);
        ok(get("/health"));
    }

    /** One raw request on a fresh connection; the whole answer (the server closes after an error). */
    String raw(String request) throws Exception {
        try (Socket s = new Socket("127.0.0.1", server.port())) {
            s.setSoTimeout(5000);
            s.getOutputStream().write(request.getBytes(StandardCharsets.UTF_8));
            return new String(s.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    /** A connection that sent the head of a request promising 200 body bytes, and 5 of them; held open. */
    Socket halfRequest(Server s) throws Exception {
        Socket k = new Socket("127.0.0.1", s.port());
        sockets.add(k);
        OutputStream out = k.getOutputStream();
        out.write("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{\"pro".getBytes(StandardCharsets.US_ASCII));
        out.flush();
        return k;
    }

    @Test
    void twoHundredHeldHalfRequestsLeaveANormalRequestAnsweredWithinASecond() throws Exception {
        try (Server s = new Server(engine, ChatTemplate.builtIn(), new Server.Options("127.0.0.1", 0, "tiny", 32, 16, 4096, 64, 512, 60, 2))) {
            List<Socket> held = new ArrayList<>();
            for (int i = 0; i < 200; i++) held.add(halfRequest(s));
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (s.openConnections() < 200 && System.nanoTime() < deadline) Thread.sleep(10);
            assertEquals(200, s.openConnections(), "all 200 held connections accepted");
            long t0 = System.nanoTime();
            JsonNode r = ok(post(s, "/v1/completions", JSON.writeValueAsString(obj("prompt", "Water", "max_tokens", 4, "temperature", 0))));
            double seconds = (System.nanoTime() - t0) / 1e9;
            assertEquals(4, r.get("usage").get("completion_tokens").asInt());
            assertTrue(seconds < 1.0, "answered in " + seconds + " s beside 200 held connections");
            System.out.printf("a 4-token request beside 200 held half-requests: %.3f s%n", seconds);
            // --read-timeout-seconds 2: the server closes every held connection (bounded wait: 6 s)
            Socket k = held.get(0);
            k.setSoTimeout(6000);
            long t1 = System.nanoTime();
            try {
                assertEquals(-1, k.getInputStream().read(), "closed without an answer");
            } catch (SocketTimeoutException e) {
                fail("a half request held past the read timeout");
            } catch (java.net.SocketException reset) {
                // closed: a reset is the same news
            }
            double closedAfter = (System.nanoTime() - t1) / 1e9;
            deadline = System.nanoTime() + 3_000_000_000L;                 // left: the client's kept-alive connection
            while (s.openConnections() > 1 && System.nanoTime() < deadline) Thread.sleep(20);
            assertTrue(s.openConnections() <= 1, "every held connection closed by the read timeout: " + s.openConnections() + " open");
            System.out.printf("held connections closed %.1f s later (read timeout 2 s)%n", closedAfter);
        }
    }

    @Test
    void beyondTheConnectionCapTheServerAnswers503AtOnce() throws Exception {
        try (Server s = new Server(engine, ChatTemplate.builtIn(), new Server.Options("127.0.0.1", 0, "tiny", 32, 16, 4096, 64, 8, 60, 30))) {
            for (int i = 0; i < 8; i++) halfRequest(s);
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (s.openConnections() < 8 && System.nanoTime() < deadline) Thread.sleep(10);
            long t0 = System.nanoTime();
            HttpResponse<String> r = post(s, "/v1/completions", JSON.writeValueAsString(obj("prompt", "Water", "max_tokens", 2)));
            assertEquals(503, r.statusCode(), r.body());
            assertEquals("server_busy", JSON.readTree(r.body()).get("error").get("type").asText());
            assertTrue((System.nanoTime() - t0) / 1e9 < 2.0);
            for (Socket k : sockets) k.close();
            deadline = System.nanoTime() + 3_000_000_000L;
            while (s.openConnections() > 0 && System.nanoTime() < deadline) Thread.sleep(10);
            ok(post(s, "/v1/completions", JSON.writeValueAsString(obj("prompt", "Water", "max_tokens", 2))));   // room again
        }
    }

    @Test
    void graceZeroStopsNowAndAnswersWhatWasQueued503() throws Exception {
        Server s = new Server(engine, ChatTemplate.builtIn(), new Server.Options("127.0.0.1", 0, "tiny", 4, 4, 4096, 64));
        s.scheduler().pause(true);
        String body = JSON.writeValueAsString(obj("prompt", "Plants", "max_tokens", 64, "temperature", 0));
        CompletableFuture<HttpResponse<String>> queued = http.sendAsync(java.net.http.HttpRequest.newBuilder(uri(s, "/v1/completions"))
                .POST(java.net.http.HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (s.scheduler().queued() < 1 && System.nanoTime() < deadline) Thread.sleep(10);
        long t0 = System.nanoTime();
        Thread closer = new Thread(() -> s.close(0));
        closer.start();
        closer.join(5000);
        double seconds = (System.nanoTime() - t0) / 1e9;
        assertFalse(closer.isAlive(), "close(0) returned");
        assertTrue(seconds < 2.0, "--grace-seconds 0 stopped in " + seconds + " s");
        try {
            HttpResponse<String> r = queued.get(5, java.util.concurrent.TimeUnit.SECONDS);
            assertEquals(503, r.statusCode(), r.body());
        } catch (java.util.concurrent.ExecutionException closedFirst) {
            // the connection closed before the 503 was read: also "not served", never a late answer
        }
    }

    @Test
    void aShortRequestIsNotHeldBehindALongScoringRequest() throws Exception {
        // 256 prompts of 190 tokens, echo-only: ~48,600 scored tokens (64 model passes of 768 tokens on this model)
        List<List<Integer>> prompts = new ArrayList<>();
        java.util.Random rnd = new java.util.Random(5);
        for (int p = 0; p < 256; p++) {
            List<Integer> ids = new ArrayList<>();
            for (int t = 0; t < 190; t++) ids.add(rnd.nextInt(500));
            prompts.add(ids);
        }
        String longBody = JSON.writeValueAsString(scoring(prompts));
        try (Server server = new Server(engine, ChatTemplate.builtIn(), new Server.Options("127.0.0.1", 0, "tiny", 32, 16, 1 << 20, 64))) {
        long t0 = System.nanoTime();
        ok(post(server, "/v1/completions", longBody));
        double alone = (System.nanoTime() - t0) / 1e9;
        long passesBefore = server.scheduler().scoringPasses.get();
        long[] doneAt = new long[2];
        t0 = System.nanoTime();
        CompletableFuture<HttpResponse<String>> big = CompletableFuture.supplyAsync(() -> {
            try { HttpResponse<String> r = post(server, "/v1/completions", longBody); doneAt[0] = System.nanoTime(); return r; }
            catch (Exception e) { throw new RuntimeException(e); }
        });
        long wait = System.nanoTime() + 5_000_000_000L;              // the long request is being scored
        while (server.scheduler().scoringPasses.get() == passesBefore && System.nanoTime() < wait) Thread.sleep(1);
        long s0 = System.nanoTime();
        JsonNode small = ok(post(server, "/v1/completions", JSON.writeValueAsString(obj("prompt", "Water", "max_tokens", 4, "temperature", 0))));
        doneAt[1] = System.nanoTime();
        assertEquals(4, small.get("usage").get("completion_tokens").asInt());
        ok(big.get(60, java.util.concurrent.TimeUnit.SECONDS));
        double shortSeconds = (doneAt[1] - s0) / 1e9, longSeconds = (doneAt[0] - t0) / 1e9;
        System.out.printf("long scoring request %.2f s alone, %.2f s beside; the 4-token request beside it: %.3f s%n", alone, longSeconds, shortSeconds);
        assertTrue(doneAt[1] < doneAt[0], "the short request finished first");
        assertTrue(shortSeconds < alone / 3, "the 4-token request took " + shortSeconds + " s beside a " + alone + " s scoring request");
        }
    }

    static ObjectNode scoring(List<List<Integer>> prompts) {
        return obj("prompt", prompts, "echo", true, "max_tokens", 0, "logprobs", 0);
    }
}
