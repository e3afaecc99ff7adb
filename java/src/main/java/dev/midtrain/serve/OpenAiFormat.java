package dev.midtrain.serve;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * OpenAI's wire format for what the {@link Scheduler} produces: a completion or chat completion object, the chunks of
 * a stream, the error object. The scheduler knows nothing of JSON; this class knows nothing of batching.
 *
 * <p><b>Log-probabilities</b> follow the completions format: {@code tokens}, {@code token_logprobs} (null for the
 * first token of an echoed prompt), {@code top_logprobs} (the k alternatives; the chosen token's entry carries the
 * scoring pass's value) and {@code text_offset}.
 */
final class OpenAiFormat {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Function<int[], String> decode;

    /** @param decode token ids to text (the engine's tokenizer) */
    OpenAiFormat(Function<int[], String> decode) { this.decode = decode; }

    /** The answer to a non-streaming job. */
    ObjectNode completion(Scheduler.Job j, Scheduler.Completion c) {
        ObjectNode o = JSON.createObjectNode();
        o.put("id", j.id);
        o.put("object", j.req.chat() ? "chat.completion" : "text_completion");
        o.put("created", j.created);
        o.put("model", j.model);
        ArrayNode choices = o.putArray("choices");
        long promptTokens = 0, completionTokens = 0;
        for (int i = 0; i < c.choices().size(); i++) {
            Scheduler.Choice ch = c.choices().get(i);
            String gen = ch.generation() == null ? "" : ch.generation().text();
            ObjectNode out = choices.addObject();
            out.put("index", i);
            if (j.req.chat()) {
                ObjectNode m = out.putObject("message");
                m.put("role", "assistant");
                m.put("content", gen);
            } else {
                String echoed = j.req.echo() ? (ch.prompt() instanceof String s ? s : decode.apply(ch.promptTokens())) : "";
                out.put("text", echoed + gen);
                if (j.req.logprobs() >= 0) out.set("logprobs", logprobs(ch));
                else out.putNull("logprobs");
            }
            out.put("finish_reason", ch.generation() == null ? "length" : ch.generation().finishReason());
            promptTokens += ch.promptTokens().length;
            completionTokens += ch.generation() == null ? 0 : ch.generation().tokens().length;
        }
        ObjectNode u = o.putObject("usage");
        u.put("prompt_tokens", promptTokens);
        u.put("completion_tokens", completionTokens);
        u.put("total_tokens", promptTokens + completionTokens);
        return o;
    }

    private ObjectNode logprobs(Scheduler.Choice ch) {
        ObjectNode lp = JSON.createObjectNode();
        ArrayNode tokens = lp.putArray("tokens"), values = lp.putArray("token_logprobs"), top = lp.putArray("top_logprobs"),
                offsets = lp.putArray("text_offset");
        int[] full = ch.full();
        float[] tl = ch.tokenLogprobs() != null ? ch.tokenLogprobs() : new float[0];   // tl[t-1] = log p(full[t] | full[<t])
        List<Map<Integer, Double>> alts = ch.alternatives();
        int offset = 0;
        for (int t = ch.firstReported() == 1 ? 0 : ch.firstReported(); t < full.length; t++) {
            String piece = decode.apply(new int[]{full[t]});
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
            Map<Integer, Double> a = new LinkedHashMap<>(alts.get(t - ch.firstReported()));
            if (a.containsKey(full[t])) a.put(full[t], v);
            ObjectNode m = top.addObject();
            for (var e : a.entrySet()) {
                String s = decode.apply(new int[]{e.getKey()});
                if (!m.has(s) || m.get(s).asDouble() < e.getValue()) m.put(s, e.getValue());
            }
        }
        return lp;
    }

    /** The SSE chunk of one stream event (null: the event sends nothing, e.g. the start of a completion). */
    ObjectNode chunk(Scheduler.Job j, Scheduler.Event ev) {
        if (ev instanceof Scheduler.Started) return j.req.chat() ? chunk(j, JSON.createObjectNode().put("role", "assistant"), null) : null;
        if (ev instanceof Scheduler.Text t) return chunk(j, j.req.chat() ? JSON.createObjectNode().put("content", t.piece()) : t.piece(), null);
        if (ev instanceof Scheduler.Done d) return d.finishReason() == null ? null : chunk(j, j.req.chat() ? JSON.createObjectNode() : "", d.finishReason());
        return errorBody(((Scheduler.Failed) ev).error());
    }

    /** One SSE chunk: text (completions) or a delta object (chat), with finish_reason null until the last. */
    private static ObjectNode chunk(Scheduler.Job j, Object content, String finish) {
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

    /** {"error": {"message", "type", "param", "code"}}: code is OpenAI's string when it has one, else the HTTP status. */
    static ObjectNode errorBody(ApiError e) {
        ObjectNode o = JSON.createObjectNode();
        ObjectNode err = o.putObject("error");
        err.put("message", e.getMessage());
        err.put("type", e.type);
        if (e.param != null) err.put("param", e.param); else err.putNull("param");
        if (e.code != null) err.put("code", e.code); else err.put("code", e.status);
        return o;
    }
}
