//! The sink subtask (parallelism 1): an [`Operator`] around a [`Sink`], so that the runner's one
//! loop drives it (barriers, acks, notifications) as it drives the counter. A sink call that
//! fails (a fenced Kafka producer, a broker gone) fails the task with the sink's reason, as a
//! Flink task whose writer or committer threw; the task then ignores its input until the
//! JobManager cancels it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::element::Record;
use super::operator::{OpenError, Operator, OperatorSnapshot};
use super::task::{TaskContext, TaskReport, TaskState};
use crate::connectors::commit_log::CommitLog;
use crate::connectors::sink::{RestoredSinkState, Sink, SinkError, SinkOutput};
use crate::state::storage::StagedLine;
use crate::state::StateError;

pub struct SinkOperator {
    pub sink: Box<dyn Sink>,
    /// What the restored checkpoint kept of the sink (taken at open).
    pub recover: Option<RestoredSinkState>,
    /// The transaction log (outlives attempts, so a commit is never repeated).
    pub committed: Arc<AtomicU64>,
    /// The same on disk (outlives the process).
    pub log: Option<CommitLog>,
    /// The sink failed: the task reported it and waits to be cancelled.
    pub failed: bool,
}

impl SinkOperator {
    pub fn new(sink: Box<dyn Sink>, recover: RestoredSinkState, committed: Arc<AtomicU64>, log: Option<CommitLog>) -> Self {
        SinkOperator { sink, recover: Some(recover), committed, log, failed: false }
    }

    fn out<'a>(ctx: &'a TaskContext, committed: &'a AtomicU64, log: &'a Option<CommitLog>) -> SinkOutput<'a> {
        SinkOutput { events: &ctx.events, auditor: &ctx.auditor, lines: &ctx.output, committed, log: log.as_ref() }
    }

    /// The task fails with the sink's reason (once).
    fn fail(&mut self, ctx: &TaskContext, e: &SinkError) {
        if !std::mem::replace(&mut self.failed, true) {
            ctx.report(TaskReport::Failed { attempt: ctx.attempt, task: ctx.task, reason: e.to_string() });
        }
    }
}

impl Operator for SinkOperator {
    fn open(&mut self, ctx: &TaskContext) -> Result<(), OpenError> {
        let restored = self.recover.take().unwrap_or_default();
        self.sink.recover(restored, &Self::out(ctx, &self.committed, &self.log)).map_err(|e| OpenError::Failed(e.to_string()))
    }

    fn process(&mut self, ctx: &TaskContext, r: Record) -> Result<Option<Record>, StateError> {
        if self.failed {
            return Ok(None);
        }
        let line = StagedLine { value: r.value.to_string(), count: r.count, origin: r.origin, checkpoint: 0 };
        if let Err(e) = self.sink.write(line, &Self::out(ctx, &self.committed, &self.log)) {
            self.fail(ctx, &e);
        }
        Ok(None)
    }

    fn snapshot(&mut self, ctx: &TaskContext, checkpoint: u64) -> Result<OperatorSnapshot, StateError> {
        if self.failed {
            return Err(StateError::Backend { message: "the sink failed".into() });
        }
        match self.sink.prepare_commit(checkpoint) {
            Ok(s) => Ok(OperatorSnapshot::Done(TaskState::Sink { staged: s.staged, kafka: s.kafka })),
            Err(e) => {
                self.fail(ctx, &e);
                // Declined as well: the checkpoint cannot complete without the sink's part.
                Err(StateError::Backend { message: e.to_string() })
            }
        }
    }

    fn notify_checkpoint_complete(&mut self, ctx: &TaskContext, checkpoint: u64) {
        if self.failed {
            return;
        }
        if let Err(e) = self.sink.commit(checkpoint, &Self::out(ctx, &self.committed, &self.log)) {
            self.fail(ctx, &e);
        }
    }

    /// A failed sink is closed too: Flink closes the writer of a failed task on its way out.
    fn close(&mut self) {
        self.sink.close();
    }
}
