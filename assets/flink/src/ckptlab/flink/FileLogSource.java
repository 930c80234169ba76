package ckptlab.flink;

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.ArrayDeque;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SourceSplit;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.core.io.SimpleVersionedSerializer;

/**
 * ckptlab's file-backed partitioned log as a Flink source (FLIP-27), kept as a Kafka source keeps
 * its partitions: one split per partition file {@code <dir>/<topic>-<p>.log}, the split's state is
 * the next offset (= line number), checkpointed in the reader's operator state; the enumerator
 * keeps only splits not yet assigned. It tails the files: records appear while the job runs.
 *
 * <p>File format (src/connectors/filelog.rs): one record per line, {@code \\} and {@code \n}
 * escapes, a last line without its newline is a torn write and does not exist yet.
 *
 * <p>Starting position: {@code latest} resolves when a reader gets the split (as the Kafka
 * connector's latest offsets initializer does), so records produced while the job is down and
 * not covered by a checkpoint are skipped; {@code earliest} starts at line 0.
 */
public class FileLogSource implements Source<String, FileLogSource.Split, List<FileLogSource.Split>> {
    private static final long serialVersionUID = 1L;
    /** A split's offset before a reader resolved it to the partition's end. */
    static final long LATEST = -1;
    /** How long a reader waits before looking at its files again when it found nothing new. */
    private static final long TAIL_POLL_MS = 5;

    private final String dir;
    private final String topic;
    private final int partitions;
    private final boolean earliest;

    public FileLogSource(String dir, String topic, int partitions, boolean earliest) {
        this.dir = dir;
        this.topic = topic;
        this.partitions = partitions;
        this.earliest = earliest;
    }

    static Path partitionPath(String dir, String topic, int p) {
        return Paths.get(dir, topic + "-" + p + ".log");
    }

    @Override
    public Boundedness getBoundedness() {
        return Boundedness.CONTINUOUS_UNBOUNDED;
    }

