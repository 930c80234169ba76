//! The transactional sink (two-phase commit, as Flink's KafkaSink with EXACTLY_ONCE delivery):
//! lines of checkpoint n's transaction become visible when n completes. With exactly-once
//! checkpoints the output is then exactly-once end to end, at the price of latency equal to the
//! checkpoint interval.

use std::collections::BTreeMap;

use super::sink::{RestoredSinkState, Sink, SinkError, SinkOutput, SinkSnapshot};
use crate::state::storage::StagedLine;

#[derive(Default)]
pub struct TransactionalSink {
    /// The open transaction.
    open: Vec<StagedLine>,
    /// Prepared transactions waiting for their checkpoint to complete.
    prepared: BTreeMap<u64, Vec<StagedLine>>,
}

impl Sink for TransactionalSink {
    fn recover(&mut self, restored: RestoredSinkState, out: &SinkOutput) -> Result<(), SinkError> {
        let mut by_checkpoint: BTreeMap<u64, Vec<StagedLine>> = BTreeMap::new();
        for line in restored.snapshot.staged {
            by_checkpoint.entry(line.checkpoint).or_default().push(line);
        }
        for (id, lines) in by_checkpoint {
            out.commit(id, &lines);
        }
        Ok(())
    }

    fn write(&mut self, line: StagedLine, _out: &SinkOutput) -> Result<(), SinkError> {
        self.open.push(line);
        Ok(())
    }

    fn prepare_commit(&mut self, checkpoint: u64) -> Result<SinkSnapshot, SinkError> {
        let mut lines = std::mem::take(&mut self.open);
        for l in &mut lines {
            l.checkpoint = checkpoint;
        }
        self.prepared.insert(checkpoint, lines);
        Ok(SinkSnapshot { staged: self.prepared.values().flatten().cloned().collect(), kafka: None })
    }

    fn commit(&mut self, checkpoint: u64, out: &SinkOutput) -> Result<(), SinkError> {
        let later = self.prepared.split_off(&(checkpoint + 1));
        for (id, lines) in std::mem::replace(&mut self.prepared, later) {
            out.commit(id, &lines);
        }
        Ok(())
    }
}
