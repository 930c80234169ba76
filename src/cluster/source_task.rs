//! A source subtask: reads its partitions of the topic, keys each record and sends it to the
//! counter subtask that owns the key's group. Its checkpointed state is its offsets; on a trigger
//! it records them and emits the barrier on every output channel. A trigger is taken at once,
//! also while the source waits for credit (Flink's mails run while a task waits for output
//! availability, StreamTask.java:656-705): an unaligned barrier then goes to the head of each
//! queue and the records it overtook there are the source's output channel state.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::channel::{wait_for_barriers, OutputChannel, TimeoutableBarrier};
use super::element::{Barrier, Origin, Record, StreamMessage};
use super::task::{ChannelEnd, PersistedRecord, SnapshotStats, TaskContext, TaskControl, TaskReport, TaskState};
use crate::audit::CONSTANT_KEY;
use crate::config::KeyBy;
use crate::connectors::{Topic, TopicReader};
use crate::events::Event;
use crate::keygroup::{key_group, operator_index};

/// Records read from one partition before looking at control messages again.
const READ_BATCH: usize = 256;
/// How soon a source that is behind the topic's end, but got nothing, asks its reader again
/// (a Kafka consumer's fetch may still be on its way).
const BEHIND_RETRY: std::time::Duration = std::time::Duration::from_millis(5);
/// Flink's message of a task whose stop-with-savepoint was aborted (StreamTask.java:1576).
const STOP_WITH_SAVEPOINT_FAILED: &str = "Stop-with-savepoint failed.";

pub struct SourceTask {
    pub ctx: TaskContext,
    pub index: usize,
    /// (partition, next offset) for each partition this subtask reads.
    pub positions: Vec<(u32, u64)>,
    /// Reads the assigned partitions (for Kafka: this subtask's own consumer).
    pub reader: Box<dyn TopicReader>,
    /// The topic, for its end offsets and change notifications.
    pub topic: Arc<dyn Topic>,
    pub control: mpsc::UnboundedReceiver<TaskControl>,
    pub outputs: Vec<OutputChannel>,
    pub key_by: KeyBy,
    /// Output channel state of the restored checkpoint: sent again before anything new is read.
    pub replay: Vec<PersistedRecord>,
    /// Stopped for this stop-with-savepoint: nothing is read or emitted again (an abort fails it).
    pub stopped_for: Option<u64>,
    /// A checkpoint whose aligned barriers may time out while still queued at this source: its
    /// ack waits for them (see [`TimeoutableBarrier`]).
    pub awaiting: Option<AwaitingAck>,
}

/// A source's checkpoint taken, acknowledged once its timeoutable barriers left or switched.
pub struct AwaitingAck {
    barriers: TimeoutableBarrier,
    offsets: Vec<(u32, u64)>,
    stats: SnapshotStats,
    channel_state: Vec<PersistedRecord>,
}

