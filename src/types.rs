//! The vocabulary every layer speaks, at the bottom of the crate (as Arroyo's `arroyo-types`):
//! records and where they sit in the topic, how a checkpoint is taken, which subtask did what,
//! and how a lost task manager was found. It imports nothing of the crate, so the runtime
//! (`cluster`), the backends and checkpoint storage (`state`), the configuration, the events and
//! the connectors may all use it without importing each other.
//!
//! ```
//! use ckptlab::types::{Alignment, CheckpointMode, CheckpointOptions, TaskId};
//! // A mode change takes effect from the next barrier; only unaligned exactly-once overtakes.
//! assert!(!CheckpointOptions::new(CheckpointMode::ExactlyOnce).overtakes());
//! assert!(CheckpointOptions { mode: CheckpointMode::ExactlyOnce, alignment: Alignment::Unaligned }.overtakes());
//! assert_eq!(TaskId::Counter(1).to_string(), "counter[1]");
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoStaticStr, VariantNames};

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

/// The bytes of the record ckptlab sizes a network buffer by when `ckptlab.buffer-records` is 0
/// (segment size / this = records per buffer: 1489 in a 32 KB segment): the
/// [`Record::persisted_size`] of a one-character record (key and value "a", as the generator's
/// and the lessons' keys), the measure persisted in-flight data is counted in, so that a full
/// buffer persisted weighs one segment. Flink's own serialised form of that String record is
/// smaller (a 4-byte length, the element tag, its timestamp and the string), so its buffers hold
/// somewhat more records.
pub const MODELLED_RECORD_BYTES: u64 = 22;

impl Record {
    /// Bytes this record takes as persisted channel state (key, value, origin, count).
    pub fn persisted_size(&self) -> u64 {
        (self.key.len() + self.value.len() + 4 + 8 + 8) as u64
    }
}

/// Checkpointing mode (Flink's `execution.checkpointing.mode`). The choice enums of the
/// configuration know their option values (strum): the schema's allowed lists and `build` read
/// them, so a new variant is a new allowed value, never a silent default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, EnumString, IntoStaticStr, VariantNames, EnumIter)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE", ascii_case_insensitive)]
pub enum CheckpointMode {
    ExactlyOnce,
    AtLeastOnce,
}

impl CheckpointMode {
    pub fn flink_name(self) -> &'static str {
        self.into()
    }
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

/// Flink's `AlignmentType` (for EXACTLY_ONCE; at-least-once tracks barriers and never aligns):
/// how one checkpoint's barrier is aligned. Not the configuration's
/// [`crate::config::Alignment`], the user's aligned/unaligned choice: with a nonzero
/// `aligned-checkpoint-timeout`, the choice "unaligned" makes barriers `AlignedWithTimeout`.
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

/// A subtask of the job graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "operator", content = "index", rename_all = "lowercase")]
pub enum TaskId {
    Source(usize),
    Counter(usize),
    Sink,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskId::Source(i) => write!(f, "source[{i}]"),
            TaskId::Counter(i) => write!(f, "counter[{i}]"),
            TaskId::Sink => write!(f, "sink[0]"),
        }
    }
}

impl TaskId {
    /// The operator's name and the subtask's index, as channel patterns name them
    /// (`ckptlab.delays`: `source[1]->counter[*]`).
    pub fn parts(self) -> (&'static str, usize) {
        match self {
            TaskId::Source(i) => ("source", i),
            TaskId::Counter(i) => ("counter", i),
            TaskId::Sink => ("sink", 0),
        }
    }
}

/// A name that is no subtask of the job graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a subtask; subtasks are named source[N], counter[N] and sink[0]")]
pub struct BadTaskName(pub String);

/// `counter[1]` -> `TaskId::Counter(1)`: the inverse of the display.
impl std::str::FromStr for TaskId {
    type Err = BadTaskName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadTaskName(s.to_string());
        let (op, rest) = s.split_once('[').ok_or_else(bad)?;
        let index: usize = rest.strip_suffix(']').and_then(|i| i.parse().ok()).ok_or_else(bad)?;
        match op {
            "source" => Ok(TaskId::Source(index)),
            "counter" => Ok(TaskId::Counter(index)),
            "sink" if index == 0 => Ok(TaskId::Sink),
            _ => Err(bad()),
        }
    }
}

/// A record persisted as channel state: which end of which channel persisted it, and the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedRecord {
    /// The input channel it came on (`Input`), or the output channel it was queued on (`Output`).
    pub channel: usize,
    pub record: Record,
    #[serde(default)]
    pub end: ChannelEnd,
}

/// Which end of a channel persisted an in-flight record (Flink's input channel state, written by
/// the receiver, and result subpartition state, written by the sender), and so where it is
/// replayed on restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelEnd {
    /// Received, not processed: replayed into the task's input before new input.
    #[default]
    Input,
    /// Queued at the sender and overtaken by the barrier: sent again by the sender before new
    /// output (`execution.checkpointing.unaligned.recover-output-on-downstream.enabled` = false).
    Output,
}

/// Which of the two detections declares a task manager lost (Flink 2.3's; `cluster::heartbeat`
/// tells when each fires, and words it with the heartbeat options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by")]
pub enum Detection {
    /// `threshold` heartbeat RPCs in a row failed: the target is unreachable (a killed process).
    RpcFailures { threshold: u32 },
    /// No answer for `heartbeat.timeout` (a hung process, or failed-RPC detection off).
    HeartbeatTimeout,
}

impl Detection {
    /// In a few words, for the event log.
    pub fn summary(self) -> String {
        match self {
            Detection::RpcFailures { threshold } => format!("unreachable, {threshold} heartbeat RPCs in a row failed"),
            Detection::HeartbeatTimeout => "heartbeat timed out".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_name_parses_back_to_its_task_and_nothing_else_parses() {
        for t in [TaskId::Source(0), TaskId::Source(12), TaskId::Counter(3), TaskId::Sink] {
            assert_eq!(t.to_string().parse::<TaskId>(), Ok(t));
        }
        for bad in ["", "source", "source[]", "source[x]", "sink[1]", "map[0]", "counter[1", "counter[-1]"] {
            assert_eq!(bad.parse::<TaskId>(), Err(BadTaskName(bad.to_string())), "{bad}");
        }
        assert_eq!(TaskId::Counter(2).parts(), ("counter", 2));
        assert_eq!(TaskId::Sink.parts(), ("sink", 0));
    }
}
