package dev.midtrain.prepare;

import dev.midtrain.common.UserError;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Array;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.function.LongConsumer;
import java.util.stream.Stream;

/**
 * Parquet input of prepare (plain, Snappy, Zstandard, gzip, LZ4 or Brotli pages; any number of row groups), read
 * through DuckDB's JDBC driver, and the Hugging Face Hub dataset layout ({@code huggingface-cli download --repo-type
 * dataset --local-dir DIR}: {@code DIR/data/<split>-NNNNN-of-NNNNN.parquet}).
 *
 * <p>Rows stream in file order (one DuckDB thread, insertion order preserved, streamed JDBC results: memory does not
 * grow with the file). Columns follow the Arrow reader's rules: text columns must be strings (VARCHAR; Parquet
 * BYTE_ARRAY with the STRING/UTF8 annotation, plain or dictionary-encoded), other template slots may also be numbers
 * or booleans, token ids a list of integers. A record's location is {@code file: row N} (0-based), as for Arrow.
 */
final class ParquetInput {
    private ParquetInput() {}

    static final byte[] MAGIC = "PAR1".getBytes(StandardCharsets.US_ASCII);

    /** True when {@code file} starts with the Parquet magic {@code PAR1}. */
    static boolean isParquet(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            return java.util.Arrays.equals(in.readNBytes(4), MAGIC);
        }
    }

    /**
     * Inputs with every directory replaced by its Parquet files of {@code split}, sorted by path: {@code DIR/data/**}
     * when DIR has a data/ folder (the Hub layout), else {@code DIR/**} (hidden folders such as .cache are skipped).
     * A file belongs to split S when its name starts with "S-" or "S." or a folder on its path is named S. With
     * {@code split} null: the train split's files when there are any, else all (e.g. FineWeb-Edu's sample/10BT/*.parquet).
     * Files are kept as given; a path that does not exist is left for the reader's "not found" error.
     */
    static List<Path> expand(List<Path> inputs, String split) {
        List<Path> out = new ArrayList<>();
        for (Path in : inputs) {
            if (!Files.isDirectory(in)) {
                out.add(in);
                continue;
            }
            Path root = Files.isDirectory(in.resolve("data")) ? in.resolve("data") : in;
            List<Path> all;
            try (Stream<Path> s = Files.walk(root)) {
                all = s.filter(p -> Files.isRegularFile(p) && p.getFileName().toString().endsWith(".parquet"))
                        .filter(p -> { for (Path part : root.relativize(p)) if (part.toString().startsWith(".")) return false; return true; })
                        .sorted().toList();
            } catch (IOException e) {
                throw new UserError(in + ": cannot list the dataset directory: " + e.getMessage());
            }
            if (all.isEmpty()) throw new UserError(in + ": a directory input must hold Parquet files (data/*.parquet, as huggingface-cli download writes them); found none");
            List<Path> mine = all.stream().filter(p -> inSplit(root.relativize(p), split == null ? "train" : split)).toList();
            if (mine.isEmpty() && split == null) mine = all;
            if (mine.isEmpty()) {
                TreeSet<String> seen = new TreeSet<>();
                for (Path p : all) seen.add(splitOf(root.relativize(p)));
                throw new UserError(in + ": no Parquet file of split \"" + split + "\" (--split); files there belong to " + seen);
            }
            out.addAll(mine);
        }
        return out;
    }

    private static boolean inSplit(Path rel, String split) {
        for (int i = 0; i < rel.getNameCount() - 1; i++) if (rel.getName(i).toString().equals(split)) return true;
        String name = rel.getFileName().toString();
        return name.startsWith(split + "-") || name.startsWith(split + ".");
    }

    private static String splitOf(Path rel) {
        if (rel.getNameCount() > 1) return rel.getName(rel.getNameCount() - 2).toString();
        String name = rel.getFileName().toString();
        int cut = name.indexOf('-');
        return cut > 0 ? name.substring(0, cut) : name.substring(0, name.length() - ".parquet".length());
    }

    /** Reads {@code file} into {@code sink} (see {@link Inputs#read}); returns the number of rows read. */
    static long read(Path file, Inputs.Format format, Inputs.Options opt, Inputs.Sink sink, LongConsumer progress, Inputs.Format[] used) throws IOException {
        String src = "read_parquet(" + literal(file.toAbsolutePath().toString()) + ")";
        long fileBytes = Files.size(file);
        java.util.Properties props = new java.util.Properties();
        props.setProperty("jdbc_stream_results", "true");   // rows stream from the row groups instead of being materialized
        props.setProperty("threads", "1");                  // one decoder thread: rows in file order, CPU left to the tokenizer
        props.setProperty("memory_limit", "1GB");
        long row = 0;
        try (Connection c = DriverManager.getConnection("jdbc:duckdb:", props); Statement st = c.createStatement()) {
            st.execute("SET preserve_insertion_order = true");
            Map<String, String> types = new LinkedHashMap<>();
            try (ResultSet rs = st.executeQuery("DESCRIBE SELECT * FROM " + src)) {
                while (rs.next()) types.put(rs.getString("column_name"), rs.getString("column_type"));
            }
            long total;
            try (ResultSet rs = st.executeQuery("SELECT count(*) FROM " + src)) {         // from the footer's row-group counts
                rs.next();
                total = rs.getLong(1);
            }
            if (format == null) {
                if (types.containsKey(opt.textField())) format = Inputs.Format.TEXT;
                else if (types.containsKey(opt.idsField())) format = Inputs.Format.TOKENS;
                else if (types.containsKey("question") && types.containsKey("answer")) format = Inputs.Format.QA;
                else throw new UserError(file + ": no \"" + opt.textField() + "\", \"" + opt.idsField() + "\" or question/answer column in " + types.keySet());
            }
            used[0] = format;
            Inputs.Template tpl = new Inputs.Template(opt.qaTemplate());
            List<String> cols = switch (format) {
                case TEXT -> List.of(opt.textField());
                case TOKENS -> List.of(opt.idsField());
                case QA -> {
                    List<String> l = new ArrayList<>(List.of("question", "answer"));
                    for (String s : tpl.slots()) if (!l.contains(s)) l.add(s);
                    yield l;
                }
            };
            for (String col : cols) {
                String t = types.get(col);
                if (t == null)
                    throw new UserError(format == Inputs.Format.QA && !col.equals("question") && !col.equals("answer")
                            ? "--qa-template: slot {" + col + "} is not a column of " + file + " (columns: " + types.keySet() + ")"
                            : file + ": no column \"" + col + "\" for --format " + format.id() + " (columns: " + types.keySet() + ")");
                boolean stringsOnly = format == Inputs.Format.TEXT || col.equals("question") || col.equals("answer");
                if (format == Inputs.Format.TOKENS) {
                    if (!INT_LIST.matcher(t).matches())
                        throw new UserError(file + ": column \"" + col + "\" has type " + t + ", expected a list of integers");
                } else if (!t.equals("VARCHAR") && (stringsOnly || !SCALAR.matcher(t).matches()))
                    throw new UserError(file + ": column \"" + col + "\" has type " + t + ", expected strings (Parquet BYTE_ARRAY annotated STRING/UTF8)");
            }
            StringBuilder q = new StringBuilder("SELECT ");
            for (int i = 0; i < cols.size(); i++) q.append(i > 0 ? ", " : "").append('"').append(cols.get(i).replace("\"", "\"\"")).append('"');
            q.append(" FROM ").append(src);
            long reported = 0;
            try (ResultSet rs = st.executeQuery(q.toString())) {
                while (rs.next()) {
                    String where = file + ": row " + row;
                    sink.accept(switch (format) {
                        case TEXT -> {
                            String v = rs.getString(1);
                            yield v == null ? Inputs.Rec.bad(where, "missing_field", "\"" + opt.textField() + "\" is null")
                                    : new Inputs.Rec(v, null, where, null, null);
                        }
                        case QA -> {
                            String qq = rs.getString(1), a = rs.getString(2);
                            if (qq == null || a == null) yield Inputs.Rec.bad(where, "missing_field", "question or answer is null");
                            Map<String, String> vals = new java.util.HashMap<>();
                            for (int i = 0; i < cols.size(); i++) {
                                Object o = rs.getObject(i + 1);
                                vals.put(cols.get(i), o == null ? "" : o.toString());
                            }
                            yield new Inputs.Rec(tpl.render(vals::get), null, where, null, null);
                        }
                        case TOKENS -> ids(rs.getArray(1), where, opt);
                    });
                    row++;
                    if (progress != null && total > 0) {                      // bytes consumed, pro rata of the rows read
                        long b = fileBytes * row / total;
                        progress.accept(b - reported);
                        reported = b;
                    }
                }
            }
        } catch (SQLException e) {
            String msg = String.valueOf(e.getMessage()).lines().findFirst().orElse("").trim();
            throw new UserError(file + (row > 0 ? ": row " + row : "") + ": not a readable Parquet file (" + msg + ")");
        }
        return row;
    }

    private static final java.util.regex.Pattern INT_LIST = java.util.regex.Pattern.compile("(U?(TINYINT|SMALLINT|INTEGER|BIGINT))\\[]");
    private static final java.util.regex.Pattern SCALAR = java.util.regex.Pattern.compile("U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|BOOLEAN|DECIMAL\\(\\d+,\\d+\\)");

    private static Inputs.Rec ids(Array arr, String where, Inputs.Options opt) throws SQLException {
        if (arr == null) return Inputs.Rec.bad(where, "missing_field", "\"" + opt.idsField() + "\" is null");
        Object[] v = (Object[]) arr.getArray();
        int[] ids = new int[v.length];
        for (int k = 0; k < v.length; k++) {
            if (v[k] == null) return Inputs.Rec.bad(where, "wrong_type", "token " + k + " is null");
            long id = ((Number) v[k]).longValue();
            if (id < 0 || id >= opt.vocabSize())
                return Inputs.Rec.bad(where, "out_of_vocab", "token id " + id + " outside the tokenizer's vocabulary [0, " + opt.vocabSize() + ")");
            ids[k] = (int) id;
        }
        return new Inputs.Rec(null, ids, where, null, null);
    }

    /** A SQL string literal. */
    private static String literal(String s) { return "'" + s.replace("'", "''") + "'"; }
}
