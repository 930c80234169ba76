//! Why things fail, as types: a checkpoint's failure reason (after Flink's
//! `CheckpointFailureReason`, with the `CheckpointFailureManager`'s rule for which reasons count
//! toward `execution.checkpointing.tolerable-failed-checkpoints`) and the cause of a job failover.
//! The JobManager decides by these types; their text is for the view, the history and the events.

use std::time::Duration;

use super::heartbeat::{Detection, HeartbeatOptions};
use crate::duration::format_duration;
use crate::types::TaskId;

/// Why a checkpoint was not triggered or did not complete (Flink's `CheckpointFailureReason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointFailureReason {
    /// A task of the job is not RUNNING (deploying, restoring, on a dead task manager): the
    /// checkpoint is not triggered at all (a pre-flight failure).
    NotAllRequiredTasksRunning { waiting_for: Vec<TaskId> },
    /// The checkpoint's storage location could not be created (Flink: IO_EXCEPTION at trigger).
    IoException { message: String },
    /// A task's snapshot failed, its size over the storage's limit included
    /// (Flink: CHECKPOINT_ASYNC_EXCEPTION, the task declines the checkpoint).
    AsyncException { task: TaskId, message: String },
    /// A task declined the checkpoint (Flink: CHECKPOINT_DECLINED).
    Declined { task: TaskId, message: String },
    /// A task saw a barrier of a newer checkpoint before this one aligned
    /// (Flink: CHECKPOINT_DECLINED_SUBSUMED).
    DeclinedSubsumed { task: TaskId },
    /// Not complete within `execution.checkpointing.timeout`.
    Expired { timeout: Duration },
    /// A newer checkpoint completed first.
    Subsumed { by: u64 },
    /// A task failed (or its task manager died) while the checkpoint ran.
    TaskFailure { cause: String },
    /// The job failed over for another reason (Flink: JOB_FAILOVER_REGION).
    JobFailover { cause: String },
    /// The coordinator stopped without a failure: the job restarts by choice (a backend switch).
    CoordinatorSuspend { why: String },
    /// Every task acknowledged, but completing failed: a reused shared file is gone, or
    /// `_metadata` could not be written (Flink: FINALIZE_CHECKPOINT_FAILURE).
    FinalizeFailure { message: String },
}

impl CheckpointFailureReason {
    /// Flink's name for the reason.
    pub fn flink_name(&self) -> &'static str {
        match self {
            Self::NotAllRequiredTasksRunning { .. } => "NOT_ALL_REQUIRED_TASKS_RUNNING",
            Self::IoException { .. } => "IO_EXCEPTION",
            Self::AsyncException { .. } => "CHECKPOINT_ASYNC_EXCEPTION",
            Self::Declined { .. } => "CHECKPOINT_DECLINED",
            Self::DeclinedSubsumed { .. } => "CHECKPOINT_DECLINED_SUBSUMED",
            Self::Expired { .. } => "CHECKPOINT_EXPIRED",
            Self::Subsumed { .. } => "CHECKPOINT_SUBSUMED",
            Self::TaskFailure { .. } => "TASK_FAILURE",
            Self::JobFailover { .. } => "JOB_FAILOVER_REGION",
            Self::CoordinatorSuspend { .. } => "CHECKPOINT_COORDINATOR_SUSPEND",
            Self::FinalizeFailure { .. } => "FINALIZE_CHECKPOINT_FAILURE",
        }
    }

    /// A failure before the checkpoint started (Flink's `isPreFlight`): nothing was triggered.
    pub fn is_pre_flight(&self) -> bool {
        matches!(self, Self::NotAllRequiredTasksRunning { .. })
    }

    /// Whether the failure counts toward the tolerable failed checkpoints, as Flink 2.3's
    /// `CheckpointFailureManager.checkFailureCounter` decides: IO_EXCEPTION,
    /// CHECKPOINT_ASYNC_EXCEPTION, CHECKPOINT_DECLINED, CHECKPOINT_EXPIRED and
    /// FINALIZE_CHECKPOINT_FAILURE count; the others (subsumed, task failure, failover, suspend,
    /// pre-flight ...) do not.
    pub fn counts_toward_tolerable(&self) -> bool {
        match self {
            Self::IoException { .. }
            | Self::AsyncException { .. }
            | Self::Declined { .. }
            | Self::Expired { .. }
            | Self::FinalizeFailure { .. } => true,
            Self::NotAllRequiredTasksRunning { .. }
            | Self::DeclinedSubsumed { .. }
            | Self::Subsumed { .. }
            | Self::TaskFailure { .. }
            | Self::JobFailover { .. }
            | Self::CoordinatorSuspend { .. } => false,
        }
    }
}

