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
//!   librdkafka reconnects with backoff, and nothing panics.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::topic::{choose_partition, read_log, Topic, TopicError, TopicReader};
use crate::events::{Event, EventBus};

/// `bootstrap-servers` value that starts librdkafka's mock cluster.
pub const MOCK: &str = "mock";
/// How long metadata and offset queries may take before the broker counts as unreachable.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a produce call waits for the broker's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the mirror waits in one poll (also how fast it notices it should stop).
const MIRROR_POLL: Duration = Duration::from_millis(100);
/// Messages a reader takes off its consumer's queue per read.
const READ_DRAIN: usize = 4096;

/// The `[source]` options the Kafka topic needs.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// A broker list, or `mock`.
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    /// Partitions to create the topic with when it does not exist (a mock's, or a real broker's).
    pub partitions: u32,
}

/// What is wrong with the topic now; changes are published as events.
struct Health {
    status: Mutex<Option<String>>,
    events: EventBus,
}

impl Health {
    /// Stores the status; an event only when the kind of problem changes (the text before its
    /// parenthesis), not for every new reason librdkafka gives for the same outage.
    fn set(&self, status: Option<String>) {
        let kind = |s: &Option<String>| s.as_deref().map(|t| t.split('(').next().unwrap_or_default().to_string());
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let changed = kind(&s) != kind(&status);
        s.clone_from(&status);
        drop(s);
        if changed {
            self.events.publish(Event::TopicStatus { message: status });
        }
    }

    fn get(&self) -> Option<String> {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reports librdkafka's client errors (all brokers down, transport failures) as the topic's health.
struct HealthContext {
    health: Arc<Health>,
    servers: String,
}

impl ClientContext for HealthContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!("kafka {}: {error}: {reason}", self.servers);
        self.health.set(Some(unreachable(&self.servers, &format!("{error}: {reason}"))));
    }
}

impl ConsumerContext for HealthContext {}

fn unreachable(servers: &str, why: &str) -> String {
    format!(
        "Kafka at {servers} unreachable ({why}): start the broker (or use --kafka mock); ckptlab retries, and typed records are sent once it is back"
    )
}

type Ack = std::sync::mpsc::SyncSender<Result<(i32, i64), String>>;
type AckRx = std::sync::mpsc::Receiver<Result<(i32, i64), String>>;

/// A message's payload as a record value (the topic carries text, as the seed's).
fn value_of(m: &impl Message) -> Arc<str> {
    Arc::from(String::from_utf8_lossy(m.payload().unwrap_or_default()).as_ref())
}

/// Hands each delivery report back to the call that produced the record.
struct Deliveries;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Ack>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Self::DeliveryOpaque) {
        let _ = ack.try_send(match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        });
    }
}

/// librdkafka's mock cluster.
struct Mock(MockCluster<'static, DefaultProducerContext>);

// SAFETY: the mock cluster is driven by its own librdkafka thread; the `rd_kafka_mock_*` calls
// the handle makes (broker up/down, topic creation) are handed to that thread and are safe from
// any thread. The handle is only dropped with the topic.
unsafe impl Send for Mock {}
unsafe impl Sync for Mock {}

/// The in-memory copy of the topic that the mirror consumer keeps (the auditor's view).
struct Mirror {
    logs: RwLock<Vec<Vec<Arc<str>>>>,
    version: watch::Sender<u64>,
    events: EventBus,
}

impl Mirror {
    fn append(&self, partition: u32, offset: u64, value: Arc<str>) {
        let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
        let Some(log) = logs.get_mut(partition as usize) else { return };
        if offset < log.len() as u64 {
            return; // seen already (a reconnect re-fetched it)
        }
        log.push(value.clone());
        drop(logs);
        self.version.send_modify(|v| *v += 1);
        self.events.publish(Event::RecordProduced { partition, offset, value: value.to_string() });
    }
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
    group: BaseConsumer<HealthContext>,
    committed: Mutex<Vec<Option<u64>>>,
    /// Per partition, the end offset the broker has acknowledged to our producer.
    acked: Mutex<Vec<u64>>,
    next: AtomicU32,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
    mirror_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    mock: Option<Mock>,
}

fn client(servers: &str) -> ClientConfig {
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
/// consumer sends a fetch that often (CPU while nothing happens).
fn consumer_config(servers: &str, group: &str, fetch_wait: Duration) -> ClientConfig {
    let mut c = client(servers);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", fetch_wait.as_millis().to_string());
    c
}

/// Sources are assigned anew on every restore, and librdkafka's mock cluster answers an empty
/// fetch only when this runs out: it bounds recovery and, on the mock, latency.
const SOURCE_FETCH_WAIT: Duration = Duration::from_millis(100);
/// The auditor's mirror: the same, so that the verdict follows within a fetch.
const MIRROR_FETCH_WAIT: Duration = Duration::from_millis(100);
/// How often an idle source looks at its consumer's queue (no network: fetching is librdkafka's).
const SOURCE_POLL: Duration = Duration::from_millis(10);

fn unavailable(what: &str, e: impl std::fmt::Display) -> TopicError {
    TopicError::Unavailable(format!("{what}: {e}"))
}

/// The topic's partition count on the broker; `Ok(None)` when it does not exist.
fn partitions_on_broker(c: &BaseConsumer<HealthContext>, topic: &str) -> Result<Option<u32>, KafkaError> {
    let md = c.fetch_metadata(Some(topic), QUERY_TIMEOUT)?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as u32))
}

