package dev.midtrain.cli;

import dev.midtrain.common.UserError;

import dev.midtrain.prepare.EmbeddingDecontaminator;
import dev.midtrain.prepare.Inputs;
import dev.midtrain.prepare.MinHashDedup;
import dev.midtrain.prepare.Preparer;
import dev.midtrain.prepare.SlicedPrepare;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

/** `midtrain prepare`: tokenize one source into Arrow IPC shards + manifest.json (see {@link Preparer}). */
@Command(name = "prepare", mixinStandardHelpOptions = true,
        description = {"Tokenize one data source into Arrow IPC shards plus manifest.json for training.",
                "Inputs: JSON Lines (plain or .gz) with a text field, question/answer fields (+ discipline, grade, difficulty),",
                "or token ids; Hugging Face datasets Arrow files and Parquet files (a Hub dataset directory: its data/*.parquet)",
                "with a text, question/answer or input_ids column."})
public final class PrepareCommand implements Callable<Integer> {
    @Option(names = "--source", required = true, description = "source name recorded in the manifest (e.g. boostqa)") String source;
    @Option(names = "--input", required = true, arity = "1..*", description = "input files (.jsonl, .jsonl.gz, .arrow, .parquet) or Hugging Face Hub dataset directories (data/*.parquet), read in order") List<Path> inputs;
    @Option(names = "--split", description = "split taken from a dataset directory input (default: train when it has one, else every Parquet file)") String split;
    @Option(names = "--tokenizer", required = true, description = "Hugging Face tokenizer.json") Path tokenizer;
    @Option(names = "--out", required = true, description = "output directory (a previous prepare output there is replaced)") Path out;
    @Option(names = "--format", description = "text, qa or tokens (default: detected per file)") String format;
    @Option(names = "--decontaminate", arity = "1..*", description = "benchmark JSONL files: drop documents sharing a 10-gram with them") List<Path> benchmarks = List.of();
    @Option(names = "--decontaminate-embeddings", description = "also drop documents whose sentence embedding is within --embedding-threshold cosine similarity of a --decontaminate item (paraphrases; see data/README.md)") boolean embeddings;
    @Option(names = "--embedding-threshold", defaultValue = "0.76", description = "cosine similarity that makes a document contaminated (default: ${DEFAULT-VALUE})") double embeddingThreshold;
    @Option(names = "--embedding-model", description = "ONNX sentence-embedding model (default: the bundled all-MiniLM-L6-v2, English); with --embedding-tokenizer") Path embeddingModel;
    @Option(names = "--embedding-tokenizer", description = "the --embedding-model's tokenizer.json") Path embeddingTokenizer;
    @Option(names = "--on-error", defaultValue = "fail", description = "malformed record: fail (default) or skip (counted in the manifest)") String onError;
    @Option(names = "--qa-template", defaultValue = "Question: {question}\\nAnswer: {answer}",
            description = "QA rendering; {question}, {answer}, {discipline}, {grade}, {difficulty} or any field; \\n = newline (default: ${DEFAULT-VALUE})") String qaTemplate;
    @Option(names = "--text-field", defaultValue = "text", description = "text field/column (default: ${DEFAULT-VALUE})") String textField;
    @Option(names = "--ids-field", defaultValue = "input_ids", description = "token-id field/column for --format tokens (default: ${DEFAULT-VALUE})") String idsField;
    @Option(names = "--eos-token", defaultValue = Preparer.DEFAULT_EOS, description = "end-of-text token appended to each document (default: ${DEFAULT-VALUE})") String eosToken;
    @Option(names = "--threads", description = "tokenizer threads (default: all cores)") Integer threads;
    @Option(names = "--batch-tokens", defaultValue = "1048576", description = "tokens per Arrow record batch (default: ${DEFAULT-VALUE})") int batchTokens;
    @Option(names = "--shard-tokens", defaultValue = "268435456", description = "tokens per shard file (default: ${DEFAULT-VALUE})") long shardTokens;
    @Option(names = "--bos", description = "prepend the begin-of-text token to every document (Llama-3 pretraining does)") boolean bos;
    @Option(names = "--bos-token", defaultValue = Preparer.DEFAULT_BOS, description = "the token --bos prepends (default: ${DEFAULT-VALUE})") String bosToken;
    @Option(names = "--parse-special-tokens", description = "encode special-token strings found in the text (e.g. a literal <|end_of_text|>) as those special tokens; by default they are plain text")
    boolean parseSpecialTokens;
    @Option(names = "--dedup", description = "drop near-duplicate documents (MinHash LSH, first copy kept; see data/README.md)") boolean dedup;
    @Option(names = "--dedup-shingle", defaultValue = "5", description = "units (words; CJK characters) per shingle (default: ${DEFAULT-VALUE})") int dedupShingle;
    @Option(names = "--dedup-threshold", defaultValue = "0.8", description = "Jaccard similarity that makes a near-duplicate (default: ${DEFAULT-VALUE})") double dedupThreshold;
    @Option(names = "--dedup-against", arity = "1..*", description = "prepared directories (made with --dedup) whose documents count as seen: dedup across sources")
    List<Path> dedupAgainst = List.of();
    @Option(names = "--encoder", defaultValue = "auto", description = "auto (default): the built-in byte-level BPE when tokenizer.json has Llama-3's layout (the ids of Hugging Face tokenizers, about 10x faster; see data/README.md), Hugging Face tokenizers via DJL otherwise; hf: always Hugging Face tokenizers via DJL") String encoder;
    @Option(names = "--num-shards", description = "prepare in N processes/nodes: this process runs the slice --shard-index (inputs k with k mod N = index) into OUT.slices/, then one --merge writes OUT (byte-identical to one process)") Integer numShards;
    @Option(names = "--shard-index", description = "which slice this process runs, 0 .. N-1 (e.g. $SLURM_ARRAY_TASK_ID)") Integer shardIndex;
    @Option(names = "--merge", description = "with --num-shards: merge the slices' units into OUT (global near-duplicate removal, one manifest)") boolean merge;
    @Option(names = "--no-progress", description = "no progress bar (it is shown only on a terminal anyway)") boolean noProgress;

