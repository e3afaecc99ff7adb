package dev.midtrain.bench;

import dev.midtrain.kernels.Backend;
import dev.midtrain.kernels.KernelAbi;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.kernels.CudaBackend;
import dev.midtrain.kernels.KernelException;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.BiConsumer;

/**
 * GPU validation: every kernel of the ABI (and the cuBLAS GEMM) on the CUDA backend against the CPU backend, on fresh
 * random inputs with fixed seeds, several shapes each (odd sizes, T = 1, one head, GQA groups 1/4/8, HD 16/32/64/128,
 * T up to 1024, unaligned views that take the scalar paths). Both backends get the same bf16-rounded inputs, so only
 * compute precision differs. "=" outputs are poisoned with NaN before each call (unwritten elements fail); "+="
 * outputs start from the same random values on both sides. Each CUDA case is run twice and must be bitwise identical
 * (the header's determinism contract). Then a single-rank NCCL check.
 *
 * <p>Metric: rel = ||gpu - cpu||_2 / ||cpu||_2 per output; any NaN/Inf on the GPU side fails. Thresholds:
 * <ul>
 *   <li>{@link #TOL_EXACT} 0: pure data movement (fill, copy, gather, casts from bf16, scaling by a constant, target
 *       logit gather) must be bit-exact.</li>
 *   <li>{@link #TOL_X} 1e-2: a bf16 output (one rounding per element: rel ~ 2^-9/sqrt(3) = 1.1e-3 for uniform rounding
 *       error) compared with an fp32 CPU result; 1e-2 leaves ~9x margin for fp32 reassociation.</li>
 *   <li>{@link #TOL_ATTN} 2e-2: attention output; FA2 also rounds P to bf16 before P.V on the tensor cores.</li>
 *   <li>{@link #TOL_ATTN_BWD} 3e-2: attention gradients; P and dS are rounded to bf16 before the dV/dK/dQ products and
 *       dO/O/dqkv are bf16, several chained roundings.</li>
 *   <li>{@link #TOL_F32} 1e-5: fp32 outputs from identical inputs (statistics, AdamW state, dweight, losses): only the
 *       summation order and ulp-level differences of expf/logf/sqrtf remain (observed ~1e-7; 1e-5 is still far
 *       below any real bug, which shows up at 1e-2 or more).</li>
 *   <li>{@link #TOL_GEMM_X} 1e-2 for bf16 GEMM outputs, {@link #TOL_F32} for fp32 ones.</li>
 * </ul>
 * Usage: {@code GpuValidate [--against cpu] [--only SUBSTRING]}; {@code --against cpu} runs the harness with a second
 * CPU backend in place of CUDA (a self-test of the harness on machines without a GPU). Exit 0 when every row passes.
 */
public final class GpuValidate {
    static final double TOL_EXACT = 0.0;
    static final double TOL_X = 1e-2;
    static final double TOL_ATTN = 2e-2;
    static final double TOL_ATTN_BWD = 3e-2;
    static final double TOL_F32 = 1e-5;
    static final double TOL_GEMM_X = 1e-2;

    /**
     * The functions of native/include/midtrain_kernels.h that have no case here, and why. Every other function of the
     * header has at least one case (CpuValidationHarnessTest checks both lists against the header).
     */
    static final Map<String, String> NOT_COMPARED = Map.of(
            "backend_id", "identity query without tensors: CpuBackend and CudaBackend check it when they open",
            "floatx_bytes", "identity query without tensors: CpuBackend and CudaBackend check it when they open",
            "set_num_threads", "the CPU implementation's OpenMP team size; the CUDA implementation ignores it",
            "describe", "a description for logs (CPU: OpenBLAS core type; CUDA: device), not a computation; DescribeTest checks the CPU one",
            "attention_path", "a query without tensors; the attention cases run both CUDA paths (HD 64/128 aligned: tensor cores;"
                    + " HD 16/32/96 and views off alignment: simple)");

    private GpuValidate() {}

    public static void main(String[] args) {
        System.exit(run(args, System.out));
    }

    enum Kind { X, F32, I32 }

    /** One tensor of a case: an input (data), an "=" output (poisoned), a "+=" output (init data) or a scratch. */
    static final class Tensor {
        final String name;
        final Kind kind;
        final long n;
        final float[] f;     // input or init values (bf16-rounded when kind == X), null for poisoned outputs/scratch
        final int[] i;
        final boolean output;
        final double tol;    // < 0: not compared (scratch)

