package dev.midtrain.bench;

import dev.midtrain.cli.Cli;
import dev.midtrain.kernels.CudaBackend;
import dev.midtrain.kernels.KernelException;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The CPU side of the GPU validation and benchmark, run in CI (no GPU there): the validation harness against a
 * second CPU backend (every kernel, every shape, NaN poisoning, tolerances and the determinism re-run all exercised),
 * `midtrain bench kernels --backend cpu`, and the one-line error of `--backend cuda` where no GPU is usable.
 */
class CpuValidationHarnessTest {

    @Test
    void validationHarnessPassesAgainstTheCpuImplementation() throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        int rc = GpuValidate.run(new String[]{"--against", "cpu"}, new PrintStream(buf, true, StandardCharsets.UTF_8));
        String out = buf.toString(StandardCharsets.UTF_8);
        assertEquals(0, rc, out);
        for (String kernel : List.of("embedding_forward", "embedding_backward", "rmsnorm_forward", "rmsnorm_backward", "rope_forward",
                "rope_backward", "attention_forward", "attention_backward", "swiglu_forward", "swiglu_backward", "add",
                "crossentropy_forward", "crossentropy_backward", "lse_combine", "adamw_update", "global_norm_squared", "gemm_x",
                "linear_forward", "kvcache_attention_forward"))
            assertTrue(out.contains(kernel + " "), "harness output lacks " + kernel);
        assertTrue(out.matches("(?s).*GpuValidate: \\d+ passed, 0 failed.*"), out);
        Set<String> cased = new TreeSet<>();                  // result rows: kernel, shape, output, rel_l2 (1.23e-04), ...
        Matcher row = Pattern.compile("(?m)^(\\w+) .* -?\\d\\.\\d\\de[+-]\\d\\d .*\\bok$").matcher(out);
        while (row.find()) cased.add(row.group(1));
        everyHeaderFunctionHasACaseOrAStatedExemption(cased);
    }

    /**
     * Every function of the kernel header has a CPU-vs-CUDA case in GpuValidate or a stated reason in
     * {@link GpuValidate#NOT_COMPARED}; every case names a header function (or the backend GEMM), and no exempted
     * function also has cases. {@code cased}: the kernels of the harness's result rows.
     */
    private static void everyHeaderFunctionHasACaseOrAStatedExemption(Set<String> cased) throws IOException {
        Set<String> header = new TreeSet<>();
        Matcher m = Pattern.compile("int\\s+MT_FN\\((\\w+)\\)\\s*\\(").matcher(Files.readString(Path.of("native/include/midtrain_kernels.h")));
        while (m.find()) header.add(m.group(1));
        assertTrue(header.size() > 20, "functions parsed from the header: " + header);
        Set<String> missing = new TreeSet<>(header);
        missing.removeAll(cased);
        missing.removeAll(GpuValidate.NOT_COMPARED.keySet());
        assertEquals(Set.of(), missing, "header functions without a GpuValidate case or a NOT_COMPARED reason");
        Set<String> unknown = new TreeSet<>(cased);
        unknown.removeAll(header);
        assertEquals(Set.of("gemm_f32acc", "gemm_x"), unknown, "GpuValidate cases that are neither a header function nor Backend.gemm");
        assertTrue(header.containsAll(GpuValidate.NOT_COMPARED.keySet()), "NOT_COMPARED lists a function the header lacks: " + GpuValidate.NOT_COMPARED.keySet());
        for (String f : GpuValidate.NOT_COMPARED.keySet()) assertTrue(!cased.contains(f), f + " is exempted but has cases");
    }

    @Test
    void benchKernelsCpuPrintsEveryKernel() {
        Cli.Run r = Cli.run("bench", "kernels", "--backend", "cpu");
        String out = r.out();
        assertEquals(0, r.code(), out + r.err());
        for (String row : List.of("| ceiling: copy", "| ceiling: gemm", "| rmsnorm_forward", "| attention_forward", "| attention_backward",
                "| crossentropy_forward", "| adamw_update", "| global_norm_squared"))
            assertTrue(out.contains(row), "bench output lacks " + row + ":\n" + out);
    }

    @Test
    void cudaWithoutAGpuIsAOneLineErrorNotAFallback() {
        try (CudaBackend be = CudaBackend.open(0)) {
            System.err.println("SKIPPED cudaWithoutAGpuIsAOneLineErrorNotAFallback: a GPU is usable here (" + be.deviceName() + ")");
            return;
        } catch (KernelException expected) {
            // the machine has no usable GPU: the CLI must say so in one line and exit non-zero
        }
        for (String[] args : List.of(new String[]{"bench", "kernels", "--backend", "cuda"},
                new String[]{"train", "--config", "configs/tiny.yaml", "--synthetic-data", "--backend", "cuda",
                        "--run-dir", "target/cuda-refused-run"})) {
            Cli.Run r = Cli.run(args);
            String e = r.err().strip(), cmd = String.join(" ", args);
            assertTrue(r.code() != 0, cmd + " without a GPU must fail");
            assertEquals(1, e.lines().count(), cmd + ": expected one line on stderr, got:\n" + e);
            assertTrue(e.contains("cuda"), cmd + ": " + e);
            assertTrue(!r.out().contains("step "), cmd + " must not train on another backend");
        }
        assertTrue(!java.nio.file.Files.exists(java.nio.file.Path.of("target/cuda-refused-run")), "no run directory for a refused run");
    }
}
