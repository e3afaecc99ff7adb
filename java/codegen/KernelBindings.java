import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Writes the Java side of the kernel ABI from native/include/midtrain_kernels.h, so that each kernel signature is
 * written once (in the header). Run by Maven (generate-sources) as a single-file program:
 * {@code java java/codegen/KernelBindings.java HEADER OUT_DIR}. For every {@code int MT_FN(name)(...)} it emits, in
 * package dev.midtrain.kernels:
 * <ul>
 *   <li>CpuNative / CudaNative: the JavaCPP bindings (static natives mt_cpu_name / mt_cuda_name, pointers as raw
 *       addresses with their C type in {@code @Cast});</li>
 *   <li>Kernels: one Java method per kernel that takes a stream (camelCase name, the C arguments in order minus the
 *       stream, the header's comment as its contract);</li>
 *   <li>CpuKernels / CudaKernels: Kernels over each binding on the backend's stream, a non-zero status thrown as a
 *       KernelException naming the kernel;</li>
 *   <li>TimedKernels: Kernels around another Kernels, reporting each call's wall time.</li>
 * </ul>
 * and, from every {@code #define MT_NAME value} / {@code #define MT_NAME(args) expression} of the header (the status
 * codes, scratch sizes and other limits), KernelAbi: a constant or a static method per macro, the C expression with
 * {@code (size_t)} read as {@code (long)}, the macro's comment as its javadoc, and {@code describe(status)}.
 */
public final class KernelBindings {
    record Param(String cType, String name) {
        boolean pointer() { return cType.contains("*"); }
        String javaType() {
            if (pointer() || cType.equals("int64_t")) return "long";
            if (cType.equals("int") || cType.equals("float")) return cType;
            throw new IllegalArgumentException("unsupported C type '" + cType + "' of argument " + name);
        }
        String javaName() { return camel(name, false); }
        String nativeDecl() { return (pointer() ? "@Cast(\"" + cType + "\") " : "") + javaType() + " " + javaName(); }
    }

    record Fn(String name, String comment, List<Param> params) {
        boolean kernel() { return !params.isEmpty() && params.get(params.size() - 1).name().equals("stream"); }
        List<Param> args() { return kernel() ? params.subList(0, params.size() - 1) : params; }
        String method() { return camel(name, false); }
        String javaParams() { return join(args(), p -> p.javaType() + " " + p.javaName()); }
        String javaArgs() { return join(args(), Param::javaName); }
    }

    public static void main(String[] a) throws IOException {
        Path header = Path.of(a[0]), out = Path.of(a[1]).resolve("dev/midtrain/kernels");
        List<Fn> fns = parse(Files.readString(header, StandardCharsets.UTF_8));
        Files.createDirectories(out);
        write(out.resolve("CpuNative.java"), binding(fns, "Cpu", "cpu"));
        write(out.resolve("CudaNative.java"), binding(fns, "Cuda", "cuda"));
        write(out.resolve("Kernels.java"), kernels(fns));
        write(out.resolve("CpuKernels.java"), impl(fns, "Cpu", "cpu"));
        write(out.resolve("CudaKernels.java"), impl(fns, "Cuda", "cuda"));
        write(out.resolve("TimedKernels.java"), timed(fns));
        write(out.resolve("KernelAbi.java"), abi(parseDefines(Files.readString(header, StandardCharsets.UTF_8))));
    }

    /** A {@code #define MT_...} of the header: its name, argument list (null for an object-like macro), body and comment. */
    record Define(String name, List<String> args, String body, String comment) {
        String javaBody() {
            String j = body.replace("(size_t)", "(long)");
            if (!j.matches("[\\w\\s()*+\\-/%]+")) throw new IllegalArgumentException(name + ": cannot translate '" + body + "' to Java");
            return j;
        }
        boolean isLong() { return body.contains("size_t"); }
        /** MT_ERR_ARG -> ERR_ARG; MT_RMSNORM_BWD_SCRATCH_FLOATS(N, C) -> rmsnormBwdScratchFloats */
        String javaName() { return args == null ? name.substring(3) : camel(name.substring(3).toLowerCase(), false); }
    }

    static List<Define> parseDefines(String h) {
        List<Define> out = new ArrayList<>();
        Matcher m = Pattern.compile("(?m)^#define\\s+(MT_\\w+)(\\(([^)]*)\\))?[ \\t]+(.+?)[ \\t]*(/\\*(.*?)\\*/)?[ \\t]*$").matcher(h);
        while (m.find()) {
            if (m.group(1).equals("MT_FN")) continue;
            List<String> args = m.group(2) == null ? null : List.of(m.group(3).replaceAll("\\s", "").split(","));
            out.add(new Define(m.group(1), args, m.group(4).trim(), m.group(6) == null ? "" : m.group(6).trim()));
        }
        if (out.stream().noneMatch(d -> d.name().equals("MT_OK"))) throw new IllegalArgumentException("no #define MT_OK found");
        return out;
    }

    static String abi(List<Define> defs) {
        StringBuilder s = new StringBuilder(GENERATED + "package dev.midtrain.kernels;\n\n"
                + "/**\n * The macros of native/include/midtrain_kernels.h: status codes, the scratch sizes some kernels need from the\n"
                + " * caller (in floats), and limits. Sizes are {@code long} (size_t in C).\n */\npublic final class KernelAbi {\n"
                + "    private KernelAbi() {}\n");
        for (Define d : defs) {
            s.append("\n    /** {@code ").append(d.name()).append(d.args() == null ? "" : "(" + String.join(", ", d.args()) + ")").append("}")
                    .append(d.comment().isEmpty() ? "" : ": " + html(d.comment())).append(" */\n");
            if (d.args() == null)
                s.append("    public static final ").append(d.isLong() ? "long " : "int ").append(d.javaName()).append(" = ").append(d.javaBody()).append(";\n");
            else
                s.append("    public static long ").append(d.javaName()).append('(').append(join(d.args(), a -> "long " + a))
                        .append(") { return ").append(d.javaBody()).append("; }\n");
        }
        s.append("\n    /** A status code as the header names and explains it, e.g. \"MT_ERR_ARG: a size or pointer argument is invalid ...\". */\n")
                .append("    public static String describe(int status) {\n        return switch (status) {\n");
        for (Define d : defs)
            if (d.args() == null && (d.name().equals("MT_OK") || d.name().startsWith("MT_ERR_")))
                s.append("            case ").append(d.javaName()).append(" -> \"").append(d.name())
                        .append(d.comment().isEmpty() ? "" : ": " + d.comment().replace("\\", "\\\\").replace("\"", "\\\"")).append("\";\n");
        return s.append("            default -> \"status \" + status;\n        };\n    }\n}\n").toString();
    }

    static List<Fn> parse(String h) {
        List<Fn> fns = new ArrayList<>();
        // a declaration, and the comment just before it (the kernel's contract)
        Matcher m = Pattern.compile("/\\*([^*]*\\*+(?:[^/*][^*]*\\*+)*)/\\s*int\\s+MT_FN\\((\\w+)\\)\\s*\\(([^)]*)\\)\\s*;").matcher(h);
        while (m.find()) {
            List<Param> ps = new ArrayList<>();
            String list = m.group(3).replaceAll("\\s+", " ").trim();
            if (!list.equals("void"))
                for (String p : list.split(",")) {
                    Matcher pm = Pattern.compile("^(.*?)\\s*\\b(\\w+)$").matcher(p.trim());
                    if (!pm.matches()) throw new IllegalArgumentException(m.group(2) + ": cannot parse argument '" + p + "'");
                    ps.add(new Param(pm.group(1).replace(" *", "*").trim(), pm.group(2)));
                }
            String comment = m.group(1).substring(0, m.group(1).length() - 1);      // without the closing '*'
            fns.add(new Fn(m.group(2), comment.replaceAll("(?m)^\\s*\\*?\\s?", "").trim(), ps));
        }
        if (fns.isEmpty()) throw new IllegalArgumentException("no MT_FN(...) declaration found");
        return fns;
    }

    static final String GENERATED = "// GENERATED by java/codegen/KernelBindings.java from native/include/midtrain_kernels.h: do not edit.\n";

    static String binding(List<Fn> fns, String cls, String prefix) {
        StringBuilder s = new StringBuilder(GENERATED + "package dev.midtrain.kernels;\n\n"
                + "import org.bytedeco.javacpp.Loader;\nimport org.bytedeco.javacpp.annotation.Cast;\n"
                + "import org.bytedeco.javacpp.annotation.NoException;\nimport org.bytedeco.javacpp.annotation.Platform;\n\n");
        if (prefix.equals("cpu"))
            s.append("/**\n * JavaCPP binding of libmidtrain_cpu.so, the C/OpenMP implementation of native/include/midtrain_kernels.h.\n"
                    + " * Every pointer is a raw host address. Method names are the C symbols; {@link CpuKernels} is the caller.\n */\n"
                    + "@Platform(define = \"MT_BACKEND_CPU\", include = \"midtrain_kernels.h\", link = \"midtrain_cpu\")\n@NoException\n"
                    + "public final class CpuNative {\n    static { Loader.load(); }\n");
        else
            s.append("/**\n * JavaCPP binding of libmidtrain_cuda.so, the CUDA implementation of native/include/midtrain_kernels.h\n"
                    + " * (cuda-kernels/*.cu, floatX = bf16). Every tensor pointer is a raw device address and {@code stream} a raw\n"
                    + " * cudaStream_t; the calls only enqueue work. Method names are the C symbols; {@link CudaKernels} is the caller.\n *\n"
                    + " * <p>The static initializer loads the cudart presets first, so that libcudart.so.13 is found through the presets'\n"
                    + " * search path and our library binds to that same instance (one runtime, one primary context per process). The cudart\n"
                    + " * presets are deliberately not inherited with {@code @Properties(inherit=...)}: that adds {@code -lcuda} to the JNI\n"
                    + " * link, and build machines have no libcuda.so.\n */\n"
                    + "@Platform(define = \"MT_BACKEND_CUDA\", include = \"midtrain_kernels.h\", link = \"midtrain_cuda\")\n@NoException\n"
                    + "public final class CudaNative {\n    static {\n        Loader.load(org.bytedeco.cuda.global.cudart.class);\n        Loader.load();\n    }\n");
        s.append("    private ").append(cls).append("Native() {}\n\n");
        for (Fn f : fns)
            s.append("    public static native int mt_").append(prefix).append('_').append(f.name()).append('(')
                    .append(join(f.params(), Param::nativeDecl)).append(");\n");
        return s.append("}\n").toString();
    }

    static String kernels(List<Fn> fns) {
        StringBuilder s = new StringBuilder(GENERATED + "package dev.midtrain.kernels;\n\n"
                + "/**\n * The kernels of native/include/midtrain_kernels.h as Java methods: the C name in camelCase, the C arguments in\n"
                + " * the same order minus the stream (the backend owns it), every pointer a raw address in the backend's memory.\n"
                + " * Each method's contract is the header's comment, repeated here.\n */\npublic interface Kernels {\n");
        for (Fn f : fns) {
            if (!f.kernel()) continue;
            s.append("\n    /**\n     * <pre>\n");
            for (String line : f.comment().split("\n")) s.append("     * ").append(html(line)).append('\n');
            s.append("     * </pre>\n     */\n    void ").append(f.method()).append('(').append(f.javaParams()).append(");\n");
        }
        return s.append("}\n").toString();
    }

    static String impl(List<Fn> fns, String cls, String prefix) {
        StringBuilder s = new StringBuilder(GENERATED + "package dev.midtrain.kernels;\n\n"
                + "/** {@link Kernels} over {@link " + cls + "Native}: every kernel on {@link #kernelStream()}; a non-zero status is a KernelException. */\n"
                + "public abstract class " + cls + "Kernels implements Kernels {\n"
                + "    /** The stream every kernel is enqueued on (a cudaStream_t address; 0 on the CPU). */\n"
                + "    protected abstract long kernelStream();\n");
        for (Fn f : fns) {
            if (!f.kernel()) continue;
            s.append("\n    @Override public void ").append(f.method()).append('(').append(f.javaParams()).append(") {\n        Backend.check(")
                    .append(cls).append("Native.mt_").append(prefix).append('_').append(f.name()).append('(').append(f.javaArgs())
                    .append(f.args().isEmpty() ? "" : ", ").append("kernelStream()), \"").append(f.name()).append("\");\n    }\n");
        }
        return s.append("}\n").toString();
    }

    static String timed(List<Fn> fns) {
        StringBuilder s = new StringBuilder(GENERATED + "package dev.midtrain.kernels;\n\n"
                + "/** {@link Kernels} around {@link #timedTarget()}: each call's start time goes to {@link #timed} with the kernel's C name. */\n"
                + "public abstract class TimedKernels implements Kernels {\n"
                + "    /** The kernels being timed. */\n    protected abstract Kernels timedTarget();\n\n"
                + "    /** Called after each kernel with its C name and the System.nanoTime() before the call. */\n"
                + "    protected abstract void timed(String kernel, long startNanos);\n");
        for (Fn f : fns) {
            if (!f.kernel()) continue;
            s.append("\n    @Override public void ").append(f.method()).append('(').append(f.javaParams()).append(") {\n")
                    .append("        long t = System.nanoTime();\n        timedTarget().").append(f.method()).append('(').append(f.javaArgs())
                    .append(");\n        timed(\"").append(f.name()).append("\", t);\n    }\n");
        }
        return s.append("}\n").toString();
    }

    static String camel(String snake, boolean upperFirst) {
        StringBuilder b = new StringBuilder();
        boolean up = upperFirst;
        for (char c : snake.toCharArray()) {
            if (c == '_') { up = true; continue; }
            b.append(up ? Character.toUpperCase(c) : c);
            up = false;
        }
        return b.toString();
    }

    static String html(String s) { return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("@", "&#64;"); }

    static <T> String join(List<T> xs, java.util.function.Function<T, String> f) {
        List<String> parts = new ArrayList<>();
        for (T x : xs) parts.add(f.apply(x));
        return String.join(", ", parts);
    }

    /** Writes only when the text changed, so an unchanged header does not recompile the bindings. */
    static void write(Path file, String text) throws IOException {
        if (Files.exists(file) && Files.readString(file, StandardCharsets.UTF_8).equals(text)) return;
        Files.writeString(file, text, StandardCharsets.UTF_8);
    }
}
