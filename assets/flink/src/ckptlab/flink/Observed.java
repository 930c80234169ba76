package ckptlab.flink;

import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What the job's operators report to the harness in the same JVM (a MiniCluster runs every task
 * in this process): the sink's last count per key, and how far each partition was read. On a
 * real cluster (the exported job) nobody reads it.
 */
public final class Observed {
    private static final Map<String, Long> LAST_COUNT = new ConcurrentHashMap<>();
    private static final Map<Integer, Long> POSITION = new ConcurrentHashMap<>();
    private static final AtomicLong OUTPUT_LINES = new AtomicLong();
    private static final AtomicLong LAST_ACTIVITY = new AtomicLong(System.nanoTime());

    private Observed() {}

    static void emitted(String key, long count) {
        LAST_COUNT.put(key, count);
        OUTPUT_LINES.incrementAndGet();
        LAST_ACTIVITY.set(System.nanoTime());
    }

    static void position(int partition, long next) {
        POSITION.put(partition, next);
        LAST_ACTIVITY.set(System.nanoTime());
    }

    static void forget(int partition) {
        POSITION.remove(partition);
    }

    public static Map<String, Long> lastCounts() {
        return new TreeMap<>(LAST_COUNT);
    }

    public static Map<Integer, Long> positions() {
        return new TreeMap<>(POSITION);
    }

    public static long outputLines() {
        return OUTPUT_LINES.get();
    }

    /** Milliseconds since a record was last read or emitted. */
    public static long quietMs() {
        return (System.nanoTime() - LAST_ACTIVITY.get()) / 1_000_000;
    }
}