    @Override
    public Integer call() {
        if (!onError.equals("fail") && !onError.equals("skip")) throw new UserError("--on-error: must be fail or skip, got " + onError);
        String tpl = unescape(qaTemplate);
        if (!tpl.contains("{question}") || !tpl.contains("{answer}"))
            throw new UserError("--qa-template: must contain {question} and {answer}, got " + qaTemplate);
        if (!encoder.equals("auto") && !encoder.equals("hf")) throw new UserError("--encoder: auto or hf, got " + encoder);
        int th = threads != null ? threads : Runtime.getRuntime().availableProcessors();
        Preparer.Options.Builder b = Preparer.Options.builder(source, Inputs.expand(inputs, split), tokenizer, out);
        b.format = format == null ? null : Inputs.Format.parse(format);
        b.textField = textField; b.idsField = idsField; b.qaTemplate = tpl; b.eosToken = eosToken; b.benchmarks = benchmarks;
        b.skipErrors = onError.equals("skip"); b.threads = th; b.batchTokens = batchTokens; b.shardTokens = shardTokens;
        b.progress = !noProgress && System.console() != null; b.bosToken = bos ? bosToken : null;
        b.parseSpecialTokens = parseSpecialTokens;
        b.dedup = dedup || !dedupAgainst.isEmpty() ? new MinHashDedup.Params(dedupShingle, dedupThreshold, dedupAgainst) : null;
        b.hfEncoder = encoder.equals("hf");
        b.embeddings = embeddings ? new EmbeddingDecontaminator.Params(embeddingModel, embeddingTokenizer, embeddingThreshold) : null;
        Preparer.Options opt = b.build();
        if (!embeddings && (embeddingModel != null || embeddingTokenizer != null))
            throw new UserError("--embedding-model/--embedding-tokenizer: need --decontaminate-embeddings");
        if (numShards == null) {
            if (shardIndex != null || merge) throw new UserError((merge ? "--merge" : "--shard-index") + ": needs --num-shards");
            Preparer.run(opt, System.err);
        } else if (merge) {
            if (shardIndex != null) throw new UserError("--merge: takes no --shard-index (it merges all slices)");
            SlicedPrepare.merge(opt, numShards, System.err);
        } else {
            if (shardIndex == null) throw new UserError("--num-shards: give --shard-index I (run slice I) or --merge");
            SlicedPrepare.runSlice(opt, numShards, shardIndex, System.err);
        }
        return 0;
    }

    /** \n, \t and \\ in a command-line template. */
    static String unescape(String s) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '\\' && i + 1 < s.length()) {
                char n = s.charAt(++i);
                sb.append(n == 'n' ? '\n' : n == 't' ? '\t' : n == '\\' ? '\\' : n);
            } else sb.append(c);
        }
        return sb.toString();
    }
}
