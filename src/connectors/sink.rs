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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::audit::Auditor;
use crate::events::{Event, EventBus};
use crate::state::storage::StagedLine;

pub trait Sink: Send {
    /// One line from upstream: made visible, or added to the open transaction.
    fn write(&mut self, line: StagedLine, out: &SinkOutput);

    /// Closes the open transaction as `checkpoint`'s and returns every transaction not committed
    /// yet (each line tagged with its checkpoint): the sink's part of the snapshot.
    fn prepare_commit(&mut self, checkpoint: u64) -> Vec<StagedLine>;

    /// `checkpoint` completed: its transaction and every older one become visible.
    fn commit(&mut self, checkpoint: u64, out: &SinkOutput);

    /// After a restore: commit every transaction the checkpoint kept (the notify may have been
    /// lost with the failure). Transactions already committed are skipped.
    fn recover(&mut self, staged: Vec<StagedLine>, out: &SinkOutput);
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
