//! The print sink (the seed's `.print()`): every line is visible at once. State is exactly-once
//! under EXACTLY_ONCE, output is not: records replayed after a recovery print again (the output
//! pane marks them as repeats).

use super::sink::{RestoredSinkState, Sink, SinkError, SinkOutput, SinkSnapshot};
use crate::state::storage::StagedLine;

pub struct PrintSink;

impl Sink for PrintSink {
    fn recover(&mut self, _restored: RestoredSinkState, _out: &SinkOutput) -> Result<(), SinkError> {
        Ok(())
    }

    fn write(&mut self, line: StagedLine, out: &SinkOutput) -> Result<(), SinkError> {
        out.emit(&line);
        Ok(())
    }

    fn prepare_commit(&mut self, _checkpoint: u64) -> Result<SinkSnapshot, SinkError> {
        Ok(SinkSnapshot::default())
    }

    fn commit(&mut self, _checkpoint: u64, _out: &SinkOutput) -> Result<(), SinkError> {
        Ok(())
    }
}
