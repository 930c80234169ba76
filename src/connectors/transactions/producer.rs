//! The producer side of Kafka transactions, as one small trait that the embedded transactional log
//! ([`super::embedded`]) and librdkafka (`connectors::kafka::transactional`) both implement, so
//! that the KafkaSink's writer and committer (`connectors::kafka_sink`) run unchanged on either.
//!
//! The calls are the Kafka producer's (`initTransactions`, `beginTransaction`, `send`, `flush`,
//! `commitTransaction`, `abortTransaction`) plus Flink's `resumeTransaction`
//! (flink-connector-kafka FlinkKafkaInternalProducer.java:300-337), which lets a committer finish a
//! transaction another producer instance opened: the factory's [`ProducerFactory::resume`].
//! Errors are typed after the broker's error codes (apache/kafka Errors.java:275-284, 370-371),
//! so the sink decides on a variant, never on a message.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A producer id and epoch, as the transaction coordinator hands them out at `InitProducerId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProducerIdAndEpoch {
    pub producer_id: i64,
    pub epoch: i16,
}

impl std::fmt::Display for ProducerIdAndEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "producer id {} epoch {}", self.producer_id, self.epoch)
    }
}

/// Why the coordinator bumped a transactional id's epoch past a producer's: what only the
/// embedded log can tell (a real broker answers PRODUCER_FENCED either way, and Flink's
/// KafkaCommitter can only guess between the two, KafkaCommitter.java:153-185).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
pub enum FenceCause {
    /// Another producer called `initTransactions` with the same transactional id.
    #[strum(to_string = "a newer producer with the same transactional.id")]
    NewerProducer,
    /// The coordinator aborted the transaction on its timeout (TransactionCoordinator.scala:759-795
    /// fences the epoch before it aborts).
    #[strum(to_string = "the coordinator's abort of a transaction open longer than transaction.timeout.ms")]
    TransactionTimedOut,
}

/// A transactional call the broker (or the client library) refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TxnError {
    /// INVALID_TRANSACTION_TIMEOUT (50) at `InitProducerId`: `transaction.timeout.ms` above the
    /// broker's `transaction.max.timeout.ms`, in the Java client's words, which the configuration
    /// checks with too ([`crate::config::TransactionTimeoutTooLarge`]).
    #[error("{}", crate::config::TransactionTimeoutTooLarge { timeout_ms: *.timeout_ms, max_ms: *.max_ms })]
    InvalidTransactionTimeout { timeout_ms: u64, max_ms: Option<u64> },
    /// PRODUCER_FENCED (90): the transactional id's epoch has moved past this producer's
    /// (Errors.java:370-371). Fatal for the producer.
    #[error("org.apache.kafka.common.errors.ProducerFencedException: There is a newer producer with the same transactionalId which fences the current one. ({transactional_id}, epoch {epoch}{})", .cause.map(|c| format!(": fenced by {c}")).unwrap_or_default())]
    ProducerFenced { transactional_id: String, epoch: i16, cause: Option<FenceCause> },
    /// INVALID_PRODUCER_EPOCH (47): a partition refused a write from an epoch older than the last
    /// it saw for the producer id (ProducerAppendInfo.java:96-109, Errors.java:275).
    #[error("org.apache.kafka.common.errors.InvalidProducerEpochException: Producer attempted to produce with an old epoch. ({transactional_id}, epoch {epoch})")]
    InvalidProducerEpoch { transactional_id: String, epoch: i16 },
    /// INVALID_TXN_STATE (48): commit after abort or abort after commit; "it does not appear on
    /// double commits or double aborts" (KafkaCommitter.java:113-115; TransactionCoordinator.scala:598-607).
    #[error("org.apache.kafka.common.errors.InvalidTxnStateException: The producer attempted a transactional operation in an invalid state. ({transactional_id}: {state})")]
    InvalidTxnState { transactional_id: String, state: String },
    /// INVALID_PRODUCER_ID_MAPPING (49): the producer id is not (or no longer) the id's.
    #[error("org.apache.kafka.common.errors.InvalidPidMappingException: The producer attempted to use a producer id which is not currently assigned to its transactional id. ({transactional_id})")]
    InvalidProducerIdMapping { transactional_id: String },
    /// A call out of order on the client (begin twice, send outside a transaction on a
    /// transactional producer, commit with none open): the Java client's IllegalStateException.
    #[error("java.lang.IllegalStateException: {0}")]
    IllegalState(&'static str),
    /// The partition does not exist on the broker.
    #[error("org.apache.kafka.common.errors.UnknownTopicOrPartitionException: partition {0} does not exist")]
    UnknownPartition(u32),
    /// `initTransactions` got no producer id for a transactional id: no broker answered, or
    /// none has a transaction coordinator (a broker without transactions). The Java client
    /// waits `max.block.ms` (60 s) and throws `TimeoutException: Timeout expired after 60000ms
    /// while awaiting InitProducerId` (TransactionManager / KafkaProducer.initTransactions);
    /// Flink's KafkaSink fails the task with it.
    #[error("no transaction coordinator at {servers} gave transactional id {transactional_id} a producer id within {waited_ms} ms ({detail}): the broker is unreachable or does not support transactions. Flink's KafkaSink fails the same way: org.apache.kafka.common.errors.TimeoutException: Timeout expired after 60000ms while awaiting InitProducerId")]
    NoTransactionCoordinator { servers: String, transactional_id: String, waited_ms: u64, detail: String },
    /// Anything else the client library reports (connection, timeout, ...), with its text.
    #[error("kafka client: {0}")]
    Client(String),
}

