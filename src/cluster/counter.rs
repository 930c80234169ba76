//! The counter subtask, the seed's StatefulMapper: one count per key in keyed state; for each
//! record it adds one and emits `(record, count)`.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::aligner::{Aligner, GateOutput};
use super::channel::{ChannelStats, Input, OutputChannel};
use super::element::{Barrier, Origin, Record, StreamMessage};
use super::source_task::sleep_until_opt;
use super::task::{SnapshotStats, TaskContext, TaskReport, TaskState};
use crate::events::Event;
use crate::state::{KeyedStateBackend, StateError, StateHandle};

/// What the view shows of a keyed task.
#[derive(Debug, Default, Clone)]
pub struct KeyedTaskView {
    pub aligning: Option<u64>,
}

pub struct CounterTask {
    pub ctx: TaskContext,
    pub index: usize,
    pub key_groups: Range<u16>,
    pub input: mpsc::Receiver<Input>,
    pub channels: Vec<Arc<ChannelStats>>,
    pub output: OutputChannel,
    pub backend: Box<dyn KeyedStateBackend>,
    pub restore: Option<Vec<StateHandle>>,
    /// The checkpoint `restore` comes from (0 when there is none).
    pub restore_checkpoint: u64,
    pub view: Arc<Mutex<KeyedTaskView>>,
}

impl CounterTask {
    pub async fn run(mut self) {
        let ctx = self.ctx.clone();
        if let Some(handles) = self.restore.take() {
            if let Err(e) = self.backend.restore(&handles, self.key_groups.clone()) {
                let checkpoint = self.restore_checkpoint;
                ctx.report(TaskReport::RestoreFailed { attempt: ctx.attempt, task: ctx.task, checkpoint, reason: format!("restore failed: {e}") });
                return;
            }
        }
        // The auditor starts from what the restored state holds (a full read: skipped when it is off).
        if ctx.auditor.enabled() {
            match self.backend.entries() {
                Ok(entries) => ctx.auditor.restored(ctx.attempt, self.index, entries),
                Err(e) => return self.fail(e),
            }
        }
        ctx.report(TaskReport::Running { attempt: ctx.attempt, task: ctx.task });
        let mut gate = Aligner::new(self.channels.clone());
        let mut outq = Vec::new();
        let mut applied = Vec::new();
        loop {
            let timeout = ctx.knobs.buffer_timeout();
            let deadline = self.output.deadline(timeout);
            tokio::select! {
                biased;
                msg = self.input.recv() => {
                    // Every upstream task is gone: wait to be cancelled by the failover.
                    let Some((ch, elements)) = msg else { return std::future::pending().await };
                    self.channels[ch].taken(&elements);
                    let per_record = self.output.per_record(timeout);
                    let max_records = if per_record { 1 } else { ctx.buffer_records };
                    for e in elements {
                        // Fast path: a record on an open channel needs nothing from the aligner.
                        let e = match e {
                            StreamMessage::Record(r) if !gate.is_blocked(ch) => {
                                if let Err(e) = self.apply(r, max_records, &mut applied).await {
                                    return self.fail(e);
                                }
                                continue;
                            }
                            other => other,
                        };
                        gate.push(ch, e, &mut outq);
                        for o in outq.drain(..) {
                            match o {
                                GateOutput::Record(r) => {
                                    if let Err(e) = self.apply(r, max_records, &mut applied).await {
                                        return self.fail(e);
                                    }
                                }
                                GateOutput::BarrierReceived { checkpoint, channel } => {
                                    if ctx.events.active() {
                                        ctx.events.publish(Event::BarrierReceived {
                                            checkpoint,
                                            task: ctx.name(),
                                            channel: self.channels[channel].name(),
                                        });
                                    }
                                }
                                GateOutput::AlignmentStarted { checkpoint } => {
                                    self.set_aligning(Some(checkpoint));
                                    ctx.events.publish(Event::AlignmentStarted { checkpoint, task: ctx.name() });
                                }
                                GateOutput::Checkpoint { barrier, alignment, buffered } => {
                                    ctx.auditor.applied(ctx.attempt, self.index, &applied);
                                    applied.clear();
                                    self.set_aligning(None);
                                    self.checkpoint(barrier, alignment, buffered).await;
                                }
                            }
                        }
                    }
                    ctx.auditor.applied(ctx.attempt, self.index, &applied);
                    applied.clear();
                }
                _ = sleep_until_opt(deadline) => self.output.flush().await,
            }
        }
    }

    async fn apply(&mut self, mut r: Record, max_records: usize, applied: &mut Vec<(Origin, Arc<str>, u64)>) -> Result<(), StateError> {
        let count = self.backend.increment(&r.key)?;
        if self.ctx.auditor.enabled() {
            applied.push((r.origin, r.key.clone(), count));
        }
        r.count = count;
        if self.output.add(StreamMessage::Record(r), max_records) {
            self.output.flush().await;
        }
        Ok(())
    }

    fn set_aligning(&self, checkpoint: Option<u64>) {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).aligning = checkpoint;
    }

    async fn checkpoint(&mut self, barrier: Barrier, alignment: Duration, buffered: u64) {
        let ctx = &self.ctx;
        let id = barrier.checkpoint;
        if !alignment.is_zero() || buffered > 0 {
            ctx.events.publish(Event::AlignmentFinished {
                checkpoint: id,
                task: ctx.name(),
                duration_ms: alignment.as_millis() as u64,
                buffered,
            });
        }
        let target = ctx.storage.target(id, &format!("counter-{}", self.index), self.key_groups.clone());
        match self.backend.snapshot(&target) {
            Ok(snap) => {
                ctx.auditor.snapshot(ctx.attempt, self.index, id);
                let stats = SnapshotStats {
                    sync_ms: snap.sync_duration.as_millis() as u64,
                    async_ms: snap.async_duration.as_millis() as u64,
                    alignment_ms: alignment.as_millis() as u64,
                    buffered,
                };
                ctx.events.publish(Event::SnapshotTaken {
                    checkpoint: id,
                    task: ctx.name(),
                    bytes: snap.checkpointed_size,
                    sync_ms: stats.sync_ms,
                    async_ms: stats.async_ms,
                });
                ctx.report(TaskReport::Ack {
                    attempt: ctx.attempt,
                    checkpoint: id,
                    task: ctx.task,
                    state: TaskState::Keyed { handle: snap.handle, checkpointed_size: snap.checkpointed_size, full_size: snap.full_size },
                    stats,
                });
            }
            Err(e) => ctx.report(TaskReport::Decline {
                attempt: ctx.attempt,
                checkpoint: id,
                task: ctx.task,
                reason: format!("{}: {e}", ctx.name()),
            }),
        }
        // The barrier goes on either way: downstream must not stay blocked by a failed snapshot.
        self.output.push_barrier(StreamMessage::Barrier(barrier)).await;
    }

    fn fail(&self, e: StateError) {
        let ctx = &self.ctx;
        ctx.report(TaskReport::Failed { attempt: ctx.attempt, task: ctx.task, reason: format!("state backend error: {e}") });
    }
}
