//! Kafka through rdkafka (librdkafka): the seed's real setup, `[source] kind = "kafka"`.
//!
//! - Sources are Kafka consumers as Flink's: each source subtask gets its own consumer, assigned
//!   its partitions explicitly at the offsets it was given (no group rebalancing); its offsets are
//!   its checkpointed state, so recovery seeks to the checkpoint's offsets. With no checkpoint the
//!   JobManager starts from the group's committed offsets, else `auto-offset-reset`. When a
//!   checkpoint completes the offsets are committed to the group, for monitoring only.
//! - The auditor reads the topic itself: a mirror consumer of its own follows every partition
//!   from the beginning, so the verdict counts whatever is in the topic, whoever wrote it
//!   (kafka-console-producer, kcat, ckptlab).
//! - Produced records (input pane, scenarios, generator) go through a producer; keyless records
//!   are spread over partitions. A record the broker does not acknowledge in time stays queued
//!   (`message.timeout.ms = 0`: retried until the broker is back) and the caller is told so.
//! - `bootstrap-servers = "mock"` starts librdkafka's in-process mock cluster, which speaks the real
//!   Kafka protocol: tests and demos need no broker.
//! - Broker down or unreachable, topic missing: [`Topic::health`] says what, where and what to do;
//!   librdkafka reconnects with backoff, and nothing panics. Status events are published when the
//!   kind of problem changes, at most once per [`HEALTH_EVENT_INTERVAL`].
//! - Offsets as the engine sees them are record indices: the n-th record of a partition has index
//!   n whatever its Kafka offset. A transactional producer's commit markers (control records) and
//!   aborted records take Kafka offsets that no consumer ever receives, so Kafka offsets have gaps;
//!   the mirror keeps each record's Kafka offset and translates both ways (seek, commit, `latest`).
//! - A broker that comes back without the records it served (restarted empty, topic recreated) is
//!   found by the mirror's check after every lost connection (see [`MirrorRun`]): the last record
//!   read, read again, and the last one our producer had acknowledged where the broker's end offset
//!   is below it (an end offset alone is no proof: Tansu reports less than it holds). The mirror keeps the lost records and starts a new log of the partition after them;
//!   sources whose position was lost go on from the new log's start (`auto.offset.reset`, as
//!   Flink's KafkaSource) and the auditor counts what they could not read as `lost_by_broker`.
//!   The status says so for good (status line, events, the run's last lines).
//! - Payloads are text; anything else is shown escaped so distinct payloads stay distinct keys:
//!   see [`record_value`].
//!
//! Files: [`health`] (the status shown, the client context reporting to it, and every consumer
//! paused and replaced after a lost connection), [`client`] (librdkafka clients as ckptlab makes
//! them), [`detached`] (a client closed off-thread), [`producer`] (records sent, acknowledgements kept), [`mirror`] (the
//! auditor's copy of the topic), [`mirror_consumer`] (its consumer, and the check after a lost
//! connection), [`reader`] (a source subtask's consumer), [`payload`] (payloads as values),
//! [`mock`] (librdkafka's mock cluster), [`sink`] (Flink's KafkaSink and its output topic, also
//! named `connectors::kafka_sink`).

mod client;
mod detached;
mod health;
mod mirror;
mod mirror_consumer;
mod mock;
mod payload;
mod producer;
mod reader;
pub mod sink;
pub mod transactional;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{Producer, PurgeConfig, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::watch;

use self::client::{
    assigned_consumer, client, consumer_config, create_topic, partitions_on_broker, MIRROR_FETCH_WAIT,
    QUERY_TIMEOUT,
};
use self::health::{unreachable, Health, HealthContext, Reconnects};
use self::mirror::Mirror;
use self::mirror_consumer::MirrorRun;
use self::mock::Mock;
use self::producer::{AckedLog, Acks, Deliveries, ACK_TIMEOUT};
use self::reader::{KafkaReader, ReaderPartition};
use self::detached::Detached;
use super::topic::{read_log, Topic, TopicError, TopicReader};
use crate::config::OffsetReset;
use crate::events::EventBus;

/// The topic cannot be used: what could not be made, and librdkafka's reason.
fn unavailable(what: &str, e: impl std::fmt::Display) -> TopicError {
    TopicError::Unavailable(format!("{what}: {e}"))
}

pub use self::health::HEALTH_EVENT_INTERVAL;
pub use self::mock::{MockBrokerError, MOCK};
pub use self::payload::{record_value, NULL_VALUE};

/// The `[source]` options the Kafka topic needs.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// A broker list, or `mock`.
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    /// Partitions to create the topic with when it does not exist (a mock's, or a real broker's).
    pub partitions: u32,
    /// Where a source goes on when the broker no longer has its position (`auto.offset.reset`):
    /// Flink's KafkaSource hands its starting offsets' reset strategy to the consumer
    /// (flink-connector-kafka KafkaSourceBuilder.java:471-474; `earliest()` resets to EARLIEST,
    /// OffsetsInitializer.java:147-148, `latest()` to LATEST, LatestOffsetsInitializer.java:44).
    pub offset_reset: OffsetReset,
}

