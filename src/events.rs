//! What the engine reports: one serde enum, one JSON object per line in `--events FILE`.
//! The TUI, the scenario runner and the tests all read this same stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// An event with its time in milliseconds since the engine started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stamped {
    pub t_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// Everything the engine says happened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RecordProduced {
        partition: u32,
        offset: u64,
        value: String,
    },
    TaskManagerStarted {
        tm: String,
        slots: usize,
    },
    TaskManagerKilled {
        tm: String,
        tasks: Vec<String>,
    },
    /// A task manager stopped answering; its process and connections stay.
    TaskManagerHung {
        tm: String,
        tasks: Vec<String>,
    },
    /// The JobManager declared a killed or hung task manager lost, `after_ms` after it fell silent.
    TaskManagerLost {
        tm: String,
        after_ms: u64,
        #[serde(flatten)]
        detection: crate::types::Detection,
    },
    JobSubmitted {
        job_id: String,
        name: String,
    },
    JobRunning {
        attempt: u64,
    },
    JobFailing {
        reason: String,
    },
    /// `delay_ms` is the restart strategy's delay; `wait_ms` the time until the restart really
    /// runs, longer when the cancellation of tasks on an unreachable TM outlasts the delay
    /// (DefaultScheduler.java:383-393). The status line counts `wait_ms` down.
    JobRestarting {
        attempt: u64,
        delay_ms: u64,
        #[serde(default)]
        wait_ms: u64,
        strategy: String,
    },
    TasksWaitingForSlots {
        missing_slots: usize,
    },
    JobFailed {
        reason: String,
    },
    /// The job ended on purpose (stop-with-savepoint): FINISHED.
    JobFinished {
        reason: String,
    },
    /// The job starts from a snapshot of another run (`execution.state-recovery.path`).
    RestoredFromSnapshot {
        path: String,
        checkpoint: u64,
        /// `checkpoint` or `savepoint`.
        kind: String,
        from_parallelism: usize,
        to_parallelism: usize,
        claim_mode: String,
        note: String,
    },
    SavepointTriggered {
        checkpoint: u64,
        path: String,
        stop: bool,
    },
    SavepointCompleted {
        checkpoint: u64,
        path: String,
        bytes: u64,
    },
    SavepointFailed {
        checkpoint: u64,
        reason: String,
    },
    /// A stop-with-savepoint's savepoint completed, but the attempt ended before every task
    /// finished: Flink fails the job over instead of ending it FINISHED
    /// (StopWithSavepointTerminationHandlerImpl.java:169-181); the savepoint stays.
    StopWithSavepointInterrupted {
        checkpoint: u64,
        path: String,
    },
    /// The auditor's record could not be written beside a snapshot's `_metadata`: the snapshot
    /// completes (the record is ckptlab's, not state), and a run restored from it is judged from
    /// the restored point on.
    AuditRecordNotWritten {
        checkpoint: u64,
        reason: String,
    },
    /// The job ended and `externalized-checkpoint-retention` kept these checkpoints.
    CheckpointsRetained {
        retention: String,
        paths: Vec<String>,
    },
    StateRestored {
        checkpoint: Option<u64>,
        offsets: Vec<(u32, u64)>,
        note: String,
        /// The `auto.offset.reset` some partition started from (no checkpoint, no committed
        /// offset for it); `None` when every partition resumed from a checkpoint or the group.
        /// The TUI's banner decides on this, not on the note's wording.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset_reset: Option<crate::config::OffsetReset>,
    },
    CheckpointTriggered {
        checkpoint: u64,
        mode: String,
    },
    /// A checkpoint asked for while the most concurrent ones run: it starts when one ends.
    CheckpointTriggerQueued {
        in_progress: usize,
    },
    CheckpointTriggerRefused {
        reason: String,
    },
    BarrierInjected {
        checkpoint: u64,
        source: usize,
    },
    BarrierReceived {
        checkpoint: u64,
        task: String,
        channel: String,
    },
    AlignmentStarted {
        checkpoint: u64,
        task: String,
    },
    AlignmentFinished {
        checkpoint: u64,
        task: String,
        duration_ms: u64,
        buffered: u64,
    },
    SnapshotTaken {
        checkpoint: u64,
        task: String,
        bytes: u64,
        sync_ms: u64,
        async_ms: u64,
    },
    /// Alignment took longer than `aligned-checkpoint-timeout`: the task snapshots unaligned.
    AlignmentTimedOut {
        checkpoint: u64,
        task: String,
        after_ms: u64,
    },
    /// Unaligned: the records a barrier overtook at this task, persisted as channel state.
    ChannelStatePersisted {
        checkpoint: u64,
        task: String,
        records: u64,
        bytes: u64,
    },
    CheckpointCompleted {
        checkpoint: u64,
        duration_ms: u64,
        bytes: u64,
        offsets: Vec<(u32, u64)>,
    },
    CheckpointFailed {
        checkpoint: u64,
        reason: String,
    },
    TransactionCommitted {
        checkpoint: u64,
        lines: usize,
    },
    /// The Kafka sink's output topic: its broker aborted a transaction (the coordinator on the
    /// transaction's timeout, or a re-initialisation of its id fencing it).
    OutputTransactionAborted {
        transactional_id: String,
        reason: String,
        /// On a timeout: how long it was open, and its `transaction.timeout.ms` (0 otherwise).
        open_ms: u64,
        timeout_ms: u64,
    },
    /// The Kafka sink's committer could not commit a pre-committed transaction: its lines are
    /// lost from the read_committed output.
    OutputLost {
        transactional_id: String,
        checkpoint: u64,
        lines: u64,
        message: String,
    },
    SinkEmitted {
        line: String,
        repeat: bool,
        partition: u32,
        offset: u64,
    },
    ConfigChanged {
        key: String,
        value: String,
    },
    ConfigRejected {
        key: String,
        reason: String,
    },
    /// An option was set under an old spelling: it took effect under its Flink 2.x name.
    ConfigKeyDeprecated {
        key: String,
        replacement: String,
        origin: String,
    },
    /// A snapshot acknowledged for a checkpoint that no longer runs (expired, subsumed, failed,
    /// or of a cancelled attempt): its files were deleted.
    CheckpointAckDiscarded {
        checkpoint: u64,
        task: String,
    },
    BackendSwitched {
        from: String,
        to: String,
        checkpoint: Option<u64>,
        note: String,
    },
    /// The source topic's health changed (Kafka: broker unreachable, topic missing; `None`: fine again).
    TopicStatus {
        message: Option<String>,
    },
    GeneratorStarted {
        rate: u64,
        duration_ms: u64,
    },
    GeneratorFinished {
        produced: u64,
    },
    /// A generator gave up before its end (a partition that does not exist, a topic that cannot be used).
    GeneratorStopped {
        produced: u64,
        reason: String,
    },
}

