package dev.midtrain.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Token batches from an in-memory int[] token stream (tests, benchmarks and the synthetic-data mode of
 * `midtrain train`). The last {@code validTokens} tokens are held out for validation; training reads the rest in
 * order, one window of T+1 tokens per sequence, consecutive windows overlapping by one token (the next window
 * starts where the previous targets ended), wrapping around at the end. The state is the read position.
 */
public final class MemoryBatches implements TokenBatches {
    private final int[] stream;
    private final int trainLen, B, T;
    private final String source;
    private long position;          // windows delivered so far
    private long tokensDelivered;

    /**
     * @param stream       token ids
     * @param validTokens  tokens at the end of the stream held out for validation (0: none)
     * @param source       the source name reported in tokensPerSource
     */
    public MemoryBatches(int[] stream, int validTokens, int microBatchSeqs, int seqLen, String source) {
        this.stream = stream;
        this.trainLen = stream.length - validTokens;
        this.B = microBatchSeqs;
        this.T = seqLen;
        this.source = source;
        if (trainLen < seqLen + 1) throw new IllegalArgumentException("token stream of " + trainLen + " training tokens is shorter than one sequence (" + (seqLen + 1) + ")");
    }

    @Override
    public void nextMicroBatch(int[] out) {
        if (out.length != B * (T + 1)) throw new IllegalArgumentException("micro-batch buffer of " + out.length + ", expected " + B * (T + 1));
        int windows = (trainLen - 1) / T;                 // windows of T+1 that fit: start at w*T
        for (int b = 0; b < B; b++) {
            int start = (int) (position % windows) * T;
            System.arraycopy(stream, start, out, b * (T + 1), T + 1);
            if (SampleLog.on()) SampleLog.record("window " + position);
            position++;
        }
        tokensDelivered += (long) B * T;
    }

    @Override
    public JsonNode state() {
        ObjectNode s = JsonNodeFactory.instance.objectNode();
        s.put("position", position);
        s.put("tokens", tokensDelivered);
        return s;
    }

    @Override
    public void restore(JsonNode state) {
        position = state.get("position").asLong();
        tokensDelivered = state.get("tokens").asLong();
    }

    @Override
    public Map<String, Long> tokensPerSource() { return Map.of(source, tokensDelivered); }

    @Override
    public List<int[]> validationMicroBatches(int count) {
        List<int[]> out = new ArrayList<>();
        int validLen = stream.length - trainLen;
        int windows = (validLen - 1) / T;
        for (int w = 0; w + B <= windows && out.size() < count; w += B) {
            int[] mb = new int[B * (T + 1)];
            for (int b = 0; b < B; b++) System.arraycopy(stream, trainLen + (w + b) * T, mb, b * (T + 1), T + 1);
            out.add(mb);
        }
        return out;
    }

    @Override public void close() {}

    /**
     * A learnable synthetic stream: a random first-order Markov chain over [0, V) where every token has
     * {@code branching} possible successors (uniform). The best achievable loss is ln(branching); a model starts
     * near ln(V).
     */
    public static int[] markovStream(int V, int length, int branching, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[][] next = new int[V][branching];
        for (int v = 0; v < V; v++) for (int k = 0; k < branching; k++) next[v][k] = r.nextInt(V);
        int[] s = new int[length];
        s[0] = r.nextInt(V);
        for (int i = 1; i < length; i++) s[i] = next[s[i - 1]][r.nextInt(branching)];
        return s;
    }
}
