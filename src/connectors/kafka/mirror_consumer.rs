//! The mirror's own consumer: copies every record into the [`Mirror`], and after every lost
//! connection checks that the broker still has what it read before anyone fetches again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;

use super::client::{assigned_consumer, consumer_config, create_topic, MIRROR_FETCH_WAIT};
use super::detached::Detached;
use super::health::{unreachable, Health, HealthContext};
use super::mirror::{Appended, Mirror};
use super::payload::value_of;
use super::producer::Acks;
use super::health::Reconnects;
use super::KafkaSettings;

/// How long the mirror waits in one poll (also how fast it notices it should stop).
pub(super) const MIRROR_POLL: Duration = Duration::from_millis(100);
/// How soon the mirror asks again when the broker did not answer its check.
pub(super) const CHECK_RETRY: Duration = Duration::from_millis(200);
/// How long the check's queries may take (short: an unreachable broker is asked again soon, and
/// the mirror notices meanwhile that it should stop).
pub(super) const CHECK_QUERY_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the mirror's check waits for the broker to serve the last records read again.
pub(super) const CHECK_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// The auditor's own consumer: copies every record of every partition into the mirror, and
/// checks, whenever a connection to the broker was lost, that the broker still has what it read.
///
/// The check is what makes a broker restarted empty visible whatever the timing: a message polled
/// after the consumer's own "Disconnected" line (see [`HealthContext::fence`]) is dropped with the
/// consumer, and no consumer reads again before the check has read, per partition, the last
/// record read once more, and the last one our producer had acknowledged when the broker's end
/// offset is below it (served: kept; out of range or another record: lost). A partition whose log went backwards gets a new log in the mirror
/// ([`PartitionLog::lose_log`]): the records of the old one stay for the auditor.
pub(super) struct MirrorRun {
    /// The [`Reconnects`] epoch the consumer was checked in.
    pub(super) epoch: u64,
    pub(super) consumer: Option<Detached<BaseConsumer<HealthContext>>>,
    pub(super) group: String,
    pub(super) settings: KafkaSettings,
    pub(super) servers: String,
    pub(super) mirror: Arc<Mirror>,
    pub(super) health: Arc<Health>,
    pub(super) reconnects: Arc<Reconnects>,
    pub(super) acks: Arc<Acks>,
    pub(super) stop: Arc<AtomicBool>,
    /// A client of its own for metadata and watermarks (it fetches no records), made once.
    pub(super) probe: Option<Detached<BaseConsumer<HealthContext>>>,
}

/// Why the mirror's check is not done yet; it is made again after [`CHECK_RETRY`].
#[derive(Debug, thiserror::Error)]
pub(super) enum CheckPending {
    /// The broker did not answer a metadata or watermark query: it is unreachable now.
    #[error("{0}")]
    Unanswered(KafkaError),
    /// A client (the probe, or a consumer for the check's reads or the mirror) could not be made
    /// or assigned.
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    /// The topic is being created (by us, or by a producer's auto-creation: leader not
    /// available): not absent, and not to be created again; asked again.
    #[error("{topic} on the broker: {code}")]
    Creating { topic: String, code: RDKafkaErrorCode },
    /// The broker is back without the topic; it is created again.
    #[error("{topic} is not on the broker")]
    Absent { topic: String },
    /// The broker served nothing at an offset below its end offset, within the check's read.
    #[error("partition {partition}: the broker did not serve offset {offset}, below its end offset {end}")]
    NotServed { partition: u32, offset: u64, end: u64 },
    /// The connection was lost again while the check read.
    #[error("the connection was lost during the check")]
    ConnectionLost,
    /// The topic is being closed.
    #[error("stopped during the check")]
    Stopped,
}

/// What a check found of one partition.
pub(super) enum Found {
    /// The broker has every record read: read on from this Kafka offset.
    Kept(u64),
    /// The broker's log is another one: it begins at this Kafka offset (its log start).
    Lost { base: u64, end: u64 },
}

impl MirrorRun {
    pub(super) fn ctx(&self) -> HealthContext {
        HealthContext::new(&self.health, &self.servers, &self.reconnects)
    }

