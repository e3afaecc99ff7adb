package dev.midtrain.cli;

import java.nio.file.Path;

/** Package-private pieces of dev.midtrain.train for the cli tests. */
final class TestAccessTrain {
    private TestAccessTrain() {}

    static double[] cpuTable(int threads, Path cpuinfo, Path maxFreq) { return dev.midtrain.train.PeakFlops.cpuTable(threads, cpuinfo, maxFreq); }
    static dev.midtrain.train.PeakFlops.Peak choosePeak(double measured, double[] table, int threads) { return dev.midtrain.train.PeakFlops.choose(measured, table, threads); }
}
