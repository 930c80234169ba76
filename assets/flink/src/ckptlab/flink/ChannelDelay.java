package ckptlab.flink;

import java.util.ArrayDeque;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;

/**
 * ckptlab's slow channel (`ckptlab.delays`, e.g. "source[1]->counter[*]" = "50ms") on Flink,
 * which has no such option: an operator forward-connected after each source subtask that holds
 * every element of a slow subtask for the channel's latency, records and barriers alike, as a
 * slow wire does (latency, not a service time: it does not slow the throughput).
 *
 * <p>A record leaves `delay` after the source emitted it (its timestamp); a barrier is held in
 * {@link #prepareSnapshotPreBarrier}, which Flink calls before it forwards the barrier: the
 * operator emits the records queued ahead of it at their due times and lets the barrier go
 * `delay` after it arrived. Nothing is queued when a snapshot is taken, so the operator has no
 * state, and no record overtakes the barrier here (a wire keeps order).
 */
public class ChannelDelay extends AbstractStreamOperator<String> implements OneInputStreamOperator<String, String> {
    private static final long serialVersionUID = 1L;
    /** Latency per source subtask, in ms (0: none). */
    private final long[] delayMs;
    private transient ArrayDeque<StreamRecord<String>> queue;
    private transient ArrayDeque<Long> due;

    public ChannelDelay(long[] delayMs) {
        this.delayMs = delayMs;
    }

    private long myDelay() {
        int i = getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
        return i < delayMs.length ? delayMs[i] : 0;
    }

    @Override
    public void open() throws Exception {
        super.open();
        queue = new ArrayDeque<>();
        due = new ArrayDeque<>();
    }

    @Override
    public void processElement(StreamRecord<String> element) throws Exception {
        long delay = myDelay();
        if (delay == 0) {
            output.collect(element);
            return;
        }
        long at = (element.hasTimestamp() ? element.getTimestamp() : System.currentTimeMillis()) + delay;
        queue.add(element.copy(element.getValue()));
        due.add(at);
        if (queue.size() == 1) {
            schedule(at);
        }
    }

    private void schedule(long at) {
        getProcessingTimeService().registerTimer(at, ts -> emitDue());
    }

    private void emitDue() {
        long now = System.currentTimeMillis();
        while (!due.isEmpty() && due.peek() <= now) {
            due.poll();
            output.collect(queue.poll());
        }
        if (!due.isEmpty()) {
            schedule(due.peek());
        }
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        long delay = myDelay();
        if (delay == 0) {
            return;
        }
        long barrierDue = System.currentTimeMillis() + delay;
        while (true) {
            emitDue();
            long now = System.currentTimeMillis();
            if (now >= barrierDue && queue.isEmpty()) {
                return;
            }
            long next = due.isEmpty() ? barrierDue : Math.min(due.peek(), barrierDue);
            Thread.sleep(Math.max(1, next - now));
        }
    }
}
