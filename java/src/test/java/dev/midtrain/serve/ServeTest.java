package dev.midtrain.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.kernels.HostFloats;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.infer.Engine;
import dev.midtrain.infer.GenerateParams;
import dev.midtrain.infer.InferenceModel;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.ParamLayout;
import dev.midtrain.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The server through a real HTTP client (java.net.http.HttpClient) over loopback, on a random tiny model and the
 * sample tokenizer: every endpoint, logprobs against the engine's log-likelihoods (what midtrain eval scores with),
 * greedy text against the engine's generation, streaming, chat, 400 / 404 / 405 / 413 / 429, 16 concurrent clients,
 * batching, and shutdown.
 */
class ServeTest {
    static final ModelConfig CFG = new ModelConfig(512, 32, 2, 4, 2, 48, 10000.0, 1e-5, 192, false);
    static final ObjectMapper JSON = new ObjectMapper();
    static CpuBackend be;
    static HostFloats w;
    static InferenceModel model;
    static Tokenizer tok;
    static Engine engine;
    static Server server;
    static HttpClient http;

    @BeforeAll
    static void setUp() throws Exception {
        be = new CpuBackend();
        ParamLayout layout = ParamLayout.of(CFG);
        Random r = new Random(21);
        w = HostFloats.allocate(layout.numel());
        for (ParamLayout.Tensor t : layout.tensors())
            for (long i = 0; i < t.numel(); i++)
                w.put(t.offset() + i, t.shape().length == 1 ? (float) (1 + 0.1 * r.nextGaussian()) : (float) (0.3 * r.nextGaussian()));
        model = new InferenceModel(be, layout, w, 768, 16);       // 16 key/value cache slots: the server decodes 16 at once
        tok = Tokenizer.open(Path.of("data/tokenizer/tokenizer.json"), "<|end_of_text|>");
        engine = Engine.of(model, tok);
        server = new Server(engine, ChatTemplate.builtIn(), new Server.Options("127.0.0.1", 0, "tiny", 32, 16, 4096, 64));
        http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();
    }

    @AfterAll
    static void tearDown() {
        server.close(5);
        model.close(); tok.close(); w.close(); be.close();
    }

    static URI uri(Server s, String path) { return URI.create("http://127.0.0.1:" + s.port() + path); }

