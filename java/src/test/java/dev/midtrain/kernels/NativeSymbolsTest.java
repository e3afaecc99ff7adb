package dev.midtrain.kernels;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Every function of the kernel ABI (each MT_FN(name) in native/include/midtrain_kernels.h) must be exported by both
 * libraries (mt_cpu_name / mt_cuda_name, read with {@code nm -D}) and declared by both JavaCPP bindings. The CUDA half
 * runs when the build produced libmidtrain_cuda.so (the cuda Maven profile); the CPU library is always built.
 */
class NativeSymbolsTest {
    private static final Path HEADER = Path.of("native/include/midtrain_kernels.h");
    private static final Path LIBS = Path.of("target/classes/dev/midtrain/kernels/linux-x86_64");

    static Set<String> headerFunctions() throws IOException {
        String h = Files.readString(HEADER, StandardCharsets.UTF_8);
        Set<String> names = new TreeSet<>();
        Matcher m = Pattern.compile("^\\s*\\w[\\w\\s\\*]*\\bMT_FN\\((\\w+)\\)\\s*\\(", Pattern.MULTILINE).matcher(h);
        while (m.find()) names.add(m.group(1));
        return names;
    }

    static Set<String> exportedSymbols(Path lib) throws IOException, InterruptedException {
        Process p = new ProcessBuilder("nm", "-D", "--defined-only", lib.toString()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), "nm -D failed on " + lib + ": " + out);
        Set<String> syms = new TreeSet<>();
        for (String line : out.split("\n")) {
            String[] f = line.trim().split("\\s+");
            if (f.length == 3 && f[1].equals("T")) syms.add(f[2]);
        }
        return syms;
    }

    static List<String> missing(Set<String> functions, String prefix, Set<String> have) {
        List<String> miss = new ArrayList<>();
        for (String f : functions) if (!have.contains(prefix + f)) miss.add(prefix + f);
        return miss;
    }

    static Set<String> nativeMethods(Class<?> binding) {
        Set<String> names = new TreeSet<>();
        for (Method m : binding.getDeclaredMethods())
            if (Modifier.isNative(m.getModifiers())) names.add(m.getName());
        return names;
    }

    @Test
    void headerParsesToTheKnownFunctionCount() throws IOException {
        Set<String> f = headerFunctions();
        // 27 entries (24 in the first version, + set_num_threads, + kvcache_attention_forward, + linear_forward); a change here means the bindings and both libraries must follow
        assertEquals(29, f.size(), "functions parsed from the header: " + f);
        assertTrue(f.contains("attention_backward") && f.contains("backend_id") && f.contains("scale_f32"), f.toString());
    }

    /**
     * The generated Java side (java/codegen/KernelBindings.java): every header function that takes a stream is a
     * {@link Kernels} method, named in camelCase, with the C arguments minus the stream; the others are not.
     */
    @Test
    void generatedKernelsInterfaceFollowsTheHeader() throws IOException {
        String h = Files.readString(HEADER, StandardCharsets.UTF_8);
        Matcher m = Pattern.compile("\\bMT_FN\\((\\w+)\\)\\s*\\(([^)]*)\\)", Pattern.MULTILINE).matcher(h);
        java.util.Map<String, Integer> expected = new java.util.TreeMap<>();
        while (m.find()) {
            String args = m.group(2).trim();
            if (!args.endsWith("stream")) continue;
            StringBuilder camel = new StringBuilder();
            boolean up = false;
            for (char c : m.group(1).toCharArray()) {
                if (c == '_') { up = true; continue; }
                camel.append(up ? Character.toUpperCase(c) : c);
                up = false;
            }
            expected.put(camel.toString(), args.split(",").length - 1);
        }
        java.util.Map<String, Integer> actual = new java.util.TreeMap<>();
        for (Method k : Kernels.class.getDeclaredMethods()) actual.put(k.getName(), k.getParameterCount());
        assertEquals(expected, actual);
        assertTrue(actual.containsKey("rmsnormBackward") && !actual.containsKey("backendId"), actual.toString());
        assertTrue(Kernels.class.isAssignableFrom(Backend.class) && CpuKernels.class.isAssignableFrom(CpuBackend.class));
    }

    @Test
    void cpuLibraryAndBindingCoverTheHeader() throws Exception {
        Path lib = LIBS.resolve("libmidtrain_cpu.so");
        assertTrue(Files.exists(lib), lib + " missing: run mvn package first");
        Set<String> functions = headerFunctions();
        List<String> miss = missing(functions, "mt_cpu_", exportedSymbols(lib));
        assertTrue(miss.isEmpty(), "libmidtrain_cpu.so does not export " + miss);
        List<String> missJava = missing(functions, "mt_cpu_", nativeMethods(CpuNative.class));
        assertTrue(missJava.isEmpty(), "CpuNative does not declare " + missJava);
    }

    @Test
    void cudaLibraryAndBindingCoverTheHeader() throws Exception {
        Path lib = LIBS.resolve("libmidtrain_cuda.so");
        assumeTrue(Files.exists(lib), "libmidtrain_cuda.so not built (cuda profile off)");
        Set<String> functions = headerFunctions();
        Set<String> syms = exportedSymbols(lib);
        List<String> miss = missing(functions, "mt_cuda_", syms);
        assertTrue(miss.isEmpty(), "libmidtrain_cuda.so does not export " + miss);
        assertFalse(syms.stream().anyMatch(s -> s.startsWith("mt_cpu_")), "the CUDA library exports mt_cpu_ symbols");
        assertTrue(Files.exists(LIBS.resolve("libjniCudaNative.so")), "JNI glue libjniCudaNative.so missing");
        // the binding class is inspected without initialising it (its static block loads the CUDA runtime)
        Class<?> binding = Class.forName("dev.midtrain.kernels.CudaNative", false, getClass().getClassLoader());
        List<String> missJava = missing(functions, "mt_cuda_", nativeMethods(binding));
        assertTrue(missJava.isEmpty(), "CudaNative does not declare " + missJava);
    }
}
