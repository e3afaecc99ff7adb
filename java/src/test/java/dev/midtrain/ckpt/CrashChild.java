package dev.midtrain.ckpt;

import dev.midtrain.train.GracefulStop;
import dev.midtrain.config.CheckpointConfig;

import java.nio.file.Path;

/**
 * A child JVM for the fault tests (see CheckpointFaultTest): prints progress lines the parent waits for.
 * <pre>
 * kill-mid-save RUN    commit step 1, then save step 2 slowly (property midtrain.ckpt.testSlowWriteMillis),
 *                      printing "WRITING name" before each file; the parent SIGKILLs it at a chosen file
 * sigterm RUN          a training-shaped loop (steps of 20 ms, async checkpoint every 3 steps) with GracefulStop:
 *                      on SIGTERM/SIGINT finish the step, save it, print "STOPPED n" and exit 0
 * </pre>
 */
public final class CrashChild {
    public static void main(String[] args) throws Exception {
        Path run = Path.of(args[1]);
        switch (args[0]) {
            case "kill-mid-save" -> {
                StepDirectories s = StepDirectories.forRun(run);
                s.save(CkptFixtures.state(1, 2), CkptFixtures.ranks(1, 2), 3, 0);
                System.out.println("COMMITTED 1");
                System.setProperty(StepDirectories.SLOW_WRITE_PROPERTY, "400");
                s.setHook(name -> { System.out.println("WRITING " + name); System.out.flush(); });
                s.save(CkptFixtures.state(2, 2), CkptFixtures.ranks(2, 2), 3, 0);
                System.out.println("COMMITTED 2");
                Thread.sleep(60_000);   // the parent should have killed us long before
            }
            case "sigterm" -> {
                GracefulStop stop = GracefulStop.install();
                StepDirectories s = StepDirectories.forRun(run);
                AsyncSaver c = new AsyncSaver(s, new CheckpointConfig(3, 10, 0, true, 0));
                long step = 0, lastSaved = -1;
                while (true) {
                    Thread.sleep(20);   // "compute"
                    step++;
                    final long st = step;
                    boolean stopping = stop.requested();   // read once: a signal between two reads would stop without the save
                    if (c.due(step) || stopping) {
                        c.save(CkptFixtures.state(step, 1), CkptFixtures.layouts(1), (l, p, m, v) -> CkptFixtures.fill(st, l, p, m, v));
                        lastSaved = step;
                    }
                    System.out.println("STEP " + step);
                    System.out.flush();
                    if (stopping) break;
                }
                c.close();   // waits for the last save
                System.out.println("STOPPED " + lastSaved + " " + stop.reason());
            }
            default -> throw new IllegalArgumentException(args[0]);
        }
    }
}