impl SourceTask {
    pub async fn run(mut self) {
        let ctx = self.ctx.clone();
        ctx.report(TaskReport::Running { attempt: ctx.attempt, task: ctx.task });
        let mut version = self.topic.subscribe();
        let constant: Arc<str> = Arc::from(CONSTANT_KEY);
        let counters = self.outputs.len();
        let mut values = Vec::with_capacity(READ_BATCH);
        if !self.replay_output_state().await {
            return;
        }
        loop {
            while let Ok(c) = self.control.try_recv() {
                self.on_control(c);
            }
            self.poll_awaiting();
            if ctx.knobs.is_paused() {
                tokio::select! {
                    biased;
                    c = self.control.recv() => match c {
                        Some(c) => self.on_control(c),
                        None => return,
                    },
                    _ = ctx.knobs.wait_while_paused() => {}
                }
                continue;
            }
            version.borrow_and_update();
            let per_record = self.outputs.first().is_some_and(|o| o.per_record(ctx.knobs.buffer_timeout()));
            let max_records = if per_record { 1 } else { ctx.buffer_records };
            let mut progressed = 0;
            for i in 0..self.positions.len() {
                if self.stopped_for.is_some() {
                    break;
                }
                let (partition, start) = self.positions[i];
                values.clear();
                let n = self.reader.read(partition, start, READ_BATCH, &mut values);
                // The broker lost the records from `start` on: go on where auto.offset.reset says.
                if n == 0 {
                    if let Some(to) = self.reader.reset(partition, start) {
                        self.positions[i].1 = to;
                        if let Some(p) = ctx.progress.positions.lock().unwrap_or_else(|e| e.into_inner()).get_mut(partition as usize) {
                            *p = to;
                        }
                        ctx.auditor.source_reset(ctx.attempt, partition, start, to);
                        progressed += 1;
                        continue;
                    }
                }
                for (j, value) in values.drain(..).enumerate() {
                    let key = match self.key_by {
                        KeyBy::Record => value.clone(),
                        KeyBy::Constant => constant.clone(),
                    };
                    let target = operator_index(key_group(&key), counters);
                    let origin = Origin { partition, offset: start + j as u64 };
                    // The offsets a trigger taken from here on records: this record is sent.
                    self.positions[i].1 = origin.offset + 1;
                    if self.outputs[target].add(StreamMessage::Record(Record { key, value, origin, count: 0 }), max_records)
                        && !self.send_full_buffer(target).await
                    {
                        return;
                    }
                    // Stopped for a savepoint while waiting for credit: its barrier went after
                    // this record, and nothing of the batch after it is sent.
                    if self.stopped_for.is_some() {
                        break;
                    }
                }
                if n > 0 {
                    // Where the source is: after the batch, or after the record sent last.
                    let pos = self.positions[i].1;
                    let n = (pos - start) as usize;
                    self.positions[i].1 = pos;
                    progressed += n;
                    ctx.progress.source_emitted.fetch_add(n as u64, Ordering::Relaxed);
                    if let Some(p) = ctx.progress.positions.lock().unwrap_or_else(|e| e.into_inner()).get_mut(partition as usize) {
                        *p = pos;
                    }
                    ctx.auditor.source_advanced(ctx.attempt, partition, pos);
                }
            }
            let timeout = ctx.knobs.buffer_timeout();
            let now = Instant::now();
            for target in 0..self.outputs.len() {
                if self.outputs[target].deadline(timeout).is_some_and(|d| d <= now) && !self.send_full_buffer(target).await {
                    return;
                }
            }
            if progressed > 0 {
                tokio::task::yield_now().await;
                continue;
            }
            let mut deadline = self.outputs.iter().filter_map(|o| o.deadline(timeout)).min();
            let behind = self.positions.iter().any(|(p, pos)| *pos < self.topic.len(*p));
            let poll = if self.stopped_for.is_some() {
                None
            } else if behind {
                Some(BEHIND_RETRY)
            } else {
                self.reader.poll_interval()
            };
            if let Some(after) = poll {
                let retry = Instant::now() + after;
                deadline = Some(deadline.map_or(retry, |d| d.min(retry)));
            }
            let barriers = self.awaiting.as_ref().map(|a| (a.barriers.links(&self.outputs), a.barriers.deadline));
            tokio::select! {
                biased;
                c = self.control.recv() => match c {
                    Some(c) => self.on_control(c),
                    // The JobManager dropped us: the attempt is over.
                    None => return,
                },
                () = async { if let Some((links, at)) = barriers { wait_for_barriers(links, at).await } }, if self.awaiting.is_some() => {}
                r = version.changed() => if r.is_err() { return },
                _ = sleep_until_opt(deadline) => {}
            }
        }
    }

