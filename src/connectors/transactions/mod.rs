//! Kafka transactions, as the KafkaSink's exactly-once path needs them (issue 23).
//!
//! - [`producer`]: the producer trait the KafkaSink writes through, with the broker's errors as
//!   types; implemented by the embedded log's producer ([`embedded`]) and by librdkafka's
//!   (`connectors::kafka::transactional`).
//! - [`log`]: one partition of the embedded output topic with transactional records, commit and
//!   abort markers, the last stable offset, and readers at both isolation levels.
//! - [`coordinator`]: the embedded topic with Kafka's transaction coordinator: producer ids and
//!   epochs, fencing at `initTransactions`, idempotent commits, `transaction.max.timeout.ms`, and
//!   the abort of transactions open longer than `transaction.timeout.ms`, on a clock the caller
//!   moves.
//!
//! Nothing here knows Flink: the sink's writer and committer are in `connectors::kafka_sink`.

pub mod coordinator;
pub mod embedded;
pub mod log;
pub mod producer;
#[cfg(test)]
mod properties;

pub use coordinator::{BrokerSettings, TransactionalLog, TxnEvent};
pub use embedded::EmbeddedProducers;
pub use log::{Fate, IsolationLevel, ReadRecord};
pub use producer::{FenceCause, ProducerFactory, ProducerIdAndEpoch, TransactionalProducer, TxnError};
