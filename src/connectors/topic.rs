//! A Kafka-style topic: partitioned, append-only logs addressed by (partition, offset).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;
use tokio::sync::watch;

use crate::events::{Event, EventBus};

mod id_log;
use id_log::IdLog;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TopicError {
    #[error("topic {topic} has partitions 0..{partitions}; there is no partition {partition}")]
    NoSuchPartition { topic: String, partition: u32, partitions: u32 },
    /// The broker did not acknowledge in time; the record stays queued and is sent when it can be.
    #[error("{0}")]
    NotAcknowledged(String),
    /// The topic cannot be used at all (the client could not be created).
    #[error("{0}")]
    Unavailable(String),
}

/// Reads one source subtask's partitions, from the offsets it was assigned.
pub trait TopicReader: Send {
    /// Appends records of `partition` from offset `from`, up to `max`, into `out`; returns how many.
    fn read(&mut self, partition: u32, from: u64, max: usize, out: &mut Vec<Arc<str>>) -> usize;
    /// How often an idle source should look again: `None` when the topic's change notification
    /// says everything (embedded); a Kafka consumer receives records the topic does not announce.
    fn poll_interval(&self) -> Option<std::time::Duration> {
        None
    }
    /// Where a source at `from` goes on when the topic no longer has that record because the
    /// broker lost it (restarted empty, topic recreated): Kafka's OFFSET_OUT_OF_RANGE, resolved by
    /// `auto.offset.reset` as Flink's KafkaSource does. `None` while `from` can still be read.
    /// The records skipped are the auditor's to count (`lost_by_broker`).
    fn reset(&mut self, _partition: u32, _from: u64) -> Option<u64> {
        None
    }
}

/// The embedded topic's reader: the log itself.
struct LogReader(Arc<EmbeddedTopic>);

impl TopicReader for LogReader {
    fn read(&mut self, partition: u32, from: u64, max: usize, out: &mut Vec<Arc<str>>) -> usize {
        self.0.read(partition, from, max, out)
    }
}