impl KafkaTopic {
    /// Connects (or starts the mock cluster), creating the topic when it is missing. A broker
    /// that does not answer is not an error: the topic starts with the configured partitions and
    /// says what is wrong through [`Topic::health`] until it answers.
    pub fn connect(settings: KafkaSettings, events: EventBus) -> Result<Arc<KafkaTopic>, TopicError> {
        let health = Arc::new(Health { status: Mutex::new(None), events: events.clone() });
        let (mock, servers) = if settings.bootstrap == MOCK {
            let m = MockCluster::new(1).map_err(|e| unavailable("cannot start librdkafka's mock cluster", e))?;
            m.create_topic(&settings.topic, settings.partitions as i32, 1)
                .map_err(|e| unavailable(&format!("mock cluster: cannot create topic {}", settings.topic), e))?;
            let servers = m.bootstrap_servers();
            (Some(Mock(m)), servers)
        } else {
            (None, settings.bootstrap.clone())
        };
        let ctx = || HealthContext { health: health.clone(), servers: servers.clone() };
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
        let producer: ThreadedProducer<Deliveries> = client(&servers)
            // Never give up on a record: sent once the broker is back (no lost input).
            .set("message.timeout.ms", "0")
            .set("linger.ms", "0")
            .create_with_context(Deliveries)
            .map_err(|e| unavailable(&format!("kafka producer for {servers}"), e))?;
        let mirror = Arc::new(Mirror { logs: RwLock::new(vec![Vec::new(); partitions as usize]), version: watch::channel(0).0, events });
        let auditor: BaseConsumer<HealthContext> =
            consumer_config(&servers, &format!("{}-ckptlab-auditor", settings.group), MIRROR_FETCH_WAIT)
                .create_with_context(ctx())
                .map_err(|e| unavailable(&format!("kafka auditor consumer for {servers}"), e))?;
        let mut all = TopicPartitionList::new();
        for p in 0..partitions {
            all.add_partition_offset(&settings.topic, p as i32, Offset::Beginning).map_err(|e| unavailable("partition list", e))?;
        }
        auditor.assign(&all).map_err(|e| unavailable("assigning the auditor's consumer", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (mirror, health, stop, topic, servers) =
                (mirror.clone(), health.clone(), stop.clone(), settings.topic.clone(), servers.clone());
            std::thread::Builder::new()
                .name("ckptlab-kafka-mirror".into())
                .spawn(move || run_mirror(auditor, &topic, &servers, &mirror, &health, &stop))
                .map_err(|e| unavailable("starting the mirror thread", e))?
        };
        Ok(Arc::new(KafkaTopic {
            committed: Mutex::new(vec![None; partitions as usize]),
            acked: Mutex::new(vec![0; partitions as usize]),
            settings,
            servers,
            partitions,
            note,
            mirror,
            producer,
            group,
            next: AtomicU32::new(0),
            health,
            stop,
            mirror_thread: Mutex::new(Some(thread)),
            mock,
        }))
    }

    /// The broker list in use (the mock cluster's listeners for `mock`).
    pub fn bootstrap_servers(&self) -> &str {
        &self.servers
    }

    /// Takes the mock cluster's broker down (`false`) or up again (`true`): a broker failure
    /// for tests and demos. An error for a real broker.
    pub fn set_mock_broker(&self, up: bool) -> Result<(), String> {
        let Some(m) = &self.mock else { return Err("not a mock cluster".into()) };
        let r = if up { m.0.broker_up(1) } else { m.0.broker_down(1) };
        r.map_err(|e| e.to_string())
    }

    fn acknowledged(&self, partition: i32, offset: i64) {
        let mut a = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(end) = a.get_mut(partition.max(0) as usize) {
            *end = (*end).max(offset.max(0) as u64 + 1);
        }
    }

    /// Hands a record to the producer; its delivery report arrives on the returned receiver.
    fn send(&self, value: &str, partition: Option<u32>) -> Result<AckRx, TopicError> {
        let p = choose_partition(&self.settings.topic, partition, self.partitions, &self.next)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let record = BaseRecord::<(), str, Box<Ack>>::with_opaque_to(&self.settings.topic, Box::new(tx)).payload(value).partition(p as i32);
        self.producer
            .send(record)
            .map_err(|(e, _)| TopicError::NotAcknowledged(format!("kafka {}: {value:?} not sent: {e}", self.servers)))?;
        Ok(rx)
    }

    /// The delivery report, waited for until `deadline`: where the record landed, or the
    /// broker's error; `None` when it did not come in time (the record stays queued).
    fn acknowledgement(&self, rx: &AckRx, deadline: Instant) -> Option<Result<(u32, u64), String>> {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok((p, o))) => {
                self.acknowledged(p, o);
                Some(Ok((p as u32, o.max(0) as u64)))
            }
            Ok(Err(e)) => Some(Err(e)),
            Err(_) => None,
        }
    }

    fn partition_list(&self, offsets: impl Iterator<Item = (u32, Offset)>) -> Option<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(&self.settings.topic, p as i32, o).ok()?;
        }
        Some(tpl)
    }
}

