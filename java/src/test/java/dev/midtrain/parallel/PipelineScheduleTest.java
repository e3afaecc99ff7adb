package dev.midtrain.parallel;

import dev.midtrain.parallel.PipelineSchedule.Compute;
import dev.midtrain.parallel.PipelineSchedule.Kind;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The pipeline schedules as pure logic: every micro-batch through every stage once each way, no deadlock under
 * rendezvous p2p (the replay in {@link PipelineSchedule#checkDeadlockFree}, itself tested on a program that does
 * deadlock), Megatron's orders written out by hand for small cases, the bubble formula against the step time of the
 * actual order, and the activations in flight per rank.
 */
class PipelineScheduleTest {

    @Test
    void everyLayoutIsCompleteAndDeadlockFree() {
        for (int pp = 1; pp <= 8; pp++)
            for (int v = 1; v <= 4; v++)
                for (int m = 1; m <= 24; m++) {
                    if (v > 1 && (m % pp != 0 || pp == 1)) continue;
                    PipelineSchedule s = new PipelineSchedule(pp, v, m);
                    s.checkDeadlockFree();
                    for (int p = 0; p < pp; p++) assertEquals(2 * v * m, s.order(p).size());
                }
    }

    @Test
    void oneFOneBMatchesMegatronsOrderWrittenByHand() {
        // pp 4, m 6: rank p warms up with 3 - p forwards, then alternates, then drains
        PipelineSchedule s = new PipelineSchedule(4, 1, 6);
        assertEquals("[F0@s0, F1@s0, F2@s0, F3@s0, B0@s0, F4@s0, B1@s0, F5@s0, B2@s0, B3@s0, B4@s0, B5@s0]", s.order(0).toString());
        assertEquals("[F0@s3, B0@s3, F1@s3, B1@s3, F2@s3, B2@s3, F3@s3, B3@s3, F4@s3, B4@s3, F5@s3, B5@s3]", s.order(3).toString());
        assertEquals("[F0@s1, F1@s1, F2@s1, B0@s1, F3@s1, B1@s1, F4@s1, B2@s1, F5@s1, B3@s1, B4@s1, B5@s1]", s.order(1).toString());
        // the steady state posts send-forward with receive-backward in one batch (Megatron's send_forward_recv_backward)
        List<PipelineSchedule.Action> p1 = s.program(1);
        assertEquals("Batch[transfers=[recv grad1@s2 from 2, send act3@s1 to 2]]", p1.get(p1.indexOf(s.order(1).get(4)) + 1).toString());
        // pp 2, m 3 in full: the last stage sends each gradient with the next activation's receive
        PipelineSchedule t = new PipelineSchedule(2, 1, 3);
        assertEquals("[F0@s0, Batch[transfers=[send act0@s0 to 1]], F1@s0, Batch[transfers=[send act1@s0 to 1]], "
                + "Batch[transfers=[recv grad0@s1 from 1]], B0@s0, F2@s0, Batch[transfers=[recv grad1@s1 from 1, send act2@s0 to 1]], "
                + "B1@s0, Batch[transfers=[recv grad2@s1 from 1]], B2@s0]", t.program(0).toString());
        assertEquals("[Batch[transfers=[recv act0@s0 from 0]], F0@s1, Batch[transfers=[recv act1@s0 from 0]], B0@s1, "
                + "Batch[transfers=[send grad0@s1 to 0]], F1@s1, B1@s1, Batch[transfers=[recv act2@s0 from 0, send grad1@s1 to 0]], "
                + "F2@s1, B2@s1, Batch[transfers=[send grad2@s1 to 0]]]", t.program(1).toString());
        // fewer micro-batches than stages: warmup capped, still complete
        assertEquals("[F0@s0, F1@s0, B0@s0, B1@s0]", new PipelineSchedule(4, 1, 2).order(0).toString());
    }

    @Test
    void interleavedMatchesMegatronsOrderWrittenByHand() {
        // pp 2, 2 chunks, m 4: rank 0 holds stages 0 and 2, rank 1 stages 1 and 3. Megatron: k-th forward is chunk
        // (k % 4) / 2, micro-batch (k / 4) * 2 + k % 2; warmup (pp - p - 1) * 2 + (v - 1) * pp = 4 on rank 0, 2 on rank 1
        PipelineSchedule s = new PipelineSchedule(2, 2, 4);
        assertEquals(4, s.warmup(0));
        assertEquals(2, s.warmup(1));
        assertEquals("[F0@s0, F1@s0, F0@s2, F1@s2, F2@s0, B0@s2, F3@s0, B1@s2, F2@s2, B0@s0, F3@s2, B1@s0, B2@s2, B3@s2, B2@s0, B3@s0]",
                s.order(0).toString());
        assertEquals("[F0@s1, F1@s1, F0@s3, B0@s3, F1@s3, B1@s3, F2@s1, B0@s1, F3@s1, B1@s1, F2@s3, B2@s3, F3@s3, B3@s3, B2@s1, B3@s1]",
                s.order(1).toString());
    }

    @Test
    void theReplayFindsADeadlockAndAMisorderedPair() {
        PipelineSchedule s = new PipelineSchedule(2, 1, 1);
        var send0 = new PipelineSchedule.Transfer(true, Kind.FORWARD, 0, 0, 1);
        var recv0 = new PipelineSchedule.Transfer(false, Kind.FORWARD, 0, 0, 0);
        var send1 = new PipelineSchedule.Transfer(true, Kind.BACKWARD, 1, 0, 0);
        var recv1 = new PipelineSchedule.Transfer(false, Kind.BACKWARD, 1, 0, 1);
        // both ranks send before they receive, in separate batches: the classic rendezvous deadlock
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> s.withPrograms(List.of(
                List.of(new PipelineSchedule.Batch(List.of(send0)), new PipelineSchedule.Batch(List.of(recv1))),
                List.of(new PipelineSchedule.Batch(List.of(send1)), new PipelineSchedule.Batch(List.of(recv0))))).checkDeadlockFree());
        assertTrue(e.getMessage().contains("deadlocks") && e.getMessage().contains("rank 0 waits in") && e.getMessage().contains("rank 1 waits in"), e.getMessage());
        // the same transfers in one batch each: fine
        s.withPrograms(List.of(List.of(new PipelineSchedule.Batch(List.of(send0, recv1))),
                List.of(new PipelineSchedule.Batch(List.of(send1, recv0))))).checkDeadlockFree();
        // two messages on one pair received in the other order
        PipelineSchedule t = new PipelineSchedule(2, 1, 2);
        var a0 = new PipelineSchedule.Transfer(true, Kind.FORWARD, 0, 0, 1);
        var a1 = new PipelineSchedule.Transfer(true, Kind.FORWARD, 0, 1, 1);
        var r0 = new PipelineSchedule.Transfer(false, Kind.FORWARD, 0, 0, 0);
        var r1 = new PipelineSchedule.Transfer(false, Kind.FORWARD, 0, 1, 0);
        e = assertThrows(IllegalStateException.class, () -> t.withPrograms(List.of(
                List.of(new PipelineSchedule.Batch(List.of(a0, a1))), List.of(new PipelineSchedule.Batch(List.of(r1, r0))))).checkDeadlockFree());
        assertTrue(e.getMessage().contains("first in, first out"), e.getMessage());
    }

    @Test
    void bubbleOfTheActualOrderEqualsTheFormula() {
        // forward 1, backward 2 per micro-batch of a rank's layers; communication free
        for (int pp = 1; pp <= 8; pp *= 2)
            for (int v : new int[]{1, 2, 4})
                for (int m : new int[]{8, 16, 32}) {
                    if (v > 1 && (m % pp != 0 || pp == 1)) continue;
                    PipelineSchedule s = new PipelineSchedule(pp, v, m);
                    double t = s.makespan(1, 2), ideal = m * 3.0;
                    assertEquals((m + (pp - 1) / (double) v) * 3.0, t, 1e-9, "step time pp " + pp + " v " + v + " m " + m);
                    assertEquals(PipelineSchedule.bubbleFraction(pp, v, m), (t - ideal) / t, 1e-12, "bubble fraction");
                }
        assertEquals(3 / 11.0, PipelineSchedule.bubbleFraction(4, 1, 8), 1e-15);
        assertEquals(3 / 19.0, PipelineSchedule.bubbleFraction(4, 2, 8), 1e-15);
    }

    @Test
    void firstStageHoldsTheMostMicroBatchesInFlight() {
        PipelineSchedule s = new PipelineSchedule(4, 1, 16);
        for (int p = 0; p < 4; p++) assertEquals(4 - p, s.peakInFlight(p), "1F1B rank " + p);
        // interleaved: warmup + 1 chunk-forwards alive on rank 0 (each 1/v of the rank's layers)
        PipelineSchedule i = new PipelineSchedule(4, 2, 16);
        assertEquals(i.warmup(0) + 1, i.peakInFlight(0));
        assertEquals(11, i.peakInFlight(0));
        for (int pp = 1; pp <= 6; pp++)
            for (int v = 1; v <= 3; v++)
                for (int m = 1; m <= 12; m++) {
                    if (v > 1 && (pp == 1 || m % pp != 0)) continue;
                    PipelineSchedule x = new PipelineSchedule(pp, v, m);
                    for (int p = 0; p < pp; p++) assertEquals(x.peakInFlight(p), PipelineSchedule.inFlight(pp, v, m, p), pp + " " + v + " " + m + " " + p);
                }
    }

    @Test
    void interleavingNeedsMicroBatchesAMultipleOfPp() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new PipelineSchedule(4, 2, 6));
        assertTrue(e.getMessage().contains("multiple of parallel.pp (4)"), e.getMessage());
        new PipelineSchedule(4, 1, 6).checkDeadlockFree();
    }

    @Test
    void everyComputeOfARankIsOnItsOwnStages() {
        PipelineSchedule s = new PipelineSchedule(3, 2, 6);
        for (int p = 0; p < 3; p++)
            for (Compute c : s.order(p)) {
                assertEquals(p, s.rankOf(c.stage()));
                assertEquals(c.stage(), s.stageOf(p, c.chunk()));
                assertTrue(c.kind() == Kind.FORWARD || c.kind() == Kind.BACKWARD);
            }
    }
}