/// A Kafka topic: producer, group client, the mirror, and the mock cluster if it is one.
pub struct KafkaTopic {
    settings: KafkaSettings,
    /// The broker list in use (the mock's own when `mock`).
    servers: String,
    partitions: u32,
    /// Said once when the broker's partition count differs from the configured one.
    note: Option<String>,
    mirror: Arc<Mirror>,
    producer: ThreadedProducer<Deliveries>,
    group: Detached<BaseConsumer<HealthContext>>,
    reconnects: Arc<Reconnects>,
    committed: Mutex<Vec<Option<u64>>>,
    /// What the broker has acknowledged to our producer.
    acks: Arc<Acks>,
    next: AtomicU32,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
    mirror_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The Kafka sink's output topic on this cluster (dropped before the mock cluster).
    output: crate::connectors::kafka_sink::output::OutputSlot,
    mock: Option<Mock>,
}
impl KafkaTopic {
    /// Connects (or starts the mock cluster), creating the topic when it is missing. A broker
    /// that does not answer is not an error: the topic starts with the configured partitions and
    /// says what is wrong through [`Topic::health`] until it answers.
    pub fn connect(settings: KafkaSettings, events: EventBus) -> Result<Arc<KafkaTopic>, TopicError> {
        let health = Arc::new(Health::new(events.clone()));
        let (mock, servers) = if settings.bootstrap == MOCK {
            let m = MockCluster::new(1).map_err(|e| unavailable("cannot start librdkafka's mock cluster", e))?;
            m.create_topic(&settings.topic, settings.partitions as i32, 1)
                .map_err(|e| unavailable(&format!("mock cluster: cannot create topic {}", settings.topic), e))?;
            let servers = m.bootstrap_servers();
            (Some(Mock(m)), servers)
        } else {
            (None, settings.bootstrap.clone())
        };
        let reconnects = Arc::new(Reconnects { epoch: AtomicU64::new(0), readers: Mutex::new(Vec::new()) });
        let ctx = || HealthContext::new(&health, &servers, &reconnects);
        let group: BaseConsumer<HealthContext> = consumer_config(&servers, &settings.group, MIRROR_FETCH_WAIT)
            .create_with_context(ctx())
            .map_err(|e| unavailable(&format!("kafka client for {servers}"), e))?;
        let mut note = None;
        let partitions = match partitions_on_broker(&group, &settings.topic) {
            Ok(Some(n)) => {
                if n != settings.partitions {
                    note = Some(format!(
                        "{} has {n} partitions on the broker (source.partitions = {} is not used)",
                        settings.topic, settings.partitions
                    ));
                }
                n
            }
            Ok(None) => {
                if let Err(e) = create_topic(&servers, &settings) {
                    health.set(Some(format!(
                        "topic {} does not exist on {servers} and could not be created ({e}): create it with kafka-topics --create --topic {} --partitions {}",
                        settings.topic, settings.topic, settings.partitions
                    )));
                }
                settings.partitions
            }
            Err(e) => {
                health.set(Some(unreachable(&servers, &e.to_string())));
                settings.partitions
            }
        };
        let acks = Arc::new(Acks {
            parts: Mutex::new(vec![AckedLog::default(); partitions as usize]),
            reconnects: reconnects.clone(),
            pending: AtomicU64::new(0),
        });
        let producer: ThreadedProducer<Deliveries> = client(&servers)
            // Never give up on a record: sent once the broker is back (no lost input).
            .set("message.timeout.ms", "0")
            .set("linger.ms", "0")
            // The topic is ckptlab's to create (at start, and by the mirror's check when a broker
            // came back without it), never the producer's metadata request's: a Tansu broker
            // restarted empty that auto-created the topic for a queued record while the check
            // created it too served that topic to no consumer (issue 20 §3: x and y acknowledged,
            // never mirrored). librdkafka's producer default is true (CONFIGURATION.md).
            .set("allow.auto.create.topics", "false")
            .create_with_context(Deliveries(acks.clone()))
            .map_err(|e| unavailable(&format!("kafka producer for {servers}"), e))?;
        let mirror = Arc::new(Mirror::new(partitions, events));
        let auditor_group = format!("{}-ckptlab-auditor", settings.group);
        let auditor =
            assigned_consumer(&servers, &auditor_group, MIRROR_FETCH_WAIT, ctx(), &settings.topic, (0..partitions).map(|p| (p, None)))
                .map_err(|e| unavailable(&format!("kafka auditor consumer for {servers}"), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            // Nothing read yet: the first consumer needs no check.
            let epoch = reconnects.epoch();
            mirror.checked.store(epoch, Ordering::Release);
            let mut run = MirrorRun {
                epoch,
                consumer: Some(Detached::new(auditor)),
                group: auditor_group,
                settings: settings.clone(),
                servers: servers.clone(),
                mirror: mirror.clone(),
                health: health.clone(),
                reconnects: reconnects.clone(),
                acks: acks.clone(),
                stop: stop.clone(),
                probe: None,
            };
            std::thread::Builder::new()
                .name("ckptlab-kafka-mirror".into())
                .spawn(move || run.run())
                .map_err(|e| unavailable("starting the mirror thread", e))?
        };
        Ok(Arc::new(KafkaTopic {
            committed: Mutex::new(vec![None; partitions as usize]),
            acks,
            settings,
            servers,
            partitions,
            note,
            mirror,
            producer,
            group: Detached::new(group),
            reconnects,
            next: AtomicU32::new(0),
            health,
            stop,
            mirror_thread: Mutex::new(Some(thread)),
            output: Default::default(),
            mock,
        }))
    }

    /// The broker list in use (the mock cluster's listeners for `mock`).
    pub fn bootstrap_servers(&self) -> &str {
        &self.servers
    }

    fn partition_list(&self, offsets: impl Iterator<Item = (u32, Offset)>) -> Option<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(&self.settings.topic, p as i32, o).ok()?;
        }
        Some(tpl)
    }
}

