package dev.midtrain.kernels;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.jar.Attributes;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The native libraries load from a jar, as they do for bin/midtrain and the GPU bundle, not only from
 * target/classes. Surefire runs before {@code package}, so the test packs target/classes (the same content the
 * jar plugin packs: classes plus the JavaCPP-copied .so files) and the probe class into a temporary jar, and runs
 * {@link PackagedJarProbe} in a child JVM whose class path is that jar plus the dependency jars, with target/classes
 * and target/test-classes removed, and JavaCPP's cache directory pointed into the temp dir. It then checks that the
 * binding class came from the jar and that both libraries were extracted from it into that cache and are the
 * copies the dynamic linker mapped.
 */
class PackagedJarLoadTest {

    @Test
    void nativeLibrariesLoadFromThePackagedJar(@TempDir Path tmp) throws Exception {
        Path classes = codeSource(CpuNative.class);
        Path testClasses = codeSource(PackagedJarProbe.class);
        assertTrue(Files.isDirectory(classes), "expected CpuNative from a classes directory, got " + classes);
        try (Stream<Path> libs = Files.list(classes.resolve("dev/midtrain/kernels/linux-x86_64"))) {
            List<String> names = libs.map(p -> p.getFileName().toString()).toList();
            // the CUDA pair (libmidtrain_cuda.so, libjniCudaNative.so) is there too when nvcc built it
            assertTrue(names.contains("libmidtrain_cpu.so") && names.contains("libjniCpuNative.so"),
                    "target/classes should hold libmidtrain_cpu.so and libjniCpuNative.so (JavaCPP copyLibs), has " + names);
        }

        Path jar = tmp.resolve("midtrain-packaged.jar");
        writeJar(jar, classes, testClasses.resolve("dev/midtrain/kernels/PackagedJarProbe.class"));

        List<String> cp = new ArrayList<>();
        cp.add(jar.toString());
        for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
            if (e.isEmpty()) continue;
            Path p = Path.of(e).toAbsolutePath().normalize();
            if (p.equals(classes) || p.equals(testClasses) || Files.isDirectory(p)) continue;   // only dependency jars
            cp.add(p.toString());
        }
        Path cache = tmp.resolve("javacpp-cache");
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        ProcessBuilder pb = new ProcessBuilder(java.toString(), "-Dorg.bytedeco.javacpp.cachedir=" + cache,
                "-cp", String.join(File.pathSeparator, cp), PackagedJarProbe.class.getName())
                .redirectErrorStream(true).directory(tmp.toFile());
        Process proc = pb.start();
        String output;
        try (var in = proc.getInputStream()) { output = new String(in.readAllBytes(), StandardCharsets.UTF_8); }
        assertTrue(proc.waitFor(60, TimeUnit.SECONDS), "child JVM did not finish");
        assertEquals(0, proc.exitValue(), "child JVM failed:\n" + output);

        Map<String, String> kv = new HashMap<>();
        for (String line : output.split("\n")) {
            int eq = line.indexOf('=');
            if (eq > 0) kv.put(line.substring(0, eq).trim(), line.substring(eq + 1).trim());
        }
        assertEquals("0", kv.get("rc"), output);
        assertEquals("66.0", kv.get("sum"), output);
        assertTrue(kv.getOrDefault("codesource", "").endsWith("midtrain-packaged.jar"), "binding not loaded from the jar:\n" + output);
        for (String lib : new String[] {"midtrain_cpu", "jniCpuNative"}) {
            String path = kv.entrySet().stream().filter(e -> e.getKey().startsWith("lib." + lib)).map(Map.Entry::getValue)
                    .findFirst().orElse(null);
            assertNotNull(path, lib + " not among the loaded libraries:\n" + output);
            Path p = Path.of(path);
            assertTrue(p.startsWith(cache.resolve("midtrain-packaged.jar")),
                    lib + " was not extracted from the packaged jar into the cache: " + path + "\n" + output);
            assertTrue(Files.isRegularFile(p), "extracted file missing: " + p);
            String mapped = kv.get("mapped.lib" + lib + ".so");
            assertNotNull(mapped, "lib" + lib + ".so is not mapped in the child process:\n" + output);
            assertEquals(p.toString(), mapped, "the dynamic linker mapped another copy of lib" + lib + ".so");
        }
    }

    private static Path codeSource(Class<?> c) throws URISyntaxException {
        return Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI()).toAbsolutePath().normalize();
    }

    /** A jar with every file under root (paths relative to it) plus the extra class at its package path. */
    private static void writeJar(Path jar, Path root, Path extraClass) throws IOException {
        Manifest mf = new Manifest();
        mf.getMainAttributes().put(Attributes.Name.MANIFEST_VERSION, "1.0");
        try (OutputStream os = Files.newOutputStream(jar); JarOutputStream out = new JarOutputStream(os, mf);
             Stream<Path> files = Files.walk(root)) {
            for (Path f : (Iterable<Path>) files.filter(Files::isRegularFile).sorted()::iterator) {
                String name = root.relativize(f).toString().replace(File.separatorChar, '/');
                if (name.equals("META-INF/MANIFEST.MF")) continue;
                out.putNextEntry(new JarEntry(name));
                Files.copy(f, out);
                out.closeEntry();
            }
            out.putNextEntry(new JarEntry("dev/midtrain/kernels/PackagedJarProbe.class"));
            Files.copy(extraClass, out);
            out.closeEntry();
        }
    }
}
