//! The Kafka sink's option values (`sink.*`) and the two refusals of them, kept here below the
//! connectors so that the configuration validates the sink's options without importing the sink:
//! Flink's DeliveryGuarantee, KafkaSink's default `transaction.timeout.ms`, the broker's
//! `transaction.max.timeout.ms`, and the words KafkaSinkBuilder and the broker refuse with. The
//! sink (`connectors::kafka_sink`) and the embedded broker (`connectors::transactions`) take them
//! from here and re-export them where they were.
//!
//! ```
//! use ckptlab::config::{DeliveryGuarantee, TransactionTimeoutTooLarge};
//! assert_eq!("exactly-once".parse::<DeliveryGuarantee>(), Ok(DeliveryGuarantee::ExactlyOnce));
//! let refusal = TransactionTimeoutTooLarge { timeout_ms: 3_600_000, max_ms: Some(900_000) };
//! assert!(refusal.to_string().ends_with("(transaction.timeout.ms = 3600000, transaction.max.timeout.ms = 900000)"));
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `sink.delivery-guarantee` (Flink's DeliveryGuarantee; KafkaSinkBuilder.java:73 defaults to NONE).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, strum::Display, strum::EnumString, strum::EnumIter, strum::VariantNames,
)]
#[strum(serialize_all = "kebab-case", ascii_case_insensitive)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryGuarantee {
    #[default]
    None,
    AtLeastOnce,
    ExactlyOnce,
}

/// KafkaSink's default `transaction.timeout.ms`: 1 h (KafkaSinkBuilder.java:65, 86-88), four
/// times a broker's default `transaction.max.timeout.ms`.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(3600);

/// The broker's `transaction.max.timeout.ms` default (TransactionStateManagerConfig.java:32).
pub const DEFAULT_TRANSACTION_MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// KafkaSinkBuilder.java:200-203's check of an exactly-once sink without a
/// `sink.transactional-id-prefix`, in its words: the configuration refuses with it, and so does
/// the sink's writer when it is made without one.
pub const MISSING_TRANSACTIONAL_ID_PREFIX: &str = "EXACTLY_ONCE delivery guarantee requires a transactionalIdPrefix to be set to provide unique transaction names across multiple KafkaSinks writing to the same Kafka cluster.";

/// INVALID_TRANSACTION_TIMEOUT (50) at `InitProducerId`: `transaction.timeout.ms` above the
/// broker's `transaction.max.timeout.ms` (TransactionCoordinator.scala:128-130). The Java
/// client makes it fatal with this text (TransactionManager.java:1355, Errors.java:282-283),
/// which is what a Flink job whose KafkaSink keeps the 1 h default fails with against a broker
/// at the 15 min default. The broker's refusal (`TxnError::InvalidTransactionTimeout`) and the
/// configuration's check before the job runs both say it with this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("org.apache.kafka.common.KafkaException: Unexpected error in InitProducerIdResponse; The transaction timeout is larger than the maximum value allowed by the broker (as configured by transaction.max.timeout.ms). (transaction.timeout.ms = {timeout_ms}{})", .max_ms.map(|m| format!(", transaction.max.timeout.ms = {m}")).unwrap_or_default())]
pub struct TransactionTimeoutTooLarge {
    pub timeout_ms: u64,
    /// The broker's maximum, when it is known (the embedded broker's; a Kafka broker does not say).
    pub max_ms: Option<u64>,
}
