//! The CheckpointCoordinator: triggers checkpoints, collects acknowledgements, completes or fails
//! them, keeps the last N and the statistics that Flink's Checkpoints tab shows.
//!
//! It owns the bookkeeping and does no I/O but the one finalize step it is handed: completing a
//! checkpoint is one call ([`CheckpointCoordinator::complete_pending`], as Flink's
//! `completePendingCheckpoint`) that returns a [`CompletionPlan`]: what the JobManager carries
//! out (register, commit offsets, drop, subsume, notify), decided in one place.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::failure::CheckpointFailureReason;
use super::task::{SnapshotStats, TaskState};
use crate::state::storage::{CheckpointMetadata, SnapshotKind, StagedLine, TaskChannelState};
use crate::state::{StateError, StateHandle};
use crate::types::{CheckpointMode, PersistedRecord, TaskId};

/// Lines of history kept for the checkpoints pane.
const HISTORY_KEEP: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckpointStatus {
    InProgress,
    Completed,
    Failed,
}

/// One row of the checkpoint history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointStats {
    pub id: u64,
    pub status: CheckpointStatus,
    pub mode: CheckpointMode,
    pub trigger_ms: u64,
    pub duration_ms: u64,
    /// The largest start delay of its subtasks (Flink's summary `start_delay.max`): how long the
    /// slowest barrier took from the trigger to its subtask. A failed checkpoint counts the
    /// barriers that had arrived; one that never came is in `subtasks` as still waiting.
    #[serde(default)]
    pub start_delay_ms: u64,
    pub alignment_ms: u64,
    /// Bytes this checkpoint wrote (the delta, for incremental checkpoints).
    pub checkpointed_size: u64,
    /// Bytes of the whole state it captures.
    pub full_size: u64,
    pub offsets: Vec<(u32, u64)>,
    pub failure: Option<String>,
    /// The failure's Flink name (`CHECKPOINT_EXPIRED`, ...): what the Flink bridge counts by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Bytes of in-flight records persisted as channel state (unaligned; Flink's "Persisted Data").
    #[serde(default)]
    pub persisted_size: u64,
    /// The slowest task's synchronous and asynchronous snapshot parts (Flink's UI shows these).
    #[serde(default)]
    pub sync_ms: u64,
    #[serde(default)]
    pub async_ms: u64,
    /// Some task took its snapshot unaligned.
    #[serde(default)]
    pub unaligned: bool,
    /// Per subtask, in the job graph's order (sources, counters, sink): Flink's
    /// SubtaskCheckpointStatistics, what the checkpoint details draw. Empty in JSON written
    /// before they were recorded.
    #[serde(default)]
    pub subtasks: Vec<SubtaskCheckpointStats>,
}

/// One subtask's part of a checkpoint (Flink's SubtaskCheckpointStatistics), from its ack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskCheckpointStats {
    /// `source[0]`, `counter[1]`, `sink[0]`.
    pub task: String,
    /// When its acknowledgement reached the coordinator, in ms after the trigger (Flink's
    /// end-to-end duration); `None`: it never acknowledged (a failed checkpoint waited for it).
    pub ack_ms: Option<u64>,
    /// From the trigger until its (first) barrier reached it, or a source took the trigger
    /// (Flink's `checkpointStartDelayNanos`, the web UI's and REST's `start_delay`); `None`: the
    /// barrier never reached it (a failed checkpoint), or a ckptlab before start delays.
    #[serde(default)]
    pub start_delay_ms: Option<u64>,
    /// From the first barrier to the last on its inputs (0 for a source, which has none); for a
    /// subtask of a failed checkpoint that was still aligning, the alignment so far.
    pub alignment_ms: u64,
    pub sync_ms: u64,
    pub async_ms: u64,
    /// Bytes of keyed state it wrote (the delta, for incremental checkpoints).
    pub checkpointed_size: u64,
    /// Bytes of in-flight records it persisted as channel state (unaligned).
    pub persisted_size: u64,
    /// The part of `persisted_size` it persisted as a sender (output channel state: what its
    /// barrier overtook in its output queues); the rest is input channel state.
    #[serde(default)]
    pub output_size: u64,
    pub unaligned: bool,
    /// A source's offsets, per partition: where a restore resumes reading.
    pub offsets: Vec<(u32, u64)>,
    /// A subtask that never acknowledged: where it was when the checkpoint failed (`None`: it
    /// acknowledged, or nothing is known of it: its task was not running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unacknowledged: Option<Unacknowledged>,
}

/// Where a subtask that never acknowledged was when its checkpoint failed: what an expired
/// checkpoint's anatomy explains (Flink's UI only shows such a subtask as pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Unacknowledged {
    /// The barrier had not reached it after `waited_ms` (its start delay so far):
    /// `records_ahead` records were queued ahead of the barrier on its input channels, and on
    /// `channels_without_barrier` of them the sender had not sent the barrier yet.
    WaitingForBarrier { waited_ms: u64, records_ahead: u64, channels_without_barrier: usize },
    /// Its first barrier came (the alignment so far is the subtask's `alignment_ms`): on the
    /// channels still without it, `records_ahead` records were ahead of the barrier, and
    /// `blocked_records` waited on the channels alignment blocked.
    Aligning { records_ahead: u64, blocked_records: u64 },
    /// It took its snapshot; the asynchronous part (the upload) had run `async_ms` so far.
    Writing { async_ms: u64 },
}

/// What a task's live view says of a pending checkpoint (read by the JobManager when the
/// checkpoint fails: [`crate::cluster::runner::progress_of`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskProgress {
    pub task: TaskId,
    /// When its first barrier came, and how long after the trigger (`None`: not yet).
    pub barrier_at: Option<Instant>,
    pub start_delay: Option<Duration>,
    /// When it took its snapshot.
    pub snapshot_at: Option<Instant>,
    /// Records queued ahead of the barrier on its input channels.
    pub records_ahead: u64,
    pub channels_without_barrier: usize,
    /// Records waiting on channels its alignment blocked.
    pub blocked_records: u64,
}

