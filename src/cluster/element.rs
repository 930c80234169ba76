//! What flows on the data path: records and barriers, packed into network buffers. The records
//! and checkpoint options themselves are the crate's vocabulary ([`crate::types`]); they are
//! named here too because the runtime speaks of them as stream elements.

pub use crate::types::{Alignment, CheckpointOptions, Origin, Record};

/// A checkpoint barrier (Flink's `CheckpointBarrier`): the checkpoint, its options and when the
/// JobManager triggered it (the barrier's `timestamp`), from which every task counts the aligned
/// checkpoint timeout (BarrierAlignmentUtil.getTimerDelay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    pub checkpoint: u64,
    pub options: CheckpointOptions,
    pub triggered_at: tokio::time::Instant,
}

/// One trigger time for the barriers of unit tests that compare barriers built apart (a
/// barrier's identity includes its trigger time, as Flink's CheckpointBarrier.equals).
#[cfg(test)]
pub fn test_trigger_time() -> tokio::time::Instant {
    static T: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    tokio::time::Instant::from_std(*T.get_or_init(std::time::Instant::now))
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