        Tensor(String name, Kind kind, long n, float[] f, int[] i, boolean output, double tol) {
            this.name = name; this.kind = kind; this.n = n; this.f = f; this.i = i; this.output = output; this.tol = tol;
        }
    }

    /** One kernel call with its tensors; {@code call} receives the backend and the tensors' addresses by name. */
    static final class Case {
        final String kernel, shape;
        final List<Tensor> tensors = new ArrayList<>();
        BiConsumer<Backend, Map<String, Long>> call;
        int offsetElems;     // every tensor is placed this many elements past a 256-byte aligned address

        Case(String kernel, String shape) { this.kernel = kernel; this.shape = shape; }

        Case inX(String name, float[] data) { tensors.add(new Tensor(name, Kind.X, data.length, roundBf16(data), null, false, 0)); return this; }
        Case inF(String name, float[] data) { tensors.add(new Tensor(name, Kind.F32, data.length, data, null, false, 0)); return this; }
        Case inI(String name, int[] data) { tensors.add(new Tensor(name, Kind.I32, data.length, null, data, false, 0)); return this; }
        Case outX(String name, long n, double tol) { tensors.add(new Tensor(name, Kind.X, n, null, null, true, tol)); return this; }
        Case outF(String name, long n, double tol) { tensors.add(new Tensor(name, Kind.F32, n, null, null, true, tol)); return this; }
        /** "+=" or in-place output starting from {@code init}. */
        Case accX(String name, float[] init, double tol) { tensors.add(new Tensor(name, Kind.X, init.length, roundBf16(init), null, true, tol)); return this; }
        Case accF(String name, float[] init, double tol) { tensors.add(new Tensor(name, Kind.F32, init.length, init, null, true, tol)); return this; }
        Case scratch(String name, long n) { tensors.add(new Tensor(name, Kind.F32, n, null, null, true, -1)); return this; }
        Case offset(int elems) { offsetElems = elems; return this; }
        Case run(BiConsumer<Backend, Map<String, Long>> c) { call = c; return this; }
    }

    // ------------------------------------------------------------------------------------------------ driver

    public static int run(String[] args, PrintStream out) {
        boolean againstCpu = false;
        String only = null;
        for (int a = 0; a < args.length; a++) {
            switch (args[a]) {
                case "--against" -> {
                    if (a + 1 >= args.length || !args[a + 1].equals("cpu")) { out.println("usage: GpuValidate [--against cpu] [--only SUBSTRING]"); return 2; }
                    againstCpu = true; a++;
                }
                case "--only" -> {
                    if (a + 1 >= args.length) { out.println("usage: GpuValidate [--against cpu] [--only SUBSTRING]"); return 2; }
                    only = args[++a];
                }
                default -> { out.println("unknown argument " + args[a] + "; usage: GpuValidate [--against cpu] [--only SUBSTRING]"); return 2; }
            }
        }
        Backend ref = Backend.open("cpu", 0);
        Backend dev;
        String devName;
        try {
            dev = Backend.open(againstCpu ? "cpu" : "cuda", 0);
            devName = againstCpu ? "cpu (harness self-test)" : ((CudaBackend) dev).deviceName();
        } catch (KernelException e) {
            out.println("GpuValidate: " + e.getMessage());
            ref.close();
            return 1;
        }
        out.println("GpuValidate: " + devName + " vs cpu reference; MT_CUDA_ATTN=" + System.getenv().getOrDefault("MT_CUDA_ATTN", "(default)"));
        out.printf("%-22s %-34s %-8s %10s %10s %9s  %s%n", "kernel", "shape", "output", "rel_l2", "max_abs", "tol", "result");
        int pass = 0, fail = 0;
        long t0 = System.nanoTime();
        for (Case c : cases(ref)) {
            if (only != null && !(c.kernel + " " + c.shape).contains(only)) continue;
            try {
                int f = runCase(c, ref, dev, out);
                if (f == 0) pass++; else fail++;
            } catch (RuntimeException e) {
                fail++;
                out.printf("%-22s %-34s %-8s %s%n", c.kernel, c.shape, "-", "FAIL: " + e);
            }
        }
        if (!againstCpu && (only == null || "nccl".contains(only))) {
            int f = NcclCheck.run((CudaBackend) dev, out);
            if (f == 0) pass++; else fail++;
        }
        out.printf("GpuValidate: %d passed, %d failed (%.1f s)%n", pass, fail, (System.nanoTime() - t0) / 1e9);
        dev.close();
        ref.close();
        return fail == 0 ? 0 : 1;
    }

