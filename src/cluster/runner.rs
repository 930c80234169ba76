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
//! writes ──► asynchronous snapshot parts done ──► ack
//! ```
//!
//! A snapshot has two parts, as in Flink: the synchronous part runs on the task when the barrier
//! is processed (a copy of heap state, a RocksDB checkpoint of hard links), and the barrier goes
//! on at once; the asynchronous part (serialise, write, upload) runs on a blocking thread while
//! the task goes on processing records. The acknowledgement goes when the write finished and
//! (unaligned) the overtaken records are captured. A task that goes away before acknowledging
//! leaves nothing behind: running writes see the cancellation and delete what they wrote, and a
//! written snapshot not yet acknowledged is deleted when dropped.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::aligner::{Aligner, AlignerAction};
use super::channel::{wait_for_barriers, OutputChannel, TimeoutableBarrier};
use super::element::{Barrier, Record, StreamMessage};
use super::gate::{GateEvent, InputGate};
use super::operator::{OpenError, Operator, OperatorSnapshot};
use super::source_task::sleep_until_opt;
use super::task::{ChannelEnd, DeclineReason, PersistedRecord, SnapshotStats, TaskContext, TaskControl, TaskReport, TaskState};
use super::tracker::{BarrierTracker, TrackerAction};
use crate::config::CheckpointMode;
use crate::events::Event;
use crate::state::{PendingSnapshot, Snapshot, SnapshotCancellation, StateError};

/// Simulated storage latency: an asynchronous snapshot part takes at least 1 ms per 64 KB it
/// wrote (64 MB/s), and at least 1 ms. Under tokio's paused clock (the tests) a blocking write
/// takes no model time at all, so without it no failure could ever land during a write; on the
/// real clock, a write slower than this waits no longer.
const SIMULATED_STORAGE_BYTES_PER_MS: u64 = 64 * 1024;

/// How often a receiver looks again for a timed-out checkpoint's in-order barriers to convert.
const CONVERT_RETRY: Duration = Duration::from_millis(1);

fn simulated_write_latency(bytes: u64) -> Duration {
    Duration::from_millis((bytes / SIMULATED_STORAGE_BYTES_PER_MS).max(1))
}

/// What the view shows of a running task's inputs.
#[derive(Debug, Default, Clone)]
pub struct TaskRunView {
    /// The checkpoint whose alignment holds channels blocked.
    pub aligning: Option<u64>,
    /// The checkpoint whose overtaken records are being persisted (unaligned).
    pub persisting: Option<u64>,
    /// The checkpoints whose barrier reached this task and that it has not acknowledged yet,
    /// oldest first: what a checkpoint that fails meanwhile shows of this subtask.
    pub checkpoints: Vec<CheckpointAtTask>,
}

/// How far one checkpoint got at a task that has not acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckpointAtTask {
    pub checkpoint: u64,
    /// When its first barrier reached the task (Flink's `markAlignmentStart`).
    pub barrier_at: Instant,
    /// From the trigger to `barrier_at` (the barrier's timestamp to its arrival).
    pub start_delay: Duration,
    /// When the task took its snapshot (`None`: still aligning).
    pub snapshot_at: Option<Instant>,
}

/// Checkpoints a task tracks at once in its view (older ones are long failed).
const TRACKED_CHECKPOINTS: usize = 16;

/// What a task's view and its input channels say of `checkpoint` (for a checkpoint that fails:
/// which subtasks never acknowledged and where each was). `views` are the non-source tasks' views.
pub fn progress_of(
    checkpoint: u64,
    views: &[(crate::types::TaskId, &Mutex<TaskRunView>)],
    channels: &[Arc<super::channel::ChannelStats>],
) -> Vec<super::coordinator::TaskProgress> {
    views
        .iter()
        .map(|(task, view)| {
            let at = view.lock().unwrap_or_else(|e| e.into_inner()).checkpoints.iter().find(|c| c.checkpoint == checkpoint).copied();
            let inputs = channels.iter().filter(|c| c.to == *task);
            let (mut records_ahead, mut without_barrier, mut blocked_records) = (0, 0, 0);
            for c in inputs {
                let in_flight = c.in_flight.load(Ordering::Relaxed).max(0) as u64;
                if c.blocked.load(Ordering::Relaxed) {
                    blocked_records += in_flight;
                } else if let Some(b) = c.barriers().into_iter().find(|b| b.checkpoint == checkpoint) {
                    records_ahead += b.records_ahead;
                } else {
                    // Its sender has not sent the barrier yet (or this task took it already, at
                    // least-once): everything queued is ahead of it.
                    without_barrier += 1;
                    records_ahead += in_flight;
                }
            }
            super::coordinator::TaskProgress {
                task: *task,
                barrier_at: at.map(|a| a.barrier_at),
                start_delay: at.map(|a| a.start_delay),
                snapshot_at: at.and_then(|a| a.snapshot_at),
                records_ahead,
                channels_without_barrier: without_barrier,
                blocked_records,
            }
        })
        .collect()
}

/// A snapshot taken and waiting for its asynchronous part and its channel state before it is
/// acknowledged.
struct PendingAck {
    checkpoint: u64,
    state: StatePart,
    stats: SnapshotStats,
    channel_state: Vec<PersistedRecord>,
    /// Every barrier of the checkpoint came: the input channel state is complete.
    barriers_done: bool,
    /// The barrier forwarded has left the output queue, or switched there: the output channel
    /// state is complete.
    output_done: bool,
}

impl PendingAck {
    /// Adds an overtaken record to the channel state (Flink's ChannelStateWriter.addInputData /
    /// addOutputData).
    fn persist(&mut self, channel: usize, record: Record, end: ChannelEnd) {
        let bytes = record.persisted_size();
        self.stats.persisted_records += 1;
        self.stats.persisted_bytes += bytes;
        if end == ChannelEnd::Output {
            self.stats.output_records += 1;
            self.stats.output_bytes += bytes;
        }
        self.channel_state.push(PersistedRecord { channel, record, end });
    }
}

/// Where a pending snapshot's state is.
enum StatePart {
    /// Its asynchronous part is writing it.
    Writing,
    /// Written, not yet acknowledged.
    Written(Unacknowledged),
    /// Complete after the synchronous part (a sink's staged lines).
    Ready(TaskState),
}

/// A written snapshot nobody acknowledged yet. Dropped without [`Unacknowledged::into_ack`] (the
/// task was cancelled, or the checkpoint aborted, while it was written or waited for its ack),
/// it deletes what it wrote, on a blocking thread: a snapshot that was never acknowledged must
/// leave nothing in storage (the JobManager may already have discarded its checkpoint directory,
/// which a late write would otherwise bring back).
struct Unacknowledged(Option<Snapshot>);

impl Unacknowledged {
    fn snapshot(&self) -> &Snapshot {
        self.0.as_ref().expect("only into_ack takes it")
    }

    /// The snapshot is about to be acknowledged: from now on the JobManager owns its files.
    fn into_ack(mut self) -> Snapshot {
        self.0.take().expect("only into_ack takes it")
    }
}

impl Drop for Unacknowledged {
    fn drop(&mut self) {
        let Some(s) = self.0.take() else { return };
        if s.written.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || s.discard())),
            Err(_) => s.discard(),
        }
    }
}

/// An asynchronous snapshot part that finished: its result, and how long it took.
struct WriteDone {
    checkpoint: u64,
    result: Result<Unacknowledged, StateError>,
    elapsed: Duration,
}

/// Cancels the snapshot writes still running when the loop goes away (the task was aborted, or
/// it ended).
struct CancelOnDrop(SnapshotCancellation);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