/// How long closing waits for librdkafka to hand back what the purge cancelled.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(200);

impl Drop for KafkaTopic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.mirror_thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        // Records still queued for a broker that is not there are dropped (the run is over and
        // reported): closing must not wait for them (librdkafka would retry them for ever).
        self.producer.purge(PurgeConfig::default().queue().inflight());
        let _ = self.producer.flush(CLOSE_TIMEOUT);
    }
}

impl Topic for KafkaTopic {
    fn name(&self) -> &str {
        &self.settings.topic
    }

    /// The output topic on this cluster, created when missing (one partition: the sink runs with
    /// parallelism 1).
    fn output_topic(
        &self,
        settings: &crate::connectors::kafka_sink::OutputTopicSettings,
        events: &EventBus,
    ) -> Result<Arc<crate::connectors::kafka_sink::OutputTopic>, crate::connectors::transactions::TxnError> {
        self.output.get_or_make(&settings.topic, || {
            match &self.mock {
                Some(m) => m.0.create_topic(&settings.topic, 1, 1).map_err(|e| {
                    crate::connectors::transactions::TxnError::Client(format!("mock cluster: cannot create topic {}: {e}", settings.topic))
                })?,
                None => {
                    let s = KafkaSettings { topic: settings.topic.clone(), partitions: 1, ..self.settings.clone() };
                    // An existing topic refuses the creation: that is fine, it is used as it is.
                    if let Err(e) = client::create_topic(&self.servers, &s) {
                        tracing::info!(topic = %settings.topic, error = %e, "output topic not created (it may exist)");
                    }
                }
            }
            Ok(crate::connectors::kafka_sink::OutputTopic::kafka(&self.servers, settings, events.clone()))
        })
    }

    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn len(&self, partition: u32) -> u64 {
        self.mirror.len(partition)
    }

    fn read(&self, partition: u32, from: u64, max: usize, out: &mut Vec<Arc<str>>) -> usize {
        let logs = self.mirror.logs.read().unwrap_or_else(|e| e.into_inner());
        let Some(log) = logs.get(partition as usize) else { return 0 };
        read_log(std::slice::from_ref(&log.values), 0, from, max, out)
    }

    fn produce(&self, value: &str, partition: Option<u32>) -> Result<(u32, u64), TopicError> {
        let deadline = Instant::now() + ACK_TIMEOUT;
        // Not checked in time (the broker is away): queued, as any record for an absent broker.
        self.await_check(deadline);
        let rx = self.send(value, partition)?;
        match self.acknowledgement(&rx, deadline) {
            Some(Ok(at)) => Ok(at),
            Some(Err(e)) => Err(TopicError::NotAcknowledged(format!("kafka {}: {value:?} not written: {e}", self.servers))),
            None => Err(TopicError::NotAcknowledged(format!(
                "kafka {} did not acknowledge {value:?} within {} s: it stays queued and is sent when the broker is back",
                self.servers,
                ACK_TIMEOUT.as_secs()
            ))),
        }
    }

