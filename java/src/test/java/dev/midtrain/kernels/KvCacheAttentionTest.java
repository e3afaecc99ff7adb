package dev.midtrain.kernels;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static dev.midtrain.kernels.KernelTestSupport.assertClose;
import static dev.midtrain.kernels.KernelTestSupport.gaussian;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * kvcache_attention_forward (CPU) against a naive double-precision reference written from the header's contract:
 * RoPE at absolute positions, the cache rows of the new tokens, and causal GQA attention over the cache. Outputs are
 * NaN-poisoned; odd head counts, group sizes 1, 3 and 4, a batch with different positions per sequence.
 */
class KvCacheAttentionTest {

    @Test
    void matchesNaiveReferenceOnOddShapes() {
        // B, Tq, Tmax, NH, NKV, HD, pos...
        check(new Random(1), 1, 1, 7, 4, 1, 6, new int[]{6});             // decode of the last position, MQA
        check(new Random(2), 2, 3, 150, 6, 2, 10, new int[]{0, 131});     // prefill from 0 | past one 64-key block
        check(new Random(3), 3, 1, 40, 5, 5, 4, new int[]{12, 0, 39});    // no grouping, three positions
        check(new Random(4), 1, 70, 70, 8, 2, 16, new int[]{0});          // a whole prompt (two key blocks)
    }

    @Test
    void positionOutsideTheCacheIsRangeError() {
        try (Backend be = new CpuBackend(); KernelTestSupport k = new KernelTestSupport(be)) {
            int NH = 2, NKV = 1, HD = 4, Tmax = 4;
            long out = k.alloc(NH * HD), kv = k.alloc(Tmax * 2 * NKV * HD), qkv = k.alloc((NH + 2 * NKV) * HD);
            long cos = k.alloc(Tmax * HD / 2), sin = k.alloc(Tmax * HD / 2), pos = k.putInts(new int[]{4});
            KernelException e = assertThrows(KernelException.class, () -> be.kvcacheAttentionForward(out, kv, qkv, cos, sin, pos, 1, 1, Tmax, NH, NKV, HD));
            assertEquals(true, e.getMessage().contains("kvcache_attention_forward"), e.getMessage());
        }
    }

    private static void check(Random r, int B, int Tq, int Tmax, int NH, int NKV, int HD, int[] pos) {
        int H = NH + 2 * NKV, half = HD / 2;
        float[] cache = gaussian(r, B * Tmax * 2 * NKV * HD, 1.0);          // rows before pos[b]: an earlier call's
        float[] qkv = gaussian(r, B * Tq * H * HD, 1.0);
        float[] cos = new float[Tmax * half], sin = new float[Tmax * half];
        for (int t = 0; t < Tmax; t++)
            for (int i = 0; i < half; i++) {
                double a = t / Math.pow(10000.0, 2.0 * i / HD);
                cos[t * half + i] = (float) Math.cos(a);
                sin[t * half + i] = (float) Math.sin(a);
            }
        // reference: rotate, write the cache, attend (double)
        double[] kvRef = new double[cache.length];
        for (int i = 0; i < cache.length; i++) kvRef[i] = cache[i];
        double[] qRot = new double[B * Tq * NH * HD];
        double[] qkvRot = new double[qkv.length];
        for (int b = 0; b < B; b++)
            for (int i = 0; i < Tq; i++) {
                int p = pos[b] + i;
                for (int h = 0; h < H; h++) {
                    int base = ((b * Tq + i) * H + h) * HD;
                    for (int d = 0; d < HD; d++) qkvRot[base + d] = qkv[base + d];
                    if (h < NH + NKV)
                        for (int j = 0; j < half; j++) {
                            double x1 = qkv[base + j], x2 = qkv[base + j + half], c = cos[p * half + j], s = sin[p * half + j];
                            qkvRot[base + j] = x1 * c - x2 * s;
                            qkvRot[base + j + half] = x2 * c + x1 * s;
                        }
                    if (h < NH) System.arraycopy(qkvRot, base, qRot, ((b * Tq + i) * NH + h) * HD, HD);
                    else for (int d = 0; d < HD; d++) kvRef[((b * Tmax + p) * 2 * NKV + (h - NH)) * HD + d] = qkvRot[base + d];
                }
            }
        double[] outRef = new double[B * Tq * NH * HD];
        int G = NH / NKV;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < Tq; i++)
                for (int h = 0; h < NH; h++) {
                    int p = pos[b] + i, g = h / G, qo = ((b * Tq + i) * NH + h) * HD;
                    double[] s = new double[p + 1];
                    double max = Double.NEGATIVE_INFINITY, sum = 0;
                    for (int j = 0; j <= p; j++) {
                        int ko = ((b * Tmax + j) * 2 * NKV + g) * HD;
                        for (int d = 0; d < HD; d++) s[j] += qRot[qo + d] * kvRef[ko + d];
                        s[j] /= Math.sqrt(HD);
                        max = Math.max(max, s[j]);
                    }
                    for (int j = 0; j <= p; j++) sum += s[j] = Math.exp(s[j] - max);
                    for (int j = 0; j <= p; j++) {
                        int vo = ((b * Tmax + j) * 2 * NKV + NKV + g) * HD;
                        for (int d = 0; d < HD; d++) outRef[qo + d] += s[j] / sum * kvRef[vo + d];
                    }
                }
        try (Backend be = new CpuBackend(); KernelTestSupport k = new KernelTestSupport(be)) {
            long dOut = k.poisoned(outRef.length), dKv = k.put(cache), dQkv = k.put(qkv);
            long dCos = k.put(cos), dSin = k.put(sin), dPos = k.putInts(pos);
            be.kvcacheAttentionForward(dOut, dKv, dQkv, dCos, dSin, dPos, B, Tq, Tmax, NH, NKV, HD);
            // fp32 with a 2-ulp expf: scores of unit-variance inputs over <= 150 keys stay within ~1e-5 relative
            String what = "B" + B + " Tq" + Tq + " NH" + NH + " NKV" + NKV + " HD" + HD;
            assertClose("out " + what, outRef, k.get(dOut, outRef.length), 2e-5, 2e-5);
            assertClose("kv cache " + what, kvRef, k.get(dKv, cache.length), 1e-6, 1e-6);
            assertClose("rotated qkv " + what, qkvRot, k.get(dQkv, qkv.length), 1e-6, 1e-6);
            // deterministic: a second call from the same inputs gives the same bits
            float[] first = k.get(dOut, outRef.length);
            long dOut2 = k.poisoned(outRef.length), dQkv2 = k.put(qkv), dKv2 = k.put(cache);
            be.kvcacheAttentionForward(dOut2, dKv2, dQkv2, dCos, dSin, dPos, B, Tq, Tmax, NH, NKV, HD);
            assertArrayEquals(first, k.get(dOut2, outRef.length));
        }
    }
}