    static HttpResponse<String> post(Server s, String path, String body) throws Exception {
        return http.send(HttpRequest.newBuilder(uri(s, path)).timeout(Duration.ofSeconds(60))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> post(String path, Object body) throws Exception {
        return post(server, path, JSON.writeValueAsString(body));
    }

    static HttpResponse<String> get(String path) throws Exception {
        return http.send(HttpRequest.newBuilder(uri(server, path)).GET().build(), HttpResponse.BodyHandlers.ofString());
    }

    static JsonNode ok(HttpResponse<String> r) throws Exception {
        assertEquals(200, r.statusCode(), r.body());
        return JSON.readTree(r.body());
    }

    /** The error object of a refused request: status, type, and (when given) the field named. */
    static void refused(HttpResponse<String> r, int status, String param) throws Exception {
        assertEquals(status, r.statusCode(), r.body());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("application/json"));
        JsonNode e = JSON.readTree(r.body()).get("error");
        assertNotNull(e, r.body());
        assertFalse(e.get("message").asText().isBlank());
        assertEquals(status, e.get("code").asInt());
        if (param != null) assertEquals(param, e.get("param").asText(), r.body());
    }

    static ObjectNode obj(Object... kv) {
        ObjectNode o = JSON.createObjectNode();
        for (int i = 0; i < kv.length; i += 2) o.set((String) kv[i], JSON.valueToTree(kv[i + 1]));
        return o;
    }

    @Test
    void modelsHealthAndRouting() throws Exception {
        JsonNode m = ok(get("/v1/models"));
        assertEquals("list", m.get("object").asText());
        assertEquals("tiny", m.get("data").get(0).get("id").asText());
        assertEquals(192, m.get("data").get(0).get("max_model_len").asInt());
        JsonNode h = ok(get("/health"));
        assertEquals("ok", h.get("status").asText());
        assertEquals(32, h.get("queue_capacity").asInt());
        refused(get("/v1/nothing"), 404, null);
        refused(post("/v1/models", obj()), 405, null);
        refused(get("/v1/completions"), 405, null);
    }

    /**
     * lm-evaluation-harness's local-completions scoring request: context + continuation token ids, echo, max_tokens 1,
     * logprobs 1, several prompts in one request. Sum of token_logprobs over the continuation = Engine log-likelihood.
     */
    @Test
    void completionLogprobsEqualTheEnginesLogLikelihoods() throws Exception {
        String prompt = "Question: which gas do plants take in?\nAnswer:";
        List<String> conts = List.of(" carbon dioxide", " oxygen", " 氮气", " water vapour and light");
        List<Engine.Scored> want = engine.logLikelihoods(prompt, conts);
        int[] ctx = engine.encodePrompt(prompt);
        ArrayNode prompts = JSON.createArrayNode();
        List<int[]> conTok = new ArrayList<>();
        for (String c : conts) {
            int[] ct = engine.encode(c);
            conTok.add(ct);
            ArrayNode a = prompts.addArray();
            for (int t : ctx) a.add(t);
            for (int t : ct) a.add(t);
        }
        JsonNode r = ok(post("/v1/completions", obj("model", "tiny", "prompt", prompts, "temperature", 0, "max_tokens", 1,
                "logprobs", 1, "seed", 1234, "echo", true)));
        assertEquals("text_completion", r.get("object").asText());
        double maxDiff = 0;
        for (int i = 0; i < conts.size(); i++) {
            JsonNode c = r.get("choices").get(i);
            assertEquals(i, c.get("index").asInt());
            JsonNode lp = c.get("logprobs");
            int n = ctx.length + conTok.get(i).length;
            assertEquals(n + 1, lp.get("token_logprobs").size(), "prompt tokens + the one generated");
            assertTrue(lp.get("token_logprobs").get(0).isNull());
            double sum = 0;
            for (int t = ctx.length; t < n; t++) sum += lp.get("token_logprobs").get(t).asDouble();   // lm-eval: [ctxlen:-1]
            maxDiff = Math.max(maxDiff, Math.abs(sum - want.get(i).logprob()));
            // fp32: the same sequences padded into other batches than the engine's own call; measured ~1e-6
            assertEquals(want.get(i).logprob(), sum, 1e-4, conts.get(i));
            // is_greedy as lm-eval computes it: the token's value against the top alternative's
            for (int t = 1; t < n; t++) {
                JsonNode top = lp.get("top_logprobs").get(t);
                assertEquals(1, top.size());
                double best = top.elements().next().asDouble(), mine = lp.get("token_logprobs").get(t).asDouble();
                assertTrue(mine <= best + 1e-5, "position " + t);
                int[] prefix = Arrays.copyOf(tokensOf(prompts.get(i)), t);
                boolean argmax = argmax(model.recomputeLogits(prefix)) == tokensOf(prompts.get(i))[t];
                assertEquals(argmax, mine == best, "position " + t + ": is_greedy against a full recompute");
            }
        }
        System.out.printf("serve logprobs vs Engine.logLikelihoods: max |diff| %.2e over %d continuations%n", maxDiff, conts.size());

        // a text prompt, echo only (max_tokens 0): the prompt's tokens with BOS first, text echoed as sent
        JsonNode e = ok(post("/v1/completions", obj("prompt", prompt, "max_tokens", 0, "echo", true, "logprobs", 0)));
        JsonNode c = e.get("choices").get(0);
        assertEquals(prompt, c.get("text").asText());
        assertEquals(ctx.length, c.get("logprobs").get("tokens").size());
        assertEquals(ctx.length, e.get("usage").get("prompt_tokens").asInt());
        assertEquals(0, e.get("usage").get("completion_tokens").asInt());
        assertEquals("length", c.get("finish_reason").asText());
    }

    static int[] tokensOf(JsonNode a) {
        int[] t = new int[a.size()];
        for (int i = 0; i < t.length; i++) t[i] = a.get(i).asInt();
        return t;
    }

    static int argmax(float[] x) {
        int b = 0;
        for (int i = 1; i < x.length; i++) if (x[i] > x[b]) b = i;
        return b;
    }

    @Test
    void greedyCompletionStreamingAndChatMatchTheEngine() throws Exception {
        String prompt = "The energy of a photon";
        Engine.Generation g = engine.generate(prompt, new GenerateParams(12, 0, 1, 0, List.of(), true), null);
        JsonNode r = ok(post("/v1/completions", obj("prompt", prompt, "max_tokens", 12, "temperature", 0)));
        assertEquals(g.text(), r.get("choices").get(0).get("text").asText());
        assertEquals(g.finishReason(), r.get("choices").get(0).get("finish_reason").asText());
        assertEquals(g.tokens().length, r.get("usage").get("completion_tokens").asInt());
        assertTrue(r.get("choices").get(0).get("logprobs").isNull());

        // streamed: the same text in server-sent events, then [DONE]
        HttpResponse<String> s = post("/v1/completions", obj("prompt", prompt, "max_tokens", 12, "temperature", 0, "stream", true));
        assertEquals(200, s.statusCode());
        assertTrue(s.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream"));
        StringBuilder text = new StringBuilder();
        String finish = null;
        List<String> events = sse(s.body());
        assertEquals("[DONE]", events.get(events.size() - 1));
        for (String ev : events.subList(0, events.size() - 1)) {
            JsonNode ch = JSON.readTree(ev).get("choices").get(0);
            text.append(ch.get("text").asText());
            if (!ch.get("finish_reason").isNull()) finish = ch.get("finish_reason").asText();
        }
        assertEquals(g.text(), text.toString());
        assertEquals(g.finishReason(), finish);

        // sampled with a seed: reproducible, and equal to the engine's sampling with the same seed
        Engine.Generation sampled = engine.generate(prompt, new GenerateParams(10, 0.8, 0.9, 7, List.of(), true), null);
        JsonNode r1 = ok(post("/v1/completions", obj("prompt", prompt, "max_tokens", 10, "temperature", 0.8, "top_p", 0.9, "seed", 7)));
        assertEquals(sampled.text(), r1.get("choices").get(0).get("text").asText());

        // chat: the Llama-3 template, then the engine's greedy generation with <|eot_id|> as a stop
        List<String[]> msgs = List.of(new String[]{"system", "You are terse."}, new String[]{"user", " What is a photon? "});
        String rendered = ChatTemplate.builtIn().render(msgs);
        assertEquals("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nWhat is a photon?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", rendered);
        Engine.Generation cg = engine.generate(engine.encode(rendered), new GenerateParams(16, 0, 1, 0, List.of("<|eot_id|>"), true), null);
        ArrayNode m = JSON.createArrayNode();
        m.addObject().put("role", "system").put("content", "You are terse.");
        m.addObject().put("role", "user").put("content", " What is a photon? ");
        JsonNode cr = ok(post("/v1/chat/completions", obj("model", "tiny", "messages", m, "max_tokens", 16, "temperature", 0)));
        assertEquals("chat.completion", cr.get("object").asText());
        assertEquals("assistant", cr.get("choices").get(0).get("message").get("role").asText());
        assertEquals(cg.text(), cr.get("choices").get(0).get("message").get("content").asText());
        HttpResponse<String> cs = post("/v1/chat/completions", obj("messages", m, "max_tokens", 16, "temperature", 0, "stream", true));
        StringBuilder ctext = new StringBuilder();
        List<String> cev = sse(cs.body());
        assertEquals("assistant", JSON.readTree(cev.get(0)).get("choices").get(0).get("delta").get("role").asText());
        for (String ev : cev.subList(0, cev.size() - 1)) {
            JsonNode d = JSON.readTree(ev).get("choices").get(0).get("delta");
            if (d.has("content")) ctext.append(d.get("content").asText());
        }
        assertEquals(cg.text(), ctext.toString());
    }

    static List<String> sse(String body) {
        List<String> out = new ArrayList<>();
        for (String block : body.split("\n\n")) {
            if (block.isBlank()) continue;
            assertTrue(block.startsWith("data: "), block);
            out.add(block.substring(6));
        }
        return out;
    }

    @Test
    void malformedInvalidAndOversizedRequestsAreRefusedWithJsonErrors() throws Exception {
        refused(post(server, "/v1/completions", "{\"prompt\": \"hi\", "), 400, null);          // truncated JSON
        refused(post(server, "/v1/completions", "[1, 2]"), 400, null);                         // not an object
        refused(post(server, "/v1/completions", ""), 400, null);
        refused(post("/v1/completions", obj("max_tokens", 4)), 400, "prompt");
        refused(post("/v1/completions", obj("prompt", "hi", "max_tokens", "four")), 400, "max_tokens");
        refused(post("/v1/completions", obj("prompt", "hi", "max_tokens", 65)), 400, "max_tokens");   // above --max-new-tokens
        refused(post("/v1/completions", obj("prompt", "hi", "temperature", 5)), 400, "temperature");
        refused(post("/v1/completions", obj("prompt", "hi", "n", 2)), 400, "n");
        refused(post("/v1/completions", obj("prompt", "hi", "logprobs", 9)), 400, "logprobs");
        refused(post("/v1/completions", obj("prompt", "hi", "stop", List.of(1))), 400, "stop");
        refused(post("/v1/completions", obj("prompt", List.of(5, 9999), "max_tokens", 1)), 400, "prompt");   // outside the vocabulary
        refused(post("/v1/completions", obj("prompt", List.of(5, -1), "max_tokens", 1)), 400, "prompt");
        refused(post("/v1/completions", obj("prompt", "word ".repeat(300), "max_tokens", 1)), 400, "prompt");  // > max_seq_len
        refused(post("/v1/completions", obj("prompt", "hi", "max_tokens", 0)), 400, "max_tokens");
        refused(post("/v1/chat/completions", obj("messages", List.of())), 400, "messages");
        refused(post("/v1/chat/completions", obj("messages", List.of(obj("role", "wizard", "content", "x")))), 400, "messages");
        // 413: by Content-Length, and a chunked body (no length) counted while read
        refused(post("/v1/completions", obj("prompt", "x".repeat(5000))), 413, null);
        byte[] big = ("{\"prompt\": \"" + "y".repeat(6000) + "\"}").getBytes();
        HttpResponse<String> chunked = http.send(HttpRequest.newBuilder(uri(server, "/v1/completions"))
                .POST(HttpRequest.BodyPublishers.ofInputStream(() -> new ByteArrayInputStream(big))).build(), HttpResponse.BodyHandlers.ofString());
        refused(chunked, 413, null);
        ok(get("/health"));                                                                    // still serving
    }

    @Test
    void aChatTemplateThatIsNotLlama3IsRefusedByNameAndALlama3OneIsUsed(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"chat_template\": \"{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}\"}");
        ChatTemplate other = ChatTemplate.find(List.of(dir));
        ApiError e = assertThrows(ApiError.class, () -> other.render(List.<String[]>of(new String[]{"user", "hi"})));
        assertTrue(e.getMessage().contains(dir.resolve("tokenizer_config.json").toString()), e.getMessage());
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": \"<B>\", \"chat_template\": \"{{ bos_token }}<|start_header_id|>...<|eot_id|>\"}");
        assertTrue(ChatTemplate.find(List.of(dir)).render(List.<String[]>of(new String[]{"user", "hi"})).startsWith("<B><|start_header_id|>user"));
        assertEquals("built-in Llama-3 format", ChatTemplate.find(List.of(dir.resolve("none"))).source);
    }

