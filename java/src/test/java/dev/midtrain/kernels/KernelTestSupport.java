package dev.midtrain.kernels;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * Test helpers shared by the kernel tests: a backend with tracked allocations, upload/download of float and int
 * tensors, NaN poisoning of outputs, seeded random inputs and element-wise closeness checks.
 */
final class KernelTestSupport implements AutoCloseable {
    final Backend be;
    private final List<Long> live = new ArrayList<>();

    KernelTestSupport(Backend be) { this.be = be; }

    /** A floatX/fp32 tensor holding {@code values} (CPU: both are fp32). */
    long put(float[] values) {
        long p = alloc(values.length);
        be.upload(p, values);
        return p;
    }

    long putInts(int[] values) {
        long p = be.alloc(4L * Math.max(1, values.length));
        live.add(p);
        be.upload(p, values);
        return p;
    }

    /** n floats filled with NaN, so an element the kernel fails to write is caught. */
    long poisoned(int n) {
        long p = alloc(n);
        be.fillF32(p, Float.NaN, n);
        return p;
    }

    long alloc(long nFloats) {
        long p = be.alloc(4L * Math.max(1, nFloats));
        live.add(p);
        return p;
    }

    float[] get(long p, int n) {
        float[] out = new float[n];
        be.download(out, p);
        return out;
    }

    @Override public void close() {
        for (long p : live) be.free(p);
        live.clear();
    }

    // ------------------------------------------------------------------------------------------ random inputs

    static float[] uniform(Random r, int n, float lo, float hi) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = lo + (hi - lo) * r.nextFloat();
        return x;
    }

    static float[] gaussian(Random r, int n, double std) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) (r.nextGaussian() * std);
        return x;
    }

    static int[] ints(Random r, int n, int bound) {
        int[] x = new int[n];
        for (int i = 0; i < n; i++) x[i] = r.nextInt(bound);
        return x;
    }

    // ------------------------------------------------------------------------------------------------ checks

    /** |actual - expected| <= atol + rtol * |expected| for every element; no NaN allowed. */
    static void assertClose(String what, double[] expected, float[] actual, double atol, double rtol) {
        if (expected.length != actual.length) fail(what + ": length " + actual.length + " != " + expected.length);
        for (int i = 0; i < expected.length; i++) {
            double e = expected[i], a = actual[i];
            if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e)))
                fail(String.format("%s[%d]: got %.9g, expected %.9g (|diff| %.3g > atol %.1g + rtol %.1g * |e|)",
                        what, i, a, e, Math.abs(a - e), atol, rtol));
        }
    }

    static void assertClose(String what, float[] expected, float[] actual, double atol, double rtol) {
        assertClose(what, Ref.toDouble(expected), actual, atol, rtol);
    }

    /** Bitwise equality (NaN payloads included). */
    static void assertBitwise(String what, float[] expected, float[] actual) {
        if (expected.length != actual.length) fail(what + ": length " + actual.length + " != " + expected.length);
        for (int i = 0; i < expected.length; i++)
            if (Float.floatToRawIntBits(expected[i]) != Float.floatToRawIntBits(actual[i]))
                fail(what + "[" + i + "]: " + actual[i] + " != " + expected[i] + " (not bitwise equal)");
    }

    static double[] minus(float[] a, float[] b) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = (double) a[i] - b[i];
        return d;
    }

    static double maxAbs(double[] x) {
        double m = 0;
        for (double v : x) m = Math.max(m, Math.abs(v));
        return m;
    }

    /** cos/sin tables [T, HD/2] for RoPE with base theta, in fp32 as the caller computes them. */
    static float[][] ropeTables(int T, int HD, double theta) {
        int half = HD / 2;
        float[] cos = new float[T * half], sin = new float[T * half];
        for (int t = 0; t < T; t++)
            for (int i = 0; i < half; i++) {
                double invFreq = Math.pow(theta, -2.0 * i / HD);
                cos[t * half + i] = (float) Math.cos(t * invFreq);
                sin[t * half + i] = (float) Math.sin(t * invFreq);
            }
        return new float[][] {cos, sin};
    }
}
