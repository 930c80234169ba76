//! The print sink (the seed's `.print()`): every line is visible at once. State is exactly-once
//! under EXACTLY_ONCE, output is not: records replayed after a recovery print again (the output
//! pane marks them as repeats).

use super::sink::{Sink, SinkOutput};
use crate::state::storage::StagedLine;

pub struct PrintSink;

impl Sink for PrintSink {
    fn write(&mut self, line: StagedLine, out: &SinkOutput) {
        out.emit(&line);
    }

    fn prepare_commit(&mut self, _checkpoint: u64) -> Vec<StagedLine> {
        Vec::new()
    }

    fn commit(&mut self, _checkpoint: u64, _out: &SinkOutput) {}

    fn recover(&mut self, _staged: Vec<StagedLine>, _out: &SinkOutput) {}
}