    @Test
    void aFullQueueAnswers429AndQueuedRequestsAreBatched() throws Exception {
        try (Server small = new Server(engine, ChatTemplate.builtIn(), new Server.Options("127.0.0.1", 0, "tiny", 3, 16, 4096, 64))) {
            small.scheduler().pause(true);
            String body = JSON.writeValueAsString(obj("prompt", List.of(510, 20, 30, 40), "max_tokens", 0, "echo", true, "logprobs", 0));
            List<CompletableFuture<HttpResponse<String>>> waiting = new ArrayList<>();
            for (int i = 0; i < 3; i++)
                waiting.add(http.sendAsync(HttpRequest.newBuilder(uri(small, "/v1/completions")).POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                        HttpResponse.BodyHandlers.ofString()));
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (small.scheduler().queued() < 3) {
                assertTrue(System.nanoTime() < deadline, "requests never queued");
                Thread.sleep(10);
            }
            HttpResponse<String> full = post(small, "/v1/completions", body);
            refused(full, 429, null);
            assertEquals("1", full.headers().firstValue("Retry-After").orElse(""));
            small.scheduler().pause(false);
            JsonNode first = null;
            for (var f : waiting) {
                JsonNode r = ok(f.get());
                if (first == null) first = r.get("choices").get(0).get("logprobs");
                assertEquals(first, r.get("choices").get(0).get("logprobs"), "same prompt, same answer in one batch");
            }
            assertEquals(1, small.scheduler().batches.get(), "the three queued requests ran as one batch");
            assertEquals(3, small.scheduler().scoredSequences.get());
        }
    }