impl CheckpointStats {
    /// Bytes of channel state persisted by senders (output), of `persisted_size`.
    pub fn output_size(&self) -> u64 {
        self.subtasks.iter().map(|s| s.output_size).sum()
    }

    /// A failed checkpoint whose barrier never reached some subtask: how long that barrier had
    /// been on its way (the start delay is more than this).
    pub fn barrier_still_waiting_ms(&self) -> Option<u64> {
        self.subtasks
            .iter()
            .filter_map(|s| match s.unacknowledged {
                Some(Unacknowledged::WaitingForBarrier { waited_ms, .. }) => Some(waited_ms),
                _ => None,
            })
            .max()
    }
}

impl SubtaskCheckpointStats {
    /// When the (first) barrier reached it, in ms after the trigger: its start delay, or, in
    /// history written before start delays were recorded, what is left of its end-to-end time
    /// once alignment, sync and async are taken out (an estimate).
    pub fn barrier_ms(&self) -> Option<u64> {
        self.start_delay_ms.or_else(|| self.ack_ms.map(|ack| ack.saturating_sub(self.alignment_ms + self.sync_ms + self.async_ms)))
    }

    fn of(task: TaskId, state: Option<&TaskState>, stats: Option<&SnapshotStats>, ack_ms: Option<u64>) -> Self {
        let stats = stats.cloned().unwrap_or_default();
        let (checkpointed_size, offsets) = match state {
            Some(TaskState::Keyed { checkpointed_size, .. }) => (*checkpointed_size, Vec::new()),
            Some(TaskState::Source { offsets }) => (0, offsets.clone()),
            _ => (0, Vec::new()),
        };
        SubtaskCheckpointStats {
            task: task.to_string(),
            ack_ms,
            start_delay_ms: state.map(|_| stats.start_delay_ms),
            alignment_ms: stats.alignment_ms,
            sync_ms: stats.sync_ms,
            async_ms: stats.async_ms,
            checkpointed_size,
            persisted_size: stats.persisted_bytes,
            output_size: stats.output_bytes,
            unaligned: stats.unaligned,
            offsets,
            unacknowledged: None,
        }
    }

    /// A subtask that never acknowledged, as far as its task's view says: its start delay,
    /// alignment and upload so far at `now`, and what it was waiting for.
    fn pending(&mut self, p: &TaskProgress, triggered: Instant, now: Instant) {
        let ms = |d: Duration| d.as_millis() as u64;
        self.start_delay_ms = p.start_delay.map(ms);
        self.unacknowledged = Some(match (p.barrier_at, p.snapshot_at) {
            (None, _) => Unacknowledged::WaitingForBarrier {
                waited_ms: ms(now.saturating_duration_since(triggered)),
                records_ahead: p.records_ahead,
                channels_without_barrier: p.channels_without_barrier,
            },
            (Some(at), None) => {
                self.alignment_ms = ms(now.saturating_duration_since(at));
                Unacknowledged::Aligning { records_ahead: p.records_ahead, blocked_records: p.blocked_records }
            }
            (Some(at), Some(snap)) => {
                self.alignment_ms = ms(snap.saturating_duration_since(at));
                Unacknowledged::Writing { async_ms: ms(now.saturating_duration_since(snap)) }
            }
        });
    }
}

/// A checkpoint in flight.
#[derive(Debug)]
pub struct PendingCheckpoint {
    pub id: u64,
    pub mode: CheckpointMode,
    pub triggered: Instant,
    pub trigger_ms: u64,
    pub acks: HashMap<TaskId, (TaskState, SnapshotStats)>,
    /// When each ack arrived, in ms after the trigger.
    pub ack_ms: HashMap<TaskId, u64>,
    pub channel_state: Vec<TaskChannelState>,
    pub expected: Vec<TaskId>,
    /// A savepoint travels as a checkpoint with its own barrier; only where it is written and
    /// what completing it does differ.
    pub kind: SnapshotKind,
}

impl PendingCheckpoint {
    /// Tasks that have not acknowledged yet.
    pub fn missing(&self) -> Vec<TaskId> {
        self.expected.iter().filter(|t| !self.acks.contains_key(t)).copied().collect()
    }

    /// Every expected subtask's figures in the job graph's order, those that never acked included.
    fn subtasks(&self) -> Vec<SubtaskCheckpointStats> {
        let mut tasks = self.expected.clone();
        tasks.sort_unstable();
        tasks
            .into_iter()
            .map(|t| {
                let ack = self.acks.get(&t);
                SubtaskCheckpointStats::of(t, ack.map(|a| &a.0), ack.map(|a| &a.1), self.ack_ms.get(&t).copied())
            })
            .collect()
    }
}

/// A completed, retained checkpoint: what a restore needs.
#[derive(Debug, Clone)]
pub struct CompletedCheckpoint {
    pub metadata: CheckpointMetadata,
    /// A snapshot the job was started from (`execution.state-recovery.path`), which lies outside
    /// this job's directory; `None`: one of this job's own checkpoints.
    pub external: Option<ExternalSnapshot>,
}

/// Where a restored snapshot lives and whether the job owns it (Flink's claim mode).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalSnapshot {
    pub dir: std::path::PathBuf,
    /// CLAIM: the job deletes it once subsumed; NO_CLAIM: never touched.
    pub owned: bool,
}

/// Counts shown beside the history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointCounts {
    pub triggered: u64,
    pub completed: u64,
    pub failed: u64,
    pub restored: u64,
}

#[derive(Debug, Default)]
pub struct CheckpointCoordinator {
    next_id: u64,
    pending: BTreeMap<u64, PendingCheckpoint>,
    retained: VecDeque<CompletedCheckpoint>,
    history: VecDeque<CheckpointStats>,
    counts: CheckpointCounts,
    last_completion: Option<Instant>,
    consecutive_failures: u64,
}

