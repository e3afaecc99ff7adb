package dev.midtrain.parallel;

import java.security.SecureRandom;
import java.time.Duration;
import java.util.HexFormat;

/**
 * A process of the multi-JVM rendezvous test: `RendezvousProbe procIndex nprocs localRanks port timeoutMs`.
 * Process 0 makes a random id (no NCCL needed). Prints "ID hex" (exit 0) or "ERROR message" (exit 1).
 */
public final class RendezvousProbe {
    public static void main(String[] args) {
        int proc = Integer.parseInt(args[0]), n = Integer.parseInt(args[1]), local = Integer.parseInt(args[2]);
        int port = Integer.parseInt(args[3]);
        Duration timeout = Duration.ofMillis(Long.parseLong(args[4]));
        LaunchEnv env = new LaunchEnv(LaunchEnv.Source.FLAGS, n, proc, local, 0, "127.0.0.1", port);
        try {
            byte[] id = Rendezvous.exchange(env, () -> {
                byte[] b = new byte[Rendezvous.ID_BYTES];
                new SecureRandom().nextBytes(b);
                return b;
            }, timeout);
            System.out.println("ID " + HexFormat.of().formatHex(id));
            System.exit(0);
        } catch (ParallelException e) {
            System.out.println("ERROR " + e.getMessage());
            System.exit(1);
        }
    }
}
