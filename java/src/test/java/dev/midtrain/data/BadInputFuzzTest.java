package dev.midtrain.data;

import dev.midtrain.prepare.Preparer;
import dev.midtrain.cli.Cli;
import dev.midtrain.tokenizer.Tokenizer;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import java.util.zip.GZIPOutputStream;

import static dev.midtrain.data.TestData.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The bad inputs of issue 20, as a table: each row is an input (files written into a fresh directory, a command line)
 * and either the one-line error it must get (exit code, the exact text after "midtrain: " with the temporary directory
 * written as {@code $D}) or the exact reading it must get (exit 0 and a check of what was written). Every row runs the
 * real CLI in-process; a refusal must print exactly one line on stderr and no stack trace.
 */
class BadInputFuzzTest {
    @TempDir Path root;

    /** Writes the row's files into {@code d}; returns the command line. */
    interface Setup { String[] args(Path d) throws Exception; }

    /** Checks an accepted input's result in {@code d}. */
    interface Reading { void check(Path d, Cli.Run run) throws Exception; }

    /** Runs a row's command line (in-process by default; a child JVM for signals and file-size limits). */
    interface Runner { Cli.Run run(Path d, String[] args) throws Exception; }

    /**
     * A refusal (exit and message; {@code reading}, when set, then checks what is left) or an exact reading (exit 0).
     * {@code message} null: the run must print no "midtrain: " line (a signal's own line is checked by the reading).
     */
    record Row(String item, String name, Setup setup, int exit, String message, Reading reading, Runner runner) {}

    static Row refused(String item, String name, int exit, String message, Setup s) { return new Row(item, name, s, exit, message, null, null); }

    static Row read(String item, String name, Reading r, Setup s) { return new Row(item, name, s, 0, null, r, null); }

