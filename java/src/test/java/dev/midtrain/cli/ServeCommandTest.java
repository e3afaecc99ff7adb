package dev.midtrain.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.ckpt.HfFixture;
import dev.midtrain.config.ModelConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Collections;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/** `midtrain serve` in a child JVM on a Hugging Face checkpoint: it answers over HTTP, and SIGTERM stops it with exit 0. */
class ServeCommandTest {
    @TempDir Path tmp;

    @Test
    void servesAHuggingFaceCheckpointAndStopsCleanlyOnSigterm() throws Exception {
        Path hf = tmp.resolve("hf");
        HfFixture.write(hf, new ModelConfig(512, 32, 2, 4, 2, 48, 10000.0, 1e-5, 128, false), 3);
        List<String> out = Collections.synchronizedList(new ArrayList<>());
        Process p = TrainSignalTest.start(out, List.of(), "serve", "--checkpoint", hf.toString(), "--tokenizer", "data/tokenizer/tokenizer.json",
                "--port", "0", "--threads", "1", "--model-name", "tiny-hf");
        try {
            Pattern listening = Pattern.compile("on http://127\\.0\\.0\\.1:(\\d+)/v1");
            TrainSignalTest.await(p, out, () -> out.stream().anyMatch(l -> listening.matcher(l).find()), "listening");
            Matcher m = out.stream().map(listening::matcher).filter(Matcher::find).findFirst().orElseThrow();
            int port = Integer.parseInt(m.group(1));
            assertTrue(out.stream().anyMatch(l -> l.contains("chat template: built-in Llama-3 format")), String.join("\n", out));
            HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/v1/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString("{\"model\": \"tiny-hf\", \"prompt\": \"Plants take in\", \"max_tokens\": 5, \"temperature\": 0}"))
                    .build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(200, r.statusCode(), r.body());
            JsonNode j = new ObjectMapper().readTree(r.body());
            assertEquals("tiny-hf", j.get("model").asText());
            assertTrue(j.get("usage").get("completion_tokens").asInt() >= 1);
            new ProcessBuilder("kill", "-TERM", Long.toString(p.pid())).inheritIO().start().waitFor();
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "still running after SIGTERM");
            assertEquals(0, p.exitValue(), String.join("\n", out));
            assertTrue(out.stream().anyMatch(l -> l.equals("stopped")), String.join("\n", out));
            assertThrows(ConnectException.class, () -> http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/health")).build(),
                    HttpResponse.BodyHandlers.ofString()));
        } finally {
            p.destroyForcibly();
        }
    }

    @Test
    void badOptionsAreOneLineErrors() {
        Cli.Run r = Cli.run("serve", "--checkpoint", tmp.resolve("missing").toString(), "--port", "70000");
        assertEquals(2, r.code());
        assertTrue(r.err().startsWith("midtrain: --port: expected 0..65535"), r.err());
        r = Cli.run("serve", "--checkpoint", tmp.resolve("missing").toString(), "--tokenizer", "data/tokenizer/tokenizer.json");
        assertEquals(2, r.code());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().contains(tmp.resolve("missing").toString()), r.err());
    }
}
