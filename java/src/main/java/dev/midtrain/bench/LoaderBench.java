package dev.midtrain.bench;

import dev.midtrain.config.DataConfig;
import dev.midtrain.data.BlendedLoader;
import dev.midtrain.data.Manifest;
import dev.midtrain.prepare.Preparer;
import dev.midtrain.tokenizer.Tokenizer;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Loader throughput from a warm page cache: writes two synthetic prepared sources (random ids, random document
 * lengths; reused when present), warms the cache, then runs {@code ranks} data-parallel loaders, one thread each,
 * over the blend for {@code seconds} and reports tokens/s (seq_len + 1 tokens read per sequence, all ranks).
 *
 * <p>Usage: LoaderBench [dir] [tokensPerSource] [seqLen] [microBatchSeqs] [ranks] [seconds]
 * (defaults: target/bench-loader 67108864 8192 4 2 10).
 */
public final class LoaderBench {
    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args.length > 0 ? args[0] : "target/bench-loader");
        long perSource = args.length > 1 ? Long.parseLong(args[1]) : 64L << 20;
        int seqLen = args.length > 2 ? Integer.parseInt(args[2]) : 8192;
        int micro = args.length > 3 ? Integer.parseInt(args[3]) : 4;
        int ranks = args.length > 4 ? Integer.parseInt(args[4]) : 2;
        double seconds = args.length > 5 ? Double.parseDouble(args[5]) : 10;

        List<DataConfig.Source> srcs = new ArrayList<>();
        for (String name : List.of("boostqa", "knowedu")) {
            Path p = dir.resolve(name);
            if (!Files.exists(p.resolve(Manifest.FILE)) || Manifest.read(p).tokens() != perSource) {
                long t0 = System.nanoTime();
                Preparer.writeDocuments(name, p, new Tokenizer.Info("synthetic", "-", 128256, "<|end_of_text|>", 128001),
                        () -> synthetic(perSource, name.hashCode()), 1 << 20, 1L << 28);
                System.out.printf("wrote %s: %,d tokens in %.1f s%n", p, perSource, (System.nanoTime() - t0) / 1e9);
            }
            srcs.add(new DataConfig.Source(name, p.toString(), 1.0));
        }
        DataConfig cfg = new DataConfig(srcs, 0.001);
        int global = micro * ranks * 64;

        long t0 = System.nanoTime();
        BlendedLoader probe = BlendedLoader.open(cfg, seqLen, micro, global, 1, 0, 1, true);
        System.out.printf("open with SHA-256 verification: %.2f s (also warms the page cache)%n", (System.nanoTime() - t0) / 1e9);
        t0 = System.nanoTime();
        probe = BlendedLoader.open(cfg, seqLen, micro, global, 1, 0, 1);
        System.out.printf("open (size + structure checks only): %.3f s; %s%n", (System.nanoTime() - t0) / 1e9, probe.describe());

        for (int round = 0; round < 2; round++) {       // round 0 warms the JIT and maps pages; round 1 is reported
            AtomicLong tokens = new AtomicLong();
            List<Thread> threads = new ArrayList<>();
            long deadline = System.nanoTime() + (long) ((round == 0 ? Math.min(3, seconds) : seconds) * 1e9);
            long start = System.nanoTime();
            for (int r = 0; r < ranks; r++) {
                BlendedLoader ld = BlendedLoader.open(cfg, seqLen, micro, global, 1234 + round, r, ranks).checkVocab(128256);
                Thread t = new Thread(() -> {
                    int[] mb = new int[micro * (seqLen + 1)];
                    long n = 0, sink = 0;
                    while (System.nanoTime() < deadline) {
                        for (int i = 0; i < 16; i++) {
                            ld.nextMicroBatch(mb);
                            sink += mb[i % mb.length];
                            n += mb.length;
                        }
                    }
                    tokens.addAndGet(n + (sink == 42 ? 1 : 0));
                });
                threads.add(t);
                t.start();
            }
            for (Thread t : threads) t.join();
            double secs = (System.nanoTime() - start) / 1e9;
            if (round == 1)
                System.out.printf("RESULT loader: %d rank thread(s), seq_len %d, micro-batch %d: %,.0f tokens/s (%,d tokens in %.1f s)%n",
                        ranks, seqLen, micro, tokens.get() / secs, tokens.get(), secs);
        }
    }

    /** Random documents of 50..4000 tokens (ids < 128000), the last token of each = end-of-text. */
    private static Iterator<int[]> synthetic(long total, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        return new Iterator<>() {
            long left = total;

            @Override public boolean hasNext() { return left > 0; }

            @Override public int[] next() {
                int n = (int) Math.min(left, 50 + r.nextInt(3950));
                int[] d = new int[n];
                for (int i = 0; i < n - 1; i++) d[i] = r.nextInt(128000);
                d[n - 1] = 128001;
                left -= n;
                return d;
            }
        };
    }
}
