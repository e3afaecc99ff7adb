package dev.midtrain.parallel;

import dev.midtrain.common.UserError;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Which share of the world this process runs, from command-line flags, torchrun-style or Slurm environment variables
 * (pure parsing: unit-tested with maps of variables).
 *
 * <p>A process (one JVM) runs {@code localRanks} consecutive global ranks as threads, one per GPU, starting at global
 * rank {@code procIndex * localRanks} and at device {@code firstDevice}. The usual shape is one JVM per node running
 * all of its GPUs; one JVM per GPU (torchrun --nproc-per-node 8, or srun --ntasks-per-node 8) also works.
 *
 * <p>Precedence: flags ({@code --nnodes --node-rank --master-addr --master-port}) when any is given; else torchrun
 * variables when WORLD_SIZE is set (WORLD_SIZE processes, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); else Slurm when
 * SLURM_PROCID is set (inside srun: SLURM_NTASKS processes, SLURM_PROCID, SLURM_LOCALID, the master is the first host
 * of SLURM_JOB_NODELIST unless MASTER_ADDR is set); else a single process.
 *
 * @param source      where the values came from (named in errors and in the run's log)
 * @param nprocs      processes in the run
 * @param procIndex   this process, 0..nprocs-1 (process 0 serves the rendezvous)
 * @param localRanks  ranks (threads, GPUs) in this process
 * @param firstDevice CUDA device of this process's first rank
 * @param masterAddr  host of process 0 (null for a single process)
 * @param masterPort  TCP port of the rendezvous on process 0
 */
public record LaunchEnv(Source source, int nprocs, int procIndex, int localRanks, int firstDevice, String masterAddr, int masterPort) {

    public enum Source { SINGLE, FLAGS, TORCHRUN, SLURM }

    public static final int DEFAULT_PORT = 29500;

    /** The launch flags of `midtrain train` (null = not given). */
    public record Flags(Integer nnodes, Integer nodeRank, String masterAddr, Integer masterPort) {
        public static Flags none() { return new Flags(null, null, null, null); }

        boolean any() { return nnodes != null || nodeRank != null || masterAddr != null || masterPort != null; }
    }

    public LaunchEnv {
        if (nprocs < 1 || procIndex < 0 || procIndex >= nprocs || localRanks < 1 || firstDevice < 0)
            throw new IllegalArgumentException("launch: process " + procIndex + " of " + nprocs + ", " + localRanks + " local ranks, device " + firstDevice);
    }

    public int worldSize() { return nprocs * localRanks; }

    /** Global rank of this process's first thread. */
    public int firstRank() { return procIndex * localRanks; }

    public boolean multiProcess() { return nprocs > 1; }

    /**
     * The port process 0's rendezvous (and watchdog) listens on. Under torchrun it is MASTER_PORT + 1: torchrun's
     * agent already holds MASTER_PORT with its own TCPStore (static rendezvous, and c10d when the agent store is
     * shared), so listening there fails with "Address already in use". Flags and Slurm use the port as given.
     */
    public int storePort() { return source == Source.TORCHRUN ? masterPort + 1 : masterPort; }

    /** How {@link #storePort} was chosen, for messages. */
    public String portOrigin() {
        return source == Source.TORCHRUN ? "MASTER_PORT " + masterPort + " + 1; torchrun holds MASTER_PORT itself" : source + " port";
    }

    /**
     * Resolves the launch of a world of {@code worldSize} = tp x dp ranks.
     *
     * @throws UserError naming the flag or variable at fault
     */
    public static LaunchEnv resolve(Flags flags, Map<String, String> env, int worldSize) {
        if (worldSize < 1) throw new IllegalArgumentException("world size " + worldSize);
        if (flags.any()) {
            int nnodes = flags.nnodes() == null ? 1 : flags.nnodes();
            if (nnodes < 1) throw new UserError("--nnodes: must be >= 1, got " + nnodes);
            int node = flags.nodeRank() == null ? 0 : flags.nodeRank();
            if (nnodes > 1 && flags.nodeRank() == null) throw new UserError("--node-rank: required with --nnodes " + nnodes);
            if (node < 0 || node >= nnodes) throw new UserError("--node-rank: must be in [0, " + nnodes + "), got " + node);
            if (nnodes > 1 && (flags.masterAddr() == null || flags.masterAddr().isBlank()))
                throw new UserError("--master-addr: required with --nnodes " + nnodes + " (the host of node 0)");
            int port = flags.masterPort() == null ? DEFAULT_PORT : flags.masterPort();
            checkPort(port, "--master-port");
            return make(Source.FLAGS, nnodes, node, 0, worldSize, flags.masterAddr(), port, "--nnodes");
        }
        if (env.containsKey("WORLD_SIZE")) {
            int n = intVar(env, "WORLD_SIZE", null), r = intVar(env, "RANK", n > 1 ? null : 0);
            if (n < 1) throw new UserError("WORLD_SIZE: must be >= 1, got " + n);
            if (r < 0 || r >= n) throw new UserError("RANK: must be in [0, " + n + ") (WORLD_SIZE), got " + r);
            int local = intVar(env, "LOCAL_RANK", 0);
            String addr = env.get("MASTER_ADDR");
            if (n > 1 && (addr == null || addr.isBlank())) throw new UserError("MASTER_ADDR: required when WORLD_SIZE is " + n);
            int port = intVar(env, "MASTER_PORT", DEFAULT_PORT);
            checkPort(port + 1, "MASTER_PORT + 1 (midtrain's rendezvous port under torchrun)");
            return make(Source.TORCHRUN, n, r, local, worldSize, addr, port, "WORLD_SIZE");
        }
        if (env.containsKey("SLURM_PROCID")) {
            String nVar = env.containsKey("SLURM_NTASKS") ? "SLURM_NTASKS" : env.containsKey("SLURM_NPROCS") ? "SLURM_NPROCS" : "SLURM_NNODES";
            int n = intVar(env, nVar, null), r = intVar(env, "SLURM_PROCID", null);
            if (n < 1) throw new UserError(nVar + ": must be >= 1, got " + n);
            if (r < 0 || r >= n) throw new UserError("SLURM_PROCID: must be in [0, " + n + ") (" + nVar + "), got " + r);
            int local = intVar(env, "SLURM_LOCALID", 0);
            String addr = env.get("MASTER_ADDR");
            if (addr == null || addr.isBlank()) {
                String listVar = env.containsKey("SLURM_JOB_NODELIST") ? "SLURM_JOB_NODELIST"
                        : env.containsKey("SLURM_NODELIST") ? "SLURM_NODELIST" : null;
                if (listVar == null) {
                    if (n > 1) throw new UserError("SLURM_JOB_NODELIST: not set and no MASTER_ADDR (cannot find the master host)");
                } else {
                    try {
                        addr = firstHost(env.get(listVar));
                    } catch (IllegalArgumentException e) {
                        throw new UserError(listVar + ": " + e.getMessage());
                    }
                }
            }
            // One job's port: jobs sharing a node must not collide, so the default depends on the job id.
            int defPort = env.containsKey("SLURM_JOB_ID") ? 20000 + (int) (longVar(env, "SLURM_JOB_ID") % 20000) : DEFAULT_PORT;
            int port = intVar(env, "MASTER_PORT", defPort);
            checkPort(port, "MASTER_PORT");
            return make(Source.SLURM, n, r, local, worldSize, addr, port, nVar);
        }
        return new LaunchEnv(Source.SINGLE, 1, 0, worldSize, 0, null, DEFAULT_PORT);
    }

    /**
     * Processes of this run on this node, which share its cores: torchrun's LOCAL_WORLD_SIZE, Slurm's
     * SLURM_NTASKS_PER_NODE (or the first count of SLURM_TASKS_PER_NODE, "4(x2)"); 1 for flags and a single process.
     */
    public int localProcesses(Map<String, String> vars) {
        String v = switch (source) {
            case TORCHRUN -> vars.get("LOCAL_WORLD_SIZE");
            case SLURM -> vars.getOrDefault("SLURM_NTASKS_PER_NODE", vars.get("SLURM_TASKS_PER_NODE"));
            default -> null;
        };
        if (v == null) return 1;
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("^\\s*(\\d+)").matcher(v);
        int n = m.find() ? Integer.parseInt(m.group(1)) : 1;
        return Math.max(1, Math.min(n, nprocs));
    }

    private static LaunchEnv make(Source s, int nprocs, int proc, int localIndex, int worldSize, String addr, int port, String what) {
        if (worldSize % nprocs != 0)
            throw new UserError(what + ": the world of tp x dp = " + worldSize + " ranks does not split over " + nprocs + " processes");
        int local = worldSize / nprocs;
        if (localIndex < 0) throw new UserError("local rank must be >= 0, got " + localIndex);
        return new LaunchEnv(s, nprocs, proc, local, localIndex * local, addr, port);
    }

    private static void checkPort(int port, String what) {
        if (port < 1 || port > 65535) throw new UserError(what + ": must be a TCP port in [1, 65535], got " + port);
    }

    private static int intVar(Map<String, String> env, String name, Integer dflt) {
        String v = env.get(name);
        if (v == null || v.isBlank()) {
            if (dflt == null) throw new UserError(name + ": required but not set");
            return dflt;
        }
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new UserError(name + ": not an integer: '" + v + "'");
        }
    }

    private static long longVar(Map<String, String> env, String name) {
        String v = env.get(name);
        try {
            return Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw new UserError(name + ": not an integer: '" + v + "'");
        }
    }

    // --------------------------------------------------------------------------------------- Slurm host lists

    /** The first host of a Slurm host list ("node[01-04,07],gpu5" -> "node01"). */
    public static String firstHost(String hostlist) {
        return expandHostlist(hostlist, 1).get(0);
    }

    /** Expands a Slurm host list: comma-separated items, each with any number of [a-b,c] groups (zero padding kept). */
    public static List<String> expandHostlist(String hostlist) { return expandHostlist(hostlist, 1_000_000); }

    private static List<String> expandHostlist(String hostlist, int limit) {
        if (hostlist == null || hostlist.isBlank()) throw new IllegalArgumentException("empty host list");
        List<String> out = new ArrayList<>();
        int depth = 0, start = 0;
        String s = hostlist.trim();
        for (int i = 0; i <= s.length() && out.size() < limit; i++) {
            char c = i < s.length() ? s.charAt(i) : ',';
            if (c == '[') depth++;
            else if (c == ']') { if (--depth < 0) throw new IllegalArgumentException("unbalanced ']' in host list '" + s + "'"); }
            else if (c == ',' && depth == 0) {
                String item = s.substring(start, i).trim();
                if (item.isEmpty()) throw new IllegalArgumentException("empty item in host list '" + s + "'");
                expandItem(item, "", out, limit, s);
                start = i + 1;
            }
        }
        if (depth != 0) throw new IllegalArgumentException("unbalanced '[' in host list '" + s + "'");
        return out.size() > limit ? out.subList(0, limit) : out;
    }

    private static void expandItem(String rest, String prefix, List<String> out, int limit, String whole) {
        int open = rest.indexOf('[');
        if (open < 0) { out.add(prefix + rest); return; }
        int close = rest.indexOf(']', open);
        if (close < 0) throw new IllegalArgumentException("unbalanced '[' in host list '" + whole + "'");
        String head = prefix + rest.substring(0, open), tail = rest.substring(close + 1);
        for (String range : rest.substring(open + 1, close).split(",", -1)) {
            String[] ab = range.trim().split("-", -1);
            if (ab.length > 2 || ab[0].isEmpty() || (ab.length == 2 && ab[1].isEmpty()) || !digits(ab[0]) || (ab.length == 2 && !digits(ab[1])))
                throw new IllegalArgumentException("bad range '" + range + "' in host list '" + whole + "'");
            long lo = Long.parseLong(ab[0]), hi = ab.length == 2 ? Long.parseLong(ab[1]) : lo;
            if (hi < lo) throw new IllegalArgumentException("descending range '" + range + "' in host list '" + whole + "'");
            int width = ab[0].length();
            for (long v = lo; v <= hi && out.size() < limit; v++) {
                String num = Long.toString(v);
                while (num.length() < width) num = "0" + num;
                expandItem(tail, head + num, out, limit, whole);
            }
        }
    }

    private static boolean digits(String s) {
        for (int i = 0; i < s.length(); i++) if (!Character.isDigit(s.charAt(i))) return false;
        return !s.isEmpty();
    }
}
