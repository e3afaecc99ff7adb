package dev.midtrain.ckpt;

import dev.midtrain.kernels.HostFloats;
import dev.midtrain.common.UserError;
import dev.midtrain.model.ParamLayout;

import java.util.Arrays;

/**
 * Moves parameters between safetensors files and a rank's slab following {@link ParamLayout}'s tensor-parallel
 * metadata: ROWS holds rows [i*R/n, (i+1)*R/n) of the full [R, C] matrix, COLUMNS holds columns
 * [i*C/n, (i+1)*C/n), REPLICATED holds the whole tensor.
 */
public final class Shards {
    private Shards() {}

    /** A tensor in an open file. */
    public record Ref(Safetensors.Reader reader, Safetensors.TensorInfo info) {
        public String where() { return reader.file() + ": tensor " + info.name(); }
    }

    /** Reads this rank's slice of a FULL (Hugging Face shaped) tensor into {@code dst} at the tensor's slab offset. */
    public static void readSlice(Ref ref, ParamLayout.Tensor t, HostFloats dst, long dstBase) {
        checkShape(ref, t.fullShape(), "the model config");
        var r = ref.reader();
        var info = ref.info();
        long off = dstBase + t.offset();
        switch (t.split()) {
            case REPLICATED -> r.readF32(info, 0, info.numel(), dst, off);
            case ROWS -> {
                long rows = t.shape()[0], cols = t.numel() / rows;
                r.readBlockF32(info, (long) t.shardIndex() * rows, rows, 0, cols, dst, off);
            }
            case COLUMNS -> {
                long rows = t.shape()[0], cols = t.shape()[1];
                r.readBlockF32(info, 0, rows, (long) t.shardIndex() * cols, cols, dst, off);
            }
        }
    }

    /**
     * Places one rank's piece ({@code piece[0 .. t.numel())}, shaped {@code t.shape()}) into the full tensor
     * {@code full[0 .. numel(fullShape))}.
     */
    public static void placePiece(ParamLayout.Tensor t, HostFloats piece, HostFloats full) {
        switch (t.split()) {
            case REPLICATED -> full.copyFrom(piece, 0, 0, t.numel());
            case ROWS -> full.copyFrom(piece, 0, (long) t.shardIndex() * t.numel(), t.numel());
            case COLUMNS -> {
                long rows = t.shape()[0], cols = t.shape()[1], fullCols = t.fullShape()[1];
                for (long i = 0; i < rows; i++)
                    full.copyFrom(piece, i * cols, i * fullCols + (long) t.shardIndex() * cols, cols);
            }
        }
    }

    /** Fails naming the file and tensor when a stored shape differs from the expected one. */
    public static void checkShape(Ref ref, int[] expected, String what) {
        long[] got = ref.info().shape();
        boolean same = got.length == expected.length;
        for (int i = 0; same && i < got.length; i++) same = got[i] == expected[i];
        if (!same)
            throw new UserError(ref.where() + ": shape " + Arrays.toString(got) + " does not match " + Arrays.toString(expected) + " expected by " + what);
    }

    /** Fails naming the file and tensor at the first non-finite value in {@code v[off .. off + n)}. */
    public static void checkFinite(Ref ref, HostFloats v, long off, long n) {
        for (long done = 0; done < n; ) {
            int k = (int) Math.min(HostFloats.MAX_WINDOW, n - done);
            var b = v.view(off + done, k);
            for (int i = 0; i < k; i++)
                if (!Float.isFinite(b.get(i)))
                    throw new UserError(ref.where() + ": holds a non-finite value (" + b.get(i) + ") at element " + (done + i) + " (corrupt weights?)");
            done += k;
        }
    }

    static long[] toLong(int[] s) {
        long[] o = new long[s.length];
        for (int i = 0; i < s.length; i++) o[i] = s[i];
        return o;
    }

    static long numel(int[] s) {
        long n = 1;
        for (int d : s) n *= d;
        return n;
    }
}
