package dev.midtrain.kernels;

import java.util.ArrayList;
import java.util.List;

/** Buffers in one backend's memory owned by one object (a model), freed together by {@link #close()}. */
public final class DeviceBuffers implements AutoCloseable {
    private final Backend be;
    private final List<Long> held = new ArrayList<>();

    public DeviceBuffers(Backend be) { this.be = be; }

    /** float[n] (at least one element), contents undefined. */
    public long f32(long n) { return hold(be.alloc(4L * Math.max(1, n))); }

    /** floatX[n] (at least one element), contents undefined. */
    public long x(long n) { return hold(be.alloc((long) be.floatxBytes() * Math.max(1, n))); }

    private long hold(long p) {
        held.add(p);
        return p;
    }

    @Override
    public void close() {
        for (long p : held) be.free(p);
        held.clear();
    }
}
