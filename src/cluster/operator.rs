//! What an operator implements (after Arroyo's operator trait and Flink's StreamOperator): the
//! [`super::runner::OperatorRunner`] owns the input gate, barriers, channel state, acks and the
//! output; an operator only says what a record does to its state and output, what its snapshot
//! is, and how it comes back from one. Hooks it does not need have defaults.

use std::time::Duration;

use super::element::Record;
use super::task::{TaskContext, TaskState};
use crate::state::StateError;

/// Why an operator could not open.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenError {
    /// The state of the checkpoint it was deployed with could not be read back.
    Restore { checkpoint: u64, message: String },
    /// Anything else (a state backend that cannot start).
    Failed(String),
}

/// An operator's part of a checkpoint, with how long the snapshot took.
pub struct OperatorSnapshot {
    pub state: TaskState,
    pub sync: Duration,
    pub r#async: Duration,
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

    /// The operator's state for `checkpoint`.
    fn snapshot(&mut self, ctx: &TaskContext, checkpoint: u64) -> Result<OperatorSnapshot, StateError>;

    /// Every task acknowledged `checkpoint` and its metadata is written.
    fn notify_checkpoint_complete(&mut self, _ctx: &TaskContext, _checkpoint: u64) {}

    /// `checkpoint` will not complete (failed, declined, subsumed).
    fn notify_checkpoint_aborted(&mut self, _ctx: &TaskContext, _checkpoint: u64) {}
}