    /** Runs one case on both backends (twice on the device), prints one row per compared output; returns failures. */
    static int runCase(Case c, Backend ref, Backend dev, PrintStream out) {
        Map<String, float[]> want = execute(c, ref);
        Map<String, float[]> got = execute(c, dev);
        Map<String, float[]> again = dev == ref ? got : execute(c, dev);
        int failures = 0;
        for (Tensor t : c.tensors) {
            if (!t.output || t.tol < 0) continue;
            float[] w = want.get(t.name), g = got.get(t.name), g2 = again.get(t.name);
            double num = 0, den = 0, maxAbs = 0;
            int bad = 0, refBad = 0;
            boolean deterministic = true;
            for (int k = 0; k < w.length; k++) {
                if (!Float.isFinite(g[k])) bad++;
                if (!Float.isFinite(w[k])) refBad++;
                if (Float.floatToRawIntBits(g[k]) != Float.floatToRawIntBits(g2[k])) deterministic = false;
                double d = (double) g[k] - w[k];
                num += d * d;
                den += (double) w[k] * w[k];
                maxAbs = Math.max(maxAbs, Math.abs(d));
            }
            double rel = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
            String verdict;
            if (refBad > 0) verdict = "FAIL (" + refBad + " non-finite in the CPU reference)";
            else if (bad > 0) verdict = "FAIL (" + bad + " non-finite)";
            else if (!deterministic) verdict = "FAIL (two runs differ bitwise)";
            else if (!(rel <= t.tol)) verdict = "FAIL";
            else verdict = "ok";
            if (!verdict.equals("ok")) failures++;
            out.printf("%-22s %-34s %-8s %10.2e %10.2e %9.1e  %s%n", c.kernel, c.shape, t.name, rel, maxAbs, t.tol, verdict);
        }
        return failures;
    }

    /** Allocates, fills, calls and downloads the outputs of one case on one backend (memory freed before returning). */
    static Map<String, float[]> execute(Case c, Backend be) {
        Map<String, Long> addr = new LinkedHashMap<>();
        List<Long> owned = new ArrayList<>();
        try {
            for (Tensor t : c.tensors) {
                int eb = t.kind == Kind.X ? be.floatxBytes() : 4;
                long base = be.alloc((t.n + c.offsetElems + 1) * eb);
                owned.add(base);
                long a = base + (long) c.offsetElems * eb;
                addr.put(t.name, a);
                if (t.kind == Kind.I32) be.upload(a, t.i);
                else if (t.f != null) {
                    if (t.kind == Kind.X) be.uploadX(a, t.f); else be.upload(a, t.f);
                } else {
                    if (t.kind == Kind.X) be.fillX(a, Float.NaN, t.n); else be.fillF32(a, Float.NaN, t.n);
                }
            }
            be.synchronize();
            c.call.accept(be, addr);
            be.synchronize();
            Map<String, float[]> res = new LinkedHashMap<>();
            for (Tensor t : c.tensors) {
                if (!t.output || t.tol < 0) continue;
                float[] h = new float[Math.toIntExact(t.n)];
                if (t.kind == Kind.X) be.downloadX(h, addr.get(t.name)); else be.download(h, addr.get(t.name));
                res.put(t.name, h);
            }
            be.synchronize();
            return res;
        } finally {
            for (long p : owned) be.free(p);
        }
    }

    // ------------------------------------------------------------------------------------------------- cases