/// What an acknowledgement did.
#[derive(Debug)]
pub enum AckOutcome {
    /// Recorded; other tasks have yet to acknowledge.
    Pending,
    /// Recorded, and it was the last one: the checkpoint can complete.
    Complete,
    /// No pending checkpoint takes it (expired, subsumed, failed, or a task it does not expect):
    /// the state is nobody's and its files must go (Flink discards late and unknown acks' state).
    Unknown(TaskState),
}

/// What completing a checkpoint produced.
pub struct Completion {
    pub metadata: CheckpointMetadata,
    pub stats: CheckpointStats,
}

/// Why the finalize step of a fully acknowledged checkpoint failed (Flink's
/// FINALIZE_CHECKPOINT_FAILURE); the checkpoint then fails with its text as the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FinalizeError {
    /// A shared file the snapshots reuse (incremental RocksDB) is gone.
    #[error("{0}")]
    SharedFileMissing(StateError),
    /// `_metadata` could not be written.
    #[error("writing _metadata: {0}")]
    WriteMetadata(StateError),
}

/// What the JobManager carries out once a pending checkpoint had its last acknowledgement: the
/// coordinator has finalized it (through the step it was handed) and done its own bookkeeping.
#[derive(Debug)]
pub enum CompletionPlan {
    /// A checkpoint completed and is retained.
    Checkpoint(CheckpointPlan),
    /// A savepoint completed: counted and shown only (never retained for failover, nothing
    /// committed, nothing subsumed: FLIP-193).
    Savepoint { stats: CheckpointStats },
    /// Finalizing failed (Flink's FINALIZE_CHECKPOINT_FAILURE): the checkpoint is recorded as
    /// failed, nothing is retained, dropped or subsumed; the keyed state handles it acknowledged
    /// are nobody's.
    FinalizeFailed { handles: Vec<StateHandle>, reason: CheckpointFailureReason },
}

/// A completed checkpoint's consequences, in the order the JobManager carries them out.
#[derive(Debug)]
pub struct CheckpointPlan {
    pub checkpoint: u64,
    /// The new checkpoint's keyed state handles: their shared files are registered before any
    /// dropped checkpoint's are released, so files both use survive.
    pub register: Vec<StateHandle>,
    /// The source offsets it covers: committed to the consumer group (Kafka, for monitoring, as
    /// Flink), once, and the records below them may be released.
    pub commit_offsets: Vec<(u32, u64)>,
    /// Retained checkpoints past `num-retained`: their files go. Never the new one.
    pub drop: Vec<CompletedCheckpoint>,
    /// The oldest checkpoint still retained: retention must keep what it would replay.
    pub oldest_retained_offsets: Vec<(u32, u64)>,
    /// Older pending checkpoints it subsumes (a checkpoint subsumes checkpoints, never a
    /// savepoint): they fail as SUBSUMED.
    pub subsume: Vec<u64>,
    pub stats: CheckpointStats,
}

impl CheckpointCoordinator {
    pub fn new() -> Self {
        CheckpointCoordinator { next_id: 1, ..Default::default() }
    }

    /// Registers a new pending checkpoint and returns its id.
    pub fn begin(&mut self, mode: CheckpointMode, now: Instant, now_ms: u64, expected: Vec<TaskId>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.counts.triggered += 1;
        self.pending.insert(
            id,
            PendingCheckpoint {
                id,
                mode,
                triggered: now,
                trigger_ms: now_ms,
                acks: HashMap::new(),
                ack_ms: HashMap::new(),
                channel_state: Vec::new(),
                expected,
                kind: SnapshotKind::Checkpoint,
            },
        );
        id
    }

    /// Registers a pending savepoint (a checkpoint written elsewhere, in canonical form).
    pub fn begin_savepoint(&mut self, mode: CheckpointMode, now: Instant, now_ms: u64, expected: Vec<TaskId>) -> u64 {
        let id = self.begin(mode, now, now_ms, expected);
        if let Some(p) = self.pending.get_mut(&id) {
            p.kind = SnapshotKind::Savepoint;
        }
        id
    }

    /// The job starts from a snapshot of another run: it becomes the checkpoint a failover
    /// restores until this job completes one of its own (as Flink adds it to the completed
    /// checkpoint store), and checkpoint ids go on after it.
    pub fn restore_external(&mut self, metadata: CheckpointMetadata, external: ExternalSnapshot) {
        self.next_id = self.next_id.max(metadata.checkpoint + 1);
        self.retained.push_back(CompletedCheckpoint { metadata, external: Some(external) });
    }

    /// A savepoint completed: counted and shown, never retained for failover (Flink 2 does not
    /// recover from savepoints it took), never deleted.
    pub fn record_savepoint(&mut self, completion: Completion) {
        self.counts.completed += 1;
        self.push_history(completion.stats);
    }

    /// Whether a checkpoint may be triggered now: Flink triggers only when every task of the job
    /// is RUNNING; otherwise NOT_ALL_REQUIRED_TASKS_RUNNING, a pre-flight failure (nothing is
    /// triggered, nothing counts as failed).
    pub fn check_trigger(expected: &[TaskId], running: &std::collections::HashSet<TaskId>) -> Result<(), CheckpointFailureReason> {
        let waiting_for: Vec<TaskId> = expected.iter().filter(|t| !running.contains(t)).copied().collect();
        if waiting_for.is_empty() {
            Ok(())
        } else {
            Err(CheckpointFailureReason::NotAllRequiredTasksRunning { waiting_for })
        }
    }

    /// Checkpoints allowed in flight at once: a minimum pause between checkpoints forces one
    /// (as Flink's CheckpointRequestDecider: the pause is measured from the end of the last one).
    pub fn max_concurrent(configured: usize, min_pause: Duration) -> usize {
        if min_pause.is_zero() {
            configured
        } else {
            1
        }
    }

