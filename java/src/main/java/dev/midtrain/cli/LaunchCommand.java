package dev.midtrain.cli;

import dev.midtrain.common.UserError;
import dev.midtrain.parallel.LauncherWatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import sun.misc.Signal;
import sun.misc.SignalHandler;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * `midtrain launch --nproc-per-node N [--nnodes --node-rank --master-addr --master-port] -- train ...`: the Java
 * user's torchrun. Starts this node's N processes (one per GPU: process i of node n is rank n*N + i and uses device
 * LOCAL_RANK = i) with the torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
 * MASTER_PORT), so `midtrain train` resolves its place exactly as under torchrun (docs/parallel.md). Each output line
 * is prefixed with "[rank R]". SIGTERM and SIGINT are forwarded to every process as SIGTERM (the engine treats both
 * as "stop after the agreed step and save"); a second signal kills them. When a process fails the others are sent
 * SIGTERM (SIGKILL after --grace-seconds) and the launcher exits non-zero naming the failed rank; 0 when all succeed.
 * After signalling, the launcher keeps printing the processes' output to its end. Each process's stdin is a pipe
 * from the launcher: if the launcher itself is killed, the processes see end of file and stop ({@link LauncherWatch}).
 */
@Command(name = "launch", mixinStandardHelpOptions = true,
        description = "Start this node's training processes, one per GPU (like torchrun): midtrain launch --nproc-per-node 8 -- train --config ...")
public final class LaunchCommand implements Callable<Integer> {
    @Option(names = "--nproc-per-node", required = true, description = "processes (GPUs) on this node") int nproc;
    @Option(names = "--nnodes", description = "nodes in the run (default 1)") int nnodes = 1;
    @Option(names = "--node-rank", description = "this node's index, 0..nnodes-1 (default 0)") int nodeRank;
    @Option(names = "--master-addr", description = "host of node 0 (default 127.0.0.1)") String masterAddr = "127.0.0.1";
    @Option(names = "--master-port", description = "MASTER_PORT for the processes; midtrain's rendezvous listens on it + 1 (default 29500)")
    int masterPort = 29500;
    @Option(names = "--grace-seconds", description = "after a failure, seconds before the other processes are killed (default 30)")
    int graceSeconds = 30;
    @Parameters(arity = "1..*", paramLabel = "COMMAND", description = "the midtrain command every process runs, after --: train ...")
    List<String> command = new ArrayList<>();

    private final List<Process> procs = new ArrayList<>();
    private final AtomicInteger signals = new AtomicInteger();

