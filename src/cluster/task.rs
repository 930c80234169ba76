//! What every subtask shares: its identity, the report channel up to the JobManager, and the
//! runtime knobs a user may turn while the job runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::audit::Auditor;
use crate::connectors::sink::OutputLines;
use crate::events::EventBus;
use crate::state::storage::{CheckpointStorage, StagedLine};
use crate::state::StateHandle;
// The vocabulary and the sink's output line live below the runtime; named here for the many
// runtime files that speak of them as a task's.
pub use crate::connectors::sink::OutputLine;
pub use crate::types::{ChannelEnd, PersistedRecord, TaskId};

/// A task's part of a checkpoint.
#[derive(Debug, Clone)]
pub enum TaskState {
    Source { offsets: Vec<(u32, u64)> },
    Keyed { handle: StateHandle, checkpointed_size: u64, full_size: u64 },
    /// Lines of uncommitted transactions (transactional, Kafka exactly-once), and the Kafka sink's
    /// committables and writer state.
    Sink { staged: Vec<StagedLine>, kafka: Option<crate::connectors::kafka_sink::KafkaSinkState> },
}

/// Timings of one task's snapshot (Flink's per-subtask checkpoint statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// From the checkpoint's trigger until its (first) barrier reached the task, or, for a
    /// source, until the task took the trigger: Flink's `checkpointStartDelayNanos`
    /// (CheckpointBarrierHandler.java:168-169 on the first barrier; StreamTask.java:1349 for a
    /// source), the web UI's "Start Delay". Backpressure makes it grow: an aligned barrier waits
    /// behind every record queued ahead of it.
    #[serde(default)]
    pub start_delay_ms: u64,
    pub sync_ms: u64,
    pub async_ms: u64,
    pub alignment_ms: u64,
    /// Records waiting on blocked channels when alignment ended.
    pub buffered: u64,
    /// Unaligned: in-flight records persisted as channel state, and their bytes (Flink's
    /// "Persisted Data").
    #[serde(default)]
    pub persisted_records: u64,
    #[serde(default)]
    pub persisted_bytes: u64,
    /// The part of the above this task persisted as a sender (output channel state); the rest is
    /// input channel state.
    #[serde(default)]
    pub output_records: u64,
    #[serde(default)]
    pub output_bytes: u64,
    /// The snapshot was taken unaligned (or switched to unaligned by the alignment timeout).
    #[serde(default)]
    pub unaligned: bool,
}

/// Why a task declined a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum DeclineReason {
    /// Its snapshot failed (a write, the storage's size limit): Flink's CHECKPOINT_ASYNC_EXCEPTION.
    SnapshotFailed(String),
    /// A barrier of a newer checkpoint came while it still waited for this one's:
    /// CHECKPOINT_DECLINED_SUBSUMED (not a failure that counts).
    Subsumed { by: u64 },
}

/// Task -> JobManager.
#[derive(Debug)]
pub enum TaskReport {
    Running {
        attempt: u64,
        task: TaskId,
    },
    Ack {
        attempt: u64,
        checkpoint: u64,
        task: TaskId,
        state: TaskState,
        stats: SnapshotStats,
        channel_state: Vec<PersistedRecord>,
    },
    Decline {
        attempt: u64,
        checkpoint: u64,
        task: TaskId,
        reason: DeclineReason,
    },
    Failed {
        attempt: u64,
        task: TaskId,
        reason: String,
    },
    /// The task handled every control message before [`TaskControl::Finish`], the completed
    /// stop-with-savepoint's notification (a sink's commit) among them.
    Finished {
        attempt: u64,
        task: TaskId,
    },
    /// The task could not restore its state from the checkpoint it was deployed with.
    RestoreFailed {
        attempt: u64,
        task: TaskId,
        checkpoint: u64,
        reason: String,
    },
}

/// JobManager -> task: one control channel per task (Arroyo's ControlMessage).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TaskControl {
    /// Sources only: take a checkpoint and emit its barrier.
    TriggerCheckpoint(super::element::Barrier),
    /// Sources only, stop-with-savepoint: stop emitting, then take the savepoint and emit its
    /// barrier, the last thing the source sends (SourceOperatorStreamTask.java:198-212: the
    /// source operator's `stop(NO_DRAIN)` first, the checkpoint after it). The source emits
    /// again only if that savepoint is aborted.
    StopWithSavepoint(super::element::Barrier),
    /// After the stop-with-savepoint's notification: confirm with [`TaskReport::Finished`]
    /// (the task is FINISHED; the JobManager ends the job when every task confirmed).
    Finish,
    /// The checkpoint completed: committing sinks commit (Flink's notifyCheckpointComplete).
    NotifyCheckpointComplete(u64),
    /// The checkpoint failed or was subsumed before completing.
    NotifyCheckpointAborted(u64),
}

/// Knobs that take effect while the job runs.
#[derive(Debug)]
pub struct RuntimeKnobs {
    hop_delay_us: AtomicU64,
    buffer_timeout_us: AtomicU64,
    /// Paused: sources stop reading and channels stop delivering, so records and barriers stay
    /// where they are (timers such as the heartbeat timeout keep running).
    paused: watch::Sender<bool>,
}

