package ckptlab.flink;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;

/**
 * The seed's StatefulMapper: a count per key in ValueState, emitting "(record,count)".
 * `costMs` per subtask is ckptlab's `ckptlab.record-cost` (a slow consumer: a service time).
 */
public class CountPerKey extends RichMapFunction<String, String> {
    private static final long serialVersionUID = 1L;
    private final long[] costMs;
    private transient ValueState<Long> count;
    private transient long myCost;

    public CountPerKey(long[] costMs) {
        this.costMs = costMs;
    }

    @Override
    public void open(OpenContext ctx) {
        count = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Long.class));
        int i = getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
        myCost = i < costMs.length ? costMs[i] : 0;
    }

    @Override
    public String map(String value) throws Exception {
        if (myCost > 0) {
            Thread.sleep(myCost);
        }
        Long c = count.value();
        long next = (c == null ? 0 : c) + 1;
        count.update(next);
        return "(" + value + "," + next + ")";
    }
}
