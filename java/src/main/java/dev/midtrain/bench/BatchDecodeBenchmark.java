package dev.midtrain.bench;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.infer.InferenceModel;
import dev.midtrain.infer.Sampler;
import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.ParamLayout;

import java.util.SplittableRandom;

/**
 * Aggregate decode throughput of batched key/value-cache decoding (benchmarks/infer/batch.sh): on the 3m and 30m
 * configurations of {@link InferBenchmark} (random N(0, 0.02^2) weights), for each concurrency B: B different
 * PROMPT-token prompts prefilled together into B cache slots (one [B, PROMPT] pass, as the server prefills the
 * prompts joining in one round), then NEW greedy decode steps that advance all B sequences at once
 * ({@link InferenceModel#decode(int[], int[])}: one GEMM with M = B per weight matrix). Reported: aggregate decode
 * tokens/s (B x NEW / decode time) and end-to-end tokens/s (B x (NEW + 1) / (prefill + decode): the first token comes
 * from the prefill), best of two after a warm-up.
 * benchmarks/infer/torch_batch.py does the same with Hugging Face transformers (a batched KV-cache loop and
 * {@code generate}).
 *
 * <pre>java -cp ... dev.midtrain.bench.BatchDecodeBenchmark 3m|30m [prompt] [new] [B,B,...]</pre>
 */
public final class BatchDecodeBenchmark {
    private BatchDecodeBenchmark() {}

    public static void main(String[] args) {
        String name = args.length > 0 ? args[0] : "3m";
        int promptLen = args.length > 1 ? Integer.parseInt(args[1]) : 32, newTokens = args.length > 2 ? Integer.parseInt(args[2]) : 32;
        String[] bs = (args.length > 3 ? args[3] : "1,4,16").split(",");
        int threads = Integer.parseInt(System.getenv().getOrDefault("MT_THREADS", "" + Runtime.getRuntime().availableProcessors()));
        CpuBackend.setThreads(threads);
        ModelConfig m = InferBenchmark.preset(name);
        ParamLayout layout = ParamLayout.of(m);
        int maxB = 1;
        for (String b : bs) maxB = Math.max(maxB, Integer.parseInt(b.trim()));
        SplittableRandom r = new SplittableRandom(1234);
        try (Backend be = Backend.open("cpu", 0); HostFloats w = HostFloats.allocate(layout.numel())) {
            for (ParamLayout.Tensor t : layout.tensors())
                for (long i = 0; i < t.numel(); i++) w.put(t.offset() + i, t.shape().length == 1 ? 1f : (float) (0.02 * r.nextGaussian()));
            try (InferenceModel model = new InferenceModel(be, layout, w, Math.max(promptLen, maxB) * maxB, maxB)) {
                int[][] prompts = new int[maxB][promptLen];
                for (int[] p : prompts) for (int i = 0; i < promptLen; i++) p[i] = r.nextInt(m.vocabSize());
                run(model, prompts, 1, Math.min(4, newTokens));                    // warm-up
                StringBuilder line = new StringBuilder(String.format("midtrain %s: %,d params, %d threads, prompt %d, %d new tokens each",
                        name, m.paramCount(), threads, promptLen, newTokens));
                for (String b : bs) {
                    int B = Integer.parseInt(b.trim());
                    double[] best = {Double.MAX_VALUE, Double.MAX_VALUE};
                    for (int rep = 0; rep < 2; rep++) {
                        double[] t = run(model, prompts, B, newTokens);
                        if (t[1] < best[1]) best = t;
                    }
                    line.append(String.format(" | B=%d: decode %.1f tokens/s, end-to-end %.1f tokens/s",
                            B, B * newTokens / best[1], B * (newTokens + 1) / (best[0] + best[1])));
                }
                System.out.println(line);
            }
        }
    }

    /** Prefill of B prompts together (one slot each), then NEW decode steps of all B: seconds {prefill, decode}. */
    private static double[] run(InferenceModel model, int[][] prompts, int B, int newTokens) {
        int[] slots = new int[B], next = new int[B];
        for (int b = 0; b < B; b++) { slots[b] = b; model.reset(b); }
        long t0 = System.nanoTime();
        float[][] first = model.prefill(slots, java.util.Arrays.copyOf(prompts, B));
        for (int b = 0; b < B; b++) next[b] = Sampler.argmax(first[b]);
        long t1 = System.nanoTime();
        for (int i = 0; i < newTokens; i++) {
            float[][] logits = model.decode(slots, next);
            for (int b = 0; b < B; b++) next[b] = Sampler.argmax(logits[b]);
        }
        long t2 = System.nanoTime();
        return new double[]{(t1 - t0) / 1e9, (t2 - t1) / 1e9};
    }
}
