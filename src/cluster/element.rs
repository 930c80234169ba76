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
#[derive(Debug, Clone, PartialEq)]
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
}
