package ckptlab.flink;

import java.lang.management.ManagementFactory;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.CheckpointListener;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;

/**
 * `ckptlab bench --flink`'s job on a MiniCluster in this JVM: sequence source (parallelism p)
 * -> keyBy(value % keys) -> a ValueState<Long> count per key -> a discarding sink, bounded at
 * `records`. One unmeasured warm-up job first (same options, `warmup` records: the JIT and the
 * state backend's natives are warm), then the measured one; prints one JSON line of figures.
 *
 * <p>Arguments are `key=value`: `records`, `keys`, `parallelism`, `warmup`, and `flink.KEY` for
 * Flink options, passed as they are (`flink.execution.checkpointing.interval=1s`).
 *
 * <p>records/s is records over the time from the first record reaching a sink to the last sink
 * subtask's end of input (its writer's {@code flush(true)}): the processing, without the
 * deployment before it nor the final checkpoint and the shutdown after it (reported apart).
 */
public class Bench {
    /** The first record at any sink subtask and the last end of input, System.nanoTime(). */
    static final AtomicLong FIRST = new AtomicLong(Long.MAX_VALUE);
    static final AtomicLong LAST = new AtomicLong(Long.MIN_VALUE);
    /** The highest checkpoint id notified complete to a counter subtask. */
    static final AtomicLong LAST_CHECKPOINT = new AtomicLong(0);

    public static void main(String[] args) throws Exception {
        Map<String, String> a = new HashMap<>();
        Map<String, String> flink = new HashMap<>();
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq < 1) {
                System.err.println("Bench: `" + arg + "` is not key=value");
                System.exit(2);
            }
            String k = arg.substring(0, eq);
            String v = arg.substring(eq + 1);
            if (k.startsWith("flink.")) {
                flink.put(k.substring("flink.".length()), v);
            } else {
                a.put(k, v);
            }
        }
        long records = Long.parseLong(a.getOrDefault("records", "20000000"));
        long keys = Long.parseLong(a.getOrDefault("keys", "10000"));
        int parallelism = Integer.parseInt(a.getOrDefault("parallelism", "2"));
        long warmup = Long.parseLong(a.getOrDefault("warmup", "0"));
        Configuration conf = Configuration.fromMap(flink);
        long jvmStartMs = ManagementFactory.getRuntimeMXBean().getStartTime();

        double warmupS = 0;
        if (warmup > 0) {
            long w0 = System.nanoTime();
            job(conf, parallelism, warmup, keys).execute("ckptlab bench warm-up");
            warmupS = (System.nanoTime() - w0) / 1e9;
        }
        FIRST.set(Long.MAX_VALUE);
        LAST.set(Long.MIN_VALUE);
        LAST_CHECKPOINT.set(0);
        long submitted = System.nanoTime();
        long submittedMs = System.currentTimeMillis();
        JobExecutionResult result = job(conf, parallelism, records, keys).execute("ckptlab bench");
        long returned = System.nanoTime();
        double processingS = (LAST.get() - FIRST.get()) / 1e9;
        System.out.println("{\"records\":" + records
                + ",\"keys\":" + keys
                + ",\"parallelism\":" + parallelism
                + ",\"processing_s\":" + processingS
                + ",\"records_per_s\":" + (records / processingS)
                + ",\"submit_to_first_record_s\":" + ((FIRST.get() - submitted) / 1e9)
                + ",\"submit_to_end_s\":" + ((returned - submitted) / 1e9)
                + ",\"net_runtime_ms\":" + result.getNetRuntime()
                + ",\"jvm_start_to_submit_s\":" + ((submittedMs - jvmStartMs) / 1e3)
                + ",\"warmup_records\":" + warmup
                + ",\"warmup_s\":" + warmupS
                + ",\"last_checkpoint\":" + LAST_CHECKPOINT.get()
                + "}");
    }

    static StreamExecutionEnvironment job(Configuration conf, int parallelism, long records, long keys) {
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(parallelism);
        final long k = keys;
        env.fromSequence(0, records - 1)
                .keyBy(v -> v % k)
                .process(new Counter())
                .sinkTo(new Discard());
        return env;
    }

    /** The count per key in ValueState, emitted with every record (as ckptlab's counter). */
    static class Counter extends KeyedProcessFunction<Long, Long, Long> implements CheckpointListener {
        private static final long serialVersionUID = 1L;
        private transient ValueState<Long> count;

        @Override
        public void open(OpenContext ctx) {
            count = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Long.class));
        }

        @Override
        public void processElement(Long value, Context ctx, Collector<Long> out) throws Exception {
            Long c = count.value();
            long next = c == null ? 1 : c + 1;
            count.update(next);
            out.collect(next);
        }

        @Override
        public void notifyCheckpointComplete(long id) {
            LAST_CHECKPOINT.accumulateAndGet(id, Math::max);
        }
    }

    /** Discards every record; notes when the first arrived and when its input ended. */
    static class Discard implements Sink<Long> {
        private static final long serialVersionUID = 1L;

        @Override
        public SinkWriter<Long> createWriter(WriterInitContext context) {
            return new SinkWriter<Long>() {
                private boolean seen;

                @Override
                public void write(Long value, Context ctx) {
                    if (!seen) {
                        seen = true;
                        FIRST.accumulateAndGet(System.nanoTime(), Math::min);
                    }
                }

                @Override
                public void flush(boolean endOfInput) {
                    if (endOfInput) {
                        LAST.accumulateAndGet(System.nanoTime(), Math::max);
                    }
                }

                @Override
                public void close() {}
            };
        }
    }
}