/// What sources read, producers write and the auditor checks against.
pub trait Topic: Send + Sync {
    fn name(&self) -> &str;
    fn partitions(&self) -> u32;
    /// Records in a partition (its end offset).
    fn len(&self, partition: u32) -> u64;
    /// Appends `values` from `from` up to `max` records into `out`; returns how many.
    fn read(&self, partition: u32, from: u64, max: usize, out: &mut Vec<Arc<str>>) -> usize;
    /// Appends a record; keyless records go round-robin over partitions, as kafka-console-producer.
    fn produce(&self, value: &str, partition: Option<u32>) -> Result<(u32, u64), TopicError>;
    /// Appends several records; returns how many were written (a generator's tick).
    fn produce_many(&self, values: &[&str], partition: Option<u32>) -> Result<usize, TopicError> {
        for (i, v) in values.iter().enumerate() {
            if let Err(e) = self.produce(v, partition) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(values.len())
    }
    /// Whether producing waits on the network (then callers keep it off the async runtime).
    fn produce_may_block(&self) -> bool {
        false
    }
    /// A version number that changes whenever records are appended.
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// A reader for a source subtask assigned `assignment` ((partition, first offset) pairs):
    /// for Kafka its own consumer, assigned explicitly (no group rebalancing), as Flink's source.
    fn reader(self: Arc<Self>, assignment: &[(u32, u64)]) -> Box<dyn TopicReader>;
    /// Where `auto.offset.reset = latest` starts: the partition's end now.
    fn end_offset(&self, partition: u32) -> u64 {
        self.len(partition)
    }
    /// The consumer group's committed offsets, per partition, asked of the broker (Kafka; none
    /// for the embedded topic). May wait for the broker: call it when a job is deployed.
    fn committed(&self) -> Vec<Option<u64>> {
        Vec::new()
    }
    /// The committed offsets as last known, without asking (for the view).
    fn last_committed(&self) -> Vec<Option<u64>> {
        Vec::new()
    }
    /// Commits offsets to the consumer group (when a checkpoint completes: monitoring only).
    fn commit(&self, _offsets: &[(u32, u64)]) {}
    /// Whether this view of the topic holds every record the broker acknowledged to us (Kafka:
    /// the auditor's mirror has caught up with our own producer). Part of "caught up".
    fn in_sync(&self) -> bool {
        true
    }
    /// What is wrong with the topic now (broker unreachable, topic missing ...), if anything.
    fn health(&self) -> Option<String> {
        None
    }
    /// Why this process's copy of the topic is no longer the ground truth, if it is not: the
    /// broker lost records it had served (restarted empty, topic recreated). Never cleared: the
    /// verdict of such a run cannot be trusted.
    fn truth_lost(&self) -> Option<String> {
        None
    }
    /// The oldest offset still held (Kafka's log start offset): `earliest` starts here.
    fn log_start(&self, _partition: u32) -> u64 {
        0
    }
    /// The Kafka sink's output topic on the same broker: made on the first call (with these
    /// settings), the same one after, so that its transactions outlive the job's attempts as a
    /// broker's do.
    fn output_topic(
        &self,
        settings: &crate::connectors::kafka_sink::OutputTopicSettings,
        events: &EventBus,
    ) -> Result<Arc<crate::connectors::kafka_sink::OutputTopic>, crate::connectors::transactions::TxnError> {
        let _ = (settings, events);
        Err(crate::connectors::transactions::TxnError::Client(format!("topic {} has no broker for an output topic", self.name())))
    }
    /// Retention: records below `below` are no longer needed by any source, retained checkpoint or
    /// verdict (the embedded topic frees them; Kafka keeps its own retention).
    fn release(&self, _partition: u32, _below: u64) {}
    /// "embedded" or "kafka localhost:9092".
    fn describe(&self) -> String {
        "embedded".into()
    }
}

/// Appends `log[from..from + max]` (what exists of it) to `out`; returns how many.
pub(crate) fn read_log(logs: &[Vec<Arc<str>>], partition: u32, from: u64, max: usize, out: &mut Vec<Arc<str>>) -> usize {
    let Some(log) = logs.get(partition as usize) else { return 0 };
    let from = (from as usize).min(log.len());
    let to = (from + max).min(log.len());
    out.extend_from_slice(&log[from..to]);
    to - from
}

/// The partition a record goes to: the one asked for if it exists, else the next round-robin.
pub(crate) fn choose_partition(topic: &str, partition: Option<u32>, partitions: u32, next: &AtomicU32) -> Result<u32, TopicError> {
    match partition {
        Some(p) if p < partitions => Ok(p),
        Some(p) => Err(TopicError::NoSuchPartition { topic: topic.to_string(), partition: p, partitions }),
        None => Ok(next.fetch_add(1, Ordering::Relaxed) % partitions.max(1)),
    }
}

/// The embedded topic's storage: each record is the 4-byte id of its value; each distinct value is
/// stored once.
#[derive(Default)]
struct Logs {
    /// Per partition, the interned values of its records from its base on (records below it were
    /// released by retention).
    partitions: Vec<IdLog>,
    ids: FxHashMap<Arc<str>, u32>,
    values: Vec<Arc<str>>,
}

impl Logs {
    fn intern(&mut self, value: &str) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = self.values.len() as u32;
        let v: Arc<str> = Arc::from(value);
        self.values.push(v.clone());
        self.ids.insert(v, id);
        id
    }

    fn push(&mut self, partition: usize, value: &str) -> u64 {
        let id = self.intern(value);
        self.partitions[partition].push(id)
    }
}

/// What the embedded topic keeps (`source.embedded.retention`): the configuration's choice, which
/// the topic reads as it is.
pub use crate::config::EmbeddedRetention as Retention;

/// The default topic: an in-process log.
pub struct EmbeddedTopic {
    name: String,
    logs: RwLock<Logs>,
    next: AtomicU32,
    version: watch::Sender<u64>,
    events: EventBus,
    /// The embedded broker's output topic (the Kafka sink's).
    output: crate::connectors::kafka_sink::output::OutputSlot,
}