    /** The midtrain CLI in a child JVM, through bash (a ulimit, or {@code signal} sent once the staging directory exists). */
    static Cli.Run child(Path d, String[] args, String ulimit, String signal) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("bash", "-c", (ulimit == null ? "" : ulimit + "; ") + "exec \"$@\"", "child",
                Path.of(System.getProperty("java.home"), "bin", "java").toString(), "--add-opens=java.base/java.nio=ALL-UNNAMED", "-Xmx512m",
                "-cp", System.getProperty("java.class.path"), "dev.midtrain.Main"));
        cmd.addAll(List.of(args));
        Path out = d.resolve("child.out"), err = d.resolve("child.err");
        Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        if (signal != null) {
            long deadline = System.nanoTime() + 60_000_000_000L;
            while (stages(d).isEmpty() && p.isAlive() && System.nanoTime() < deadline) Thread.sleep(20);
            assertTrue(p.isAlive(), "prepare finished before the signal: " + Files.readString(err));
            Thread.sleep(300);                                          // shards are being written
            new ProcessBuilder("kill", "-" + signal, Long.toString(p.pid())).inheritIO().start().waitFor();
        }
        assertTrue(p.waitFor(120, java.util.concurrent.TimeUnit.SECONDS), "child did not end");
        return new Cli.Run(p.exitValue(), Files.readString(out), Files.readString(err));
    }

    /** The hidden staging and set-aside directories of prepare runs on $D/out. */
    static List<Path> stages(Path d) throws IOException {
        try (Stream<Path> s = Files.list(d)) {
            return s.filter(p -> p.getFileName().toString().matches("\\.out\\.(prepare|old)-\\d+")).toList();
        }
    }

    /** $D/slow.jsonl: 8 copies of the KnowEdu sample (9.5 MB: ~10 s of prepare on one thread). */
    static Path slowInput(Path d) throws IOException {
        byte[] one = Files.readAllBytes(Path.of("data/knowedu/sample.jsonl"));
        try (OutputStream o = Files.newOutputStream(d.resolve("slow.jsonl"))) {
            for (int i = 0; i < 8; i++) o.write(one);
        }
        return d.resolve("slow.jsonl");
    }

    static final String TOK = TOKENIZER.toAbsolutePath().toString();

    static String[] prepare(Path d, Path in, String... more) {
        List<String> a = new ArrayList<>(List.of("prepare", "--source", "s", "--input", in.toString(), "--tokenizer", TOK,
                "--out", d.resolve("out").toString(), "--no-progress", "--threads", "2"));
        a.addAll(List.of(more));
        return a.toArray(String[]::new);
    }

    static Path file(Path d, String name, String content) throws IOException {
        return Files.writeString(d.resolve(name), content, StandardCharsets.UTF_8);
    }

    static Path bytes(Path d, String name, byte[]... parts) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (byte[] p : parts) b.write(p);
        return Files.write(d.resolve(name), b.toByteArray());
    }

    static byte[] gzip(String s) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        try (OutputStream o = new GZIPOutputStream(b)) { o.write(s.getBytes(StandardCharsets.UTF_8)); }
        return b.toByteArray();
    }

    static byte[] utf8(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    /** An Arrow IPC stream with a utf8 column "text" holding these raw bytes per row (valid UTF-8 or not). */
    static Path arrowBytes(Path file, List<byte[]> rows) throws IOException {
        try (var a = new org.apache.arrow.memory.RootAllocator(); var v = new org.apache.arrow.vector.VarCharVector("text", a);
             var root = org.apache.arrow.vector.VectorSchemaRoot.of(v); var os = Files.newOutputStream(file);
             var w = new org.apache.arrow.vector.ipc.ArrowStreamWriter(root, null, os)) {
            w.start();
            v.allocateNew(rows.size());
            for (int i = 0; i < rows.size(); i++) v.setSafe(i, rows.get(i));
            v.setValueCount(rows.size());
            root.setRowCount(rows.size());
            w.writeBatch();
            w.end();
        }
        return file;
    }

    /** An Arrow IPC stream whose "text" column is dictionary-encoded with an int32 dictionary (not strings). */
    static Path arrowIntDictionary(Path file) throws IOException {
        try (var a = new org.apache.arrow.memory.RootAllocator(); var dv = new org.apache.arrow.vector.IntVector("dict", a)) {
            dv.allocateNew(2);
            dv.set(0, 10);
            dv.set(1, 20);
            dv.setValueCount(2);
            var enc = new org.apache.arrow.vector.types.pojo.DictionaryEncoding(7L, false, new org.apache.arrow.vector.types.pojo.ArrowType.Int(32, true));
            var provider = new org.apache.arrow.vector.dictionary.DictionaryProvider.MapDictionaryProvider();
            var dictionary = new org.apache.arrow.vector.dictionary.Dictionary(dv, enc);
            provider.put(dictionary);
            try (var plain = new org.apache.arrow.vector.IntVector("text", a)) {
                plain.allocateNew(3);
                plain.set(0, 10);
                plain.set(1, 20);
                plain.set(2, 10);
                plain.setValueCount(3);
                try (var idx = (org.apache.arrow.vector.FieldVector) org.apache.arrow.vector.dictionary.DictionaryEncoder.encode(plain, dictionary);
                     var r = new org.apache.arrow.vector.VectorSchemaRoot(List.of(idx.getField()), List.of(idx), 3);
                     var os = Files.newOutputStream(file); var w = new org.apache.arrow.vector.ipc.ArrowStreamWriter(r, provider, os)) {
                    w.start();
                    w.writeBatch();
                    w.end();
                }
            }
        }
        return file;
    }

    static int[] shards(Path d) throws IOException { return readAll(d.resolve("out")); }

    static final String EMOJI = "\uD83D\uDE00";

    static List<Row> rows() {
        List<Row> t = new ArrayList<>();
        // ---- 1. lone surrogates: refused as invalid text under their own reason, the same with both encoders
        t.add(refused("1", "lone high surrogate (JSON escape) fails the run", 2,
                "$D/s.jsonl:2: lone surrogate U+D800 at character 2 of the text (not valid Unicode; an unpaired \\u escape in JSON)"
                        + " (--on-error skip to skip such records)",
                d -> prepare(d, file(d, "s.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"a \\ud800 b " + EMOJI + "\"}\n"))));
        t.add(refused("1", "lone low surrogate at the end", 2,
                "$D/s.jsonl:1: lone surrogate U+DC01 at character 5 of the text (not valid Unicode; an unpaired \\u escape in JSON)"
                        + " (--on-error skip to skip such records)",
                d -> prepare(d, file(d, "s.jsonl", "{\"text\": \"emoji\\udc01\"}\n"))));
        for (String enc : List.of("auto", "hf"))
            t.add(read("1", "--on-error skip counts lone_surrogate, keeps the emoji document exactly (--encoder " + enc + ")", (d, run) -> {
                Manifest m = Manifest.read(d.resolve("out"));
                assertEquals(java.util.Map.of("lone_surrogate", 1L), m.dropped());
                assertEquals(2, m.documents());
                RefBpe ref = new RefBpe(TOKENIZER);
                assertArrayEquals(concat(List.of(withEos(ref.encode("a " + EMOJI + " b")), withEos(ref.encode("x \uD83E\uDDDA y")))), shards(d));
            }, d -> prepare(d, file(d, "s.jsonl", "{\"text\": \"a " + EMOJI + " b\"}\n{\"text\": \"a \\ud800 b " + EMOJI + "\"}\n"
                    + "{\"text\": \"x \\ud83e\\udddA y\"}\n"), "--on-error", "skip", "--encoder", enc)));

        // ---- 2. decontamination: the 10-word and the 13-character windows at every position, across scripts
        String ten = "the quick brown fox jumps over the lazy sleeping dog";
        t.add(read("2", "10 English words then Han, Kana and Thai within 3 units are found (documents and benchmark items)", (d, run) -> {
            Manifest m = Manifest.read(d.resolve("out"));
            assertEquals(6L, m.dropped().get("decontaminated"), m.dropped().toString());
            assertEquals(2, m.documents());
            RefBpe ref = new RefBpe(TOKENIZER);
            assertArrayEquals(concat(List.of(withEos(ref.encode("the quick brown fox jumps over the lazy sleeping 狗")),
                    withEos(ref.encode("一二三四五六七八九十 then words")))), shards(d));
        }, d -> prepare(d, file(d, "docs.jsonl", String.join("\n",
                        "{\"text\": \"" + ten + " 漢\"}",                         // Han right after the 10th word
                        "{\"text\": \"intro: " + ten + ", a b 字 more\"}",       // Han 3 units after
                        "{\"text\": \"" + ten + " か\"}",                         // Kana
                        "{\"text\": \"" + ten + " x ไทย\"}",                      // Thai
                        "{\"text\": \"the quick brown fox jumps over the lazy sleeping 狗\"}",   // 9 words + Han: no 10-gram
                        "{\"text\": \"yet another " + "one two three four five six seven eight nine ten" + "\"}",  // benchmark item ends in Han
                        "{\"text\": \"前言一二三四五六七八九十十一十二十三后记\"}",           // 13 characters shared
                        "{\"text\": \"一二三四五六七八九十 then words\"}") + "\n"),  // only 10 characters: not an n-gram
                "--decontaminate", file(d, "bench.jsonl", String.join("\n",
                        "{\"question\": \"" + ten + "\"}",
                        "{\"question\": \"one two three four five six seven eight nine ten 漢字\"}",
                        "{\"question\": \"一二三四五六七八九十十一十二十三\"}") + "\n").toString())));

        // ---- 3. JSON Lines: one value per line, no duplicate keys, nothing after the gzip stream, long strings
        t.add(refused("3", "two JSON values on a line", 2,
                "$D/j.jsonl:1: malformed JSON: Trailing token (of type START_OBJECT) found after value (bound as `com.fasterxml.jackson.databind.JsonNode`):"
                        + " not allowed as per `DeserializationFeature.FAIL_ON_TRAILING_TOKENS` (--on-error skip to skip such records)",
                d -> prepare(d, file(d, "j.jsonl", "{\"text\":\"a\"}{\"text\":\"b\"}\n"))));
        t.add(refused("3", "a word after the value", 2,
                "$D/j.jsonl:2: malformed JSON: Unrecognized token 'trailing': was expecting (JSON String, Number, Array, Object or token 'null', 'true' or 'false')"
                        + " (--on-error skip to skip such records)",
                d -> prepare(d, file(d, "j.jsonl", "{\"text\":\"w\"}\n{\"text\":\"x\"} trailing\n"))));
        t.add(refused("3", "a trailing NUL", 2,
                "$D/j.jsonl:1: malformed JSON: Illegal character ((CTRL-CHAR, code 0)): only regular white space (\\r, \\n, \\t) is allowed between tokens"
                        + " (--on-error skip to skip such records)",
                d -> prepare(d, file(d, "j.jsonl", "{\"text\":\"x\"}\u0000\n"))));
        t.add(refused("3", "a duplicate key", 2,
                "$D/j.jsonl:1: malformed JSON: Duplicate field 'text' (--on-error skip to skip such records)",
                d -> prepare(d, file(d, "j.jsonl", "{\"text\":\"a\",\"text\":\"b\"}\n"))));
        t.add(refused("3", "a duplicate key in a nested object of a benchmark", 2,
                "$D/b.jsonl:1: malformed JSON in benchmark: Duplicate field 'q'",
                d -> prepare(d, file(d, "j.jsonl", "{\"text\":\"a\"}\n"), "--decontaminate",
                        file(d, "b.jsonl", "{\"question\": {\"q\": 1, \"q\": 2}}\n").toString())));
        t.add(refused("3", "garbage after the end of the gzip stream", 2,
                "$D/g.jsonl.gz: garbage after the end of the gzip stream at byte " + "$N" + " (not another gzip member)",
                d -> prepare(d, bytes(d, "g.jsonl.gz", gzip("{\"text\":\"a\"}\n"), utf8("junk")))));
        t.add(refused("3", "truncated second gzip member", 2,
                "$D/g.jsonl.gz:2: truncated gzip stream (Unexpected end of ZLIB input stream)",
                d -> {
                    byte[] second = gzip("{\"text\":\"b\"}\n");
                    return prepare(d, bytes(d, "g.jsonl.gz", gzip("{\"text\":\"a\"}\n"), Arrays.copyOf(second, second.length - 12)));
                }));
        t.add(read("3", "two gzip members (cat a.gz b.gz) are read whole", (d, run) -> {
            RefBpe ref = new RefBpe(TOKENIZER);
            assertArrayEquals(concat(List.of(withEos(ref.encode("a")), withEos(ref.encode("b")))), shards(d));
        }, d -> prepare(d, bytes(d, "g.jsonl.gz", gzip("{\"text\":\"a\"}\n"), gzip("{\"text\":\"b\"}\n")))));
        t.add(read("3", "whitespace after the value and CRLF are fine", (d, run) -> {
            RefBpe ref = new RefBpe(TOKENIZER);
            assertArrayEquals(concat(List.of(withEos(ref.encode("a")), withEos(ref.encode("b")))), shards(d));
        }, d -> prepare(d, file(d, "j.jsonl", "{\"text\":\"a\"}  \t\r\n{\"text\":\"b\"}\n"))));
        t.add(read("3", "a string over 20M characters reads as the same text in an Arrow row does", (d, run) -> {
            int[] jsonl = shards(d);
            String text = "ab ".repeat(6_700_001);
            Path arrow = arrowBytes(d.resolve("long.arrow"), List.of(utf8(text)));
            assertEquals(0, Cli.run(prepare(d.resolve("a"), arrow)).code());
            assertArrayEquals(readAll(d.resolve("a/out")), jsonl);
            assertTrue(jsonl.length > 6_000_000, "every word: " + jsonl.length);
        }, d -> {
            Files.createDirectories(d.resolve("a"));
            return prepare(d, file(d, "long.jsonl", "{\"text\": \"" + "ab ".repeat(6_700_001) + "\"}\n"));
        }));

        // ---- 4. Arrow: invalid UTF-8 refused like in JSON Lines; the dictionary error names the file
        t.add(refused("4", "invalid UTF-8 in an Arrow string", 2,
                "$D/u.arrow: row 1: column \"text\": invalid UTF-8 (byte 3 of the value) (--on-error skip to skip such records)",
                d -> prepare(d, arrowBytes(d.resolve("u.arrow"), List.of(utf8("fine"), new byte[]{'a', 'b', (byte) 0xC3, '('})))));
        t.add(read("4", "invalid UTF-8 in an Arrow string is skipped and counted as invalid_utf8", (d, run) -> {
            assertEquals(java.util.Map.of("invalid_utf8", 1L), Manifest.read(d.resolve("out")).dropped());
            RefBpe ref = new RefBpe(TOKENIZER);
            assertArrayEquals(concat(List.of(withEos(ref.encode("fine")), withEos(ref.encode("caf\u00e9")))), shards(d));
        }, d -> prepare(d, arrowBytes(d.resolve("u.arrow"), List.of(utf8("fine"), new byte[]{(byte) 0xFF}, utf8("caf\u00e9"))), "--on-error", "skip")));
        t.add(refused("4", "a dictionary column of integers names the file", 2,
                "$D/d.arrow: column \"text\": dictionary 7 is Int(32, true), expected utf8 strings",
                d -> prepare(d, arrowIntDictionary(d.resolve("d.arrow")))));

        // ---- 5. configs: integers, quoted numbers, one document, no aliases, finite numbers, sizes that fit
        t.add(refused("5", "train.steps: 1.5", 2, "$D/c.yaml: field train.steps: must be an integer, got 1.5",
                d -> info(config(d, "  steps: 200", "  steps: 1.5"))));
        t.add(refused("5", "--set train.steps=1.5", 2, "$D/c.yaml: field train.steps: must be an integer, got 1.5",
                d -> info(config(d, "", ""), "--set", "train.steps=1.5")));
        t.add(refused("5", "train.global_batch_tokens: 1.5", 2, "$D/c.yaml: field train.global_batch_tokens: must be a positive integer, got 4096.5",
                d -> info(config(d, "  global_batch_seqs: 16", "  global_batch_tokens: 4096.5"))));
        t.add(refused("5", "a quoted number", 2, "$D/c.yaml: field optimizer.lr: must be a number, got the string \"3.0e-3\" (quoted: remove the quotes)",
                d -> info(config(d, "  lr: 3.0e-3", "  lr: \"3.0e-3\""))));
        t.add(refused("5", "a quoted integer", 2, "$D/c.yaml: field model.dim: must be an integer, got the string \"128\" (quoted: remove the quotes)",
                d -> info(config(d, "  dim: 128", "  dim: '128'"))));
        t.add(refused("5", "a quoted boolean", 2, "$D/c.yaml: field model.tied_embeddings: must be true or false, got the string \"false\" (quoted: remove the quotes)",
                d -> info(config(d, "  tied_embeddings: false", "  tied_embeddings: \"false\""))));
        t.add(refused("5", "a second YAML document", 2,
                "$D/c.yaml: a second YAML document at line 38 (a config is one document; remove the '---' and what follows, or merge it into the first)",
                d -> info(config(d, "  keep_last: 2", "  keep_last: 2\n---\ntrain:\n  steps: 6"))));
        t.add(refused("5", "a scalar alias", 2, "$D/c.yaml: field optimizer.min_lr: YAML alias *lr is not supported (write the value itself)",
                d -> info(config(d, "  lr: 3.0e-3\n  min_lr: 3.0e-4", "  lr: &lr 3.0e-3\n  min_lr: *lr"))));
        t.add(refused("5", ".nan", 2, "$D/c.yaml: field optimizer.lr: must be finite, got .nan",
                d -> info(config(d, "  lr: 3.0e-3", "  lr: .nan"))));
        t.add(refused("5", "--set .inf", 2, "--set optimizer.weight_decay: must be finite, got -.Inf",
                d -> info(config(d, "", ""), "--set", "optimizer.weight_decay=-.Inf")));
        t.add(refused("5", ".inf in a list", 2, "$D/c.yaml: field data.sources[1].weight: must be finite, got .inf",
                d -> info(config(d, "path: data/prepared/knowedu, weight: 1.0", "path: data/prepared/knowedu, weight: .inf"))));
        t.add(refused("5", "model.dim=1000000000 (info)", 2, "$D/c.yaml: field model.dim: 1000000000 makes one layer's attention weights 2.50e+18 parameters,"
                        + " over the limit of 2^59 (5.8e17: 16 bytes of training state per parameter, counted in 64-bit bytes)",
                d -> info(config(d, "", ""), "--set", "model.dim=1000000000")));
        t.add(refused("5", "model.dim=1000000000 (train)", 2, "$D/c.yaml: field model.dim: 1000000000 makes one layer's attention weights 2.50e+18 parameters,"
                        + " over the limit of 2^59 (5.8e17: 16 bytes of training state per parameter, counted in 64-bit bytes)",
                d -> new String[]{"train", "--config", config(d, "", "").toString(), "--set", "model.dim=1000000000", "--synthetic-data",
                        "--run-dir", d.resolve("run").toString()}));
        t.add(refused("5", "vocab x dim over the limit", 2, "$D/c.yaml: field model.vocab_size: 2000000000 makes the embeddings 1.28e+18 parameters,"
                        + " over the limit of 2^59 (5.8e17: 16 bytes of training state per parameter, counted in 64-bit bytes)",
                d -> info(config(d, "", ""), "--set", "model.vocab_size=2000000000", "--set", "model.dim=320000000", "--set", "model.n_heads=10",
                        "--set", "model.n_kv_heads=10", "--set", "model.ffn_dim=1")));
        t.add(refused("5", "n_layers", 2, "$D/c.yaml: field model.n_layers: must be <= 4096 (the parameter layout lists every layer's tensors;"
                        + " Llama-3 405B has 126), got 2000000000",
                d -> info(config(d, "", ""), "--set", "model.n_layers=2000000000")));
        t.add(refused("5", "a micro-batch over 2^31 tokens", 2, "$D/c.yaml: field train.micro_batch_seqs: 100000000 x (train.seq_len 128 + 1) = 12900000000"
                        + " tokens in one micro-batch, over the limit of 2^31 - 9 (one Java int array)",
                d -> info(config(d, "", ""), "--set", "train.micro_batch_seqs=100000000")));
        t.add(read("5", "plain numbers, 3e-4 without a dot, and a --set number still read", (d, run) -> {
            assertTrue(run.out().contains("optimizer.lr") || run.out().contains("parameters"), run.out());
        }, d -> info(config(d, "  lr: 3.0e-3", "  lr: 3e-3"), "--set", "optimizer.min_lr=3e-4", "--set", "train.steps=10")));

        // ---- 6. manifests: a 0-byte manifest.json is one line naming it; real ids checked against max_token_id at start
        t.add(refused("6", "0-byte manifest, prepare --dedup-against", 2,
                "$D/out/manifest.json: empty (0 bytes): not a complete midtrain prepare manifest (re-run midtrain prepare)",
                d -> {
                    preparedDir(d, "--dedup");
                    Files.write(d.resolve("out/manifest.json"), new byte[0]);
                    return prepare(d.resolve("second"), file(d, "t.jsonl", "{\"text\": \"more text\"}\n"), "--dedup-against", d.resolve("out").toString());
                }));
        t.add(refused("6", "0-byte manifest, train", 2,
                "$D/out/manifest.json: empty (0 bytes): not a complete midtrain prepare manifest (re-run midtrain prepare)",
                d -> {
                    preparedDir(d);
                    Files.write(d.resolve("out/manifest.json"), new byte[0]);
                    return train(d);
                }));
        t.add(refused("6", "manifest.json holding a JSON array", 2,
                "$D/out/manifest.json: not a JSON object: not a complete midtrain prepare manifest (re-run midtrain prepare)",
                d -> {
                    preparedDir(d);
                    Files.writeString(d.resolve("out/manifest.json"), "[]\n");
                    return train(d);
                }));
        t.add(refused("6", "max_token_id edited below the shard's ids: caught at train start by verification", 2,
                "$D/out/shard-00000.arrow: holds token id $N above its manifest's max_token_id 299 (manifest edited or written by another tool; re-run midtrain prepare)",
                d -> {                                  // end-of-text id 1, ids up to 450: only the manifest's maximum is wrong
                    List<int[]> docs = new ArrayList<>();
                    java.util.Random r = new java.util.Random(5);
                    for (int i = 0; i < 40; i++) docs.add(concat(List.of(r.ints(30, 2, i == 17 ? 451 : 290).toArray(), new int[]{1})));
                    Preparer.writeDocuments("s", d.resolve("out"), new Tokenizer.Info("t.json", "0".repeat(64), 512, "</s>", 1), docs, 256, 1 << 20);
                    Path mf = d.resolve("out/manifest.json");
                    Files.writeString(mf, Files.readString(mf).replaceAll("\"max_token_id\" : \\d+", "\"max_token_id\" : 299"));
                    return train(d, "--set", "model.vocab_size=300");
                }));
        t.add(refused("6", "max_token_id over the model's vocabulary: refused at train start", 2,
                "data source s: $D/out/shard-00000.arrow holds token id 511 >= model vocab_size 300 (prepared with tokenizer " + TOK + ")",
                d -> {
                    preparedDir(d);
                    return train(d, "--set", "model.vocab_size=300", "--no-verify-data");
                }));

        // ---- 7. killed prepare: SIGTERM prints one line and removes its staging directory; SIGKILL's is removed next run
        t.add(new Row("7", "SIGTERM during prepare: one line, staging removed, previous output intact", d -> {
            preparedDir(d);
            return prepare(d, slowInput(d));
        }, 143, null, (d, run) -> {
            assertEquals("midtrain prepare: interrupted; " + d.resolve("out") + " left as it was, staging directory removed", run.err().strip());
            assertEquals(List.of(), stages(d));
            assertEquals(41, Manifest.read(d.resolve("out")).documents(), "the previous output");
        }, (d, a) -> child(d, a, null, "TERM")));
        t.add(new Row("7", "SIGKILL during prepare leaves its staging directory", d -> prepare(d, slowInput(d)),
                137, null, (d, run) -> {
            assertEquals(1, stages(d).size(), "what SIGKILL leaves");
            Cli.Run next = Cli.run(prepare(d, file(d, "small.jsonl", "{\"text\": \"small\"}\n")));
            assertEquals(0, next.code(), next.err());
            assertTrue(next.err().startsWith("midtrain prepare: removed " + d.resolve(".out.prepare-")), next.err());
            assertTrue(next.err().contains(", left by an interrupted prepare (process "), next.err());
            assertEquals(List.of(), stages(d), "the next run on the same --out removed it");
            assertEquals(1, Manifest.read(d.resolve("out")).documents());
        }, (d, a) -> child(d, a, null, "KILL")));
        t.add(read("7", "a staging directory of a live process is left alone", (d, run) -> {
            assertTrue(Files.isDirectory(d.resolve(".out.prepare-1")), "pid 1 is alive");
        }, d -> {
            Files.createDirectories(d.resolve(".out.prepare-1"));
            return prepare(d, file(d, "small.jsonl", "{\"text\": \"small\"}\n"));
        }));

        // ---- 8. non-finite runs: skipped steps write no checkpoint and count no tokens; all skipped is exit 1
        t.add(new Row("8", "every step non-finite with on_nonfinite: skip", d -> new String[]{"train", "--config", config(d, "", "").toString(),
                "--synthetic-data", "--run-dir", d.resolve("run").toString(), "--set", "train.init_std=1e30", "--set", "train.on_nonfinite=skip",
                "--set", "train.steps=3", "--set", "train.seq_len=16", "--set", "train.micro_batch_seqs=2", "--set", "train.global_batch_seqs=2",
                "--set", "train.eval_every_steps=0", "--set", "checkpoint.every_steps=1"}, 1,
                "all 3 steps of this run (to step 3) were skipped as non-finite; no checkpoint was written and no token counted:"
                        + " check the data, the learning rate and train.init_std", (d, run) -> {
            try (Stream<Path> files = Files.walk(d.resolve("run"))) {
                assertEquals(List.of(), files.filter(p -> p.getFileName().toString().matches("step[-_]?\\d+|latest|COMMITTED|.*\\.safetensors")).toList(),
                        "no checkpoint of a skipped step");
            }
            List<String> metrics = Files.readAllLines(d.resolve("run/metrics.jsonl"));
            assertEquals(3, metrics.size());
            for (String l : metrics) {
                var j = new com.fasterxml.jackson.databind.ObjectMapper().readTree(l);
                assertTrue(j.get("skipped_step").asBoolean(), l);
                assertEquals(0, j.get("tokens").asLong(), "tokens_trained: " + l);
            }
            assertTrue(Files.readString(d.resolve("run/metrics.jsonl")).contains("\"tokens_per_source\":{}"), "no source counted a token");
        }, null));

        // ---- 9. exit codes: a full disk (here a file-size limit) while writing is a runtime failure, exit 1
        t.add(new Row("9", "write failure during prepare exits 1, previous output intact", d -> {
            preparedDir(d);
            return prepare(d, Path.of("data/knowedu/sample.jsonl").toAbsolutePath());
        }, 1, "$D/.out.prepare-$N/.shard-00000.arrow.tmp: write failed: File too large", (d, run) -> {
            assertEquals(List.of(), stages(d));
            assertEquals(41, Manifest.read(d.resolve("out")).documents(), "the previous output");
        }, (d, a) -> child(d, a, "ulimit -f 512", null)));
        return t;
    }

    /** A small prepared directory $D/out (one shard). */
    static void preparedDir(Path d, String... more) throws IOException {
        StringBuilder sb = new StringBuilder();
        for (String doc : texts(3, 40, 60)) sb.append("{\"text\": ").append(json(doc)).append("}\n");
        sb.append("{\"text\": \"<|end_of_text|> and <|begin_of_text|> as text\"}\n");
        Cli.Run r = Cli.run(prepare(d, file(d, "docs.jsonl", sb.toString()), more));
        assertEquals(0, r.code(), r.err());
    }

    /** `train` of configs/tiny.yaml on $D/out for 2 steps, run directory $D/run. */
    static String[] train(Path d, String... more) throws IOException {
        Path c = config(d, "    - {name: boostqa, path: data/prepared/boostqa, weight: 1.0}\n    - {name: knowedu, path: data/prepared/knowedu, weight: 1.0}",
                "    - {name: s, path: " + d.resolve("out") + ", weight: 1.0}");
        List<String> a = new ArrayList<>(List.of("train", "--config", c.toString(), "--run-dir", d.resolve("run").toString(), "--set", "train.steps=2",
                "--set", "train.seq_len=16", "--set", "train.micro_batch_seqs=2", "--set", "train.global_batch_seqs=2", "--set", "train.eval_every_steps=0"));
        a.addAll(List.of(more));
        return a.toArray(String[]::new);
    }

    /** configs/tiny.yaml with {@code from} replaced by {@code to}, as $D/c.yaml. */
    static Path config(Path d, String from, String to) throws IOException {
        String text = Files.readString(Path.of("configs/tiny.yaml"));
        if (!from.isEmpty()) {
            assertTrue(text.contains(from), from);
            text = text.replace(from, to);
        }
        return file(d, "c.yaml", text);
    }

    static String[] info(Path config, String... more) {
        List<String> a = new ArrayList<>(List.of("info", "--config", config.toString()));
        a.addAll(List.of(more));
        return a.toArray(String[]::new);
    }

    @TestFactory
    Stream<DynamicTest> everyRowIsRefusedInOneLineOrReadExactly() {
        return rows().stream().map(r -> DynamicTest.dynamicTest("item " + r.item() + ": " + r.name(), () -> {
            Path d = Files.createDirectories(root.resolve("r" + Integer.toHexString(r.name().hashCode())));
            String[] args = r.setup().args(d);
            Cli.Run run = r.runner() == null ? Cli.run(args) : r.runner().run(d, args);
            String err = run.err().replace(d.toString(), "$D");
            if (r.exit() == 0) {
                assertEquals(0, run.code(), err);
                r.reading().check(d, run);
                return;
            }
            if (r.message() == null) {
                assertEquals(r.exit(), run.code(), err);
                assertFalse(err.contains("\tat ") || err.contains("Exception"), "no stack trace: " + err);
                assertFalse(err.contains("midtrain: "), err);
                r.reading().check(d, run);
                return;
            }
            List<String> lines = err.lines().filter(l -> !l.isBlank()).toList();
            assertEquals(r.exit(), run.code(), err);
            assertFalse(err.contains("\tat ") || err.contains("Exception"), "no stack trace: " + err);
            String last = lines.isEmpty() ? "" : lines.get(lines.size() - 1);
            assertTrue(last.startsWith("midtrain: "), err);
            String want = r.message();
            String got = last.substring("midtrain: ".length());
            if (want.contains("$N")) {                                  // a byte offset computed by the writer
                String re = java.util.regex.Pattern.quote(want).replace("$N", "\\E[0-9]+\\Q");
                assertTrue(got.matches(re), got);
            } else assertEquals(want, got);
            assertEquals(1, lines.stream().filter(l -> l.startsWith("midtrain: ") && !l.startsWith("midtrain prepare: skipped")).count(), err);
            if (r.reading() != null) r.reading().check(d, run);
        }));
    }
}
