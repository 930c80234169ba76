package ckptlab.flink;

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

/**
 * The seed's CheckpointExample as ckptlab runs it, from a job.properties that ckptlab writes:
 * source (the file-backed log, parallelism = job.parallelism) -> [channel delay] -> keyBy ->
 * count per key -> sink (parallelism 1). `flink.*` keys are Flink options, passed as they are.
 *
 * <p>On a real cluster: {@code flink run -c ckptlab.flink.CheckpointJob job.jar job.properties}.
 */
public class CheckpointJob {
    /** ckptlab's `job.key-by = "constant"` key (the seed's keyBy((any) -> 1)). */
    static final String CONSTANT_KEY = "1";

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: flink run -c ckptlab.flink.CheckpointJob job.jar job.properties");
            System.exit(2);
        }
        Properties props = load(args[0]);
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(flinkConfiguration(props));
        build(env, props);
        env.execute(props.getProperty("job.name", "ckptlab"));
    }

    static Properties load(String path) throws IOException {
        Properties props = new Properties();
        try (InputStream in = new FileInputStream(path)) {
            props.load(in);
        }
        return props;
    }

    /** The `flink.*` keys without their prefix. */
    static Configuration flinkConfiguration(Properties props) {
        Map<String, String> m = new HashMap<>();
        for (String k : props.stringPropertyNames()) {
            if (k.startsWith("flink.")) {
                m.put(k.substring("flink.".length()), props.getProperty(k));
            }
        }
        return Configuration.fromMap(m);
    }

    static String keyOf(String value, boolean constantKey) {
        return constantKey ? CONSTANT_KEY : value;
    }

    static long[] perSubtask(Properties props, String prefix, int n) {
        long[] out = new long[n];
        for (int i = 0; i < n; i++) {
            out[i] = Long.parseLong(props.getProperty(prefix + i, "0"));
        }
        return out;
    }

    public static void build(StreamExecutionEnvironment env, Properties props) {
        int parallelism = Integer.parseInt(props.getProperty("job.parallelism", "2"));
        int partitions = Integer.parseInt(props.getProperty("source.partitions", "2"));
        boolean constantKey = "constant".equals(props.getProperty("job.key-by", "record"));
        String sink = props.getProperty("job.sink", "print");
        FileLogSource source = new FileLogSource(
                props.getProperty("source.dir"),
                props.getProperty("source.topic", "input-topic"),
                partitions,
                "earliest".equals(props.getProperty("source.auto-offset-reset", "latest")));
        DataStream<String> records = env.fromSource(source, WatermarkStrategy.noWatermarks(), "source")
                .setParallelism(parallelism)
                .uid("source");
        long[] delays = perSubtask(props, "delay.source.", parallelism);
        boolean slow = false;
        for (long d : delays) {
            slow |= d > 0;
        }
        if (slow) {
            // Its own task (not chained to the source): the source keeps reading while it holds
            // a barrier, as a sender keeps sending into a slow wire.
            records = records.transform("channel-delay", Types.STRING, new ChannelDelay(delays))
                    .setParallelism(parallelism)
                    .disableChaining()
                    .uid("channel-delay");
        }
        DataStream<String> counts = records.keyBy(v -> keyOf(v, constantKey), Types.STRING)
                .map(new CountPerKey(perSubtask(props, "cost.counter.", parallelism)))
                .returns(Types.STRING)
                .setParallelism(parallelism)
                .uid("counter")
                .name("counter");
        switch (sink) {
            case "transactional":
                counts.sinkTo(new TransactionalSink(constantKey)).setParallelism(1).uid("sink").name("sink");
                break;
            case "kafka":
                // Flink's KafkaSink (KafkaOutput, in the export only, compiled against the
                // connector's jar): loaded by name, so that this class builds without it.
                try {
                    Class.forName("ckptlab.flink.KafkaOutput")
                            .getMethod("attach", DataStream.class, Properties.class)
                            .invoke(null, counts, props);
                } catch (ReflectiveOperationException | LinkageError e) {
                    throw new IllegalStateException("job.sink=kafka needs ckptlab.flink.KafkaOutput and org.apache.flink:flink-connector-kafka on the classpath (see README.md): " + e, e);
                }
                break;
            default:
                counts.sinkTo(new ObservedSink("print".equals(sink), constantKey)).setParallelism(1).uid("sink").name("sink");
        }
    }
}
