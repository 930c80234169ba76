//! The Kafka sink's output topic as the job sees it from outside: on the broker that holds the
//! input topic (the embedded one, or the Kafka cluster of `--kafka`), made on first use and kept
//! as long as that broker, so that its transactions outlive the job's attempts as a broker's do.
//!
//! It hands each sink producers with that sink's properties ([`OutputTopic::producers`]: jobs
//! one after another on one broker, as `ckptlab bench --sinks` runs them, each have their own
//! `transaction.timeout.ms`, a producer's property in Kafka), keeps what the sink's committer could
//! not commit (the losses the verdict names), drives the embedded coordinator's clock on a timer
//! (its abort of timed-out transactions shows in the events pane), and reads the topic back as
//! two consumers would: `isolation.level = read_committed` and `read_uncommitted`.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;

use super::readers::{OutputReaders, ReadFrom, ReadersView, POLL};
use super::{CommitOutcome, KafkaCommittable, LossCause};
use crate::connectors::kafka::transactional::{OutputReader, RdKafkaProducers};
use crate::connectors::transactions::{
    BrokerSettings, EmbeddedProducers, Fate, IsolationLevel, ProducerFactory, ProducerIdAndEpoch, ReadRecord, TransactionalLog, TxnError,
    TxnEvent,
};
use crate::events::{Event, EventBus};

/// How often the embedded coordinator's clock is moved on (it looks for timed-out transactions
/// every `transaction.abort.timed.out.transaction.cleanup.interval.ms` of that clock).
const TICK: Duration = Duration::from_millis(200);
/// Records the embedded producer queues before they reach the log: none, so that a
/// read_uncommitted reader sees each line at once (the Java client sends within `linger.ms`,
/// 0 to 5 ms by Kafka's versions).
const EMBEDDED_LINGER: usize = 0;
/// How long a read of a Kafka output topic waits for records to arrive.
const KAFKA_POLL: Duration = Duration::from_millis(50);

/// What the output topic is made with (`sink.output-topic`, `sink.properties.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTopicSettings {
    pub topic: String,
    /// `transaction.timeout.ms` of the producers.
    pub transaction_timeout: Duration,
    /// Every `sink.properties.*`, given to librdkafka's producers as they are.
    pub properties: Vec<(String, String)>,
}

impl OutputTopicSettings {
    pub fn of(c: &crate::config::KafkaSinkConfig) -> Self {
        OutputTopicSettings { topic: c.output_topic.clone(), transaction_timeout: c.transaction_timeout, properties: c.properties.clone() }
    }
}

/// A transaction whose lines will never be visible at read_committed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LostTransaction {
    pub transactional_id: String,
    pub producer: ProducerIdAndEpoch,
    pub checkpoint: u64,
    pub records: u64,
    pub cause: String,
    /// The coordinator aborted it on its timeout.
    pub timed_out: bool,
    /// The committer found it lost at a restore (the job was down meanwhile).
    pub during_recovery: bool,
    /// Flink's and ckptlab's words for it ("output lost: transaction timed out while the job was down ...").
    pub message: String,
}

enum Broker {
    Embedded(Arc<TransactionalLog>),
    /// `producers`: the topic's librdkafka producers, whose pool of open transactions every
    /// sink on this broker shares (a librdkafka instance cannot resume another's transaction).
    Kafka { readers: Mutex<KafkaReaders>, servers: String, producers: RdKafkaProducers },
}

#[derive(Default)]
struct KafkaReaders {
    committed: Option<OutputReader>,
    uncommitted: Option<OutputReader>,
    seen_committed: Vec<ReadRecord>,
    seen_uncommitted: Vec<ReadRecord>,
}

/// The output topic of the Kafka sink.
pub struct OutputTopic {
    name: String,
    partitions: u32,
    broker: Broker,
    events: EventBus,
    /// Producers (id and epoch) of transactions the embedded coordinator aborted on their timeout.
    timed_out: Mutex<Vec<TxnEvent>>,
    lost: Mutex<Vec<LostTransaction>>,
    /// The read_committed and read_uncommitted consumers of the output pane.
    readers: Arc<OutputReaders>,
}

