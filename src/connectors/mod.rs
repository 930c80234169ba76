//! Sources and sinks at the edge of the cluster: the topic the sources read (it lives outside the
//! cluster, so killing a task manager never loses its records): embedded, or Kafka through
//! rdkafka; and the record generator.

pub mod generator;
pub mod kafka;
pub mod topic;

pub use topic::{EmbeddedTopic, Topic, TopicError, TopicReader};