    /** 16 clients at once, each a mix of scoring, generation and streaming: no errors, answers equal to serial ones. */
    @Test
    void sixteenConcurrentClients() throws Exception {
        String prompt = "Plants take in";
        int[] ids = engine.encodePrompt(prompt + " carbon dioxide");
        double sumLp = 0;
        for (float v : model.tokenLogprobs(List.of(ids))[0]) sumLp += v;
        final double wantScore = sumLp;
        String wantText = engine.generate(prompt, new GenerateParams(8, 0, 1, 0, List.of(), true), null).text();
        String scoreBody = JSON.writeValueAsString(obj("prompt", ids, "max_tokens", 0, "echo", true, "logprobs", 0));
        String genBody = JSON.writeValueAsString(obj("prompt", prompt, "max_tokens", 8, "temperature", 0));
        String streamBody = JSON.writeValueAsString(obj("prompt", prompt, "max_tokens", 8, "temperature", 0, "stream", true));
        long batchesBefore = server.scheduler().batches.get(), doneBefore = server.scheduler().jobsDone.get();
        ExecutorService clients = Executors.newFixedThreadPool(16);
        try {
            List<Future<String>> results = new ArrayList<>();
            for (int c = 0; c < 16; c++) {
                final int id = c;
                results.add(clients.submit(() -> {
                    for (int k = 0; k < 3; k++) {
                        int kind = (id + k) % 3;
                        HttpResponse<String> r = post(server, "/v1/completions", kind == 0 ? scoreBody : kind == 1 ? genBody : streamBody);
                        if (r.statusCode() != 200) return "client " + id + ": " + r.statusCode() + " " + r.body();
                        if (kind == 0) {
                            double sum = 0;
                            JsonNode v = JSON.readTree(r.body()).get("choices").get(0).get("logprobs").get("token_logprobs");
                            for (int t = 1; t < v.size(); t++) sum += v.get(t).asDouble();
                            if (Math.abs(sum - wantScore) > 1e-4) return "client " + id + ": score " + sum + " vs " + wantScore;
                        } else if (kind == 1) {
                            String t = JSON.readTree(r.body()).get("choices").get(0).get("text").asText();
                            if (!t.equals(wantText)) return "client " + id + ": text '" + t + "' vs '" + wantText + "'";
                        } else {
                            StringBuilder sb = new StringBuilder();
                            List<String> ev = sse(r.body());
                            for (String e : ev.subList(0, ev.size() - 1)) sb.append(JSON.readTree(e).get("choices").get(0).get("text").asText());
                            if (!sb.toString().equals(wantText)) return "client " + id + ": streamed '" + sb + "'";
                        }
                    }
                    return "";
                }));
            }
            for (Future<String> f : results) assertEquals("", f.get());
        } finally {
            clients.shutdownNow();
        }
        long jobs = server.scheduler().jobsDone.get() - doneBefore, batches = server.scheduler().batches.get() - batchesBefore;
        System.out.printf("16 clients: %d requests in %d engine batches%n", jobs, batches);
        assertEquals(48, jobs);
    }

