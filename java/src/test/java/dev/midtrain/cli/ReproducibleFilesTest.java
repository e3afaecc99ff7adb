package dev.midtrain.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.midtrain.ckpt.StepDirectories;
import dev.midtrain.ckpt.DType;
import dev.midtrain.kernels.HostFloats;
import dev.midtrain.ckpt.Safetensors;
import dev.midtrain.ckpt.TestAccess;
import dev.midtrain.config.ModelConfig;
import dev.midtrain.kernels.CpuBackend;
import dev.midtrain.train.PeakFlops;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static dev.midtrain.cli.Cli.run;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Issue 19 item 7: reproducible checkpoint bytes, an MFU peak that a busy machine cannot lower, a failed --init-from leaves nothing. */
class ReproducibleFilesTest {
    @TempDir Path tmp;
    static final ObjectMapper JSON = new ObjectMapper();

    /** The header does not depend on the metadata map's iteration order (Map.of's differs between JVMs). */
    @Test
    void safetensorsMetadataIsWrittenInAFixedOrder() {
        HostFloats v = HostFloats.wrap(new float[]{1, 2, 3, 4, 5, 6});
        List<Safetensors.OutTensor> t = List.of(Safetensors.OutTensor.of("w", DType.F32, new long[]{2, 3}, v, 0));
        Map<String, String> a = new LinkedHashMap<>(), b = new LinkedHashMap<>();
        String[] keys = {"format", "midtrain_content", "midtrain_tp_rank", "midtrain_dp_size", "midtrain_window"};
        for (String k : keys) a.put(k, k + "-value");
        for (int i = keys.length - 1; i >= 0; i--) b.put(keys[i], keys[i] + "-value");
        assertNotEquals(List.copyOf(a.keySet()), List.copyOf(b.keySet()));
        assertArrayEquals(Safetensors.header(t, a), Safetensors.header(t, b));
    }

    /** Two identical runs: the same SHA-256 for every checkpoint file holding tensors (as docs/checkpoints.md promises). */
    @Test
    void twoIdenticalRunsWriteIdenticalSafetensors() throws Exception {
        Path cfg = tmp.resolve("c.yaml");
        Files.writeString(cfg, TrainCommandTest.CONFIG.replace("steps: 6", "steps: 2"));
        Map<String, String> first = null;
        for (String name : List.of("a", "b")) {
            StringBuilder s = new StringBuilder();
            Path r = tmp.resolve(name);
            assertEquals(0, run(s, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", r.toString()), s.toString());
            JsonNode files = JSON.readTree(StepDirectories.forRun(r).stepDir(2).resolve(StepDirectories.MANIFEST).toFile()).get("files");
            Map<String, String> hashes = new java.util.TreeMap<>();
            files.fields().forEachRemaining(e -> {
                if (e.getKey().endsWith(".safetensors")) hashes.put(e.getKey(), e.getValue().isTextual() ? e.getValue().asText() : e.getValue().path("sha256").asText());
            });
            assertFalse(hashes.isEmpty(), files.toString());
            if (first == null) first = hashes;
            else assertEquals(first, hashes);
        }
    }

    /**
     * The CPU peak comes from the table (threads x clock x SIMD FLOPs per cycle) and is never below a measured sgemm,
     * so the MFU it divides cannot pass 100% because the machine was busy when measured.
     */
    @Test
    void cpuPeakIsATableValueNeverBelowTheMeasuredGemm() throws Exception {
        Path info = tmp.resolve("cpuinfo");
        Files.writeString(info, "processor\t: 0\ncpu MHz\t\t: 2596.132\nflags\t\t: fpu sse avx2 fma avx512f\n"
                + "processor\t: 1\ncpu MHz\t\t: 2400.000\nflags\t\t: fpu sse avx2 fma avx512f\n");
        double[] t = TestAccessTrain.cpuTable(2, info, tmp.resolve("none"));
        assertEquals(2 * 2596.132e6 * 64, t[0], 1e-3);
        Files.writeString(info, "cpu MHz\t\t: 3000\nflags\t\t: fpu sse avx2 fma\n");
        Path max = tmp.resolve("max_freq");
        Files.writeString(max, "3500000\n");                             // kHz: cpufreq's max wins over cpu MHz
        assertEquals(4 * 3.5e9 * 32, TestAccessTrain.cpuTable(4, info, max)[0], 1e-3);
        // the choice between table and measurement, on given numbers (a second timing here would race the first)
        double[] table = {166e9, 2.6e9, 64};
        assertEquals(166e9, TestAccessTrain.choosePeak(100e9, table, 1).flops());
        assertTrue(TestAccessTrain.choosePeak(100e9, table, 1).source().startsWith("table: 1 threads x 2.60 GHz x 64"));
        assertEquals(200e9, TestAccessTrain.choosePeak(200e9, table, 1).flops(), "a measurement above the table wins");
        assertTrue(TestAccessTrain.choosePeak(200e9, table, 1).source().startsWith("measured sgemm"));
        assertEquals(50e9, TestAccessTrain.choosePeak(50e9, new double[]{Double.NaN, Double.NaN, Double.NaN}, 1).flops());
        try (CpuBackend be = new CpuBackend()) {
            PeakFlops.Peak p = PeakFlops.cpu(be, 1);
            assertTrue(p.flops() > 0 && Double.isFinite(p.flops()), p.toString());
            assertTrue(p.source().startsWith("table") || p.source().startsWith("measured"), p.source());
        }
        assertEquals(989e12, PeakFlops.gpuTable("NVIDIA H100 80GB HBM3"));
        assertEquals(989e12, PeakFlops.gpuTable("NVIDIA H200"));
        assertTrue(Double.isNaN(PeakFlops.gpuTable("Some Future GPU")));
    }

    /** A --init-from whose tensor data is bad (a NaN past the headers) fails and leaves no run directory; the retry works. */
    @Test
    void failedInitFromLeavesNoRunDirectory() throws Exception {
        ModelConfig m = new ModelConfig(96, 32, 2, 4, 2, 56, 500000.0, 1e-5, 32, true);
        Path hf = tmp.resolve("hf");
        TestAccess.writeHf(hf, m, DType.F32, 0, 3);
        Path f = hf.resolve("model.safetensors");
        byte[] good = Files.readAllBytes(f), bad = Arrays.copyOf(good, good.length);
        bad[bad.length - 1] = (byte) 0x7f; bad[bad.length - 2] = (byte) 0xc0; bad[bad.length - 3] = 0; bad[bad.length - 4] = 0;
        Files.write(f, bad);
        Path cfg = tmp.resolve("c.yaml"), r = tmp.resolve("run");
        Files.writeString(cfg, TrainCommandTest.CONFIG.replace("steps: 6", "steps: 1"));
        StringBuilder s = new StringBuilder();
        int code = run(s, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", r.toString(), "--init-from", hf.toString());
        assertNotEquals(0, code, s.toString());
        assertTrue(s.toString().contains("non-finite"), s.toString());
        assertFalse(Files.exists(r), "no half-made run directory: " + s);
        Files.write(f, good);
        s.setLength(0);
        assertEquals(0, run(s, "train", "--config", cfg.toString(), "--synthetic-data", "--run-dir", r.toString(), "--init-from", hf.toString()), s.toString());
    }
}
