package dev.midtrain.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.UserError;
import dev.midtrain.config.DataConfig;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The training data of one data-parallel rank: prepared sources blended by weight, packed into sequences.
 *
 * <p><b>Packing.</b> Each source's token stream (documents back to back, each ending with end-of-text) is cut into
 * sequences of L = seqLen + 1 tokens: sequence j = tokens [j*L, (j+1)*L); a trailing partial sequence is unused.
 * <b>Validation split.</b> Whole documents are held out, about validFraction of each source's tokens
 * ({@link HeldOutDocuments}: which ones depends on the data and the fraction, not the seed); training packs the
 * remaining documents back to back into its sequences and never reads a token of a held-out document, validation
 * packs the held-out documents the same way. <b>Order.</b> Training sequences of source s are visited epoch by epoch, each epoch a
 * permutation drawn from (seed, s, epoch), or in stream order with data.shuffle false; a source that runs out starts
 * its next epoch (small sources repeat).
 * <b>Mix.</b> Global sample i (counted over all ranks from the start of training) is assigned to a source by the
 * deficit rule of {@link Mix}, so the token mix matches the weights within one sequence after every sample.
 * <b>Data parallelism.</b> Global batch k is global samples [k*G, (k+1)*G); rank r of D takes the contiguous share
 * [k*G + r*G/D, k*G + (r+1)*G/D), split into micro-batches of M rows in order. Which samples make up global batch k
 * therefore does not depend on D. <b>Resume.</b> {@link #state()} is the position (global batch, micro-batch);
 * {@link #restore} replays the (cheap) assignment up to it, so later batches equal an uninterrupted run's exactly.
 * <b>Reading</b> copies sequences from memory-mapped Arrow shards ({@link PreparedSource}). Not thread-safe.
 */
public final class BlendedLoader implements TokenBatches {
    private static final int STATE_VERSION = 2;   // 2: held-out documents (1: held-out sequences, other training order)

    private final List<TokenStream> sources;
    private final double[] weights;
    private final int seqLen, rowLen, microSeqs, globalSeqs, dpRank, dpSize, microsPerStep;
    private final long seed;
    private final boolean shuffle;
    private final double validFraction;
    private final long[] sequences;       // S_s = tokens / L of the whole source
    private final HeldOutDocuments[] split;
    private final TokenStream[] train, valid;   // per source: the stream without / of the held-out documents
    private final int[] trainSeqs;        // sequences of train[s]
    private final long[] validSeqs;       // sequences of valid[s]

    // position
    private long globalBatch;             // k
    private int micro;                    // u in [0, microsPerStep)
    private Mix mix;                      // assignment of global samples [0, walked)
    private long walked;
    private final long[] delivered;       // tokens delivered by this rank, per source
    private final int[] rowSource;        // source of each row of the last micro-batch
    private int vocabLimit;               // > 0 after checkVocab: every delivered id is range-checked
    // per-source permutation cache
    private final long[] permEpoch;
    private final int[][] perm;

    private BlendedLoader(List<TokenStream> sources, double[] weights, double validFraction, int seqLen, int microSeqs,
                          int globalSeqs, long seed, int dpRank, int dpSize, boolean shuffle) {
        this.shuffle = shuffle;
        if (seqLen < 1) throw new IllegalArgumentException("seqLen must be >= 1");
        if (dpSize < 1 || dpRank < 0 || dpRank >= dpSize) throw new IllegalArgumentException("bad dp rank " + dpRank + " of " + dpSize);
        if (microSeqs < 1 || globalSeqs % ((long) microSeqs * dpSize) != 0)
            throw new UserError("train.global_batch_seqs (" + globalSeqs + ") must be a multiple of micro_batch_seqs x dp (" + microSeqs + " x " + dpSize + ")");
        this.sources = List.copyOf(sources);
        this.weights = weights.clone();
        this.validFraction = validFraction;
        this.seqLen = seqLen;
        this.rowLen = seqLen + 1;
        this.microSeqs = microSeqs;
        this.globalSeqs = globalSeqs;
        this.seed = seed;
        this.dpRank = dpRank;
        this.dpSize = dpSize;
        this.microsPerStep = globalSeqs / (microSeqs * dpSize);
        int n = sources.size();
        sequences = new long[n];
        split = new HeldOutDocuments[n];
        train = new TokenStream[n];
        valid = new TokenStream[n];
        trainSeqs = new int[n];
        validSeqs = new long[n];
        for (int s = 0; s < n; s++) {
            TokenStream src = sources.get(s);
            long S = src.tokens() / rowLen;
            sequences[s] = S;
            if (S < 1 + (validFraction > 0 ? 1 : 0))
                throw new UserError("data source " + src.name() + ": " + src.tokens() + " tokens make " + S + " sequence(s) of seq_len+1 = "
                        + rowLen + " tokens; need at least " + (validFraction > 0 ? 2 : 1) + " (more data or a shorter train.seq_len)");
            split[s] = HeldOutDocuments.of(src, validFraction, rowLen);
            train[s] = split[s].train();
            valid[s] = split[s].valid();
            long St = train[s].tokens() / rowLen;
            validSeqs[s] = valid[s].tokens() / rowLen;
            if (St < 1 || (validFraction > 0 && validSeqs[s] < 1))
                throw new UserError("data source " + src.name() + ": holding out whole documents for data.valid_fraction " + validFraction
                        + " leaves " + St + " training and " + validSeqs[s] + " validation sequence(s) of seq_len+1 = " + rowLen
                        + " tokens (" + split[s].documents() + " document(s), " + split[s].heldTokens() + " of " + src.tokens()
                        + " tokens held out); need at least one of each (more documents, a shorter train.seq_len, or valid_fraction 0)");
            if (St > Integer.MAX_VALUE) throw new UserError("data source " + src.name() + ": more than 2^31 sequences; use a longer train.seq_len");
            trainSeqs[s] = (int) St;
        }
        delivered = new long[n];
        rowSource = new int[microSeqs];
        permEpoch = new long[n];
        java.util.Arrays.fill(permEpoch, -1);
        perm = new int[n][];
        rewind();
    }

    /**
     * Opens the sources of {@code cfg} (directories written by midtrain prepare; relative paths against the working
     * directory) for data-parallel rank {@code dpRank} of {@code dpSize}. A missing or corrupt directory is a
     * {@link UserError} naming the path. Call {@link #checkVocab} with the model's vocab size before training.
     */
    public static BlendedLoader open(DataConfig cfg, int seqLen, int microBatchSeqs, int globalBatchSeqs, long seed, int dpRank, int dpSize) {
        return open(cfg, seqLen, microBatchSeqs, globalBatchSeqs, seed, dpRank, dpSize, false);
    }

    /** As {@link #open(DataConfig, int, int, int, long, int, int)}; {@code verifySha256} also hashes every shard. */
    public static BlendedLoader open(DataConfig cfg, int seqLen, int microBatchSeqs, int globalBatchSeqs, long seed, int dpRank, int dpSize,
                                     boolean verifySha256) {
        List<TokenStream> srcs = new ArrayList<>();
        double[] w = new double[cfg.sources().size()];
        for (int s = 0; s < w.length; s++) {
            DataConfig.Source src = cfg.sources().get(s);
            PreparedSource p = PreparedSource.open(src.name(), Path.of(src.path()), verifySha256);
            if (!p.manifest().source().equals(src.name()))
                throw new UserError("data.sources[" + src.name() + "].path: " + src.path() + " holds source '" + p.manifest().source()
                        + "' (manifest.json); fix the name or the path");
            srcs.add(p);
            w[s] = src.weight();
        }
        return new BlendedLoader(srcs, w, cfg.validFraction(), seqLen, microBatchSeqs, globalBatchSeqs, seed, dpRank, dpSize, cfg.shuffle());
    }

    /** A loader over in-memory (or any) token streams: tests and benchmarks. */
    public static BlendedLoader of(List<TokenStream> sources, double[] weights, double validFraction, int seqLen, int microBatchSeqs,
                                   int globalBatchSeqs, long seed, int dpRank, int dpSize) {
        return of(sources, weights, validFraction, seqLen, microBatchSeqs, globalBatchSeqs, seed, dpRank, dpSize, true);
    }

    /** As above; {@code shuffle} false reads each source's training sequences in stream order (data.shuffle). */
    public static BlendedLoader of(List<TokenStream> sources, double[] weights, double validFraction, int seqLen, int microBatchSeqs,
                                   int globalBatchSeqs, long seed, int dpRank, int dpSize, boolean shuffle) {
        return new BlendedLoader(sources, weights, validFraction, seqLen, microBatchSeqs, globalBatchSeqs, seed, dpRank, dpSize, shuffle);
    }

    /**
     * Refuses data whose ids do not fit the model: every source's ids must lie in [0, vocabSize) (per the manifests'
     * maxima), and from now on every delivered token is also checked (guards against corrupt shards opened without
     * SHA-256 verification; costs far less than the copy). Returns this.
     */
    public BlendedLoader checkVocab(int vocabSize) {
        for (TokenStream s : sources) s.checkVocab(vocabSize);
        this.vocabLimit = vocabSize;
        return this;
    }

    private void checkRow(TokenStream src, long pos, int[] out, int off) {
        if (vocabLimit <= 0) return;
        int lim1 = vocabLimit - 1, acc = 0;
        for (int i = off; i < off + rowLen; i++) acc |= out[i] | (lim1 - out[i]);   // sign bit set iff some id < 0 or > lim1
        if (acc >= 0) return;
        for (int i = 0; i < rowLen; i++) {
            int t = out[off + i];
            if (t < 0 || t >= vocabLimit)
                throw new UserError("data source " + src.name() + ": token id " + t + " at " + src.where(pos + i)
                        + " outside the model vocab [0, " + vocabLimit + ") (corrupt shard? open with SHA-256 verification)");
        }
    }

    private void rewind() {
        globalBatch = 0;
        micro = 0;
        walked = 0;
        mix = new Mix(weights, null);
        java.util.Arrays.fill(delivered, 0);
    }

    /** First global sample index of this rank's current micro-batch. */
    private long microStart() {
        return globalBatch * globalSeqs + (long) dpRank * (globalSeqs / dpSize) + (long) micro * microSeqs;
    }

    @Override
    public void nextMicroBatch(int[] out) {
        if (out.length != microSeqs * rowLen)
            throw new IllegalArgumentException("out has " + out.length + " ints, expected " + microSeqs + " x " + rowLen);
        long start = microStart();
        walkTo(start, null);
        for (int row = 0; row < microSeqs; row++) {
            int s = mix.next();
            walked++;
            long m = mix.taken(s) - 1;
            readTrain(s, m, out, row * rowLen);
            if (SampleLog.on()) SampleLog.record(sources.get(s).name() + " " + m);
            rowSource[row] = s;
            delivered[s] += seqLen;
        }
        advance();
    }

    private void advance() {
        if (++micro == microsPerStep) {
            micro = 0;
            globalBatch++;
        }
    }

    /**
     * Assigns global samples [walked, target) to sources without reading them (other ranks' samples); if
     * {@code mine} is set, also counts this rank's own samples among them as delivered (used by restore).
     */
    private void walkTo(long target, long[] mine) {
        long share = globalSeqs / dpSize;
        while (walked < target) {
            int s = mix.next();
            if (mine != null) {
                long inBatch = walked % globalSeqs;
                if (inBatch / share == dpRank) mine[s] += seqLen;
            }
            walked++;
        }
    }

    /** Copies the m-th training sample of source s (epoch m / trainSeqs) into out[off, off + L). */
    private void readTrain(int s, long m, int[] out, int off) {
        int n = trainSeqs[s];
        long epoch = m / n;
        int pos = (int) (m % n);
        if (!shuffle) {                                                     // data.shuffle: false: the stream's order
            train[s].read((long) pos * rowLen, out, off, rowLen);
            checkRow(train[s], (long) pos * rowLen, out, off);
            return;
        }
        if (permEpoch[s] != epoch) {
            int[] p = perm[s] != null ? perm[s] : new int[n];
            for (int i = 0; i < n; i++) p[i] = i;
            SplittableRandom rnd = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + s * 0xBF58476D1CE4E5B9L + epoch * 0x94D049BB133111EBL + 1);
            for (int i = n - 1; i > 0; i--) {
                int j = rnd.nextInt(i + 1);
                int t = p[i];
                p[i] = p[j];
                p[j] = t;
            }
            perm[s] = p;
            permEpoch[s] = epoch;
        }
        long at = (long) perm[s][pos] * rowLen;
        train[s].read(at, out, off, rowLen);
        checkRow(train[s], at, out, off);
    }

    @Override
    public JsonNode state() {
        ObjectNode st = JsonNodeFactory.instance.objectNode();
        st.put("version", STATE_VERSION);
        st.put("seed", seed);
        st.put("shuffle", shuffle);
        st.put("seq_len", seqLen);
        st.put("global_batch_seqs", globalSeqs);
        st.put("micro_batch_seqs", microSeqs);
        st.put("dp_size", dpSize);
        st.put("dp_rank", dpRank);
        st.put("global_batch", globalBatch);
        st.put("micro_batch", micro);
        st.put("valid_fraction", validFraction);
        var arr = st.putArray("sources");
        long consumed = microStart();
        Mix probe = new Mix(weights, null);
        long[] takenAt = new long[sources.size()];
        for (long i = 0; i < consumed; i++) takenAt[probe.next()]++;
        for (int s = 0; s < sources.size(); s++) {
            ObjectNode o = arr.addObject();
            o.put("name", sources.get(s).name());
            o.put("weight", weights[s]);
            o.put("tokens", sources.get(s).tokens());
            o.put("sequences", sequences[s]);
            o.put("train_sequences", trainSeqs[s]);
            o.put("valid_sequences", validSeqs[s]);
            o.put("samples_taken", takenAt[s]);   // over all ranks, before this rank's next micro-batch
            o.put("epochs", (double) takenAt[s] / trainSeqs[s]);
        }
        return st;
    }

    @Override
    public void restore(JsonNode st) {
        if (st != null && st.path("version").asInt() == 1)
            throw new UserError("data loader state: version 1 (validation held out sequences, not documents) gives another training order;"
                    + " this build resumes version " + STATE_VERSION + " only (start a new run, or --init-from an export of the step)");
        if (st == null || !st.isObject() || st.path("version").asInt() != STATE_VERSION)
            throw new UserError("data loader state: missing or unknown version (expected " + STATE_VERSION + ")");
        expect(st, "seed", seed);
        if (st.has("shuffle") && st.get("shuffle").asBoolean() != shuffle)
            throw new UserError("data loader state: data.shuffle was " + st.get("shuffle").asBoolean() + ", config has " + shuffle);
        expect(st, "seq_len", seqLen);
        expect(st, "global_batch_seqs", globalSeqs);
        JsonNode srcs = st.path("sources");
        if (!srcs.isArray() || srcs.size() != sources.size())
            throw new UserError("data loader state: " + srcs.size() + " sources saved, config has " + sources.size());
        for (int s = 0; s < sources.size(); s++) {
            JsonNode o = srcs.get(s);
            String name = sources.get(s).name();
            if (!o.path("name").asText().equals(name))
                throw new UserError("data loader state: source " + s + " was " + o.path("name").asText() + ", config has " + name);
            if (o.path("weight").asDouble() != weights[s])
                throw new UserError("data loader state: data.sources[" + name + "].weight was " + o.path("weight").asDouble() + ", config has " + weights[s]);
            if (o.path("tokens").asLong() != sources.get(s).tokens())
                throw new UserError("data loader state: source " + name + " had " + o.path("tokens").asLong() + " tokens, the prepared data now has "
                        + sources.get(s).tokens() + " (re-prepared data changes the sample order)");
        }
        if (st.path("valid_fraction").asDouble() != validFraction)
            throw new UserError("data loader state: data.valid_fraction was " + st.path("valid_fraction").asDouble() + ", config has " + validFraction);
        long k = st.path("global_batch").asLong(-1);
        int u = st.path("micro_batch").asInt(-1);
        if (k < 0 || u < 0) throw new UserError("data loader state: bad position " + st);
        if (u != 0 && (st.path("dp_size").asInt() != dpSize || st.path("micro_batch_seqs").asInt() != microSeqs))
            throw new UserError("data loader state: saved in the middle of a step (micro-batch " + u
                    + "); resume with the same parallel.dp and train.micro_batch_seqs");
        if (u >= microsPerStep) throw new UserError("data loader state: micro_batch " + u + " >= " + microsPerStep + " per step");
        rewind();
        globalBatch = k;
        micro = u;
        walkTo(microStart(), delivered);
    }

    private static void expect(JsonNode st, String field, long value) {
        if (!st.has(field) || st.get(field).asLong() != value)
            throw new UserError("data loader state: " + field + " was " + st.path(field) + ", this run has " + value);
    }

    @Override
    public Map<String, Long> tokensPerSource() {
        Map<String, Long> m = new LinkedHashMap<>();
        for (int s = 0; s < sources.size(); s++) m.put(sources.get(s).name(), delivered[s]);
        return m;
    }

    /**
     * Held-out micro-batches: the held-out sequences of all sources, interleaved by the mix rule (a source that runs
     * out is skipped), in a fixed order independent of seed and position; of the first {@code count} complete global
     * micro-batches rank r gets r, r + D, ..., so every layout evaluates the same set. Every call returns the same
     * batches.
     */
    @Override
    public List<int[]> validationMicroBatches(int count) {
        List<int[]> out = new ArrayList<>();
        validation(count, out, null);
        return out;
    }

    @Override
    public List<int[]> validationRowSources(int count) {
        List<int[]> out = new ArrayList<>();
        validation(count, null, out);
        return out;
    }

    @Override
    public List<String> sourceNames() { return sources.stream().map(TokenStream::name).toList(); }

    @Override
    public int[] lastRowSources() { return rowSource.clone(); }

    /** The walk behind {@link #validationMicroBatches}: fills the batches and/or each row's source. */
    private void validation(int count, List<int[]> out, List<int[]> rowSrc) {
        long[] limit = new long[sources.size()];
        for (int s = 0; s < limit.length; s++) limit[s] = validSeqs[s];
        Mix vm = new Mix(weights, limit);
        int[] cur = null, curSrc = null;
        int row = 0, made = 0;
        long b = 0;                        // global validation micro-batch index
        while (b < count) {
            int s = vm.next();
            if (s < 0) break;
            if (b % dpSize == dpRank) {
                if (curSrc == null) curSrc = new int[microSeqs];
                curSrc[row] = s;
                if (out != null) {
                    if (cur == null) cur = new int[microSeqs * rowLen];
                    long at = (vm.taken(s) - 1) * rowLen;
                    valid[s].read(at, cur, row * rowLen, rowLen);
                    checkRow(valid[s], at, cur, row * rowLen);
                }
            }
            if (++row == microSeqs) {
                if (curSrc != null) {
                    if (out != null) out.add(cur);
                    if (rowSrc != null) rowSrc.add(curSrc);
                    made++;
                }
                cur = null;
                curSrc = null;
                row = 0;
                b++;
            }
        }
    }

    /** Held-out spans of source {@code s} in its stream ([start, end), whole documents): for tests. */
    public long[][] heldOutSpans(int s) { return split[s].spans(); }

    /** Sequences per source (S), held-out per source (V): for logs. */
    public String describe() {
        StringBuilder sb = new StringBuilder();
        double sum = 0;
        for (double w : weights) sum += w;
        for (int s = 0; s < sources.size(); s++)
            sb.append(String.format("%s%s: %,d tokens, %,d train + %,d valid sequences of %d (%,d held-out documents), weight %.3f",
                    s == 0 ? "" : "; ", sources.get(s).name(), sources.get(s).tokens(), trainSeqs[s], validSeqs[s], rowLen,
                    split[s].documents(), weights[s] / sum));
        return sb.toString();
    }

    public int seqLen() { return seqLen; }

    public int microBatchSeqs() { return microSeqs; }

    @Override
    public void close() {
        for (TokenStream s : sources) if (s instanceof AutoCloseable c) try { c.close(); } catch (Exception ignored) { }
    }
}
