package dev.midtrain.parallel;

import dev.midtrain.common.UserError;
import dev.midtrain.parallel.LaunchEnv.Flags;
import dev.midtrain.parallel.LaunchEnv.Source;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

class LaunchEnvTest {

    @Test
    void singleProcessRunsTheWholeWorld() {
        LaunchEnv e = LaunchEnv.resolve(Flags.none(), Map.of("HOME", "/root"), 8);
        assertEquals(new LaunchEnv(Source.SINGLE, 1, 0, 8, 0, null, LaunchEnv.DEFAULT_PORT), e);
        assertFalse(e.multiProcess());
    }

    @Test
    void flagsOneJvmPerNode() {
        LaunchEnv e = LaunchEnv.resolve(new Flags(4, 2, "n01", 12345), Map.of("WORLD_SIZE", "99"), 32);
        assertEquals(new LaunchEnv(Source.FLAGS, 4, 2, 8, 0, "n01", 12345), e);
        assertEquals(16, e.firstRank());
        assertEquals(32, e.worldSize());
        assertEquals(LaunchEnv.DEFAULT_PORT, LaunchEnv.resolve(new Flags(2, 1, "h", null), Map.of(), 16).masterPort());
    }

    @Test
    void localProcessesShareTheNodesCores() {
        Map<String, String> torchrun = Map.of("WORLD_SIZE", "8", "RANK", "5", "LOCAL_RANK", "1", "LOCAL_WORLD_SIZE", "4", "MASTER_ADDR", "h");
        assertEquals(4, LaunchEnv.resolve(Flags.none(), torchrun, 8).localProcesses(torchrun));
        Map<String, String> slurm = Map.of("SLURM_PROCID", "3", "SLURM_NTASKS", "8", "SLURM_LOCALID", "1", "SLURM_TASKS_PER_NODE", "2(x4)", "MASTER_ADDR", "h");
        assertEquals(2, LaunchEnv.resolve(Flags.none(), slurm, 8).localProcesses(slurm));
        assertEquals(1, LaunchEnv.resolve(new Flags(2, 1, "h", null), torchrun, 8).localProcesses(torchrun), "flags: one process per node");
        assertEquals(1, LaunchEnv.resolve(Flags.none(), Map.of(), 8).localProcesses(Map.of()));
    }

    @Test
    void flagErrorsNameTheFlag() {
        assertMsg("--node-rank: required", () -> LaunchEnv.resolve(new Flags(2, null, "h", null), Map.of(), 16));
        assertMsg("--master-addr: required", () -> LaunchEnv.resolve(new Flags(2, 1, null, null), Map.of(), 16));
        assertMsg("--node-rank: must be in [0, 2)", () -> LaunchEnv.resolve(new Flags(2, 2, "h", null), Map.of(), 16));
        assertMsg("--master-port: must be a TCP port", () -> LaunchEnv.resolve(new Flags(2, 1, "h", 70000), Map.of(), 16));
        assertMsg("does not split over 3 processes", () -> LaunchEnv.resolve(new Flags(3, 1, "h", null), Map.of(), 16));
        assertMsg("--nnodes: must be >= 1", () -> LaunchEnv.resolve(new Flags(0, null, null, null), Map.of(), 1));
    }

    @Test
    void torchrunOneJvmPerGpu() {
        Map<String, String> env = Map.of("WORLD_SIZE", "16", "RANK", "11", "LOCAL_RANK", "3", "LOCAL_WORLD_SIZE", "8",
                "MASTER_ADDR", "10.0.0.1", "MASTER_PORT", "29400");
        LaunchEnv e = LaunchEnv.resolve(Flags.none(), env, 16);
        assertEquals(new LaunchEnv(Source.TORCHRUN, 16, 11, 1, 3, "10.0.0.1", 29400), e);
        // torchrun's agent holds MASTER_PORT (its TCPStore): midtrain's rendezvous takes the next port
        assertEquals(29401, e.storePort());
        assertEquals(29400, LaunchEnv.resolve(new Flags(2, 1, "h", 29400), Map.of(), 16).storePort(), "flags: the port as given");
        UserError top = assertThrows(UserError.class, () -> LaunchEnv.resolve(Flags.none(),
                Map.of("WORLD_SIZE", "2", "RANK", "0", "MASTER_ADDR", "h", "MASTER_PORT", "65535"), 2));
        assertTrue(top.getMessage().startsWith("MASTER_PORT + 1"), top.getMessage());
    }

    @Test
    void torchrunOneJvmPerNode() {
        Map<String, String> env = Map.of("WORLD_SIZE", "2", "RANK", "1", "MASTER_ADDR", "head");
        LaunchEnv e = LaunchEnv.resolve(Flags.none(), env, 16);
        assertEquals(new LaunchEnv(Source.TORCHRUN, 2, 1, 8, 0, "head", LaunchEnv.DEFAULT_PORT), e);
        assertEquals(8, e.firstRank());
    }

