package dev.midtrain.bench;

import dev.midtrain.config.DataConfig;
import dev.midtrain.data.Manifest;
import dev.midtrain.prepare.Preparer;
import dev.midtrain.data.ShardVerifier;
import dev.midtrain.tokenizer.Tokenizer;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Shard verification rate at train start: writes a synthetic prepared source of {@code tokens} int32 tokens (shards of
 * 256M tokens max, made by Preparer.writeDocuments) unless it exists, then times {@link ShardVerifier#verify} (no
 * cache) with {@code threads} threads, best of {@code reps}. Args: dir tokens threads reps.
 */
public final class ShardVerifyBench {
    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]);
        long tokens = Long.parseLong(args[1]);
        int threads = Integer.parseInt(args[2]), reps = Integer.parseInt(args[3]);
        long shardTokens = Math.min(1L << 28, Math.max(1 << 20, tokens / 4));
        if (!Files.exists(dir.resolve(Manifest.FILE))) {
            SplittableRandom r = new SplittableRandom(1);
            Iterable<int[]> docs = () -> new Iterator<>() {
                long left = tokens;
                public boolean hasNext() { return left > 0; }
                public int[] next() {
                    int[] d = new int[(int) Math.min(left, 1 << 16)];
                    for (int i = 0; i < d.length; i++) d[i] = r.nextInt(128256);
                    left -= d.length;
                    return d;
                }
            };
            Preparer.writeDocuments("bench", dir, new Tokenizer.Info("synthetic", "0", 128256, "<|end_of_text|>", 128001), docs,
                    1 << 20, shardTokens);
        }
        DataConfig cfg = new DataConfig(List.of(new DataConfig.Source("bench", dir.toString(), 1)), 0.0);
        double best = Double.MAX_VALUE;
        long bytes = 0;
        int shards = 0;
        for (int i = 0; i < reps; i++) {
            ShardVerifier.Result res = ShardVerifier.verify(cfg, null, threads, null);
            best = Math.min(best, res.seconds());
            bytes = res.bytesHashed();
            shards = res.hashed();
        }
        System.out.printf("midtrain shard verification: %d shard(s), %.3f GB, %d thread(s): best of %d %.3f s = %.3f GB/s%n",
                shards, bytes / 1e9, threads, reps, best, bytes / 1e9 / best);
    }
}
