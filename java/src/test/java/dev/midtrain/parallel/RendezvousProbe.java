package dev.midtrain.parallel;

import java.security.SecureRandom;
import java.time.Duration;
import java.util.HexFormat;

/**
 * A process of the multi-JVM rendezvous test: `RendezvousProbe procIndex nprocs localRanks port timeoutMs`. It joins
 * the {@link TcpWorld}; process 0's payload is a random 128-byte id (as the NCCL unique id would be; no NCCL needed).
 * Prints "ID hex" of the payload it received (exit 0) or "ERROR message" (exit 1).
 */
public final class RendezvousProbe {
    public static void main(String[] args) {
        int proc = Integer.parseInt(args[0]), n = Integer.parseInt(args[1]), local = Integer.parseInt(args[2]);
        int port = Integer.parseInt(args[3]);
        Duration timeout = Duration.ofMillis(Long.parseLong(args[4]));
        LaunchEnv env = new LaunchEnv(LaunchEnv.Source.FLAGS, n, proc, local, 0, "127.0.0.1", port);
        byte[] id = null;
        if (proc == 0) {
            id = new byte[128];
            new SecureRandom().nextBytes(id);
        }
        try (TcpWorld world = TcpWorld.start(env, id, timeout, false)) {
            System.out.println("ID " + HexFormat.of().formatHex(world.payload()));
        } catch (ParallelException e) {
            System.out.println("ERROR " + e.getMessage());
            System.exit(1);
        }
        System.exit(0);
    }
}
