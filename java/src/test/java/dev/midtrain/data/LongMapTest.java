package dev.midtrain.data;

import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** LongMap against java.util.HashMap: random keys (clustered and spread, 0 and negative ones), overwrites, growth far past the expected size. */
class LongMapTest {
    @Test
    void agreesWithHashMapThroughGrowth() {
        SplittableRandom r = new SplittableRandom(21);
        LongMap m = new LongMap(4, -7);
        Map<Long, Long> ref = new HashMap<>();
        for (int i = 0; i < 50_000; i++) {
            long key = switch (i % 3) { case 0 -> r.nextLong(); case 1 -> r.nextInt(2000) - 1000; default -> (long) r.nextInt(64) << 40; };
            long val = r.nextLong();
            Long old = ref.put(key, val);
            assertEquals(old == null ? -7 : old, m.put(key, val), "put " + key);
        }
        for (Map.Entry<Long, Long> e : ref.entrySet()) assertEquals(e.getValue(), m.get(e.getKey()));
        for (int i = 0; i < 10_000; i++) {
            long key = r.nextLong();
            assertEquals(ref.getOrDefault(key, -7L), m.get(key));
        }
    }
}