    /// Records an acknowledgement.
    pub fn ack(
        &mut self,
        id: u64,
        task: TaskId,
        state: TaskState,
        stats: SnapshotStats,
        channel_state: Vec<PersistedRecord>,
    ) -> AckOutcome {
        match self.pending.get_mut(&id) {
            Some(p) if p.expected.contains(&task) && !p.acks.contains_key(&task) => {
                if !channel_state.is_empty() {
                    p.channel_state.push(TaskChannelState { task, records: channel_state });
                }
                p.acks.insert(task, (state, stats));
                p.ack_ms.insert(task, Instant::now().saturating_duration_since(p.triggered).as_millis() as u64);
                if p.acks.len() >= p.expected.len() {
                    AckOutcome::Complete
                } else {
                    AckOutcome::Pending
                }
            }
            _ => AckOutcome::Unknown(state),
        }
    }

    /// Whether `id` is a retained (completed) checkpoint: its files must never be discarded for a
    /// late acknowledgement.
    pub fn is_retained(&self, id: u64) -> bool {
        self.retained.iter().any(|c| c.metadata.checkpoint == id)
    }

    /// After a counted failure: when the consecutive counted failures exceed `tolerable`, the
    /// count (which starts again from zero) — the job must fail over.
    pub fn take_intolerable(&mut self, tolerable: u64) -> Option<u64> {
        if self.consecutive_failures > tolerable {
            Some(std::mem::take(&mut self.consecutive_failures))
        } else {
            None
        }
    }

    /// Completes a fully acknowledged checkpoint in one call (Flink's `completePendingCheckpoint`):
    /// takes it out of `pending`, hands its metadata to `finalize` (which may amend it, and writes
    /// `_metadata`), then retains it (or records the savepoint, or the failure) and returns what
    /// the JobManager must carry out. `None`: no such pending checkpoint (completed already, or
    /// failed), so nothing is committed or dropped twice.
    pub fn complete_pending(
        &mut self,
        id: u64,
        job_id: &str,
        now: Instant,
        num_retained: usize,
        finalize: impl FnOnce(&mut CheckpointMetadata) -> Result<(), FinalizeError>,
    ) -> Option<CompletionPlan> {
        let mut completion = self.complete(id, job_id, now)?;
        if let Err(e) = finalize(&mut completion.metadata) {
            let reason = CheckpointFailureReason::FinalizeFailure { message: e.to_string() };
            self.record_failure(completion.stats, &reason, completion.metadata.kind);
            return Some(CompletionPlan::FinalizeFailed { handles: completion.metadata.keyed, reason });
        }
        if completion.metadata.kind == SnapshotKind::Savepoint {
            let stats = completion.stats.clone();
            self.record_savepoint(completion);
            return Some(CompletionPlan::Savepoint { stats });
        }
        let register = completion.metadata.keyed.clone();
        let commit_offsets = completion.metadata.offsets.clone();
        let stats = completion.stats.clone();
        let drop = self.retain(completion, num_retained, now);
        let subsume = self.pending.values().filter(|p| p.id < id && p.kind == SnapshotKind::Checkpoint).map(|p| p.id).collect();
        Some(CompletionPlan::Checkpoint(CheckpointPlan {
            checkpoint: id,
            register,
            commit_offsets,
            drop,
            oldest_retained_offsets: self.oldest_offsets(),
            subsume,
            stats,
        }))
    }

    /// Takes a fully acknowledged checkpoint out of `pending` and builds its metadata and stats.
    pub fn complete(&mut self, id: u64, job_id: &str, now: Instant) -> Option<Completion> {
        let p = self.pending.remove(&id)?;
        let subtasks = p.subtasks();
        let mut offsets = Vec::new();
        let mut keyed: Vec<(usize, StateHandle)> = Vec::new();
        let mut staged_output: Vec<StagedLine> = Vec::new();
        let mut kafka_sink = None;
        let (mut checkpointed, mut full, mut alignment, mut persisted, mut unaligned) = (0, 0, 0, 0, false);
        let (mut sync_ms, mut async_ms, mut start_delay_ms) = (0, 0, 0);
        for (task, (state, stats)) in p.acks {
            alignment = alignment.max(stats.alignment_ms);
            start_delay_ms = start_delay_ms.max(stats.start_delay_ms);
            persisted += stats.persisted_bytes;
            sync_ms = sync_ms.max(stats.sync_ms);
            async_ms = async_ms.max(stats.async_ms);
            unaligned |= stats.unaligned;
            match (task, state) {
                (_, TaskState::Source { offsets: o }) => offsets.extend(o),
                (TaskId::Counter(i), TaskState::Keyed { handle, checkpointed_size, full_size }) => {
                    checkpointed += checkpointed_size;
                    full += full_size;
                    keyed.push((i, handle));
                }
                (_, TaskState::Sink { staged, kafka }) => (staged_output, kafka_sink) = (staged, kafka),
                (_, TaskState::Keyed { .. }) => {}
            }
        }
        offsets.sort_unstable();
        keyed.sort_by_key(|(i, _)| *i);
        let metadata = CheckpointMetadata {
            job_id: job_id.to_string(),
            checkpoint: id,
            kind: p.kind,
            format: None,
            completed_at_ms: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            job: None,
            mode: p.mode,
            offsets: offsets.clone(),
            keyed: keyed.into_iter().map(|(_, h)| h).collect(),
            staged_output,
            kafka_sink,
            channel_state: p.channel_state,
        };
        let stats = CheckpointStats {
            id,
            status: CheckpointStatus::Completed,
            mode: p.mode,
            trigger_ms: p.trigger_ms,
            duration_ms: now.duration_since(p.triggered).as_millis() as u64,
            start_delay_ms,
            alignment_ms: alignment,
            checkpointed_size: checkpointed,
            full_size: full,
            offsets,
            failure: None,
            failure_reason: None,
            persisted_size: persisted,
            sync_ms,
            async_ms,
            unaligned,
            subtasks,
        };
        Some(Completion { metadata, stats })
    }

