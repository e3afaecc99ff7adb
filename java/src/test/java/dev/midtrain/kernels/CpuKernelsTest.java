package dev.midtrain.kernels;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Arrays;
import java.util.Random;

import static dev.midtrain.kernels.KernelTestSupport.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Every CPU kernel against the naive double-precision references in {@link Ref}: fixed seeds, fresh inputs per
 * shape, odd shapes next to round ones, outputs poisoned with NaN before each call, "+=" outputs started from known
 * random values. Tolerances are set where they are used, with the reason. fp32 unit roundoff is u = 6e-8.
 */
class CpuKernelsTest {
    private static CpuBackend backend;
    private KernelTestSupport k;

    @BeforeAll static void open() { backend = new CpuBackend(); }
    @AfterAll static void shut() { backend.close(); }
    @BeforeEach void init() { k = new KernelTestSupport(backend); }
    @AfterEach void release() { k.close(); }

    // --------------------------------------------------------------------------------------- meta / fill / cast

    @Test
    void metaFillCopyCast() {
        assertEquals(0, CpuNative.mt_cpu_backend_id());
        assertEquals(4, backend.floatxBytes());
        for (int n : new int[] {1, 7, 40_000}) {               // 40 000 > MT_OMP_MIN_WORK: the parallel path
            long x = k.poisoned(n);
            backend.fillX(x, 1.5f, n);
            float[] expect = new float[n];
            Arrays.fill(expect, 1.5f);
            assertBitwise("fill_x", expect, k.get(x, n));
            float[] src = gaussian(new Random(n), n, 1);
            long s = k.put(src), a = k.poisoned(n), b = k.poisoned(n);
            backend.castF32ToX(a, s, n);
            backend.castXToF32(b, a, n);
            assertBitwise("cast round trip (floatX = float)", src, k.get(b, n));
        }
    }

    // ------------------------------------------------------------------------------------------------ GEMM

