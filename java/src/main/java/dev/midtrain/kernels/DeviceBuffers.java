package dev.midtrain.kernels;

import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.IntPointer;

import java.util.ArrayList;
import java.util.List;

/**
 * Buffers in one backend's memory owned by one object (a model), freed together by {@link #close()}, and the host
 * staging that object copies through: allocated once, because a JavaCPP Pointer per call costs a System.gc() whenever
 * the process is over JavaCPP's physical-memory mark (measured: 0.5 s per decoded token on the 30m config).
 */
public final class DeviceBuffers implements AutoCloseable {
    private final Backend be;
    private final List<Long> held = new ArrayList<>();
    private final IntPointer hostInts;
    private final FloatPointer hostFloats;

    /** @param stageInts, stageFloats  the largest {@link #putInts} / {@link #getFloats} transfer, in elements */
    public DeviceBuffers(Backend be, long stageInts, long stageFloats) {
        this.be = be;
        hostInts = new IntPointer(Math.max(1, stageInts));
        hostFloats = new FloatPointer(Math.max(1, stageFloats));
    }

    /** float[n] (at least one element), contents undefined. */
    public long f32(long n) { return hold(be.alloc(4L * Math.max(1, n))); }

    /** floatX[n] (at least one element), contents undefined. */
    public long x(long n) { return hold(be.alloc((long) be.floatxBytes() * Math.max(1, n))); }

    /** int32 device[0..n) = src[0..n) through the host staging. */
    public void putInts(long dst, int[] src, int n) {
        hostInts.put(src, 0, n);
        be.copyHostToDevice(dst, hostInts.address(), 4L * n);
    }

    /** dst[0..n) = float device[0..n) (synchronous on both backends). */
    public void getFloats(float[] dst, long src, int n) {
        be.copyDeviceToHost(hostFloats.address(), src, 4L * n);
        hostFloats.get(dst, 0, n);
    }

    private long hold(long p) {
        held.add(p);
        return p;
    }

    @Override
    public void close() {
        for (long p : held) be.free(p);
        held.clear();
        hostInts.close();
        hostFloats.close();
    }
}