    @Override
    public Integer call() throws IOException, InterruptedException {
        if (nproc < 1) throw new UserError("--nproc-per-node: must be >= 1, got " + nproc);
        if (nnodes < 1) throw new UserError("--nnodes: must be >= 1, got " + nnodes);
        if (nodeRank < 0 || nodeRank >= nnodes) throw new UserError("--node-rank: must be in [0, " + nnodes + "), got " + nodeRank);
        if (masterPort < 1 || masterPort > 65534) throw new UserError("--master-port: must be in [1, 65534], got " + masterPort);
        if (graceSeconds < 0) throw new UserError("--grace-seconds: must be >= 0, got " + graceSeconds);
        if (command.isEmpty() || !command.get(0).equals("train"))
            throw new UserError("launch: the command after -- must be 'train ...', got '" + String.join(" ", command) + "'");
        for (String a : command)
            if (a.equals("--nnodes") || a.equals("--node-rank") || a.equals("--master-addr") || a.equals("--master-port"))
                throw new UserError("launch: " + a + " belongs before --, to launch (the processes get the torchrun environment)");

        int world = nnodes * nproc;
        PrintStream out = System.out;
        out.printf("midtrain launch: node %d of %d, ranks %d-%d of %d, master %s:%d%n", nodeRank, nnodes, nodeRank * nproc,
                nodeRank * nproc + nproc - 1, world, masterAddr, masterPort);
        Thread killer = new Thread(() -> { for (Process p : procs) p.destroyForcibly(); });
        Runtime.getRuntime().addShutdownHook(killer);                  // never leave orphans behind
        SignalHandler prevTerm = null, prevInt = null;
        try {
            prevTerm = Signal.handle(new Signal("TERM"), s -> forward("SIGTERM"));
            prevInt = Signal.handle(new Signal("INT"), s -> forward("SIGINT"));
            List<Thread> pumps = new ArrayList<>();
            for (int i = 0; i < nproc; i++) {
                int rank = nodeRank * nproc + i;
                ProcessBuilder pb = new ProcessBuilder(childCommand()).redirectErrorStream(true);
                Map<String, String> env = pb.environment();
                env.put("WORLD_SIZE", Integer.toString(world));
                env.put("RANK", Integer.toString(rank));
                env.put("LOCAL_RANK", Integer.toString(i));
                env.put("LOCAL_WORLD_SIZE", Integer.toString(nproc));
                env.put("GROUP_RANK", Integer.toString(nodeRank));
                env.put("MASTER_ADDR", masterAddr);
                env.put("MASTER_PORT", Integer.toString(masterPort));
                env.put(LauncherWatch.ENV, Long.toString(ProcessHandle.current().pid()));   // stdin stays an open pipe: its EOF = we are gone
                Process p;
                synchronized (procs) {
                    p = pb.start();
                    procs.add(p);
                }
                Thread pump = new Thread(() -> prefix(p, "[rank " + rank + "] ", out), "launch-out-" + rank);
                pump.start();
                pumps.add(pump);
            }
            int failed = -1, code = 0;
            long killAt = Long.MAX_VALUE;
            while (true) {
                boolean alive = false;
                int first = -1;
                for (int i = 0; i < procs.size(); i++) {
                    Process p = procs.get(i);
                    if (p.isAlive()) { alive = true; continue; }
                    // Several processes seen dead in one poll: name the cause, a process killed by a signal (not
                    // our SIGTERM), rather than a peer that exited 1 a moment later because it lost that process.
                    int c = p.exitValue();
                    if (failed < 0 && c != 0 && (first < 0 || (c > 128 && c != 143 && procs.get(first).exitValue() <= 128))) first = i;
                }
                if (first >= 0) {
                    failed = first;
                    code = procs.get(first).exitValue();
                    for (Process q : procs) if (q.isAlive()) signal(q, false);          // SIGTERM the others
                    killAt = System.nanoTime() + graceSeconds * 1_000_000_000L;
                }
                if (!alive) break;
                if (System.nanoTime() > killAt) for (Process q : procs) if (q.isAlive()) signal(q, true);
                Thread.sleep(100);
            }
            for (Thread t : pumps) t.join(30_000);      // every process has exited: their pipes reach end of file
            if (failed >= 0) {
                int rank = nodeRank * nproc + failed;
                out.flush();
                System.err.printf("midtrain launch: rank %d (pid %d) exited with code %d%s; stopped the other processes of this node%n",
                        rank, procs.get(failed).pid(), code, code > 128 ? " (signal " + (code - 128) + ")" : "");
                return code == 2 ? 2 : 1;
            }
            return 0;
        } finally {
            for (Process p : procs) if (p.isAlive()) p.destroyForcibly();
            if (prevTerm != null) Signal.handle(new Signal("TERM"), prevTerm);
            if (prevInt != null) Signal.handle(new Signal("INT"), prevInt);
            try {
                Runtime.getRuntime().removeShutdownHook(killer);
            } catch (IllegalStateException ignored) {
                // the JVM is already shutting down; the hook runs
            }
        }
    }

    /** First signal: SIGTERM to every process (a graceful, agreed stop); second: kill them. */
    private void forward(String name) {
        boolean first = signals.getAndIncrement() == 0;
        System.err.printf("midtrain launch: %s: %s%n", name, first ? "asking every process to stop after the agreed step (SIGTERM)" : "killing the processes");
        synchronized (procs) {
            for (Process p : procs) if (p.isAlive()) signal(p, !first);
        }
    }

    /**
     * SIGTERM (or SIGKILL) to one process through its handle: {@code Process.destroy()} would also close the pipes,
     * and the process's last lines (the stop step, its checkpoint, `done`, a survivor's `lost rank`) would be lost.
     * The pumps read every process's output to its end.
     */
    private static void signal(Process p, boolean kill) {
        if (kill) p.toHandle().destroyForcibly();
        else p.toHandle().destroy();
    }

    /** This JVM's java, JVM options and class path, running dev.midtrain.Main with the command after --. */
    private List<String> childCommand() {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments())
            if (!a.startsWith("-agentlib:jdwp") && !a.startsWith("-javaagent")) cmd.add(a);
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add("dev.midtrain.Main");
        cmd.addAll(command);
        return cmd;
    }

    private static void prefix(Process p, String tag, PrintStream out) {
        try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
            for (String line; (line = r.readLine()) != null; ) {
                synchronized (out) { out.println(tag + line); }
            }
        } catch (IOException ignored) {
            // the process is gone; its exit code tells
        }
    }
}
