package dev.midtrain.optim;

import org.junit.jupiter.api.Test;

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

    @Test
    void clipScaleFollowsClipGradNorm() {
        assertEquals(1.0, AdamW.clipScale(0.5, 1.0));
        assertEquals(1.0 / (4.0 + 1e-6), AdamW.clipScale(4.0, 1.0), 0.0);
        assertEquals(1.0, AdamW.clipScale(100.0, 0.0));           // clip 0 disables
    }
}