impl std::fmt::Display for CheckpointFailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAllRequiredTasksRunning { waiting_for } => {
                let names: Vec<String> = waiting_for.iter().map(TaskId::to_string).collect();
                write!(f, "not all required tasks are running (waiting for {})", names.join(", "))
            }
            Self::IoException { message } => write!(f, "{message}"),
            Self::AsyncException { message, .. } | Self::Declined { message, .. } => write!(f, "{message}"),
            Self::DeclinedSubsumed { task } => write!(f, "{task} received a barrier of a newer checkpoint"),
            Self::Expired { timeout } => write!(f, "expired before completing (timeout {})", format_duration(*timeout)),
            Self::Subsumed { by } => write!(f, "subsumed by checkpoint {by}"),
            Self::TaskFailure { cause } | Self::JobFailover { cause } => write!(f, "job failover: {cause}"),
            Self::CoordinatorSuspend { why } => write!(f, "{why}"),
            Self::FinalizeFailure { message } => write!(f, "finalising: {message}"),
        }
    }
}

/// Why the job fails over (or, when the restart strategy says so, FAILED).
#[derive(Debug, Clone, PartialEq)]
pub enum FailureCause {
    /// A task reported an error.
    TaskFailed { task: TaskId, message: String },
    /// A task could not restore the checkpoint it was deployed with. The next attempt restores
    /// the same (latest) checkpoint: Flink never falls back to an older one (FLINK-22502).
    RestoreFailed { task: TaskId, checkpoint: u64, message: String },
    /// A task manager died: its peers' network connections to it broke (Flink's
    /// `RemoteTransportException`), so their tasks fail at once.
    ConnectionLost { tm: String, task: TaskId },
    /// The JobManager declared a task manager that hosts tasks of the job lost: unreachable
    /// (failed heartbeat RPCs) or silent (heartbeat timeout).
    TaskManagerLost { tm: String, detection: Detection, options: HeartbeatOptions },
    /// A task was deployed to a slot of a task manager that is killed or hung (not yet detected).
    DeploymentFailed { tm: String, task: TaskId, rpc: RpcFailure },
    /// Too few slots for longer than `slot.request.timeout`.
    SlotRequestTimeout { timeout: Duration, missing: usize },
    /// More consecutive counted checkpoint failures than tolerated.
    TolerableCheckpointFailuresExceeded { failed: u64, tolerable: u64, last: CheckpointFailureReason },
    /// A task declined a stop-with-savepoint: Flink fails the job over at once rather than let it
    /// run on with stopped sources (CheckpointFailureManager.java:187-189, a synchronous
    /// savepoint's task-level failure, -> DefaultExecutionGraph.java:497 failGlobal).
    StopWithSavepointDeclined { savepoint: u64, reason: CheckpointFailureReason },
}

/// How an RPC to a task manager that does not answer fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcFailure {
    /// Its process is gone: at once (Pekko's dead letters answer, DeadLettersActor.java:46-65).
    RecipientUnreachable,
    /// It hangs: after `pekko.ask.timeout`.
    AskTimeout(Duration),
}

impl FailureCause {
    /// The reason a pending checkpoint fails with when the job fails over for this cause.
    pub fn checkpoint_reason(&self) -> CheckpointFailureReason {
        match self {
            Self::TaskFailed { .. } | Self::RestoreFailed { .. } | Self::ConnectionLost { .. } | Self::TaskManagerLost { .. } => {
                CheckpointFailureReason::TaskFailure { cause: self.to_string() }
            }
            Self::DeploymentFailed { .. }
            | Self::SlotRequestTimeout { .. }
            | Self::TolerableCheckpointFailuresExceeded { .. }
            | Self::StopWithSavepointDeclined { .. } => {
                CheckpointFailureReason::JobFailover { cause: self.to_string() }
            }
        }
    }
}