    @Override
    public SplitEnumerator<Split, List<Split>> createEnumerator(SplitEnumeratorContext<Split> ctx) {
        List<Split> all = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            all.add(new Split(p, earliest ? 0 : LATEST));
        }
        return new Enumerator(ctx, all);
    }

    @Override
    public SplitEnumerator<Split, List<Split>> restoreEnumerator(SplitEnumeratorContext<Split> ctx, List<Split> unassigned) {
        return new Enumerator(ctx, new ArrayList<>(unassigned));
    }

    @Override
    public SimpleVersionedSerializer<Split> getSplitSerializer() {
        return new SplitSerializer();
    }

    @Override
    public SimpleVersionedSerializer<List<Split>> getEnumeratorCheckpointSerializer() {
        return new SplitListSerializer();
    }

    @Override
    public SourceReader<String, Split> createReader(SourceReaderContext ctx) {
        return new Reader(dir, topic, ctx.getIndexOfSubtask());
    }

    /** One partition file and where to read it next. */
    public static final class Split implements SourceSplit {
        final int partition;
        final long offset;

        Split(int partition, long offset) {
            this.partition = partition;
            this.offset = offset;
        }

        @Override
        public String splitId() {
            return Integer.toString(partition);
        }
    }

    static final class SplitSerializer implements SimpleVersionedSerializer<Split> {
        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(Split s) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            DataOutputStream out = new DataOutputStream(bytes);
            out.writeInt(s.partition);
            out.writeLong(s.offset);
            return bytes.toByteArray();
        }

        @Override
        public Split deserialize(int version, byte[] b) throws IOException {
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(b));
            return new Split(in.readInt(), in.readLong());
        }
    }

    static final class SplitListSerializer implements SimpleVersionedSerializer<List<Split>> {
        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(List<Split> splits) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            DataOutputStream out = new DataOutputStream(bytes);
            out.writeInt(splits.size());
            for (Split s : splits) {
                out.writeInt(s.partition);
                out.writeLong(s.offset);
            }
            return bytes.toByteArray();
        }

        @Override
        public List<Split> deserialize(int version, byte[] b) throws IOException {
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(b));
            int n = in.readInt();
            List<Split> out = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                out.add(new Split(in.readInt(), in.readLong()));
            }
            return out;
        }
    }

    /** Assigns partition p to reader p % parallelism, as soon as that reader registers. */
    static final class Enumerator implements SplitEnumerator<Split, List<Split>> {
        private final SplitEnumeratorContext<Split> ctx;
        private final List<Split> unassigned;

        Enumerator(SplitEnumeratorContext<Split> ctx, List<Split> unassigned) {
            this.ctx = ctx;
            this.unassigned = unassigned;
        }

        @Override
        public void start() {}

        @Override
        public void handleSplitRequest(int subtask, String host) {}

        @Override
        public void addSplitsBack(List<Split> splits, int subtask) {
            // Splits of a failed reader since the last checkpoint: they go to its successor.
            unassigned.addAll(splits);
            if (ctx.registeredReaders().containsKey(subtask)) {
                addReader(subtask);
            }
        }

        @Override
        public void addReader(int subtask) {
            int parallelism = ctx.currentParallelism();
            List<Split> mine = new ArrayList<>();
            unassigned.removeIf(s -> {
                if (s.partition % parallelism == subtask) {
                    mine.add(s);
                    return true;
                }
                return false;
            });
            for (Split s : mine) {
                ctx.assignSplit(s, subtask);
            }
        }

        @Override
        public List<Split> snapshotState(long checkpointId) {
            return new ArrayList<>(unassigned);
        }

        @Override
        public void close() {}
    }

    /** Tails its partition files from the split's offset. */
    static final class Reader implements SourceReader<String, Split> {
        private final String dir;
        private final String topic;
        private final int subtask;
        /** Per partition: the open file, the byte position of the next line, the next offset. */
        private final Map<Integer, Tail> tails = new TreeMap<>();
        private final ArrayDeque<String> ready = new ArrayDeque<>();
        private final ArrayDeque<Integer> readyPartition = new ArrayDeque<>();

        Reader(String dir, String topic, int subtask) {
            this.dir = dir;
            this.topic = topic;
            this.subtask = subtask;
            Observed.readerStarted(subtask);
        }

        @Override
        public void start() {}

        @Override
        public InputStatus pollNext(ReaderOutput<String> output) throws IOException {
            if (ready.isEmpty()) {
                for (Tail t : tails.values()) {
                    t.readWholeLines(ready, readyPartition);
                }
            }
            String value = ready.poll();
            if (value == null) {
                return InputStatus.NOTHING_AVAILABLE;
            }
            int p = readyPartition.poll();
            Tail t = tails.get(p);
            t.emitted++;
            // The emission time travels with the record: a channel delay downstream counts from it.
            Observed.sourceEmitted(subtask);
            output.collect(value, System.currentTimeMillis());
            Observed.position(p, t.emitted);
            return ready.isEmpty() ? InputStatus.NOTHING_AVAILABLE : InputStatus.MORE_AVAILABLE;
        }

        @Override
        public List<Split> snapshotState(long checkpointId) {
            List<Split> out = new ArrayList<>();
            for (Map.Entry<Integer, Tail> e : tails.entrySet()) {
                out.add(new Split(e.getKey(), e.getValue().emitted));
            }
            return out;
        }

        @Override
        public CompletableFuture<Void> isAvailable() {
            if (!ready.isEmpty()) {
                return CompletableFuture.completedFuture(null);
            }
            return CompletableFuture.runAsync(() -> {}, CompletableFuture.delayedExecutor(TAIL_POLL_MS, TimeUnit.MILLISECONDS));
        }

        @Override
        public void addSplits(List<Split> splits) {
            for (Split s : splits) {
                Tail t = new Tail(partitionPath(dir, topic, s.partition));
                try {
                    t.seek(s.offset);
                } catch (IOException e) {
                    throw new RuntimeException("cannot read " + t.path + ": " + e.getMessage(), e);
                }
                tails.put(s.partition, t);
                Observed.position(s.partition, t.emitted);
            }
        }

        @Override
        public void notifyNoMoreSplits() {}

        @Override
        public void close() throws IOException {
            for (Map.Entry<Integer, Tail> e : tails.entrySet()) {
                Observed.forget(e.getKey());
                e.getValue().close();
            }
        }
    }

    /** One partition file being tailed. */
    static final class Tail {
        final Path path;
        private RandomAccessFile file;
        /** Byte position of the next unread line. */
        private long bytePos;
        /** Offsets read from the file (queued or emitted). */
        private long read;
        /** Offsets emitted downstream: the split's state. */
        long emitted;

        Tail(Path path) {
            this.path = path;
        }

        /** Positions at `offset` (LATEST: the number of whole lines now). */
        void seek(long offset) throws IOException {
            byte[] all = Files.exists(path) ? Files.readAllBytes(path) : new byte[0];
            long lines = 0;
            long target = offset;
            long pos = 0;
            for (int i = 0; i < all.length; i++) {
                if (all[i] == '\n') {
                    if (target != LATEST && lines == target) {
                        break;
                    }
                    lines++;
                    pos = i + 1;
                }
            }
            if (target != LATEST && lines < target) {
                throw new IOException("offset " + target + " lies beyond its " + lines + " lines");
            }
            bytePos = pos;
            read = lines;
            emitted = lines;
        }

        void readWholeLines(ArrayDeque<String> values, ArrayDeque<Integer> partitionOf) throws IOException {
            if (file == null) {
                if (!Files.exists(path)) {
                    return;
                }
                file = new RandomAccessFile(path.toFile(), "r");
            }
            long len = file.length();
            if (len <= bytePos) {
                return;
            }
            byte[] buf = new byte[(int) Math.min(len - bytePos, 1 << 20)];
            file.seek(bytePos);
            file.readFully(buf);
            int start = 0;
            int p = partitionOf(path);
            for (int i = 0; i < buf.length; i++) {
                if (buf[i] == '\n') {
                    values.add(decode(new String(buf, start, i - start, StandardCharsets.UTF_8)));
                    partitionOf.add(p);
                    read++;
                    start = i + 1;
                }
            }
            // A last line without its newline is a torn write: it does not exist yet.
            bytePos += start;
        }

        void close() throws IOException {
            if (file != null) {
                file.close();
            }
        }

        private static int partitionOf(Path path) {
            String name = path.getFileName().toString();
            return Integer.parseInt(name.substring(name.lastIndexOf('-') + 1, name.length() - ".log".length()));
        }
    }

    /** A line back to its record: `\\` is a backslash, `\n` a newline. */
    static String decode(String line) {
        if (line.indexOf('\\') < 0) {
            return line;
        }
        StringBuilder out = new StringBuilder(line.length());
        for (int i = 0; i < line.length(); i++) {
            char c = line.charAt(i);
            if (c == '\\' && i + 1 < line.length()) {
                char next = line.charAt(++i);
                out.append(next == 'n' ? '\n' : next);
            } else {
                out.append(c);
            }
        }
        return out.toString();
    }
}
