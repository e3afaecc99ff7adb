package dev.midtrain.prepare;

import dev.midtrain.data.Manifest;
import dev.midtrain.common.AtomicFiles;

import dev.midtrain.common.UserError;
import dev.midtrain.tokenizer.Tokenizer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;

/**
 * {@code midtrain prepare}: inputs → (decontaminate) → tokenize (one document per record, end-of-text appended) →
 * Arrow IPC file shards + manifest.json. The reading thread parses records; {@code threads} workers normalize,
 * decontaminate and tokenize chunks of documents; the reading thread writes results in input order, so the output
 * is identical for any thread count. Shards are written atomically; the manifest is written last (any previous
 * manifest is deleted first), so an interrupted run leaves a directory the loader refuses.
 */
public final class Preparer {
    public static final String DEFAULT_QA_TEMPLATE = "Question: {question}\nAnswer: {answer}";
    public static final String DEFAULT_EOS = Tokenizer.END_OF_TEXT;
    public static final String DEFAULT_BOS = Tokenizer.BEGIN_OF_TEXT;
    static final int MAX_ERRORS_KEPT = 20;
    private static final int CHUNK_DOCS = 256;
    private static final int CHUNK_CHARS = 1 << 20;

    /**
     * @param source       source name recorded in the manifest
     * @param inputs       input files, read in order
     * @param tokenizer    Hugging Face tokenizer.json
     * @param out          output directory (created; a previous prepare output there is replaced)
     * @param format       record format, or null to detect it per file
     * @param textField    text field/column
     * @param idsField     token-id field/column (tokens format)
     * @param qaTemplate   QA template ({question}, {answer}, {discipline}, ...)
     * @param eosToken     end-of-text token appended to every document
     * @param benchmarks   benchmark JSONL files for decontamination (may be empty)
     * @param skipErrors   skip (and count) malformed records instead of failing on the first
     * @param threads      tokenizer threads (>= 1)
     * @param batchTokens  tokens per Arrow record batch
     * @param shardTokens  tokens per shard file
     * @param progress     show a progress bar on stderr
     */
    public record Options(String source, List<Path> inputs, Path tokenizer, Path out, Inputs.Format format,
                          String textField, String idsField, String qaTemplate, String eosToken, List<Path> benchmarks,
                          boolean skipErrors, int threads, int batchTokens, long shardTokens, boolean progress,
                          String bosToken, boolean parseSpecialTokens, MinHashDedup.Params dedup, boolean hfEncoder,
                          EmbeddingDecontaminator.Params embeddings) {
        public Options {
            if (source == null || !source.matches("[A-Za-z0-9_.-]+")) throw new UserError("--source: must match [A-Za-z0-9_.-]+, got " + source);
            if (inputs == null || inputs.isEmpty()) throw new UserError("--input: at least one input file is required");
            if (threads < 1) throw new UserError("--threads: must be >= 1, got " + threads);
            if (batchTokens < 1) throw new UserError("--batch-tokens: must be >= 1, got " + batchTokens);
            if (shardTokens < batchTokens || shardTokens > ShardWriter.MAX_SHARD_TOKENS)
                throw new UserError("--shard-tokens: must be in [batch tokens, " + ShardWriter.MAX_SHARD_TOKENS + "], got " + shardTokens);
            inputs = List.copyOf(inputs);
            benchmarks = benchmarks == null ? List.of() : List.copyOf(benchmarks);
            if (embeddings != null && benchmarks.isEmpty()) throw new UserError("--decontaminate-embeddings: needs --decontaminate FILE... (the benchmark items to compare with)");
        }

        /** Defaults for everything but the required arguments (the field initializers of {@link Builder}). */
        public static Options of(String source, List<Path> inputs, Path tokenizer, Path out) {
            return builder(source, inputs, tokenizer, out).build();
        }

        /** A builder with the defaults for everything but the required arguments. */
        public static Builder builder(String source, List<Path> inputs, Path tokenizer, Path out) {
            Builder b = new Builder();
            b.source = source; b.inputs = inputs; b.tokenizer = tokenizer; b.out = out;
            return b;
        }

        /** A builder holding these options, to change some of them. */
        public Builder toBuilder() {
            Builder b = new Builder();
            b.source = source; b.inputs = inputs; b.tokenizer = tokenizer; b.out = out; b.format = format;
            b.textField = textField; b.idsField = idsField; b.qaTemplate = qaTemplate; b.eosToken = eosToken;
            b.benchmarks = benchmarks; b.skipErrors = skipErrors; b.threads = threads; b.batchTokens = batchTokens;
            b.shardTokens = shardTokens; b.progress = progress; b.bosToken = bosToken;
            b.parseSpecialTokens = parseSpecialTokens; b.dedup = dedup; b.hfEncoder = hfEncoder; b.embeddings = embeddings;
            return b;
        }

        /**
         * The one list of the fields besides the record header: a new option is a component above, a field here (its
         * initializer is its default), a line in {@link #toBuilder} and an argument in {@link #build}. Validation stays
         * in the record's constructor, run by {@link #build}.
         */
        public static final class Builder {
            public String source;
            public List<Path> inputs;
            public Path tokenizer, out;
            public Inputs.Format format;                   // null: detect per file
            public String textField = "text", idsField = "input_ids", qaTemplate = DEFAULT_QA_TEMPLATE, eosToken = DEFAULT_EOS;
            public List<Path> benchmarks = List.of();
            public boolean skipErrors;
            public int threads = Math.max(1, Runtime.getRuntime().availableProcessors());
            public int batchTokens = 1 << 20;
            public long shardTokens = 1L << 28;
            public boolean progress;
            public String bosToken;                        // null: none
            public boolean parseSpecialTokens;
            public MinHashDedup.Params dedup;              // null: no near-duplicate removal
            public boolean hfEncoder;
            public EmbeddingDecontaminator.Params embeddings; // null: no embedding decontamination

            private Builder() {}

            public Options build() {
                return new Options(source, inputs, tokenizer, out, format, textField, idsField, qaTemplate, eosToken, benchmarks,
                        skipErrors, threads, batchTokens, shardTokens, progress, bosToken, parseSpecialTokens, dedup, hfEncoder,
                        embeddings);
            }
        }

        private Options with(java.util.function.Consumer<Builder> change) {
            Builder b = toBuilder();
            change.accept(b);
            return b.build();
        }

        /** {@code e}: embedding-similarity decontamination against the --decontaminate files too, or null. */
        public Options withEmbeddings(EmbeddingDecontaminator.Params e) { return with(b -> b.embeddings = e); }
        public Options withTextField(String f) { return with(b -> b.textField = f); }
        public Options withInputs(List<Path> in) { return with(b -> b.inputs = in); }
        public Options withFormat(Inputs.Format f) { return with(b -> b.format = f); }
        public Options withBenchmarks(List<Path> bench) { return with(b -> b.benchmarks = bench); }
        public Options withSkipErrors(boolean s) { return with(b -> b.skipErrors = s); }
        public Options withThreads(int t) { return with(b -> b.threads = t); }
        public Options withSharding(int batch, long shard) { return with(b -> { b.batchTokens = batch; b.shardTokens = shard; }); }
        public Options withQaTemplate(String t) { return with(b -> b.qaTemplate = t); }
        /** {@code bos}: a token prepended to every document (e.g. DEFAULT_BOS), or null for none. */
        public Options withBos(String bos) { return with(b -> b.bosToken = bos); }
        public Options withParseSpecialTokens(boolean p) { return with(b -> b.parseSpecialTokens = p); }
        public Options withDedup(MinHashDedup.Params d) { return with(b -> b.dedup = d); }
        /** {@code hf}: encode every document with Hugging Face tokenizers (DJL), never the built-in encoder. */
        public Options withHfEncoder(boolean hf) { return with(b -> b.hfEncoder = hf); }
    }

