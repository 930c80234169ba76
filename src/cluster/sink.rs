//! The sink subtask (parallelism 1): an [`Operator`] around a [`Sink`], so that the runner's one
//! loop drives it (barriers, acks, notifications) as it drives the counter.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::element::Record;
use super::operator::{OpenError, Operator, OperatorSnapshot};
use super::task::{TaskContext, TaskState};
use crate::connectors::commit_log::CommitLog;
use crate::connectors::sink::{Sink, SinkOutput};
use crate::state::storage::StagedLine;
use crate::state::StateError;

pub struct SinkOperator {
    pub sink: Box<dyn Sink>,
    /// What the restored checkpoint staged and may not have committed.
    pub recover: Option<Vec<StagedLine>>,
    /// The transaction log (outlives attempts, so a commit is never repeated).
    pub committed: Arc<AtomicU64>,
    /// The same on disk (outlives the process).
    pub log: Option<CommitLog>,
}

impl SinkOperator {
    fn out<'a>(ctx: &'a TaskContext, committed: &'a AtomicU64, log: &'a Option<CommitLog>) -> SinkOutput<'a> {
        SinkOutput { events: &ctx.events, auditor: &ctx.auditor, lines: &ctx.output, committed, log: log.as_ref() }
    }
}

impl Operator for SinkOperator {
    fn open(&mut self, ctx: &TaskContext) -> Result<(), OpenError> {
        if let Some(staged) = self.recover.take() {
            self.sink.recover(staged, &Self::out(ctx, &self.committed, &self.log));
        }
        Ok(())
    }

    fn process(&mut self, ctx: &TaskContext, r: Record) -> Result<Option<Record>, StateError> {
        let line = StagedLine { value: r.value.to_string(), count: r.count, origin: r.origin, checkpoint: 0 };
        self.sink.write(line, &Self::out(ctx, &self.committed, &self.log));
        Ok(None)
    }

    fn snapshot(&mut self, _ctx: &TaskContext, checkpoint: u64) -> Result<OperatorSnapshot, StateError> {
        let staged = self.sink.prepare_commit(checkpoint);
        Ok(OperatorSnapshot::Done(TaskState::Sink { staged }))
    }

    fn notify_checkpoint_complete(&mut self, ctx: &TaskContext, checkpoint: u64) {
        self.sink.commit(checkpoint, &Self::out(ctx, &self.committed, &self.log));
    }
}
