package dev.midtrain.kernels;

import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;

import java.nio.FloatBuffer;

/**
 * fp32 values in host memory, addressed by a long element index: a heap array (tests, small tensors), off-heap
 * memory this object owns, or a caller's host address (the CPU backend's slabs) that it only views. Java buffers
 * are int-indexed, so callers move data in windows of at most {@link #MAX_WINDOW} elements ({@link #view}).
 *
 * <p>Not thread-safe for concurrent writes to overlapping ranges; views of disjoint ranges may be used from
 * different threads.
 */
public final class HostFloats implements AutoCloseable {
    /** Largest window {@link #view} returns (elements): 64 MiB of fp32, well under the 2 GiB buffer limit. */
    public static final int MAX_WINDOW = 1 << 24;

    private final float[] heap;
    private final FloatPointer owned;
    private final long address;
    private final long numel;
    private boolean closed;

    private HostFloats(float[] heap, FloatPointer owned, long address, long numel) {
        this.heap = heap;
        this.owned = owned;
        this.address = address;
        this.numel = numel;
    }

    /** Views a heap array (no copy). */
    public static HostFloats wrap(float[] a) { return new HostFloats(a, null, 0, a.length); }

    /** Allocates {@code numel} zeroed floats off-heap; {@link #close} frees them. */
    public static HostFloats allocate(long numel) {
        if (numel < 0) throw new IllegalArgumentException("numel " + numel);
        FloatPointer p = new FloatPointer(Math.max(1, numel));
        Pointer.memset(p, 0, 4 * Math.max(1, numel));
        return new HostFloats(null, p, p.address(), numel);
    }

    public long numel() { return numel; }

    /** The host address of element 0, or 0 when heap-backed. */
    public long address() { return address; }

    public float[] array() {
        if (heap == null) throw new IllegalStateException("off-heap HostFloats has no array");
        return heap;
    }

    /** A buffer over elements [offset, offset + count), native byte order, position 0; count <= MAX_WINDOW. */
    public FloatBuffer view(long offset, int count) {
        if (closed) throw new IllegalStateException("HostFloats closed");
        if (count < 0 || count > MAX_WINDOW || offset < 0 || offset + count > numel)
            throw new IndexOutOfBoundsException("window [" + offset + ", " + (offset + count) + ") of " + numel);
        if (heap != null) return FloatBuffer.wrap(heap, (int) offset, count).slice();
        final long a = address + 4 * offset;
        FloatPointer p = new FloatPointer() {{ address = a; limit = count; capacity = count; }};
        return p.asBuffer();
    }

    public float get(long i) { return heap != null ? heap[(int) i] : view(i, 1).get(0); }

    public void put(long i, float v) {
        if (heap != null) heap[(int) i] = v;
        else view(i, 1).put(0, v);
    }

    /** Copies {@code count} elements from {@code src[srcOffset..]} into this at {@code dstOffset}. */
    public void copyFrom(HostFloats src, long srcOffset, long dstOffset, long count) {
        for (long done = 0; done < count; ) {
            int n = (int) Math.min(MAX_WINDOW, count - done);
            view(dstOffset + done, n).put(src.view(srcOffset + done, n));
            done += n;
        }
    }

    /** Copies all of this into a new heap array (numel must fit an int). */
    public float[] toArray(long offset, int count) {
        float[] out = new float[count];
        for (int done = 0; done < count; ) {
            int n = Math.min(MAX_WINDOW, count - done);
            view(offset + done, n).get(out, done, n);
            done += n;
        }
        return out;
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        if (owned != null) owned.close();
    }
}