impl EmbeddedTopic {
    pub fn new(name: &str, partitions: u32, events: EventBus) -> Arc<Self> {
        let logs = Logs { partitions: (0..partitions).map(|_| IdLog::default()).collect(), ..Logs::default() };
        Arc::new(EmbeddedTopic {
            name: name.to_string(),
            logs: RwLock::new(logs),
            next: AtomicU32::new(0),
            version: watch::channel(0).0,
            events,
            output: Default::default(),
        })
    }

    fn logs(&self) -> std::sync::RwLockReadGuard<'_, Logs> {
        self.logs.read().unwrap_or_else(|e| e.into_inner())
    }

    fn logs_mut(&self) -> std::sync::RwLockWriteGuard<'_, Logs> {
        self.logs.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends many records at once without per-record events (benchmark pre-fill).
    pub fn fill(&self, values: impl IntoIterator<Item = Arc<str>>) {
        let mut logs = self.logs_mut();
        let n = logs.partitions.len();
        for (i, v) in values.into_iter().enumerate() {
            logs.push(i % n, &v);
        }
        drop(logs);
        self.version.send_modify(|v| *v += 1);
    }

    /// Records held (not released yet), over all partitions, for benchmarks.
    pub fn held(&self) -> u64 {
        self.logs().partitions.iter().map(|p| p.len() as u64).sum()
    }

    /// Bytes the records take (ids and distinct values), for benchmarks.
    pub fn footprint(&self) -> usize {
        let logs = self.logs();
        let ids: usize = logs.partitions.iter().map(IdLog::bytes).sum();
        let values: usize = logs.values.iter().map(|v| v.len() + 16).sum();
        ids + values + logs.ids.capacity() * 24
    }
}

impl Topic for EmbeddedTopic {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_topic(
        &self,
        settings: &crate::connectors::kafka_sink::OutputTopicSettings,
        events: &EventBus,
    ) -> Result<Arc<crate::connectors::kafka_sink::OutputTopic>, crate::connectors::transactions::TxnError> {
        self.output.get_or_make(&settings.topic, || Ok(crate::connectors::kafka_sink::OutputTopic::embedded(settings, events.clone())))
    }

    fn partitions(&self) -> u32 {
        self.logs().partitions.len() as u32
    }

    fn len(&self, partition: u32) -> u64 {
        self.logs().partitions.get(partition as usize).map_or(0, IdLog::end)
    }

    fn read(&self, partition: u32, from: u64, max: usize, out: &mut Vec<Arc<str>>) -> usize {
        let logs = self.logs();
        let Some(part) = logs.partitions.get(partition as usize) else { return 0 };
        // Released records are gone (a reader below the log start gets nothing, as Kafka's
        // OffsetOutOfRange; sources never read there: they start at `log_start` at the lowest).
        if from < part.base() {
            return 0;
        }
        let a = ((from - part.base()) as usize).min(part.len());
        let b = (a + max).min(part.len());
        out.extend(part.range(a, b).map(|id| logs.values[id as usize].clone()));
        b - a
    }

    fn produce(&self, value: &str, partition: Option<u32>) -> Result<(u32, u64), TopicError> {
        let mut logs = self.logs_mut();
        let p = choose_partition(&self.name, partition, logs.partitions.len() as u32, &self.next)?;
        let offset = logs.push(p as usize, value);
        drop(logs);
        self.version.send_modify(|v| *v += 1);
        self.events.publish(Event::RecordProduced { partition: p, offset, value: value.to_string() });
        Ok((p, offset))
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn reader(self: Arc<Self>, _assignment: &[(u32, u64)]) -> Box<dyn TopicReader> {
        Box::new(LogReader(self))
    }

    fn log_start(&self, partition: u32) -> u64 {
        self.logs().partitions.get(partition as usize).map_or(0, IdLog::base)
    }

    fn release(&self, partition: u32, below: u64) {
        let mut logs = self.logs_mut();
        if let Some(part) = logs.partitions.get_mut(partition as usize) {
            part.release(below);
        }
    }
}