    /// Sends the buffer of output `target`, waiting for credit while taking control messages
    /// (a trigger among them) as they come. False when the attempt is over.
    async fn send_full_buffer(&mut self, target: usize) -> bool {
        while !self.outputs[target].try_flush() {
            let link = self.outputs[target].link();
            // A barrier that times out meanwhile switches at once: this is where a source under
            // backpressure waits.
            let barriers = self.awaiting.as_ref().map(|a| (a.barriers.links(&self.outputs), a.barriers.deadline));
            tokio::select! {
                biased;
                c = self.control.recv() => match c {
                    Some(c) => self.on_control(c),
                    None => return false,
                },
                () = async { if let Some((links, at)) = barriers { wait_for_barriers(links, at).await } }, if self.awaiting.is_some() => {
                    self.poll_awaiting()
                }
                () = link.credit() => {}
            }
        }
        true
    }

    /// Acknowledges the checkpoint awaiting its timeoutable barriers once none is queued here
    /// any more, switching those still queued when the timeout has passed.
    fn poll_awaiting(&mut self) {
        let Some(a) = self.awaiting.as_mut() else { return };
        let mut overtaken = Vec::new();
        if !a.barriers.poll(&mut self.outputs, Instant::now(), &mut overtaken) {
            return;
        }
        let AwaitingAck { barriers, offsets, mut stats, mut channel_state } = self.awaiting.take().expect("checked");
        if !overtaken.is_empty() {
            stats.unaligned = true;
        }
        for (j, record) in overtaken {
            persist_output(&mut stats, &mut channel_state, j, record);
        }
        self.acknowledge(barriers.checkpoint, offsets, stats, channel_state);
    }

    fn acknowledge(&self, checkpoint: u64, offsets: Vec<(u32, u64)>, stats: SnapshotStats, channel_state: Vec<PersistedRecord>) {
        let ctx = &self.ctx;
        if stats.persisted_records > 0 {
            ctx.events.publish(Event::ChannelStatePersisted {
                checkpoint,
                task: ctx.name(),
                records: stats.persisted_records,
                bytes: stats.persisted_bytes,
            });
        }
        ctx.report(TaskReport::Ack { attempt: ctx.attempt, checkpoint, task: ctx.task, state: TaskState::Source { offsets }, stats, channel_state });
    }

    /// The restored output channel state goes out first, each record to the subtask that owns
    /// its key now. False when the attempt is over.
    async fn replay_output_state(&mut self) -> bool {
        let replay = std::mem::take(&mut self.replay);
        if replay.is_empty() || self.outputs.is_empty() {
            return true;
        }
        self.ctx.progress.source_emitted.fetch_add(replay.len() as u64, Ordering::Relaxed);
        let max_records = self.ctx.buffer_records;
        for p in replay {
            let target = operator_index(key_group(&p.record.key), self.outputs.len());
            if self.outputs[target].add(StreamMessage::Record(p.record), max_records) && !self.send_full_buffer(target).await {
                return false;
            }
        }
        true
    }

    fn on_control(&mut self, c: TaskControl) {
        match c {
            TaskControl::TriggerCheckpoint(barrier) => self.checkpoint(barrier),
            TaskControl::StopWithSavepoint(barrier) => {
                self.stopped_for = Some(barrier.checkpoint);
                self.checkpoint(barrier);
            }
            // The stop-with-savepoint failed: this source stopped for good, so it fails, as a
            // Flink task that took a synchronous savepoint does on its abort (StreamTask.java
            // :1575-1576); the failover restores the latest checkpoint.
            TaskControl::NotifyCheckpointAborted(id) if self.stopped_for == Some(id) => self.ctx.report(TaskReport::Failed {
                attempt: self.ctx.attempt,
                task: self.ctx.task,
                reason: STOP_WITH_SAVEPOINT_FAILED.into(),
            }),
            // A source's state is its offsets: nothing to commit or undo.
            TaskControl::NotifyCheckpointComplete(_) | TaskControl::NotifyCheckpointAborted(_) => {}
            TaskControl::Finish => self.ctx.report(TaskReport::Finished { attempt: self.ctx.attempt, task: self.ctx.task }),
        }
    }

