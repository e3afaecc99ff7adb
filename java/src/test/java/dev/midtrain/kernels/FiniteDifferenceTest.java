package dev.midtrain.kernels;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Random;
import java.util.function.ToDoubleFunction;

import static dev.midtrain.kernels.KernelTestSupport.*;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Every backward kernel against central finite differences of its own forward kernel: for a fixed random dout the
 * scalar objective L(x) = sum(dout * forward(x)) is evaluated by the C forward in fp32 (summed in double), and
 * (L(x + h e_i) - L(x - h e_i)) / (2h) is compared with the backward's gradient at coordinate i, for a random
 * subset of coordinates (all of them for small tensors).
 *
 * <p>Noise budget: the kernels are deterministic and row-independent, so outputs that a coordinate does not reach
 * are bitwise identical in both evaluations and cancel exactly; the reached outputs carry fp32 roundoff
 * u|out| ~ 1e-7, i.e. ~1e-7 / 2h in the difference quotient. Truncation error is h^2 |f'''| / 6. With h = 1e-2 on
 * O(1) inputs both are ~1e-5 to 1e-4, while a wrong gradient (a missing term, a wrong sign, a wrong head) is off
 * by O(0.1-1): the tolerances below sit well between.
 */
class FiniteDifferenceTest {
    private static CpuBackend backend;
    private KernelTestSupport k;

    @BeforeAll static void open() { backend = new CpuBackend(); }
    @AfterAll static void shut() { backend.close(); }
    @BeforeEach void init() { k = new KernelTestSupport(backend); }
    @AfterEach void release() { k.close(); }

    /**
     * Compares analytic[i] with the central difference of objective at up to maxCoords coordinates of x
     * (x itself is restored). The step actually taken is the fp32 difference (x+h) - (x-h).
     */
    private static void checkGradient(String what, float[] x, float[] analytic, ToDoubleFunction<float[]> objective,
                                      double h, int maxCoords, double atol, double rtol, long seed) {
        int[] coords = coordinates(x.length, maxCoords, new Random(seed));
        for (int i : coords) {
            float xi = x[i];
            float plus = (float) (xi + h), minus = (float) (xi - h);
            x[i] = plus;
            double lp = objective.applyAsDouble(x);
            x[i] = minus;
            double lm = objective.applyAsDouble(x);
            x[i] = xi;
            double fd = (lp - lm) / ((double) plus - minus);
            double a = analytic[i];
            if (!(Math.abs(fd - a) <= atol + rtol * Math.abs(fd)))
                fail(String.format("%s: coordinate %d: backward %.7g, finite difference %.7g (|diff| %.3g > %.1g + %.1g*|fd|)",
                        what, i, a, fd, Math.abs(fd - a), atol, rtol));
        }
    }

    /** All coordinates when n <= max, else max distinct random ones. */
    private static int[] coordinates(int n, int max, Random r) {
        if (n <= max) {
            int[] all = new int[n];
            for (int i = 0; i < n; i++) all[i] = i;
            return all;
        }
        return r.ints(0, n).distinct().limit(max).toArray();
    }

    private static double dot(float[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += (double) a[i] * b[i];
        return s;
    }

    // -------------------------------------------------------------------------------------------- embedding

    @Test
    void embedding() {
        int N = 9, C = 5, V = 4;
        Random r = new Random(11);
        int[] tok = {0, 2, 2, 3, 0, 2, 3, 3, 2};               // row 1 unused: its gradient must be 0
        float[] wte = gaussian(r, V * C, 1), dout = gaussian(r, N * C, 1);
        long tokens = k.putInts(tok), w = k.alloc(V * C), out = k.alloc(N * C), d = k.put(dout), dw = k.put(new float[V * C]);
        backend.embeddingBackward(dw, tokens, d, N, C, V);
        float[] grad = k.get(dw, V * C);
        // linear in wte: the difference quotient is exact up to fp32 roundoff of the sums (~1e-6)
        checkGradient("embedding_backward dwte", wte, grad, x -> {
            backend.upload(w, x);
            backend.embeddingForward(out, tokens, w, N, C, V);
            return dot(dout, k.get(out, N * C));
        }, 1e-2, 1000, 1e-4, 1e-4, 12);
    }

    // ---------------------------------------------------------------------------------------------- RMSNorm

    @ParameterizedTest(name = "N={0} C={1}")
    @CsvSource({"1,1", "3,7", "4,33"})
    void rmsnorm(int N, int C) {
        Random r = new Random(20 + N + C);
        float eps = 1e-5f;
        float[] x = gaussian(r, N * C, 1), w = uniform(r, C, 0.5f, 1.5f), dout = gaussian(r, N * C, 1);
        long inp = k.put(x), weight = k.put(w), out = k.alloc(N * C), rstd = k.alloc(N), d = k.put(dout);
        long dinp = k.put(new float[N * C]), dw = k.put(new float[C]);
        long scratch = k.alloc(KernelAbi.rmsnormBwdScratchFloats(N, C));
        backend.rmsnormForward(out, rstd, inp, weight, N, C, eps);
        backend.rmsnormBackward(dinp, dw, scratch, d, inp, weight, rstd, N, C);
        float[] gx = k.get(dinp, N * C), gw = k.get(dw, C);
        long rstd2 = k.alloc(N);
        // C = 1 makes out = w * x/|x| nearly constant in x (gradient ~eps/x^2): exercises the cancellation too
        checkGradient("rmsnorm_backward dinp", x, gx, xs -> {
            backend.upload(inp, xs);
            backend.rmsnormForward(out, rstd2, inp, weight, N, C, eps);
            return dot(dout, k.get(out, N * C));
        }, 1e-2, 60, 5e-4, 1e-2, 21);
        backend.upload(inp, x);
        checkGradient("rmsnorm_backward dweight", w, gw, ws -> {     // linear in weight: roundoff only
            backend.upload(weight, ws);
            backend.rmsnormForward(out, rstd2, inp, weight, N, C, eps);
            return dot(dout, k.get(out, N * C));
        }, 1e-2, 60, 1e-4, 1e-4, 22);
    }

    // ------------------------------------------------------------------------------------------------- RoPE

    @ParameterizedTest(name = "B={0} T={1} NH={2} NKV={3} HD={4}")
    @CsvSource({"1,3,2,1,4", "2,4,4,2,6"})
    void rope(int B, int T, int NH, int NKV, int HD) {
        Random r = new Random(30 + T + HD);
        int n = B * T * (NH + 2 * NKV) * HD;
        float[][] cs = ropeTables(T, HD, 10000.0);
        float[] x = gaussian(r, n, 1), dout = gaussian(r, n, 1);
        long cos = k.put(cs[0]), sin = k.put(cs[1]), inp = k.alloc(n), out = k.alloc(n), d = k.put(dout), dinp = k.poisoned(n);
        backend.ropeBackward(dinp, d, cos, sin, B, T, NH, NKV, HD);
        // linear: roundoff only
        checkGradient("rope_backward", x, k.get(dinp, n), xs -> {
            backend.upload(inp, xs);
            backend.ropeForward(out, inp, cos, sin, B, T, NH, NKV, HD);
            return dot(dout, k.get(out, n));
        }, 1e-2, 200, 1e-4, 1e-4, 31);
    }

    // -------------------------------------------------------------------------------------------- attention

    @ParameterizedTest(name = "B={0} T={1} NH={2} NKV={3} HD={4}")
    @CsvSource({
            "1,1,1,1,2",    // one token: out = v, dq = dk = 0
            "1,6,2,2,4",    // group 1
            "2,5,4,1,6",    // group 4
            "1,4,8,1,2",    // group 8
            "1,7,4,2,8",    // group 2
            "1,5,3,1,10",   // group 3, HD 10 (vector chunk plus scalar tail)
    })
    void attention(int B, int T, int NH, int NKV, int HD) {
        Random r = new Random(40 + B + T * 3 + NH * 5 + NKV * 7 + HD);
        int n = B * T * (NH + 2 * NKV) * HD, nout = B * T * NH * HD;
        float[] qkv = gaussian(r, n, 1), dout = gaussian(r, nout, 1);
        long q = k.put(qkv), out = k.alloc(nout), lse = k.alloc(B * NH * T), d = k.put(dout), dqkv = k.poisoned(n);
        long scratch = k.alloc(KernelAbi.attnBwdScratchFloats(B, NH, T));
        backend.attentionForward(out, lse, q, B, T, NH, NKV, HD);
        backend.attentionBackward(dqkv, scratch, d, q, out, lse, B, T, NH, NKV, HD);
        float[] grad = k.get(dqkv, n);
        // softmax curvature is O(1) for O(1) scores: truncation ~h^2 = 1e-4; roundoff ~1e-5
        checkGradient("attention_backward dqkv", qkv, grad, xs -> {
            backend.upload(q, xs);
            backend.attentionForward(out, lse, q, B, T, NH, NKV, HD);
            return dot(dout, k.get(out, nout));
        }, 1e-2, 150, 5e-4, 1e-2, 41);
    }

    // ----------------------------------------------------------------------------------------------- SwiGLU

    @Test
    void swiglu() {
        int N = 5, F = 13;
        Random r = new Random(50);
        float[] gu = gaussian(r, N * 2 * F, 2), dout = gaussian(r, N * F, 1);
        long g = k.put(gu), out = k.alloc(N * F), d = k.put(dout), dg = k.poisoned(N * 2 * F);
        backend.swigluBackward(dg, d, g, N, F);
        // silu'' is bounded by ~0.5: truncation ~h^2/6 * 0.5 * |up|
        checkGradient("swiglu_backward dgateup", gu, k.get(dg, N * 2 * F), xs -> {
            backend.upload(g, xs);
            backend.swigluForward(out, g, N, F);
            return dot(dout, k.get(out, N * F));
        }, 1e-2, 1000, 2e-4, 1e-3, 51);
    }

    // ---------------------------------------------------------------------------------------- cross-entropy

    @ParameterizedTest(name = "N={0} V={1} vocabStart={2}")
    @CsvSource({"1,1,0", "6,23,0", "5,17,10"})
    void crossentropy(int N, int V, int vocabStart) {
        Random r = new Random(60 + N + V + vocabStart);
        int ignore = -100;
        float[] logits = gaussian(r, N * V, 1.5);
        int[] tg = new int[N];
        for (int n = 0; n < N; n++) tg[n] = vocabStart + r.nextInt(V);
        if (N > 3) { tg[2] = ignore; tg[3] = vocabStart + V + 4; }   // an ignored row; a target in another shard
        float dloss = 0.7f;
        long lg = k.put(logits), targets = k.putInts(tg), lse = k.alloc(N), tl = k.alloc(N), losses = k.alloc(N);
        long dlog = k.poisoned(N * V);
        backend.crossentropyForward(lse, tl, lg, targets, N, V, vocabStart, ignore);
        backend.crossentropyBackward(dlog, losses, lg, lse, tl, targets, dloss, N, V, vocabStart, ignore);
        float[] grad = k.get(dlog, N * V);
        long scratchD = k.alloc(N * V);
        // objective: dloss * sum(losses), both passes in C. lse ~3 carries ~2e-7 roundoff -> ~1e-5 in the quotient;
        // softmax curvature p(1-p) <= 1/4: truncation ~h^2/6
        checkGradient("crossentropy_backward dlogits", logits, grad, xs -> {
            backend.upload(lg, xs);
            backend.crossentropyForward(lse, tl, lg, targets, N, V, vocabStart, ignore);
            backend.crossentropyBackward(scratchD, losses, lg, lse, tl, targets, dloss, N, V, vocabStart, ignore);
            double s = 0;
            for (float l : k.get(losses, N)) s += dloss * (double) l;
            return s;
        }, 1e-2, 200, 1e-4, 1e-2, 61);
    }
}
