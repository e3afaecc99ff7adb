package dev.midtrain;

import dev.midtrain.kernels.CpuBackend;
import org.junit.platform.launcher.LauncherSession;
import org.junit.platform.launcher.LauncherSessionListener;

/**
 * Prints, once per test JVM, the processor and the OpenBLAS kernel set the tests run on. Results that are the same
 * computation repeated are bit-exact anywhere, but two different computations of one quantity (another batch layout,
 * another thread count) agree only to rounding, and how closely depends on these kernels: OpenBLAS's AVX2 sgemm
 * kernels (core types Haswell, Zen) give a token row a result that depends on its position in the product, its
 * AVX-512 kernels (SkylakeX, Cooperlake) do not. A failure report must say which ran.
 */
public final class MachineFacts implements LauncherSessionListener {
    private static volatile boolean printed;

    @Override
    public void launcherSessionOpened(LauncherSession session) {
        if (printed) return;
        printed = true;
        String line;
        try {
            line = CpuBackend.describeCpu();
        } catch (Throwable t) {      // the kernels' own tests report a broken native build; do not hide them behind this
            line = "native CPU library not loadable: " + t;
        }
        System.out.println("test machine: " + line);
    }
}