    /// Takes the checkpoint at once: never waits for credit (a barrier is an event, and the
    /// buffer it finishes already holds its memory). A barrier that may time out is acknowledged
    /// once it left every output queue, or switched there ([`Self::poll_awaiting`]).
    fn checkpoint(&mut self, barrier: Barrier) {
        let unaligned = barrier.options.overtakes();
        // Flink's source start delay: trigger to the task taking it in its mailbox
        // (StreamTask.java:1349: `currentTimeMillis() - checkpointMetaData.getTimestamp()`).
        let start_delay_ms = Instant::now().saturating_duration_since(barrier.triggered_at).as_millis() as u64;
        let mut stats = SnapshotStats { unaligned, start_delay_ms, ..SnapshotStats::default() };
        let mut channel_state = Vec::new();
        for (j, o) in self.outputs.iter_mut().enumerate() {
            if unaligned {
                // Ahead of everything queued: what it overtook is this source's output channel
                // state (PipelinedSubpartition.java:219-248), persisted here, not downstream.
                for record in o.push_priority(barrier) {
                    persist_output(&mut stats, &mut channel_state, j, record);
                }
            } else {
                o.push_barrier(StreamMessage::Barrier(barrier));
            }
        }
        let offsets = self.positions.clone();
        // A newer checkpoint: the older one's barriers no longer switch (it is over).
        self.awaiting = None;
        match TimeoutableBarrier::new(&barrier, self.outputs.len()) {
            Some(barriers) => {
                self.awaiting = Some(AwaitingAck { barriers, offsets, stats, channel_state });
                self.poll_awaiting();
            }
            None => self.acknowledge(barrier.checkpoint, offsets, stats, channel_state),
        }
        self.ctx.events.publish(Event::BarrierInjected { checkpoint: barrier.checkpoint, source: self.index });
    }
}

/// Adds a record the barrier overtook in output `channel` to the source's output channel state.
fn persist_output(stats: &mut SnapshotStats, channel_state: &mut Vec<PersistedRecord>, channel: usize, record: Record) {
    let bytes = record.persisted_size();
    stats.persisted_records += 1;
    stats.persisted_bytes += bytes;
    stats.output_records += 1;
    stats.output_bytes += bytes;
    channel_state.push(PersistedRecord { channel, record, end: ChannelEnd::Output });
}

