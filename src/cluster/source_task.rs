//! A source subtask: reads its partitions of the topic, keys each record and sends it to the
//! counter subtask that owns the key's group. Its checkpointed state is its offsets; on a trigger
//! it records them and emits the barrier on every output channel.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::channel::OutputChannel;
use super::element::{Barrier, Origin, Record, StreamMessage};
use super::task::{SnapshotStats, TaskContext, TaskControl, TaskReport, TaskState};
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
}

impl SourceTask {
    pub async fn run(mut self) {
        let ctx = self.ctx.clone();
        ctx.report(TaskReport::Running { attempt: ctx.attempt, task: ctx.task });
        let mut version = self.topic.subscribe();
        let constant: Arc<str> = Arc::from(CONSTANT_KEY);
        let counters = self.outputs.len();
        let mut values = Vec::with_capacity(READ_BATCH);
        loop {
            while let Ok(c) = self.control.try_recv() {
                self.on_control(c).await;
            }
            if ctx.knobs.is_paused() {
                tokio::select! {
                    biased;
                    c = self.control.recv() => match c {
                        Some(c) => self.on_control(c).await,
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
                    if self.outputs[target].add(StreamMessage::Record(Record { key, value, origin, count: 0 }), max_records) {
                        self.outputs[target].flush().await;
                    }
                }
                if n > 0 {
                    let pos = start + n as u64;
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
            for o in &mut self.outputs {
                if o.deadline(timeout).is_some_and(|d| d <= now) {
                    o.flush().await;
                }
            }
            if progressed > 0 {
                tokio::task::yield_now().await;
                continue;
            }
            let mut deadline = self.outputs.iter().filter_map(|o| o.deadline(timeout)).min();
            let behind = self.positions.iter().any(|(p, pos)| *pos < self.topic.len(*p));
            let poll = if behind { Some(BEHIND_RETRY) } else { self.reader.poll_interval() };
            if let Some(after) = poll {
                let retry = Instant::now() + after;
                deadline = Some(deadline.map_or(retry, |d| d.min(retry)));
            }
            tokio::select! {
                biased;
                c = self.control.recv() => match c {
                    Some(c) => self.on_control(c).await,
                    // The JobManager dropped us: the attempt is over.
                    None => return,
                },
                r = version.changed() => if r.is_err() { return },
                _ = sleep_until_opt(deadline) => {}
            }
        }
    }

    async fn on_control(&mut self, c: TaskControl) {
        match c {
            TaskControl::TriggerCheckpoint(barrier) => self.checkpoint(barrier).await,
            // A source's state is its offsets: nothing to commit or undo.
            TaskControl::NotifyCheckpointComplete(_) | TaskControl::NotifyCheckpointAborted(_) => {}
        }
    }

    async fn checkpoint(&mut self, barrier: Barrier) {
        let ctx = &self.ctx;
        let unaligned = barrier.options.overtakes();
        if unaligned {
            // The barrier goes ahead of everything queued: the records it overtakes are
            // persisted downstream as channel state.
            for o in &mut self.outputs {
                o.push_priority(barrier);
            }
        } else {
            for o in &mut self.outputs {
                o.flush().await;
            }
        }
        ctx.report(TaskReport::Ack {
            attempt: ctx.attempt,
            checkpoint: barrier.checkpoint,
            task: ctx.task,
            state: TaskState::Source { offsets: self.positions.clone() },
            stats: SnapshotStats { unaligned, ..SnapshotStats::default() },
            channel_state: Vec::new(),
        });
        ctx.events.publish(Event::BarrierInjected { checkpoint: barrier.checkpoint, source: self.index });
        // In order too: where the overtaken records end (unaligned), or the barrier itself.
        for o in &mut self.outputs {
            o.push_barrier(StreamMessage::Barrier(barrier)).await;
        }
    }
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
            buffer_records: 100,
            storage: Arc::new(CheckpointStorage::new(StorageKind::JobManager, std::path::Path::new("unused"), "job", 5 << 20)),
            output: Arc::default(),
        };
        let (mut outputs, mut gates) = (Vec::new(), Vec::new());
        for j in 0..2 {
            let (out, input) = channel(ChannelStats::new("source[0]".into(), format!("counter[{j}]"), Duration::ZERO), 8, knobs.clone());
            outputs.push(out);
            gates.push(InputGate::new(vec![input], knobs.clone()));
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let reader = topic.clone().reader(&[(0, 0)]);
        let task =
            SourceTask { ctx, index: 0, positions: vec![(0, 0)], reader, topic, control: control_rx, outputs, key_by: KeyBy::Record };
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
        Barrier { checkpoint: id, options: CheckpointOptions { mode: CheckpointMode::ExactlyOnce, alignment } }
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
}
