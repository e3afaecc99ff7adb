package dev.midtrain.kernels;

import org.junit.jupiter.api.Test;

import java.util.Locale;

import static org.junit.jupiter.api.Assertions.*;

/** The kernel ABI's describe: the test log and benchmark records name the OpenBLAS kernel set really in use. */
class DescribeTest {
    @Test
    void namesTheOpenBlasCoreTypeInUseAndTheProcessor() {
        try (CpuBackend be = new CpuBackend()) {
            String d = be.describe();
            assertTrue(d.contains("OpenBLAS 0."), d);
            assertFalse(d.contains("(unknown)") || d.contains("not loaded"), "OpenBLAS's core type was not found: " + d);
            int at = d.indexOf("sgemm kernels for ");
            assertTrue(at > 0, d);
            String core = d.substring(at + "sgemm kernels for ".length()).split(",")[0].trim();
            assertFalse(core.isEmpty(), d);
            String env = System.getenv("OPENBLAS_CORETYPE");
            if (env != null && !env.isEmpty()) {    // OpenBLAS honours the variable: the name reported is the one forced
                assertEquals(env.toLowerCase(Locale.ROOT), core.toLowerCase(Locale.ROOT), d);
                assertTrue(d.endsWith("(OPENBLAS_CORETYPE=" + env + ")"), d);
            }
            assertFalse(d.startsWith("unknown processor"), "no model name in /proc/cpuinfo: " + d);
            assertTrue(d.contains("linear_forward AVX-512") || d.contains("linear_forward AVX2"), d);
            assertFalse(d.contains("\0"), "NUL in " + d);
        }
    }
}
