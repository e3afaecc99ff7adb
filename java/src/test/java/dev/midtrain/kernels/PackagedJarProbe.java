package dev.midtrain.kernels;

import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Loader;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Child-JVM entry point of {@link PackagedJarLoadTest}: runs one kernel through the JavaCPP binding and prints where
 * the binding class and its native libraries were loaded from, one "key=value" per line.
 */
public final class PackagedJarProbe {
    public static void main(String[] args) {
        System.out.println("codesource=" + CpuNative.class.getProtectionDomain().getCodeSource().getLocation());
        float[] a = {1, 2, 3}, b = {10, 20, 30};
        try (FloatPointer pa = new FloatPointer(a); FloatPointer pb = new FloatPointer(b); FloatPointer out = new FloatPointer(3)) {
            int rc = CpuNative.mt_cpu_add(out.address(), pa.address(), pb.address(), 3, 0L);
            System.out.println("rc=" + rc);
            System.out.println("sum=" + (out.get(0) + out.get(1) + out.get(2)));
        }
        for (Map.Entry<String, String> e : Loader.getLoadedLibraries().entrySet())
            System.out.println("lib." + e.getKey() + "=" + e.getValue());
        // what the dynamic linker actually mapped (libjniCpuNative's RUNPATH also names the CMake build directory,
        // so a jar without libmidtrain_cpu.so would still load one from there)
        try (Stream<String> maps = Files.lines(Path.of("/proc/self/maps"))) {
            maps.map(l -> l.substring(l.indexOf('/') < 0 ? l.length() : l.indexOf('/')))
                .filter(f -> f.contains("libmidtrain_cpu") || f.contains("libjniCpuNative")).distinct()
                .forEach(f -> System.out.println("mapped." + f.substring(f.lastIndexOf('/') + 1) + "=" + f));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
