//! Sources and sinks at the edge of the cluster: the topic the sources read (it lives outside the
//! cluster, so killing a task manager never loses its records): embedded, or Kafka through
//! rdkafka; the record generator; and the sinks (print, transactional, discard).

pub mod discard_sink;
pub mod filelog;
pub mod generator;
pub mod kafka;
pub mod print_sink;
pub mod sink;
pub mod topic;
pub mod transactional_sink;

pub use topic::{EmbeddedTopic, Topic, TopicError, TopicReader};
