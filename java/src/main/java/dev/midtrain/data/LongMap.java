package dev.midtrain.data;

/**
 * Open-addressing hash map long -> long (linear probing, {@link Decontaminator#mix} as the hash), grown at half load;
 * absent keys give {@code missing}. The one hash map of the package: the BPE merges, the decontamination prefilter
 * and the MinHash band tables use it.
 */
final class LongMap {
    private long[] keys, vals;
    private boolean[] used;
    private int mask, size;
    private final long missing;

    /** @param expected keys expected (the table starts at twice that, so it never grows when the guess holds) */
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

    /** Sets key to val; returns the value it replaces ({@code missing} for a new key). */
    long put(long key, long val) {
        if (2 * (size + 1) > keys.length) grow();
        int i = (int) Decontaminator.mix(key) & mask;
        while (used[i] && keys[i] != key) i = (i + 1) & mask;
        long old = used[i] ? vals[i] : missing;
        if (!used[i]) size++;
        used[i] = true;
        keys[i] = key;
        vals[i] = val;
        return old;
    }

    private void grow() {
        long[] ok = keys, ov = vals;
        boolean[] ou = used;
        keys = new long[ok.length * 2];
        vals = new long[ok.length * 2];
        used = new boolean[ok.length * 2];
        mask = keys.length - 1;
        for (int j = 0; j < ok.length; j++) {
            if (!ou[j]) continue;
            int i = (int) Decontaminator.mix(ok[j]) & mask;
            while (used[i]) i = (i + 1) & mask;
            used[i] = true;
            keys[i] = ok[j];
            vals[i] = ov[j];
        }
    }
}
