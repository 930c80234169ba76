package ckptlab.flink;

import java.util.Properties;

import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.streaming.api.datastream.DataStream;

/**
 * {@code job.sink = kafka} on a real cluster: the counter's {@code (key,count)} lines to a Kafka
 * topic through Flink's KafkaSink (org.apache.flink:flink-connector-kafka, which must be on the
 * cluster's classpath: see README.md). Only in {@code ckptlab flink export}: the bridge's
 * MiniCluster has no Kafka connector (it is not in the PyPI wheels of Flink), so
 * {@code ckptlab flink run} refuses the kafka sink, and {@link CheckpointJob} loads this class by
 * name. The options are ckptlab's {@code sink.*}, KafkaSinkBuilder's own: delivery guarantee
 * (none / at-least-once: flush at the barrier / exactly-once: a transaction per checkpoint,
 * committed when it completes), the transactional id prefix, the producer properties.
 */
public final class KafkaOutput {
    private KafkaOutput() {}

    public static void attach(DataStream<String> counts, Properties props) {
        Properties producer = new Properties();
        for (String k : props.stringPropertyNames()) {
            if (k.startsWith("sink.properties.")) {
                producer.setProperty(k.substring("sink.properties.".length()), props.getProperty(k));
            }
        }
        DeliveryGuarantee guarantee;
        switch (props.getProperty("sink.delivery-guarantee", "none")) {
            case "exactly-once":
                guarantee = DeliveryGuarantee.EXACTLY_ONCE;
                break;
            case "at-least-once":
                guarantee = DeliveryGuarantee.AT_LEAST_ONCE;
                break;
            default:
                guarantee = DeliveryGuarantee.NONE;
        }
        KafkaSink<String> sink = KafkaSink.<String>builder()
                .setBootstrapServers(props.getProperty("sink.bootstrap-servers", "localhost:9092"))
                .setRecordSerializer(KafkaRecordSerializationSchema.builder()
                        .setTopic(props.getProperty("sink.output-topic", "output-topic"))
                        .setValueSerializationSchema(new SimpleStringSchema())
                        .build())
                .setDeliveryGuarantee(guarantee)
                .setTransactionalIdPrefix(props.getProperty("sink.transactional-id-prefix", "ckptlab"))
                .setKafkaProducerConfig(producer)
                .build();
        counts.sinkTo(sink).setParallelism(1).uid("sink").name("sink");
    }
}
