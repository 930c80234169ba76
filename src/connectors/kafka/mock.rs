//! librdkafka's in-process mock cluster (`bootstrap-servers = "mock"`): the real Kafka protocol
//! with no broker, for tests and demos, whose broker can be taken down and up.

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

impl KafkaTopic {
    /// Takes the mock cluster's broker down (`false`) or up again (`true`): a broker failure
    /// for tests and demos. An error for a real broker.
    pub fn set_mock_broker(&self, up: bool) -> Result<(), String> {
        let Some(m) = &self.mock else { return Err("not a mock cluster".into()) };
        let r = if up { m.0.broker_up(1) } else { m.0.broker_down(1) };
        r.map_err(|e| e.to_string())
    }
}
