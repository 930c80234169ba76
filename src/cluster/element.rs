//! What flows on the data path: records and barriers, packed into network buffers.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::CheckpointMode;

/// Where a record sits in the topic: the identity the auditor tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    pub partition: u32,
    pub offset: u64,
}

/// A record on its way: the key it is partitioned by, its value, and (after the counter) the count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub key: Arc<str>,
    pub value: Arc<str>,
    pub origin: Origin,
    pub count: u64,
}

/// How a checkpoint is taken, carried by its barrier (Flink's CheckpointOptions), so that a mode
/// change takes effect from the next checkpoint without disturbing one in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointOptions {
    pub mode: CheckpointMode,
    /// Flink's alignment type for EXACTLY_ONCE: aligned, unaligned, or aligned first and
    /// unaligned after `aligned-checkpoint-timeout`.
    pub alignment: Alignment,
}

impl CheckpointOptions {
    /// At-least-once, or exactly-once aligned (the defaults before unaligned checkpoints).
    pub fn new(mode: CheckpointMode) -> Self {
        CheckpointOptions { mode, alignment: Alignment::Aligned }
    }

    /// Whether the barrier goes ahead of the records queued before it (a priority event).
    pub fn overtakes(&self) -> bool {
        self.mode == CheckpointMode::ExactlyOnce && self.alignment == Alignment::Unaligned
    }
}

/// Flink's `AlignmentType` (for EXACTLY_ONCE; at-least-once tracks barriers and never aligns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alignment {
    Aligned,
    Unaligned,
    /// Aligned until alignment has taken this long, then unaligned
    /// (`execution.checkpointing.aligned-checkpoint-timeout`).
    AlignedWithTimeout {
        timeout_ms: u64,
    },
}

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

impl Record {
    /// Bytes this record takes as persisted channel state (key, value, origin, count).
    pub fn persisted_size(&self) -> u64 {
        (self.key.len() + self.value.len() + 4 + 8 + 8) as u64
    }
}