    static List<Case> cases(Backend cpu) {
        List<Case> cs = new ArrayList<>();
        long seed = 1000;

        // fill / copy / cast / scale: exact data movement (cast_f32_to_x rounds once)
        for (int n : new int[] {1, 1_000_003}) {
            final int nn = n;
            cs.add(new Case("fill_x", "n=" + n).outX("x", n, TOL_EXACT).run((b, a) -> b.fillX(a.get("x"), 1.5f, nn)));
            cs.add(new Case("fill_f32", "n=" + n).outF("x", n, TOL_EXACT).run((b, a) -> b.fillF32(a.get("x"), -2.25f, nn)));
            cs.add(new Case("copy_bytes", "n=" + n + " f32").inF("src", gauss(seed++, n, 1)).outF("dst", n, TOL_EXACT)
                    .run((b, a) -> b.copyBytes(a.get("dst"), a.get("src"), 4L * nn)));
            cs.add(new Case("cast_f32_to_x", "n=" + n).inF("inp", gauss(seed++, n, 3)).outX("out", n, TOL_X)
                    .run((b, a) -> b.castF32ToX(a.get("out"), a.get("inp"), nn)));
            cs.add(new Case("cast_x_to_f32", "n=" + n).inX("inp", gauss(seed++, n, 3)).outF("out", n, TOL_EXACT)
                    .run((b, a) -> b.castXToF32(a.get("out"), a.get("inp"), nn)));
            cs.add(new Case("scale_f32", "n=" + n).accF("x", gauss(seed++, n, 1), TOL_EXACT).run((b, a) -> b.scaleF32(a.get("x"), 0.375f, nn)));
            cs.add(new Case("add", "n=" + n).inX("a", gauss(seed++, n, 1)).inX("b", gauss(seed++, n, 1)).outX("out", n, TOL_X)
                    .run((b, a) -> b.add(a.get("out"), a.get("a"), a.get("b"), nn)));
        }
        cs.add(new Case("cast_f32_to_x", "n=1001 off=1").inF("inp", gauss(seed++, 1001, 3)).outX("out", 1001, TOL_X).offset(1)
                .run((b, a) -> b.castF32ToX(a.get("out"), a.get("inp"), 1001)));
        cs.add(new Case("cast_x_to_f32", "n=1001 off=1").inX("inp", gauss(seed++, 1001, 3)).outF("out", 1001, TOL_EXACT).offset(1)
                .run((b, a) -> b.castXToF32(a.get("out"), a.get("inp"), 1001)));
        cs.add(new Case("add", "n=1001 off=1 in-place").accX("a", gauss(seed++, 1001, 1), TOL_X).inX("b", gauss(seed++, 1001, 1)).offset(1)
                .run((b, a) -> b.add(a.get("a"), a.get("a"), a.get("b"), 1001)));

        // embedding
        // {N, C, V, offset}: small V forces repeated ids inside one group of the CUDA backward's list (its sequential
        // branch), large V the distinct-id branch; N > 2048 takes several compaction passes; C = 1032 a partial column block
        for (int[] s : new int[][] {{1, 1, 1, 0}, {67, 67, 101, 0}, {1024, 4096, 50, 0}, {300, 4096, 8192, 0}, {67, 72, 101, 1},
                                    {5000, 1032, 300, 0}, {3000, 64, 128256, 0}}) {
            int N = s[0], C = s[1], V = s[2], off = s[3];
            String shape = "N=" + N + " C=" + C + " V=" + V + (off > 0 ? " off=1" : "");
            int[] tok = tokens(seed++, N, V);
            float[] wte = gauss(seed++, V * C, 1);
            cs.add(new Case("embedding_forward", shape).inI("tokens", tok).inX("wte", wte).outX("out", (long) N * C, TOL_EXACT).offset(off)
                    .run((b, a) -> b.embeddingForward(a.get("out"), a.get("tokens"), a.get("wte"), N, C, V)));
            // += in token order on both sides: fp32 adds of the same values in the same order are bit-identical
            cs.add(new Case("embedding_backward", shape).inI("tokens", tok).inX("dout", gauss(seed++, N * C, 1))
                    .accF("dwte", gauss(seed++, V * C, 1), TOL_F32).offset(off)
                    .run((b, a) -> b.embeddingBackward(a.get("dwte"), a.get("tokens"), a.get("dout"), N, C, V)));
        }

        // rmsnorm
        // C chosen to reach every fast-path specialisation of the CUDA kernels (C/8 chunks: 1, 129, 512, 1024, 2048 -> the
        // general path past 8192 in the backward), partial last row-chunks (N = 4099), and the scalar/unaligned paths.
        for (int[] s : new int[][] {{1, 67, 0}, {67, 67, 0}, {513, 4096, 0}, {67, 4096, 1}, {2048, 8, 0}, {300, 1032, 0},
                                    {77, 8192, 0}, {9, 16384, 0}, {4099, 64, 0}}) {
            int N = s[0], C = s[1], off = s[2];
            String shape = "N=" + N + " C=" + C + (off > 0 ? " off=1" : "");
            float eps = 1e-5f;
            float[] x = roundBf16(gauss(seed++, N * C, 2));
            float[] w = roundBf16(gauss(seed++, C, 1));
            float[] rstd = new float[N];
            for (int n = 0; n < N; n++) {
                double ss = 0;
                for (int c = 0; c < C; c++) ss += (double) x[n * C + c] * x[n * C + c];
                rstd[n] = (float) (1.0 / Math.sqrt(ss / C + eps));
            }
            cs.add(new Case("rmsnorm_forward", shape).inX("inp", x).inX("weight", w).outX("out", (long) N * C, TOL_X).outF("rstd", N, TOL_F32).offset(off)
                    .run((b, a) -> b.rmsnormForward(a.get("out"), a.get("rstd"), a.get("inp"), a.get("weight"), N, C, eps)));
            cs.add(new Case("rmsnorm_backward", shape).inX("dout", gauss(seed++, N * C, 1)).inX("inp", x).inX("weight", w).inF("rstd", rstd)
                    .accX("dinp", gauss(seed++, N * C, 1), TOL_X).accF("dweight", gauss(seed++, C, 1), TOL_F32)
                    .scratch("scratch", KernelAbi.rmsnormBwdScratchFloats(N, C)).offset(off)
                    .run((b, a) -> b.rmsnormBackward(a.get("dinp"), a.get("dweight"), a.get("scratch"), a.get("dout"), a.get("inp"),
                            a.get("weight"), a.get("rstd"), N, C)));
        }

        // rope: {B, T, NH, NKV, HD, offset, inplace}
        for (int[] s : new int[][] {{1, 1, 1, 1, 2, 0, 0}, {2, 67, 4, 2, 16, 0, 0}, {2, 128, 8, 2, 64, 0, 1}, {1, 256, 32, 8, 128, 0, 0},
                                    {1, 33, 4, 4, 64, 1, 0}, {3, 5, 6, 3, 6, 0, 1}}) {
            int B = s[0], T = s[1], NH = s[2], NKV = s[3], HD = s[4], off = s[5];
            boolean inplace = s[6] == 1;
            String shape = "B" + B + " T" + T + " NH" + NH + " NKV" + NKV + " HD" + HD + (off > 0 ? " off=1" : "") + (inplace ? " inplace" : "");
            int n = B * T * (NH + 2 * NKV) * HD;
            float[][] cs2 = ropeTables(T, HD);
            float[] x = gauss(seed++, n, 1);
            for (boolean bwd : new boolean[] {false, true}) {
                Case c = new Case(bwd ? "rope_backward" : "rope_forward", shape).inF("cos", cs2[0]).inF("sin", cs2[1]).offset(off);
                if (inplace) c.accX("io", x, TOL_X).run((b, a) -> rope(b, bwd, a.get("io"), a.get("io"), a, B, T, NH, NKV, HD));
                else c.inX("inp", x).outX("out", n, TOL_X).run((b, a) -> rope(b, bwd, a.get("out"), a.get("inp"), a, B, T, NH, NKV, HD));
                cs.add(c);
            }
        }

        // attention: {B, T, NH, NKV, HD}; the CUDA tensor-core kernels use 128-query / 64-key tiles, so T = 2048 and
        // 1500 give many tiles, partial last tiles and (GQA 4) several query heads per key head; B = 3 checks the batch
        // offsets
        for (int[] s : new int[][] {{1, 1, 1, 1, 16}, {2, 67, 4, 1, 16}, {1, 33, 2, 2, 32}, {2, 130, 8, 1, 64}, {1, 64, 1, 1, 128},
                                    {1, 1000, 4, 4, 64}, {1, 257, 16, 2, 128}, {1, 1024, 8, 2, 128}, {2, 96, 6, 2, 96},
                                    {2, 2048, 8, 2, 128}, {1, 1500, 4, 1, 64}, {3, 200, 4, 2, 128}}) {
            int B = s[0], T = s[1], NH = s[2], NKV = s[3], HD = s[4];
            String shape = "B" + B + " T" + T + " NH" + NH + " NKV" + NKV + " HD" + HD;
            int n = B * T * (NH + 2 * NKV) * HD, no = B * T * NH * HD, nl = B * NH * T;
            float[] qkv = roundBf16(gauss(seed++, n, 1));
            cs.add(new Case("attention_forward", shape).inX("qkv", qkv).outX("out", no, TOL_ATTN).outF("lse", nl, TOL_F32 * 10)
                    .run((b, a) -> b.attentionForward(a.get("out"), a.get("lse"), a.get("qkv"), B, T, NH, NKV, HD)));
            float[][] fwd = cpuAttentionForward(cpu, qkv, B, T, NH, NKV, HD);
            cs.add(new Case("attention_backward", shape).inX("qkv", qkv).inX("out", fwd[0]).inF("lse", fwd[1]).inX("dout", gauss(seed++, no, 1))
                    .outX("dqkv", n, TOL_ATTN_BWD).scratch("scratch", KernelAbi.attnBwdScratchFloats(B, NH, T))
                    .run((b, a) -> b.attentionBackward(a.get("dqkv"), a.get("scratch"), a.get("dout"), a.get("qkv"), a.get("out"), a.get("lse"),
                            B, T, NH, NKV, HD)));
        }

        // views one element off alignment: HD 64 and 128 then take the simple path on CUDA (attention_path, aligned16 0)
        for (int[] s : new int[][] {{1, 130, 4, 2, 64}, {2, 40, 2, 1, 128}}) {
            int B = s[0], T = s[1], NH = s[2], NKV = s[3], HD = s[4];
            String shape = "B" + B + " T" + T + " NH" + NH + " NKV" + NKV + " HD" + HD + " off=1";
            int n = B * T * (NH + 2 * NKV) * HD, no = B * T * NH * HD, nl = B * NH * T;
            float[] qkv = roundBf16(gauss(seed++, n, 1));
            cs.add(new Case("attention_forward", shape).inX("qkv", qkv).outX("out", no, TOL_ATTN).outF("lse", nl, TOL_F32 * 10).offset(1)
                    .run((b, a) -> b.attentionForward(a.get("out"), a.get("lse"), a.get("qkv"), B, T, NH, NKV, HD)));
        }

        // kvcache_attention_forward (inference): {B, Tq, Tmax, NH, NKV, HD, pos of sequence 0}; sequence b sits 7b later
        // (clamped to the cache): decode (Tq 1) at the last position, a mid-cache chunk, a prefill from 0, HD 64/128
        for (int[] s : new int[][] {{1, 1, 64, 4, 1, 64, 63}, {2, 5, 300, 8, 2, 128, 100}, {3, 1, 200, 6, 2, 64, 0},
                                    {1, 128, 128, 8, 2, 128, 0}, {2, 3, 1024, 32, 8, 128, 700}}) {
            int B = s[0], Tq = s[1], Tmax = s[2], NH = s[3], NKV = s[4], HD = s[5];
            int[] pos = new int[B];
            for (int b = 0; b < B; b++) pos[b] = Math.min(s[6] + 7 * b, Tmax - Tq);
            String shape = "B" + B + " Tq" + Tq + " Tmax" + Tmax + " NH" + NH + " NKV" + NKV + " HD" + HD + " pos0 " + pos[0];
            float[][] tab = ropeTables(Tmax, HD);
            cs.add(new Case("kvcache_attention_forward", shape).inF("cos", tab[0]).inF("sin", tab[1]).inI("pos", pos)
                    .accX("kv", gauss(seed++, B * Tmax * 2 * NKV * HD, 1), TOL_X).accX("qkv", gauss(seed++, B * Tq * (NH + 2 * NKV) * HD, 1), TOL_X)
                    .outX("out", (long) B * Tq * NH * HD, TOL_ATTN)
                    .run((b, a) -> b.kvcacheAttentionForward(a.get("out"), a.get("kv"), a.get("qkv"), a.get("cos"), a.get("sin"), a.get("pos"),
                            B, Tq, Tmax, NH, NKV, HD)));
        }

        // swiglu
        for (int[] s : new int[][] {{1, 1, 0}, {67, 67, 0}, {1024, 14336, 0}, {33, 64, 1}}) {
            int N = s[0], F = s[1], off = s[2];
            String shape = "N=" + N + " F=" + F + (off > 0 ? " off=1" : "");
            float[] gu = gauss(seed++, 2 * N * F, 2);
            cs.add(new Case("swiglu_forward", shape).inX("gateup", gu).outX("out", (long) N * F, TOL_X).offset(off)
                    .run((b, a) -> b.swigluForward(a.get("out"), a.get("gateup"), N, F)));
            cs.add(new Case("swiglu_backward", shape).inX("gateup", gu).inX("dout", gauss(seed++, N * F, 1)).outX("dgateup", 2L * N * F, TOL_X).offset(off)
                    .run((b, a) -> b.swigluBackward(a.get("dgateup"), a.get("dout"), a.get("gateup"), N, F)));
        }

        // cross-entropy: {N, V, vocab_start}; some targets ignored, some outside the shard
        for (int[] s : new int[][] {{3, 67, 0}, {64, 128256, 0}, {16, 1000, 500}, {5, 8, 0}}) {
            int N = s[0], V = s[1], vs = s[2];
            int ignore = -100;
            String shape = "N=" + N + " V=" + V + " start=" + vs;
            float[] logits = roundBf16(gauss(seed++, N * V, 3));
            int[] tg = tokens(seed++, N, vs + V + (vs > 0 ? 500 : 0));
            tg[N / 2] = ignore;
            float[][] fw = cpuCrossEntropyForward(cpu, logits, tg, N, V, vs, ignore);
            cs.add(new Case("crossentropy_forward", shape).inX("logits", logits).inI("targets", tg).outF("lse", N, TOL_F32).outF("tlogit", N, TOL_EXACT)
                    .run((b, a) -> b.crossentropyForward(a.get("lse"), a.get("tlogit"), a.get("logits"), a.get("targets"), N, V, vs, ignore)));
            float dloss = 1f / N;
            // in place, the usual case: dlogits aliases logits
            cs.add(new Case("crossentropy_backward", shape + " inplace").accX("dlogits", logits, TOL_X).inF("lse", fw[0]).inF("tlogit", fw[1])
                    .inI("targets", tg).outF("losses", N, TOL_F32)
                    .run((b, a) -> b.crossentropyBackward(a.get("dlogits"), a.get("losses"), a.get("dlogits"), a.get("lse"), a.get("tlogit"),
                            a.get("targets"), dloss, N, V, vs, ignore)));
        }
        for (int[] s : new int[][] {{1, 67}, {3, 67}, {8, 1000}}) {
            int P = s[0], N = s[1];
            cs.add(new Case("lse_combine", "P=" + P + " N=" + N).inF("parts", gauss(seed++, P * N, 4)).outF("lse", N, TOL_F32)
                    .run((b, a) -> b.lseCombine(a.get("lse"), a.get("parts"), P, N)));
        }

        // adamw: {n, with param_x, offset}
        for (int[] s : new int[][] {{1, 1, 0}, {67, 0, 0}, {1_000_003, 1, 0}, {1001, 1, 1}}) {
            int n = s[0];
            boolean px = s[1] == 1;
            int off = s[2];
            String shape = "n=" + n + (px ? " +param_x" : "") + (off > 0 ? " off=1" : "");
            float[] v0 = gauss(seed++, n, 1e-3);
            for (int k = 0; k < n; k++) v0[k] = Math.abs(v0[k]);
            float lr = 3e-4f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
            float bc1 = (float) (1 - Math.pow(b1, 10)), bc2 = (float) (1 - Math.pow(b2, 10));
            Case c = new Case("adamw_update", shape).accF("param", gauss(seed++, n, 1), TOL_F32).inF("grad", gauss(seed++, n, 1e-2))
                    .accF("m", gauss(seed++, n, 1e-2), TOL_F32).accF("v", v0, TOL_F32).offset(off);
            if (px) c.outX("param_x", n, TOL_X);
            c.run((b, a) -> b.adamwUpdate(a.get("param"), px ? a.get("param_x") : 0L, a.get("grad"), a.get("m"), a.get("v"), n,
                    lr, b1, b2, eps, wd, bc1, bc2, gs));
            cs.add(c);
        }

        // global norm: out += sum x^2
        for (int n : new int[] {1, 1_000_003, (1 << 24) + 5}) {
            cs.add(new Case("global_norm_squared", "n=" + n).inF("x", gauss(seed++, n, 1)).accF("out", new float[] {3f}, TOL_F32)
                    .scratch("scratch", KernelAbi.NORM_SCRATCH_FLOATS)
                    .run((b, a) -> b.globalNormSquared(a.get("out"), a.get("scratch"), a.get("x"), n)));
        }

        // linear_forward: the dot-product regime (M <= MT_LINEAR_DOT_MAX_M, decoding) and the CPU's packed one above,
        // odd N and K, a K that is not a multiple of 32 (the CUDA lanes' tail)
        for (int[] s : new int[][] {{1, 257, 4096}, {3, 33, 129}, {16, 1024, 512}, {17, 65, 100}, {64, 96, 2048}}) {
            int M = s[0], N = s[1], K = s[2];
            cs.add(new Case("linear_forward", "M" + M + " N" + N + " K" + K).inX("inp", gauss(seed++, M * K, 1))
                    .inX("weight", gauss(seed++, N * K, 0.05)).outX("out", (long) M * N, TOL_GEMM_X)
                    .run((b, a) -> b.linearForward(a.get("out"), a.get("inp"), a.get("weight"), M, N, K)));
        }

        // GEMM (cuBLAS vs OpenBLAS), all transposes, bf16 and fp32 C (fp32 with beta = 1: gradient accumulation)
        for (int[] s : new int[][] {{67, 33, 129}, {512, 1024, 4096}, {1, 8, 16}}) {
            int M = s[0], N = s[1], K = s[2];
            for (int tr = 0; tr < 4; tr++) {
                boolean ta = (tr & 1) != 0, tb = (tr & 2) != 0;
                float[] A = gauss(seed++, M * K, 1), B = gauss(seed++, K * N, 1);
                String shape = "M" + M + " N" + N + " K" + K + (ta ? " tA" : "") + (tb ? " tB" : "");
                cs.add(new Case("gemm_x", shape).inX("A", A).inX("B", B).outX("C", (long) M * N, TOL_GEMM_X)
                        .run((b, a) -> b.gemm(ta, tb, M, N, K, 1f, a.get("A"), a.get("B"), 0f, a.get("C"), false)));
                cs.add(new Case("gemm_f32acc", shape).inX("A", A).inX("B", B).accF("C", gauss(seed++, M * N, 1), TOL_F32 * 10)
                        .run((b, a) -> b.gemm(ta, tb, M, N, K, 0.5f, a.get("A"), a.get("B"), 1f, a.get("C"), true)));
            }
        }
        return cs;
    }

