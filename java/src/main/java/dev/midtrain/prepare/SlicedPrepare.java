package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.midtrain.common.AtomicFiles;
import dev.midtrain.common.UserError;
import dev.midtrain.tokenizer.Tokenizer;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * {@code prepare --num-shards N --shard-index I} and {@code prepare --num-shards N --merge}: prepare across processes
 * and nodes, with the output byte-identical to one {@code prepare} process whatever N.
 *
 * <p>The unit of work is an input file: slice I takes the inputs k with {@code k mod N == I} (a Hub dataset's
 * data/*.parquet files, or any list of files). For each it runs prepare's reading, cleaning, decontamination, MinHash
 * signing and tokenization (exactly one process's code: decontamination is per document, so identical) and writes a
 * unit to {@code OUT.slices/}: {@code input-KKKKK.docs} (every kept document's tokens, signature and location, in input
 * order) and then {@code input-KKKKK.json} (its counts, dropped records and an options fingerprint), both atomically;
 * a unit with its .json is complete, so a killed slice leaves only incomplete units and reruns alone (its complete units
 * with the same fingerprint are kept). The merge reads the units in input order and does what one process does
 * after tokenizing: near-duplicate removal over all signatures (global across slices, first copy kept), shards, one
 * manifest. The merge's memory is the MinHash index (see data/README.md); its time is a pass over the tokens.
 */
public final class SlicedPrepare {
    private SlicedPrepare() {}

    private static final byte[] MAGIC = "MTUNIT01".getBytes(StandardCharsets.US_ASCII);
    private static final ObjectMapper JSON = new ObjectMapper();

    /** Where the slices of {@code out} write their units. */
    public static Path slicesDir(Path out) {
        Path abs = out.toAbsolutePath().normalize();
        return abs.resolveSibling(abs.getFileName() + ".slices");
    }

    private static String unitName(int k) { return String.format("input-%05d", k); }

    private static void checkSlicing(int numShards, int index, int inputs) {
        if (numShards < 1) throw new UserError("--num-shards: must be >= 1, got " + numShards);
        if (index < -1 || index >= numShards) throw new UserError("--shard-index: must be in [0, " + numShards + "), got " + index);
        if (numShards > inputs)
            throw new UserError("--num-shards: " + numShards + " slices for " + inputs + " input file(s); slices take whole files, so use at most " + inputs);
    }

    /** Runs slice {@code index} of {@code numShards}: writes the units of its inputs; returns how many it (re)wrote. */
    public static int runSlice(Preparer.Options opt, int numShards, int index, PrintStream err) {
        checkSlicing(numShards, index, opt.inputs().size());
        if (index < 0) throw new UserError("--shard-index: required with --num-shards (or --merge)");
        Path work = slicesDir(opt.out());
        int written = 0;
        EmbeddingDecontaminator embed = null;
        try (Tokenizer tok = Tokenizer.open(opt.tokenizer(), opt.eosToken())) {
            Files.createDirectories(work);
            for (int k = index; k < opt.inputs().size(); k += numShards) {
                String fp = fingerprint(opt, k);
                Path json = work.resolve(unitName(k) + ".json");
                if (Files.exists(json) && fp.equals(readUnit(json).path("fingerprint").asText())) {
                    err.printf("prepare %s: slice %d/%d: %s already done (%s)%n", opt.source(), index, numShards, opt.inputs().get(k), json);
                    continue;
                }
                Files.deleteIfExists(json);
                try (UnitWriter u = new UnitWriter(work, k, fp)) {
                    if (embed == null && opt.embeddings() != null) embed = EmbeddingDecontaminator.load(opt.embeddings(), opt.benchmarks());
                    Preparer.runUnit(opt.withInputs(List.of(opt.inputs().get(k))), err, tok, u, embed);
                }
                written++;
                err.printf("prepare %s: slice %d/%d: %s -> %s%n", opt.source(), index, numShards, opt.inputs().get(k), json);
            }
        } catch (IOException e) {                  // writing a unit failed (a full disk): a runtime failure, exit 1
            throw new UserError(work + ": " + e.getMessage(), 1, e);
        } finally {
            if (embed != null) embed.close();
        }
        return written;
    }

    /** Everything that decides a unit's content: a rerun with other flags or a changed input is not "already done". */
    static String fingerprint(Preparer.Options o, int k) {
        try {
            Path in = o.inputs().get(k);
            StringBuilder sb = new StringBuilder();
            sb.append(o.source()).append('\0').append(AtomicFiles.sha256(o.tokenizer())).append('\0').append(o.format()).append('\0')
                    .append(o.textField()).append('\0').append(o.idsField()).append('\0').append(o.qaTemplate()).append('\0')
                    .append(o.eosToken()).append('\0').append(o.bosToken()).append('\0').append(o.parseSpecialTokens()).append('\0')
                    .append(o.hfEncoder()).append('\0').append(o.skipErrors()).append('\0')
                    .append(o.dedup() == null ? "nodedup" : "shingle=" + o.dedup().shingle()).append('\0')
                    .append(o.embeddings()).append('\0');
            for (Path b : o.benchmarks()) sb.append(b).append('=').append(AtomicFiles.sha256(b)).append('\0');
            sb.append(in).append('\0').append(Files.size(in)).append('\0').append(Files.getLastModifiedTime(in).toMillis());
            return HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256").digest(sb.toString().getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchFileException e) {
            throw new UserError(e.getFile() + ": input file not found");
        } catch (IOException e) {
            throw new UserError(e.getMessage());
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static JsonNode readUnit(Path json) {
        try {
            return JSON.readTree(json.toFile());
        } catch (IOException e) {
            throw new UserError(json + ": unreadable slice unit (" + e.getMessage().split("\n")[0] + "); rerun its slice");
        }
    }

    /** A unit being written: documents streamed to input-KKKKK.docs, the .json written by {@link #finish}. */
    static final class UnitWriter implements AutoCloseable {
        private final Path work;
        private final int k;
        private final String fingerprint;
        private final AtomicFiles.Pending pending;
        private final DataOutputStream out;
        private long documents, tokens;

        UnitWriter(Path work, int k, String fingerprint) throws IOException {
            this.work = work;
            this.k = k;
            this.fingerprint = fingerprint;
            pending = AtomicFiles.begin(work.resolve(unitName(k) + ".docs"));
            out = new DataOutputStream(new BufferedOutputStream(Channels.newOutputStream(pending.channel()), 1 << 16));
            out.write(MAGIC);
        }

        /** A kept document (in input order): tokens, MinHash signature (null: no text units), location. */
        void add(int[] tokens, int[] signature, String where) {
            try {
                out.writeInt(tokens.length);
                for (int t : tokens) out.writeInt(t);
                out.writeBoolean(signature != null);
                if (signature != null) for (int v : signature) out.writeInt(v);
                out.writeUTF(where.length() > 8000 ? where.substring(0, 8000) : where);
                documents++;
                this.tokens += tokens.length;
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(work + ": " + e.getMessage(), e);
            }
        }

        void finish(Manifest.Input input, Map<String, Long> dropped, List<String> errors, long[] removedPerBench, List<Manifest.EmbeddingPair> pairs,
                    Manifest.Embeddings embedding) {
            try {
                out.flush();
                AtomicFiles.Written w = pending.commit();
                ObjectNode j = JSON.createObjectNode();
                j.put("fingerprint", fingerprint).put("input", input.path()).put("format", input.format()).put("records", input.records())
                        .put("documents", documents).put("tokens", tokens).put("docsBytes", w.bytes()).put("docsSha256", w.sha256());
                j.set("dropped", JSON.valueToTree(new TreeMap<>(dropped)));
                j.set("errors", JSON.valueToTree(errors));
                j.set("removedPerBenchmark", JSON.valueToTree(removedPerBench));
                j.set("embeddingPairs", JSON.valueToTree(pairs));
                j.set("embedding", JSON.valueToTree(embedding));             // the model's facts (its counts are the merge's)
                AtomicFiles.writeBytes(work.resolve(unitName(k) + ".json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(j));
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(work + ": " + e.getMessage(), e);
            }
        }

        @Override public void close() throws IOException { pending.close(); }
    }

    /**
     * Merges the units of all inputs into {@code opt.out()} (shards + manifest, atomically, as prepare writes them)
     * and deletes {@code OUT.slices/}. Every unit must be complete and made with the same options and inputs.
     */
    public static Manifest merge(Preparer.Options opt, int numShards, PrintStream err) {
        checkSlicing(numShards, -1, opt.inputs().size());
        Path work = slicesDir(opt.out()), out = opt.out();
        int n = opt.inputs().size();
        List<JsonNode> units = new ArrayList<>();
        for (int k = 0; k < n; k++) {
            Path json = work.resolve(unitName(k) + ".json");
            String rerun = "rerun prepare --num-shards " + numShards + " --shard-index " + (k % numShards);
            if (!Files.exists(json))
                throw new UserError(work + ": " + unitName(k) + " (" + opt.inputs().get(k) + ") is not complete: " + rerun);
            JsonNode u = readUnit(json);
            if (!fingerprint(opt, k).equals(u.path("fingerprint").asText()))
                throw new UserError(json + ": made with other options or another version of " + opt.inputs().get(k) + " than this merge: " + rerun);
            units.add(u);
        }
        Path stage = Preparer.stageFor(out);
        long t0 = System.nanoTime();
        try (Tokenizer tok = Tokenizer.open(opt.tokenizer(), opt.eosToken()); BufferAllocator alloc = new RootAllocator()) {
            Preparer.checkOutput(out);
            AtomicFiles.deleteTree(stage);
            Files.createDirectories(stage);
            MinHashDedup dedup = null;
            if (opt.dedup() != null) {
                dedup = new MinHashDedup(opt.dedup());
                dedup.loadAgainst();
                dedup.startSource(opt.source());
            }
            Map<String, Long> dropped = new TreeMap<>();
            List<String> errors = new ArrayList<>();
            long[] removed = new long[opt.benchmarks().size()];
            List<Manifest.Input> inputs = new ArrayList<>();
            List<Manifest.Duplicate> duplicates = new ArrayList<>();
            List<Manifest.EmbeddingPair> pairs = new ArrayList<>();
            long documents = 0, tokens = 0, nearDuplicates = 0;
            List<Manifest.ShardFile> shards;
            try (ShardWriter writer = new ShardWriter(stage, opt.batchTokens(), opt.shardTokens(), alloc)) {
                int[] sig = new int[MinHashDedup.PERMUTATIONS];
                for (int k = 0; k < n; k++) {
                    JsonNode u = units.get(k);
                    u.path("dropped").fields().forEachRemaining(e -> dropped.merge(e.getKey(), e.getValue().asLong(), Long::sum));
                    for (JsonNode e : u.path("errors")) if (errors.size() < Preparer.MAX_ERRORS_KEPT) errors.add(e.asText());
                    for (int b = 0; b < removed.length; b++) removed[b] += u.path("removedPerBenchmark").path(b).asLong();
                    for (JsonNode e : u.path("embeddingPairs"))
                        if (pairs.size() < Preparer.MAX_EMBEDDING_PAIRS_LISTED) pairs.add(JSON.treeToValue(e, Manifest.EmbeddingPair.class));
                    Path docs = work.resolve(unitName(k) + ".docs");
                    if (Files.size(docs) != u.path("docsBytes").asLong())
                        throw new UserError(docs + ": " + Files.size(docs) + " bytes, its unit says " + u.path("docsBytes").asLong()
                                + ": rerun prepare --num-shards " + numShards + " --shard-index " + (k % numShards));
                    long kept = 0, count = u.path("documents").asLong();
                    try (DataInputStream in = new DataInputStream(new BufferedInputStream(Files.newInputStream(docs), 1 << 16))) {
                        byte[] magic = in.readNBytes(MAGIC.length);
                        if (!java.util.Arrays.equals(magic, MAGIC)) throw new UserError(docs + ": not a slice unit of this version");
                        int[] buf = new int[1024];
                        for (long d = 0; d < count; d++) {
                            int len = in.readInt();
                            if (len > buf.length) buf = new int[Math.max(len, 2 * buf.length)];
                            for (int i = 0; i < len; i++) buf[i] = in.readInt();
                            boolean hasSig = in.readBoolean();
                            if (hasSig) for (int i = 0; i < sig.length; i++) sig[i] = in.readInt();
                            String where = in.readUTF();
                            if (hasSig && dedup != null) {                     // as one process: in input order, first copy kept
                                MinHashDedup.Match mt = dedup.find(sig);
                                if (mt != null) {
                                    dropped.merge("near_duplicate", 1L, Long::sum);
                                    nearDuplicates++;
                                    if (duplicates.size() < Preparer.MAX_DUPLICATES_LISTED) duplicates.add(new Manifest.Duplicate(where, mt.of(), mt.jaccard()));
                                    continue;
                                }
                                dedup.add(sig, (int) documents);
                            }
                            writer.append(buf, 0, len);
                            documents++;
                            tokens += len;
                            kept++;
                        }
                    } catch (EOFException e) {
                        throw new UserError(docs + ": truncated slice unit: rerun prepare --num-shards " + numShards + " --shard-index " + (k % numShards));
                    }
                    inputs.add(new Manifest.Input(u.path("input").asText(), u.path("format").isNull() ? null : u.path("format").asText(),
                            u.path("records").asLong(), kept));
                }
                shards = writer.finish();
            }
            if (documents == 0)
                throw new UserError(opt.source() + ": no documents kept from " + opt.inputs() + " (dropped: " + dropped + ")");
            Manifest.Decontamination dc = null;
            if (!opt.benchmarks().isEmpty()) {
                Decontaminator decon = Decontaminator.load(opt.benchmarks());
                List<Manifest.Benchmark> bs = new ArrayList<>();
                for (int b = 0; b < removed.length; b++) {
                    Manifest.Benchmark x = decon.benchmarks().get(b);
                    bs.add(new Manifest.Benchmark(x.file(), x.sha256(), x.items(), x.ngrams(), removed[b]));
                }
                Manifest.Embeddings em = null;
                if (opt.embeddings() != null) {
                    Manifest.Embeddings e = JSON.treeToValue(units.get(0).path("embedding"), Manifest.Embeddings.class);
                    em = new Manifest.Embeddings(e.model(), e.modelSha256(), e.threshold(), e.windowTokens(), e.strideTokens(), e.items(),
                            dropped.getOrDefault("decontaminated_embedding", 0L), List.copyOf(pairs));
                }
                dc = new Manifest.Decontamination(Decontaminator.N, Decontaminator.NORMALIZATION, bs, em);
            }
            Manifest.Dedup dd = null;
            if (dedup != null) {
                dedup.writeSignatures(stage);
                dd = new Manifest.Dedup(opt.dedup().shingle(), opt.dedup().threshold(), MinHashDedup.PERMUTATIONS, dedup.bands, dedup.rows,
                        opt.dedup().against().stream().map(Path::toString).toList(), nearDuplicates, List.copyOf(duplicates));
            }
            int bosId = opt.bosToken() == null ? -1 : Tokenizer.tokenId(opt.tokenizer(), opt.bosToken());
            boolean anyQa = inputs.stream().anyMatch(i -> "qa".equals(i.format()));
            Manifest m = new Manifest(Manifest.FORMAT, opt.source(), Instant.now().toString(), tok.info(), documents, tokens, shards, inputs,
                    anyQa ? opt.qaTemplate() : null, new LinkedHashMap<>(dropped), dc, List.copyOf(errors),
                    new Manifest.Cleaning(bosId >= 0 ? bosId : null, !opt.parseSpecialTokens(), dd));
            AtomicFiles.writeBytes(stage.resolve(Manifest.FILE), m.toJson());
            Preparer.swapIn(stage, out);
            AtomicFiles.deleteTree(work);
            double secs = (System.nanoTime() - t0) / 1e9;
            err.printf("prepare %s: merged %d input(s) of %d slice(s): %,d documents, %,d tokens in %d shard(s) -> %s (%.1f s); dropped %s%n",
                    opt.source(), n, numShards, documents, tokens, shards.size(), out, secs, dropped.isEmpty() ? "none" : dropped);
            return m;
        } catch (IOException e) {                  // writing the output failed: a runtime failure, exit 1
            throw new UserError(out + ": " + e.getMessage(), 1, e);
        } finally {
            try {
                AtomicFiles.deleteTree(stage);
            } catch (IOException ignored) { }
        }
    }
}
