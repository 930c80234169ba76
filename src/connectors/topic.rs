//! A Kafka-style topic: partitioned, append-only logs addressed by (partition, offset).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::events::{Event, EventBus};

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

/// The default topic: an in-process log.
pub struct EmbeddedTopic {
    name: String,
    logs: RwLock<Vec<Vec<Arc<str>>>>,
    next: AtomicU32,
    version: watch::Sender<u64>,
    events: EventBus,
}

impl EmbeddedTopic {
    pub fn new(name: &str, partitions: u32, events: EventBus) -> Arc<Self> {
        Arc::new(EmbeddedTopic {
            name: name.to_string(),
            logs: RwLock::new(vec![Vec::new(); partitions as usize]),
            next: AtomicU32::new(0),
            version: watch::channel(0).0,
            events,
        })
    }

    /// Appends many records at once without per-record events (benchmark pre-fill).
    pub fn fill(&self, values: impl IntoIterator<Item = Arc<str>>) {
        let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
        let n = logs.len();
        for (i, v) in values.into_iter().enumerate() {
            logs[i % n].push(v);
        }
        drop(logs);
        self.version.send_modify(|v| *v += 1);
    }
}

impl Topic for EmbeddedTopic {
    fn name(&self) -> &str {
        &self.name
    }

    fn partitions(&self) -> u32 {
        self.logs.read().unwrap_or_else(|e| e.into_inner()).len() as u32
    }

    fn len(&self, partition: u32) -> u64 {
        let logs = self.logs.read().unwrap_or_else(|e| e.into_inner());
        logs.get(partition as usize).map_or(0, |l| l.len() as u64)
    }

    fn read(&self, partition: u32, from: u64, max: usize, out: &mut Vec<Arc<str>>) -> usize {
        read_log(&self.logs.read().unwrap_or_else(|e| e.into_inner()), partition, from, max, out)
    }

    fn produce(&self, value: &str, partition: Option<u32>) -> Result<(u32, u64), TopicError> {
        let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
        let p = choose_partition(&self.name, partition, logs.len() as u32, &self.next)?;
        let log = &mut logs[p as usize];
        let offset = log.len() as u64;
        log.push(Arc::from(value));
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
}
