//! Sinks, after Flink's `CommittingSinkWriter` + `Committer`: a sink writes each line, prepares
//! the commit of what a checkpoint covers (kept in the checkpoint), commits when the checkpoint
//! completes, and on restore commits again every transaction the restored checkpoint staged and
//! nobody committed. Committing is idempotent: the transaction log (`committed`) outlives
//! attempts, as an external system's would.
//!
//! - `PrintSink` (print_sink.rs): writes at once (the seed's `.print()`): after a
//!   recovery, replayed records print again even under exactly-once.
//! - `TransactionalSink` (transactional_sink.rs): two-phase commit, visible on completion.
//! - `DiscardSink` (discard_sink.rs): drops everything (benchmarks).
//! - `KafkaSink` (kafka_sink/sink.rs): Flink's KafkaSink on an output topic, with its delivery
//!   guarantee; exactly-once commits a Kafka transaction per checkpoint.
//!
//! Every call may fail (a fenced producer, a broker that went away): the task then fails with
//! the sink's reason, and the job fails over, as a Flink task whose writer threw.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::audit::Auditor;
use crate::events::{Event, EventBus};
use crate::state::storage::StagedLine;

pub trait Sink: Send {
    /// At deployment, from the restored checkpoint's part of the sink (empty on a fresh start):
    /// commit every transaction the checkpoint kept (the notify may have been lost with the
    /// failure; transactions already committed are skipped), and get ready to write.
    fn recover(&mut self, restored: RestoredSinkState, out: &SinkOutput) -> Result<(), SinkError>;

    /// One line from upstream: made visible, or added to the open transaction.
    fn write(&mut self, line: StagedLine, out: &SinkOutput) -> Result<(), SinkError>;

    /// Closes the open transaction as `checkpoint`'s and returns every transaction not committed
    /// yet (each line tagged with its checkpoint): the sink's part of the snapshot.
    fn prepare_commit(&mut self, checkpoint: u64) -> Result<SinkSnapshot, SinkError>;

    /// `checkpoint` completed: its transaction and every older one become visible.
    fn commit(&mut self, checkpoint: u64, out: &SinkOutput) -> Result<(), SinkError>;

    /// The sink's task ends while its TaskManager runs (cancelled at a failover or with the job,
    /// or failed): Flink's `SinkWriter.close`, which for Kafka's exactly-once writer aborts the
    /// open transaction. Not called when the TaskManager was killed: nothing of it runs then.
    /// Best effort, as Flink's: what cannot be done here is left to the next attempt's abort
    /// of lingering transactions, or to the broker's timeout.
    fn close(&mut self) {}
}

/// Why a sink cannot go on: its task fails with this reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkError {
    #[error("KafkaSink: {0}")]
    Kafka(#[from] super::kafka_sink::SinkError),
}

/// A sink that could not be made (its output topic could not be had): its task fails at start
/// with the reason.
pub struct UnavailableSink(pub SinkError);

impl Sink for UnavailableSink {
    fn recover(&mut self, _restored: RestoredSinkState, _out: &SinkOutput) -> Result<(), SinkError> {
        Err(self.0.clone())
    }

    fn write(&mut self, _line: StagedLine, _out: &SinkOutput) -> Result<(), SinkError> {
        Err(self.0.clone())
    }

    fn prepare_commit(&mut self, _checkpoint: u64) -> Result<SinkSnapshot, SinkError> {
        Err(self.0.clone())
    }

    fn commit(&mut self, _checkpoint: u64, _out: &SinkOutput) -> Result<(), SinkError> {
        Err(self.0.clone())
    }
}

/// A sink's part of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkSnapshot {
    /// Lines of transactions not committed yet, each tagged with its transaction's checkpoint.
    pub staged: Vec<StagedLine>,
    /// The Kafka sink's committer and writer state (exactly-once).
    pub kafka: Option<super::kafka_sink::KafkaSinkState>,
}

/// What a sink starts from at deployment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoredSinkState {
    /// The restored checkpoint, `None` on a fresh start.
    pub checkpoint: Option<u64>,
    pub snapshot: SinkSnapshot,
}

/// A line the sink made visible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputLine {
    pub text: String,
    pub repeat: bool,
    pub partition: u32,
    pub offset: u64,
}

/// Lines kept for the output pane.
pub const OUTPUT_KEEP: usize = 2000;

/// The newest [`OUTPUT_KEEP`] lines the sink made visible, shared with the view.
pub type OutputLines = Arc<Mutex<VecDeque<OutputLine>>>;

/// The sink's output port: where its lines become visible (the output pane, events, and the
/// auditor), and the transaction log it commits against. The runtime lends it the parts of the
/// task it runs in; a sink sees nothing else of the runtime.
pub struct SinkOutput<'a> {
    pub events: &'a EventBus,
    pub auditor: &'a Auditor,
    pub lines: &'a Mutex<VecDeque<OutputLine>>,
    /// The newest committed transaction (outlives attempts).
    pub committed: &'a AtomicU64,
    /// The same on disk, for a restore in another process (see [`super::commit_log`]).
    pub log: Option<&'a super::commit_log::CommitLog>,
}

impl SinkOutput<'_> {
    /// Makes a line visible, as the seed prints it: `2017-03-17T08:21:51.249: (a,1)`.
    pub fn emit(&self, line: &StagedLine) {
        let repeat = self.auditor.emitted(line.origin, &line.value);
        let text = format!("{}: ({},{})", chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f"), line.value, line.count);
        self.events.publish(Event::SinkEmitted {
            line: text.clone(),
            repeat,
            partition: line.origin.partition,
            offset: line.origin.offset,
        });
        let mut out = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if out.len() >= OUTPUT_KEEP {
            out.pop_front();
        }
        out.push_back(OutputLine { text, repeat, partition: line.origin.partition, offset: line.origin.offset });
    }

    /// Commits one transaction unless it already was; true when it was committed now.
    pub fn commit(&self, checkpoint: u64, lines: &[StagedLine]) -> bool {
        if self.committed.fetch_max(checkpoint, Ordering::AcqRel) >= checkpoint {
            return false;
        }
        for line in lines {
            self.emit(line);
        }
        if let Some(log) = self.log {
            // The commit happened; a log that cannot be written only risks a second commit of
            // this transaction by a restore in another process.
            if let Err(e) = log.write(checkpoint) {
                tracing::warn!(path = %log.path().display(), error = %e, "transaction log not written");
            }
        }
        self.events.publish(Event::TransactionCommitted { checkpoint, lines: lines.len() });
        true
    }
}

/// The transaction log a committing sink writes to, shared by every attempt of a job.
pub type TransactionLog = Arc<AtomicU64>;