    /**
     * Continuous batching through HTTP: 16 clients at once with different prompts (4 to 40 tokens), lengths (5 to 20
     * new tokens), streamed and not, completions and chat, greedy and one seeded sample. The requests are queued while
     * the worker is paused, so they are in flight together: each answer equals the engine's generation of that request
     * alone (a 1-sequence Decoder), and /health counts fewer decode steps than generated tokens (a step decodes many).
     */
    @Test
    void sixteenConcurrentRequestsDecodeTogetherAndAnswerAsAlone() throws Exception {
        String[] texts = {"The energy of a photon", "Plants take in", "Water", "Once upon a time, in a land far away, there lived",
                "Question: which gas do plants take in?\nAnswer:", "a b c d e f g h i j k l m n o p q r s t", "熊猫", "1 2 3"};
        List<ObjectNode> bodies = new ArrayList<>();
        List<String> want = new ArrayList<>();
        long wantTokens = 0;
        for (int c = 0; c < 16; c++) {
            String text = texts[c % texts.length];
            int maxNew = 5 + c;
            boolean stream = c % 2 == 1, chat = c % 4 >= 2, sampled = c == 7;
            double temp = sampled ? 0.9 : 0;
            int[] prompt;
            ObjectNode b;
            if (chat) {
                ArrayNode m = JSON.createArrayNode();
                m.addObject().put("role", "user").put("content", text);
                prompt = engine.encode(ChatTemplate.builtIn().render(List.<String[]>of(new String[]{"user", text})));
                b = obj("messages", m, "max_tokens", maxNew, "temperature", temp, "seed", 11, "stream", stream);
            } else {
                prompt = engine.encodePrompt(text);
                b = obj("prompt", text, "max_tokens", maxNew, "temperature", temp, "seed", 11, "stream", stream);
            }
            List<String> stops = chat ? List.of("<|eot_id|>") : List.of();
            Engine.Generation g = engine.generate(prompt, new GenerateParams(maxNew, temp, 1, 11, stops, true), null);
            want.add(g.text());
            wantTokens += g.tokens().length;
            bodies.add(b);
        }
        try (Server s = new Server(engine, ChatTemplate.builtIn(), new Server.Options("127.0.0.1", 0, "tiny", 32, 16, 4096, 64))) {
            s.scheduler().pause(true);
            List<CompletableFuture<HttpResponse<String>>> answers = new ArrayList<>();
            for (int c = 0; c < 16; c++) {
                String path = c % 4 >= 2 ? "/v1/chat/completions" : "/v1/completions";
                answers.add(http.sendAsync(HttpRequest.newBuilder(uri(s, path)).timeout(Duration.ofSeconds(60))
                        .POST(HttpRequest.BodyPublishers.ofString(JSON.writeValueAsString(bodies.get(c)))).build(), HttpResponse.BodyHandlers.ofString()));
            }
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (s.scheduler().queued() < 16) {
                assertTrue(System.nanoTime() < deadline, "requests never queued");
                Thread.sleep(10);
            }
            s.scheduler().pause(false);
            for (int c = 0; c < 16; c++) {
                HttpResponse<String> r = answers.get(c).get();
                assertEquals(200, r.statusCode(), r.body());
                boolean stream = c % 2 == 1, chat = c % 4 >= 2;
                String got;
                if (stream) {
                    StringBuilder sb = new StringBuilder();
                    List<String> ev = sse(r.body());
                    assertEquals("[DONE]", ev.get(ev.size() - 1));
                    for (String e : ev.subList(0, ev.size() - 1)) {
                        JsonNode ch = JSON.readTree(e).get("choices").get(0);
                        if (chat) { if (ch.get("delta").has("content")) sb.append(ch.get("delta").get("content").asText()); }
                        else sb.append(ch.get("text").asText());
                    }
                    got = sb.toString();
                } else {
                    JsonNode ch = JSON.readTree(r.body()).get("choices").get(0);
                    got = chat ? ch.get("message").get("content").asText() : ch.get("text").asText();
                }
                assertEquals(want.get(c), got, "client " + c + (stream ? " (streamed)" : "") + (chat ? " (chat)" : ""));
            }
            JsonNode h = JSON.readTree(http.send(HttpRequest.newBuilder(uri(s, "/health")).GET().build(), HttpResponse.BodyHandlers.ofString()).body());
            long steps = h.get("decode_steps").asLong(), made = h.get("generated_tokens").asLong(), rows = h.get("decoded_tokens").asLong();
            System.out.printf("16 concurrent requests: %d tokens generated in %d decode steps (%d rows: %.1f sequences per step), %d prefills, %d batches%n",
                    made, steps, rows, rows / (double) steps, h.get("prefills").asLong(), h.get("batches").asLong());
            assertEquals(wantTokens, made);
            assertEquals(16, h.get("prefills").asLong());
            assertEquals(made - 16, rows, "every token but each request's first (sampled after its prefill) is a decode row");
            assertTrue(steps < made / 4, steps + " decode steps for " + made + " tokens: requests were not decoded together");
            assertEquals(0, h.get("running").asInt());
        }
    }

