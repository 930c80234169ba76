//! The topic's health as the user sees it: what is wrong with reaching the broker, a source, or
//! the records the broker lost, set and cleared by different parties, shown by the most lasting
//! one and published as events when its kind changes (rate-limited); and the librdkafka client
//! context that reports client errors there and lost connections to [`Reconnects`], which pauses
//! and replaces every consumer when one lost an established connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

use super::detached::Detached;
use crate::events::{Event, EventBus};

/// At most one topic-status event per this interval: a status that flaps (two sources reporting
/// different partitions, a broker that comes and goes) must not flood the event bus.
pub const HEALTH_EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// What is wrong with the topic now, in three parts that are set and cleared by different
/// parties; the status shown is the most lasting one.
#[derive(Default)]
pub(super) struct HealthState {
    /// Reaching the broker or the topic (set by client errors, cleared when the broker answers).
    pub(super) connection: Option<String>,
    /// Sources that cannot go on, by partition (cleared when a source reads it again).
    pub(super) sources: BTreeMap<u32, String>,
    /// The broker came back without records it had served (restarted empty, topic recreated):
    /// never cleared. The auditor still knows them and counts them lost (`lost_by_broker`).
    pub(super) lost: Option<String>,
    /// The broker lost records this process cannot account for: never cleared.
    pub(super) truth: Option<String>,
    /// The kind of status last published, and when.
    pub(super) published: Option<String>,
    pub(super) published_at: Option<Instant>,
}

impl HealthState {
    pub(super) fn shown(&self) -> Option<String> {
        self.truth
            .clone()
            .or_else(|| self.lost.clone())
            .or_else(|| self.sources.values().next().cloned())
            .or_else(|| self.connection.clone())
    }
}

/// The kind of a status: the text before its parenthesis (librdkafka gives a new reason for the
/// same outage every few hundred milliseconds).
pub(super) fn kind_of(status: &Option<String>) -> Option<String> {
    status.as_deref().map(|t| t.split('(').next().unwrap_or_default().to_string())
}

/// The topic's health; changes of kind are published as events, rate-limited.
pub(super) struct Health {
    pub(super) state: Mutex<HealthState>,
    pub(super) events: EventBus,
}

impl Health {
    pub(super) fn new(events: EventBus) -> Self {
        Health { state: Mutex::new(HealthState::default()), events }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets (or clears) the connection problem; returns whether there was none before.
    pub(super) fn set(&self, status: Option<String>) -> bool {
        let mut s = self.lock();
        let was_fine = s.connection.is_none();
        s.connection = status;
        self.publish_due(&mut s);
        was_fine
    }

    /// Sets (or clears) the problem of the source reading `partition`.
    pub(super) fn set_source(&self, partition: u32, status: Option<String>) {
        let mut s = self.lock();
        match status {
            Some(why) => s.sources.insert(partition, why),
            None => match s.sources.remove(&partition) {
                Some(was) => Some(was),
                None => return,
            },
        };
        self.publish_due(&mut s);
    }

    /// The broker lost records it had served; the first reason stays.
    pub(super) fn truth_lost(&self, why: String) {
        let mut s = self.lock();
        if s.truth.is_none() {
            tracing::warn!("{why}");
            s.truth = Some(why);
        }
        self.publish_due(&mut s);
    }

    /// The broker came back without records it had served; the first report stays, later ones
    /// (another partition, another restart) are logged.
    pub(super) fn broker_lost(&self, why: String) {
        let mut s = self.lock();
        tracing::warn!("{why}");
        if s.lost.is_none() {
            s.lost = Some(why);
            // At once, whatever the rate limit: this is the news of the run.
            s.published_at = None;
        }
        self.publish_due(&mut s);
    }

    /// Publishes a change that was held back by the rate limit (called regularly by the mirror).
    pub(super) fn tick(&self) {
        let mut s = self.lock();
        self.publish_due(&mut s);
    }

    /// Publishes the shown status when its kind changed since the last event and the last event
    /// is old enough; else it stays due for a later `tick`. Under the lock, so events keep order.
    pub(super) fn publish_due(&self, s: &mut HealthState) {
        let shown = s.shown();
        let kind = kind_of(&shown);
        if kind == s.published || s.published_at.is_some_and(|t| t.elapsed() < HEALTH_EVENT_INTERVAL) {
            return;
        }
        s.published = kind;
        s.published_at = Some(Instant::now());
        self.events.publish(Event::TopicStatus { message: shown });
    }

    pub(super) fn get(&self) -> Option<String> {
        self.lock().shown()
    }

    /// Whether the broker is known to be unreachable now (then queries would only time out).
    pub(super) fn unreachable(&self) -> bool {
        self.lock().connection.is_some()
    }

    pub(super) fn truth(&self) -> Option<String> {
        self.lock().truth.clone()
    }
}

/// Reports librdkafka's client errors (all brokers down, transport failures) as the topic's
/// health, and connections lost after they were up to [`Reconnects`].
pub(super) struct HealthContext {
    pub(super) health: Arc<Health>,
    pub(super) servers: String,
    pub(super) reconnects: Arc<Reconnects>,
    /// This client's own established connections lost so far. librdkafka queues its log lines
    /// on the consumer's queue (rust-rdkafka sets `log.queue`), in order with the fetched
    /// messages, so a message polled after this moved may come from a broker that restarted:
    /// the fence that makes detection independent of timing.
    pub(super) fence: AtomicU64,
}

impl HealthContext {
    pub(super) fn new(health: &Arc<Health>, servers: &str, reconnects: &Arc<Reconnects>) -> Self {
        HealthContext { health: health.clone(), servers: servers.to_string(), reconnects: reconnects.clone(), fence: AtomicU64::new(0) }
    }

