package dev.midtrain.serve;

import com.fasterxml.jackson.databind.JsonNode;

import java.util.ArrayList;
import java.util.List;

/**
 * One validated /v1/completions or /v1/chat/completions request (OpenAI semantics). Every field error is a 400 naming
 * the field; fields this server does not implement are ignored (clients send many), except {@code n} other than 1.
 *
 * @param prompts     each a String (tokenized with the begin-of-text token first) or an int[] of token ids (used as is)
 * @param chat        a chat request: one prompt, rendered by the chat template (it starts with the begin-of-text token)
 * @param maxTokens   tokens to generate (0 with echo: only score the prompt)
 * @param temperature 0 = greedy
 * @param logprobs    -1: none; k >= 0: each reported token's log-probability and the k most likely alternatives
 */
record CompletionRequest(List<Object> prompts, boolean chat, int maxTokens, double temperature, double topP, long seed,
                         List<String> stop, boolean echo, int logprobs, boolean stream) {
    static final int MAX_PROMPTS = 256, MAX_LOGPROBS = 5, MAX_STOPS = 4;

    static CompletionRequest completion(JsonNode body, int maxNewTokens) {
        List<Object> prompts = prompts(body.get("prompt"));
        int logprobs = body.hasNonNull("logprobs") ? intField(body, "logprobs", 0, 0, MAX_LOGPROBS) : -1;
        return common(body, prompts, false, intField(body, "max_tokens", 16, 0, maxNewTokens), logprobs, bool(body, "echo"));
    }

    static CompletionRequest chat(JsonNode body, int maxNewTokens, ChatTemplate template) {
        JsonNode msgs = body.get("messages");
        if (msgs == null || !msgs.isArray() || msgs.isEmpty()) throw ApiError.badRequest("messages", "messages: a non-empty array is required");
        List<String[]> list = new ArrayList<>();
        for (int i = 0; i < msgs.size(); i++) {
            JsonNode m = msgs.get(i);
            String role = m.path("role").asText("");
            if (!List.of("system", "user", "assistant").contains(role))
                throw ApiError.badRequest("messages", "messages[" + i + "].role: expected system, user or assistant, got " + m.path("role"));
            list.add(new String[]{role, content(m.get("content"), i)});
        }
        if (bool(body, "logprobs")) throw ApiError.badRequest("logprobs", "logprobs: not supported for chat completions (use /v1/completions)");
        int max = body.hasNonNull("max_completion_tokens") ? intField(body, "max_completion_tokens", 16, 1, maxNewTokens)
                : intField(body, "max_tokens", 16, 1, maxNewTokens);
        CompletionRequest r = common(body, List.of(template.render(list)), true, max, -1, false);
        List<String> stop = new ArrayList<>(r.stop());
        stop.add(ChatTemplate.EOT);                           // also when the tokenizer has no <|eot_id|> token
        return new CompletionRequest(r.prompts(), true, r.maxTokens(), r.temperature(), r.topP(), r.seed(), stop, false, -1, r.stream());
    }

    private static CompletionRequest common(JsonNode body, List<Object> prompts, boolean chat, int maxTokens, int logprobs, boolean echo) {
        if (body.hasNonNull("n") && intField(body, "n", 1, 1, Integer.MAX_VALUE) != 1) throw ApiError.badRequest("n", "n: only 1 is supported");
        double temperature = number(body, "temperature", 1.0, 0, 2);
        double topP = number(body, "top_p", 1.0, Double.MIN_VALUE, 1);
        long seed = body.hasNonNull("seed") ? longField(body, "seed") : 0;
        boolean stream = bool(body, "stream");
        if (!echo && maxTokens == 0) throw ApiError.badRequest("max_tokens", "max_tokens: 0 generates nothing; use echo to score the prompt");
        if (stream && prompts.size() != 1) throw ApiError.badRequest("prompt", "stream: one prompt per streamed request");
        if (stream && logprobs >= 0) throw ApiError.badRequest("logprobs", "logprobs: not supported with stream");
        return new CompletionRequest(prompts, chat, maxTokens, temperature, topP, seed, stops(body.get("stop")), echo, logprobs, stream);
    }

    private static List<Object> prompts(JsonNode p) {
        if (p == null || p.isNull()) throw ApiError.badRequest("prompt", "prompt: required");
        if (p.isTextual()) return List.of(p.asText());
        if (!p.isArray() || p.isEmpty()) throw ApiError.badRequest("prompt", "prompt: expected a string, an array of strings, token ids, or arrays of token ids");
        List<Object> out = new ArrayList<>();
        if (p.get(0).isIntegralNumber()) {
            out.add(ids(p, "prompt"));
            return out;
        }
        if (p.size() > MAX_PROMPTS) throw ApiError.badRequest("prompt", "prompt: at most " + MAX_PROMPTS + " prompts per request, got " + p.size());
        for (int i = 0; i < p.size(); i++) {
            JsonNode e = p.get(i);
            if (e.isTextual()) out.add(e.asText());
            else if (e.isArray() && !e.isEmpty()) out.add(ids(e, "prompt[" + i + "]"));
            else throw ApiError.badRequest("prompt", "prompt[" + i + "]: expected a string or a non-empty array of token ids");
        }
        return out;
    }

    private static int[] ids(JsonNode a, String where) {
        int[] ids = new int[a.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode e = a.get(i);
            if (!e.isIntegralNumber() || !e.canConvertToInt() || e.asInt() < 0)
                throw ApiError.badRequest("prompt", where + "[" + i + "]: expected a token id (a non-negative integer), got " + e);
            ids[i] = e.asInt();
        }
        return ids;
    }

    private static String content(JsonNode c, int i) {
        if (c != null && c.isTextual()) return c.asText();
        if (c != null && c.isArray()) {                       // [{"type": "text", "text": ...}, ...]
            StringBuilder sb = new StringBuilder();
            for (JsonNode part : c) {
                if (!part.path("type").asText().equals("text") || !part.path("text").isTextual())
                    throw ApiError.badRequest("messages", "messages[" + i + "].content: only text parts are supported");
                sb.append(part.get("text").asText());
            }
            return sb.toString();
        }
        throw ApiError.badRequest("messages", "messages[" + i + "].content: expected a string");
    }

    private static List<String> stops(JsonNode s) {
        if (s == null || s.isNull()) return List.of();
        List<String> out = new ArrayList<>();
        if (s.isTextual()) out.add(s.asText());
        else if (s.isArray() && s.size() <= MAX_STOPS) for (JsonNode e : s) {
            if (!e.isTextual()) throw ApiError.badRequest("stop", "stop: expected strings, got " + e);
            out.add(e.asText());
        }
        else throw ApiError.badRequest("stop", "stop: expected a string or an array of at most " + MAX_STOPS + " strings");
        for (String x : out) if (x.isEmpty()) throw ApiError.badRequest("stop", "stop: empty strings are not allowed");
        return out;
    }

    static int intField(JsonNode body, String name, int dflt, int min, int max) {
        JsonNode v = body.get(name);
        if (v == null || v.isNull()) return dflt;
        if (!v.isIntegralNumber() || !v.canConvertToInt() || v.asInt() < min || v.asInt() > max)
            throw ApiError.badRequest(name, name + ": expected an integer in [" + min + ", " + max + "], got " + v);
        return v.asInt();
    }

    private static long longField(JsonNode body, String name) {
        JsonNode v = body.get(name);
        if (!v.isIntegralNumber() || !v.canConvertToLong()) throw ApiError.badRequest(name, name + ": expected an integer, got " + v);
        return v.asLong();
    }

    private static double number(JsonNode body, String name, double dflt, double min, double max) {
        JsonNode v = body.get(name);
        if (v == null || v.isNull()) return dflt;
        if (!v.isNumber() || !(v.asDouble() >= min && v.asDouble() <= max))
            throw ApiError.badRequest(name, name + ": expected a number in [" + (min == Double.MIN_VALUE ? "0 (exclusive)" : min) + ", " + max + "], got " + v);
        return v.asDouble();
    }

    private static boolean bool(JsonNode body, String name) {
        JsonNode v = body.get(name);
        if (v == null || v.isNull()) return false;
        if (!v.isBoolean()) throw ApiError.badRequest(name, name + ": expected true or false, got " + v);
        return v.asBoolean();
    }
}