impl std::fmt::Debug for OutputTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputTopic").field("name", &self.name).field("embedded", &self.is_embedded()).finish()
    }
}

/// Runs a blocking producer call (librdkafka's init, flush, commit wait on the broker) without
/// holding a runtime worker where there are others to hand its tasks to.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl OutputTopic {
    /// The output topic on the embedded broker (Kafka's broker defaults: `transaction.max.timeout.ms`
    /// 15 min, a look for timed-out transactions every 10 s). Inside a tokio runtime its
    /// coordinator's clock runs on a timer from now.
    pub fn embedded(settings: &OutputTopicSettings, events: EventBus) -> Arc<Self> {
        let log = Arc::new(TransactionalLog::new(BrokerSettings::default()));
        let topic = Arc::new(OutputTopic {
            name: settings.topic.clone(),
            partitions: 1,
            broker: Broker::Embedded(log),
            events,
            timed_out: Mutex::default(),
            lost: Mutex::default(),
            readers: Arc::default(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(drive_clock(Arc::downgrade(&topic)));
        }
        topic
    }

    /// The output topic on a Kafka cluster (`servers`), through librdkafka.
    pub fn kafka(servers: &str, settings: &OutputTopicSettings, events: EventBus) -> Arc<Self> {
        let producers = RdKafkaProducers::new(servers, &settings.topic, 1, settings.transaction_timeout, settings.properties.clone());
        Arc::new(OutputTopic {
            name: settings.topic.clone(),
            partitions: 1,
            broker: Broker::Kafka { readers: Mutex::default(), servers: servers.to_owned(), producers },
            events,
            timed_out: Mutex::default(),
            lost: Mutex::default(),
            readers: Arc::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The engine's clock (ms since it started), which the readers stamp lines with.
    pub fn now_ms(&self) -> u64 {
        self.events.now_ms()
    }

    /// What the read_committed and read_uncommitted readers have seen; their poller starts on
    /// the first call (inside a tokio runtime).
    pub fn readers_view(self: &Arc<Self>) -> ReadersView {
        if self.readers.start() && tokio::runtime::Handle::try_current().is_ok() {
            // The embedded broker answers at once; a Kafka reader's first poll waits on the
            // network, which the view must not (it holds the JobManager's snapshot lock).
            if self.is_embedded() {
                self.poll_readers();
                tokio::spawn(poll_readers(Arc::downgrade(self)));
            } else {
                poll_kafka_readers(Arc::downgrade(self));
            }
        }
        self.readers.view(self.name())
    }

    /// One poll of the two readers.
    fn poll_readers(&self) {
        let now = self.now_ms();
        match &self.broker {
            Broker::Embedded(log) => self.readers.poll(now, ReadFrom::Embedded(log)),
            Broker::Kafka { .. } => self.readers.poll(now, ReadFrom::Kafka(&|isolation| self.read(isolation))),
        }
    }

    /// The Kafka cluster's bootstrap servers (`None`: the embedded broker).
    pub fn servers(&self) -> Option<&str> {
        match &self.broker {
            Broker::Embedded(_) => None,
            Broker::Kafka { servers, .. } => Some(servers),
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self.broker, Broker::Embedded(_))
    }

    /// The embedded broker's log (tests, the verdict).
    pub fn embedded_log(&self) -> Option<&Arc<TransactionalLog>> {
        match &self.broker {
            Broker::Embedded(log) => Some(log),
            Broker::Kafka { .. } => None,
        }
    }

    /// Producers of this topic with a sink's `settings` (`transaction.timeout.ms` and the other
    /// `sink.properties.*`): a producer's properties are its own, not the topic's
    /// (KafkaSinkBuilder.java:110-127 keeps them in the sink, ExactlyOnceKafkaWriter.java:171-177
    /// makes every producer of the writer with them), so a job
    /// that writes after another on this broker uses its own, not the first one's.
    pub fn producers(&self, settings: &OutputTopicSettings) -> Arc<dyn ProducerFactory> {
        match &self.broker {
            Broker::Embedded(log) => {
                Arc::new(EmbeddedProducers { log: log.clone(), timeout: settings.transaction_timeout, linger: EMBEDDED_LINGER })
            }
            Broker::Kafka { producers, .. } => Arc::new(producers.with_properties(settings.transaction_timeout, settings.properties.clone())),
        }
    }

    /// Moves the embedded coordinator's clock to `now` (since the topic was made): what it aborted
    /// on the timeout is kept for the verdict and published.
    pub fn tick(&self, now: Duration) {
        let Broker::Embedded(log) = &self.broker else { return };
        log.tick(now);
        for e in log.take_events() {
            match &e {
                TxnEvent::AbortedOnTimeout { transactional_id, open_for, timeout, .. } => {
                    self.events.publish(Event::OutputTransactionAborted {
                        transactional_id: transactional_id.clone(),
                        reason: e.to_string(),
                        open_ms: open_for.as_millis() as u64,
                        timeout_ms: timeout.as_millis() as u64,
                    });
                    lock(&self.timed_out).push(e);
                }
                TxnEvent::Fenced { transactional_id, aborted_open: true, .. } => {
                    self.events.publish(Event::OutputTransactionAborted {
                        transactional_id: transactional_id.clone(),
                        reason: e.to_string(),
                        open_ms: 0,
                        timeout_ms: 0,
                    });
                }
                TxnEvent::Fenced { .. } | TxnEvent::Ended { .. } => {}
            }
        }
    }

    /// Transactions the coordinator aborted on their timeout, as (transactional id, producer).
    pub fn timed_out(&self) -> Vec<(String, ProducerIdAndEpoch)> {
        lock(&self.timed_out)
            .iter()
            .filter_map(|e| match e {
                TxnEvent::AbortedOnTimeout { transactional_id, producer, .. } => Some((transactional_id.clone(), *producer)),
                _ => None,
            })
            .collect()
    }

    /// The committer could not commit `c`: its lines are lost from read_committed. Published,
    /// and kept for the verdict.
    pub fn record_loss(&self, outcome: &CommitOutcome) {
        let CommitOutcome::Lost { committable: c, cause, during_recovery, .. } = outcome else { return };
        let lost = lost_transaction(c, *cause, *during_recovery, outcome.to_string());
        self.events.publish(Event::OutputLost {
            transactional_id: c.transactional_id.clone(),
            checkpoint: c.checkpoint,
            lines: c.records,
            message: lost.message.clone(),
        });
        lock(&self.lost).push(lost);
    }

    pub fn losses(&self) -> Vec<LostTransaction> {
        lock(&self.lost).clone()
    }

    /// Every record of the topic as a reader at `isolation` has them now, in partition and offset
    /// order. The embedded broker tells each record's fate; a Kafka reader cannot (`Open` at
    /// read_uncommitted, `Committed` at read_committed).
    pub fn read(&self, isolation: IsolationLevel) -> Result<Vec<ReadRecord>, TxnError> {
        match &self.broker {
            Broker::Embedded(log) => {
                let mut out = Vec::new();
                for p in 0..self.partitions {
                    out.extend(log.read(p, 0, isolation, usize::MAX)?.records);
                }
                Ok(out)
            }
            Broker::Kafka { readers, servers, .. } => {
                let mut r = lock(readers);
                let KafkaReaders { committed, uncommitted, seen_committed, seen_uncommitted } = &mut *r;
                let (reader, seen) = match isolation {
                    IsolationLevel::ReadCommitted => (committed, seen_committed),
                    IsolationLevel::ReadUncommitted => (uncommitted, seen_uncommitted),
                };
                if reader.is_none() {
                    *reader = Some(
                        OutputReader::new(servers, &self.name, self.partitions, isolation).map_err(|e| TxnError::Client(e.to_string()))?,
                    );
                }
                let got = blocking(|| reader.as_ref().map(|r| r.poll(KAFKA_POLL))).unwrap_or_else(|| Ok(Vec::new()));
                seen.extend(got.map_err(|e| TxnError::Client(e.to_string()))?);
                Ok(seen.clone())
            }
        }
    }

    /// Reads until nothing new arrives for `quiet` (a Kafka topic; the embedded one at once).
    pub fn read_settled(&self, isolation: IsolationLevel, quiet: Duration) -> Result<Vec<ReadRecord>, TxnError> {
        let mut last = self.read(isolation)?;
        if self.is_embedded() {
            return Ok(last);
        }
        let mut since = std::time::Instant::now();
        let deadline = since + quiet * 20;
        while since.elapsed() < quiet && std::time::Instant::now() < deadline {
            let now = self.read(isolation)?;
            if now.len() != last.len() {
                since = std::time::Instant::now();
            }
            last = now;
        }
        Ok(last)
    }
}

fn lost_transaction(c: &KafkaCommittable, cause: LossCause, during_recovery: bool, message: String) -> LostTransaction {
    LostTransaction {
        transactional_id: c.transactional_id.clone(),
        producer: c.producer,
        checkpoint: c.checkpoint,
        records: c.records,
        cause: cause.to_string(),
        timed_out: cause == LossCause::TimedOut,
        during_recovery,
        message,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The embedded coordinator's clock: the time since the topic was made, moved every [`TICK`]
/// until the topic is gone.
async fn drive_clock(topic: Weak<OutputTopic>) {
    let start = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        let Some(t) = topic.upgrade() else { return };
        t.tick(start.elapsed());
    }
}

/// The readers' poller: a poll every [`POLL`] until the topic is gone.
async fn poll_readers(topic: Weak<OutputTopic>) {
    loop {
        tokio::time::sleep(POLL).await;
        let Some(t) = topic.upgrade() else { return };
        blocking(|| t.poll_readers());
    }
}

/// The readers' poller on a Kafka broker: a thread of its own, not a runtime task. A poll waits
/// on the network (a broker that is not there: librdkafka's timeouts), and a task that came back
/// from it to a runtime shutting down panicked on its next sleep ("A Tokio 1.x context was found,
/// but it is being shutdown"; tests/it/kafka.rs, an_unreachable_or_silent_broker_...).
fn poll_kafka_readers(topic: Weak<OutputTopic>) {
    let spawned = std::thread::Builder::new().name("ckptlab-output-readers".into()).spawn(move || loop {
        std::thread::sleep(POLL);
        let Some(t) = topic.upgrade() else { return };
        t.poll_readers();
    });
    // No thread: the pane's readers stay empty, the verdict reads the topic itself.
    drop(spawned);
}

/// Whether a record read at read_uncommitted was aborted (the embedded broker says so; a Kafka
/// reader's records are compared with read_committed's by the verdict instead).
pub fn is_aborted(r: &ReadRecord) -> bool {
    r.fate == Fate::Aborted
}

/// A broker's output topics by name: each made on first use, then the same one (two jobs that
/// name two topics, as compared sides do, write two topics; one name is one topic).
#[derive(Default)]
pub struct OutputSlot(Mutex<std::collections::HashMap<String, Arc<OutputTopic>>>);

impl OutputSlot {
    pub fn get_or_make(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<Arc<OutputTopic>, TxnError>,
    ) -> Result<Arc<OutputTopic>, TxnError> {
        let mut slots = lock(&self.0);
        if let Some(t) = slots.get(name) {
            return Ok(t.clone());
        }
        let t = make()?;
        slots.insert(name.to_string(), t.clone());
        Ok(t)
    }
}

/// The output pane's two readers of the Kafka sink's output topic (`None` for the other sinks,
/// or when the topic cannot be had).
pub fn readers_of(topic: &dyn crate::connectors::Topic, cfg: &crate::config::Config, events: &EventBus) -> Option<ReadersView> {
    if cfg.job.sink != crate::config::SinkKind::Kafka {
        return None;
    }
    let output = topic.output_topic(&OutputTopicSettings::of(&cfg.job.kafka_sink), events).ok()?;
    Some(output.readers_view())
}
