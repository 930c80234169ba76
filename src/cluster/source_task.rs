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
