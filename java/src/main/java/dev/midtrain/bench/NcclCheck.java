package dev.midtrain.bench;

import dev.midtrain.kernels.CudaBackend;
import org.bytedeco.cuda.nccl.ncclComm;
import org.bytedeco.cuda.nccl.ncclUniqueId;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Loader;

import java.io.PrintStream;

import static org.bytedeco.cuda.global.nccl.*;

/**
 * Single-rank NCCL check on one GPU, through the org.bytedeco presets: ncclGetUniqueId, ncclCommInitRank (world 1),
 * then ncclAllReduce (fp32 sum, bf16 avg) and ncclReduceScatter (fp32 sum) on device buffers, enqueued on the
 * backend's stream. With one rank every result must equal its input bit for bit.
 */
final class NcclCheck {
    private NcclCheck() {}

    /** Prints one row; returns 0 when every check passed. */
    static int run(CudaBackend be, PrintStream out) {
        String row = String.format("%-22s %-34s %-8s ", "nccl", "world=1 n=1000003", "-");
        try {
            Loader.load(org.bytedeco.cuda.global.nccl.class);
        } catch (Throwable t) {
            out.println(row + "FAIL: libnccl.so.2 not loadable (set LD_LIBRARY_PATH to site-packages/nvidia/nccl/lib): "
                    + t.getClass().getSimpleName() + ": " + firstLine(t.getMessage()));
            return 1;
        }
        int n = 1_000_003;
        long send = 0, recv = 0, sendX = 0, recvX = 0;
        ncclComm comm = new ncclComm();
        boolean commOk = false;
        try {
            int[] ver = {0};
            ck(ncclGetVersion(ver), "ncclGetVersion");
            ncclUniqueId id = new ncclUniqueId();
            ck(ncclGetUniqueId(id), "ncclGetUniqueId");
            ck(ncclCommInitRank(comm, 1, id, 0), "ncclCommInitRank");
            commOk = true;

            float[] x = GpuValidate.gauss(77, n, 1);
            float[] xr = GpuValidate.roundBf16(x);
            send = be.alloc(4L * n); recv = be.alloc(4L * n); sendX = be.alloc(2L * n); recvX = be.alloc(2L * n);
            be.upload(send, x);
            be.uploadX(sendX, xr);
            be.fillF32(recv, Float.NaN, n);
            be.fillX(recvX, Float.NaN, n);

            ck(ncclAllReduce(CudaBackend.raw(send), CudaBackend.raw(recv), n, ncclFloat32, ncclSum, comm, be.stream()), "ncclAllReduce(f32)");
            float[] got = new float[n];
            be.download(got, recv);                                     // synchronises the stream
            int bad1 = mismatches(got, x);

            ck(ncclAllReduce(CudaBackend.raw(sendX), CudaBackend.raw(recvX), n, ncclBfloat16, ncclAvg, comm, be.stream()), "ncclAllReduce(bf16)");
            be.downloadX(got, recvX);
            int bad2 = mismatches(got, xr);

            be.fillF32(recv, Float.NaN, n);
            ck(ncclReduceScatter(CudaBackend.raw(send), CudaBackend.raw(recv), n, ncclFloat32, ncclSum, comm, be.stream()), "ncclReduceScatter");
            be.download(got, recv);
            int bad3 = mismatches(got, x);

            boolean ok = bad1 == 0 && bad2 == 0 && bad3 == 0;
            out.println(row + String.format("NCCL %d: allreduce f32 %d bad, allreduce bf16 avg %d bad, reducescatter %d bad  %s",
                    ver[0], bad1, bad2, bad3, ok ? "ok" : "FAIL"));
            return ok ? 0 : 1;
        } catch (RuntimeException e) {
            out.println(row + "FAIL: " + e.getMessage());
            return 1;
        } finally {
            if (commOk) ncclCommDestroy(comm);
            for (long p : new long[] {send, recv, sendX, recvX}) if (p != 0) be.free(p);
        }
    }

    private static int mismatches(float[] got, float[] want) {
        int bad = 0;
        for (int i = 0; i < want.length; i++) if (Float.floatToRawIntBits(got[i]) != Float.floatToRawIntBits(want[i])) bad++;
        return bad;
    }

    private static void ck(int rc, String what) {
        if (rc != ncclSuccess) {
            BytePointer s = ncclGetErrorString(rc);
            throw new RuntimeException(what + " failed: " + (s == null || s.isNull() ? "status " + rc : s.getString()));
        }
    }

    private static String firstLine(String s) {
        if (s == null) return "";
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}