fn create_topic(servers: &str, s: &KafkaSettings) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client(servers).create().map_err(|e| e.to_string())?;
    let topic = NewTopic::new(&s.topic, s.partitions as i32, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(QUERY_TIMEOUT)).request_timeout(Some(QUERY_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics([&topic], &opts)).map_err(|e| e.to_string())?;
    for r in results {
        if let Err((_, code)) = r {
            return Err(code.to_string());
        }
    }
    Ok(())
}

/// The auditor's own consumer: copies every record of every partition into the mirror.
fn run_mirror(consumer: BaseConsumer<HealthContext>, topic: &str, servers: &str, mirror: &Mirror, health: &Health, stop: &AtomicBool) {
    let mut last_check = Instant::now();
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(MIRROR_POLL) {
            Some(Ok(m)) => {
                mirror.append(m.partition() as u32, m.offset().max(0) as u64, value_of(&m));
                if health.get().is_some_and(|h| h.starts_with("Kafka at")) {
                    health.set(None);
                }
            }
            Some(Err(e)) => {
                tracing::warn!("kafka mirror: {e}");
                health.set(Some(unreachable(servers, &e.to_string())));
            }
            None => {
                // Nothing to read: when something was wrong, ask the broker whether it is back.
                if health.get().is_some() && last_check.elapsed() > Duration::from_secs(1) {
                    last_check = Instant::now();
                    if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_millis(500)) {
                        if md.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()) {
                            health.set(None);
                        }
                    }
                }
            }
        }
    }
}

impl Drop for KafkaTopic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.mirror_thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Topic for KafkaTopic {
    fn name(&self) -> &str {
        &self.settings.topic
    }

    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn len(&self, partition: u32) -> u64 {
        let logs = self.mirror.logs.read().unwrap_or_else(|e| e.into_inner());
        logs.get(partition as usize).map_or(0, |l| l.len() as u64)
    }

    fn read(&self, partition: u32, from: u64, max: usize, out: &mut Vec<Arc<str>>) -> usize {
        read_log(&self.mirror.logs.read().unwrap_or_else(|e| e.into_inner()), partition, from, max, out)
    }

