//! The operator runner (Flink's StreamTask with its mailbox, Arroyo's operator run loop): the one
//! loop every non-source subtask runs. It owns the input gate, the barrier handlers, channel
//! state, snapshots and acks, the output channel, the control channel and the per-record cost;
//! the [`Operator`] it runs only processes records and snapshots its state.
//!
//! ```text
//! control ──► notify complete / aborted ──► operator
//! gate ──► records ──────────────────────► operator.process ──► output
//!      └─► barriers ─► aligner (EXACTLY_ONCE) / tracker (AT_LEAST_ONCE)
//!                        └─► block / snapshot / persist channel state / ack / forward
//! ```

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::aligner::{Aligner, AlignerAction};
use super::channel::OutputChannel;
use super::element::{Barrier, Record, StreamMessage};
use super::gate::{GateEvent, InputGate};
use super::operator::{OpenError, Operator};
use super::source_task::sleep_until_opt;
use super::task::{DeclineReason, PersistedRecord, SnapshotStats, TaskContext, TaskControl, TaskReport, TaskState};
use super::tracker::{BarrierTracker, TrackerAction};
use crate::config::CheckpointMode;
use crate::events::Event;

/// What the view shows of a running task's inputs.
#[derive(Debug, Default, Clone)]
pub struct TaskRunView {
    /// The checkpoint whose alignment holds channels blocked.
    pub aligning: Option<u64>,
    /// The checkpoint whose overtaken records are being persisted (unaligned).
    pub persisting: Option<u64>,
}

/// A snapshot taken and waiting for its channel state before it is acknowledged.
struct PendingAck {
    checkpoint: u64,
    state: TaskState,
    stats: SnapshotStats,
    channel_state: Vec<PersistedRecord>,
    /// Channels whose overtaken records are still being captured (unaligned): the ack waits
    /// until each capture has read up to its channel's in-order barrier, not until those
    /// records are processed.
    capturing: Vec<bool>,
}

pub struct OperatorRunner<O: Operator> {
    pub ctx: TaskContext,
    pub op: O,
    pub gate: InputGate,
    pub output: Option<OutputChannel>,
    pub control: mpsc::UnboundedReceiver<TaskControl>,
    /// How long each record takes in this subtask (`ckptlab.record-cost`): a slow consumer.
    pub record_cost: Duration,
    /// Channel state of the restored checkpoint, replayed before any new input.
    pub replay: Vec<PersistedRecord>,
    pub view: Arc<Mutex<TaskRunView>>,
}

/// The loop's own state, apart from what it was built with.
struct Loop {
    aligner: Aligner,
    tracker: BarrierTracker,
    /// Elements of a buffer left when its channel was blocked in the middle of it.
    rest: Vec<VecDeque<StreamMessage>>,
    pending: Option<PendingAck>,
    actions: Vec<AlignerAction>,
}

/// The task cannot go on (its state backend failed): it reports and waits to be cancelled.
struct Fatal(String);

impl<O: Operator> OperatorRunner<O> {
    pub async fn run(mut self) {
        let ctx = self.ctx.clone();
        match self.op.open(&ctx) {
            Ok(()) => {}
            Err(OpenError::Restore { checkpoint, message }) => {
                return ctx.report(TaskReport::RestoreFailed { attempt: ctx.attempt, task: ctx.task, checkpoint, reason: message })
            }
            Err(OpenError::Failed(reason)) => return ctx.report(TaskReport::Failed { attempt: ctx.attempt, task: ctx.task, reason }),
        }
        ctx.report(TaskReport::Running { attempt: ctx.attempt, task: ctx.task });
        let n = self.gate.len();
        let mut l = Loop {
            aligner: Aligner::new(n),
            tracker: BarrierTracker::new(n),
            rest: (0..n).map(|_| VecDeque::new()).collect(),
            pending: None,
            actions: Vec::new(),
        };
        if let Err(Fatal(reason)) = self.replay_channel_state().await {
            return self.fail(reason);
        }
        loop {
            let timeout = ctx.knobs.buffer_timeout();
            let flush_at = self.output.as_ref().and_then(|o| o.deadline(timeout));
            let deadline = [flush_at, l.aligner.deadline()].into_iter().flatten().min();
            let result = tokio::select! {
                biased;
                c = self.control.recv() => match c {
                    Some(c) => {
                        self.on_control(c);
                        Ok(())
                    }
                    // The JobManager dropped the attempt.
                    None => return,
                },
                e = self.gate.next() => match e {
                    Some(GateEvent::Buffer(ch, elements)) => self.on_buffer(&mut l, ch, elements).await,
                    Some(GateEvent::Priority(ch, barrier)) => self.on_barrier(&mut l, ch, barrier, true).await,
                    None => return,
                },
                _ = sleep_until_opt(deadline) => self.on_deadline(&mut l, flush_at).await,
            };
            if let Err(Fatal(reason)) = result {
                return self.fail(reason);
            }
            self.collect_captures(&mut l);
        }
    }