    private static void rope(Backend b, boolean bwd, long out, long inp, Map<String, Long> a, int B, int T, int NH, int NKV, int HD) {
        if (bwd) b.ropeBackward(out, inp, a.get("cos"), a.get("sin"), B, T, NH, NKV, HD);
        else b.ropeForward(out, inp, a.get("cos"), a.get("sin"), B, T, NH, NKV, HD);
    }

    /** cos/sin [T, HD/2] for theta = 500000 (Llama 3), computed in double then rounded to fp32. */
    static float[][] ropeTables(int T, int HD) {
        int half = HD / 2;
        float[] c = new float[T * half], s = new float[T * half];
        for (int t = 0; t < T; t++)
            for (int i = 0; i < half; i++) {
                double ang = t / Math.pow(500000.0, 2.0 * i / HD);
                c[t * half + i] = (float) Math.cos(ang);
                s[t * half + i] = (float) Math.sin(ang);
            }
        return new float[][] {c, s};
    }

    /** The CPU forward, whose (bf16-rounded) out and lse feed both backends' attention_backward. */
    static float[][] cpuAttentionForward(Backend cpu, float[] qkv, int B, int T, int NH, int NKV, int HD) {
        int no = B * T * NH * HD, nl = B * NH * T;
        long q = cpu.alloc(4L * qkv.length), o = cpu.alloc(4L * no), l = cpu.alloc(4L * nl);
        try {
            cpu.upload(q, qkv);
            cpu.attentionForward(o, l, q, B, T, NH, NKV, HD);
            float[] out = new float[no], lse = new float[nl];
            cpu.download(out, o);
            cpu.download(lse, l);
            return new float[][] {roundBf16(out), lse};
        } finally {
            cpu.free(q); cpu.free(o); cpu.free(l);
        }
    }