    /**
     * A streaming client that disconnects mid-stream does not hold the server's only slot (--max-batch 1): its job
     * leaves (cancelled when the server's next write fails, else at its end) and the next request is answered.
     */
    @Test
    void aStreamingClientThatGoesAwayDoesNotHoldItsSlot() throws Exception {
        try (Server s = new Server(engine, ChatTemplate.builtIn(), new Server.Options("127.0.0.1", 0, "tiny", 8, 1, 4096, 64))) {
            try (java.net.Socket sock = new java.net.Socket("127.0.0.1", s.port())) {
                byte[] body = JSON.writeValueAsBytes(obj("prompt", "Plants take in", "max_tokens", 64, "temperature", 0, "stream", true));
                String head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + body.length + "\r\n\r\n";
                sock.getOutputStream().write(head.getBytes(java.nio.charset.StandardCharsets.UTF_8));
                sock.getOutputStream().write(body);
                sock.getOutputStream().flush();
                sock.getInputStream().read();                   // the response has started
            }                                                   // gone
            JsonNode r = ok(post(s, "/v1/completions", JSON.writeValueAsString(obj("prompt", "Water", "max_tokens", 4, "temperature", 0))));
            assertEquals(engine.generate("Water", new GenerateParams(4, 0, 1, 0, List.of(), true), null).text(), r.get("choices").get(0).get("text").asText());
        }
    }

    @Test
    void closeFinishesQueuedRequestsThenRefuses() throws Exception {
        Server s = new Server(engine, ChatTemplate.builtIn(), new Server.Options("127.0.0.1", 0, "tiny", 4, 4, 4096, 64));
        s.scheduler().pause(true);
        String body = JSON.writeValueAsString(obj("prompt", "Plants", "max_tokens", 4, "temperature", 0));
        CompletableFuture<HttpResponse<String>> queued = http.sendAsync(HttpRequest.newBuilder(uri(s, "/v1/completions"))
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
        while (s.scheduler().queued() < 1) Thread.sleep(10);
        Thread closer = new Thread(() -> s.close(10));
        closer.start();
        ok(queued.get());                                     // queued before the close: answered
        closer.join();
        assertThrows(java.io.IOException.class, () -> post(s, "/v1/completions", body));   // listener closed
    }
}
