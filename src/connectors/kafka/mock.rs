//! librdkafka's in-process mock cluster (`bootstrap-servers = "mock"`): the real Kafka protocol
//! with no broker, for tests and demos, whose broker can be taken down and up.

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::KafkaTopic;

/// `bootstrap-servers` value that starts librdkafka's mock cluster.
pub const MOCK: &str = "mock";

/// librdkafka's mock cluster.
pub(super) struct Mock(pub(super) MockCluster<'static, DefaultProducerContext>);

// SAFETY: the mock cluster is driven by its own librdkafka thread; the `rd_kafka_mock_*` calls
// the handle makes (broker up/down, topic creation) are handed to that thread and are safe from
// any thread. The handle is only dropped with the topic.
unsafe impl Send for Mock {}
unsafe impl Sync for Mock {}

/// Why the mock cluster's broker could not be taken down or up.
#[derive(Debug, thiserror::Error)]
pub enum MockBrokerError {
    #[error("kafka at {servers} is not librdkafka's mock cluster (bootstrap-servers = \"{MOCK}\" starts one): its broker cannot be taken down from here")]
    NotAMock { servers: String },
    #[error("librdkafka's mock cluster: {0}")]
    Kafka(#[from] KafkaError),
}

impl KafkaTopic {
    /// Takes the mock cluster's broker down (`false`) or up again (`true`): a broker failure
    /// for tests and demos. An error for a real broker.
    pub fn set_mock_broker(&self, up: bool) -> Result<(), MockBrokerError> {
        let Some(m) = &self.mock else { return Err(MockBrokerError::NotAMock { servers: self.servers.clone() }) };
        Ok(if up { m.0.broker_up(1) } else { m.0.broker_down(1) }?)
    }
}