    /// Records a completed checkpoint; returns the checkpoints no longer retained.
    pub fn retain(&mut self, completion: Completion, num_retained: usize, now: Instant) -> Vec<CompletedCheckpoint> {
        self.counts.completed += 1;
        self.consecutive_failures = 0;
        self.last_completion = Some(now);
        self.push_history(completion.stats);
        self.retained.push_back(CompletedCheckpoint { metadata: completion.metadata, external: None });
        let mut dropped = Vec::new();
        while self.retained.len() > num_retained {
            if let Some(old) = self.retained.pop_front() {
                dropped.push(old);
            }
        }
        dropped
    }

    /// Fails a pending checkpoint; the reason decides whether it counts toward the tolerable
    /// failures. Returns its statistics and the keyed state handles acknowledged so far (their
    /// files are now nobody's).
    pub fn fail(&mut self, id: u64, reason: &CheckpointFailureReason, now: Instant) -> Option<(CheckpointStats, Vec<StateHandle>)> {
        self.fail_with_progress(id, reason, now, &[])
    }

    /// [`Self::fail`], with what the tasks' views said of the checkpoint at `now`: each subtask
    /// that never acknowledged is recorded with its start delay, alignment or upload so far and
    /// what it waited for (the expired checkpoint's anatomy).
    pub fn fail_with_progress(
        &mut self,
        id: u64,
        reason: &CheckpointFailureReason,
        now: Instant,
        progress: &[TaskProgress],
    ) -> Option<(CheckpointStats, Vec<StateHandle>)> {
        let p = self.pending.remove(&id)?;
        let mut subtasks = p.subtasks();
        for st in subtasks.iter_mut().filter(|st| st.ack_ms.is_none()) {
            if let Some(tp) = progress.iter().find(|tp| tp.task.to_string() == st.task) {
                st.pending(tp, p.triggered, now);
            }
        }
        let handles = p
            .acks
            .values()
            .filter_map(|(state, _)| match state {
                TaskState::Keyed { handle, .. } => Some(handle.clone()),
                _ => None,
            })
            .collect();
        let stats = CheckpointStats {
            id,
            status: CheckpointStatus::Failed,
            mode: p.mode,
            trigger_ms: p.trigger_ms,
            duration_ms: now.duration_since(p.triggered).as_millis() as u64,
            start_delay_ms: subtasks.iter().filter_map(|s| s.start_delay_ms).max().unwrap_or(0),
            alignment_ms: subtasks.iter().map(|s| s.alignment_ms).max().unwrap_or(0),
            checkpointed_size: 0,
            full_size: 0,
            offsets: Vec::new(),
            failure: None,
            failure_reason: None,
            persisted_size: 0,
            sync_ms: 0,
            async_ms: 0,
            unaligned: p.acks.values().any(|(_, s)| s.unaligned),
            subtasks,
        };
        Some((self.record_failure(stats, reason, p.kind), handles))
    }

    /// Records a checkpoint that failed (also one that failed while being finalized). A savepoint
    /// that fails on the JobManager's side (expired, its `_metadata` not written) is counted as
    /// failed but not toward the tolerable failures: Flink 2.3's
    /// CheckpointFailureManager.handleJobLevelCheckpointException checks the counter only
    /// `if (!checkpointProperties.isSavepoint())` (CheckpointFailureManager.java:168-171); a
    /// task's decline of one goes through handleTaskLevelCheckpointException (:187-196), which
    /// counts it unless it is a stop-with-savepoint.
    pub fn record_failure(&mut self, mut stats: CheckpointStats, reason: &CheckpointFailureReason, kind: SnapshotKind) -> CheckpointStats {
        self.counts.failed += 1;
        let task_level = matches!(reason, CheckpointFailureReason::Declined { .. } | CheckpointFailureReason::AsyncException { .. });
        if (kind == SnapshotKind::Checkpoint || task_level) && reason.counts_toward_tolerable() {
            self.consecutive_failures += 1;
        }
        stats.status = CheckpointStatus::Failed;
        stats.failure = Some(reason.to_string());
        stats.failure_reason = Some(reason.flink_name().to_string());
        self.push_history(stats.clone());
        stats
    }

    fn push_history(&mut self, stats: CheckpointStats) {
        if self.history.len() >= HISTORY_KEEP {
            self.history.pop_front();
        }
        self.history.push_back(stats);
    }