/// Sleeps until `deadline`, or forever when there is none.
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Auditor;
    use crate::cluster::channel::{channel, ChannelStats};
    use crate::cluster::element::{Alignment, CheckpointOptions};
    use crate::cluster::gate::{GateEvent, InputGate};
    use crate::cluster::task::{AttemptProgress, RuntimeKnobs, TaskId};
    use crate::config::{CheckpointMode, StorageKind};
    use crate::connectors::EmbeddedTopic;
    use crate::events::EventBus;
    use crate::state::storage::CheckpointStorage;
    use std::time::Duration;

    struct Harness {
        control: mpsc::UnboundedSender<TaskControl>,
        reports: mpsc::UnboundedReceiver<TaskReport>,
        gates: Vec<InputGate>,
    }

    /// A source over one partition holding `values`, with two output channels; buffers go out
    /// by the 100 ms buffer timeout (or a barrier).
    fn start(values: &[&str]) -> Harness {
        start_with(values, 8, 100)
    }

    /// The same with `credit` buffers per channel of `buffer_records` records each.
    fn start_with(values: &[&str], credit: usize, buffer_records: usize) -> Harness {
        let knobs = RuntimeKnobs::new(Duration::ZERO, Duration::from_millis(100));
        let events = EventBus::new(Instant::now());
        let topic = EmbeddedTopic::new("input-topic", 1, events.clone());
        for v in values {
            topic.produce(v, Some(0)).expect("produce");
        }
        let topic: Arc<dyn Topic> = topic;
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let ctx = TaskContext {
            attempt: 1,
            task: TaskId::Source(0),
            reports: reports_tx,
            events,
            auditor: Arc::new(Auditor::new(false, topic.clone(), 2, KeyBy::Record)),
            progress: Arc::new(AttemptProgress { positions: std::sync::Mutex::new(vec![0]), ..AttemptProgress::default() }),
            knobs: knobs.clone(),
            buffer_records,
            storage: Arc::new(CheckpointStorage::new(StorageKind::JobManager, std::path::Path::new("unused"), "job", 5 << 20)),
            output: Arc::default(),
            end: Default::default(),
        };
        let (mut outputs, mut gates) = (Vec::new(), Vec::new());
        for j in 0..2 {
            let (out, input) =
                channel(ChannelStats::new(TaskId::Source(0), TaskId::Counter(j), Duration::ZERO), credit, knobs.clone());
            outputs.push(out);
            gates.push(InputGate::new(vec![input], knobs.clone()));
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let reader = topic.clone().reader(&[(0, 0)]);
        let task = SourceTask {
            ctx,
            index: 0,
            positions: vec![(0, 0)],
            reader,
            topic,
            control: control_rx,
            outputs,
            key_by: KeyBy::Record,
            replay: Vec::new(),
            stopped_for: None,
            awaiting: None,
        };
        tokio::spawn(task.run());
        Harness { control, reports, gates }
    }

    /// What a gate has now: "r<offset>", "b<id>", "p<id>" (priority lane).
    async fn drain(gate: &mut InputGate) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout(Duration::ZERO, gate.next()).await {
            match e {
                GateEvent::Priority(_, b) => seen.push(format!("p{}", b.checkpoint)),
                GateEvent::Buffer(_, elements) => seen.extend(elements.iter().map(|m| match m {
                    StreamMessage::Record(r) => format!("r{}", r.origin.offset),
                    StreamMessage::Barrier(b) => format!("b{}", b.checkpoint),
                    StreamMessage::CancelCheckpoint(id) => format!("c{id}"),
                })),
            }
        }
        seen
    }

    fn barrier(id: u64, alignment: Alignment) -> Barrier {
        Barrier { checkpoint: id, options: CheckpointOptions { mode: CheckpointMode::ExactlyOnce, alignment }, triggered_at: Instant::now() }
    }

    /// Catches: a source that acks offsets other than those of the records ahead of its barrier,
    /// leaves buffered records behind the barrier, or misses an output channel.
    #[tokio::test(start_paused = true)]
    async fn a_trigger_acks_the_offsets_read_and_emits_the_barrier_behind_their_records_on_every_output() {
        let values = ["a", "b", "c", "d", "e", "f"];
        let mut h = start(&values);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(matches!(h.reports.try_recv(), Ok(TaskReport::Running { .. })));
        h.control.send(TaskControl::TriggerCheckpoint(barrier(1, Alignment::Aligned))).expect("control");
        tokio::time::sleep(Duration::from_millis(1)).await;
        let Ok(TaskReport::Ack { checkpoint: 1, state: TaskState::Source { offsets }, .. }) = h.reports.try_recv() else {
            panic!("an ack")
        };
        assert_eq!(offsets, vec![(0, values.len() as u64)]);
        let mut records = 0;
        for g in &mut h.gates {
            let seen = drain(g).await;
            assert_eq!(seen.last().map(String::as_str), Some("b1"), "{seen:?}");
            records += seen.iter().filter(|s| s.starts_with('r')).count();
        }
        assert_eq!(records, values.len(), "every record read went out ahead of the barrier");
    }

    /// Catches: an unaligned trigger that sends its barrier behind the buffered records.
    #[tokio::test(start_paused = true)]
    async fn an_unaligned_trigger_puts_the_barrier_on_every_priority_lane() {
        let mut h = start(&["a", "b", "c", "d", "e", "f"]);
        tokio::time::sleep(Duration::from_millis(1)).await;
        h.control.send(TaskControl::TriggerCheckpoint(barrier(1, Alignment::Unaligned))).expect("control");
        tokio::time::sleep(Duration::from_millis(1)).await;
        for g in &mut h.gates {
            assert_eq!(drain(g).await.first().map(String::as_str), Some("p1"));
        }
    }

    /// The step the issue asks for first: a source blocked on credit takes the trigger at once
    /// (Flink's mails run while a task waits for output availability), the barrier goes to the
    /// head of each queue, and every record it overtook is in the source's output channel state
    /// exactly once, up to the offsets acknowledged.
    /// Catches: a trigger taken only between read batches or once credit came (here it never
    /// comes: no ack), offsets that run ahead of or behind the records sent, and output state
    /// that misses or repeats a record.
    #[tokio::test(start_paused = true)]
    async fn a_source_waiting_for_credit_takes_an_unaligned_trigger_at_once_and_persists_what_it_overtook() {
        let values: Vec<String> = (0..1000).map(|i| format!("v{i}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let mut h = start_with(&refs, 2, 4);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(matches!(h.reports.try_recv(), Ok(TaskReport::Running { .. })));
        h.control.send(TaskControl::TriggerCheckpoint(barrier(1, Alignment::Unaligned))).expect("control");
        tokio::time::sleep(Duration::from_millis(1)).await;
        let Ok(TaskReport::Ack { state: TaskState::Source { offsets }, channel_state, stats, .. }) = h.reports.try_recv() else {
            panic!("an ack while backpressured")
        };
        let sent = offsets[0].1;
        assert!(sent < 100, "the source was blocked on credit after a few buffers: {sent}");
        let mut persisted: Vec<u64> = channel_state.iter().map(|p| p.record.origin.offset).collect();
        assert!(channel_state.iter().all(|p| p.end == ChannelEnd::Output));
        persisted.sort_unstable();
        assert_eq!(persisted, (0..sent).collect::<Vec<_>>(), "nothing was received: every record sent is output state, once");
        assert_eq!((stats.output_records, stats.persisted_records), (sent, sent));
        for g in &mut h.gates {
            assert_eq!(drain(g).await.first().map(String::as_str), Some("p1"), "at the head of the queue");
        }
    }

    /// An aligned trigger is taken at once too: its barrier is an event, queued behind the data
    /// without credit. Catches: an aligned trigger that waits for the queue to drain.
    #[tokio::test(start_paused = true)]
    async fn a_source_waiting_for_credit_takes_an_aligned_trigger_at_once() {
        let values: Vec<String> = (0..1000).map(|i| format!("v{i}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let mut h = start_with(&refs, 2, 4);
        tokio::time::sleep(Duration::from_millis(10)).await;
        h.control.send(TaskControl::TriggerCheckpoint(barrier(1, Alignment::Aligned))).expect("control");
        tokio::time::sleep(Duration::from_millis(1)).await;
        let acks: Vec<_> = std::iter::from_fn(|| h.reports.try_recv().ok()).filter(|r| matches!(r, TaskReport::Ack { .. })).collect();
        let [TaskReport::Ack { state: TaskState::Source { offsets }, channel_state, .. }] = &acks[..] else { panic!("one ack: {acks:?}") };
        assert!(channel_state.is_empty(), "aligned: no channel state");
        let mut records = 0;
        for g in &mut h.gates {
            let seen = drain(g).await;
            let at = seen.iter().position(|s| s == "b1").expect("the barrier, in order");
            records += seen[..at].iter().filter(|s| s.starts_with('r')).count() as u64;
        }
        assert_eq!(records, offsets[0].1, "the barrier is behind exactly the records its offsets cover");
    }

    fn values(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("v{i}")).collect()
    }

    /// Under sustained backpressure an aligned barrier that may time out waits behind the full
    /// queue at the source; when the aligned-checkpoint-timeout counted from the trigger passes
    /// it switches there: it goes to the head of each queue, every record it overtook is the
    /// source's output channel state exactly once, and the ack comes then, however long the
    /// queue (Flink's SubtaskCheckpointCoordinatorImpl.registerAlignmentTimer and
    /// PipelinedSubpartition.alignedBarrierTimeout).
    /// Catches: no sender-side switch (no ack: the queue never drains here), the timeout counted
    /// from the source's own barrier instead of the trigger (the ack at 100 ms, not 70), an ack
    /// before the switch or one that waits for the queue, and output state that misses or
    /// repeats a record, or leaves an in-order copy of the barrier behind.
    #[tokio::test(start_paused = true)]
    async fn a_timed_out_aligned_barrier_queued_at_a_backpressured_source_switches_there() {
        let values = values(2000);
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        for credit in [2, 40] {
            let mut h = start_with(&refs, credit, 4);
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(matches!(h.reports.try_recv(), Ok(TaskReport::Running { .. })));
            // Triggered 30 ms ago: 70 ms of the 100 ms timeout are left.
            let b = Barrier { triggered_at: Instant::now() - Duration::from_millis(30), ..barrier(1, Alignment::AlignedWithTimeout { timeout_ms: 100 }) };
            h.control.send(TaskControl::TriggerCheckpoint(b)).expect("control");
            tokio::time::sleep(Duration::from_millis(69)).await;
            assert!(h.reports.try_recv().is_err(), "credit {credit}: aligned until the timeout from the trigger");
            tokio::time::sleep(Duration::from_millis(2)).await;
            let Ok(TaskReport::Ack { state: TaskState::Source { offsets }, channel_state, stats, .. }) = h.reports.try_recv() else {
                panic!("credit {credit}: an ack once the timeout passed")
            };
            let sent = offsets[0].1;
            assert!(sent > 0 && sent < 4 * (credit as u64 + 2) * 2, "credit {credit}: blocked on credit after {sent}");
            let mut persisted: Vec<u64> = channel_state.iter().map(|p| p.record.origin.offset).collect();
            assert!(channel_state.iter().all(|p| p.end == ChannelEnd::Output));
            persisted.sort_unstable();
            assert_eq!(persisted, (0..sent).collect::<Vec<_>>(), "credit {credit}: every record ahead of the barrier, once");
            assert!(stats.unaligned, "switched");
            for g in &mut h.gates {
                let seen = drain(g).await;
                assert_eq!(seen.first().map(String::as_str), Some("p1"), "credit {credit}: at the head");
                assert!(!seen.iter().any(|s| s == "b1"), "credit {credit}: no in-order copy left: {seen:?}");
            }
        }
    }

    /// A barrier that may time out and reaches its receivers in time is acknowledged as an
    /// aligned one, as soon as it left the queues, with no channel state.
    /// Catches: an ack that always waits for the timeout (every aligned-with-timeout checkpoint
    /// as slow as the timeout), or an ack before the barrier left (then the switch could not be
    /// taken back into the checkpoint).
    #[tokio::test(start_paused = true)]
    async fn a_timeoutable_barrier_received_in_time_is_acknowledged_when_it_left_without_channel_state() {
        let mut h = start(&["a", "b", "c"]);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(matches!(h.reports.try_recv(), Ok(TaskReport::Running { .. })));
        h.control.send(TaskControl::TriggerCheckpoint(barrier(1, Alignment::AlignedWithTimeout { timeout_ms: 1000 }))).expect("control");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(h.reports.try_recv().is_err(), "the barriers are still queued");
        for g in &mut h.gates {
            assert_eq!(drain(g).await.last().map(String::as_str), Some("b1"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let Ok(TaskReport::Ack { channel_state, stats, .. }) = h.reports.try_recv() else { panic!("an ack once they left") };
        assert!(channel_state.is_empty() && !stats.unaligned);
    }
}