    /** CpuBackend.gemm (OpenBLAS sgemm, row-major): every transpose form, alpha, beta 0 over NaN and beta 1 over
     * random values, odd and round shapes, against a double-precision product. */
    @ParameterizedTest(name = "M={0} N={1} K={2}")
    @CsvSource({"1,1,1", "5,7,3", "33,17,65", "300,130,257", "70,333,1025", "257,688,100", "130,200,1100"})
    void gemm(int M, int N, int K) {
        for (int form = 0; form < 4; form++) {
            boolean tA = (form & 1) != 0, tB = (form & 2) != 0;
            for (float beta : new float[] {0f, 1f}) {
                Random r = new Random(9000 + M * 7 + N * 3 + K + form * 101 + (int) beta);
                float alpha = 0.75f;
                float[] a = gaussian(r, M * K, 1), b = gaussian(r, K * N, 1), c0 = gaussian(r, M * N, 1);
                long pa = k.put(a), pb = k.put(b), pc = beta == 0f ? k.poisoned(M * N) : k.put(c0);
                backend.gemm(tA, tB, M, N, K, alpha, pa, pb, beta, pc, true);
                float[] got = k.get(pc, M * N);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double sum = 0, abs = 0;
                        for (int l = 0; l < K; l++) {
                            double p = (double) a[tA ? l * M + i : i * K + l] * b[tB ? j * K + l : l * N + j];
                            sum += p;
                            abs += Math.abs(p);
                        }
                        double expect = alpha * sum + (beta == 0f ? 0 : c0[i * N + j]);
                        // fp32 dot product of K terms: |error| <= K u sum|a b| (u = 6e-8, the classical gamma_K
                        // bound) plus the roundings of alpha and the beta add; 2x that as margin
                        double tol = 2 * (K + 2) * 6e-8 * (Math.abs(alpha) * abs + Math.abs(expect));
                        float g = got[i * N + j];
                        if (!(Math.abs(g - expect) <= tol))
                            fail(String.format("gemm tA=%b tB=%b beta=%s: C[%d,%d] = %s, expected %s (tol %.2e)", tA, tB, beta, i, j, g, expect, tol));
                    }
            }
        }
    }

    // ---------------------------------------------------------------------------------------------- linear

    /** linear_forward out[M,N] = inp[M,K] @ weight[N,K]^T over NaN, against a double-precision product, in both
     * regimes (dot products up to MT_LINEAR_DOT_MAX_M = 16 rows, the packed GEMM above: full and partial 16-column
     * panels, 6-row tiles and their remainders, K below and above 8 and odd); CpuBackend.linear gives the same bits;
     * a row alone (the same regime) and a slice of the weight's rows give the same bits as the whole product. */
    @ParameterizedTest(name = "M={0} N={1} K={2}")
    @CsvSource({"1,1,1", "1,1001,513", "3,7,3", "3,1001,17", "2,64,128", "8,2752,512", "5,333,1377", "9,100,40",
                "16,130,77", "17,50,9", "1,4,0", "17,16,1", "23,1001,515", "128,768,64", "40,33,7", "300,130,257"})
    void linear(int M, int N, int K) {
        Random r = new Random(7100 + M * 13 + N * 7 + K);
        float[] a = gaussian(r, M * K, 1), w = gaussian(r, N * K, 1);
        long pa = k.put(a), pw = k.put(w), out = k.poisoned(M * N);
        backend.linearForward(out, pa, pw, M, N, K);
        float[] got = k.get(out, M * N);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double sum = 0, abs = 0;
                for (int l = 0; l < K; l++) {
                    double p = (double) a[i * K + l] * w[j * K + l];
                    sum += p;
                    abs += Math.abs(p);
                }
                // fp32 dot product of K terms: |error| <= K u sum|a w| (u = 6e-8, gamma_K); 2x as margin
                double tol = 2 * (K + 1) * 6e-8 * abs;
                float g = got[i * N + j];
                if (!(Math.abs(g - sum) <= tol))
                    fail(String.format("linear_forward: out[%d,%d] = %s, expected %s (tol %.2e)", i, j, g, sum, tol));
            }
        long viaLinear = k.poisoned(M * N);                              // Backend.linear: the same kernel up to 512 rows
        backend.linear(viaLinear, pa, pw, M, N, K);
        // exact on any x86-64 processor (AVX2 or AVX-512 micro-kernel, see ThreadCountDeterminismTest): linear_forward
        // sums each element over k in one fixed order whatever its row or column position, thread or panel
        assertBitwise("CpuBackend.linear", got, k.get(viaLinear, M * N));
        int n0 = N / 3, n = N - n0;                                      // the weight rows n0.. alone, all input rows
        long cols = k.poisoned(M * n);
        backend.linearForward(cols, pa, pw + 4L * n0 * K, M, n, K);
        float[] gotCols = k.get(cols, M * n);
        for (int i = 0; i < M; i++)
            assertBitwise("row " + i + ", columns " + n0 + "..", Arrays.copyOfRange(got, i * N + n0, i * N + N), Arrays.copyOfRange(gotCols, i * n, i * n + n));
        int rows = M > 16 ? 17 : 1, m0 = M - rows;                      // the last rows alone, in the same regime
        long part = k.poisoned(rows * N);
        backend.linearForward(part, pa + 4L * m0 * K, pw, rows, N, K);
        assertBitwise(rows + " rows from " + m0 + " alone", Arrays.copyOfRange(got, m0 * N, M * N), k.get(part, rows * N));
    }

    // ------------------------------------------------------------------------------------------- embedding

    @ParameterizedTest(name = "N={0} C={1} V={2}")
    @CsvSource({"1,1,1", "5,7,3", "64,48,11", "300,130,50"})
    void embedding(int N, int C, int V) {
        Random r = new Random(1000 + N * 31 + C);
        int[] tok = ints(r, N, V);                             // V < N in most cases: repeated tokens accumulate
        float[] wte = gaussian(r, V * C, 1), dout = gaussian(r, N * C, 1), dwte0 = gaussian(r, V * C, 1);
        long tokens = k.putInts(tok), w = k.put(wte), out = k.poisoned(N * C);
        backend.embeddingForward(out, tokens, w, N, C, V);
        // a row copy: exact
        assertClose("embedding_forward", Ref.embeddingForward(tok, wte, C), k.get(out, N * C), 0, 0);

        long dw = k.put(dwte0), d = k.put(dout);
        backend.embeddingBackward(dw, tokens, d, N, C, V);
        // fp32 sums of up to ~N/V + 1 terms of size ~1: a few ulps of values up to ~10
        assertClose("embedding_backward", Ref.embeddingBackward(dwte0, tok, dout, C), k.get(dw, V * C), 1e-5, 1e-5);
    }

    // --------------------------------------------------------------------------------------------- RMSNorm

    @ParameterizedTest(name = "N={0} C={1}")
    @CsvSource({"1,1", "3,7", "16,64", "9,200", "2100,24"})   // 2100 rows: more than 256 dweight chunks of 8 rows
    void rmsnorm(int N, int C) {
        Random r = new Random(2000 + N * 17 + C);
        float eps = 1e-5f;
        float[] x = gaussian(r, N * C, 2), w = uniform(r, C, 0.5f, 1.5f), dout = gaussian(r, N * C, 1);
        float[] dinp0 = gaussian(r, N * C, 1), dw0 = gaussian(r, C, 1);
        long inp = k.put(x), weight = k.put(w), out = k.poisoned(N * C), rstd = k.poisoned(N);
        backend.rmsnormForward(out, rstd, inp, weight, N, C, eps);
        double[][] ref = Ref.rmsnormForward(x, w, N, C, eps);
        // sum of C squares in fp32 (relative error <= C*u ~ 1e-5 worst case, ~sqrt(C)*u typical), then 2 products
        assertClose("rmsnorm_forward out", ref[0], k.get(out, N * C), 1e-6, 2e-5);
        assertClose("rmsnorm_forward rstd", ref[1], k.get(rstd, N), 0, 2e-5);

        long d = k.put(dout), dinp = k.put(dinp0), dw = k.put(dw0), scratch = k.poisoned((int) KernelAbi.rmsnormBwdScratchFloats(N, C));
        backend.rmsnormBackward(dinp, dw, scratch, d, inp, weight, rstd, N, C);
        double[][] g = Ref.rmsnormBackward(dout, x, w, N, C, eps);
        double[] dinpExpect = g[0].clone(), dwExpect = g[1].clone();
        for (int i = 0; i < dinpExpect.length; i++) dinpExpect[i] += dinp0[i];
        for (int i = 0; i < C; i++) dwExpect[i] += dw0[i];
        // dinp: a length-C dot product and rstd^3 (relative ~1e-5), on values ~1
        assertClose("rmsnorm_backward dinp (+=)", dinpExpect, k.get(dinp, N * C), 2e-5, 5e-5);
        // dweight: a sum over N rows of terms ~1 (magnitude up to ~sqrt(N)); fp32 chunked sum, error ~ sqrt(N)*u*|terms|
        assertClose("rmsnorm_backward dweight (+=)", dwExpect, k.get(dw, C), 2e-5 * Math.sqrt(N), 5e-5);
    }

    // ------------------------------------------------------------------------------------------------ RoPE

    @ParameterizedTest(name = "B={0} T={1} NH={2} NKV={3} HD={4}")
    @CsvSource({"1,1,1,1,2", "2,5,4,1,6", "1,9,8,1,16", "2,7,3,3,8", "1,20,4,2,64", "2,64,4,2,64"})  // last: parallel path
    void rope(int B, int T, int NH, int NKV, int HD) {
        Random r = new Random(3000 + B * 7 + T * 13 + NH + HD);
        int n = B * T * (NH + 2 * NKV) * HD;
        float[][] cs = ropeTables(T, HD, 500000.0);
        float[] x = gaussian(r, n, 1);
        long cos = k.put(cs[0]), sin = k.put(cs[1]), inp = k.put(x);
        // x*c - y*s with |c|,|s| <= 1 and |x|,|y| ~ 1: at most a few ulps
        double atol = 1e-6, rtol = 1e-6;
        for (int sign : new int[] {1, -1}) {
            double[] expect = Ref.rope(x, cs[0], cs[1], B, T, NH, NKV, HD, sign);
            String name = sign > 0 ? "rope_forward" : "rope_backward";
            long out = k.poisoned(n);                          // out of place: the v heads must be copied
            if (sign > 0) backend.ropeForward(out, inp, cos, sin, B, T, NH, NKV, HD);
            else backend.ropeBackward(out, inp, cos, sin, B, T, NH, NKV, HD);
            assertClose(name + " out-of-place", expect, k.get(out, n), atol, rtol);
            long inplace = k.put(x);                           // in place
            if (sign > 0) backend.ropeForward(inplace, inplace, cos, sin, B, T, NH, NKV, HD);
            else backend.ropeBackward(inplace, inplace, cos, sin, B, T, NH, NKV, HD);
            assertClose(name + " in-place", expect, k.get(inplace, n), atol, rtol);
        }
        // backward is the inverse rotation: R^T R x = x
        long fwd = k.poisoned(n), back = k.poisoned(n);
        backend.ropeForward(fwd, inp, cos, sin, B, T, NH, NKV, HD);
        backend.ropeBackward(back, fwd, cos, sin, B, T, NH, NKV, HD);
        assertClose("rope_backward(rope_forward(x))", x, k.get(back, n), 1e-6, 1e-6);
    }

    // ------------------------------------------------------------------------------------------- attention

    @ParameterizedTest(name = "B={0} T={1} NH={2} NKV={3} HD={4}")
    @CsvSource({
            "1,1,1,1,2",     // one token, one head
            "2,5,4,1,6",     // GQA group 4, HD 6
            "1,17,8,1,16",   // GQA group 8
            "2,70,2,2,8",    // group 1, T above one key block (64)
            "1,33,4,4,64",   // HD 64
            "1,130,8,2,16",  // group 4, three key blocks
            "2,9,6,3,4",     // group 2 with 3 kv heads: h / group differs from h % NKV
            "1,40,2,1,72",   // HD 72: one 64-column register chunk plus one of 8
            "1,66,3,1,10",   // group 3 (query tiles of 21 positions), HD 10: an 8-column chunk plus 2 scalar columns
            "1,3,128,1,2",   // group 128 > the 64-row query tile: one position per tile
            "1,129,1,1,4",   // T = 129: key tiles of 64 with a 1-key remainder
    })
    void attention(int B, int T, int NH, int NKV, int HD) {
        Random r = new Random(4000 + B * 7 + T * 13 + NH * 3 + NKV + HD);
        int H = NH + 2 * NKV, nqkv = B * T * H * HD, nout = B * T * NH * HD, nlse = B * NH * T;
        float[] qkv = gaussian(r, nqkv, 1.0), dout = gaussian(r, nout, 1);
        long q = k.put(qkv), out = k.poisoned(nout), lse = k.poisoned(nlse);
        backend.attentionForward(out, lse, q, B, T, NH, NKV, HD);
        double[][] ref = Ref.attentionForward(qkv, B, T, NH, NKV, HD);
        // scores ~N(0,1) from fp32 dot products (error ~sqrt(HD)*u); out is a convex combination of v (|v| ~ 1)
        assertClose("attention_forward out", ref[0], k.get(out, nout), 2e-5, 1e-4);
        assertClose("attention_forward lse", ref[1], k.get(lse, nlse), 2e-5, 1e-5);

        long d = k.put(dout), dqkv = k.poisoned(nqkv), scratch = k.poisoned((int) KernelAbi.attnBwdScratchFloats(B, NH, T));
        backend.attentionBackward(dqkv, scratch, d, q, out, lse, B, T, NH, NKV, HD);
        // gradients sum up to group*T terms of size ~1 each with fp32 roundoff from the recomputed probabilities
        assertClose("attention_backward dqkv", Ref.attentionBackward(dout, qkv, B, T, NH, NKV, HD), k.get(dqkv, nqkv), 1e-4, 1e-3);

        // deterministic: a second call gives the same bits
        float[] first = k.get(dqkv, nqkv);
        long dqkv2 = k.poisoned(nqkv);
        backend.attentionBackward(dqkv2, scratch, d, q, out, lse, B, T, NH, NKV, HD);
        assertBitwise("attention_backward rerun", first, k.get(dqkv2, nqkv));
    }

    /** attention_path: the CPU implementation has one path; invalid head counts are MT_ERR_ARG, as the kernels say. */
    @Test
    void attentionPathQuery() {
        assertEquals(KernelAbi.ATTN_PATH_ONE, CpuNative.mt_cpu_attention_path(8, 2, 64, 1));
        assertEquals(KernelAbi.ATTN_PATH_ONE, CpuNative.mt_cpu_attention_path(3, 3, 96, 0));
        assertEquals(KernelAbi.ERR_ARG, CpuNative.mt_cpu_attention_path(6, 4, 64, 1));   // NH % NKV != 0
        assertEquals(KernelAbi.ERR_ARG, CpuNative.mt_cpu_attention_path(4, 2, 63, 1));   // odd HD
        assertEquals(KernelAbi.ERR_ARG, CpuNative.mt_cpu_attention_path(0, 1, 64, 1));
    }

    @Test
    void attentionLargeScoresAreStable() {
        // scores of order +-60: a naive exp would overflow fp32; the online softmax must not
        int B = 1, T = 40, NH = 2, NKV = 1, HD = 8, n = B * T * (NH + 2 * NKV) * HD;
        float[] qkv = gaussian(new Random(4500), n, 5.0);
        long q = k.put(qkv), out = k.poisoned(B * T * NH * HD), lse = k.poisoned(B * NH * T);
        backend.attentionForward(out, lse, q, B, T, NH, NKV, HD);
        double[][] ref = Ref.attentionForward(qkv, B, T, NH, NKV, HD);
        // inputs scaled x5: scores x25, so absolute score error ~25x larger than in attention(); v ~5
        assertClose("attention_forward out (large scores)", ref[0], k.get(out, B * T * NH * HD), 1e-3, 1e-3);
        assertClose("attention_forward lse (large scores)", ref[1], k.get(lse, B * NH * T), 1e-4, 1e-5);
    }

    // ---------------------------------------------------------------------------------------------- SwiGLU

    @ParameterizedTest(name = "N={0} F={1}")
    @CsvSource({"1,1", "3,7", "16,64", "40,1000"})
    void swiglu(int N, int F) {
        Random r = new Random(5000 + N * 11 + F);
        float[] gu = gaussian(r, N * 2 * F, 3), dout = gaussian(r, N * F, 1);
        long g = k.put(gu), out = k.poisoned(N * F);
        backend.swigluForward(out, g, N, F);
        // expf to ~1 ulp plus a handful of fp32 operations
        assertClose("swiglu_forward", Ref.swigluForward(gu, N, F), k.get(out, N * F), 1e-6, 1e-5);
        long d = k.put(dout), dg = k.poisoned(N * 2 * F);
        backend.swigluBackward(dg, d, g, N, F);
        assertClose("swiglu_backward", Ref.swigluBackward(dout, gu, N, F), k.get(dg, N * 2 * F), 1e-6, 1e-5);
    }

    // ------------------------------------------------------------------------------------------ residual

    @ParameterizedTest(name = "n={0}")
    @CsvSource({"1", "13", "50000"})
    void add(int n) {
        Random r = new Random(6000 + n);
        float[] a = gaussian(r, n, 1), b = gaussian(r, n, 1);
        float[] expect = new float[n];
        for (int i = 0; i < n; i++) expect[i] = a[i] + b[i];     // one fp32 addition: exact match required
        long pa = k.put(a), pb = k.put(b), out = k.poisoned(n);
        backend.add(out, pa, pb, n);
        assertBitwise("add", expect, k.get(out, n));
        backend.add(pa, pa, pb, n);                               // out aliases a
        assertBitwise("add (out = a)", expect, k.get(pa, n));
        long pa2 = k.put(a);
        backend.add(pb, pa2, pb, n);                              // out aliases b
        assertBitwise("add (out = b)", expect, k.get(pb, n));
    }

    // ------------------------------------------------------------------------------ softmax + cross-entropy

    @ParameterizedTest(name = "N={0} V={1} shards={2}")
    @CsvSource({"1,1,1", "4,7,1", "13,100,1", "9,1500,1", "11,1500,3", "6,37,5", "40,1500,2"})  // last: parallel path
    void crossentropy(int N, int V, int shards) {
        Random r = new Random(7000 + N * 3 + V + shards);
        int ignore = -100;
        float[] logits = gaussian(r, N * V, 3);
        int[] tg = ints(r, N, V);
        if (N > 2) { tg[1] = ignore; tg[N - 1] = ignore; }          // ignored rows
        float dloss = 1.0f / N;
        long targets = k.putInts(tg);

        // the whole vocabulary on one rank: reference
        double[][] fwd = Ref.crossentropyForward(logits, tg, N, V, 0, ignore);
        double[][] bwd = Ref.crossentropyBackward(logits, fwd[0], fwd[1], tg, dloss, N, V, 0, ignore);

        // shard s holds columns [start_s, start_s + V_s): split, run pass 1 per shard, combine, run pass 2 per shard
        int[] starts = new int[shards + 1];
        for (int s = 0; s <= shards; s++) starts[s] = (int) ((long) V * s / shards);
        float[] lseParts = new float[shards * N];
        double[] tlSum = new double[N];
        float[][] shardLogits = new float[shards][];
        for (int s = 0; s < shards; s++) {
            int vs = starts[s + 1] - starts[s];
            float[] part = new float[N * vs];
            for (int n = 0; n < N; n++) System.arraycopy(logits, n * V + starts[s], part, n * vs, vs);
            shardLogits[s] = part;
            long lg = k.put(part), lse = k.poisoned(N), tl = k.poisoned(N);
            backend.crossentropyForward(lse, tl, lg, targets, N, vs, starts[s], ignore);
            double[][] shardRef = Ref.crossentropyForward(part, tg, N, vs, starts[s], ignore);
            // blocked online sum of vs exps in fp32: relative error of the sum ~ sqrt(vs)*u, log -> absolute
            assertClose("crossentropy_forward lse shard " + s, shardRef[0], k.get(lse, N), 2e-5, 1e-6);
            assertClose("crossentropy_forward target_logit shard " + s, shardRef[1], k.get(tl, N), 0, 0);  // a copy
            float[] l = k.get(lse, N), t = k.get(tl, N);
            System.arraycopy(l, 0, lseParts, s * N, N);
            for (int n = 0; n < N; n++) tlSum[n] += t[n];
        }
        long parts = k.put(lseParts), lse = k.poisoned(N);
        backend.lseCombine(lse, parts, shards, N);
        // combining P values of ~3-8 in fp32: a few ulps
        assertClose("lse_combine -> full-vocabulary lse", fwd[0], k.get(lse, N), 3e-5, 1e-6);
        float[] tlf = new float[N];
        for (int n = 0; n < N; n++) tlf[n] = (float) tlSum[n];
        long tl = k.put(tlf);

        float[] dl = new float[N * V];
        for (int s = 0; s < shards; s++) {
            int vs = starts[s + 1] - starts[s];
            long lg = k.put(shardLogits[s]), losses = k.poisoned(N);
            backend.crossentropyBackward(lg, losses, lg, lse, tl, targets, dloss, N, vs, starts[s], ignore); // in place
            // loss = lse - target_logit, both ~3-8 with ~3e-5 error
            assertClose("crossentropy_backward losses shard " + s, bwd[0], k.get(losses, N), 5e-5, 1e-5);
            float[] d = k.get(lg, N * vs);
            for (int n = 0; n < N; n++) System.arraycopy(d, n * vs, dl, n * V + starts[s], vs);
        }
        // probabilities carry the lse's absolute error as relative error (exp); values <= dloss
        assertClose("crossentropy_backward dlogits", bwd[1], dl, 1e-8, 1e-4);

        // out of place as well: logits must be left untouched
        long lg = k.put(logits), dlog = k.poisoned(N * V), losses = k.poisoned(N), lse1 = k.poisoned(N), tl1 = k.poisoned(N);
        backend.crossentropyForward(lse1, tl1, lg, targets, N, V, 0, ignore);
        backend.crossentropyBackward(dlog, losses, lg, lse1, tl1, targets, dloss, N, V, 0, ignore);
        assertClose("crossentropy_backward dlogits (out of place)", bwd[1], k.get(dlog, N * V), 1e-8, 1e-4);
        assertBitwise("logits unchanged", logits, k.get(lg, N * V));
    }

    @Test
    void lseCombineHandlesMinusInfinity() {
        // a shard whose rows are all -inf contributes nothing; an all -inf row combines to -inf
        float ninf = Float.NEGATIVE_INFINITY;
        float[] parts = {1.0f, ninf, ninf, ninf, 2.0f, ninf};     // [P = 2, N = 3]
        long p = k.put(parts), out = k.poisoned(3);
        backend.lseCombine(out, p, 2, 3);
        float[] got = k.get(out, 3);
        assertEquals(1.0f, got[0], 1e-6f);
        assertEquals(2.0f, got[1], 1e-6f);
        assertEquals(ninf, got[2]);
    }

    // --------------------------------------------------------------------------------------------- AdamW

    @ParameterizedTest(name = "n={0}")
    @CsvSource({"1", "77", "40000"})
    void adamw(int n) {
        Random r = new Random(8000 + n);
        float[] p0 = gaussian(r, n, 1);
        float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gradScale = 0.5f;
        double[] p = Ref.toDouble(p0), m = new double[n], v = new double[n];
        long param = k.put(p0), pm = k.put(new float[n]), pv = k.put(new float[n]);
        for (int step = 1; step <= 5; step++) {
            float[] grad = gaussian(r, n, step == 3 ? 1e-6 : 1.0);   // one step with tiny gradients: eps matters
            long g = k.put(grad), px = k.poisoned(n);
            float bc1 = (float) (1 - Math.pow(b1, step)), bc2 = (float) (1 - Math.pow(b2, step));
            backend.adamwUpdate(param, px, g, pm, pv, n, lr, b1, b2, eps, wd, bc1, bc2, gradScale);
            Ref.adamw(p, m, v, grad, lr, b1, b2, eps, wd, step, gradScale);
            // each update is ~lr in size and is computed in fp32 (relative ~1e-6 of lr), params ~1: ulps of param
            float[] got = k.get(param, n);
            assertClose("adamw param step " + step, p, got, 1e-6, 1e-6);
            assertBitwise("adamw param_x copy step " + step, got, k.get(px, n));
            // moments: fp32 recurrences. m = b1*m + (1-b1)*g can cancel, so its error is a few ulps of the terms
            // (|g * gradScale| <~ 2), not of m: absolute 1e-6
            assertClose("adamw m step " + step, m, k.get(pm, n), 1e-6, 1e-5);
            assertClose("adamw v step " + step, v, k.get(pv, n), 1e-18, 1e-5);
        }
        // param_x = NULL is allowed
        backend.adamwUpdate(param, 0L, k.put(new float[n]), pm, pv, n, lr, b1, b2, eps, wd, 0.5f, 0.5f, 1f);
    }

    // ------------------------------------------------------------------------------------ gradient norm

    @ParameterizedTest(name = "n={0}")
    @CsvSource({"1", "1000", "1000003"})
    void globalNormSquaredAndScale(int n) {
        Random r = new Random(9000 + n);
        float[] x = gaussian(r, n, 1);
        long px = k.put(x), out = k.put(new float[] {2.5f}), scratch = k.poisoned((int) KernelAbi.NORM_SCRATCH_FLOATS);
        backend.globalNormSquared(out, scratch, px, n);
        // fp64 accumulation, one rounding to fp32 of the (+=) result
        assertClose("global_norm_squared (+=)", new double[] {2.5 + Ref.sumSquares(x)}, k.get(out, 1), 0, 2e-7);
        float s = 0.37f;
        float[] expect = new float[n];
        for (int i = 0; i < n; i++) expect[i] = x[i] * s;        // one fp32 product: exact match required
        backend.scaleF32(px, s, n);
        assertBitwise("scale_f32", expect, k.get(px, n));
    }

    // ------------------------------------------------------------------------------------------- errors

    @Test
    void errorStatusesNameTheKernel() {
        long wte = k.put(new float[12]), out = k.poisoned(8), tokens = k.putInts(new int[] {0, 3});
        KernelException e = assertThrows(KernelException.class, () -> backend.embeddingForward(out, tokens, wte, 2, 4, 3));
        assertEquals(-2, e.status());
        assertTrue(e.getMessage().contains("embedding_forward") && e.getMessage().contains("MT_ERR_RANGE"), e.getMessage());
        long neg = k.putInts(new int[] {-1, 0});
        e = assertThrows(KernelException.class, () -> backend.embeddingBackward(wte, neg, out, 2, 4, 3));
        assertEquals(-2, e.status());
        assertTrue(e.getMessage().contains("embedding_backward"), e.getMessage());

        e = assertThrows(KernelException.class, () -> backend.embeddingForward(out, tokens, wte, -1, 4, 3));
        assertEquals(-1, e.status());
        assertTrue(e.getMessage().contains("MT_ERR_ARG"), e.getMessage());
        e = assertThrows(KernelException.class, () -> backend.rmsnormForward(out, out, 0L, wte, 2, 4, 1e-5f));
        assertEquals(-1, e.status());                                      // NULL input
        long qkv = k.alloc(1000), lse = k.alloc(100);
        e = assertThrows(KernelException.class, () -> backend.attentionForward(out, lse, qkv, 1, 2, 3, 2, 4));
        assertTrue(e.getMessage().startsWith("attention_forward") && e.status() == -1, e.getMessage());  // NH % NKV != 0
        e = assertThrows(KernelException.class, () -> backend.ropeForward(qkv, qkv, lse, lse, 1, 2, 2, 1, 5));
        assertTrue(e.getMessage().startsWith("rope_forward") && e.status() == -1, e.getMessage());       // odd HD
        long tg = k.putInts(new int[] {-5});
        e = assertThrows(KernelException.class, () -> backend.crossentropyForward(lse, lse, qkv, tg, 1, 10, 0, -100));
        assertTrue(e.getMessage().startsWith("crossentropy_forward") && e.status() == -2, e.getMessage()); // negative target
        e = assertThrows(KernelException.class, () -> backend.adamwUpdate(qkv, 0L, qkv, qkv, qkv, -3, 1e-3f, .9f, .95f, 1e-8f, 0f, 1f, 1f, 1f));
        assertTrue(e.getMessage().startsWith("adamw_update") && e.status() == -1, e.getMessage());
        e = assertThrows(KernelException.class, () -> CpuBackend.setThreads(0));
        assertTrue(e.getMessage().startsWith("set_num_threads") && e.status() == -1, e.getMessage());
        // a non-NULL stream is an error on CPU
        assertEquals(-1, CpuNative.mt_cpu_scale_f32(qkv, 1f, 10, 0x1000L));
        // zero sizes are fine and touch nothing
        backend.embeddingForward(0L, 0L, 0L, 0, 4, 3);
        backend.attentionForward(0L, 0L, 0L, 0, 4, 2, 1, 4);
    }
}
