package dev.midtrain.parallel;

import dev.midtrain.parallel.Communicator.Dtype;
import org.bytedeco.cuda.cudart.CUstream_st;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;

import java.io.PrintStream;
import java.util.Arrays;
import java.util.Random;

import static org.bytedeco.cuda.global.cudart.*;

/**
 * World-size-1 NCCL check for the GPU validation script: on device 0, a one-rank world communicator and a one-rank
 * split of it run every collective of {@link Communicator} (fp32 and bf16) on device buffers, and the results are
 * compared bitwise with what a one-rank collective must produce (its input). Output buffers are poisoned (all bits
 * set: NaN) first so an unwritten element fails. Talks to cudart directly (no CudaBackend needed).
 *
 * <p>Run: {@code java -cp ... dev.midtrain.parallel.NcclSelfCheck}; exit code 0 on success, 1 on a mismatch or error.
 * A one-GPU machine cannot check cross-rank arithmetic (NCCL refuses two ranks on one device); the in-process
 * communicator's tests cover the semantics, and this covers the binding: pointers, counts, dtypes, streams.
 */
public final class NcclSelfCheck {
    private NcclSelfCheck() {}

    public static void main(String[] args) {
        int rc;
        try {
            rc = run(System.out) ? 0 : 1;
        } catch (RuntimeException | UnsatisfiedLinkError e) {
            System.out.println("nccl self-check FAILED: " + e);
            rc = 1;
        }
        System.exit(rc);
    }

    /** Runs the check and prints one line per collective; true when all of them matched. */
    public static boolean run(PrintStream out) {
        Loader.load(org.bytedeco.cuda.global.cudart.class);
        NcclCommunicator.load();
        cuda(cudaSetDevice(0), "cudaSetDevice(0)");
        CUstream_st stream = new CUstream_st();
        cuda(cudaStreamCreate(stream), "cudaStreamCreate");
        out.println("nccl version " + NcclCommunicator.version());

        final int n = 4099;                                   // odd size: no chunking happens to line up
        Random rng = new Random(1234);
        byte[] f32 = new byte[4 * n], bf16 = new byte[2 * n];
        for (int i = 0; i < n; i++) {
            int bits = Float.floatToRawIntBits((float) rng.nextGaussian());
            for (int b = 0; b < 4; b++) f32[4 * i + b] = (byte) (bits >>> (8 * b));
            bf16[2 * i] = (byte) (bits >>> 16);
            bf16[2 * i + 1] = (byte) (bits >>> 24);
        }
        boolean ok = true;
        long a = malloc(4L * n), b = malloc(4L * n);
        try (NcclCommunicator world = NcclCommunicator.init(NcclCommunicator.newUniqueId(), 1, 0, stream.address());
             NcclCommunicator sub = world.split(0, 0)) {
            ok &= expect(out, "split size/rank", sub.size() == 1 && sub.rank() == 0 && world.size() == 1);
            for (NcclCommunicator c : new NcclCommunicator[]{world, sub}) {
                String g = c == world ? "world" : "split";
                for (Dtype t : Dtype.values()) {
                    byte[] data = t == Dtype.F32 ? f32 : bf16;
                    String tag = g + " " + t;
                    upload(a, data); poison(b, data.length);
                    c.allReduceSum(a, n, t);
                    ok &= expect(out, tag + " allReduceSum (in place)", Arrays.equals(download(a, data.length, stream), data));
                    c.allReduceMax(a, n, t);
                    ok &= expect(out, tag + " allReduceMax (in place)", Arrays.equals(download(a, data.length, stream), data));
                    c.reduceScatterSum(b, a, n, t);
                    ok &= expect(out, tag + " reduceScatterSum", Arrays.equals(download(b, data.length, stream), data));
                    poison(b, data.length);
                    c.allGather(b, a, n, t);
                    ok &= expect(out, tag + " allGather", Arrays.equals(download(b, data.length, stream), data));
                    c.broadcast(a, n, t, 0);
                    ok &= expect(out, tag + " broadcast", Arrays.equals(download(a, data.length, stream), data));
                }
            }
        } finally {
            cudaFree(new Raw(a));
            cudaFree(new Raw(b));
            cudaStreamDestroy(stream);
        }
        out.println(ok ? "nccl self-check ok" : "nccl self-check FAILED");
        return ok;
    }

    private static boolean expect(PrintStream out, String what, boolean ok) {
        out.println((ok ? "  ok    " : "  FAIL  ") + what);
        return ok;
    }

    private static long malloc(long bytes) {
        Pointer p = new Pointer();
        cuda(cudaMalloc(p, bytes), "cudaMalloc(" + bytes + ")");
        return p.address();
    }

    private static void upload(long dst, byte[] data) {
        try (BytePointer h = new BytePointer(data)) {
            cuda(cudaMemcpy(new Raw(dst), h, data.length, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
        }
    }

    private static void poison(long dst, int bytes) {
        byte[] ff = new byte[bytes];
        Arrays.fill(ff, (byte) 0xFF);
        upload(dst, ff);
    }

    private static byte[] download(long src, int bytes, CUstream_st stream) {
        cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
        try (BytePointer h = new BytePointer(bytes)) {
            cuda(cudaMemcpy(h, new Raw(src), bytes, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
            byte[] out = new byte[bytes];
            h.get(out);
            return out;
        }
    }

    private static void cuda(int rc, String call) {
        if (rc != 0) {
            BytePointer msg = cudaGetErrorString(rc);
            throw new ParallelException(call + " failed: CUDA error " + rc + " (" + (msg == null ? "?" : msg.getString()) + ")");
        }
    }

    private static final class Raw extends Pointer {
        Raw(long address) { this.address = address; }
    }
}
