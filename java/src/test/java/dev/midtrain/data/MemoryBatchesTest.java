package dev.midtrain.data;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class MemoryBatchesTest {
    @Test
    void windowsAreConsecutiveAndStateRestoresThePosition() {
        int[] stream = new int[100];
        for (int i = 0; i < stream.length; i++) stream[i] = i;
        MemoryBatches a = new MemoryBatches(stream, 21, 2, 4, "s");   // train tokens 0..78
        int[] mb = new int[10];
        a.nextMicroBatch(mb);
        assertArrayEquals(new int[]{0, 1, 2, 3, 4, 4, 5, 6, 7, 8}, mb); // each row: T+1 tokens, next row starts at +T
        var saved = a.state();
        int[] next = new int[10];
        a.nextMicroBatch(next);
        MemoryBatches b = new MemoryBatches(stream, 21, 2, 4, "s");
        b.restore(saved);
        int[] again = new int[10];
        b.nextMicroBatch(again);
        assertArrayEquals(next, again);
        assertEquals(16L, a.tokensPerSource().get("s"));
        List<int[]> val = a.validationMicroBatches(3);
        assertEquals(2, val.size());                                   // 21 held-out tokens: 5 windows of 5 -> 2 micro-batches
        assertEquals(79, val.get(0)[0]);
        assertArrayEquals(val.get(1), a.validationMicroBatches(3).get(1));
    }

    @Test
    void markovStreamIsDeterministicAndInRange() {
        int[] s1 = MemoryBatches.markovStream(50, 1000, 3, 9), s2 = MemoryBatches.markovStream(50, 1000, 3, 9);
        assertArrayEquals(s1, s2);
        for (int t : s1) assertTrue(t >= 0 && t < 50);
        assertFalse(java.util.Arrays.equals(s1, MemoryBatches.markovStream(50, 1000, 3, 10)));
    }
}
