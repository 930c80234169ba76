//! The discard sink: nothing is visible (benchmarks measure the pipeline, not the printing).

use super::sink::{RestoredSinkState, Sink, SinkError, SinkOutput, SinkSnapshot};
use crate::state::storage::StagedLine;

pub struct DiscardSink;

impl Sink for DiscardSink {
    fn recover(&mut self, _restored: RestoredSinkState, _out: &SinkOutput) -> Result<(), SinkError> {
        Ok(())
    }

    fn write(&mut self, _line: StagedLine, _out: &SinkOutput) -> Result<(), SinkError> {
        Ok(())
    }

    fn prepare_commit(&mut self, _checkpoint: u64) -> Result<SinkSnapshot, SinkError> {
        Ok(SinkSnapshot::default())
    }

    fn commit(&mut self, _checkpoint: u64, _out: &SinkOutput) -> Result<(), SinkError> {
        Ok(())
    }
}
