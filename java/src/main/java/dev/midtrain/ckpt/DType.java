package dev.midtrain.ckpt;

/**
 * Safetensors element types, in the reference implementation's declaration order (increasing alignment): the
 * reference writer lays tensors out by descending {@link #ordinal()}, then by name. Every type is known so that a
 * header can be validated (sizes, coverage); only {@link #isFloat()} types convert to fp32.
 */
public enum DType {
    BOOL(8), F4(4), F6_E2M3(6), F6_E3M2(6), U8(8), I8(8), F8_E5M2(8), F8_E4M3(8), F8_E4M3FNUZ(8), F8_E5M2FNUZ(8),
    F8_E8M0(8), I16(16), U16(16), F16(16), BF16(16), I32(32), U32(32), F32(32), C64(64), F64(64), I64(64), U64(64);

    private final int bits;

    DType(int bits) { this.bits = bits; }

    public int bits() { return bits; }

    /** Bytes per element; only for whole-byte types. */
    public int bytes() {
        if (bits % 8 != 0) throw new IllegalStateException(this + " is a sub-byte type");
        return bits / 8;
    }

    /** Whether the engine converts this type to and from fp32 (exactly, widening; round-to-nearest-even, narrowing). */
    public boolean isFloat() { return this == F16 || this == BF16 || this == F32 || this == F64; }

    /** The type named {@code s} in a header, or null when unknown. */
    public static DType parse(String s) {
        for (DType d : values()) if (d.name().equals(s)) return d;
        return null;
    }
}
