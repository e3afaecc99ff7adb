package dev.midtrain.recipe;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.AtomicFiles;
import dev.midtrain.common.UserError;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.TreeMap;

/**
 * SHA-256 of the recipe's input files, cached in OUT/file-hashes.json by absolute path, size and modification time
 * (a web-text corpus is hashed once, not at every rerun).
 */
final class FileHashes {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final Path cacheFile;
    private final ObjectNode cache;

    FileHashes(Path cacheFile) {
        this.cacheFile = cacheFile;
        ObjectNode c;
        try {
            c = Files.isRegularFile(cacheFile) ? (ObjectNode) JSON.readTree(cacheFile.toFile()) : JSON.createObjectNode();
        } catch (IOException | ClassCastException e) {
            c = JSON.createObjectNode();                                      // a damaged cache is rebuilt
        }
        cache = c;
    }

    String of(Path file) throws IOException {
        if (!Files.isRegularFile(file)) throw new UserError(file + ": not found (named in the recipe)");
        String k = file.toAbsolutePath().normalize().toString();
        String stamp = Files.size(file) + ":" + Files.getLastModifiedTime(file).toMillis();
        var hit = cache.path(k);
        if (stamp.equals(hit.path("stamp").asText())) return hit.path("sha256").asText();
        String h = AtomicFiles.sha256(file);
        cache.putObject(k).put("stamp", stamp).put("sha256", h);
        return h;
    }

    /** A Hugging Face model directory: config.json's hash and the safetensors files' names, sizes and hashes (cached). */
    String ofModelDir(Path dir) throws IOException {
        if (!Files.isRegularFile(dir.resolve("config.json"))) throw new UserError(dir + ": no config.json (base.hf must be a Hugging Face model directory)");
        TreeMap<String, String> parts = new TreeMap<>();
        parts.put("config.json", of(dir.resolve("config.json")));
        try (var s = Files.list(dir)) {
            for (Path f : s.sorted().toList()) if (f.getFileName().toString().endsWith(".safetensors")) parts.put(f.getFileName().toString(), of(f));
        }
        return RecipeRunner.sha256(parts.toString());
    }

    void save() throws IOException {
        Files.createDirectories(cacheFile.getParent());
        AtomicFiles.writeString(cacheFile, JSON.writeValueAsString(cache));
    }

    static List<String> none() { return List.of(); }
}
