package dev.midtrain.ckpt;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** fp16/bf16 conversions against independent double-precision definitions of the formats. */
class FloatsTest {

    /** IEEE binary16 value from its fields, in double arithmetic (the format's definition). */
    static double f16Reference(int h) {
        int s = (h >>> 15) & 1, e = (h >>> 10) & 0x1f, m = h & 0x3ff;
        double sign = s == 1 ? -1 : 1;
        if (e == 0x1f) return m == 0 ? sign * Double.POSITIVE_INFINITY : Double.NaN;
        if (e == 0) return sign * Math.scalb((double) m, -24);
        return sign * Math.scalb(1 + m / 1024.0, e - 15);
    }

    @Test
    void f16ToF32MatchesDefinitionForAll65536Patterns() {
        for (int h = 0; h < 65536; h++) {
            double ref = f16Reference(h);
            float got = Floats.f16ToF32((short) h);
            if (Double.isNaN(ref)) assertTrue(Float.isNaN(got), "pattern " + Integer.toHexString(h));
            else {
                assertEquals(ref, got, 0.0, "pattern " + Integer.toHexString(h));
                assertEquals(h >>> 15, Float.floatToRawIntBits(got) >>> 31, "sign of " + Integer.toHexString(h));   // -0 stays -0
            }
        }
    }

    @Test
    void f32ToF16RoundTripsEveryHalf() {
        for (int h = 0; h < 65536; h++) {
            float f = Floats.f16ToF32((short) h);
            short back = Floats.f32ToF16(f);
            if (Float.isNaN(f)) assertTrue(Float.isNaN(Floats.f16ToF32(back)));
            else assertEquals(h, back & 0xffff, "pattern " + Integer.toHexString(h));
        }
    }

    /** Nearest half by exhaustive search over the candidates, ties to an even mantissa; overflow per IEEE. */
    static int f16Nearest(float f) {
        double x = f;
        int best = -1;
        double bestErr = Double.POSITIVE_INFINITY;
        for (int h = 0; h < 0x7c00; h++) {                   // all finite non-negative halves
            double v = f16Reference(h) * (x < 0 || (x == 0 && 1 / x < 0) ? -1 : 1);
            double err = Math.abs(v - x);
            if (err < bestErr || (err == bestErr && (h & 1) == 0)) { bestErr = err; best = h; }
        }
        // beyond max (65504) round to inf when |x| >= 65520 (the midpoint to 2^16)
        if (Math.abs(x) >= 65520) best = 0x7c00;
        return best | (Float.floatToRawIntBits(f) < 0 ? 0x8000 : 0);
    }

    @Test
    void f32ToF16RoundsToNearestEven() {
        SplittableRandom rnd = new SplittableRandom(7);
        float[] special = {0f, -0f, 1f, 65504f, 65519.99f, 65520f, 1e6f, 5.96e-8f, 2.98e-8f, 2.9802322e-8f, 3e-8f, 6.1e-5f,
                1.0009766f /* 1 + 2^-10 */, 1.00048828125f /* exact tie 1 + 2^-11 -> even 1.0 */, 1.00146484375f /* tie -> 1.0019531 */};
        for (float f : special) assertEquals(f16Nearest(f), Floats.f32ToF16(f) & 0xffff, "value " + f);
        for (int i = 0; i < 3000; i++) {
            // spread over the whole half range: exponents 2^-26 .. 2^17, both signs, random mantissas
            float f = (float) ((rnd.nextBoolean() ? -1 : 1) * Math.scalb(1 + rnd.nextDouble(), rnd.nextInt(-26, 17)));
            assertEquals(f16Nearest(f), Floats.f32ToF16(f) & 0xffff, "value " + f);
        }
        assertTrue(Float.isNaN(Floats.f16ToF32(Floats.f32ToF16(Float.NaN))));
        assertEquals(0x7c00, Floats.f32ToF16(Float.POSITIVE_INFINITY) & 0xffff);
        assertEquals(0xfc00, Floats.f32ToF16(Float.NEGATIVE_INFINITY) & 0xffff);
    }

    @Test
    void bf16IsUpperHalfAndRoundsToNearestEven() {
        SplittableRandom rnd = new SplittableRandom(11);
        for (int i = 0; i < 100000; i++) {
            int bits = i < 16 ? 0x7f7f8000 + (i - 8) * 0x1000 + (i & 1) : rnd.nextInt();   // first: around the overflow boundary
            float f = Float.intBitsToFloat(bits);
            short b = Floats.f32ToBf16(f);
            if (Float.isNaN(f)) { assertTrue(Float.isNaN(Floats.bf16ToF32(b))); continue; }
            // reference: the two bf16 neighbours (truncate, truncate + 1 ulp) compared in double, ties to even
            int lo = bits >>> 16, hi = lo + 1;
            double x = f, dl = Math.abs(Float.intBitsToFloat(lo << 16) - x);
            // past the largest finite bf16 the upper neighbour is infinity, which IEEE rounding places at 2^128
            double vh = (hi & 0x7fff) == 0x7f80 ? Math.copySign(Math.scalb(1.0, 128), x) : Float.intBitsToFloat(hi << 16);
            double dh = Math.abs(vh - x);
            int ref = dl < dh || (dl == dh && (lo & 1) == 0) ? lo : hi;
            assertEquals(ref & 0xffff, b & 0xffff, "bits " + Integer.toHexString(bits));
            // widening is exact: every bf16 is an fp32
            assertEquals(Float.intBitsToFloat((b & 0xffff) << 16), Floats.bf16ToF32(b));
        }
    }
}
