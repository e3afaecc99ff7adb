package dev.midtrain.bench;

import dev.midtrain.common.UserError;

import dev.midtrain.kernels.Backend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.concurrent.Callable;

/** `midtrain bench kernels --backend cpu|cuda`: kernel timings as GB/s or TFLOP/s against measured ceilings. */
@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks.",
        subcommands = {BenchCommand.Kernels.class})
public final class BenchCommand implements Callable<Integer> {
    @Override
    public Integer call() {
        throw new UserError("bench: name a benchmark, e.g. 'midtrain bench kernels --backend cpu'");
    }

    @Command(name = "kernels", mixinStandardHelpOptions = true,
            description = "Time every kernel (CUDA events on GPU, median after warm-up) and the GEMM/copy ceilings.")
    public static final class Kernels implements Callable<Integer> {
        @Option(names = "--backend", defaultValue = "cpu", description = "cpu or cuda (default: ${DEFAULT-VALUE})") String backend;

        @Override
        public Integer call() {
            if (!backend.equals("cpu") && !backend.equals("cuda")) throw new UserError("--backend: must be cpu or cuda, got " + backend);
            if (backend.equals("cuda")) Backend.open(backend, 0).close();   // no usable GPU: one line on stderr, exit 1
            return KernelBench.run(backend, System.out);
        }
    }
}