    fn produce(&self, value: &str, partition: Option<u32>) -> Result<(u32, u64), TopicError> {
        let rx = self.send(value, partition)?;
        match self.acknowledgement(&rx, Instant::now() + ACK_TIMEOUT) {
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
        let mut acks = Vec::with_capacity(values.len());
        for value in values {
            match self.send(value, partition) {
                Ok(rx) => acks.push(rx),
                Err(e) if acks.is_empty() => return Err(e),
                Err(_) => return Ok(acks.len()),
            }
        }
        let deadline = Instant::now() + ACK_TIMEOUT;
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
        let consumer: Result<BaseConsumer<HealthContext>, KafkaError> =
            consumer_config(&self.servers, &self.settings.group, SOURCE_FETCH_WAIT)
                .create_with_context(HealthContext { health: self.health.clone(), servers: self.servers.clone() });
        let assigned = consumer.and_then(|c| {
            let tpl = self.partition_list(assignment.iter().map(|(p, o)| (*p, Offset::Offset(*o as i64)))).ok_or(KafkaError::Canceled)?;
            c.assign(&tpl)?;
            Ok(c)
        });
        match assigned {
            Ok(consumer) => Box::new(KafkaReader {
                consumer,
                buffers: vec![VecDeque::new(); self.partitions as usize],
                health: self.health.clone(),
                topic: self.settings.topic.clone(),
            }),
            Err(e) => {
                self.health.set(Some(format!("kafka {}: cannot create a source consumer: {e}", self.servers)));
                Box::new(NoReader)
            }
        }
    }

    fn end_offset(&self, partition: u32) -> u64 {
        // Known to be unreachable: do not make the JobManager wait for a timeout per partition.
        if self.health.get().is_some() {
            return self.len(partition);
        }
        match self.group.fetch_watermarks(&self.settings.topic, partition as i32, QUERY_TIMEOUT) {
            Ok((_, high)) => high.max(0) as u64,
            Err(_) => self.len(partition),
        }
    }

    fn committed(&self) -> Vec<Option<u64>> {
        if self.health.get().is_some() {
            return self.last_committed();
        }
        let Some(tpl) = self.partition_list((0..self.partitions).map(|p| (p, Offset::Invalid))) else { return Vec::new() };
        if let Ok(got) = self.group.committed_offsets(tpl, QUERY_TIMEOUT) {
            let mut c = self.committed.lock().unwrap_or_else(|e| e.into_inner());
            for e in got.elements() {
                if let (Some(slot), Offset::Offset(o)) = (c.get_mut(e.partition() as usize), e.offset()) {
                    *slot = Some(o.max(0) as u64);
                }
            }
        }
        self.committed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn last_committed(&self) -> Vec<Option<u64>> {
        self.committed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn commit(&self, offsets: &[(u32, u64)]) {
        let Some(tpl) = self.partition_list(offsets.iter().map(|(p, o)| (*p, Offset::Offset(*o as i64)))) else { return };
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
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
        acked.iter().enumerate().all(|(p, end)| self.len(p as u32) >= *end)
    }

    fn health(&self) -> Option<String> {
        self.health.get()
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

/// A source subtask's consumer: messages arrive from any of its partitions; they wait per
/// partition until the source asks for that partition.
struct KafkaReader {
    consumer: BaseConsumer<HealthContext>,
    buffers: Vec<VecDeque<(u64, Arc<str>)>>,
    health: Arc<Health>,
    topic: String,
}

impl TopicReader for KafkaReader {
    fn poll_interval(&self) -> Option<Duration> {
        Some(SOURCE_POLL)
    }

    fn read(&mut self, partition: u32, from: u64, max: usize, out: &mut Vec<Arc<str>>) -> usize {
        for _ in 0..READ_DRAIN {
            match self.consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => {
                    if let Some(b) = self.buffers.get_mut(m.partition() as usize) {
                        b.push_back((m.offset().max(0) as u64, value_of(&m)));
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!("kafka source consumer: {e}");
                    break;
                }
                None => break,
            }
        }
        let Some(buf) = self.buffers.get_mut(partition as usize) else { return 0 };
        while buf.front().is_some_and(|(o, _)| *o < from) {
            buf.pop_front();
        }
        let mut n = 0;
        while n < max {
            match buf.front() {
                Some((o, _)) if *o == from + n as u64 => {
                    if let Some((_, v)) = buf.pop_front() {
                        out.push(v);
                    }
                    n += 1;
                }
                _ => break,
            }
        }
        if let (0, Some((next, _))) = (n, buf.front()) {
            // The broker no longer has `from` (deleted by retention): say so instead of waiting.
            self.health.set(Some(format!(
                "{} partition {partition} no longer holds offset {from} (deleted by retention; the next is {next}): this source cannot go on; start from a newer checkpoint or offset",
                self.topic
            )));
        }
        n
    }
}

/// A source whose consumer could not be created reads nothing (the topic's health says why).
struct NoReader;

impl TopicReader for NoReader {
    fn read(&mut self, _: u32, _: u64, _: usize, _: &mut Vec<Arc<str>>) -> usize {
        0
    }
}