    static float[][] cpuCrossEntropyForward(Backend cpu, float[] logits, int[] tg, int N, int V, int vs, int ignore) {
        long lg = cpu.alloc(4L * logits.length), t = cpu.alloc(4L * N), l = cpu.alloc(4L * N), tl = cpu.alloc(4L * N);
        try {
            cpu.upload(lg, logits);
            cpu.upload(t, tg);
            cpu.crossentropyForward(l, tl, lg, t, N, V, vs, ignore);
            float[] lse = new float[N], tlog = new float[N];
            cpu.download(lse, l);
            cpu.download(tlog, tl);
            return new float[][] {lse, tlog};
        } finally {
            cpu.free(lg); cpu.free(t); cpu.free(l); cpu.free(tl);
        }
    }

    // ----------------------------------------------------------------------------------------------- helpers

    static float[] gauss(long seed, int n, double std) {
        Random r = new Random(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float) (r.nextGaussian() * std);
        return x;
    }

    static int[] tokens(long seed, int n, int V) {
        Random r = new Random(seed);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = r.nextInt(V);
        return t;
    }

    /** Round-to-nearest-even to bf16, returned as the float it represents. */
    static float bf16(float f) {
        int b = Float.floatToRawIntBits(f);
        if ((b & 0x7fffffff) > 0x7f800000) return f;
        return Float.intBitsToFloat(((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) << 16);
    }

    static float[] roundBf16(float[] x) {
        float[] y = new float[x.length];
        for (int i = 0; i < x.length; i++) y[i] = bf16(x[i]);
        return y;
    }
}