impl std::fmt::Display for FailureCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TaskFailed { task, message } => write!(f, "{task} failed: {message}"),
            Self::RestoreFailed { task, checkpoint, message } => {
                write!(f, "{task} could not restore checkpoint {checkpoint}: {message}")
            }
            Self::ConnectionLost { tm, task } => {
                write!(f, "{task} failed: connection to TaskManager {tm} lost (connection unexpectedly closed by the remote task manager)")
            }
            // Flink's messages (JobMaster.java:1658-1681), with the detection that fired.
            Self::TaskManagerLost { tm, detection: d @ Detection::RpcFailures { .. }, options } => {
                write!(f, "TaskManager {tm} is no longer reachable ({})", d.describe(options))
            }
            Self::TaskManagerLost { tm, detection: Detection::HeartbeatTimeout, options } => {
                write!(f, "Heartbeat of TaskManager {tm} timed out ({})", Detection::HeartbeatTimeout.describe(options))
            }
            Self::DeploymentFailed { tm, task, rpc: RpcFailure::RecipientUnreachable } => {
                write!(f, "deploying {task} to TaskManager {tm} failed: RecipientUnreachableException (its process is gone; the JobManager has not declared it lost yet)")
            }
            Self::DeploymentFailed { tm, task, rpc: RpcFailure::AskTimeout(t) } => {
                write!(f, "deploying {task} to TaskManager {tm} failed: no answer within pekko.ask.timeout = {} (it hangs; the JobManager has not declared it lost yet)", format_duration(*t))
            }
            Self::SlotRequestTimeout { timeout, missing } => write!(
                f,
                "could not acquire {missing} slot(s) within slot.request.timeout = {} (NoResourceAvailableException)",
                format_duration(*timeout)
            ),
            Self::TolerableCheckpointFailuresExceeded { failed, tolerable, last } => write!(
                f,
                "exceeded the checkpoint tolerable failure threshold ({failed} failed, execution.checkpointing.tolerable-failed-checkpoints = {tolerable}): {} ({last})",
                last.flink_name()
            ),
            Self::StopWithSavepointDeclined { savepoint, reason } => write!(
                f,
                "stop-with-savepoint {savepoint} declined by a task: {reason} ({}); a declined stop-with-savepoint fails the job over",
                reason.flink_name()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flinks_counted_reasons_count_toward_tolerable_failures() {
        let t = TaskId::Counter(0);
        let counted = [
            CheckpointFailureReason::IoException { message: "x".into() },
            CheckpointFailureReason::AsyncException { task: t, message: "x".into() },
            CheckpointFailureReason::Declined { task: t, message: "x".into() },
            CheckpointFailureReason::Expired { timeout: Duration::from_secs(1) },
            CheckpointFailureReason::FinalizeFailure { message: "x".into() },
        ];
        let ignored = [
            CheckpointFailureReason::NotAllRequiredTasksRunning { waiting_for: vec![t] },
            CheckpointFailureReason::DeclinedSubsumed { task: t },
            CheckpointFailureReason::Subsumed { by: 2 },
            CheckpointFailureReason::TaskFailure { cause: "x".into() },
            CheckpointFailureReason::JobFailover { cause: "x".into() },
            CheckpointFailureReason::CoordinatorSuspend { why: "x".into() },
        ];
        for r in &counted {
            assert!(r.counts_toward_tolerable(), "{} counts", r.flink_name());
        }
        for r in &ignored {
            assert!(!r.counts_toward_tolerable(), "{} does not count", r.flink_name());
        }
        assert!(ignored[0].is_pre_flight() && !counted.iter().any(CheckpointFailureReason::is_pre_flight));
    }

    #[test]
    fn a_failover_fails_pending_checkpoints_with_a_reason_that_does_not_count() {
        let causes = [
            FailureCause::ConnectionLost { tm: "tm-1".into(), task: TaskId::Sink },
            FailureCause::RestoreFailed { task: TaskId::Counter(1), checkpoint: 3, message: "corrupt".into() },
            FailureCause::SlotRequestTimeout { timeout: Duration::from_secs(300), missing: 1 },
        ];
        for c in causes {
            let r = c.checkpoint_reason();
            assert!(!r.counts_toward_tolerable(), "{c}: {r:?}");
            assert!(r.to_string().contains(&c.to_string()), "the checkpoint's reason names the cause: {r}");
        }
    }
}
