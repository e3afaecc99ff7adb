package dev.midtrain.recipe;

import java.nio.file.Files;
import java.nio.file.Path;

/** The engine's source commit for the records: `git rev-parse HEAD` (with "-dirty" for local changes), else "unknown". */
final class GitSha {
    private GitSha() {}

    static String of(Path dir) {
        try {
            String sha = run(dir, "git", "rev-parse", "HEAD");
            if (sha == null || !sha.matches("[0-9a-f]{40}")) return "unknown";
            String status = run(dir, "git", "status", "--porcelain", "--untracked-files=no");
            return status == null || status.isBlank() ? sha : sha + "-dirty";
        } catch (Exception e) {
            return "unknown";
        }
    }

    private static String run(Path dir, String... cmd) throws Exception {
        if (!Files.isDirectory(dir)) return null;
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes()).strip();
        return p.waitFor() == 0 ? out : null;
    }
}