    fn produce_many(&self, values: &[&str], partition: Option<u32>) -> Result<usize, TopicError> {
        // Send them all, then wait for the acknowledgements: one round trip, not one per record.
        let deadline = Instant::now() + ACK_TIMEOUT;
        self.await_check(deadline);
        let mut acks = Vec::with_capacity(values.len());
        for value in values {
            match self.send(value, partition) {
                Ok(rx) => acks.push(rx),
                Err(e) if acks.is_empty() => return Err(e),
                Err(_) => return Ok(acks.len()),
            }
        }
        for rx in &acks {
            match self.acknowledgement(rx, deadline) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(TopicError::NotAcknowledged(format!("kafka {}: {e}", self.servers))),
                // Queued: librdkafka sends them when the broker is back.
                None => {
                    return Err(TopicError::NotAcknowledged(format!(
                        "kafka {} did not acknowledge in time: records stay queued",
                        self.servers
                    )))
                }
            }
        }
        Ok(acks.len())
    }

    fn produce_may_block(&self) -> bool {
        true
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.mirror.version.subscribe()
    }

    fn reader(self: Arc<Self>, assignment: &[(u32, u64)]) -> Box<dyn TopicReader> {
        let parts =
            assignment.iter().map(|(p, i)| ReaderPartition { partition: *p, next: *i, restarts: 0, buffer: VecDeque::new() }).collect();
        let mut reader = KafkaReader { kafka: self, consumer: None, epoch: 0, parts };
        reader.connect();
        Box::new(reader)
    }

    fn log_start(&self, partition: u32) -> u64 {
        // Records of a log the broker lost are the auditor's only: `earliest` starts after them.
        self.mirror.log_start(partition)
    }

    fn end_offset(&self, partition: u32) -> u64 {
        // Known to be unreachable: do not make the JobManager wait for a timeout per partition.
        if self.health.unreachable() {
            return self.len(partition);
        }
        match self.group.fetch_watermarks(&self.settings.topic, partition as i32, QUERY_TIMEOUT) {
            // A commit marker at the end counts as a record here (the mirror cannot tell it from
            // records it has not read yet): at worst one record after it is not read.
            Ok((_, high)) => self.mirror.index_of(partition, high.max(0) as u64),
            Err(_) => self.len(partition),
        }
    }

    fn committed(&self) -> Vec<Option<u64>> {
        if self.health.unreachable() {
            return self.last_committed();
        }
        let Some(tpl) = self.partition_list((0..self.partitions).map(|p| (p, Offset::Invalid))) else { return Vec::new() };
        if let Ok(got) = self.group.committed_offsets(tpl, QUERY_TIMEOUT) {
            let mut c = self.committed.lock().unwrap_or_else(|e| e.into_inner());
            for e in got.elements() {
                if let (Some(slot), Offset::Offset(o)) = (c.get_mut(e.partition() as usize), e.offset()) {
                    *slot = Some(self.mirror.index_of(e.partition() as u32, o.max(0) as u64));
                }
            }
        }
        self.committed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn last_committed(&self) -> Vec<Option<u64>> {
        self.committed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn commit(&self, offsets: &[(u32, u64)]) {
        let at = offsets.iter().map(|(p, i)| (*p, Offset::Offset(self.mirror.offset_of(*p, *i) as i64)));
        let Some(tpl) = self.partition_list(at) else { return };
        if let Err(e) = self.group.commit(&tpl, CommitMode::Async) {
            tracing::warn!("kafka commit: {e}");
            return;
        }
        let mut c = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        for (p, o) in offsets {
            if let Some(slot) = c.get_mut(*p as usize) {
                *slot = Some(*o);
            }
        }
    }

    fn in_sync(&self) -> bool {
        // Kafka offsets on both sides: the acknowledgements are the broker's. Those of a log the
        // broker lost do not count; an acknowledgement of a log the mirror has not found yet
        // (the broker restarted) is not in sync. Nor is a check still to be made, nor a record
        // still queued in the producer: a broker that restarted empty acknowledges the queued
        // records only after the mirror found its new log, and until then the old acknowledgements
        // say nothing about what the topic will hold (issue 20: caught up with 400 records unread).
        if self.acks.pending() > 0 || self.mirror.checked.load(Ordering::Acquire) != self.reconnects.epoch() {
            return false;
        }
        (0..self.partitions).all(|p| {
            let acked = self.acks.get(p);
            let (restarts, next) = self.mirror.with(p, |l| (l.restarts, l.next_offset())).unwrap_or_default();
            acked.restarts < restarts || (acked.restarts == restarts && next >= acked.end)
        })
    }

    fn health(&self) -> Option<String> {
        self.health.get()
    }

    fn truth_lost(&self) -> Option<String> {
        self.health.truth()
    }

    fn describe(&self) -> String {
        let base = if self.mock.is_some() {
            format!("kafka mock cluster ({}), group {}", self.servers, self.settings.group)
        } else {
            format!("kafka {}, group {}", self.servers, self.settings.group)
        };
        match &self.note {
            Some(n) => format!("{base}; {n}"),
            None => base,
        }
    }
}