impl TxnError {
    /// The errors after which the producer's transaction can never commit: the epoch moved on.
    pub fn is_fenced(&self) -> bool {
        matches!(self, TxnError::ProducerFenced { .. } | TxnError::InvalidProducerEpoch { .. })
    }
}

/// One Kafka producer, transactional when it has a transactional id.
pub trait TransactionalProducer: Send {
    /// `None` for a non-transactional producer.
    fn transactional_id(&self) -> Option<&str>;

    /// `initTransactions`: the coordinator bumps the id's epoch (fencing every older producer of
    /// it) and aborts the id's open transaction. Epoch 0 means the id was never used before,
    /// which Flink's probing abort strategy relies on (TransactionAbortStrategyImpl.java:95-97).
    fn init_transactions(&mut self) -> Result<ProducerIdAndEpoch, TxnError>;

    /// `beginTransaction`: local to the client; the broker learns of the transaction with its
    /// first record (TransactionMetadata.scala:322-330 starts its clock there).
    fn begin_transaction(&mut self) -> Result<(), TxnError>;

    /// Queues one record for `partition`. An error of a record queued earlier may surface here,
    /// as Flink's KafkaWriter reports the delivery callback's error on the next write.
    fn send(&mut self, partition: u32, value: &str) -> Result<(), TxnError>;

    /// Waits until every queued record is acknowledged (or failed).
    fn flush(&mut self) -> Result<(), TxnError>;

    /// `commitTransaction`: flushes, then ends the transaction with a commit. With no record in
    /// the transaction no EndTxn is sent (TransactionManager.java:816-824).
    fn commit_transaction(&mut self) -> Result<(), TxnError>;

    /// `abortTransaction`: drops what is queued and ends the transaction with an abort.
    fn abort_transaction(&mut self) -> Result<(), TxnError>;

    /// The producer id and epoch this producer writes with (after init or resume).
    fn producer_id_and_epoch(&self) -> Option<ProducerIdAndEpoch>;
}

/// Makes producers against one output topic.
pub trait ProducerFactory: Send + Sync {
    /// The output topic's partition count.
    fn partitions(&self) -> u32;

    /// A producer, transactional with `transactional_id` (not initialised yet).
    fn create(&self, transactional_id: Option<&str>) -> Result<Box<dyn TransactionalProducer>, TxnError>;

    /// A producer in the transaction `transactional_id` opened with `producer`: Flink's
    /// `resumeTransaction`, which the committer uses after a restore to commit a pre-committed
    /// transaction (KafkaCommitter.java:215-224).
    fn resume(&self, transactional_id: &str, producer: ProducerIdAndEpoch) -> Result<Box<dyn TransactionalProducer>, TxnError>;

    /// `transaction.timeout.ms` of the producers made.
    fn transaction_timeout(&self) -> Duration;
}