    fn fail(&self, reason: String) {
        let ctx = &self.ctx;
        ctx.report(TaskReport::Failed { attempt: ctx.attempt, task: ctx.task, reason });
    }

    fn on_control(&mut self, c: TaskControl) {
        match c {
            TaskControl::NotifyCheckpointComplete(id) => self.op.notify_checkpoint_complete(&self.ctx, id),
            TaskControl::NotifyCheckpointAborted(id) => self.op.notify_checkpoint_aborted(&self.ctx, id),
            // Only sources take checkpoints on a trigger; others on their barriers.
            TaskControl::TriggerCheckpoint(_) => {}
        }
    }

    /// The restored checkpoint's in-flight records go first, as if they had just arrived.
    async fn replay_channel_state(&mut self) -> Result<(), Fatal> {
        let replay = std::mem::take(&mut self.replay);
        if replay.is_empty() {
            return Ok(());
        }
        if self.output.is_some() {
            // They will reach the sink again: count them as emitted into this attempt.
            self.ctx.progress.source_emitted.fetch_add(replay.len() as u64, Ordering::Relaxed);
        }
        for p in replay {
            self.process(p.record).await?;
        }
        self.op.end_of_batch(&self.ctx);
        Ok(())
    }

    async fn on_deadline(&mut self, l: &mut Loop, flush_at: Option<Instant>) -> Result<(), Fatal> {
        let now = Instant::now();
        if flush_at.is_some_and(|d| d <= now) {
            if let Some(o) = &mut self.output {
                o.flush().await;
            }
        }
        if l.aligner.deadline().is_some_and(|d| d <= now) {
            l.aligner.on_timeout(now, &mut l.actions);
            if let Some(id) = l.aligner.persisting_any() {
                let after_ms = l.aligner.elapsed_ms();
                self.ctx.events.publish(Event::AlignmentTimedOut { checkpoint: id, task: self.ctx.name(), after_ms });
            }
            self.run_actions(l).await?;
            self.drain_rest(l).await?;
        }
        Ok(())
    }

    async fn on_buffer(&mut self, l: &mut Loop, ch: usize, elements: Vec<StreamMessage>) -> Result<(), Fatal> {
        let records = elements.iter().filter(|e| e.is_record()).count() as u64;
        if self.output.is_none() {
            self.ctx.progress.sink_received.fetch_add(records, Ordering::Relaxed);
        }
        let mut elements = elements.into_iter();
        while let Some(e) = elements.next() {
            self.element(l, ch, e).await?;
            if self.gate.is_blocked(ch) {
                // Blocked by this buffer's barrier: the rest waits with the channel.
                l.rest[ch].extend(elements);
                break;
            }
        }
        self.op.end_of_batch(&self.ctx);
        self.drain_rest(l).await
    }

    /// Elements left in buffers of channels that are no longer blocked.
    async fn drain_rest(&mut self, l: &mut Loop) -> Result<(), Fatal> {
        let mut progressed = true;
        while progressed {
            progressed = false;
            for ch in 0..l.rest.len() {
                while !self.gate.is_blocked(ch) {
                    let Some(e) = l.rest[ch].pop_front() else { break };
                    progressed = true;
                    self.element(l, ch, e).await?;
                }
            }
        }
        self.op.end_of_batch(&self.ctx);
        Ok(())
    }

    async fn element(&mut self, l: &mut Loop, ch: usize, e: StreamMessage) -> Result<(), Fatal> {
        match e {
            StreamMessage::Record(r) => self.process(r).await,
            StreamMessage::Barrier(b) => self.on_barrier(l, ch, b, false).await,
            StreamMessage::CancelCheckpoint(id) => {
                // Whichever handler tracks it lets it go; the other ignores it.
                l.aligner.on_cancel(id, &mut l.actions);
                if let Some(TrackerAction::Abort(_)) = l.tracker.on_cancel(id) {
                    if !l.actions.iter().any(|a| matches!(a, AlignerAction::Abort { checkpoint, .. } if *checkpoint == id)) {
                        l.actions.push(AlignerAction::Abort { checkpoint: id, decline: None });
                    }
                }
                self.run_actions(l).await
            }
        }
    }

