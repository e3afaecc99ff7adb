package dev.midtrain.kernels;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The header promises bitwise reproducibility "run to run on the same hardware and sizes"; the CPU kernels go
 * further and cut every reduction by the sizes only, never by the thread count. This runs {@link DeterminismProbe}
 * here (default OpenMP threads) and in child JVMs with OMP_NUM_THREADS = 1 and 3, and requires identical digests.
 */
class ThreadCountDeterminismTest {

    @Test
    void outputsAreBitwiseIdenticalForAnyThreadCount() throws Exception {
        String here = DeterminismProbe.digest();
        assertEquals(here, DeterminismProbe.digest(), "two runs in one process differ");
        for (int threads : new int[] {1, 3})
            assertEquals(here, childDigest(threads, false), "digest with OMP_NUM_THREADS=" + threads + " differs from the default");
        // linear_forward's packed GEMM has an AVX-512 and an AVX2 micro-kernel with the same per-element sums: the
        // AVX2 one forced (MT_NO_AVX512) gives the same bits (the same run twice on a host without AVX-512)
        assertEquals(here, childDigest(2, true), "digest with MT_NO_AVX512=1 differs from the default");
    }

    private static String childDigest(int threads, boolean noAvx512) throws Exception {
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        ProcessBuilder pb = new ProcessBuilder(java.toString(), "-cp", System.getProperty("java.class.path"),
                DeterminismProbe.class.getName()).redirectErrorStream(true);
        pb.environment().put("OMP_NUM_THREADS", Integer.toString(threads));
        if (noAvx512) pb.environment().put("MT_NO_AVX512", "1");
        Process p = pb.start();
        String out;
        try (var in = p.getInputStream()) { out = new String(in.readAllBytes(), StandardCharsets.UTF_8); }
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "child JVM did not finish");
        assertEquals(0, p.exitValue(), "child JVM failed:\n" + out);
        for (String line : out.split("\n"))
            if (line.startsWith("digest=")) return line.substring("digest=".length()).trim();
        return fail("no digest in the child's output:\n" + out);
    }
}