impl Event {
    /// The event in words, as the event log shows it.
    pub fn describe(&self) -> String {
        match self {
            Event::RecordProduced { partition, offset, value } => format!("produced {value:?} to p{partition}@{offset}"),
            Event::TaskManagerStarted { tm, slots } => format!("TM {tm} started ({slots} slot(s))"),
            Event::TaskManagerKilled { tm, tasks } if tasks.is_empty() => format!("TM {tm} killed"),
            Event::TaskManagerKilled { tm, tasks } => format!("TM {tm} killed, with {}", tasks.join(", ")),
            Event::TaskManagerHung { tm, tasks } if tasks.is_empty() => format!("TM {tm} hangs (answers nothing, connections open)"),
            Event::TaskManagerHung { tm, tasks } => {
                format!("TM {tm} hangs (answers nothing, connections open), with {} frozen", tasks.join(", "))
            }
            Event::TaskManagerLost { tm, after_ms, detection } => {
                format!("JobManager: TM {tm} lost {after_ms} ms after it fell silent: {}", detection.summary())
            }
            Event::JobSubmitted { name, job_id } => format!("job {name} submitted ({job_id})"),
            Event::JobRunning { attempt } => format!("job running (attempt {attempt})"),
            Event::JobFailing { reason } => format!("job failing: {reason}"),
            Event::JobRestarting { delay_ms, wait_ms, strategy, .. } if wait_ms > delay_ms => {
                format!("restarting in {wait_ms} ms ({strategy}: {delay_ms} ms delay, then the cancellation of the tasks on an unreachable TM)")
            }
            Event::JobRestarting { delay_ms, strategy, .. } => format!("restarting in {delay_ms} ms ({strategy})"),
            Event::TasksWaitingForSlots { missing_slots } => {
                format!("job RUNNING, its tasks SCHEDULED: {missing_slots} slot(s) missing; start a TM")
            }
            Event::JobFailed { reason } => format!("job FAILED: {reason}"),
            Event::StateRestored { checkpoint: Some(id), offsets, note, .. } => {
                format!("restored checkpoint {id}: offsets {}{}", offsets_text(offsets), note_text(note))
            }
            Event::StateRestored { checkpoint: None, offsets, note, .. } => {
                format!("no checkpoint to restore: empty state, offsets {}{}", offsets_text(offsets), note_text(note))
            }
            Event::CheckpointTriggered { checkpoint, mode } => format!("checkpoint {checkpoint} triggered ({mode})"),
            Event::CheckpointTriggerQueued { in_progress } => {
                format!("checkpoint queued: {in_progress} in progress (max-concurrent-checkpoints); it starts when one ends")
            }
            Event::CheckpointTriggerRefused { reason } => format!("checkpoint not triggered: {reason}"),
            Event::BarrierInjected { checkpoint, source } => format!("source[{source}] emitted barrier {checkpoint}"),
            Event::BarrierReceived { checkpoint, task, channel } => format!("{task} got barrier {checkpoint} on {channel}"),
            Event::AlignmentStarted { checkpoint, task } => format!("{task} aligning for checkpoint {checkpoint}"),
            Event::AlignmentFinished { checkpoint, task, duration_ms, buffered } => {
                format!("{task} aligned for checkpoint {checkpoint} in {duration_ms} ms ({buffered} records waited on blocked channels)")
            }
            Event::SnapshotTaken { checkpoint, task, bytes, .. } => format!("{task} snapshot for checkpoint {checkpoint}: {bytes} B"),
            Event::AlignmentTimedOut { checkpoint, task, after_ms } => {
                format!("{task} switched checkpoint {checkpoint} to unaligned after {after_ms} ms of alignment")
            }
            Event::ChannelStatePersisted { checkpoint, task, records, bytes } => {
                format!("{task} persisted {records} in-flight record(s) ({bytes} B) for checkpoint {checkpoint}")
            }
            Event::CheckpointCompleted { checkpoint, duration_ms, .. } => format!("checkpoint {checkpoint} completed in {duration_ms} ms"),
            Event::CheckpointFailed { checkpoint, reason } => format!("checkpoint {checkpoint} FAILED: {reason}"),
            Event::TransactionCommitted { checkpoint, lines } => format!("sink committed {lines} line(s) of checkpoint {checkpoint}"),
            Event::OutputTransactionAborted { reason, .. } => format!("output topic: {reason}"),
            Event::OutputLost { message, .. } => message.clone(),
            Event::SinkEmitted { line, repeat, .. } => format!("{line}{}", if *repeat { "  (repeat)" } else { "" }),
            Event::ConfigChanged { key, value } => format!("{key} = {value}"),
            Event::ConfigRejected { key, reason } => format!("{key} not changed: {reason}"),
            Event::ConfigKeyDeprecated { key, replacement, origin } => {
                format!("{origin}: `{key}` is deprecated, use `{replacement}` (it took effect as {replacement})")
            }
            Event::CheckpointAckDiscarded { checkpoint, task } => {
                format!("{task}'s late snapshot for checkpoint {checkpoint} discarded (the checkpoint no longer runs)")
            }
            Event::TopicStatus { message: Some(m) } => format!("topic: {m}"),
            Event::TopicStatus { message: None } => "topic: reachable again".into(),
            Event::BackendSwitched { from, to, note, .. } => format!("state backend {from} -> {to}: {note}"),
            Event::JobFinished { reason } => format!("job FINISHED: {reason}"),
            Event::RestoredFromSnapshot { path, checkpoint, kind, from_parallelism, to_parallelism, claim_mode, note } => {
                let scale = if from_parallelism == to_parallelism {
                    format!("parallelism {to_parallelism}")
                } else {
                    format!("parallelism {from_parallelism} -> {to_parallelism}")
                };
                format!("restored from {path} ({kind} {checkpoint}, {scale}, {claim_mode}){}", note_text(note))
            }
            Event::SavepointTriggered { checkpoint, path, stop } => {
                format!("{} {checkpoint} triggered into {path}", if *stop { "stop-with-savepoint" } else { "savepoint" })
            }
            Event::SavepointCompleted { checkpoint, path, bytes } => {
                format!("savepoint {checkpoint} completed: {path} ({})", crate::duration::format_size(*bytes))
            }
            Event::SavepointFailed { checkpoint, reason } => format!("savepoint {checkpoint} failed: {reason}"),
            Event::StopWithSavepointInterrupted { checkpoint, path } => format!(
                "stop-with-savepoint {checkpoint}: savepoint {path} was taken, but not every task finished: the job fails over instead of ending FINISHED"
            ),
            Event::AuditRecordNotWritten { checkpoint, reason } => format!(
                "snapshot {checkpoint}: the auditor's record was not written ({reason}); a run restored from it is judged from the restored point on"
            ),
            Event::CheckpointsRetained { retention, paths } if paths.is_empty() => format!("{retention}: no completed checkpoint to keep"),
            Event::CheckpointsRetained { retention, paths } => format!("{retention}: kept {}", paths.join(", ")),
            // duration 0: an endless generator (the workbench's `g`), stopped by a key or a step.
            Event::GeneratorStarted { rate, duration_ms: 0 } => format!("generator: {rate} records/s until stopped"),
            Event::GeneratorStarted { rate, duration_ms } => format!("generator: {rate} records/s for {duration_ms} ms"),
            Event::GeneratorFinished { produced } => format!("generator finished ({produced} records)"),
            Event::GeneratorStopped { produced, reason } => format!("generator stopped after {produced} records: {reason}"),
        }
    }
}

