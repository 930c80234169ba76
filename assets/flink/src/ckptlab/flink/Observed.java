package ckptlab.flink;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
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
 *
 * <p>On ckptlab's local cluster of processes ({@code ckptlab flink run --cluster local}) the
 * operators run in several TaskManager JVMs, each with its own copy of these figures: when the
 * system property {@code ckptlab.observe.dir} is set (ckptlab puts it in the TaskManagers'
 * {@code env.java.opts.taskmanager}), a daemon thread writes them every {@value #WRITE_MS} ms to
 * {@code observe-<pid>-<loader>.json} there, each figure with the wall-clock time it was set, so
 * that ckptlab merges the files by the newest (a killed TaskManager's file stays, stale). This is
 * ckptlab's instrumentation, not a Flink feature.
 */
public final class Observed {
    static final long WRITE_MS = 50;
    /** Wall-clock times (ms) of the figures above, for merging several JVMs' reports. */
    private static final Map<String, Long> COUNT_AT = new ConcurrentHashMap<>();
    private static final Map<Integer, Long> POSITION_AT = new ConcurrentHashMap<>();
    private static final Map<Integer, Long> READER_STARTED_AT = new ConcurrentHashMap<>();
    private static final AtomicLong SINK_STARTED_AT = new AtomicLong();
    private static final AtomicLong LAST_ACTIVITY_AT = new AtomicLong();

    private static final Map<String, Long> LAST_COUNT = new ConcurrentHashMap<>();
    private static final Map<Integer, Long> POSITION = new ConcurrentHashMap<>();
    private static final AtomicLong OUTPUT_LINES = new AtomicLong();
    private static final AtomicLong LAST_ACTIVITY = new AtomicLong(System.nanoTime());
    /** Per source subtask: records emitted since its reader was created. */
    private static final Map<Integer, AtomicLong> EMITTED = new ConcurrentHashMap<>();
    /** Records the sink's writer received since it was created. */
    private static final AtomicLong RECEIVED = new AtomicLong();

    static {
        String dir = System.getProperty("ckptlab.observe.dir");
        if (dir != null && !dir.isEmpty()) {
            Thread writer = new Thread(() -> writeLoop(Paths.get(dir)), "ckptlab-observe");
            writer.setDaemon(true);
            writer.start();
        }
    }

    private Observed() {}

    private static void activity() {
        LAST_ACTIVITY.set(System.nanoTime());
        LAST_ACTIVITY_AT.set(System.currentTimeMillis());
    }

    static void emitted(String key, long count) {
        LAST_COUNT.put(key, count);
        COUNT_AT.put(key, System.currentTimeMillis());
        OUTPUT_LINES.incrementAndGet();
        activity();
    }

    static void position(int partition, long next) {
        POSITION.put(partition, next);
        POSITION_AT.put(partition, System.currentTimeMillis());
        activity();
    }

    /** A source subtask's reader starts (a deployment or a restart): it has emitted nothing yet. */
    static void readerStarted(int subtask) {
        EMITTED.put(subtask, new AtomicLong());
        READER_STARTED_AT.put(subtask, System.currentTimeMillis());
    }

    static void sourceEmitted(int subtask) {
        EMITTED.computeIfAbsent(subtask, s -> new AtomicLong()).incrementAndGet();
    }

    /** The sink's writer starts: it has received nothing yet. */
    static void sinkStarted() {
        RECEIVED.set(0);
        SINK_STARTED_AT.set(System.currentTimeMillis());
    }

    static void sinkReceived() {
        RECEIVED.incrementAndGet();
        activity();
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
        POSITION_AT.remove(partition);
    }

    /** This JVM's figures, each as [value, wall-clock ms it was set], as one JSON object. */
    static String report() {
        StringBuilder b = new StringBuilder("{\"pid\":").append(ProcessHandle.current().pid())
                .append(",\"at\":").append(System.currentTimeMillis())
                .append(",\"output_lines\":").append(OUTPUT_LINES.get())
                .append(",\"activity\":").append(LAST_ACTIVITY_AT.get())
                .append(",\"sink\":[").append(RECEIVED.get()).append(',').append(SINK_STARTED_AT.get()).append(']')
                .append(",\"counts\":{");
        String sep = "";
        for (Map.Entry<String, Long> e : new TreeMap<>(LAST_COUNT).entrySet()) {
            b.append(sep).append(quote(e.getKey())).append(":[").append(e.getValue()).append(',')
                    .append(COUNT_AT.getOrDefault(e.getKey(), 0L)).append(']');
            sep = ",";
        }
        b.append("},\"positions\":{");
        sep = "";
        for (Map.Entry<Integer, Long> e : new TreeMap<>(POSITION).entrySet()) {
            b.append(sep).append('"').append(e.getKey()).append("\":[").append(e.getValue()).append(',')
                    .append(POSITION_AT.getOrDefault(e.getKey(), 0L)).append(']');
            sep = ",";
        }
        b.append("},\"readers\":{");
        sep = "";
        for (Map.Entry<Integer, AtomicLong> e : new TreeMap<>(EMITTED).entrySet()) {
            b.append(sep).append('"').append(e.getKey()).append("\":[").append(e.getValue().get()).append(',')
                    .append(READER_STARTED_AT.getOrDefault(e.getKey(), 0L)).append(']');
            sep = ",";
        }
        return b.append("}}").toString();
    }

    /** A JSON string (the exported job has no Harness.json). */
    private static String quote(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        return out.append('"').toString();
    }

    /** Writes {@link #report()} to the directory every WRITE_MS (to a temporary file, then renamed). */
    private static void writeLoop(Path dir) {
        String name = "observe-" + ProcessHandle.current().pid() + "-" + Integer.toHexString(System.identityHashCode(Observed.class));
        Path file = dir.resolve(name + ".json");
        Path tmp = dir.resolve(name + ".tmp");
        while (true) {
            try {
                Files.createDirectories(dir);
                Files.write(tmp, report().getBytes(StandardCharsets.UTF_8));
                Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
                Thread.sleep(WRITE_MS);
            } catch (InterruptedException e) {
                return;
            } catch (IOException e) {
                try {
                    Thread.sleep(1000);
                } catch (InterruptedException ie) {
                    return;
                }
            }
        }
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
