package dev.midtrain.ckpt;

/**
 * Exact conversions between fp32 and the 16-bit float formats (Java 17 has no Float.float16ToFloat).
 * Widening (bf16/fp16 to fp32) is exact. Narrowing rounds to nearest, ties to even; NaN stays a (quiet) NaN;
 * fp16 overflow gives infinity, fp16 underflow gives subnormals or signed zero.
 */
public final class Floats {
    private Floats() {}

    /** bf16 is the upper 16 bits of an IEEE fp32. */
    public static float bf16ToF32(short h) {
        return Float.intBitsToFloat((h & 0xffff) << 16);
    }

    public static short f32ToBf16(float f) {
        int b = Float.floatToRawIntBits(f);
        if ((b & 0x7fffffff) > 0x7f800000) return (short) ((b >>> 16) | 0x40);   // NaN: keep sign and payload top, force quiet
        return (short) ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16);                  // round to nearest even (carries into the exponent)
    }

    /** IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
    public static float f16ToF32(short h) {
        int x = h & 0xffff;
        int sign = (x & 0x8000) << 16, exp = (x >>> 10) & 0x1f, mant = x & 0x3ff;
        if (exp == 0x1f) return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));     // inf or NaN (payload kept)
        if (exp == 0) {                                                                       // zero or subnormal: mant * 2^-24, exact in fp32
            float v = mant * 0x1p-24f;
            return sign != 0 ? -v : v;
        }
        return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));             // rebias 15 -> 127
    }

    public static short f32ToF16(float f) {
        int b = Float.floatToRawIntBits(f);
        int sign = (b >>> 16) & 0x8000, abs = b & 0x7fffffff;
        if (abs > 0x7f800000) return (short) (sign | 0x7e00 | ((abs >>> 13) & 0x3ff));   // NaN: quiet
        if (abs >= 0x477ff000) return (short) (sign | 0x7c00);                             // >= 65520 (halfway past 65504): inf
        if (abs >= 0x38800000) {                                                            // >= 2^-14: a normal half
            int r = abs - 0x38000000;                                                       // rebias exponent 127 -> 15
            r += 0xfff + ((r >>> 13) & 1);                                                  // round to nearest even at bit 13
            return (short) (sign | (r >>> 13));
        }
        // below the smallest normal: a subnormal count of 2^-24 (1024 rounds up into the smallest normal, which is right)
        int m = (int) Math.rint((double) Float.intBitsToFloat(abs) * 0x1p24);
        return (short) (sign | m);
    }
}