fn offsets_text(offsets: &[(u32, u64)]) -> String {
    offsets.iter().map(|(p, o)| format!("p{p}@{o}")).collect::<Vec<_>>().join(" ")
}

fn note_text(note: &str) -> String {
    if note.is_empty() {
        String::new()
    } else {
        format!(" ({note})")
    }
}

/// Fans events out to subscribers. Publishing with no subscriber costs one atomic load, so
/// per-record events are free in benchmarks.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

struct BusInner {
    start: Instant,
    any: AtomicBool,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Stamped>>>,
}

impl EventBus {
    pub fn new(start: Instant) -> Self {
        EventBus { inner: Arc::new(BusInner { start, any: AtomicBool::new(false), subscribers: Mutex::new(Vec::new()) }) }
    }

    /// Milliseconds since the engine started (tokio's clock, so paused-clock tests see model time).
    pub fn now_ms(&self) -> u64 {
        self.inner.start.elapsed().as_millis() as u64
    }

    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Stamped> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subs = self.inner.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.push(tx);
        self.inner.any.store(true, Ordering::Release);
        rx
    }

    /// Whether anyone listens (callers skip building per-record events otherwise).
    pub fn active(&self) -> bool {
        self.inner.any.load(Ordering::Acquire)
    }

    pub fn publish(&self, event: Event) {
        if !self.active() {
            return;
        }
        let stamped = Stamped { t_ms: self.now_ms(), event };
        let mut subs = self.inner.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| s.send(stamped.clone()).is_ok());
        if subs.is_empty() {
            self.inner.any.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Event;

    /// Issue 25 §7's inconsistent texts: an endless generator said "for 0 ms"; a restart the
    /// cancellation delays said the strategy's delay while the status line counted the real wait.
    #[test]
    fn descriptions_say_what_happens() {
        assert_eq!(Event::GeneratorStarted { rate: 10, duration_ms: 0 }.describe(), "generator: 10 records/s until stopped");
        assert_eq!(Event::GeneratorStarted { rate: 10, duration_ms: 500 }.describe(), "generator: 10 records/s for 500 ms");
        let restart = |wait_ms| Event::JobRestarting { attempt: 2, delay_ms: 1000, wait_ms, strategy: "fixed-delay".into() }.describe();
        assert_eq!(restart(1000), "restarting in 1000 ms (fixed-delay)");
        assert_eq!(
            restart(3900),
            "restarting in 3900 ms (fixed-delay: 1000 ms delay, then the cancellation of the tasks on an unreachable TM)"
        );
    }
}
