package dev.midtrain.bench;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.infer.Engine;
import dev.midtrain.infer.InferenceModel;
import dev.midtrain.infer.Sampler;
import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.model.ParamLayout;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * CPU inference throughput (benchmarks/infer/): on the 3m and 30m configurations of {@link TrainBenchmark} with random
 * weights (N(0, 0.02^2)), (1) multiple-choice scoring: ITEMS synthetic items of a CTX-token context and four
 * 4-6-token continuations through {@link Engine#score} (length-sorted batches of up to 4 x max_seq_len tokens);
 * (2) generation: prefill of a PROMPT-token prompt, then NEW greedy tokens with the key/value cache, timed apart.
 * benchmarks/infer/torch_infer.py does the same with Hugging Face transformers (an HF KV-cache decoding loop).
 *
 * <pre>java -cp ... dev.midtrain.bench.InferBenchmark 3m|30m [items] [ctx] [prompt] [new] [--profile]</pre>
 */
public final class InferBenchmark {
    private InferBenchmark() {}

    static ModelConfig preset(String name) {
        return switch (name) {
            case "3m" -> new ModelConfig(512, 256, 4, 8, 2, 688, 500000, 1e-5, 256, false);
            case "30m" -> new ModelConfig(8192, 512, 8, 8, 2, 1376, 500000, 1e-5, 512, false);
            default -> throw new IllegalArgumentException("preset must be 3m or 30m, got " + name);
        };
    }

    public static void main(String[] args) {
        String name = args.length > 0 ? args[0] : "3m";
        int items = args.length > 1 ? Integer.parseInt(args[1]) : 64, ctx = args.length > 2 ? Integer.parseInt(args[2]) : 96;
        int promptLen = args.length > 3 ? Integer.parseInt(args[3]) : 128, newTokens = args.length > 4 ? Integer.parseInt(args[4]) : 128;
        int threads = Integer.parseInt(System.getenv().getOrDefault("MT_THREADS", "" + Runtime.getRuntime().availableProcessors()));
        CpuBackend.setThreads(threads);
        ModelConfig m = preset(name);
        ParamLayout layout = ParamLayout.of(m);
        SplittableRandom r = new SplittableRandom(1234);
        boolean profile = List.of(args).contains("--profile");
        try (Backend cpu = Backend.open("cpu", 0); HostFloats w = HostFloats.allocate(layout.numel())) {
            dev.midtrain.kernels.Backend be = profile ? new TimedBackend(cpu) : cpu;
            for (ParamLayout.Tensor t : layout.tensors())
                for (long i = 0; i < t.numel(); i++) w.put(t.offset() + i, t.shape().length == 1 ? 1f : (float) (0.02 * r.nextGaussian()));
            try (InferenceModel model = new InferenceModel(be, layout, w, 4 * m.maxSeqLen())) {
                Engine e = Engine.of(model, null);
                List<Engine.Request> reqs = new ArrayList<>();
                for (int i = 0; i < items; i++) {
                    int[] c = ids(r, ctx, m.vocabSize());
                    for (int k = 0; k < 4; k++) reqs.add(new Engine.Request(c, ids(r, 4 + r.nextInt(3), m.vocabSize())));
                }
                e.score(reqs.subList(0, Math.min(8, reqs.size())));                                       // warm-up
                long t0 = System.nanoTime();
                e.score(reqs);
                double evalS = (System.nanoTime() - t0) / 1e9;
                int[] prompt = ids(r, promptLen, m.vocabSize());
                double[] pre = new double[3], dec = new double[3];
                for (int rep = 0; rep < 3; rep++) {                                  // rep 0 warms up; best of the other two
                    model.reset();
                    long p0 = System.nanoTime();
                    float[] logits = model.prefill(prompt);
                    long p1 = System.nanoTime();
                    for (int i = 0; i < newTokens; i++) logits = model.decode(Sampler.argmax(logits));
                    long p2 = System.nanoTime();
                    pre[rep] = (p1 - p0) / 1e9;
                    dec[rep] = (p2 - p1) / 1e9;
                }
                double preS = Math.min(pre[1], pre[2]), decS = Math.min(dec[1], dec[2]);
                System.out.printf("midtrain %s: %,d params, %d threads | eval: %d items (%d choices, ctx %d) in %.2f s = %.1f items/s"
                                + " | prefill %d tokens: %.0f tokens/s | decode %d tokens: %.1f tokens/s%n",
                        name, m.paramCount(), threads, items, reqs.size(), ctx, evalS, items / evalS,
                        promptLen, promptLen / preS, newTokens, newTokens / decS);
                if (be instanceof TimedBackend tb) System.out.print(tb.report());
            }
        }
    }

    private static int[] ids(SplittableRandom r, int n, int V) {
        int[] x = new int[n];
        for (int i = 0; i < n; i++) x[i] = r.nextInt(V);
        return x;
    }
}
