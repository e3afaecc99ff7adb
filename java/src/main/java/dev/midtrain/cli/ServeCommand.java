package dev.midtrain.cli;

import dev.midtrain.train.GracefulStop;
import dev.midtrain.common.UserError;
import dev.midtrain.infer.Engine;
import dev.midtrain.serve.Server;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.net.BindException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * `midtrain serve`: an OpenAI-compatible HTTP server over one checkpoint (docs/serve.md). Prints the address once it
 * listens; SIGTERM or SIGINT stops taking requests (503), finishes the queued ones and exits 0.
 */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "Serve a checkpoint over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /health).")
public final class ServeCommand implements Callable<Integer> {
    @Option(names = "--checkpoint", required = true, description = "a committed step directory or a Hugging Face checkpoint directory")
    Path checkpoint;
    @Mixin EngineOptions engineOptions;
    @Option(names = "--port", description = "TCP port (0: any free port; the chosen one is printed)", defaultValue = "8000") int port;
    @Option(names = "--host", description = "address to listen on (default ${DEFAULT-VALUE})", defaultValue = "127.0.0.1") String host;
    @Option(names = "--model-name", description = "the model id reported to clients (default: the checkpoint directory's name)") String modelName;
    @Option(names = "--max-queue", description = "requests waiting for the engine before 429 (default ${DEFAULT-VALUE})", defaultValue = "64") int maxQueue;
    @Option(names = "--max-batch", description = "requests in flight at once: sequences decoded together (key/value cache slots) and scored together (default ${DEFAULT-VALUE})", defaultValue = "16") int maxBatch;
    @Option(names = "--max-body-bytes", description = "largest request body; larger is 413 (default ${DEFAULT-VALUE})", defaultValue = "1048576") int maxBodyBytes;
    @Option(names = "--max-new-tokens", description = "largest max_tokens a request may ask for (default ${DEFAULT-VALUE})", defaultValue = "2048") int maxNewTokens;
    @Option(names = "--grace-seconds", description = "on SIGTERM, how long queued requests may take to finish; 0: stop now, answering them 503 (default ${DEFAULT-VALUE})", defaultValue = "30") int graceSeconds;
    @Option(names = "--max-connections", description = "open connections at most; one more is answered 503 (default ${DEFAULT-VALUE})", defaultValue = "512") int maxConnections;
    @Option(names = "--read-timeout-seconds", description = "time to send a whole request from its first byte, and to take each write of an answer (default ${DEFAULT-VALUE})", defaultValue = "30") int readTimeoutSeconds;
    @Option(names = "--idle-timeout-seconds", description = "how long a kept-alive connection may wait for its next request (default ${DEFAULT-VALUE})", defaultValue = "60") int idleTimeoutSeconds;

    @Override
    public Integer call() throws Exception {
        Server.Options opt;
        try {
            opt = new Server.Options(host, port, modelName != null ? modelName : checkpoint.toAbsolutePath().normalize().getFileName().toString(),
                    maxQueue, maxBatch, maxBodyBytes, maxNewTokens, maxConnections, idleTimeoutSeconds, readTimeoutSeconds);
        } catch (IllegalArgumentException e) {
            throw new UserError(e.getMessage());
        }
        if (graceSeconds < 0) throw new UserError("--grace-seconds: must be >= 0, got " + graceSeconds);
        try (GracefulStop stop = GracefulStop.install("refusing new requests, finishing the queued ones, then exiting");
             Engine engine = engineOptions.load(checkpoint, 0, maxBatch)) {
            List<Path> templateDirs = new ArrayList<>();
            templateDirs.add(checkpoint);
            Path tok = engineOptions.tokenizer != null ? engineOptions.tokenizer : Engine.findTokenizer(checkpoint);
            templateDirs.add(tok.toAbsolutePath().getParent());
            Server server;
            try {
                server = Server.start(engine, templateDirs, opt);
            } catch (BindException e) {
                throw new UserError("--port " + port + ": cannot listen on " + host + ":" + port + " (" + e.getMessage() + ")");
            } catch (IOException e) {
                throw new UserError("--host " + host + ": cannot listen (" + e.getMessage() + ")");
            }
            System.out.printf("serving %s (%s, %s, max_seq_len %d) on http://%s:%d/v1 | chat template: %s | queue %d, batch %d%n",
                    opt.modelId(), engine.source(), engineOptions.backend, engine.config().maxSeqLen(), host, server.port(), server.chatTemplateSource(),
                    maxQueue, maxBatch);
            System.out.flush();
            while (!stop.requested()) Thread.sleep(100);
            server.close(graceSeconds);
            System.out.println("stopped");
        }
        return 0;
    }
}