    @Test
    void torchrunErrorsNameTheVariable() {
        assertMsg("MASTER_ADDR: required", () -> LaunchEnv.resolve(Flags.none(), Map.of("WORLD_SIZE", "2", "RANK", "0"), 2));
        assertMsg("RANK: required", () -> LaunchEnv.resolve(Flags.none(), Map.of("WORLD_SIZE", "2", "MASTER_ADDR", "h"), 2));
        assertMsg("RANK: must be in [0, 2)", () -> LaunchEnv.resolve(Flags.none(), Map.of("WORLD_SIZE", "2", "RANK", "2", "MASTER_ADDR", "h"), 2));
        assertMsg("WORLD_SIZE: not an integer: 'two'", () -> LaunchEnv.resolve(Flags.none(), Map.of("WORLD_SIZE", "two"), 2));
        assertMsg("MASTER_PORT: not an integer", () -> LaunchEnv.resolve(Flags.none(),
                Map.of("WORLD_SIZE", "2", "RANK", "1", "MASTER_ADDR", "h", "MASTER_PORT", "x"), 2));
    }

    @Test
    void slurmOneTaskPerNode() {
        Map<String, String> env = Map.of("SLURM_JOB_ID", "4242", "SLURM_NTASKS", "4", "SLURM_NNODES", "4", "SLURM_PROCID", "3",
                "SLURM_NODEID", "3", "SLURM_LOCALID", "0", "SLURM_JOB_NODELIST", "gpu-a[07-09,12]");
        LaunchEnv e = LaunchEnv.resolve(Flags.none(), env, 32);
        assertEquals(new LaunchEnv(Source.SLURM, 4, 3, 8, 0, "gpu-a07", 20000 + 4242), e);
        assertEquals(24, e.firstRank());
    }

    @Test
    void slurmMasterAddrAndPortOverrideAndTaskPerGpu() {
        Map<String, String> env = Map.of("SLURM_NTASKS", "16", "SLURM_PROCID", "9", "SLURM_LOCALID", "1",
                "SLURM_JOB_NODELIST", "n[1-2]", "MASTER_ADDR", "ib-n1", "MASTER_PORT", "6000");
        assertEquals(new LaunchEnv(Source.SLURM, 16, 9, 1, 1, "ib-n1", 6000), LaunchEnv.resolve(Flags.none(), env, 16));
    }

    @Test
    void slurmErrors() {
        assertMsg("SLURM_JOB_NODELIST: not set", () -> LaunchEnv.resolve(Flags.none(), Map.of("SLURM_NTASKS", "2", "SLURM_PROCID", "1"), 2));
        assertMsg("SLURM_JOB_NODELIST: bad range", () -> LaunchEnv.resolve(Flags.none(),
                Map.of("SLURM_NTASKS", "2", "SLURM_PROCID", "1", "SLURM_JOB_NODELIST", "n[a-b]"), 2));
        assertMsg("SLURM_PROCID: must be in [0, 2)", () -> LaunchEnv.resolve(Flags.none(),
                Map.of("SLURM_NTASKS", "2", "SLURM_PROCID", "5", "SLURM_JOB_NODELIST", "n1"), 2));
        // no SLURM_NTASKS: fall back to nodes
        assertEquals(2, LaunchEnv.resolve(Flags.none(), Map.of("SLURM_NNODES", "2", "SLURM_PROCID", "1", "SLURM_NODELIST", "a,b"), 16).nprocs());
    }

    @Test
    void hostlistExpansion() {
        assertEquals(List.of("node01", "node02", "node03", "node04", "node07"), LaunchEnv.expandHostlist("node[01-04,07]"));
        assertEquals("node01", LaunchEnv.firstHost("node[01-04,07]"));
        assertEquals(List.of("r1n3", "r1n5", "r2n3", "r2n5", "login"), LaunchEnv.expandHostlist("r[1-2]n[3,5],login"));
        assertEquals(List.of("gpu098", "gpu099", "gpu100"), LaunchEnv.expandHostlist("gpu[098-100]"));
        assertEquals("single-host.example.org", LaunchEnv.firstHost(" single-host.example.org "));
        for (String bad : new String[]{"", "n[1-2", "n1-2]", "n[2-1]", "n[]", "a,,b", "n[1-]"})
            assertThrows(IllegalArgumentException.class, () -> LaunchEnv.expandHostlist(bad), bad);
    }

    private static void assertMsg(String part, org.junit.jupiter.api.function.Executable ex) {
        UserError e = assertThrows(UserError.class, ex);
        assertTrue(e.getMessage().contains(part), e.getMessage());
        assertEquals(2, e.exitCode());
    }
}