    /** A worker's verdict on one document: tokens to keep, or why it was dropped. */
    private record Done(int[] tokens, String dropReason, long benchMask, int[] signature, String where, EmbeddingDecontaminator.Hit hit) {}
    static final int MAX_EMBEDDING_PAIRS_LISTED = 10000;

    static final int MAX_DUPLICATES_LISTED = 1000;

    private record Chunk(int input, List<Inputs.Rec> docs) {}

    private final Options opt;
    private final PrintStream err;
    private final Map<String, Long> dropped = new TreeMap<>();
    private final List<String> errors = new ArrayList<>();
    private long[] removedPerBench;
    private long documents, tokens;
    private MinHashDedup dedup;
    private int bosId = -1;
    private final List<Manifest.Duplicate> duplicates = new ArrayList<>();
    private long nearDuplicates;
    private SlicedPrepare.UnitWriter unit;
    private EmbeddingDecontaminator embed;
    private final List<Manifest.EmbeddingPair> embeddingPairs = new ArrayList<>();          // prepare --num-shards: kept documents go here, dedup is the merge's

    private Preparer(Options opt, PrintStream err) {
        this.opt = opt;
        this.err = err;
    }

    /** Runs prepare; returns the manifest written. Messages (skipped records, summary) go to {@code err}. */
    public static Manifest run(Options opt, PrintStream err) {
        try (Tokenizer tok = Tokenizer.open(opt.tokenizer(), opt.eosToken())) {
            return new Preparer(opt, err).run(tok);
        }
    }

