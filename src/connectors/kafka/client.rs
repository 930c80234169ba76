//! librdkafka clients as ckptlab makes them: the common configuration, consumers assigned at
//! given offsets, and the admin calls (partition count, topic creation).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::health::HealthContext;
use super::health::CONSUMER_RECONNECT_BACKOFF;
use super::KafkaSettings;

/// How long metadata and offset queries may take before the broker counts as unreachable.
pub(super) const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) fn client(servers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", servers)
        .set("client.id", "ckptlab")
        // reconnect with backoff when the broker goes away
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("log_level", "3");
    c
}

/// `fetch_wait`: how long the broker may hold an empty fetch. A fetch returns as soon as data
/// arrives whatever this is; it bounds how long a consumer that was assigned or seeked after
/// draining waits before its new position is fetched (librdkafka's default 500 ms), and an idle
/// consumer sends a fetch that often (CPU while nothing happens). librdkafka assigns partitions
/// only to a consumer with a group, even one that never joins it.
pub(super) fn consumer_config(servers: &str, group: &str, fetch_wait: Duration) -> ClientConfig {
    let mut c = client(servers);
    let backoff = CONSUMER_RECONNECT_BACKOFF.as_millis().to_string();
    c.set("group.id", group)
        // See `Reconnects`: time to replace the consumer before it fetches from a restarted broker.
        .set("reconnect.backoff.ms", &backoff)
        .set("reconnect.backoff.max.ms", &backoff)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // An offset the broker does not have is an error to report, not a silent jump to the
        // end: it means records were lost (retention, or a broker that came back empty).
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", fetch_wait.as_millis().to_string())
        // A fetch the broker never answers is given up (and the connection with it: the epoch
        // moves, the mirror checks, a new consumer fetches) after this, not after librdkafka's
        // 60 s. Tansu, restarted empty, left 1 fetch in 4 of a consumer created right after it
        // unanswered: the position stayed unset for the whole minute while the broker's end
        // offset was 1 (tests/it/kafka.rs, records_a_broker_lost_while_the_job_was_down_...: 4
        // failures in 17 runs before, none in 12 after). 5 s is 50 fetch waits.
        .set("socket.timeout.ms", "5000")
        // The "Disconnected ... in state UP" line `Reconnects` watches for is logged at info level.
        .set_log_level(RDKafkaLogLevel::Info);
    c
}

/// A consumer assigned `at`: (partition, Kafka offset), `None` for the partition's beginning.
pub(super) fn assigned_consumer(
    servers: &str,
    group: &str,
    fetch_wait: Duration,
    ctx: HealthContext,
    topic: &str,
    at: impl Iterator<Item = (u32, Option<u64>)>,
) -> Result<BaseConsumer<HealthContext>, KafkaError> {
    let consumer: BaseConsumer<HealthContext> = consumer_config(servers, group, fetch_wait).create_with_context(ctx)?;
    let mut tpl = TopicPartitionList::new();
    for (p, o) in at {
        tpl.add_partition_offset(topic, p as i32, o.map_or(Offset::Beginning, |o| Offset::Offset(o as i64)))?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// Sources are assigned anew on every restore, and librdkafka's mock cluster answers an empty
/// fetch only when this runs out: it bounds recovery and, on the mock, latency.
pub(super) const SOURCE_FETCH_WAIT: Duration = Duration::from_millis(100);
/// The auditor's mirror: the same, so that the verdict follows within a fetch.
pub(super) const MIRROR_FETCH_WAIT: Duration = Duration::from_millis(100);

/// The topic's partition count on the broker; `Ok(None)` when it does not exist.
pub(super) fn partitions_on_broker(c: &BaseConsumer<HealthContext>, topic: &str) -> Result<Option<u32>, KafkaError> {
    let md = c.fetch_metadata(Some(topic), QUERY_TIMEOUT)?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as u32))
}

/// Creates the topic; the broker's refusal is `KafkaError::AdminOp` with its code.
pub(super) fn create_topic(servers: &str, s: &KafkaSettings) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client(servers).create()?;
    let topic = NewTopic::new(&s.topic, s.partitions as i32, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(QUERY_TIMEOUT)).request_timeout(Some(QUERY_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics([&topic], &opts))?;
    for r in results {
        if let Err((_, code)) = r {
            return Err(KafkaError::AdminOp(code));
        }
    }
    Ok(())
}
