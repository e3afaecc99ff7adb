package dev.midtrain.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.common.UserError;
import dev.midtrain.tokenizer.Tokenizer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The Llama-3 chat format, as the Hugging Face Llama-3 Instruct template renders it:
 * {@code bos + for each message "<|start_header_id|>" role "<|end_header_id|>\n\n" trim(content) "<|eot_id|>"}, then
 * {@code "<|start_header_id|>assistant<|end_header_id|>\n\n"} (the generation prompt). The special-token strings are
 * tokenized as special tokens when the tokenizer has them.
 *
 * <p>Source: the checkpoint's {@code tokenizer_config.json} when it has a {@code chat_template}; this is no Jinja engine,
 * so a template is accepted only when it is the Llama-3 format (it uses {@code <|start_header_id|>} and
 * {@code <|eot_id|>}); its {@code bos_token} is used. Any other template makes chat requests fail with a message
 * naming the file (never a silent substitute). Without a tokenizer_config.json, or one without a chat_template, the
 * built-in Llama-3 format is used (said at startup). Llama-3.1's "Cutting Knowledge Date" system preamble is not added.
 */
final class ChatTemplate {
    static final String EOT = "<|eot_id|>";
    final String bos;
    final String source;          // for the startup line
    final String unsupported;     // non-null: why chat is refused

    private ChatTemplate(String bos, String source, String unsupported) {
        this.bos = bos;
        this.source = source;
        this.unsupported = unsupported;
    }

    static ChatTemplate builtIn() { return new ChatTemplate(Tokenizer.BEGIN_OF_TEXT, "built-in Llama-3 format", null); }

    /** From the first of {@code dirs} holding a tokenizer_config.json (null entries skipped); else the built-in one. */
    static ChatTemplate find(List<Path> dirs) {
        for (Path d : dirs) {
            if (d == null) continue;
            Path f = d.resolve("tokenizer_config.json");
            if (Files.isRegularFile(f)) return of(f);
        }
        return builtIn();
    }

    static ChatTemplate of(Path file) {
        JsonNode j;
        try {
            j = new ObjectMapper().readTree(Files.readString(file));
        } catch (IOException e) {
            throw new UserError(file + ": not valid JSON (" + e.getMessage().lines().findFirst().orElse("") + ")");
        }
        JsonNode t = j.path("chat_template");
        String template = null;
        if (t.isTextual()) template = t.asText();
        else if (t.isArray())                                  // [{name, template}, ...]: the "default" one
            for (JsonNode e : t) if (e.path("name").asText().equals("default")) template = e.path("template").asText();
        if (template == null) return new ChatTemplate(Tokenizer.BEGIN_OF_TEXT, "built-in Llama-3 format (" + file + " has no chat_template)", null);
        JsonNode b = j.path("bos_token");
        String bos = b.isTextual() ? b.asText() : b.path("content").isTextual() ? b.path("content").asText() : Tokenizer.BEGIN_OF_TEXT;
        if (template.contains("<|start_header_id|>") && template.contains(EOT))
            return new ChatTemplate(bos, "Llama-3 format (" + file + ")", null);
        return new ChatTemplate(bos, "unsupported (" + file + ")",
                "the chat_template of " + file + " is not the Llama-3 format; only Llama-3 chat templates are supported");
    }

    /** The prompt for {@code messages} (role, content pairs), ending with the assistant's header. */
    String render(List<String[]> messages) {
        if (unsupported != null) throw ApiError.badRequest("messages", unsupported);
        StringBuilder sb = new StringBuilder(bos);
        for (String[] m : messages)
            sb.append("<|start_header_id|>").append(m[0]).append("<|end_header_id|>\n\n").append(m[1].strip()).append(EOT);
        return sb.append("<|start_header_id|>assistant<|end_header_id|>\n\n").toString();
    }
}
