package dev.midtrain.data;

/** Open-addressing hash map long -> long with a fixed capacity (twice the expected size); absent keys give {@code missing}. */
final class LongMap {
    private final long[] keys, vals;
    private final boolean[] used;
    private final int mask;
    private final long missing;
    private int size;

    LongMap(int expected, long missing) {
        int cap = Integer.highestOneBit(Math.max(4, expected * 2 - 1)) << 1;
        keys = new long[cap];
        vals = new long[cap];
        used = new boolean[cap];
        mask = cap - 1;
        this.missing = missing;
    }

    long get(long key) {
        for (int i = (int) Decontaminator.mix(key) & mask; ; i = (i + 1) & mask) {
            if (!used[i]) return missing;
            if (keys[i] == key) return vals[i];
        }
    }

    /** Sets key to val; at most the expected size of keys. */
    void put(long key, long val) {
        int i = (int) Decontaminator.mix(key) & mask;
        while (used[i] && keys[i] != key) i = (i + 1) & mask;
        if (!used[i]) {
            if (2 * (size + 1) > keys.length) throw new IllegalStateException("LongMap full");
            size++;
        }
        used[i] = true;
        keys[i] = key;
        vals[i] = val;
    }
}