    async fn process(&mut self, r: Record) -> Result<(), Fatal> {
        if !self.record_cost.is_zero() {
            tokio::time::sleep(self.record_cost).await;
        }
        let out = self.op.process(&self.ctx, r).map_err(|e| Fatal(format!("state backend error: {e}")))?;
        if let (Some(r), Some(o)) = (out, self.output.as_mut()) {
            let per_record = o.per_record(self.ctx.knobs.buffer_timeout());
            let max = if per_record { 1 } else { self.ctx.buffer_records };
            if o.add(StreamMessage::Record(r), max) {
                o.flush().await;
            }
        }
        Ok(())
    }

    async fn on_barrier(&mut self, l: &mut Loop, ch: usize, b: Barrier, priority: bool) -> Result<(), Fatal> {
        if self.ctx.events.active() {
            self.ctx.events.publish(Event::BarrierReceived {
                checkpoint: b.checkpoint,
                task: self.ctx.name(),
                channel: self.gate.stats(ch).name(),
            });
        }
        match b.options.mode {
            CheckpointMode::ExactlyOnce => l.aligner.on_barrier(ch, b, priority, &mut l.actions),
            CheckpointMode::AtLeastOnce => {
                if let Some(TrackerAction::Snapshot(b)) = l.tracker.on_barrier(b) {
                    l.actions.push(AlignerAction::Snapshot { barrier: b, alignment: Duration::ZERO, unaligned: false });
                    l.actions.push(AlignerAction::ChannelStateComplete { checkpoint: b.checkpoint });
                }
            }
        }
        self.run_actions(l).await
    }

    async fn run_actions(&mut self, l: &mut Loop) -> Result<(), Fatal> {
        let actions = std::mem::take(&mut l.actions);
        for a in actions {
            match a {
                AlignerAction::AlignmentStarted { checkpoint } => {
                    self.set_view(l);
                    self.ctx.events.publish(Event::AlignmentStarted { checkpoint, task: self.ctx.name() });
                }
                AlignerAction::Block(ch) => {
                    self.gate.block(ch);
                    self.set_view(l);
                }
                AlignerAction::UnblockAll => {
                    self.gate.unblock_all();
                    self.set_view(l);
                }
                AlignerAction::Snapshot { barrier, alignment, unaligned } => self.snapshot(l, barrier, alignment, unaligned).await,
                AlignerAction::ChannelStateComplete { checkpoint } => self.barriers_complete(l, checkpoint),
                AlignerAction::Abort { checkpoint, decline } => {
                    if l.pending.as_ref().is_some_and(|p| p.checkpoint == checkpoint) {
                        l.pending = None;
                        self.gate.cancel_captures();
                    }
                    let ctx = &self.ctx;
                    if let Some(reason) = decline {
                        ctx.report(TaskReport::Decline { attempt: ctx.attempt, checkpoint, task: ctx.task, reason });
                    }
                    self.op.notify_checkpoint_aborted(&self.ctx, checkpoint);
                    if let Some(o) = &mut self.output {
                        o.push_barrier(StreamMessage::CancelCheckpoint(checkpoint)).await;
                    }
                    self.set_view(l);
                }
            }
        }
        Ok(())
    }

    fn set_view(&self, l: &Loop) {
        let mut v = self.view.lock().unwrap_or_else(|e| e.into_inner());
        v.aligning = l.aligner.aligning();
        v.persisting = l.aligner.persisting_any();
    }

    /// Records waiting on the channels blocked right now.
    fn waiting(&self) -> u64 {
        (0..self.gate.len())
            .filter(|ch| self.gate.is_blocked(*ch))
            .map(|ch| self.gate.stats(ch).in_flight.load(Ordering::Relaxed).max(0) as u64)
            .sum()
    }

