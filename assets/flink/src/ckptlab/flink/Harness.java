package ckptlab.flink;

import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.Properties;
import java.util.concurrent.CompletableFuture;

import org.apache.flink.api.common.JobID;
import org.apache.flink.api.common.JobStatus;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.core.execution.SavepointFormatType;
import org.apache.flink.runtime.checkpoint.AbstractCheckpointStats;
import org.apache.flink.runtime.checkpoint.CheckpointFailureReason;
import org.apache.flink.runtime.checkpoint.CheckpointStatsCounts;
import org.apache.flink.runtime.checkpoint.CheckpointStatsSnapshot;
import org.apache.flink.runtime.checkpoint.CompletedCheckpointStats;
import org.apache.flink.runtime.checkpoint.FailedCheckpointStats;
import org.apache.flink.runtime.checkpoint.TaskStateStats;
import org.apache.flink.runtime.execution.ExecutionState;
import org.apache.flink.runtime.executiongraph.AccessExecutionGraph;
import org.apache.flink.runtime.executiongraph.AccessExecutionVertex;
import org.apache.flink.runtime.jobgraph.SavepointRestoreSettings;
import org.apache.flink.runtime.minicluster.MiniCluster;
import org.apache.flink.runtime.minicluster.MiniClusterConfiguration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.graph.StreamGraph;

/**
 * ckptlab's side of a Flink run: a MiniCluster in this JVM running {@link CheckpointJob}, driven
 * by a line protocol. Commands come on stdin ({@code kill tm-N}, {@code start tm-N},
 * {@code checkpoint}, {@code savepoint<TAB>FORMAT<TAB>DIR}, {@code stop-with-savepoint<TAB>FORMAT<TAB>DIR},
 * {@code submit<TAB>PROPS[<TAB>SAVEPOINT]}, {@code quit}); JSON lines go up on stdout: events (submitted, status,
 * checkpoint, restart, tm-terminated, tm-started, refused, error), one {@code checkpoint} line per
 * checkpoint that completed or failed (its id, end-to-end duration and, for a failure, the
 * CheckpointFailureReason), and a {@code state} line every {@value #REPORT_MS} ms (job status, all
 * tasks running, restarts, checkpoint counts, the sink's last count per key, read positions).
 * Everything else the JVM prints goes to stderr.
 */
public final class Harness {
    static final long REPORT_MS = 50;
    private static PrintStream proto;

    public static void main(String[] args) throws Exception {
        // The protocol owns stdout: Flink's print sink and logging go to stderr.
        proto = new PrintStream(new FileOutputStream(FileDescriptor.out), true, "UTF-8");
        System.setOut(System.err);
        try {
            run(args[0]);
        } catch (Throwable t) {
            send("{\"event\":\"error\",\"message\":" + json(String.valueOf(t)) + "}");
            t.printStackTrace();
            System.exit(1);
        }
        System.exit(0);
    }

    /** The MiniCluster, and the job it runs now (a resubmission replaces it). */
    private static MiniCluster cluster;
    private static volatile JobID current;
    /** Figures of the jobs before {@link #current} (a resubmission is a new job: its own counts start at 0). */
    private static long baseCompleted;
    private static long baseFailed;
    private static long baseRestarts;
    /** The current job's own figures at the last poll. */
    private static long jobCompleted;
    private static long jobFailed;
    private static long jobRestarts;
    private static String lastStatus = "";
    private static long lastCompleted;
    private static long lastFailed;
    private static long lastRestarts;
    /** Checkpoints reported, as "job/id" (a restored job's ids go on from its savepoint's). */
    private static final Set<String> reported = new HashSet<>();

