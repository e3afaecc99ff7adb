package dev.midtrain.synth;

import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;

/** Thread-safe named counters of one stage run (requests, retries by cause, rejects by reason, tokens). */
public final class Stats {
    private final Map<String, LongAdder> counts = new ConcurrentHashMap<>();

    public void add(String name, long n) { counts.computeIfAbsent(name, k -> new LongAdder()).add(n); }

    public void inc(String name) { add(name, 1); }

    public long get(String name) {
        LongAdder a = counts.get(name);
        return a == null ? 0 : a.sum();
    }

    /** The counters whose name starts with {@code prefix}, prefix removed, sorted. */
    public Map<String, Long> withPrefix(String prefix) {
        Map<String, Long> out = new TreeMap<>();
        counts.forEach((k, v) -> { if (k.startsWith(prefix)) out.put(k.substring(prefix.length()), v.sum()); });
        return out;
    }

    public Map<String, Long> snapshot() { return withPrefix(""); }
}