    /**
     * One input file of a sliced prepare ({@link SlicedPrepare}): reads, cleans, decontaminates, MinHash-signs and
     * tokenizes {@code opt.inputs()} (one file) into {@code unit}, dropping no near-duplicate; writes no shard.
     */
    static void runUnit(Options opt, PrintStream err, Tokenizer tok, SlicedPrepare.UnitWriter unit, EmbeddingDecontaminator embed) {
        Preparer p = new Preparer(opt, err);
        p.unit = unit;
        p.embed = embed;                             // loaded once per slice (embedding the items is the slow part); closed by the caller
        p.run(tok);
    }

    /** As {@link #run(Options, PrintStream)} with an already loaded tokenizer (opt.tokenizer() must be its file). */
    static Manifest run(Options opt, PrintStream err, Tokenizer tok) {
        return new Preparer(opt, err).run(tok);
    }

    private Manifest run(Tokenizer tok) {
        Path out = opt.out();
        Path stage = stageFor(out);
        try (BufferAllocator alloc = new RootAllocator()) {
            Decontaminator decon = opt.benchmarks().isEmpty() ? null : Decontaminator.load(opt.benchmarks());
            if (opt.embeddings() != null && embed == null) embed = EmbeddingDecontaminator.load(opt.embeddings(), opt.benchmarks());
            removedPerBench = new long[opt.benchmarks().size()];
            for (Path in : opt.inputs()) if (!Files.isRegularFile(in)) throw new UserError(in + ": input file not found");
            checkOutput(out);
            if (opt.bosToken() != null) {
                bosId = Tokenizer.tokenId(opt.tokenizer(), opt.bosToken());
                if (bosId < 0) throw new UserError("--bos: " + opt.bosToken() + " is not a token of " + opt.tokenizer());
            }
            if (opt.dedup() != null) {
                dedup = new MinHashDedup(opt.dedup());
                if (unit == null) dedup.loadAgainst();
                dedup.startSource(opt.source());
            }
            removeStale(out, err);
            AtomicFiles.deleteTree(stage);
            Files.createDirectories(stage);
            onSignal = new Thread(() -> interrupted(stage, out), "prepare-sigterm");
            Runtime.getRuntime().addShutdownHook(onSignal);
            Inputs.Options io = new Inputs.Options(opt.textField(), opt.idsField(), opt.qaTemplate(), tok.info().vocabSize());
            List<Manifest.Input> inputs = new ArrayList<>();
            List<Manifest.ShardFile> shards;
            long totalBytes = 0;
            for (Path in : opt.inputs()) totalBytes += Files.size(in);
            ExecutorService pool = Executors.newFixedThreadPool(opt.threads(), r -> {
                Thread t = new Thread(r, "prepare-tokenize");
                t.setDaemon(true);
                return t;
            });
            AtomicLong bytesRead = new AtomicLong();
            long t0 = System.nanoTime();
            try (ShardWriter writer = new ShardWriter(stage, opt.batchTokens(), opt.shardTokens(), alloc);
                 ProgressBar bar = opt.progress() ? new ProgressBarBuilder().setTaskName("prepare " + opt.source())
                         .setInitialMax(Math.max(1, totalBytes)).setUnit(" MiB", 1 << 20).setStyle(ProgressBarStyle.ASCII)
                         .setUpdateIntervalMillis(500).build() : null) {
                ArrayDeque<Future<List<Done>>> inFlight = new ArrayDeque<>();
                long[] docsPerInput = new long[opt.inputs().size()];
                ArrayDeque<Integer> chunkInput = new ArrayDeque<>();
                for (int ii = 0; ii < opt.inputs().size(); ii++) {
                    Path in = opt.inputs().get(ii);
                    List<Inputs.Rec> chunk = new ArrayList<>();
                    int[] chars = {0};
                    final int inputIdx = ii;
                    Inputs.Result res = Inputs.read(in, opt.format(), io, alloc, rec -> {
                        if (rec.reason() != null) {
                            badRecord(rec);
                            return;
                        }
                        chunk.add(rec);
                        chars[0] += rec.text() != null ? rec.text().length() : rec.ids().length * 4;
                        if (chunk.size() >= CHUNK_DOCS || chars[0] >= CHUNK_CHARS) {
                            submit(pool, tok, decon, new Chunk(inputIdx, List.copyOf(chunk)), inFlight, chunkInput);
                            chunk.clear();
                            chars[0] = 0;
                            while (inFlight.size() > 2 * opt.threads() + 1) drain(inFlight, chunkInput, writer, docsPerInput);
                            if (bar != null) updateBar(bar, bytesRead.get(), t0);
                        }
                    }, n -> bytesRead.addAndGet(n));
                    if (!chunk.isEmpty()) submit(pool, tok, decon, new Chunk(inputIdx, List.copyOf(chunk)), inFlight, chunkInput);
                    while (!inFlight.isEmpty()) drain(inFlight, chunkInput, writer, docsPerInput);
                    if (bar != null) updateBar(bar, bytesRead.get(), t0);
                    inputs.add(new Manifest.Input(in.toString(), res.format() == null ? null : res.format().id(), res.records(), docsPerInput[ii]));
                }
                shards = writer.finish();
                if (bar != null) {
                    bar.stepTo(Math.max(1, totalBytes));
                    updateBar(bar, bytesRead.get(), t0);
                }
            } finally {
                // The workers call into the native tokenizer, which try-with-resources frees right after this block:
                // wait until none is still encoding (a chunk is bounded by CHUNK_DOCS/CHUNK_CHARS), or the JVM dies
                // in native code on a failed run (a bad record, a full disk) instead of printing its one-line error.
                pool.shutdownNow();
                boolean interrupted = false;
                while (true) {
                    try {
                        if (pool.awaitTermination(1, java.util.concurrent.TimeUnit.MINUTES)) break;
                    } catch (InterruptedException e) {
                        interrupted = true;
                    }
                }
                if (interrupted) Thread.currentThread().interrupt();
            }
            if (unit != null) {
                unit.finish(inputs.get(0), dropped, errors, removedPerBench, embeddingPairs, embed == null ? null : embed.summary(0, List.of()));
                return null;
            }
            if (documents == 0)
                throw new UserError(opt.source() + ": no documents kept from " + opt.inputs() + " (dropped: " + dropped + ")");
            Manifest.Decontamination dc = null;
            if (decon != null) {
                List<Manifest.Benchmark> bs = new ArrayList<>();
                for (int b = 0; b < removedPerBench.length; b++) {
                    Manifest.Benchmark x = decon.benchmarks().get(b);
                    bs.add(new Manifest.Benchmark(x.file(), x.sha256(), x.items(), x.ngrams(), removedPerBench[b]));
                }
                dc = new Manifest.Decontamination(Decontaminator.N, Decontaminator.NORMALIZATION, bs,
                        embed == null ? null : embed.summary(dropped.getOrDefault("decontaminated_embedding", 0L), embeddingPairs));
            }
            boolean anyQa = inputs.stream().anyMatch(i -> "qa".equals(i.format()));
            Manifest.Dedup dd = null;
            if (dedup != null) {
                dedup.writeSignatures(stage);
                dd = new Manifest.Dedup(opt.dedup().shingle(), opt.dedup().threshold(), MinHashDedup.PERMUTATIONS, dedup.bands, dedup.rows,
                        opt.dedup().against().stream().map(Path::toString).toList(), nearDuplicates, List.copyOf(duplicates));
            }
            Manifest.Cleaning cleaning = new Manifest.Cleaning(bosId >= 0 ? bosId : null, !opt.parseSpecialTokens(), dd);
            Manifest m = new Manifest(Manifest.FORMAT, opt.source(), Instant.now().toString(), tok.info(), documents, tokens,
                    shards, inputs, anyQa ? opt.qaTemplate() : null, new LinkedHashMap<>(dropped), dc, List.copyOf(errors), cleaning);
            AtomicFiles.writeBytes(stage.resolve(Manifest.FILE), m.toJson());
            swapIn(stage, out);
            double secs = (System.nanoTime() - t0) / 1e9;
            err.printf("prepare %s: %,d documents, %,d tokens in %d shard(s) -> %s (%.1f s, %,.0f tokens/s); dropped %s%n",
                    opt.source(), documents, tokens, shards.size(), out, secs, tokens / Math.max(secs, 1e-9), dropped.isEmpty() ? "none" : dropped);
            if (dc != null)
                for (Manifest.Benchmark b : dc.benchmarks())
                    err.printf("  decontamination: %s removed %,d document(s) (%,d items, %,d %d-grams)%n", b.file(), b.documentsRemoved(), b.items(), b.ngrams(), dc.ngram());
            err.printf("  encoder: %s%n", opt.hfEncoder() ? "Hugging Face tokenizers via DJL (--encoder hf)" : tok.encoderName());
            if (dd != null)
                err.printf("  near-duplicates: removed %,d document(s) (MinHash %d x %d, shingle %d, Jaccard >= %.2f)%n", nearDuplicates,
                        dd.bands(), dd.rows(), dd.shingle(), dd.threshold());
            return m;
        } catch (IOException e) {                  // writing the output failed (a full disk): a runtime failure, exit 1
            throw new UserError(out + ": " + e.getMessage(), 1, e);
        } catch (UncheckedIOException e) {
            throw new UserError(e.getMessage(), 1, e);
        } finally {
            if (onSignal != null)
                try {
                    Runtime.getRuntime().removeShutdownHook(onSignal);
                } catch (IllegalStateException shuttingDown) { }           // the hook is running: it removes the stage
            if (embed != null && unit == null) embed.close();
            try {
                AtomicFiles.deleteTree(stage);                              // a failed run leaves the previous output as it was
            } catch (IOException ignored) { }
        }
    }