    private static void run(String propsPath) throws Exception {
        Properties props = CheckpointJob.load(propsPath);
        Configuration conf = CheckpointJob.flinkConfiguration(props);
        // Flink's own restart count (numRestarts), not a figure of the harness's making.
        conf.setString(RestartCounter.FACTORY_OPTION, RestartCounter.class.getName());
        int tms = Integer.parseInt(props.getProperty("cluster.taskmanagers", "2"));
        int slots = Integer.parseInt(props.getProperty("cluster.slots", "1"));
        cluster = new MiniCluster(new MiniClusterConfiguration.Builder()
                .setConfiguration(conf)
                .setNumTaskManagers(tms)
                .setNumSlotsPerTaskManager(slots)
                .withRandomPorts()
                .build());
        cluster.start();
        // tm-N is the MiniCluster's task manager at this index (a started one is appended).
        Map<String, Integer> index = new HashMap<>();
        for (int i = 0; i < tms; i++) {
            index.put("tm-" + (i + 1), i);
        }
        int[] next = {tms};
        current = submit(props, null);
        send("{\"event\":\"submitted\",\"job\":\"" + current + "\"}");

        Thread commands = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = in.readLine()) != null) {
                    // Commands with paths are tab-separated (a path may hold spaces).
                    String[] w = line.indexOf('\t') >= 0 ? line.split("\t") : line.trim().split("\\s+");
                    try {
                        switch (w[0]) {
                            case "kill": {
                                Integer i = index.get(w[1]);
                                if (i == null) {
                                    send(refused("kill " + w[1], "no such task manager"));
                                    break;
                                }
                                cluster.terminateTaskManager(i).get();
                                index.remove(w[1]);
                                send("{\"event\":\"tm-terminated\",\"tm\":" + json(w[1]) + "}");
                                break;
                            }
                            case "start": {
                                cluster.startTaskManager();
                                index.put(w[1], next[0]++);
                                send("{\"event\":\"tm-started\",\"tm\":" + json(w[1]) + "}");
                                break;
                            }
                            case "checkpoint":
                                cluster.triggerCheckpoint(current).whenComplete((path, err) -> {
                                    if (err != null) {
                                        send(refused("checkpoint", String.valueOf(err.getCause() != null ? err.getCause() : err)));
                                    } else {
                                        send("{\"event\":\"checkpoint-triggered\",\"path\":" + json(path) + "}");
                                    }
                                });
                                break;
                            case "savepoint":
                            case "stop-with-savepoint": {
                                // savepoint<TAB>FORMAT<TAB>DIR: Flink's `flink savepoint -type` / `flink stop
                                // -type` (MiniCluster#triggerSavepoint, #stopWithSavepoint; terminate = false:
                                // a stop, not a drain, as `flink stop` without --drain).
                                boolean stop = w[0].equals("stop-with-savepoint");
                                SavepointFormatType format = SavepointFormatType.valueOf(w[1]);
                                JobID job = current;
                                CompletableFuture<String> f = stop
                                        ? cluster.stopWithSavepoint(job, w[2], false, format)
                                        : cluster.triggerSavepoint(job, w[2], false, format);
                                String what = line.replace('\t', ' ');
                                f.whenComplete((path, err) -> {
                                    if (err != null) {
                                        send(refused(what, String.valueOf(rootCause(err))));
                                    } else {
                                        Long id = savepointId(job, path);
                                        send("{\"event\":\"savepoint-completed\",\"stop\":" + stop + ",\"format\":" + json(format.name())
                                                + ",\"path\":" + json(path) + ",\"id\":" + (id == null ? "null" : id.toString()) + "}");
                                    }
                                });
                                break;
                            }
                            case "submit": {
                                // submit<TAB>PROPS[<TAB>SAVEPOINT]: a new job from job.properties, restored
                                // from the savepoint when one is given (SavepointRestoreSettings.forPath,
                                // allowNonRestoredState = false: as `flink run -s PATH` without -n).
                                Properties p = CheckpointJob.load(w[1]);
                                String savepoint = w.length > 2 ? w[2] : null;
                                JobID old = current;
                                JobID job;
                                synchronized (Harness.class) {
                                    // The old job's last figures first, then theirs become the base.
                                    poll(old);
                                    job = submit(p, savepoint);
                                    baseCompleted += jobCompleted;
                                    baseFailed += jobFailed;
                                    baseRestarts += jobRestarts;
                                    jobCompleted = 0;
                                    jobFailed = 0;
                                    jobRestarts = 0;
                                    current = job;
                                }
                                send("{\"event\":\"submitted\",\"job\":\"" + job + "\",\"from\":" + (savepoint == null ? "null" : json(savepoint)) + "}");
                                break;
                            }
                            case "quit":
                                return;
                            default:
                                send(refused(line, "unknown command"));
                        }
                    } catch (Exception e) {
                        send(refused(line.replace('\t', ' '), String.valueOf(rootCause(e))));
                    }
                }
            } catch (Exception e) {
                send("{\"event\":\"error\",\"message\":" + json(String.valueOf(e)) + "}");
            }
        }, "ckptlab-commands");
        commands.setDaemon(true);
        commands.start();

        while (commands.isAlive()) {
            synchronized (Harness.class) {
                poll(current);
            }
            Thread.sleep(REPORT_MS);
        }
        try {
            cluster.cancelJob(current).get();
        } catch (Exception e) {
            // Already failed or finished: nothing to cancel.
        }
        cluster.close();
        send("{\"event\":\"closed\"}");
    }

    /** Builds the job of {@code props} and submits it, restored from {@code savepoint} when not null. */
    private static JobID submit(Properties props, String savepoint) throws Exception {
        Configuration conf = CheckpointJob.flinkConfiguration(props);
        StreamExecutionEnvironment env = new StreamExecutionEnvironment(conf);
        CheckpointJob.build(env, props);
        StreamGraph graph = env.getStreamGraph();
        graph.setJobName(props.getProperty("job.name", "ckptlab"));
        graph.setJobId(new JobID());
        if (savepoint != null) {
            graph.setSavepointRestoreSettings(SavepointRestoreSettings.forPath(savepoint, false));
        }
        return cluster.submitJob(graph).get().getJobID();
    }

    /** The checkpoint id of the savepoint at {@code path} in the job's statistics (null: not found). */
    private static Long savepointId(JobID job, String path) {
        try {
            CheckpointStatsSnapshot stats = cluster.getExecutionGraph(job).get().getCheckpointStatsSnapshot();
            for (AbstractCheckpointStats cp : stats.getHistory().getCheckpoints()) {
                if (cp instanceof CompletedCheckpointStats && path.equals(((CompletedCheckpointStats) cp).getExternalPath())) {
                    return cp.getCheckpointId();
                }
            }
        } catch (Exception e) {
            // The statistics are gone: no id.
        }
        return null;
    }

    private static Throwable rootCause(Throwable t) {
        while ((t instanceof java.util.concurrent.CompletionException || t instanceof java.util.concurrent.ExecutionException) && t.getCause() != null) {
            t = t.getCause();
        }
        // Flink wraps a restore's refusal (e.g. an incompatible max parallelism) a few levels deep:
        // the innermost message is Flink's reason.
        Throwable inner = t;
        while (inner.getCause() != null && inner.getCause() != inner) {
            inner = inner.getCause();
        }
        return inner == t ? t : new Exception(t + " <- " + inner);
    }

    /** One look at the job: events for what changed, and the state line (figures summed over the jobs so far). */
    private static void poll(JobID job) throws Exception {
        AccessExecutionGraph g = cluster.getExecutionGraph(job).get();
        JobStatus status = g.getState();
        boolean allRunning = true;
        int attempts = 0;
        for (AccessExecutionVertex v : g.getAllExecutionVertices()) {
            allRunning &= v.getExecutionState() == ExecutionState.RUNNING;
            attempts = Math.max(attempts, v.getCurrentExecutionAttempt().getAttemptNumber());
        }
        // Before the gauge is registered: the highest execution attempt, the same count
        // while every task restarts together (one pipelined region, as this job's keyBy makes).
        long r = RestartCounter.restarts(job.toString());
        jobRestarts = r >= 0 ? r : attempts;
        allRunning &= status == JobStatus.RUNNING;
        CheckpointStatsSnapshot stats = g.getCheckpointStatsSnapshot();
        if (stats != null) {
            CheckpointStatsCounts c = stats.getCounts();
            jobCompleted = c.getNumberOfCompletedCheckpoints();
            jobFailed = c.getNumberOfFailedCheckpoints();
            // The history holds the last web.checkpoints.history (10) checkpoints: looked at
            // every REPORT_MS, each one that ended is reported once. A checkpoint that failed
            // before it was triggered (pre-flight, e.g. NOT_ALL_REQUIRED_TASKS_RUNNING) is
            // counted in `failed` but never enters the history (reportFailedCheckpointsWithoutInProgress).
            for (AbstractCheckpointStats cp : stats.getHistory().getCheckpoints()) {
                if (cp.getStatus().isInProgress() || cp.getProperties().isSavepoint() || !reported.add(job + "/" + cp.getCheckpointId())) {
                    continue;
                }
                // The figures Flink's web UI shows per checkpoint: end-to-end duration,
                // persisted in-flight data (AbstractCheckpointStats#getPersistedData: the channel
                // state of an unaligned checkpoint) and the longest alignment of any subtask
                // (TaskStateStatsSummary#getAlignmentDurationStats).
                long alignment = 0;
                for (TaskStateStats t : cp.getAllTaskStateStats()) {
                    if (t.getNumberOfAcknowledgedSubtasks() > 0) {
                        alignment = Math.max(alignment, t.getSummaryStats().getAlignmentDurationStats().getMaximum());
                    }
                }
                StringBuilder line = new StringBuilder("{\"event\":\"checkpoint\",\"id\":").append(cp.getCheckpointId())
                        .append(",\"status\":\"").append(cp.getStatus()).append('"')
                        .append(",\"duration_ms\":").append(cp.getEndToEndDuration())
                        .append(",\"persisted_bytes\":").append(Math.max(0, cp.getPersistedData()))
                        .append(",\"alignment_ms\":").append(Math.max(0, alignment))
                        .append(",\"unaligned\":").append(cp.isUnalignedCheckpoint())
                        .append(",\"job\":\"").append(job).append('"');
                if (cp instanceof FailedCheckpointStats) {
                    String message = ((FailedCheckpointStats) cp).getFailureMessage();
                    String reason = reasonOf(message);
                    line.append(",\"reason\":").append(reason == null ? "null" : json(reason))
                            .append(",\"message\":").append(message == null ? "null" : json(message));
                }
                send(line.append('}').toString());
            }
        }
        long completed = baseCompleted + jobCompleted;
        long failed = baseFailed + jobFailed;
        long restarts = baseRestarts + jobRestarts;
        String s = job + "/" + status + (allRunning ? "/all-running" : "");
        if (!s.equals(lastStatus)) {
            send("{\"event\":\"status\",\"status\":\"" + status + "\",\"all_running\":" + allRunning + "}");
            lastStatus = s;
        }
        if (completed > lastCompleted) {
            send("{\"event\":\"checkpoint-completed\",\"completed\":" + completed + "}");
            lastCompleted = completed;
        }
        if (failed > lastFailed) {
            send("{\"event\":\"checkpoint-failed\",\"failed\":" + failed + "}");
            lastFailed = failed;
        }
        if (restarts > lastRestarts) {
            send("{\"event\":\"restart\",\"attempt\":" + restarts + "}");
            lastRestarts = restarts;
        }
        StringBuilder st = new StringBuilder("{\"event\":\"state\",\"status\":\"").append(status)
                .append("\",\"all_running\":").append(allRunning)
                .append(",\"restarts\":").append(restarts)
                .append(",\"attempts\":").append(attempts)
                .append(",\"checkpoints_completed\":").append(completed)
                .append(",\"checkpoints_failed\":").append(failed)
                .append(",\"output_lines\":").append(Observed.outputLines())
                .append(",\"quiet_ms\":").append(Observed.quietMs())
                .append(",\"emitted\":").append(Observed.emitted())
                .append(",\"received\":").append(Observed.received())
                .append(",\"counts\":{");
        String sep = "";
        for (Map.Entry<String, Long> e : Observed.lastCounts().entrySet()) {
            st.append(sep).append(json(e.getKey())).append(':').append(e.getValue());
            sep = ",";
        }
        st.append("},\"positions\":{");
        sep = "";
        for (Map.Entry<Integer, Long> e : Observed.positions().entrySet()) {
            st.append(sep).append('"').append(e.getKey()).append("\":").append(e.getValue());
            sep = ",";
        }
        send(st.append("}}").toString());
    }

    /**
     * The CheckpointFailureReason of a failed checkpoint's message (null when none matches). The
     * statistics keep only the exception's message: a CheckpointException's is its reason's
     * message(), or "PREFIX Failure reason: " + message() when it was given one.
     */
    static String reasonOf(String message) {
        if (message == null) {
            return null;
        }
        String marker = " Failure reason: ";
        int at = message.lastIndexOf(marker);
        String tail = at >= 0 ? message.substring(at + marker.length()) : message;
        for (CheckpointFailureReason r : CheckpointFailureReason.values()) {
            if (r.message().equals(tail) || r.message().equals(message)) {
                return r.name();
            }
        }
        return null;
    }

    private static String refused(String what, String reason) {
        return "{\"event\":\"refused\",\"what\":" + json(what) + ",\"reason\":" + json(reason) + "}";
    }

    private static synchronized void send(String line) {
        proto.println(line);
    }

    static String json(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': out.append("\\\""); break;
                case '\\': out.append("\\\\"); break;
                case '\n': out.append("\\n"); break;
                case '\r': out.append("\\r"); break;
                case '\t': out.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
            }
        }
        return out.append('"').toString();
    }
}
