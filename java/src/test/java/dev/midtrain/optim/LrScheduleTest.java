package dev.midtrain.optim;

import dev.midtrain.config.OptimConfig;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The schedule against hand-computed values (exact up to double rounding: tolerance 1e-15 relative). */
class LrScheduleTest {
    private static void near(double expected, double actual) { assertEquals(expected, actual, 1e-15 * Math.abs(expected) + 1e-18); }

    @Test
    void warmupThenLinearDecayToMinAtTheLastStep() {
        LrSchedule s = new LrSchedule(1e-3, 1e-4, 4, 10);
        near(0.25e-3, s.at(1));                                   // torch-style warmup: step 1 already moves
        near(0.50e-3, s.at(2));
        near(0.75e-3, s.at(3));
        near(1e-3, s.at(4));                                      // peak at the end of warmup
        near(1e-3 - 0.9e-3 * 1 / 6, s.at(5));
        near(1e-3 - 0.9e-3 * 3 / 6, s.at(7));
        near(1e-4, s.at(10));                                     // min_lr at the last step
        near(1e-4, s.at(11));                                     // and past it
    }

    @Test
    void noWarmupAndAllWarmup() {
        LrSchedule s = new LrSchedule(2.0, 0.0, 0, 4);
        near(1.5, s.at(1));
        near(0.0, s.at(4));
        LrSchedule w = new LrSchedule(2.0, 0.5, 5, 5);
        near(0.4, w.at(1));
        near(2.0, w.at(5));
        near(2.0, w.at(6));                                       // horizon inside warmup: stays at the peak
    }

    @Test
    void isMonotoneAroundThePeakAndRejectsStepZero() {
        LrSchedule s = new LrSchedule(3e-4, 3e-5, 100, 1000);
        for (int t = 2; t <= 100; t++) assertTrue(s.at(t) > s.at(t - 1));
        for (int t = 101; t <= 1000; t++) assertTrue(s.at(t) < s.at(t - 1));
        assertThrows(IllegalArgumentException.class, () -> s.at(0));
    }

    /** Cosine after warmup: min + (lr - min)(1 + cos(pi p))/2, p = (s - warmup) / (total - warmup), by hand. */
    @Test
    void cosineFollowsTheHalfPeriod() {
        LrSchedule s = new LrSchedule(OptimConfig.Schedule.COSINE, 1e-3, 1e-4, 4, 12, 0);
        near(0.5e-3, s.at(2));                                    // warmup as for linear
        near(1e-3, s.at(4));
        near(1e-4 + 0.9e-3 * (1 + Math.cos(Math.PI / 8)) / 2, s.at(5));
        near(1e-4 + 0.9e-3 * 0.5, s.at(8));                      // halfway: the mean of peak and floor
        near(1e-4 + 0.9e-3 * (1 + Math.cos(Math.PI * 7 / 8)) / 2, s.at(11));
        near(1e-4, s.at(12));
        near(1e-4, s.at(13));
        for (int t = 5; t <= 12; t++) assertTrue(s.at(t) < s.at(t - 1));
    }

    /** Warmup-stable-decay: the peak held until the last decay steps, then linear to the floor. */
    @Test
    void wsdHoldsThePeakThenDecaysOverTheLastSteps() {
        LrSchedule s = new LrSchedule(OptimConfig.Schedule.WSD, 1e-3, 1e-4, 2, 10, 4);
        near(0.5e-3, s.at(1));
        for (int t = 2; t <= 6; t++) near(1e-3, s.at(t));         // stable through step total - decay
        near(1e-3 - 0.9e-3 * 1 / 4, s.at(7));
        near(1e-3 - 0.9e-3 * 3 / 4, s.at(9));
        near(1e-4, s.at(10));
        // the config's fraction: round(0.25 x 10) = 3 decay steps (at least 1); a decay longer than the run after warmup starts at warmup's end
        OptimConfig o = new OptimConfig(1e-3, 1e-4, 2, 0.9, 0.95, 1e-8, 0.1, List.of("norm"), 1.0, OptimConfig.Schedule.WSD, 0.25);
        assertEquals(3, LrSchedule.of(o, 10).decaySteps());
        LrSchedule all = new LrSchedule(OptimConfig.Schedule.WSD, 1e-3, 1e-4, 2, 10, 50);
        near(1e-3 - 0.9e-3 / 8, all.at(3));
    }

    @Test
    void clipScaleFollowsClipGradNorm() {
        assertEquals(1.0, AdamW.clipScale(0.5, 1.0));
        assertEquals(1.0 / (4.0 + 1e-6), AdamW.clipScale(4.0, 1.0), 0.0);
        assertEquals(1.0, AdamW.clipScale(100.0, 0.0));           // clip 0 disables
    }
}