    private Thread onSignal;                                                // removes the stage on SIGTERM / SIGINT

    /** Shutdown hook of a running prepare (SIGTERM, SIGINT): one line, the staging directory removed, out untouched. */
    private void interrupted(Path stage, Path out) {
        for (int attempt = 0; attempt < 5 && Files.exists(stage); attempt++) {   // workers may still be writing into it
            try {
                AtomicFiles.deleteTree(stage);
            } catch (IOException | UncheckedIOException e) {
                try { Thread.sleep(50); } catch (InterruptedException ie) { break; }
            }
        }
        err.println("midtrain prepare: interrupted; " + out + " left as it was" + (Files.exists(stage) ? " (staging directory " + stage
                + " could not be removed; the next prepare on it removes it)" : ", staging directory removed"));
        err.flush();
    }

    /**
     * Removes what a killed prepare on the same {@code out} left: sibling staging directories {@code .OUT.prepare-PID}
     * and set-aside old outputs {@code .OUT.old-PID} whose process is gone (SIGKILL leaves them; they hold up to a
     * whole prepared source). A directory of a live process is left alone (a concurrent prepare, or a reused PID).
     */
    static void removeStale(Path out, PrintStream err) throws IOException {
        Path abs = out.toAbsolutePath().normalize();
        Path parent = abs.getParent();
        if (parent == null || !Files.isDirectory(parent)) return;
        String prefix = "." + abs.getFileName();
        java.util.regex.Pattern own = java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(prefix) + "\\.(prepare|old)-(\\d{1,18})");
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(parent, prefix + ".*")) {
            for (Path p : ds) {
                java.util.regex.Matcher m = own.matcher(p.getFileName().toString());
                if (!m.matches() || !Files.isDirectory(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)) continue;
                long pid = Long.parseLong(m.group(2));
                if (pid == ProcessHandle.current().pid() || ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) continue;
                AtomicFiles.deleteTree(p);
                err.println("midtrain prepare: removed " + p + ", left by an interrupted prepare (process " + pid + " is gone)");
            }
        }
    }

    private void updateBar(ProgressBar bar, long bytes, long t0) {
        double secs = Math.max(1e-9, (System.nanoTime() - t0) / 1e9);
        bar.stepTo(bytes);
        bar.setExtraMessage(String.format(" %,.0f docs/s %,.0f tok/s", documents / secs, tokens / secs));
    }

    private void badRecord(Inputs.Rec rec) {
        if (!opt.skipErrors()) throw new UserError(rec.message() + " (--on-error skip to skip such records)");
        dropped.merge(rec.reason(), 1L, Long::sum);
        if (errors.size() < MAX_ERRORS_KEPT) {
            errors.add(rec.message());
            err.println("midtrain prepare: skipped " + rec.message());
        }
    }

    private void submit(ExecutorService pool, Tokenizer tok, Decontaminator decon, Chunk c, ArrayDeque<Future<List<Done>>> inFlight, ArrayDeque<Integer> chunkInput) {
        MinHashDedup dd = dedup;
        boolean plain = !opt.parseSpecialTokens();
        int bos = bosId;
        boolean hf = opt.hfEncoder();
        EmbeddingDecontaminator emb = embed;
        inFlight.add(pool.submit(() -> process(tok, decon, emb, dd, plain, hf, bos, c.docs())));
        chunkInput.add(c.input());
    }

    /** Worker: normalize, decontaminate, MinHash-sign and tokenize one chunk. */
    private static List<Done> process(Tokenizer tok, Decontaminator decon, EmbeddingDecontaminator emb, MinHashDedup dedup, boolean plain, boolean hfEncoder, int bos,
                                      List<Inputs.Rec> docs) {
        List<Done> out = new ArrayList<>(docs.size());
        int eos = tok.info().eosId();
        for (Inputs.Rec r : docs) {
            int[] ids = r.ids();
            if (r.text() != null ? r.text().isBlank() : ids.length == 0 || (ids.length == 1 && ids[0] == eos)) {
                out.add(new Done(null, "empty", 0, null, r.where(), null));
                continue;
            }
            List<String> units = decon == null && dedup == null ? null : TextUnits.of(r.text() != null ? r.text() : tok.decode(ids));
            long[] hashes = units == null ? null : TextUnits.hashes(units);
            long mask = decon == null ? 0 : decon.match(units, hashes);
            if (mask != 0) {
                out.add(new Done(null, "decontaminated", mask, null, r.where(), null));
                continue;
            }
            if (emb != null) {                                          // paraphrases that share no n-gram
                EmbeddingDecontaminator.Hit h = emb.match(r.text() != null ? r.text() : tok.decode(ids));
                if (h != null) {
                    out.add(new Done(null, "decontaminated_embedding", 1L << h.benchmark(), null, r.where(), h));
                    continue;
                }
            }
            int[] sig = dedup == null ? null : dedup.signature(hashes);
            if (r.text() != null) ids = tok.encodeDocument(r.text(), plain, !hfEncoder);
            boolean addBos = bos >= 0 && (ids.length == 0 || ids[0] != bos), addEos = r.text() != null || ids[ids.length - 1] != eos;
            int[] doc = new int[ids.length + (addBos ? 1 : 0) + (addEos ? 1 : 0)];
            if (addBos) doc[0] = bos;
            System.arraycopy(ids, 0, doc, addBos ? 1 : 0, ids.length);
            if (addEos) doc[doc.length - 1] = eos;
            out.add(new Done(doc, null, 0, sig, r.where(), null));
        }
        return out;
    }

    private void drain(ArrayDeque<Future<List<Done>>> inFlight, ArrayDeque<Integer> chunkInput, ShardWriter writer, long[] docsPerInput) {
        List<Done> res;
        try {
            res = inFlight.poll().get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof RuntimeException re) throw re;
            throw new IllegalStateException(c);
        }
        int input = chunkInput.poll();
        for (Done d : res) {
            if (d.tokens() == null) {
                dropped.merge(d.dropReason(), 1L, Long::sum);
                for (int b = 0; b < removedPerBench.length; b++) if ((d.benchMask() >>> b & 1) != 0) removedPerBench[b]++;
                if (d.hit() != null && embeddingPairs.size() < MAX_EMBEDDING_PAIRS_LISTED)
                    embeddingPairs.add(embed.pair(d.where(), d.hit(), opt.benchmarks()));
                continue;
            }
            if (unit != null) unit.add(d.tokens(), d.signature(), d.where());
            else if (d.signature() != null) {                                  // in input order: the first copy is kept
                MinHashDedup.Match mt = dedup.find(d.signature());
                if (mt != null) {
                    dropped.merge("near_duplicate", 1L, Long::sum);
                    nearDuplicates++;
                    if (duplicates.size() < MAX_DUPLICATES_LISTED) duplicates.add(new Manifest.Duplicate(d.where(), mt.of(), mt.jaccard()));
                    continue;
                }
                dedup.add(d.signature(), (int) documents);
            }
            if (unit == null) writer.append(d.tokens(), 0, d.tokens().length);
            documents++;
            tokens += d.tokens().length;
            docsPerInput[input]++;
        }
    }

    /**
     * Writes already tokenized documents (each should end with end-of-text) as a prepared directory: shards +
     * manifest, atomically as prepare does. For synthetic data (benchmarks) and converters.
     */
    public static Manifest writeDocuments(String source, Path out, Tokenizer.Info tokenizer, Iterable<int[]> docs,
                                          int batchTokens, long shardTokens) {
        Path stage = stageFor(out);
        try {
            checkOutput(out);
            removeStale(out, System.err);
            AtomicFiles.deleteTree(stage);
            Files.createDirectories(stage);
        } catch (IOException e) {
            throw new UserError(out + ": " + e.getMessage());
        }
        try (BufferAllocator alloc = new RootAllocator(); ShardWriter w = new ShardWriter(stage, batchTokens, shardTokens, alloc)) {
            long n = 0, t = 0;
            for (int[] d : docs) {
                w.append(d, 0, d.length);
                n++;
                t += d.length;
            }
            Manifest m = new Manifest(Manifest.FORMAT, source, Instant.now().toString(), tokenizer, n, t, w.finish(), List.of(),
                    null, Map.of(), null, List.of());
            AtomicFiles.writeBytes(stage.resolve(Manifest.FILE), m.toJson());
            w.close();
            swapIn(stage, out);
            return m;
        } catch (IOException e) {
            throw new UserError(out + ": " + e.getMessage(), 1, e);
        } catch (UncheckedIOException e) {
            throw new UserError(e.getMessage(), 1, e);
        }
    }

    /**
     * {@code out} must be absent, empty, or a previous prepare output (manifest, shards, a dedup signature file,
     * leftover temporaries); anything else in it is an error: prepare never deletes files it did not write.
     */
    static void checkOutput(Path out) throws IOException {
        if (Files.exists(out) && !Files.isDirectory(out)) throw new UserError(out + ": --out exists and is not a directory");
        if (!Files.isDirectory(out)) return;
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(out)) {
            for (Path p : ds) {
                String n = p.getFileName().toString();
                if (!(n.equals(Manifest.FILE) || n.equals(MinHashDedup.SIGNATURES_FILE) || n.matches("shard-\\d{5}\\.arrow") || n.matches("\\..*\\.tmp")))
                    throw new UserError(out + ": --out holds " + n + ", which prepare did not write; choose an empty directory");
            }
        }
    }

    /** The sibling directory a run writes into before it replaces {@code out}. */
    static Path stageFor(Path out) {
        Path abs = out.toAbsolutePath().normalize();
        return abs.resolveSibling("." + abs.getFileName() + ".prepare-" + ProcessHandle.current().pid());
    }

    /**
     * Replaces {@code out} with the complete {@code stage}: the previous output stays in place, whole, until the new
     * one is complete (a failed or interrupted prepare leaves it untouched). The old directory is renamed aside, the
     * new one renamed in, then the old one deleted.
     */
    static void swapIn(Path stage, Path out) throws IOException {
        Path abs = out.toAbsolutePath().normalize();
        Files.createDirectories(abs.getParent());
        if (Files.exists(abs)) {
            Path old = abs.resolveSibling("." + abs.getFileName() + ".old-" + ProcessHandle.current().pid());
            AtomicFiles.deleteTree(old);
            Files.move(abs, old, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
            Files.move(stage, abs, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
            AtomicFiles.fsyncDir(abs.getParent());
            AtomicFiles.deleteTree(old);
        } else {
            Files.move(stage, abs, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
            AtomicFiles.fsyncDir(abs.getParent());
        }
    }
}
