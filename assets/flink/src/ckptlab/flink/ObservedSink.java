package ckptlab.flink;

import java.io.IOException;

import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;

/**
 * The print (or discard) sink: writes each "(record,count)" at once, as Flink's print() does
 * (so replayed records print again, even under exactly-once), and tells {@link Observed} the
 * count it just wrote for the record's key.
 */
public class ObservedSink implements Sink<String> {
    private static final long serialVersionUID = 1L;
    private final boolean print;
    private final boolean constantKey;

    public ObservedSink(boolean print, boolean constantKey) {
        this.print = print;
        this.constantKey = constantKey;
    }

    @Override
    public SinkWriter<String> createWriter(WriterInitContext context) {
        Observed.sinkStarted();
        return new SinkWriter<String>() {
            @Override
            public void write(String line, Context ctx) {
                Observed.sinkReceived();
                if (print) {
                    System.out.println(line);
                }
                int comma = line.lastIndexOf(',');
                String value = line.substring(1, comma);
                long count = Long.parseLong(line.substring(comma + 1, line.length() - 1));
                Observed.emitted(CheckpointJob.keyOf(value, constantKey), count);
            }

            @Override
            public void flush(boolean endOfInput) {}

            @Override
            public void close() {}
        };
    }
}