pub struct OperatorRunner<O: Operator> {
    pub ctx: TaskContext,
    pub op: O,
    pub gate: InputGate,
    pub output: Option<OutputChannel>,
    pub control: mpsc::UnboundedReceiver<TaskControl>,
    /// How long each record takes in this subtask (`ckptlab.record-cost`): a slow consumer.
    pub record_cost: Duration,
    /// Channel state of the restored checkpoint: its output part is sent again before any new
    /// output, its input part processed before any new input.
    pub replay: Vec<PersistedRecord>,
    pub view: Arc<Mutex<TaskRunView>>,
}

/// The task's end, however it comes (its loop returned, or the JobManager aborted the task's
/// future): the operator is closed unless the task's TaskManager is gone ([`super::task::TaskEnd`]).
impl<O: Operator> Drop for OperatorRunner<O> {
    fn drop(&mut self) {
        if self.ctx.end.closes_operators() {
            self.op.close();
        }
    }
}

/// The loop's own state, apart from what it was built with.
struct Loop {
    aligner: Aligner,
    tracker: BarrierTracker,
    /// Elements of a buffer left when its channel was blocked in the middle of it.
    rest: Vec<VecDeque<StreamMessage>>,
    /// Snapshots waiting for their write, channel state or barriers (several with concurrent
    /// checkpoints: a write may outlast the next barrier).
    pending: Vec<PendingAck>,
    actions: Vec<AlignerAction>,
    /// A checkpoint switched to unaligned by its alignment timeout, and its channels whose
    /// in-order barrier this receiver has yet to turn into a priority event.
    convert: Option<(u64, Vec<usize>)>,
    /// When the next conversion is tried (it scans the channel's queue: not on every turn).
    convert_at: Instant,
    /// The forwarded aligned barrier that may still time out in this task's output queue.
    switch: Option<TimeoutableBarrier>,
    /// Asynchronous snapshot parts being written.
    writes: FuturesUnordered<BoxFuture<'static, WriteDone>>,
    cancel: CancelOnDrop,
    /// Checkpoints whose barrier came and that are not acknowledged yet (the view's copy).
    progress: VecDeque<CheckpointAtTask>,
}

impl Loop {
    /// Stamps the arrival of `barrier` if it is its checkpoint's first here: the start delay is
    /// the time from the trigger (the barrier's timestamp) to this moment, as Flink's
    /// `markAlignmentStart(barrier.getId(), barrier.getTimestamp())` on the first barrier
    /// (SingleCheckpointBarrierHandler.java:244-249, CheckpointBarrierHandler.java:168-169).
    fn barrier_arrived(&mut self, barrier: &Barrier) -> bool {
        if self.progress.iter().any(|p| p.checkpoint == barrier.checkpoint) {
            return false;
        }
        let now = Instant::now();
        if self.progress.len() >= TRACKED_CHECKPOINTS {
            self.progress.pop_front();
        }
        let start_delay = now.saturating_duration_since(barrier.triggered_at);
        self.progress.push_back(CheckpointAtTask { checkpoint: barrier.checkpoint, barrier_at: now, start_delay, snapshot_at: None });
        true
    }

    fn start_delay(&self, checkpoint: u64) -> Option<Duration> {
        self.progress.iter().find(|p| p.checkpoint == checkpoint).map(|p| p.start_delay)
    }