    /// When the oldest pending checkpoint expires.
    pub fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.pending.values().map(|p| p.triggered + timeout).min()
    }

    /// The oldest retained checkpoint's source offsets (retention must keep what it would replay).
    pub fn oldest_offsets(&self) -> Vec<(u32, u64)> {
        self.retained.front().map(|c| c.metadata.offsets.clone()).unwrap_or_default()
    }

    /// The newest retained checkpoint.
    pub fn latest(&self) -> Option<&CompletedCheckpoint> {
        self.retained.back()
    }

    /// The retained checkpoints, oldest first.
    pub fn retained(&self) -> impl Iterator<Item = &CompletedCheckpoint> {
        self.retained.iter()
    }

    /// Gives up every retained checkpoint (the job ends, or is submitted again as a new job).
    pub fn take_retained(&mut self) -> Vec<CompletedCheckpoint> {
        std::mem::take(&mut self.retained).into()
    }

    /// The job is submitted again (a resubmit, a backend switch's new submission): Flink builds
    /// a new ExecutionGraph with a new CheckpointFailureManager, whose count of consecutive
    /// failed checkpoints starts at 0. Ids, counts and the history go on (one view of the run).
    pub fn new_job(&mut self) {
        self.consecutive_failures = 0;
    }

    /// The checkpoints in flight, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &PendingCheckpoint> {
        self.pending.values()
    }

    pub fn pending_ids(&self) -> Vec<u64> {
        self.pending.keys().copied().collect()
    }

    pub fn is_pending(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    /// How many checkpoints are in flight (against `max-concurrent-checkpoints`).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The pending checkpoints that have run for `timeout` by `now`.
    pub fn expired(&self, timeout: Duration, now: Instant) -> Vec<u64> {
        self.pending.values().filter(|p| p.triggered + timeout <= now).map(|p| p.id).collect()
    }

    /// When the last checkpoint completed (the min pause counts from there).
    pub fn last_completion(&self) -> Option<Instant> {
        self.last_completion
    }

    /// A deployment restores the latest checkpoint.
    pub fn record_restore(&mut self) {
        self.counts.restored += 1;
    }

    pub fn counts(&self) -> CheckpointCounts {
        self.counts
    }

    /// The checkpoint history, oldest first (the last [`HISTORY_KEEP`]).
    pub fn history(&self) -> impl Iterator<Item = &CheckpointStats> {
        self.history.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::state::StateHandle;

    const TASKS: [TaskId; 3] = [TaskId::Source(0), TaskId::Counter(0), TaskId::Sink];

    fn keyed(size: u64) -> TaskState {
        TaskState::Keyed { handle: StateHandle::File { path: format!("/x/{size}").into(), size }, checkpointed_size: size, full_size: size }
    }

    fn state(task: TaskId) -> TaskState {
        match task {
            TaskId::Source(_) => TaskState::Source { offsets: vec![(0, 7)] },
            TaskId::Counter(_) => keyed(10),
            TaskId::Sink => TaskState::Sink { staged: Vec::new(), kafka: None },
        }
    }

    fn ack_all(c: &mut CheckpointCoordinator, id: u64) -> Vec<AckOutcome> {
        TASKS.iter().map(|t| c.ack(id, *t, state(*t), SnapshotStats::default(), Vec::new())).collect()
    }

    #[test]
    fn a_checkpoint_completes_on_its_last_ack_with_offsets_and_handles() {
        let mut c = CheckpointCoordinator::new();
        let now = Instant::now();
        let id = c.begin(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
        let outcomes = ack_all(&mut c, id);
        assert!(matches!(outcomes[..], [AckOutcome::Pending, AckOutcome::Pending, AckOutcome::Complete]), "{outcomes:?}");
        let done = c.complete(id, "job", now + Duration::from_millis(40)).expect("complete");
        assert_eq!(done.stats.subtasks.iter().map(|s| s.start_delay_ms).collect::<Vec<_>>(), vec![Some(0); 3]);
        assert_eq!((done.metadata.offsets.clone(), done.metadata.keyed.len(), done.stats.duration_ms), (vec![(0, 7)], 1, 40));
        assert!(c.retain(done, 1, now).is_empty());
        assert!(c.is_retained(id) && c.pending.is_empty());
        assert_eq!((c.counts.triggered, c.counts.completed), (1, 1));
    }

    #[test]
    fn per_subtask_figures_come_from_the_acks_in_graph_order_and_a_missing_ack_is_none() {
        let mut c = CheckpointCoordinator::new();
        let now = Instant::now();
        let id = c.begin(CheckpointMode::ExactlyOnce, now, 0, vec![TaskId::Sink, TaskId::Counter(0), TaskId::Source(0)]);
        let aligned = SnapshotStats { alignment_ms: 30, sync_ms: 2, async_ms: 5, ..SnapshotStats::default() };
        c.ack(id, TaskId::Source(0), state(TaskId::Source(0)), SnapshotStats::default(), Vec::new());
        c.ack(id, TaskId::Counter(0), keyed(10), aligned, Vec::new());
        let (stats, _) = c.fail(id, &CheckpointFailureReason::Expired { timeout: Duration::from_secs(1) }, now).unwrap();
        let names: Vec<&str> = stats.subtasks.iter().map(|s| s.task.as_str()).collect();
        assert_eq!(names, ["source[0]", "counter[0]", "sink[0]"]);
        assert_eq!(stats.subtasks[0].offsets, vec![(0, 7)]);
        assert_eq!((stats.subtasks[1].alignment_ms, stats.subtasks[1].checkpointed_size), (30, 10));
        assert!(stats.subtasks[1].ack_ms.is_some() && stats.subtasks[2].ack_ms.is_none(), "the sink never acked");
    }

    /// Catches: an expired checkpoint whose never-acked subtasks show `0 ms` (no start delay,
    /// no alignment so far, nothing of what they waited for), or a start delay taken from the
    /// ack instead of the task's stamp.
    #[test]
    fn a_failed_checkpoint_records_where_each_never_acked_subtask_was() {
        let mut c = CheckpointCoordinator::new();
        let t0 = Instant::now();
        let tasks = vec![TaskId::Source(0), TaskId::Counter(0), TaskId::Counter(1), TaskId::Sink];
        let id = c.begin(CheckpointMode::ExactlyOnce, t0, 0, tasks);
        let delayed = SnapshotStats { start_delay_ms: 120, alignment_ms: 10, ..SnapshotStats::default() };
        c.ack(id, TaskId::Source(0), state(TaskId::Source(0)), SnapshotStats::default(), Vec::new());
        c.ack(id, TaskId::Counter(0), keyed(10), delayed, Vec::new());
        let ms = Duration::from_millis;
        let progress = [
            TaskProgress {
                task: TaskId::Counter(1),
                barrier_at: None,
                start_delay: None,
                snapshot_at: None,
                records_ahead: 340,
                channels_without_barrier: 0,
                blocked_records: 0,
            },
            TaskProgress {
                task: TaskId::Sink,
                barrier_at: Some(t0 + ms(200)),
                start_delay: Some(ms(200)),
                snapshot_at: None,
                records_ahead: 12,
                channels_without_barrier: 1,
                blocked_records: 3,
            },
        ];
        let expired = CheckpointFailureReason::Expired { timeout: ms(1000) };
        let (stats, _) = c.fail_with_progress(id, &expired, t0 + ms(1000), &progress).expect("pending");
        let st = |name: &str| stats.subtasks.iter().find(|s| s.task == name).expect(name).clone();
        assert_eq!(st("counter[0]").start_delay_ms, Some(120), "an ack's own stamp");
        assert_eq!(st("counter[0]").unacknowledged, None);
        let waiting = st("counter[1]");
        assert_eq!(
            (waiting.start_delay_ms, waiting.unacknowledged),
            (None, Some(Unacknowledged::WaitingForBarrier { waited_ms: 1000, records_ahead: 340, channels_without_barrier: 0 }))
        );
        let aligning = st("sink[0]");
        assert_eq!((aligning.start_delay_ms, aligning.alignment_ms), (Some(200), 800), "aligning since its barrier came");
        assert_eq!(aligning.unacknowledged, Some(Unacknowledged::Aligning { records_ahead: 12, blocked_records: 3 }));
        assert_eq!((stats.start_delay_ms, stats.alignment_ms), (200, 800), "the slowest so far");
        assert_eq!(stats.barrier_still_waiting_ms(), Some(1000), "counter[1]'s barrier never came");
    }

    #[test]
    fn retaining_past_num_retained_drops_the_oldest() {
        let mut c = CheckpointCoordinator::new();
        let now = Instant::now();
        let mut dropped = Vec::new();
        for _ in 0..3 {
            let id = c.begin(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
            ack_all(&mut c, id);
            let done = c.complete(id, "job", now).unwrap();
            dropped.extend(c.retain(done, 2, now).into_iter().map(|m| m.metadata.checkpoint));
        }
        assert_eq!(dropped, vec![1]);
        assert_eq!(c.retained.iter().map(|r| r.metadata.checkpoint).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(c.latest().map(|r| r.metadata.checkpoint), Some(3));
    }

    #[test]
    fn late_duplicate_and_unexpected_acks_are_unknown_and_hand_back_their_state() {
        let mut c = CheckpointCoordinator::new();
        let now = Instant::now();
        let id = c.begin(CheckpointMode::ExactlyOnce, now, 0, vec![TaskId::Counter(0), TaskId::Counter(1)]);
        assert!(matches!(c.ack(id, TaskId::Counter(0), keyed(1), SnapshotStats::default(), Vec::new()), AckOutcome::Pending));
        assert!(
            matches!(c.ack(id, TaskId::Counter(0), keyed(2), SnapshotStats::default(), Vec::new()), AckOutcome::Unknown(_)),
            "duplicate"
        );
        assert!(
            matches!(c.ack(id, TaskId::Counter(5), keyed(3), SnapshotStats::default(), Vec::new()), AckOutcome::Unknown(_)),
            "not expected"
        );
        let expired = CheckpointFailureReason::Expired { timeout: Duration::from_millis(300) };
        let (stats, handles) = c.fail(id, &expired, now).expect("pending");
        assert_eq!(handles.len(), 1, "the handle acknowledged before the failure is handed back for discarding");
        assert!(stats.failure.as_deref().is_some_and(|f| f.contains("expired")));
        match c.ack(id, TaskId::Counter(1), keyed(4), SnapshotStats::default(), Vec::new()) {
            AckOutcome::Unknown(TaskState::Keyed { handle, .. }) => assert_eq!(handle.size(), 4),
            other => panic!("a late ack hands its state back: {other:?}"),
        }
    }

    #[test]
    fn only_counted_reasons_move_toward_the_tolerable_limit_and_a_completion_resets_it() {
        let mut c = CheckpointCoordinator::new();
        let now = Instant::now();
        let fail = |c: &mut CheckpointCoordinator, r: CheckpointFailureReason| {
            let id = c.begin(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
            c.fail(id, &r, now).expect("pending");
        };
        fail(&mut c, CheckpointFailureReason::Subsumed { by: 9 });
        fail(&mut c, CheckpointFailureReason::TaskFailure { cause: "tm-1 died".into() });
        fail(&mut c, CheckpointFailureReason::CoordinatorSuspend { why: "backend switch".into() });
        assert_eq!((c.counts.failed, c.consecutive_failures), (3, 0));
        assert_eq!(c.take_intolerable(0), None);
        fail(&mut c, CheckpointFailureReason::Expired { timeout: Duration::from_secs(1) });
        assert_eq!(c.take_intolerable(1), None, "one counted failure is tolerable with 1");
        fail(&mut c, CheckpointFailureReason::FinalizeFailure { message: "no space".into() });
        assert_eq!(c.take_intolerable(1), Some(2), "the second exceeds 1");
        assert_eq!(c.consecutive_failures, 0, "counting starts again after the failover");
        fail(&mut c, CheckpointFailureReason::Declined { task: TaskId::Sink, message: "x".into() });
        let id = c.begin(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
        ack_all(&mut c, id);
        let done = c.complete(id, "job", now).unwrap();
        c.retain(done, 1, now);
        assert_eq!(c.consecutive_failures, 0, "a completed checkpoint resets the count");
    }

    #[test]
    fn a_new_job_counts_its_failed_checkpoints_from_zero() {
        let mut c = CheckpointCoordinator::new();
        let now = Instant::now();
        for _ in 0..2 {
            let id = c.begin(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
            c.fail(id, &CheckpointFailureReason::Expired { timeout: Duration::from_millis(30) }, now).expect("pending");
        }
        c.new_job();
        let id = c.begin(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
        c.fail(id, &CheckpointFailureReason::Expired { timeout: Duration::from_millis(30) }, now).expect("pending");
        assert_eq!(c.take_intolerable(1), None, "the new job's first failure, not the old job's third");
        assert_eq!(c.counts.failed, 3, "the run's counts go on");
    }

    #[test]
    fn an_expired_savepoint_never_counts_toward_the_tolerable_limit() {
        let mut c = CheckpointCoordinator::new();
        let now = Instant::now();
        let id = c.begin_savepoint(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
        c.fail(id, &CheckpointFailureReason::Expired { timeout: Duration::from_millis(30) }, now).expect("pending");
        assert_eq!((c.counts.failed, c.consecutive_failures), (1, 0), "job-level savepoint failure: not against the counter");
        assert_eq!(c.take_intolerable(0), None, "tolerable 0 still tolerates a failed savepoint");
        let id = c.begin(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
        c.fail(id, &CheckpointFailureReason::Expired { timeout: Duration::from_millis(30) }, now).expect("pending");
        assert_eq!(c.take_intolerable(1), None, "the checkpoint after it is the first counted failure");
    }

    #[test]
    fn triggering_needs_every_task_running_and_min_pause_forces_one_concurrent() {
        let running: HashSet<TaskId> = [TaskId::Source(0), TaskId::Sink].into_iter().collect();
        match CheckpointCoordinator::check_trigger(&TASKS, &running) {
            Err(r @ CheckpointFailureReason::NotAllRequiredTasksRunning { .. }) => {
                assert!(r.is_pre_flight() && !r.counts_toward_tolerable());
                assert!(r.to_string().contains("counter[0]"), "{r}");
            }
            other => panic!("{other:?}"),
        }
        let all: HashSet<TaskId> = TASKS.into_iter().collect();
        assert_eq!(CheckpointCoordinator::check_trigger(&TASKS, &all), Ok(()));
        assert_eq!(CheckpointCoordinator::max_concurrent(4, Duration::ZERO), 4);
        assert_eq!(CheckpointCoordinator::max_concurrent(4, Duration::from_millis(1)), 1);
    }

    fn finalized(_: &mut CheckpointMetadata) -> Result<(), FinalizeError> {
        Ok(())
    }

    fn acked(c: &mut CheckpointCoordinator, now: Instant) -> u64 {
        let id = c.begin(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
        ack_all(c, id);
        id
    }

    fn plan(c: &mut CheckpointCoordinator, id: u64, num_retained: usize) -> CheckpointPlan {
        match c.complete_pending(id, "job", Instant::now(), num_retained, finalized) {
            Some(CompletionPlan::Checkpoint(p)) => p,
            other => panic!("checkpoint {id} completes: {other:?}"),
        }
    }

    /// Catches: a completion that subsumes a newer checkpoint, a savepoint, or itself, or that
    /// leaves an older checkpoint pending.
    #[test]
    fn a_completion_subsumes_only_older_pending_checkpoints_never_a_savepoint() {
        let mut c = CheckpointCoordinator::new();
        let now = Instant::now();
        let older = c.begin(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
        let savepoint = c.begin_savepoint(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
        let done = acked(&mut c, now);
        let newer = c.begin(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
        let p = plan(&mut c, done, 3);
        assert_eq!(p.subsume, vec![older]);
        assert_eq!(c.pending_ids(), vec![older, savepoint, newer], "the plan names them; the JobManager fails them");
    }

    /// Catches: a checkpoint whose offsets could be committed (or its files registered) twice: a
    /// second completion, or a late duplicate ack, must not plan anything.
    #[test]
    fn a_checkpoints_offsets_are_planned_for_commit_once() {
        let mut c = CheckpointCoordinator::new();
        let now = Instant::now();
        let id = acked(&mut c, now);
        let p = plan(&mut c, id, 1);
        assert_eq!((p.checkpoint, p.commit_offsets.clone(), p.register.len()), (id, vec![(0, 7)], 1));
        assert_eq!(p.stats.offsets, p.commit_offsets);
        assert!(c.complete_pending(id, "job", now, 1, finalized).is_none(), "completed already: no second plan");
        assert!(matches!(c.ack(id, TaskId::Sink, state(TaskId::Sink), SnapshotStats::default(), Vec::new()), AckOutcome::Unknown(_)));
        assert_eq!(c.counts().completed, 1);
    }

    /// Catches: dropping a checkpoint that is still retained (or the new one), keeping one past
    /// `num-retained`, or a failed finalize that drops or retains anything.
    #[test]
    fn a_plan_drops_only_checkpoints_past_num_retained_and_a_failed_finalize_drops_none() {
        let mut c = CheckpointCoordinator::new();
        let now = Instant::now();
        let (first, second) = (acked(&mut c, now), acked(&mut c, now));
        assert!(plan(&mut c, first, 2).drop.is_empty());
        assert!(plan(&mut c, second, 2).drop.is_empty());
        let broken = acked(&mut c, now);
        match c.complete_pending(broken, "job", now, 2, |_| Err(FinalizeError::WriteMetadata(StateError::Backend { message: "disk full".into() }))) {
            Some(CompletionPlan::FinalizeFailed { handles, reason }) => {
                assert_eq!(handles.len(), 1, "its acknowledged state is handed back for discarding");
                assert!(matches!(reason, CheckpointFailureReason::FinalizeFailure { .. }));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.retained().map(|r| r.metadata.checkpoint).collect::<Vec<_>>(), vec![first, second]);
        let third = acked(&mut c, now);
        let p = plan(&mut c, third, 2);
        assert_eq!(p.drop.iter().map(|d| d.metadata.checkpoint).collect::<Vec<_>>(), vec![first]);
        let kept: Vec<u64> = c.retained().map(|r| r.metadata.checkpoint).collect();
        assert_eq!(kept, vec![second, third]);
        assert_eq!(p.oldest_retained_offsets, vec![(0, 7)]);
        assert_eq!((c.counts().completed, c.counts().failed), (3, 1));
    }

    /// Catches: a savepoint retained for failover (Flink 2 never recovers from one it took), or
    /// metadata amended by the finalize step that is not what is retained.
    #[test]
    fn a_savepoint_is_counted_not_retained_and_a_checkpoint_keeps_what_finalize_wrote() {
        let mut c = CheckpointCoordinator::new();
        let now = Instant::now();
        let sp = c.begin_savepoint(CheckpointMode::ExactlyOnce, now, 0, TASKS.to_vec());
        ack_all(&mut c, sp);
        assert!(matches!(c.complete_pending(sp, "job", now, 1, finalized), Some(CompletionPlan::Savepoint { .. })));
        assert_eq!((c.retained().count(), c.counts().completed), (0, 1));
        let id = acked(&mut c, now);
        let amend = |m: &mut CheckpointMetadata| {
            m.job_id = "amended".into();
            Ok(())
        };
        assert!(matches!(c.complete_pending(id, "job", now, 1, amend), Some(CompletionPlan::Checkpoint(_))));
        assert_eq!(c.latest().map(|r| r.metadata.job_id.as_str()), Some("amended"));
    }
}
