package dev.midtrain.kernels;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Random;

import static dev.midtrain.kernels.KernelTestSupport.*;

/**
 * Runs the kernels whose reductions are split across threads, at sizes above the OpenMP threshold, on fixed seeded
 * inputs, and returns a SHA-256 of every output bit. {@link ThreadCountDeterminismTest} compares digests from
 * JVMs with different OMP_NUM_THREADS. main prints the digest for a child JVM.
 */
public final class DeterminismProbe {
    public static void main(String[] args) {
        System.out.println("digest=" + digest());
    }

    static String digest() {
        MessageDigest md;
        try { md = MessageDigest.getInstance("SHA-256"); } catch (NoSuchAlgorithmException e) { throw new IllegalStateException(e); }
        try (CpuBackend be = new CpuBackend(); KernelTestSupport k = new KernelTestSupport(be)) {
            Random r = new Random(424242);
            { // attention: B*NH*T*(T+1)/2*HD = 2*4*150*151/2*32 ~ 2.9M > MT_OMP_MIN_WORK
                int B = 2, T = 150, NH = 4, NKV = 2, HD = 32, n = B * T * (NH + 2 * NKV) * HD, no = B * T * NH * HD;
                long qkv = k.put(gaussian(r, n, 1)), out = k.alloc(no), lse = k.alloc(B * NH * T), dout = k.put(gaussian(r, no, 1));
                long dqkv = k.alloc(n), scratch = k.alloc(KernelAbi.attnBwdScratchFloats(B, NH, T));
                be.attentionForward(out, lse, qkv, B, T, NH, NKV, HD);
                be.attentionBackward(dqkv, scratch, dout, qkv, out, lse, B, T, NH, NKV, HD);
                update(md, k.get(out, no));
                update(md, k.get(lse, B * NH * T));
                update(md, k.get(dqkv, n));
            }
            { // rmsnorm backward: 3000 rows -> 250 dweight chunks
                int N = 3000, C = 40;
                long x = k.put(gaussian(r, N * C, 1)), w = k.put(gaussian(r, C, 1)), out = k.alloc(N * C), rstd = k.alloc(N);
                long d = k.put(gaussian(r, N * C, 1)), dx = k.put(gaussian(r, N * C, 1)), dw = k.put(gaussian(r, C, 1));
                be.rmsnormForward(out, rstd, x, w, N, C, 1e-5f);
                be.rmsnormBackward(dx, dw, k.alloc(KernelAbi.rmsnormBwdScratchFloats(N, C)), d, x, w, rstd, N, C);
                update(md, k.get(dx, N * C));
                update(md, k.get(dw, C));
            }
            { // embedding backward with many repeated tokens
                int N = 4000, C = 200, V = 50;
                long tok = k.putInts(ints(r, N, V)), dw = k.put(gaussian(r, V * C, 1)), d = k.put(gaussian(r, N * C, 1));
                be.embeddingBackward(dw, tok, d, N, C, V);
                update(md, k.get(dw, V * C));
            }
            { // cross-entropy, both passes
                int N = 64, V = 3000;
                long lg = k.put(gaussian(r, N * V, 2)), tg = k.putInts(ints(r, N, V)), lse = k.alloc(N), tl = k.alloc(N), loss = k.alloc(N);
                be.crossentropyForward(lse, tl, lg, tg, N, V, 0, -100);
                be.crossentropyBackward(lg, loss, lg, lse, tl, tg, 1f / N, N, V, 0, -100);
                update(md, k.get(lse, N));
                update(md, k.get(loss, N));
                update(md, k.get(lg, N * V));
            }
            { // linear_forward: 3 x 2000 x 300 = 1.8M > 8 * MT_OMP_MIN_WORK, the parallel path
                int M = 3, N = 2000, K = 300;
                long a = k.put(gaussian(r, M * K, 1)), w = k.put(gaussian(r, N * K, 1)), out = k.alloc(M * N);
                be.linearForward(out, a, w, M, N, K);
                update(md, k.get(out, M * N));
                int M2 = 40, N2 = 1000;                                           // the packed-GEMM regime (M > 16)
                long a2 = k.put(gaussian(r, M2 * K, 1)), w2 = k.put(gaussian(r, N2 * K, 1)), out2 = k.alloc(M2 * N2);
                be.linearForward(out2, a2, w2, M2, N2, K);
                update(md, k.get(out2, M2 * N2));
            }
            { // kvcache_attention_forward: a 100-token prefill after 30 cached positions, 2 sequences, 6 heads
                int B = 2, Tq = 100, Tmax = 140, NH = 6, NKV = 2, HD = 32, H = NH + 2 * NKV;
                float[][] rope = ropeTables(Tmax, HD, 10000.0);
                long kv = k.put(gaussian(r, B * Tmax * 2 * NKV * HD, 1)), qkv = k.put(gaussian(r, B * Tq * H * HD, 1));
                long out = k.alloc(B * Tq * NH * HD), cos = k.put(rope[0]), sin = k.put(rope[1]), pos = k.putInts(new int[] {30, 7});
                be.kvcacheAttentionForward(out, kv, qkv, cos, sin, pos, B, Tq, Tmax, NH, NKV, HD);
                update(md, k.get(out, B * Tq * NH * HD));
                update(md, k.get(kv, B * Tmax * 2 * NKV * HD));
            }
            { // gradient norm over 1M values (256 chunks)
                int n = 1_000_000;
                long x = k.put(gaussian(r, n, 1)), out = k.put(new float[] {0.5f});
                be.globalNormSquared(out, k.alloc(KernelAbi.NORM_SCRATCH_FLOATS), x, n);
                update(md, k.get(out, 1));
            }
        }
        return HexFormat.of().formatHex(md.digest());
    }

    private static void update(MessageDigest md, float[] x) {
        ByteBuffer b = ByteBuffer.allocate(4 * x.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : x) b.putInt(Float.floatToRawIntBits(f));
        md.update(b.array());
    }
}
