package dev.midtrain.parallel;

import java.io.IOException;
import java.io.InputStream;
import java.util.Map;

/**
 * A process started by `midtrain launch` watches its launcher: the launcher keeps the write end of the process's
 * stdin pipe open and never writes to it, so end of file on stdin means the launcher is gone (SIGKILLed, OOM-killed,
 * its node's agent lost). The process then stops at once instead of training on as an orphan with nowhere to print:
 * in a multi-process world it first reports the loss through the {@link TcpWorld} (every other process, on every
 * node, fails fast with that line instead of waiting out --dist-timeout), then halts with status 1.
 */
public final class LauncherWatch {
    /** Set by `midtrain launch` in each process's environment: the launcher's pid. */
    public static final String ENV = "MIDTRAIN_LAUNCHER_PID";

    private static volatile TcpWorld world;
    private static volatile boolean started;

    private LauncherWatch() {}

    /** Starts the watch when this process was started by `midtrain launch` ({@link #ENV} set); else does nothing. */
    public static void startIfLaunched(Map<String, String> env, InputStream stdin) {
        String pid = env.get(ENV);
        if (pid == null || started) return;
        started = true;
        Thread t = new Thread(() -> {
            try {
                byte[] sink = new byte[256];
                while (stdin.read(sink) >= 0) { /* the launcher writes nothing; ignore whatever comes */ }
            } catch (IOException ignored) {
                // a broken pipe is the same news as end of file
            }
            lost("its launcher (midtrain launch, pid " + pid + ") is gone (killed?): stopping instead of training on as an orphan");
        }, "launcher-watch");
        t.setDaemon(true);
        t.start();
    }

    /** The multi-process world of this process, told when the launcher is lost (null: none or closed). */
    static void attach(TcpWorld w) { world = w; }

    private static void lost(String what) {
        TcpWorld w = world;
        String reason = (w != null ? "process " + w.env().procIndex() + " (host " + TcpWorld.hostName() + ")" : "this process") + ": " + what;
        System.err.println("midtrain: " + reason);
        System.err.flush();
        if (w != null) {
            try {
                w.report(reason);              // every process is told before this one goes
            } catch (RuntimeException ignored) {
                // the halt below still ends this process; the others see its connections close
            }
        }
        Runtime.getRuntime().halt(1);
    }
}
