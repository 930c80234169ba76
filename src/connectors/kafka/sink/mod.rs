//! Flink's KafkaSink (flink-connector-kafka `org.apache.flink.connector.kafka.sink`) as a state
//! machine over [`TransactionalProducer`]: the writer ([`writer`]: KafkaWriter and
//! ExactlyOnceKafkaWriter), the committer ([`committer`]: KafkaCommitter) and the abort of
//! lingering transactions at start ([`abort`]: TransactionAbortStrategyImpl.PROBING).
//!
//! Delivery guarantees (KafkaSink.java, KafkaWriter.java:181-188):
//! - `none`: records are sent and never waited for: a failure loses what the producer still had
//!   queued, and replays what the source re-reads.
//! - `at-least-once`: the producer is flushed before the barrier is forwarded: nothing the
//!   checkpoint covers is lost, replayed records are written again.
//! - `exactly-once`: one transaction per subtask per checkpoint, named
//!   `<prefix>-<subtask>-<checkpoint>` (TransactionalIdFactory.java:38-45); at the barrier it is
//!   flushed and handed to the committer as a [`KafkaCommittable`] (the snapshot keeps it), and
//!   the next one begins; the committer commits it when the checkpoint completes. On restore the
//!   committer commits the restored committables again (idempotent at the broker) and the writer
//!   aborts every transaction a previous attempt may have left open after the restored
//!   checkpoint, by re-initialising their ids (fencing their producers).
//!
//! Readers of the output topic see this at `isolation.level = read_committed` (no repeat, no
//! gap, except the lines of a transaction the broker aborted on its timeout) or
//! `read_uncommitted` (every attempt's lines, aborted ones included).

pub mod abort;
pub mod committer;
pub mod output;
pub mod readers;
#[cfg(test)]
mod scenarios;
pub mod sink;
pub mod verdict;
pub mod writer;

use serde::{Deserialize, Serialize};

use crate::connectors::transactions::{ProducerIdAndEpoch, TxnError};

// The sink's option values live with the configuration, which checks them; named here too.
pub use crate::config::{DeliveryGuarantee, DEFAULT_TRANSACTION_TIMEOUT};
pub use committer::{CommitOutcome, KafkaCommitter, LossCause};
pub use output::{OutputTopic, OutputTopicSettings};
pub use sink::KafkaSink;
pub use writer::{KafkaSinkWriter, WriterSnapshot};

/// The KafkaSink's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkSettings {
    pub delivery_guarantee: DeliveryGuarantee,
    /// `sink.transactional-id-prefix`: required with exactly-once.
    pub transactional_id_prefix: Option<String>,
}

/// Flink's transactional id: `prefix-subtask-checkpoint` (TransactionalIdFactory.java:38-45).
pub fn transactional_id(prefix: &str, subtask: u32, checkpoint: u64) -> String {
    format!("{prefix}-{subtask}-{checkpoint}")
}

/// A transaction pre-committed at a barrier, waiting for its checkpoint to complete: what the
/// committer's part of the snapshot keeps (Flink's KafkaCommittable: producer id, epoch,
/// transactional id; ckptlab adds the checkpoint and the record count, to say what a loss cost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaCommittable {
    pub transactional_id: String,
    pub producer: ProducerIdAndEpoch,
    /// The checkpoint whose barrier closed the transaction.
    pub checkpoint: u64,
    /// Records written in the transaction.
    pub records: u64,
    /// The embedded two-phase-commit sink's (`job.sink = transactional`): when its transaction
    /// opened (ms since the Unix epoch), for its `transaction.timeout.ms`. A Kafka broker keeps
    /// that time itself, so the KafkaSink leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_ms: Option<u64>,
}

/// The writer's part of the snapshot (Flink's KafkaWriterState): the prefix, so that a restore
/// with another prefix also aborts the old prefix's transactions (ExactlyOnceKafkaWriter.java:313-323).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaWriterState {
    pub transactional_id_prefix: String,
    pub subtask: u32,
}

/// The Kafka sink's part of a checkpoint (exactly-once): the committer's committables (every
/// transaction pre-committed and not committed when the snapshot was taken) and the writer's
/// state, as Flink's sink operator keeps them (CommitterOperator's and SinkWriterOperator's
/// operator state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSinkState {
    pub committables: Vec<KafkaCommittable>,
    pub writer_states: Vec<KafkaWriterState>,
}

/// What a restored sink subtask starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoredSink {
    /// The restored checkpoint (Flink's `getRestoredCheckpointId`), `None` on a fresh start.
    pub checkpoint: Option<u64>,
    /// The writer states of the snapshot handed to this subtask.
    pub writer_states: Vec<KafkaWriterState>,
}

/// Why the sink cannot go on: the task fails (and the job fails over).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkError {
    /// KafkaSinkBuilder.java:200-203's check, in its words.
    #[error("{}", crate::config::MISSING_TRANSACTIONAL_ID_PREFIX)]
    MissingTransactionalIdPrefix,
    /// The producer refused a call (fenced by another sink with the same prefix, the timeout
    /// above the broker's maximum at start, a broker that went away ...).
    #[error("{0}")]
    Producer(#[from] TxnError),
    /// The writer's producer was fenced: another producer initialised one of this prefix's
    /// transactional ids. Flink requires a prefix per job for this reason ("to prevent corrupted
    /// transactions if multiple jobs using the KafkaSink run against the same Kafka Cluster",
    /// KafkaSinkBuilder.setTransactionalIdPrefix); the task fails and the job fails over.
    #[error("{error}: sink.transactional-id-prefix \"{prefix}\" is also used by another running KafkaSink (another job, or a newer attempt of this one) that fenced this one; give each job its own prefix")]
    Fenced { prefix: String, error: TxnError },
}

impl SinkError {
    /// A fenced producer's error as [`SinkError::Fenced`], naming `prefix`; others as they are.
    pub fn naming_prefix(self, prefix: Option<&str>) -> SinkError {
        match (self, prefix) {
            (SinkError::Producer(error), Some(prefix)) if error.is_fenced() => SinkError::Fenced { prefix: prefix.to_owned(), error },
            (e, _) => e,
        }
    }
}