    async fn snapshot(&mut self, l: &mut Loop, barrier: Barrier, alignment: Duration, unaligned: bool) {
        let id = barrier.checkpoint;
        let buffered = self.waiting();
        let ctx = self.ctx.clone();
        if !alignment.is_zero() || buffered > 0 {
            ctx.events.publish(Event::AlignmentFinished {
                checkpoint: id,
                task: ctx.name(),
                duration_ms: alignment.as_millis() as u64,
                buffered,
            });
        }
        // What the operator applied so far belongs in this snapshot.
        self.op.end_of_batch(&ctx);
        let forward = match self.op.snapshot(&ctx, id) {
            Ok(snap) => {
                let stats = SnapshotStats {
                    sync_ms: snap.sync.as_millis() as u64,
                    async_ms: snap.r#async.as_millis() as u64,
                    alignment_ms: alignment.as_millis() as u64,
                    buffered,
                    unaligned,
                    ..SnapshotStats::default()
                };
                let bytes = match &snap.state {
                    TaskState::Keyed { checkpointed_size, .. } => *checkpointed_size,
                    _ => 0,
                };
                ctx.events.publish(Event::SnapshotTaken {
                    checkpoint: id,
                    task: ctx.name(),
                    bytes,
                    sync_ms: stats.sync_ms,
                    async_ms: stats.async_ms,
                });
                let mut capturing = vec![false; self.gate.len()];
                if unaligned {
                    // The records queued ahead of each late channel's barrier were overtaken.
                    for (ch, c) in capturing.iter_mut().enumerate() {
                        if !l.aligner.arrived(ch) {
                            self.gate.start_capture(ch, id);
                            *c = true;
                        }
                    }
                }
                l.pending = Some(PendingAck { checkpoint: id, state: snap.state, stats, channel_state: Vec::new(), capturing });
                StreamMessage::Barrier(barrier)
            }
            Err(e) => {
                // Flink's CancelCheckpointMarker: downstream stops waiting for this barrier.
                ctx.report(TaskReport::Decline {
                    attempt: ctx.attempt,
                    checkpoint: id,
                    task: ctx.task,
                    reason: DeclineReason::SnapshotFailed(format!("{}: {e}", ctx.name())),
                });
                StreamMessage::CancelCheckpoint(id)
            }
        };
        self.set_view(l);
        self.collect_captures(l);
        if let Some(o) = &mut self.output {
            if unaligned {
                if let StreamMessage::Barrier(b) = &forward {
                    // Ahead of everything queued at this task's output and on the wire.
                    let mut b = *b;
                    b.options.alignment = super::element::Alignment::Unaligned;
                    o.push_priority(b);
                    o.push_barrier(StreamMessage::Barrier(b)).await;
                    return;
                }
            }
            o.push_barrier(forward).await;
        }
    }

    /// Moves what the gate captured into the pending snapshot's channel state; acknowledges it
    /// once every capture is done.
    fn collect_captures(&mut self, l: &mut Loop) {
        let Some(p) = l.pending.as_mut() else { return };
        if !p.capturing.iter().any(|c| *c) {
            return;
        }
        self.gate.pump_captures();
        for ch in 0..p.capturing.len() {
            if !p.capturing[ch] {
                continue;
            }
            if let Some((records, done)) = self.gate.take_captured(ch) {
                for record in records {
                    p.stats.persisted_records += 1;
                    p.stats.persisted_bytes += record.persisted_size();
                    p.channel_state.push(PersistedRecord { channel: ch, record });
                }
                p.capturing[ch] = !done;
            }
        }
        if !p.capturing.iter().any(|c| *c) {
            let id = p.checkpoint;
            self.acknowledge(l, id);
        }
    }

    /// The aligner says every in-order barrier of `checkpoint` came.
    fn barriers_complete(&mut self, l: &mut Loop, checkpoint: u64) {
        if l.pending.as_ref().is_some_and(|p| p.checkpoint == checkpoint && p.capturing.iter().any(|c| *c)) {
            return self.collect_captures(l);
        }
        self.acknowledge(l, checkpoint);
    }

    fn acknowledge(&mut self, l: &mut Loop, checkpoint: u64) {
        self.set_view(l);
        let Some(p) = l.pending.take_if(|p| p.checkpoint == checkpoint) else { return };
        let ctx = &self.ctx;
        if p.stats.persisted_records > 0 {
            ctx.events.publish(Event::ChannelStatePersisted {
                checkpoint,
                task: ctx.name(),
                records: p.stats.persisted_records,
                bytes: p.stats.persisted_bytes,
            });
        }
        ctx.report(TaskReport::Ack {
            attempt: ctx.attempt,
            checkpoint,
            task: ctx.task,
            state: p.state,
            stats: p.stats,
            channel_state: p.channel_state,
        });
    }
}
