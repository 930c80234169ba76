//! What flows on the data path: records and barriers, packed into network buffers. The records
//! and checkpoint options themselves are the crate's vocabulary ([`crate::types`]); they are
//! named here too because the runtime speaks of them as stream elements.

pub use crate::types::{Alignment, CheckpointOptions, Origin, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    pub checkpoint: u64,
    pub options: CheckpointOptions,
}

/// One element of a stream (Flink's StreamElement; Arroyo's Data | Signal).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamMessage {
    Record(Record),
    Barrier(Barrier),
    /// The sender's snapshot for this checkpoint failed or was abandoned: receivers stop
    /// waiting for its barrier (Flink's CancelCheckpointMarker).
    CancelCheckpoint(u64),
}

impl StreamMessage {
    pub fn is_record(&self) -> bool {
        matches!(self, StreamMessage::Record(_))
    }
}