    pub(super) fn run(&mut self) {
        let mut next_check = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            self.health.tick();
            let moved = self.reconnects.epoch() != self.epoch || self.consumer.as_ref().is_some_and(|c| c.context().fence() != 0);
            if moved {
                if let Some(old) = self.consumer.take() {
                    // A consumer lost its connection: none may fetch again before the check (nor
                    // while it is closed: see `Reconnects`).
                    if let Ok(assigned) = old.assignment() {
                        let _ = old.pause(&assigned);
                    }
                    self.reconnects.pause_readers();
                }
            }
            let Some(consumer) = &self.consumer else {
                if Instant::now() < next_check {
                    std::thread::sleep(MIRROR_POLL.min(next_check.saturating_duration_since(Instant::now())));
                    continue;
                }
                match self.check() {
                    Ok(()) => {}
                    Err(why) => {
                        tracing::debug!("kafka mirror: check not done: {why}");
                        if let CheckPending::Unanswered(e) = &why {
                            // No client reports it meanwhile: librdkafka hands a consumer's errors
                            // over only when it is polled, and while the mirror checks, no
                            // consumer is (the readers' and its own are paused or dropped). Whether
                            // the broker's "all brokers down" came before or after the
                            // "Disconnected" line that moves the epoch was a race: 1 run in 8, the
                            // status never said unreachable (issue 20 §3).
                            self.health.set(Some(unreachable(&self.servers, &e.to_string())));
                        }
                        next_check = Instant::now() + CHECK_RETRY;
                    }
                }
                continue;
            };
            match consumer.poll(MIRROR_POLL) {
                Some(Ok(m)) => {
                    if consumer.context().fence() != 0 {
                        // Polled after this consumer's connection was lost: maybe from a restarted
                        // broker. The check decides; the message is read again if it is kept.
                        continue;
                    }
                    let (partition, offset, timestamp, value) =
                        (m.partition() as u32, m.offset().max(0) as u64, m.timestamp().to_millis(), value_of(&m));
                    if let Some(Appended::ServedAgain { after }) = self.mirror.append(partition, offset, timestamp, value) {
                        // Offsets served again with no connection lost (a topic recreated): every
                        // consumer stops until the check.
                        tracing::warn!("kafka mirror: partition {partition}: offset {offset} served again after {after}");
                        self.reconnects.epoch.fetch_add(1, Ordering::AcqRel);
                        continue;
                    }
                    if self.health.unreachable() {
                        self.health.set(None);
                    }
                }
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                    // The broker no longer has the offset read next: its log went backwards.
                    self.reconnects.epoch.fetch_add(1, Ordering::AcqRel);
                }
                Some(Err(e)) => {
                    tracing::warn!("kafka mirror: {e}");
                    self.health.set(Some(unreachable(&self.servers, &e.to_string())));
                }
                None => {}
            }
        }
    }

    /// Checks what the broker still has (see [`MirrorRun`]) and starts the consumer after it;
    /// `Err` when it cannot be done yet (the check is made again), saying whether the broker
    /// did not answer.
    pub(super) fn check(&mut self) -> Result<(), CheckPending> {
        let epoch = self.reconnects.epoch();
        let topic = self.settings.topic.clone();
        self.ensure_probe()?;
        let probe = self.probe.as_deref().expect("ensure_probe made the probe or returned its error");
        let md = probe.fetch_metadata(Some(&topic), CHECK_QUERY_TIMEOUT).map_err(CheckPending::Unanswered)?;
        let partitions = self.mirror.partitions();
        let on_broker = match md.topics().iter().find(|t| t.name() == topic) {
            None => 0,
            Some(t) => match t.error() {
                None => t.partitions().len() as u32,
                Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => 0,
                Some(e) => return Err(CheckPending::Creating { topic, code: RDKafkaErrorCode::from(e) }),
            },
        };
        self.health.set(None);
        let mut found = Vec::with_capacity(partitions as usize);
        // Offsets to read again, decisive where the watermarks are not: (partition, offset,
        // whether it is the last record read, else one only acknowledged to our producer).
        let mut reread = Vec::new();
        let mut watermarks = vec![(0, 0); partitions as usize];
        for p in 0..partitions {
            let (log, acked) = (self.mirror.with(p, Clone::clone).unwrap_or_default(), self.acks.get(p));
            // What the broker had: what the mirror read of its log, and what it acknowledged to
            // our producer in that log (acknowledgements of a log lost already do not count).
            let read = log.has_current().then(|| log.next_offset());
            let had = read.unwrap_or(0).max(if acked.restarts == log.restarts { acked.end } else { 0 });
            if p >= on_broker {
                found.push(if had > 0 { Found::Lost { base: 0, end: 0 } } else { Found::Kept(0) });
                continue;
            }
            let (low, high) =
                probe.fetch_watermarks(&topic, p as i32, CHECK_QUERY_TIMEOUT).map_err(CheckPending::Unanswered)?;
            let (low, high) = (low.max(0) as u64, high.max(0) as u64);
            watermarks[p as usize] = (low, high);
            // An end offset below what the broker had is not proof of a loss: a broker may report
            // less than it acknowledged (Tansu 0.6 answered 1 for a log of 198 records written in
            // one batch, and a log taken for lost made the run end before its records were read).
            // Whether the records are still served decides.
            match read {
                // The last record read was deleted: the log is not the one read.
                Some(next) if low >= next => found.push(Found::Lost { base: low, end: high }),
                Some(next) => {
                    reread.push((p, next - 1, true));
                    if high < had {
                        reread.push((p, had - 1, false));
                    }
                    found.push(Found::Kept(next));
                }
                None if high < had => {
                    reread.push((p, had - 1, false));
                    found.push(Found::Kept(log.next_offset().max(low)));
                }
                None => found.push(Found::Kept(log.next_offset().max(low))),
            }
        }
        if on_broker == 0 {
            // Back without the topic: lose what was read, create it again (as when ckptlab
            // started), and check again.
            self.lose(&found);
            if let Err(e) = create_topic(&self.servers, &self.settings) {
                tracing::warn!("kafka mirror: cannot create {topic} again: {e}");
            }
            return Err(CheckPending::Absent { topic });
        }
        if on_broker < partitions {
            self.health.truth_lost(format!(
                "{topic} came back with {on_broker} partitions instead of {partitions}: partitions {on_broker} and up cannot be read; the verdict no longer counts what is in the topic"
            ));
        }
        // One offset per partition per read: the last record read, then the last acknowledged.
        for last in [true, false] {
            let at: Vec<(u32, u64, bool)> =
                reread.iter().copied().filter(|(p, _, l)| *l == last && matches!(found[*p as usize], Found::Kept(_))).collect();
            if at.is_empty() {
                continue;
            }
            for (p, offset, served) in self.read_again(&at)? {
                let (low, high) = watermarks[p as usize];
                match served {
                    Some(true) => {}
                    Some(false) => {
                        let (low, high) = self.watermarks(p);
                        found[p as usize] = Found::Lost { base: low, end: high };
                    }
                    // Neither served nor out of range: the end offset decides, if it says gone.
                    None if high <= offset => found[p as usize] = Found::Lost { base: low, end: high },
                    None => return Err(CheckPending::NotServed { partition: p, offset, end: high }),
                }
            }
        }
        self.lose(&found);
        let at: Vec<(u32, Option<u64>)> = found
            .iter()
            .enumerate()
            .filter(|(p, _)| (*p as u32) < on_broker)
            .map(|(p, f)| {
                (
                    p as u32,
                    Some(match f {
                        Found::Kept(next) => *next,
                        Found::Lost { base, .. } => *base,
                    }),
                )
            })
            .collect();
        let consumer = assigned_consumer(&self.servers, &self.group, MIRROR_FETCH_WAIT, self.ctx(), &topic, at.into_iter())?;
        self.consumer = Some(Detached::new(consumer));
        self.epoch = epoch;
        self.mirror.checked.store(epoch, Ordering::Release);
        Ok(())
    }

    /// Makes the probe client when there is none.
    pub(super) fn ensure_probe(&mut self) -> Result<(), KafkaError> {
        if self.probe.is_none() {
            // It fetches no records, so it reconnects as fast as the producer does.
            let c = consumer_config(&self.servers, &self.group, MIRROR_FETCH_WAIT)
                .set("reconnect.backoff.ms", "100")
                .set("reconnect.backoff.max.ms", "1000")
                .create_with_context(self.ctx())?;
            self.probe = Some(Detached::new(c));
        }
        Ok(())
    }

    /// The broker's (log start, end) of partition `p`, or (0, 0) when it does not answer.
    pub(super) fn watermarks(&self, p: u32) -> (u64, u64) {
        let Some(c) = self.probe.as_deref() else { return (0, 0) };
        c.fetch_watermarks(&self.settings.topic, p as i32, CHECK_QUERY_TIMEOUT).map_or((0, 0), |(l, h)| (l.max(0) as u64, h.max(0) as u64))
    }

    /// Reads the record at each `(partition, offset, last)` again (one offset per partition):
    /// `Some(true)` when the broker still has it (the one the mirror read last there, for `last`;
    /// any record at or after the offset, else), `Some(false)` when it is gone or another record,
    /// `None` when the broker served nothing in time.
    pub(super) fn read_again(&self, at: &[(u32, u64, bool)]) -> Result<Vec<(u32, u64, Option<bool>)>, CheckPending> {
        let c = assigned_consumer(
            &self.servers,
            &self.group,
            MIRROR_FETCH_WAIT,
            self.ctx(),
            &self.settings.topic,
            at.iter().map(|(p, o, _)| (*p, Some(*o))),
        )?;
        let c = Detached::new(c);
        let mut pending: BTreeMap<u32, (u64, bool)> = at.iter().map(|(p, o, l)| (*p, (*o, *l))).collect();
        let mut out = Vec::with_capacity(at.len());
        let deadline = Instant::now() + CHECK_READ_TIMEOUT;
        while !pending.is_empty() {
            if self.stop.load(Ordering::Acquire) {
                return Err(CheckPending::Stopped);
            }
            if Instant::now() > deadline {
                out.extend(std::mem::take(&mut pending).into_iter().map(|(p, (o, _))| (p, o, None)));
                break;
            }
            match c.poll(MIRROR_POLL) {
                Some(Ok(m)) => {
                    if c.context().fence() != 0 {
                        return Err(CheckPending::ConnectionLost);
                    }
                    let p = m.partition() as u32;
                    if let Some((offset, last)) = pending.remove(&p) {
                        let (o, ts, value) = (m.offset().max(0) as u64, m.timestamp().to_millis(), value_of(&m));
                        let kept = if last { o == offset && self.mirror.is_last(p, o, ts, &value) } else { o >= offset };
                        out.push((p, offset, Some(kept)));
                    }
                }
                // Out of range: the offset is gone, the log is another one.
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                    out.extend(std::mem::take(&mut pending).into_iter().map(|(p, (o, _))| (p, o, Some(false))));
                }
                Some(Err(e)) => return Err(CheckPending::Client(e)),
                None => {}
            }
        }
        Ok(out)
    }

    /// Records in the mirror the partitions whose log the broker lost, and says so.
    pub(super) fn lose(&self, found: &[Found]) {
        for (p, f) in found.iter().enumerate() {
            let Found::Lost { base, end } = f else { continue };
            let p = p as u32;
            let (log, acked) = (self.mirror.with(p, Clone::clone).unwrap_or_default(), self.acks.get(p));
            let unread = if acked.restarts == log.restarts { acked.end.saturating_sub(log.next_offset()) } else { 0 };
            let read = self.mirror.lose_log(p, *base);
            if read + unread == 0 {
                continue;
            }
            let unread = if unread > 0 {
                format!(" (and {unread} it had acknowledged to ckptlab that the auditor never read: they are in no figure)")
            } else {
                String::new()
            };
            self.health.broker_lost(format!(
                "{} partition {p}: the broker came back without the records it had (its log now ends at offset {end}; the auditor had read up to {}): {read} records lost{unread}; restarted empty, or the topic was recreated. Those no source had read are counted lost (lost_by_broker); sources go on from the broker's log start",
                self.settings.topic,
                log.next_offset()
            ));
        }
    }
}
