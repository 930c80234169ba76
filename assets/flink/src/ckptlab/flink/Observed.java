package ckptlab.flink;

import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What the job's operators report to the harness in the same JVM (a MiniCluster runs every task
 * in this process): the sink's last count per key, how far each partition was read, and how many
 * records the sources emitted and the sink received since their tasks last started (the whole
 * job restarts together: its keyBy makes one pipelined region). Every record a source emits
 * reaches the sink once, so the job has processed its input when the sink received as many as
 * the sources emitted (more, after an unaligned restore replays in-flight records persisted by
 * the attempt before). On a real cluster (the exported job) nobody reads it.
 */
public final class Observed {
    private static final Map<String, Long> LAST_COUNT = new ConcurrentHashMap<>();
    private static final Map<Integer, Long> POSITION = new ConcurrentHashMap<>();
    private static final AtomicLong OUTPUT_LINES = new AtomicLong();
    private static final AtomicLong LAST_ACTIVITY = new AtomicLong(System.nanoTime());
    /** Per source subtask: records emitted since its reader was created. */
    private static final Map<Integer, AtomicLong> EMITTED = new ConcurrentHashMap<>();
    /** Records the sink's writer received since it was created. */
    private static final AtomicLong RECEIVED = new AtomicLong();

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

    /** A source subtask's reader starts (a deployment or a restart): it has emitted nothing yet. */
    static void readerStarted(int subtask) {
        EMITTED.put(subtask, new AtomicLong());
    }

    static void sourceEmitted(int subtask) {
        EMITTED.computeIfAbsent(subtask, s -> new AtomicLong()).incrementAndGet();
    }

    /** The sink's writer starts: it has received nothing yet. */
    static void sinkStarted() {
        RECEIVED.set(0);
    }

    static void sinkReceived() {
        RECEIVED.incrementAndGet();
        LAST_ACTIVITY.set(System.nanoTime());
    }

    /** Records the sources emitted since their readers started. */
    public static long emitted() {
        long n = 0;
        for (AtomicLong e : EMITTED.values()) {
            n += e.get();
        }
        return n;
    }

    /** Records the sink received since its writer started. */
    public static long received() {
        return RECEIVED.get();
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