impl RuntimeKnobs {
    pub fn new(hop_delay: Duration, buffer_timeout: Duration) -> Arc<Self> {
        Arc::new(RuntimeKnobs {
            hop_delay_us: AtomicU64::new(hop_delay.as_micros() as u64),
            buffer_timeout_us: AtomicU64::new(buffer_timeout.as_micros() as u64),
            paused: watch::channel(false).0,
        })
    }

    pub fn hop_delay(&self) -> Duration {
        Duration::from_micros(self.hop_delay_us.load(Ordering::Relaxed))
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Returns at once when not paused, else when resumed.
    pub async fn wait_while_paused(&self) {
        if !self.is_paused() {
            return;
        }
        let mut rx = self.paused.subscribe();
        // The sender lives in self, so the channel cannot close while we wait.
        let _ = rx.wait_for(|p| !*p).await;
    }

    pub fn set_hop_delay(&self, d: Duration) {
        self.hop_delay_us.store(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn set_buffer_timeout(&self, d: Duration) {
        self.buffer_timeout_us.store(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn buffer_timeout(&self) -> Duration {
        Duration::from_micros(self.buffer_timeout_us.load(Ordering::Relaxed))
    }
}

/// Progress counters of one attempt, for the caught-up check.
#[derive(Debug, Default)]
pub struct AttemptProgress {
    pub source_emitted: AtomicU64,
    pub sink_received: AtomicU64,
    /// Per partition: the next offset its source will read.
    pub positions: Mutex<Vec<u64>>,
}

/// How a task ends. Flink closes the operators of a task that ends while its TaskManager runs:
/// cancelled (a failover's cancellation of the tasks on answering TaskManagers, the job's
/// cancellation) or failed itself. StreamTask registers `closeAllOperators` with its resource
/// closer ("If the operators won't be closed explicitly, register it to a hard close", StreamTask's
/// constructor), and a sink's close closes its writer (SinkWriterOperator.close:
/// `closeAll(sinkWriter, super::close)`). A killed TaskManager's process runs nothing more, and a
/// hung one's frozen tasks never run again: the JobManager marks those, and their operators are
/// dropped unclosed (a Kafka transaction they held stays open until a restore or its timeout
/// aborts it).
#[derive(Debug, Clone, Default)]
pub struct TaskEnd(Arc<AtomicBool>);

impl TaskEnd {
    /// The task's process is gone (killed) or will never run it again (hung, released): its
    /// operators are not closed.
    pub fn process_gone(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the task's end closes its operators.
    pub fn closes_operators(&self) -> bool {
        !self.0.load(Ordering::Acquire)
    }
}

/// What one task needs from its surroundings.
#[derive(Clone)]
pub struct TaskContext {
    pub attempt: u64,
    pub task: TaskId,
    pub reports: mpsc::UnboundedSender<TaskReport>,
    pub events: EventBus,
    pub auditor: Arc<Auditor>,
    pub progress: Arc<AttemptProgress>,
    pub knobs: Arc<RuntimeKnobs>,
    pub buffer_records: usize,
    pub storage: Arc<CheckpointStorage>,
    /// The sink's output port: the lines it made visible.
    pub output: OutputLines,
    /// Whether the task's end closes its operators (not when its TaskManager died).
    pub end: TaskEnd,
}

impl TaskContext {
    pub fn report(&self, r: TaskReport) {
        // The JobManager outlives every task; if it is gone the engine is shutting down.
        let _ = self.reports.send(r);
    }

    pub fn name(&self) -> String {
        self.task.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches: knobs that lose a change (the TUI's speed and buffer-timeout keys would do
    /// nothing) or mix up the two.
    #[test]
    fn knobs_changed_while_running_read_back() {
        let k = RuntimeKnobs::new(Duration::from_millis(300), Duration::from_millis(100));
        assert_eq!((k.hop_delay(), k.buffer_timeout()), (Duration::from_millis(300), Duration::from_millis(100)));
        k.set_hop_delay(Duration::ZERO);
        k.set_buffer_timeout(Duration::from_micros(1500));
        assert_eq!((k.hop_delay(), k.buffer_timeout()), (Duration::ZERO, Duration::from_micros(1500)));
    }

    /// Catches: a pause that does not hold the data path, or a resume that does not release it.
    #[tokio::test(start_paused = true)]
    async fn a_paused_data_path_waits_until_resumed() {
        let k = RuntimeKnobs::new(Duration::ZERO, Duration::ZERO);
        tokio::time::timeout(Duration::ZERO, k.wait_while_paused()).await.expect("not paused: returns at once");
        k.set_paused(true);
        assert!(k.is_paused());
        let waiter = tokio::spawn({
            let k = k.clone();
            async move { k.wait_while_paused().await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiter.is_finished(), "held while paused");
        k.set_paused(false);
        tokio::time::timeout(Duration::from_millis(1), waiter).await.expect("released on resume").unwrap();
    }

    /// Catches: subtask names other than Flink's `operator[index]` (events and the view use them).
    #[test]
    fn task_names_are_flinks_subtask_names() {
        assert_eq!([TaskId::Source(1), TaskId::Counter(0), TaskId::Sink].map(|t| t.to_string()), ["source[1]", "counter[0]", "sink[0]"]);
    }
}
