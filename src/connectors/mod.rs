//! Sources and sinks at the edge of the cluster: the topic the sources read (it lives outside the
//! cluster, so killing a task manager never loses its records): embedded, or Kafka through
//! rdkafka; the record generator; and the sinks (print, transactional, discard).

pub mod commit_log;
pub mod discard_sink;
pub mod filelog;
pub mod generator;
pub mod kafka;
pub mod print_sink;
pub mod sink;
pub mod topic;
pub mod transactions;
pub mod transactional_sink;

// The Kafka sink lives with the rest of Kafka (`kafka/sink/`); its callers name it as before.
pub use kafka::sink as kafka_sink;
pub use topic::{EmbeddedTopic, Topic, TopicError, TopicReader};

/// The sink of a kind. It lives here, beside the modules of every sink, so that the `Sink` trait
/// in `sink.rs` names none of its implementations. The Kafka sink writes to the output topic on
/// `topic`'s broker (its producers come from there); when that cannot be had, the sink that
/// comes back fails its task at start with the reason.
pub fn create_sink(kind: crate::config::SinkKind, settings: &crate::config::KafkaSinkConfig, topic: &dyn Topic, events: &crate::events::EventBus) -> Box<dyn sink::Sink> {
    use crate::config::SinkKind;
    match kind {
        SinkKind::Print => Box::new(print_sink::PrintSink),
        SinkKind::Transactional => Box::new(transactional_sink::TransactionalSink::new(settings.transaction_timeout)),
        SinkKind::Discard => Box::new(discard_sink::DiscardSink),
        SinkKind::Kafka => {
            let sink_settings = kafka_sink::KafkaSinkSettings {
                delivery_guarantee: settings.delivery_guarantee,
                transactional_id_prefix: settings.transactional_id_prefix.clone(),
            };
            let output_settings = kafka_sink::OutputTopicSettings::of(settings);
            match topic.output_topic(&output_settings, events) {
                Ok(output) => {
                    let producers = output.producers(&output_settings);
                    Box::new(kafka_sink::KafkaSink::new(sink_settings, output, producers))
                }
                Err(e) => Box::new(sink::UnavailableSink(kafka_sink::SinkError::Producer(e).into())),
            }
        }
    }
}
