//! The discard sink: nothing is visible (benchmarks measure the pipeline, not the printing).

use super::sink::{Sink, SinkOutput};
use crate::state::storage::StagedLine;

pub struct DiscardSink;

impl Sink for DiscardSink {
    fn write(&mut self, _line: StagedLine, _out: &SinkOutput) {}

    fn prepare_commit(&mut self, _checkpoint: u64) -> Vec<StagedLine> {
        Vec::new()
    }

    fn commit(&mut self, _checkpoint: u64, _out: &SinkOutput) {}

    fn recover(&mut self, _staged: Vec<StagedLine>, _out: &SinkOutput) {}
}
