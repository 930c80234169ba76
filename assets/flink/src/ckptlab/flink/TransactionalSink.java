package ckptlab.flink;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.flink.api.connector.sink2.Committer;
import org.apache.flink.api.connector.sink2.CommitterInitContext;
import org.apache.flink.api.connector.sink2.CommittingSinkWriter;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.SupportsCommitter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.core.io.SimpleVersionedSerializer;

/**
 * ckptlab's `job.sink = "transactional"`: a two-phase-commit sink. The writer stages the lines of
 * a checkpoint as one transaction (prepareCommit, part of the snapshot); the committer makes them
 * visible when the checkpoint completes. A transaction is committed once even when Flink commits
 * it again after a restore (its id is remembered, as a Kafka transactional id fences a repeat).
 */
public class TransactionalSink implements Sink<String>, SupportsCommitter<String> {
    private static final long serialVersionUID = 1L;
    /** Committed transaction ids (the "external system" of this sink). */
    private static final Set<String> COMMITTED = ConcurrentHashMap.newKeySet();
    private final boolean constantKey;

    public TransactionalSink(boolean constantKey) {
        this.constantKey = constantKey;
    }

    @Override
    public SinkWriter<String> createWriter(WriterInitContext context) {
        Observed.sinkStarted();
        return new CommittingSinkWriter<String, String>() {
            private final List<String> staged = new ArrayList<>();

            @Override
            public void write(String line, Context ctx) {
                Observed.sinkReceived();
                staged.add(line);
            }

            @Override
            public void flush(boolean endOfInput) {}

            @Override
            public Collection<String> prepareCommit() {
                if (staged.isEmpty()) {
                    return Collections.emptyList();
                }
                // A committable: the transaction id, then its lines.
                String txn = UUID.randomUUID() + "\n" + String.join("\n", staged);
                staged.clear();
                return Collections.singletonList(txn);
            }

            @Override
            public void close() {}
        };
    }

    @Override
    public Committer<String> createCommitter(CommitterInitContext context) {
        return new Committer<String>() {
            @Override
            public void commit(Collection<CommitRequest<String>> requests) {
                for (CommitRequest<String> r : requests) {
                    String[] lines = r.getCommittable().split("\n", -1);
                    if (!COMMITTED.add(lines[0])) {
                        r.signalAlreadyCommitted();
                        continue;
                    }
                    for (int i = 1; i < lines.length; i++) {
                        String line = lines[i];
                        System.out.println(line);
                        int comma = line.lastIndexOf(',');
                        Observed.emitted(CheckpointJob.keyOf(line.substring(1, comma), constantKey),
                                Long.parseLong(line.substring(comma + 1, line.length() - 1)));
                    }
                }
            }

            @Override
            public void close() {}
        };
    }

    @Override
    public SimpleVersionedSerializer<String> getCommittableSerializer() {
        return new SimpleVersionedSerializer<String>() {
            @Override
            public int getVersion() {
                return 1;
            }

            @Override
            public byte[] serialize(String s) {
                return s.getBytes(StandardCharsets.UTF_8);
            }

            @Override
            public String deserialize(int version, byte[] b) {
                return new String(b, StandardCharsets.UTF_8);
            }
        };
    }
}