    pub(super) fn fence(&self) -> u64 {
        self.fence.load(Ordering::Acquire)
    }
}

impl ClientContext for HealthContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!("kafka {}: {error}: {reason}", self.servers);
        // A broker that went away may come back as another one (not on every retry: the
        // consumers that replace these fail the same way while it is away).
        if self.health.set(Some(unreachable(&self.servers, &format!("{error}: {reason}")))) {
            self.reconnects.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // "127.0.0.1:9092/1: Disconnected (after 1520ms in state UP)", at info or warning level.
        if fac == "FAIL" && message.contains("in state UP") {
            self.fence.fetch_add(1, Ordering::AcqRel);
            self.reconnects.epoch.fetch_add(1, Ordering::AcqRel);
        }
        if matches!(level, RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error) {
            tracing::warn!("librdkafka {fac}: {message}");
        }
    }
}

impl ConsumerContext for HealthContext {}

pub(super) fn unreachable(servers: &str, why: &str) -> String {
    format!(
        "Kafka at {servers} unreachable ({why}): start the broker (or use --kafka mock); ckptlab retries, and typed records are sent once it is back"
    )
}

// ------------------------------------------------ lost connections
// Every consumer is paused and replaced when one of them lost an established connection to a
// broker, so that none fetches from a restarted broker before the mirror has checked what it
// still holds (and librdkafka 2.12's crash on such a fetch is never reached).

/// The defence against a librdkafka 2.12 crash (upstream #4964 / #4778, not fixed in 2.12.1): a
/// consumer whose broker restarted without the topic gets a fetch reply naming a new leader for a
/// topic without id, and librdkafka's main thread looks that topic up by a null name (SIGSEGV in
/// `rd_kafka_metadata_cache_find` via `rd_kafka_metadata_update_op`). Only a consumer that had
/// the topic's metadata before the restart fetches then; a new consumer asks for metadata first.
/// So consumers wait [`CONSUMER_RECONNECT_BACKOFF`] before reconnecting, and when one of them
/// lost an established connection, every consumer is paused at once and replaced by a new one.
pub(super) struct Reconnects {
    /// Moves on whenever a consumer lost an established connection to a broker.
    pub(super) epoch: AtomicU64,
    /// The source readers' consumers, paused by the mirror when the epoch moves (a reader is
    /// replaced only when its source reads again, which a paused job does not do).
    pub(super) readers: Mutex<Vec<Weak<BaseConsumer<HealthContext>>>>,
}

impl Reconnects {
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Pauses every live reader's consumer: none fetches again before it is replaced.
    pub(super) fn pause_readers(&self) {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.retain(|r| r.strong_count() > 0);
        // Detached: should a reader be dropped meanwhile, its consumer is not closed here.
        for c in readers.iter().filter_map(Weak::upgrade).map(Detached::new) {
            if let Ok(assigned) = c.assignment() {
                let _ = c.pause(&assigned);
            }
        }
    }

    pub(super) fn register(&self, reader: &Arc<BaseConsumer<HealthContext>>) {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.retain(|r| r.strong_count() > 0);
        readers.push(Arc::downgrade(reader));
    }
}

/// How long a consumer waits before reconnecting to a broker that closed its connection: the
/// time the mirror has (it polls every [`MIRROR_POLL`]) to pause and replace the consumers.
pub(super) const CONSUMER_RECONNECT_BACKOFF: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_events_are_published_on_change_at_most_once_per_interval() {
        let bus = EventBus::new(tokio::time::Instant::now());
        let mut events = bus.subscribe();
        let h = Health::new(bus);
        for i in 0..1000 {
            h.set_source(i % 2, Some(format!("partition {i} cannot go on")));
            h.set_source(i % 2, None);
        }
        h.set(Some("Kafka at x unreachable (one)".into()));
        h.set(Some("Kafka at x unreachable (two)".into()));
        let mut n = 0;
        while events.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 1, "the first change only; the rest waits for the interval");
        std::thread::sleep(HEALTH_EVENT_INTERVAL);
        h.tick();
        let last = events.try_recv().expect("the status due is published on the next tick");
        assert!(matches!(last.event, Event::TopicStatus { message: Some(ref m) } if m.contains("unreachable")), "{last:?}");
        h.truth_lost("lost".into());
        h.set(None);
        assert_eq!(h.get().as_deref(), Some("lost"), "a lost truth stays");
    }
}
