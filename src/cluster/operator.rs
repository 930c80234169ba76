//! What an operator implements (after Arroyo's operator trait and Flink's StreamOperator): the
//! [`super::runner::OperatorRunner`] owns the input gate, barriers, channel state, acks and the
//! output; an operator only says what a record does to its state and output, what its snapshot
//! is, and how it comes back from one. Hooks it does not need have defaults.

use super::element::Record;
use super::task::{TaskContext, TaskState};
use crate::state::{PendingSnapshot, StateError};

/// Why an operator could not open.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenError {
    /// The state of the checkpoint it was deployed with could not be read back.
    Restore { checkpoint: u64, message: String },
    /// Anything else (a state backend that cannot start).
    Failed(String),
}

/// An operator's part of a checkpoint as its synchronous part leaves it (Flink's
/// `OperatorSnapshotFutures`): complete already, or with an asynchronous part still to run.
pub enum OperatorSnapshot {
    /// Nothing to write (a sink's staged lines travel with the acknowledgement).
    Done(TaskState),
    /// Keyed state captured; the runner runs the write on a blocking thread while the task goes
    /// on processing records, and acknowledges when it finished.
    Keyed(PendingSnapshot),
}

pub trait Operator: Send + 'static {
    /// Restores the state the task was deployed with (if any) and gets ready for records.
    fn open(&mut self, _ctx: &TaskContext) -> Result<(), OpenError> {
        Ok(())
    }

    /// One record: its effect on the state and what goes downstream (if anything).
    fn process(&mut self, ctx: &TaskContext, record: Record) -> Result<Option<Record>, StateError>;

    /// The end of a network buffer's worth of records (and always before a snapshot): a place to
    /// publish what the last records did, in one go.
    fn end_of_batch(&mut self, _ctx: &TaskContext) {}

    /// The synchronous part of the operator's snapshot for `checkpoint`: whatever it returns
    /// must not change with the records processed after it.
    fn snapshot(&mut self, ctx: &TaskContext, checkpoint: u64) -> Result<OperatorSnapshot, StateError>;

    /// Every task acknowledged `checkpoint` and its metadata is written.
    fn notify_checkpoint_complete(&mut self, _ctx: &TaskContext, _checkpoint: u64) {}

    /// `checkpoint` will not complete (failed, declined, subsumed).
    fn notify_checkpoint_aborted(&mut self, _ctx: &TaskContext, _checkpoint: u64) {}

    /// The task ends while its TaskManager runs (cancelled, or failed): Flink's
    /// `StreamOperator.close`, run on the task's way out (see [`super::task::TaskEnd`]). Not
    /// called when the TaskManager was killed or hung.
    fn close(&mut self) {}
}