    /// The checkpoint is over at this task (acknowledged, declined or aborted).
    fn forget(&mut self, checkpoint: u64) {
        self.progress.retain(|p| p.checkpoint != checkpoint);
    }
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
            pending: Vec::new(),
            actions: Vec::new(),
            convert: None,
            convert_at: Instant::now(),
            switch: None,
            writes: FuturesUnordered::new(),
            cancel: CancelOnDrop(SnapshotCancellation::default()),
            progress: VecDeque::new(),
        };
        if let Err(Fatal(reason)) = self.replay_channel_state().await {
            return self.fail(reason);
        }
        loop {
            let timeout = ctx.knobs.buffer_timeout();
            // A full output buffer waiting for credit: no input is processed meanwhile, but
            // control messages and priority barriers are (Flink's mails run while the task waits
            // for output availability, StreamTask.java:656-705; the record in hand finished on an
            // overdraft buffer, LocalBufferPool.java:451-459).
            let mut stuck = self.output.as_ref().is_some_and(|o| o.is_stuck());
            // Records left of a buffer (an urgent event came between them, or credit ran out)
            // go before anything newer from their channel.
            if !stuck && (0..l.rest.len()).any(|ch| !l.rest[ch].is_empty() && !self.gate.is_blocked(ch)) {
                if let Err(Fatal(reason)) = self.drain_rest(&mut l).await {
                    return self.fail(reason);
                }
                stuck = self.output.as_ref().is_some_and(|o| o.is_stuck());
            }
            let credit = self.output.as_ref().filter(|_| stuck).map(|o| o.link());
            let flush_at = self.output.as_ref().filter(|_| !stuck).and_then(|o| o.deadline(timeout));
            let switch_at = l.switch.as_ref().map(|s| s.deadline);
            let deadline = [flush_at, l.aligner.deadline(), switch_at].into_iter().flatten().min();
            let barriers = match (&l.switch, &self.output) {
                (Some(s), Some(o)) => Some((s.links(std::slice::from_ref(o)), s.deadline)),
                _ => None,
            };
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
                Some(done) = l.writes.next(), if !l.writes.is_empty() => {
                    self.on_write_done(&mut l, done);
                    Ok(())
                }
                () = async { if let Some(c) = &credit { c.credit().await } }, if stuck => self.on_credit(&mut l).await,
                () = async { if let Some((links, at)) = barriers { wait_for_barriers(links, at).await } }, if l.switch.is_some() => {
                    self.poll_switch(&mut l);
                    Ok(())
                }
                e = self.gate.next_event(!stuck) => match e {
                    Some(GateEvent::Buffer(ch, elements)) => self.on_buffer(&mut l, ch, elements).await,
                    Some(GateEvent::Priority(ch, barrier)) => self.on_barrier(&mut l, ch, barrier, true).await,
                    None => return,
                },
                _ = sleep_until_opt(deadline) => self.on_deadline(&mut l, flush_at).await,
            };
            if let Err(Fatal(reason)) = result {
                return self.fail(reason);
            }
            self.poll_switch(&mut l);
            self.convert_late_barriers(&mut l);
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
            TaskControl::TriggerCheckpoint(_) | TaskControl::StopWithSavepoint(_) => {}
            TaskControl::Finish => self.ctx.report(TaskReport::Finished { attempt: self.ctx.attempt, task: self.ctx.task }),
        }
    }

    /// The restored checkpoint's in-flight records go first: what this task had queued as a
    /// sender is sent again, then what it had received is processed, as if it had just arrived.
    async fn replay_channel_state(&mut self) -> Result<(), Fatal> {
        let replay = std::mem::take(&mut self.replay);
        if replay.is_empty() {
            return Ok(());
        }
        if self.output.is_some() {
            // They will reach the sink again: count them as emitted into this attempt.
            self.ctx.progress.source_emitted.fetch_add(replay.len() as u64, Ordering::Relaxed);
        }
        let (output, input): (Vec<_>, Vec<_>) = replay.into_iter().partition(|p| p.end == ChannelEnd::Output);
        if let Some(o) = self.output.as_mut() {
            let max = if o.per_record(self.ctx.knobs.buffer_timeout()) { 1 } else { self.ctx.buffer_records };
            for p in output {
                if o.add(StreamMessage::Record(p.record), max) {
                    o.flush().await;
                }
            }
        }
        for p in input {
            self.process(p.record).await?;
            self.flush_output_if_stuck().await;
        }
        self.op.end_of_batch(&self.ctx);
        Ok(())
    }

    /// Credit came for the buffer the output held back: send it, and go on with the input.
    async fn on_credit(&mut self, l: &mut Loop) -> Result<(), Fatal> {
        if let Some(o) = self.output.as_mut() {
            if !o.try_flush() {
                return Ok(());
            }
        }
        self.drain_rest(l).await
    }

    fn output_stuck(&self) -> bool {
        self.output.as_ref().is_some_and(|o| o.is_stuck())
    }

    async fn flush_output_if_stuck(&mut self) {
        if self.output_stuck() {
            self.flush_output().await;
        }
    }

    /// The barrier this task forwarded in order and that may time out: once it left the output
    /// queue, or switched there when the timeout from the trigger passed, the output channel
    /// state is complete (what it overtook persisted) and the checkpoint may be acknowledged.
    fn poll_switch(&mut self, l: &mut Loop) {
        let (Some(s), Some(o)) = (l.switch.as_mut(), self.output.as_mut()) else { return };
        let mut overtaken = Vec::new();
        if !s.poll(std::slice::from_mut(o), Instant::now(), &mut overtaken) {
            return;
        }
        let id = s.checkpoint;
        l.switch = None;
        if let Some(p) = l.pending.iter_mut().find(|p| p.checkpoint == id) {
            if !overtaken.is_empty() {
                p.stats.unaligned = true;
            }
            for (_, r) in overtaken {
                p.persist(0, r, ChannelEnd::Output);
            }
            p.output_done = true;
        }
        self.try_acknowledge(l, id);
    }

    /// A checkpoint switched to unaligned by the timeout: each late channel's in-order barrier
    /// that this receiver can reach goes ahead of the buffers before it.
    fn convert_late_barriers(&mut self, l: &mut Loop) {
        let Some((id, channels)) = l.convert.as_mut() else { return };
        let now = Instant::now();
        if now < l.convert_at {
            return;
        }
        l.convert_at = now + CONVERT_RETRY;
        let id = *id;
        channels.retain(|ch| l.aligner.persisting(*ch) == Some(id) && !self.gate.convert_to_priority(*ch, id));
        if channels.is_empty() {
            l.convert = None;
        }
    }

    async fn on_deadline(&mut self, l: &mut Loop, flush_at: Option<Instant>) -> Result<(), Fatal> {
        let now = Instant::now();
        if flush_at.is_some_and(|d| d <= now) {
            if let Some(o) = &mut self.output {
                // Without credit the buffer waits, and the task with it.
                o.try_flush();
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
        let cost_free = self.record_cost.is_zero();
        let fast = |l: &Loop| cost_free && l.aligner.persisting(ch).is_none();
        let mut fast_now = fast(l);
        while let Some(e) = elements.next() {
            // The hot path: a record, no cost, not channel state, processed without building the
            // (large) future of the barrier path.
            let e = match e {
                StreamMessage::Record(r) if fast_now => {
                    if self.process_now(r)? && !self.try_flush_output() {
                        // No credit: the rest waits, and the task takes only urgent mail.
                        l.rest[ch].extend(elements);
                        break;
                    }
                    continue;
                }
                other => other,
            };
            self.element(l, ch, e).await?;
            // Blocked by this buffer's barrier, or by the output, or a priority barrier came
            // while the record was processed (mail is taken between records, not between
            // buffers): the rest waits.
            if self.gate.is_blocked(ch) || self.output_stuck() || self.gate.priority_due() {
                l.rest[ch].extend(elements);
                break;
            }
            fast_now = fast(l);
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
                while !self.gate.is_blocked(ch) && !self.output_stuck() && !self.gate.priority_due() {
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
            StreamMessage::Record(r) => {
                // Arrived on a channel whose barrier has not come, after the snapshot: input
                // channel state (RemoteInputChannel.java:802-843), and processed as usual.
                if let Some(id) = l.aligner.persisting(ch) {
                    if let Some(p) = l.pending.iter_mut().find(|p| p.checkpoint == id) {
                        p.persist(ch, r.clone(), ChannelEnd::Input);
                    }
                }
                if !self.record_cost.is_zero() {
                    self.pay_record_cost(l).await;
                }
                if self.process_now(r)? {
                    self.try_flush_output();
                }
                Ok(())
            }
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
        if self.process_now(r)? {
            self.try_flush_output();
        }
        Ok(())
    }

    /// Waits out the record cost while finished snapshot writes are picked up: an
    /// acknowledgement does not wait for a slow record (Flink acknowledges from the asynchronous
    /// part's thread).
    async fn pay_record_cost(&mut self, l: &mut Loop) {
        let until = Instant::now() + self.record_cost;
        loop {
            tokio::select! {
                biased;
                Some(done) = l.writes.next(), if !l.writes.is_empty() => self.on_write_done(l, done),
                () = tokio::time::sleep_until(until) => return,
            }
        }
    }

    /// Sends a full output buffer if there is credit; false when it must wait.
    fn try_flush_output(&mut self) -> bool {
        self.output.as_mut().is_none_or(|o| o.try_flush())
    }

    /// Applies a record and buffers its output; true when the output buffer is full.
    #[inline]
    fn process_now(&mut self, r: Record) -> Result<bool, Fatal> {
        let out = self.op.process(&self.ctx, r).map_err(|e| Fatal(format!("state backend error: {e}")))?;
        if let (Some(r), Some(o)) = (out, self.output.as_mut()) {
            let per_record = o.per_record(self.ctx.knobs.buffer_timeout());
            let max = if per_record { 1 } else { self.ctx.buffer_records };
            return Ok(o.add(StreamMessage::Record(r), max));
        }
        Ok(false)
    }

    async fn flush_output(&mut self) {
        if let Some(o) = self.output.as_mut() {
            o.flush().await;
        }
    }

    async fn on_barrier(&mut self, l: &mut Loop, ch: usize, b: Barrier, priority: bool) -> Result<(), Fatal> {
        if self.ctx.events.active() {
            self.ctx.events.publish(Event::BarrierReceived {
                checkpoint: b.checkpoint,
                task: self.ctx.name(),
                channel: self.gate.stats(ch).name(),
            });
        }
        if l.barrier_arrived(&b) {
            self.set_view(l);
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
                AlignerAction::PersistQueued { checkpoint, channel } => {
                    let held = l.rest[channel].iter().filter_map(|e| if let StreamMessage::Record(r) = e { Some(r.clone()) } else { None });
                    let records: Vec<Record> = held.chain(self.gate.received_records(channel)).collect();
                    if let Some(p) = l.pending.iter_mut().find(|p| p.checkpoint == checkpoint) {
                        for r in records {
                            p.persist(channel, r, ChannelEnd::Input);
                        }
                    }
                }
                AlignerAction::ChannelStateComplete { checkpoint } => self.barriers_complete(l, checkpoint),
                AlignerAction::Abort { checkpoint, decline } => {
                    // A write still running for it finds no pending snapshot and is discarded.
                    take_pending(l, checkpoint);
                    l.forget(checkpoint);
                    if l.convert.as_ref().is_some_and(|(id, _)| *id == checkpoint) {
                        l.convert = None;
                    }
                    if l.switch.as_ref().is_some_and(|s| s.checkpoint == checkpoint) {
                        l.switch = None;
                    }
                    let ctx = &self.ctx;
                    if let Some(reason) = decline {
                        ctx.report(TaskReport::Decline { attempt: ctx.attempt, checkpoint, task: ctx.task, reason });
                    }
                    self.op.notify_checkpoint_aborted(&self.ctx, checkpoint);
                    if let Some(o) = &mut self.output {
                        o.push_barrier(StreamMessage::CancelCheckpoint(checkpoint));
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
        v.checkpoints.clear();
        v.checkpoints.extend(l.progress.iter().copied());
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
        let started = std::time::Instant::now();
        let forward = match self.op.snapshot(&ctx, id) {
            Ok(snap) => {
                // Stamped when the first barrier came, never here: the snapshot (and the ack)
                // come after the alignment.
                let start_delay_ms = l.start_delay(id).unwrap_or_else(|| barrier.triggered_at.elapsed()).as_millis() as u64;
                if let Some(p) = l.progress.iter_mut().find(|p| p.checkpoint == id) {
                    p.snapshot_at = Some(Instant::now());
                }
                let mut stats = SnapshotStats {
                    alignment_ms: alignment.as_millis() as u64,
                    buffered,
                    unaligned,
                    start_delay_ms,
                    ..SnapshotStats::default()
                };
                let state = match snap {
                    OperatorSnapshot::Done(state) => {
                        stats.sync_ms = started.elapsed().as_millis() as u64;
                        ctx.events.publish(Event::SnapshotTaken {
                            checkpoint: id,
                            task: ctx.name(),
                            bytes: 0,
                            sync_ms: stats.sync_ms,
                            async_ms: 0,
                        });
                        StatePart::Ready(state)
                    }
                    OperatorSnapshot::Keyed(pending) => {
                        stats.sync_ms = pending.sync_duration.as_millis() as u64;
                        self.start_write(l, id, pending);
                        StatePart::Writing
                    }
                };
                if unaligned {
                    // Late channels whose barrier is aligned (the timeout switched, or an upstream
                    // task did not) have it turned into a priority event once it is in reach.
                    let late: Vec<usize> = (0..self.gate.len()).filter(|ch| l.aligner.persisting(*ch) == Some(id)).collect();
                    l.convert = (!late.is_empty()).then_some((id, late));
                }
                l.pending.push(PendingAck {
                    checkpoint: id,
                    state,
                    stats,
                    channel_state: Vec::new(),
                    barriers_done: false,
                    output_done: true,
                });
                StreamMessage::Barrier(barrier)
            }
            Err(e) => {
                l.forget(id);
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
        if let Some(o) = &mut self.output {
            if unaligned {
                if let StreamMessage::Barrier(b) = &forward {
                    // Ahead of everything queued at this task's output: what it overtook there is
                    // this task's output channel state.
                    let mut b = *b;
                    b.options.alignment = super::element::Alignment::Unaligned;
                    let overtaken = o.push_priority(b);
                    if let Some(p) = l.pending.iter_mut().find(|p| p.checkpoint == id) {
                        for r in overtaken {
                            p.persist(0, r, ChannelEnd::Output);
                        }
                    }
                    return;
                }
            }
            if let StreamMessage::Barrier(b) = &forward {
                // A newer checkpoint's barrier: the older one's no longer switches (in order, it
                // is still consistent).
                if let Some(old) = l.switch.take() {
                    if let Some(p) = l.pending.iter_mut().find(|p| p.checkpoint == old.checkpoint) {
                        p.output_done = true;
                    }
                }
                l.switch = TimeoutableBarrier::new(b, 1);
                if let Some(p) = l.pending.iter_mut().find(|p| p.checkpoint == id) {
                    p.output_done = l.switch.is_none();
                }
            }
            o.push_barrier(forward);
        }
    }

    /// Runs a snapshot's asynchronous part on a blocking thread, then its uploads' cost in
    /// checkpoint storage (`ckptlab.storage.*`: latency, throttling, failures) and the simulated
    /// disk latency; the loop picks the result up in [`Self::on_write_done`].
    fn start_write(&self, l: &mut Loop, checkpoint: u64, part: PendingSnapshot) {
        let cancel = l.cancel.0.clone();
        let started = Instant::now();
        let wall = std::time::Instant::now();
        let store = self.ctx.storage.object_store().clone();
        l.writes.push(Box::pin(async move {
            // Wrapped on the blocking thread, so that a result nobody takes (the task was
            // aborted meanwhile) is discarded wherever it is dropped.
            let joined = tokio::task::spawn_blocking(move || part.run(&cancel).map(|s| Unacknowledged(Some(s)))).await;
            let mut result = joined.unwrap_or_else(|e| Err(StateError::Backend { message: format!("the snapshot write did not finish: {e}") }));
            if let Ok(w) = &result {
                let uploads = w.snapshot().uploads.clone();
                if let Err(e) = store.upload(&uploads).await {
                    // Dropping the written snapshot deletes what it wrote.
                    result = Err(e);
                }
            }
            if let Ok(w) = &result {
                tokio::time::sleep_until(started + simulated_write_latency(w.snapshot().checkpointed_size)).await;
            }
            WriteDone { checkpoint, result, elapsed: started.elapsed().max(wall.elapsed()) }
        }));
    }

    /// An asynchronous part finished: the snapshot may be acknowledged, or it failed and the
    /// checkpoint is declined (its barrier went on already, so downstream is unaffected).
    fn on_write_done(&mut self, l: &mut Loop, done: WriteDone) {
        let WriteDone { checkpoint, result, elapsed } = done;
        let ctx = self.ctx.clone();
        // Aborted meanwhile: dropping the result deletes what it wrote.
        let Some(p) = l.pending.iter_mut().find(|p| p.checkpoint == checkpoint) else { return };
        match result {
            Ok(written) => {
                p.stats.async_ms = elapsed.as_millis() as u64;
                ctx.events.publish(Event::SnapshotTaken {
                    checkpoint,
                    task: ctx.name(),
                    bytes: written.snapshot().checkpointed_size,
                    sync_ms: p.stats.sync_ms,
                    async_ms: p.stats.async_ms,
                });
                p.state = StatePart::Written(written);
                self.try_acknowledge(l, checkpoint);
            }
            Err(e) => {
                take_pending(l, checkpoint);
                l.forget(checkpoint);
                ctx.report(TaskReport::Decline {
                    attempt: ctx.attempt,
                    checkpoint,
                    task: ctx.task,
                    reason: DeclineReason::SnapshotFailed(format!("{}: {e}", ctx.name())),
                });
                self.set_view(l);
            }
        }
    }

    /// The aligner says every barrier of `checkpoint` came.
    fn barriers_complete(&mut self, l: &mut Loop, checkpoint: u64) {
        let Some(p) = l.pending.iter_mut().find(|p| p.checkpoint == checkpoint) else { return self.set_view(l) };
        p.barriers_done = true;
        self.try_acknowledge(l, checkpoint);
    }

    /// Acknowledges `checkpoint` if its write finished and its barriers came.
    fn try_acknowledge(&mut self, l: &mut Loop, checkpoint: u64) {
        self.set_view(l);
        let ready =
            |p: &PendingAck| p.checkpoint == checkpoint && p.barriers_done && p.output_done && !matches!(p.state, StatePart::Writing);
        let Some(i) = l.pending.iter().position(ready) else { return };
        let p = l.pending.remove(i);
        l.forget(checkpoint);
        self.set_view(l);
        let ctx = &self.ctx;
        let state = match p.state {
            StatePart::Ready(state) => state,
            StatePart::Written(written) => {
                let s = written.into_ack();
                TaskState::Keyed { handle: s.handle, checkpointed_size: s.checkpointed_size, full_size: s.full_size }
            }
            // Not `ready`.
            StatePart::Writing => return,
        };
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
            state,
            stats: p.stats,
            channel_state: p.channel_state,
        });
    }
}

fn take_pending(l: &mut Loop, checkpoint: u64) -> Option<PendingAck> {
    let i = l.pending.iter().position(|p| p.checkpoint == checkpoint)?;
    Some(l.pending.remove(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Auditor;
    use crate::cluster::channel::{channel, ChannelStats};
    use crate::cluster::element::{Alignment, CheckpointOptions, Origin};
    use crate::cluster::task::{AttemptProgress, RuntimeKnobs, TaskId};
    use crate::config::{KeyBy, StorageKind};
    use crate::connectors::EmbeddedTopic;
    use crate::events::EventBus;
    use crate::state::storage::CheckpointStorage;
    use crate::state::StateHandle;

    /// What the probe operator saw.
    #[derive(Default)]
    struct Log {
        processed: Vec<u64>,
        /// Each snapshot: its checkpoint and the records processed before it.
        snapshots: Vec<(u64, Vec<u64>)>,
        complete: Vec<u64>,
        aborted: Vec<u64>,
    }

    #[derive(Clone, Copy)]
    enum SnapshotKind {
        Done,
        /// An asynchronous part writing this many bytes (64 KB per ms of simulated latency).
        Keyed(u64),
        FailSync,
        FailAsync,
    }

    /// An operator that forwards every record and logs what the runner asked of it.
    struct Probe {
        log: Arc<Mutex<Log>>,
        kind: SnapshotKind,
        fail_on: Option<u64>,
        open: Option<OpenError>,
    }

    fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
        log.lock().unwrap_or_else(|e| e.into_inner())
    }

    impl Operator for Probe {
        fn open(&mut self, _ctx: &TaskContext) -> Result<(), OpenError> {
            self.open.take().map_or(Ok(()), Err)
        }

        fn process(&mut self, _ctx: &TaskContext, r: Record) -> Result<Option<Record>, StateError> {
            if self.fail_on == Some(r.origin.offset) {
                return Err(StateError::Backend { message: "disk gone".into() });
            }
            lock(&self.log).processed.push(r.origin.offset);
            Ok(Some(r))
        }

        fn snapshot(&mut self, _ctx: &TaskContext, checkpoint: u64) -> Result<OperatorSnapshot, StateError> {
            let mut log = lock(&self.log);
            let seen = log.processed.clone();
            log.snapshots.push((checkpoint, seen));
            let written = |bytes: u64| Snapshot {
                handle: StateHandle::Memory { bytes: Arc::new(Vec::new()), size: bytes },
                checkpointed_size: bytes,
                full_size: bytes,
                sync_duration: Duration::ZERO,
                async_duration: Duration::ZERO,
                written: Vec::new(),
                uploads: vec![bytes],
                written_under: None,
            };
            match self.kind {
                SnapshotKind::Done => Ok(OperatorSnapshot::Done(TaskState::Sink { staged: Vec::new(), kafka: None })),
                SnapshotKind::Keyed(bytes) => Ok(OperatorSnapshot::Keyed(PendingSnapshot {
                    sync_duration: Duration::ZERO,
                    write: Box::new(move |_| Ok(written(bytes))),
                })),
                SnapshotKind::FailSync => Err(StateError::TooLarge { size: 10, max: 1 }),
                SnapshotKind::FailAsync => Ok(OperatorSnapshot::Keyed(PendingSnapshot {
                    sync_duration: Duration::ZERO,
                    write: Box::new(|_| Err(StateError::Write { path: "chk-1".into(), message: "disk full".into() })),
                })),
            }
        }

        fn notify_checkpoint_complete(&mut self, _ctx: &TaskContext, checkpoint: u64) {
            lock(&self.log).complete.push(checkpoint);
        }

        fn notify_checkpoint_aborted(&mut self, _ctx: &TaskContext, checkpoint: u64) {
            lock(&self.log).aborted.push(checkpoint);
        }
    }

    /// One runner under test: its upstream writers, a gate reading its output, its reports.
    struct Harness {
        inputs: Vec<OutputChannel>,
        downstream: InputGate,
        reports: mpsc::UnboundedReceiver<TaskReport>,
        control: Option<mpsc::UnboundedSender<TaskControl>>,
        log: Arc<Mutex<Log>>,
        view: Arc<Mutex<TaskRunView>>,
        progress: Arc<AttemptProgress>,
        task: tokio::task::JoinHandle<()>,
    }

    struct Setup {
        channels: usize,
        kind: SnapshotKind,
        buffer_timeout: Duration,
        buffer_records: usize,
        record_cost: Duration,
        replay: Vec<PersistedRecord>,
        fail_on: Option<u64>,
        open: Option<OpenError>,
        /// Credit of the output channel, in buffers.
        output_credit: usize,
    }

    impl Default for Setup {
        fn default() -> Self {
            Setup {
                channels: 1,
                kind: SnapshotKind::Done,
                buffer_timeout: Duration::ZERO,
                buffer_records: 100,
                record_cost: Duration::ZERO,
                replay: Vec::new(),
                fail_on: None,
                open: None,
                output_credit: 64,
            }
        }
    }

    impl Setup {
        /// Builds the runner's surroundings; `before` runs before the runner is spawned (to
        /// queue input it must find waiting).
        async fn start(self, before: impl AsyncFnOnce(&mut Vec<OutputChannel>)) -> Harness {
            let knobs = RuntimeKnobs::new(Duration::ZERO, self.buffer_timeout);
            let events = EventBus::new(Instant::now());
            let topic: Arc<dyn crate::connectors::Topic> = EmbeddedTopic::new("input-topic", 1, events.clone());
            let (reports_tx, reports) = mpsc::unbounded_channel();
            let progress = Arc::new(AttemptProgress::default());
            let ctx = TaskContext {
                attempt: 1,
                task: TaskId::Counter(0),
                reports: reports_tx,
                events,
                auditor: Arc::new(Auditor::new(false, topic, 1, KeyBy::Record)),
                progress: progress.clone(),
                knobs: knobs.clone(),
                buffer_records: self.buffer_records,
                storage: Arc::new(CheckpointStorage::new(StorageKind::JobManager, std::path::Path::new("unused"), "job", 5 << 20)),
                output: Arc::default(),
                end: Default::default(),
            };
            let mut inputs = Vec::new();
            let mut gate_inputs = Vec::new();
            for i in 0..self.channels {
                let (out, input) =
                    channel(ChannelStats::new(TaskId::Source(i), TaskId::Counter(0), Duration::ZERO), 8, knobs.clone());
                inputs.push(out);
                gate_inputs.push(input);
            }
            let (output, down) =
                channel(ChannelStats::new(TaskId::Counter(0), TaskId::Sink, Duration::ZERO), self.output_credit, knobs.clone());
            let (control_tx, control) = mpsc::unbounded_channel();
            let log = Arc::new(Mutex::new(Log::default()));
            let view = Arc::new(Mutex::new(TaskRunView::default()));
            let runner = OperatorRunner {
                ctx,
                op: Probe { log: log.clone(), kind: self.kind, fail_on: self.fail_on, open: self.open },
                gate: InputGate::new(gate_inputs, knobs.clone()),
                output: Some(output),
                control,
                record_cost: self.record_cost,
                replay: self.replay,
                view: view.clone(),
            };
            before(&mut inputs).await;
            let task = tokio::spawn(runner.run());
            Harness { inputs, downstream: InputGate::new(vec![down], knobs), reports, control: Some(control_tx), log, view, progress, task }
        }
    }

    fn record(i: u64) -> Record {
        Record { key: "k".into(), value: "k".into(), origin: Origin { partition: 0, offset: i }, count: 0 }
    }

    fn barrier(id: u64, mode: CheckpointMode, alignment: Alignment) -> Barrier {
        Barrier { checkpoint: id, options: CheckpointOptions { mode, alignment }, triggered_at: Instant::now() }
    }

    fn aligned(id: u64) -> Barrier {
        barrier(id, CheckpointMode::ExactlyOnce, Alignment::Aligned)
    }

    async fn send(out: &mut OutputChannel, i: u64) {
        out.add(StreamMessage::Record(record(i)), 1);
        out.flush().await;
    }

    async fn send_barrier(out: &mut OutputChannel, b: Barrier) {
        out.push_barrier(StreamMessage::Barrier(b));
    }

    /// Lets the paused clock run `ms` of model time (everything runnable runs first).
    async fn settle(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    impl Harness {
        /// What reached the downstream task so far: "r<offset>", "b<id>", "c<id>" (cancel
        /// marker) and "p<id>" (a barrier on the priority lane).
        async fn downstream(&mut self) -> Vec<String> {
            let mut seen = Vec::new();
            while let Ok(Some(e)) = tokio::time::timeout(Duration::ZERO, self.downstream.next()).await {
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

        /// The reports so far, but "running".
        fn reports(&mut self) -> Vec<TaskReport> {
            let mut out = Vec::new();
            while let Ok(r) = self.reports.try_recv() {
                if !matches!(r, TaskReport::Running { .. }) {
                    out.push(r);
                }
            }
            out
        }

        fn processed(&self) -> Vec<u64> {
            lock(&self.log).processed.clone()
        }

        fn snapshots(&self) -> Vec<(u64, Vec<u64>)> {
            lock(&self.log).snapshots.clone()
        }
    }

    fn acks(reports: &[TaskReport]) -> Vec<u64> {
        reports.iter().filter_map(|r| if let TaskReport::Ack { checkpoint, .. } = r { Some(*checkpoint) } else { None }).collect()
    }

    fn declines(reports: &[TaskReport]) -> Vec<(u64, DeclineReason)> {
        reports
            .iter()
            .filter_map(|r| if let TaskReport::Decline { checkpoint, reason, .. } = r { Some((*checkpoint, reason.clone())) } else { None })
            .collect()
    }

    /// Catches: a runner that keeps consuming a channel after its barrier (the snapshot would
    /// hold record 1, which belongs after checkpoint 1), or that snapshots before the last barrier.
    #[tokio::test(start_paused = true)]
    async fn an_aligned_barrier_holds_its_channel_until_every_channel_delivered_it() {
        let mut h = Setup { channels: 2, ..Setup::default() }.start(async |_| {}).await;
        send(&mut h.inputs[0], 0).await;
        send_barrier(&mut h.inputs[0], aligned(1)).await;
        send(&mut h.inputs[0], 1).await;
        send(&mut h.inputs[1], 10).await;
        settle(20).await;
        assert_eq!(h.processed(), vec![0, 10], "record 1 waits behind its channel's barrier");
        assert!(h.snapshots().is_empty());
        assert!(h.inputs[0].stats.blocked.load(Ordering::Relaxed));
        assert_eq!(h.view.lock().unwrap().aligning, Some(1));
        send_barrier(&mut h.inputs[1], aligned(1)).await;
        settle(1).await;
        assert_eq!(h.snapshots(), vec![(1, vec![0, 10])]);
        assert_eq!(h.processed(), vec![0, 10, 1], "consumed again after the snapshot");
        assert_eq!(h.view.lock().unwrap().aligning, None);
        let down = h.downstream().await;
        assert_eq!(&down[2..], ["b1", "r1"], "the barrier goes on before the records behind it: {down:?}");
        let reports = h.reports();
        assert_eq!(acks(&reports), vec![1]);
        let Some(TaskReport::Ack { stats, task, .. }) = reports.first() else { panic!("an ack") };
        assert_eq!(*task, TaskId::Counter(0));
        assert_eq!((stats.alignment_ms, stats.buffered, stats.unaligned), (20, 1, false), "20 ms aligning, record 1 waited");
    }

    /// Catches: a start delay stamped at the snapshot or at the ack instead of when the first
    /// barrier arrived (Flink's markAlignmentStart), or a view that forgets where an unacked
    /// checkpoint is (an expired checkpoint's anatomy reads it).
    #[tokio::test(start_paused = true)]
    async fn the_start_delay_is_stamped_when_the_first_barrier_arrives() {
        let bytes = 200 * SIMULATED_STORAGE_BYTES_PER_MS; // 200 ms of simulated write
        let mut h = Setup { channels: 2, kind: SnapshotKind::Keyed(bytes), ..Setup::default() }.start(async |_| {}).await;
        // Triggered 30 ms ago: the barrier was on its way that long.
        let b = Barrier { triggered_at: Instant::now() - Duration::from_millis(30), ..aligned(1) };
        send_barrier(&mut h.inputs[0], b).await;
        settle(50).await;
        let seen = h.view.lock().unwrap().checkpoints.clone();
        assert_eq!(seen.len(), 1, "aligning: the view says where checkpoint 1 is");
        assert_eq!((seen[0].checkpoint, seen[0].start_delay, seen[0].snapshot_at), (1, Duration::from_millis(30), None));
        send_barrier(&mut h.inputs[1], b).await;
        settle(10).await;
        assert!(h.view.lock().unwrap().checkpoints[0].snapshot_at.is_some(), "snapshot taken, the upload runs");
        settle(300).await;
        let reports = h.reports();
        let Some(TaskReport::Ack { stats, .. }) = reports.first() else { panic!("an ack: {reports:?}") };
        assert_eq!((stats.start_delay_ms, stats.alignment_ms, stats.async_ms), (30, 50, 200));
        assert!(h.view.lock().unwrap().checkpoints.is_empty(), "acknowledged: nothing left to explain");
    }

    /// Catches: a write on the task itself (records would wait for it), or an ack sent before
    /// the asynchronous part finished.
    #[tokio::test(start_paused = true)]
    async fn the_ack_waits_for_the_asynchronous_part_while_records_flow_on() {
        let bytes = 500 * SIMULATED_STORAGE_BYTES_PER_MS; // 500 ms of simulated write
        let mut h = Setup { kind: SnapshotKind::Keyed(bytes), ..Setup::default() }.start(async |_| {}).await;
        send_barrier(&mut h.inputs[0], aligned(1)).await;
        settle(10).await;
        send(&mut h.inputs[0], 5).await;
        settle(100).await;
        assert_eq!(h.processed(), vec![5], "processed while the snapshot is written");
        assert_eq!(h.downstream().await, ["b1", "r5"], "the barrier went on at the synchronous part");
        assert!(h.reports().is_empty(), "no ack before the write finished");
        settle(400).await;
        let reports = h.reports();
        assert_eq!(acks(&reports), vec![1]);
        let Some(TaskReport::Ack { state: TaskState::Keyed { checkpointed_size, .. }, stats, .. }) = reports.first() else {
            panic!("a keyed ack")
        };
        assert_eq!(*checkpointed_size, bytes);
        assert_eq!(stats.async_ms, 500);
    }

    /// Catches: a failed synchronous part that still forwards the barrier (downstream would
    /// align for a checkpoint that cannot complete) or acks.
    #[tokio::test(start_paused = true)]
    async fn a_failed_snapshot_declines_and_sends_a_cancel_marker_instead_of_the_barrier() {
        let mut h = Setup { kind: SnapshotKind::FailSync, ..Setup::default() }.start(async |_| {}).await;
        send_barrier(&mut h.inputs[0], aligned(1)).await;
        settle(1).await;
        assert_eq!(h.downstream().await, ["c1"]);
        let reports = h.reports();
        assert!(acks(&reports).is_empty());
        assert!(matches!(&declines(&reports)[..], [(1, DeclineReason::SnapshotFailed(m))] if m.starts_with("counter[0]: ")));
    }

    /// Catches: a failed write that is acknowledged anyway, or never reported (the checkpoint
    /// would only expire).
    #[tokio::test(start_paused = true)]
    async fn a_failed_write_declines_the_checkpoint_after_its_barrier_went_on() {
        let mut h = Setup { kind: SnapshotKind::FailAsync, ..Setup::default() }.start(async |_| {}).await;
        send_barrier(&mut h.inputs[0], aligned(1)).await;
        settle(10).await;
        assert_eq!(h.downstream().await, ["b1"]);
        let reports = h.reports();
        assert!(acks(&reports).is_empty());
        assert!(matches!(&declines(&reports)[..], [(1, DeclineReason::SnapshotFailed(m))] if m.contains("disk full")));
    }

    /// An upstream task gave the checkpoint up: stop aligning, tell downstream, decline nothing
    /// (the upstream task declined). Catches: a runner that stays blocked, swallows the marker,
    /// or declines on another task's behalf.
    #[tokio::test(start_paused = true)]
    async fn a_cancel_marker_ends_the_alignment_and_goes_downstream_without_a_decline() {
        let mut h = Setup { channels: 2, ..Setup::default() }.start(async |_| {}).await;
        send_barrier(&mut h.inputs[0], aligned(1)).await;
        send(&mut h.inputs[0], 1).await;
        settle(1).await;
        h.inputs[1].push_barrier(StreamMessage::CancelCheckpoint(1));
        settle(1).await;
        assert_eq!(h.processed(), vec![1], "the blocked channel is consumed again");
        assert!(h.snapshots().is_empty());
        assert_eq!(h.downstream().await, ["c1", "r1"]);
        assert!(h.reports().is_empty());
        assert_eq!(lock(&h.log).aborted, vec![1]);
        send_barrier(&mut h.inputs[1], aligned(1)).await;
        settle(1).await;
        assert!(h.snapshots().is_empty(), "the cancelled checkpoint's late barrier is stale");
    }

    /// Catches: a subsumed alignment that is dropped silently (its checkpoint would wait for
    /// the timeout) or that blocks the newer checkpoint.
    #[tokio::test(start_paused = true)]
    async fn a_newer_barrier_declines_the_subsumed_alignment_and_completes_its_own() {
        let mut h = Setup { channels: 2, ..Setup::default() }.start(async |_| {}).await;
        send_barrier(&mut h.inputs[0], aligned(1)).await;
        settle(1).await;
        send_barrier(&mut h.inputs[1], aligned(2)).await;
        settle(1).await;
        send_barrier(&mut h.inputs[0], aligned(2)).await;
        settle(1).await;
        assert_eq!(h.snapshots(), vec![(2, vec![])]);
        let reports = h.reports();
        assert_eq!(declines(&reports), vec![(1, DeclineReason::Subsumed { by: 2 })]);
        assert_eq!(acks(&reports), vec![2]);
        assert_eq!(h.downstream().await, ["c1", "b2"]);
    }

    /// At-least-once tracks barriers and blocks nothing: a record behind the first barrier is in
    /// the snapshot (and will be replayed: counted twice). Catches: a tracker path that aligns.
    #[tokio::test(start_paused = true)]
    async fn at_least_once_consumes_a_channel_behind_its_barrier() {
        let mut h = Setup { channels: 2, ..Setup::default() }.start(async |_| {}).await;
        let b = barrier(1, CheckpointMode::AtLeastOnce, Alignment::Aligned);
        send_barrier(&mut h.inputs[0], b).await;
        send(&mut h.inputs[0], 1).await;
        settle(1).await;
        assert_eq!(h.processed(), vec![1]);
        assert!(!h.inputs[0].stats.blocked.load(Ordering::Relaxed));
        send_barrier(&mut h.inputs[1], b).await;
        settle(1).await;
        assert_eq!(h.snapshots(), vec![(1, vec![1])]);
        assert_eq!(acks(&h.reports()), vec![1]);
        assert_eq!(h.downstream().await, ["r1", "b1"]);
    }

    /// Catches: an unaligned barrier handled behind the records queued ahead of it (an aligned
    /// snapshot in disguise), or forwarded behind the task's output queue.
    #[tokio::test(start_paused = true)]
    async fn an_unaligned_barrier_is_snapshotted_before_the_records_it_overtook() {
        let b = barrier(1, CheckpointMode::ExactlyOnce, Alignment::Unaligned);
        let mut h = Setup::default()
            .start(async |inputs: &mut Vec<OutputChannel>| {
                for i in 0..4 {
                    send(&mut inputs[0], i).await;
                }
                inputs[0].push_priority(b);
            })
            .await;
        settle(1).await;
        assert_eq!(h.snapshots(), vec![(1, vec![])], "nothing queued ahead was processed first");
        assert_eq!(h.processed(), vec![0, 1, 2, 3], "the overtaken records are still processed");
        assert_eq!(h.downstream().await.first().map(String::as_str), Some("p1"), "forwarded on the priority lane");
    }

    /// Catches: an alignment timeout that never fires (aligned for ever), fires early, or fires
    /// without releasing the blocked channel and forwarding the barrier ahead of the output.
    #[tokio::test(start_paused = true)]
    async fn the_alignment_timeout_snapshots_and_releases_the_blocked_channel() {
        let mut h = Setup { channels: 2, ..Setup::default() }.start(async |_| {}).await;
        let b = barrier(1, CheckpointMode::ExactlyOnce, Alignment::AlignedWithTimeout { timeout_ms: 100 });
        send_barrier(&mut h.inputs[0], b).await;
        send(&mut h.inputs[0], 1).await;
        settle(99).await;
        assert!(h.snapshots().is_empty() && h.processed().is_empty(), "still aligned at 99 ms");
        settle(2).await; // past 100 ms (not at it: the test and the task would wake together)
        assert_eq!(h.snapshots(), vec![(1, vec![])]);
        assert_eq!(h.processed(), vec![1], "the blocked channel is consumed again");
        assert_eq!(h.downstream().await.first().map(String::as_str), Some("p1"));
    }

    /// Catches: notifications dropped by the runner, a trigger taken by a non-source task, or a
    /// runner that outlives its attempt.
    #[tokio::test(start_paused = true)]
    async fn notifications_reach_the_operator_and_a_dropped_control_channel_ends_the_task() {
        let mut h = Setup::default().start(async |_| {}).await;
        let control = h.control.take().expect("control");
        control.send(TaskControl::NotifyCheckpointComplete(3)).unwrap();
        control.send(TaskControl::NotifyCheckpointAborted(4)).unwrap();
        control.send(TaskControl::TriggerCheckpoint(aligned(5))).unwrap();
        settle(1).await;
        let log = lock(&h.log);
        assert_eq!((&log.complete[..], &log.aborted[..]), (&[3][..], &[4][..]));
        drop(log);
        assert!(h.snapshots().is_empty() && h.downstream().await.is_empty());
        assert!(!h.task.is_finished());
        drop(control);
        settle(1).await;
        assert!(h.task.is_finished());
    }

    /// Catches: channel state replayed after new input (or not at all), output state processed
    /// again by the operator (it was processed before the checkpoint) or sent behind new output,
    /// or replays not counted as emitted again (the caught-up check would wait for ever).
    #[tokio::test(start_paused = true)]
    async fn restored_channel_state_is_replayed_output_first_then_input_before_new_input() {
        let input = |channel, i| PersistedRecord { channel, record: record(i), end: ChannelEnd::Input };
        let replay = vec![input(0, 7), PersistedRecord { channel: 0, record: record(9), end: ChannelEnd::Output }, input(1, 8)];
        let mut h = Setup { replay, ..Setup::default() }.start(async |inputs: &mut Vec<OutputChannel>| send(&mut inputs[0], 1).await).await;
        settle(1).await;
        assert_eq!(h.processed(), vec![7, 8, 1], "the output state is not processed again");
        assert_eq!(h.downstream().await, ["r9", "r7", "r8", "r1"]);
        assert_eq!(h.progress.source_emitted.load(Ordering::Relaxed), 3);
    }

    /// Catches: a state backend error that is skipped (a count lost silently) instead of failing
    /// the task.
    #[tokio::test(start_paused = true)]
    async fn a_state_backend_error_fails_the_task() {
        let mut h = Setup { fail_on: Some(1), ..Setup::default() }.start(async |_| {}).await;
        for i in 0..3 {
            send(&mut h.inputs[0], i).await;
        }
        settle(1).await;
        assert_eq!(h.processed(), vec![0]);
        assert!(matches!(&h.reports()[..], [TaskReport::Failed { reason, .. }] if reason.contains("disk gone")));
        assert!(h.task.is_finished());
    }

    /// Catches: a task that reports Running (or runs) with state it could not restore.
    #[tokio::test(start_paused = true)]
    async fn a_task_that_cannot_restore_reports_it_and_does_not_run() {
        let open = Some(OpenError::Restore { checkpoint: 4, message: "chk-4 is corrupt".into() });
        let mut h = Setup { open, ..Setup::default() }.start(async |_| {}).await;
        settle(1).await;
        let r = h.reports.try_recv().expect("a report");
        assert!(matches!(r, TaskReport::RestoreFailed { checkpoint: 4, .. }), "{r:?}");
        assert!(h.reports.try_recv().is_err(), "no Running");
        assert!(h.task.is_finished());
    }

    /// Catches: an output buffer that waits for more records than the timeout allows, goes out
    /// before the timeout, or waits for the timeout when full.
    #[tokio::test(start_paused = true)]
    async fn a_partial_output_buffer_goes_out_at_the_buffer_timeout_and_a_full_one_at_once() {
        let setup = Setup { buffer_timeout: Duration::from_millis(50), buffer_records: 3, ..Setup::default() };
        let mut h = setup.start(async |_| {}).await;
        send(&mut h.inputs[0], 0).await;
        settle(49).await;
        assert!(h.downstream().await.is_empty(), "a partial buffer waits for the timeout");
        settle(2).await; // past 50 ms, not at it
        assert_eq!(h.downstream().await, ["r0"]);
        for i in 1..4 {
            send(&mut h.inputs[0], i).await;
        }
        settle(1).await;
        assert_eq!(h.downstream().await, ["r1", "r2", "r3"], "a full buffer goes at once");
    }

    /// Catches: a record cost that is not paid per record (a slow consumer that is not slow).
    #[tokio::test(start_paused = true)]
    async fn the_record_cost_is_paid_per_record() {
        let mut h = Setup { record_cost: Duration::from_millis(5), ..Setup::default() }.start(async |_| {}).await;
        for i in 0..4 {
            send(&mut h.inputs[0], i).await;
        }
        settle(19).await;
        assert_eq!(h.processed(), vec![0, 1, 2]);
        settle(2).await; // past 20 ms, not at it
        assert_eq!(h.processed(), vec![0, 1, 2, 3]);
    }

    /// A task whose output waits for credit still takes a priority barrier at once (Flink's
    /// priority events are mail, run while the task waits for output availability); the sender
    /// side of its checkpoint is what its output queue held, the receiver side what it had
    /// received ahead of the barrier, and what the upstream sender held is the upstream's.
    /// Catches: a task that takes the barrier only once credit comes (never, here), and output
    /// or input channel state that misses or repeats an overtaken record.
    #[tokio::test(start_paused = true)]
    async fn a_task_waiting_for_credit_takes_a_priority_barrier_and_splits_the_overtaken_records() {
        let mut h = Setup { output_credit: 2, ..Setup::default() }.start(async |_| {}).await;
        for i in 0..6 {
            send(&mut h.inputs[0], i).await;
        }
        settle(1).await;
        assert_eq!(h.processed(), vec![0, 1, 2], "two buffers of credit, the third record on an overdraft");
        let upstream: Vec<u64> = h.inputs[0]
            .push_priority(barrier(1, CheckpointMode::ExactlyOnce, Alignment::Unaligned))
            .iter()
            .map(|r| r.origin.offset)
            .collect();
        settle(1).await;
        assert_eq!(h.snapshots(), vec![(1, vec![0, 1, 2])], "taken while the output waits");
        let reports = h.reports();
        let Some(TaskReport::Ack { channel_state, stats, .. }) = reports.first() else { panic!("an ack: {reports:?}") };
        let of = |end| channel_state.iter().filter(|p| p.end == end).map(|p| p.record.origin.offset).collect::<Vec<_>>();
        assert_eq!(of(ChannelEnd::Output), vec![0, 1, 2], "its output queue and the buffer in hand");
        assert_eq!(of(ChannelEnd::Input), vec![3], "the buffer it had received");
        assert_eq!(upstream, vec![4, 5], "the rest was still at the upstream sender");
        assert_eq!((stats.output_records, stats.persisted_records), (3, 4));
        assert_eq!(h.downstream().await.first().map(String::as_str), Some("p1"));
    }

    /// A task under backpressure forwards an aligned barrier that may time out behind its full
    /// output queue; when the aligned-checkpoint-timeout counted from the trigger passes, the
    /// task switches it there: a priority barrier at the head, the records it overtook this
    /// task's output channel state, once, and the ack then, not before.
    /// Catches: no sender-side switch (no ack: the downstream never drains), the timeout counted
    /// from the task's barrier instead of the trigger (the ack at 100 ms, not 70), an ack before
    /// the output state is complete, and a switch that loses, repeats or reorders records.
    #[tokio::test(start_paused = true)]
    async fn a_timed_out_aligned_barrier_stuck_in_the_output_queue_switches_at_the_sender() {
        let mut h = Setup { output_credit: 3, ..Setup::default() }.start(async |_| {}).await;
        send(&mut h.inputs[0], 0).await;
        send(&mut h.inputs[0], 1).await;
        // Triggered 30 ms ago: 70 ms of the 100 ms timeout are left.
        let b = Barrier {
            triggered_at: Instant::now() - Duration::from_millis(30),
            ..barrier(1, CheckpointMode::ExactlyOnce, Alignment::AlignedWithTimeout { timeout_ms: 100 })
        };
        send_barrier(&mut h.inputs[0], b).await;
        for i in 2..6 {
            send(&mut h.inputs[0], i).await;
        }
        settle(1).await;
        assert_eq!(h.snapshots(), vec![(1, vec![0, 1])], "aligned: one input channel");
        settle(67).await;
        assert!(acks(&h.reports()).is_empty(), "its barrier is still queued behind records 0 and 1");
        settle(3).await;
        let reports = h.reports();
        let Some(TaskReport::Ack { channel_state, stats, .. }) = reports.first() else { panic!("an ack after the switch: {reports:?}") };
        let output: Vec<u64> = channel_state.iter().filter(|p| p.end == ChannelEnd::Output).map(|p| p.record.origin.offset).collect();
        assert_eq!(output, vec![0, 1], "what the barrier overtook in the output queue, once");
        assert!(stats.unaligned && stats.output_records == 2);
        let down = h.downstream().await;
        assert_eq!(down.first().map(String::as_str), Some("p1"), "{down:?}");
        assert_eq!(&down[1..3], ["r0", "r1"], "still sent after it: {down:?}");
        assert!(!down.iter().any(|d| d == "b1"), "no in-order copy left: {down:?}");
    }
}
