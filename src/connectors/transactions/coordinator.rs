//! The embedded output topic with Kafka's transaction coordinator: producer ids and epochs,
//! fencing, commit and abort markers, and the abort of transactions open longer than their
//! timeout. Read from apache/kafka (core/src/main/scala/kafka/coordinator/transaction/):
//!
//! - `InitProducerId` (TransactionCoordinator.scala:109-281): a timeout above the broker's
//!   `transaction.max.timeout.ms` (15 min by default, TransactionStateManagerConfig.java:31-32) is
//!   refused with INVALID_TRANSACTION_TIMEOUT; a new transactional id gets a new producer id at
//!   epoch 0 (the metadata starts at -1 and is bumped, TransactionMetadata.scala:269-280); an id
//!   whose transaction is open is fenced first: the epoch is bumped, the transaction aborted
//!   with markers at that epoch, and the client's retry bumps it once more (scala:266-272); any
//!   other state bumps the epoch once. An exhausted epoch rotates to a new producer id.
//! - The coordinator learns of a transaction with its first partition (AddPartitionsToTxn), and
//!   its clock starts there (TransactionMetadata.scala:322-330), not at the client's `begin`.
//! - `EndTxn` (TransactionCoordinator.scala:506-627, transaction version 1): a producer id that
//!   is not the id's is INVALID_PRODUCER_ID_MAPPING, an epoch that is not the current one is
//!   PRODUCER_FENCED, an open transaction gets its markers, and ending a completed transaction the
//!   same way again is answered NONE with nothing written: a commit is idempotent. The other
//!   way round is INVALID_TXN_STATE.
//! - The timeout (TransactionStateManager.scala:122-134, TransactionCoordinator.scala:759-795):
//!   every `transaction.abort.timed.out.transaction.cleanup.interval.ms` (10 s) the coordinator
//!   aborts each transaction with `start + transaction.timeout.ms < now`, fencing the epoch first,
//!   so the producer's commit after that is PRODUCER_FENCED.
//!
//! Time is the caller's: [`TransactionalLog::tick`] moves the broker's clock (tests pass explicit
//! instants, the runtime the time since the log was made), so every timeout is deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::log::{IsolationLevel, PartitionLog, ReadBatch};
use super::producer::{FenceCause, ProducerIdAndEpoch, TxnError};

/// The broker's `transaction.max.timeout.ms` default, kept with the configuration, which checks a
/// sink's `transaction.timeout.ms` against it.
pub use crate::config::DEFAULT_TRANSACTION_MAX_TIMEOUT;
/// The broker's `transaction.abort.timed.out.transaction.cleanup.interval.ms` default
/// (TransactionStateManagerConfig.java:42-43).
pub const DEFAULT_ABORT_TIMED_OUT_INTERVAL: Duration = Duration::from_secs(10);

/// The broker's side of the output topic.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub partitions: u32,
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may ask for.
    pub transaction_max_timeout: Duration,
    /// How often the coordinator looks for transactions past their timeout.
    pub abort_timed_out_interval: Duration,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            partitions: 1,
            transaction_max_timeout: DEFAULT_TRANSACTION_MAX_TIMEOUT,
            abort_timed_out_interval: DEFAULT_ABORT_TIMED_OUT_INTERVAL,
        }
    }
}

/// What the coordinator did that a person should see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TxnEvent {
    /// The coordinator aborted a transaction open longer than its timeout.
    AbortedOnTimeout { transactional_id: String, producer: ProducerIdAndEpoch, open_for: Duration, timeout: Duration },
    /// `initTransactions` moved the id's epoch past `fenced`; `aborted_open` when it aborted the
    /// transaction `fenced` had open.
    Fenced { transactional_id: String, fenced: ProducerIdAndEpoch, aborted_open: bool },
    /// A producer ended its transaction.
    Ended { transactional_id: String, producer: ProducerIdAndEpoch, commit: bool },
}

impl std::fmt::Display for TxnEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxnEvent::AbortedOnTimeout { transactional_id, open_for, timeout, .. } => write!(
                f,
                "transaction {transactional_id} aborted by the coordinator: open for {} ms > transaction.timeout.ms {}",
                open_for.as_millis(),
                timeout.as_millis()
            ),
            TxnEvent::Fenced { transactional_id, fenced, aborted_open } => {
                write!(f, "transactional id {transactional_id} re-initialised: {fenced} fenced")?;
                if *aborted_open {
                    write!(f, ", its open transaction aborted")?;
                }
                Ok(())
            }
            TxnEvent::Ended { transactional_id, producer, commit } => {
                write!(f, "transaction {transactional_id} ({producer}) {}", if *commit { "committed" } else { "aborted" })
            }
        }
    }
}

/// A transactional id's state at the coordinator (TransactionState, without the transitional
/// Prepare* states: markers are written at once here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TxnState {
    Empty,
    Ongoing { started: Duration },
    CompleteCommit,
    CompleteAbort,
}

/// What the coordinator keeps per transactional id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxnMetadata {
    pub producer: ProducerIdAndEpoch,
    pub timeout: Duration,
    pub state: TxnState,
    pub partitions: BTreeSet<u32>,
    /// Why the epoch last moved past a producer's.
    pub fenced_by: Option<FenceCause>,
}

#[derive(Debug, Default)]
struct Broker {
    partitions: Vec<PartitionLog>,
    txns: BTreeMap<String, TxnMetadata>,
    next_producer_id: i64,
    now: Duration,
    /// The coordinator's last look for timed-out transactions.
    last_sweep: Duration,
    events: Vec<TxnEvent>,
}

/// Kafka's `isProducerEpochExhausted`: the epoch is at `Short.MaxValue - 1`.
fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

impl Broker {
    fn new_producer_id(&mut self) -> i64 {
        self.next_producer_id += 1;
        self.next_producer_id
    }

    /// Aborts `tid`'s open transaction at `epoch`: markers on each of its partitions.
    fn write_markers(partitions: &mut [PartitionLog], meta: &TxnMetadata, producer: ProducerIdAndEpoch, commit: bool) {
        for &p in &meta.partitions {
            let written = partitions[p as usize].append_marker(producer, commit);
            // The coordinator's epoch is the newest of the producer id: no partition saw a newer one.
            debug_assert!(written.is_ok(), "marker refused on partition {p}");
        }
    }
}

/// The embedded output topic and its transaction coordinator.
#[derive(Debug)]
pub struct TransactionalLog {
    settings: BrokerSettings,
    broker: Mutex<Broker>,
}

impl TransactionalLog {
    pub fn new(settings: BrokerSettings) -> Self {
        let broker = Broker { partitions: (0..settings.partitions.max(1)).map(|_| PartitionLog::default()).collect(), ..Broker::default() };
        TransactionalLog { settings, broker: Mutex::new(broker) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Broker> {
        self.broker.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    pub fn partitions(&self) -> u32 {
        self.lock().partitions.len() as u32
    }

    /// The broker's clock.
    pub fn now(&self) -> Duration {
        self.lock().now
    }

    /// Moves the broker's clock to `now` (never back) and lets the coordinator abort what timed
    /// out at each of its looks since the last one. Returns the aborts, also kept for
    /// [`Self::take_events`].
    pub fn tick(&self, now: Duration) -> Vec<TxnEvent> {
        let interval = self.settings.abort_timed_out_interval.max(Duration::from_millis(1));
        let mut b = self.lock();
        if now <= b.now {
            return Vec::new();
        }
        b.now = now;
        let sweeps = (now.as_nanos() / interval.as_nanos()) as u32;
        let last_sweep = interval * sweeps;
        if last_sweep <= b.last_sweep {
            return Vec::new();
        }
        let previous_sweep = b.last_sweep;
        b.last_sweep = last_sweep;
        let Broker { partitions, txns, events, .. } = &mut *b;
        let mut aborted = Vec::new();
        for (tid, meta) in txns.iter_mut() {
            let TxnState::Ongoing { started } = meta.state else { continue };
            let deadline = started + meta.timeout;
            if deadline >= last_sweep {
                continue;
            }
            // The first look strictly after the deadline (and after the previous look, which did
            // not abort it) is when the coordinator aborted it.
            let first_after = interval * ((deadline.as_nanos() / interval.as_nanos()) as u32 + 1);
            let at = first_after.max(previous_sweep + interval).min(last_sweep);
            let fenced = ProducerIdAndEpoch { epoch: meta.producer.epoch + 1, ..meta.producer };
            Broker::write_markers(partitions, meta, fenced, false);
            let event = TxnEvent::AbortedOnTimeout {
                transactional_id: tid.clone(),
                producer: meta.producer,
                open_for: at - started,
                timeout: meta.timeout,
            };
            meta.producer = fenced;
            meta.state = TxnState::CompleteAbort;
            meta.fenced_by = Some(FenceCause::TransactionTimedOut);
            aborted.push(event.clone());
            events.push(event);
        }
        aborted
    }

    /// `InitProducerId` for `transactional_id` with `transaction.timeout.ms = timeout`.
    pub fn init_producer_id(&self, transactional_id: &str, timeout: Duration) -> Result<ProducerIdAndEpoch, TxnError> {
        if timeout.is_zero() || timeout > self.settings.transaction_max_timeout {
            return Err(TxnError::InvalidTransactionTimeout {
                timeout_ms: timeout.as_millis() as u64,
                max_ms: Some(self.settings.transaction_max_timeout.as_millis() as u64),
            });
        }
        let mut b = self.lock();
        if !b.txns.contains_key(transactional_id) {
            let producer = ProducerIdAndEpoch { producer_id: b.new_producer_id(), epoch: 0 };
            let meta = TxnMetadata { producer, timeout, state: TxnState::Empty, partitions: BTreeSet::new(), fenced_by: None };
            b.txns.insert(transactional_id.to_owned(), meta);
            return Ok(producer);
        }
        let fresh_producer_id = b.next_producer_id + 1;
        let Broker { partitions, txns, events, next_producer_id, .. } = &mut *b;
        let meta = txns.get_mut(transactional_id).expect("checked above");
        let previous = meta.producer;
        let aborted_open = matches!(meta.state, TxnState::Ongoing { .. });
        if aborted_open {
            // prepareFenceProducerEpoch, then the abort at the bumped epoch.
            meta.producer.epoch += 1;
            Broker::write_markers(partitions, meta, meta.producer, false);
        }
        meta.producer = if epoch_exhausted(meta.producer.epoch) {
            *next_producer_id = fresh_producer_id;
            ProducerIdAndEpoch { producer_id: fresh_producer_id, epoch: 0 }
        } else {
            ProducerIdAndEpoch { epoch: meta.producer.epoch + 1, ..meta.producer }
        };
        meta.timeout = timeout;
        meta.state = TxnState::Empty;
        meta.partitions.clear();
        meta.fenced_by = Some(FenceCause::NewerProducer);
        events.push(TxnEvent::Fenced { transactional_id: transactional_id.to_owned(), fenced: previous, aborted_open });
        Ok(meta.producer)
    }

    /// Appends one record: in `producer`'s transaction of `transactional_id`, or, with neither,
    /// visible at once. Returns its offset.
    pub fn send(
        &self,
        transactional: Option<(&str, ProducerIdAndEpoch)>,
        partition: u32,
        value: &str,
    ) -> Result<u64, TxnError> {
        let mut b = self.lock();
        let Broker { partitions, txns, now, .. } = &mut *b;
        let Some(log) = partitions.get_mut(partition as usize) else { return Err(TxnError::UnknownPartition(partition)) };
        let Some((tid, producer)) = transactional else {
            return Ok(log.append(value, None).expect("a record without a producer is never refused"));
        };
        let stale = || TxnError::InvalidProducerEpoch { transactional_id: tid.to_owned(), epoch: producer.epoch };
        let meta = txns.get_mut(tid).ok_or_else(|| TxnError::InvalidProducerIdMapping { transactional_id: tid.to_owned() })?;
        if meta.producer.producer_id != producer.producer_id {
            return Err(TxnError::InvalidProducerIdMapping { transactional_id: tid.to_owned() });
        }
        if producer.epoch != meta.producer.epoch {
            // A partition that saw the newer epoch (its abort marker) refuses the record itself;
            // a partition new to the transaction is refused by the coordinator (AddPartitionsToTxn).
            return Err(if log.refuses(producer) {
                stale()
            } else {
                TxnError::ProducerFenced { transactional_id: tid.to_owned(), epoch: producer.epoch, cause: meta.fenced_by }
            });
        }
        if !matches!(meta.state, TxnState::Ongoing { .. }) {
            meta.state = TxnState::Ongoing { started: *now };
            meta.partitions.clear();
        }
        meta.partitions.insert(partition);
        log.append(value, Some(producer)).map_err(|_| stale())
    }

    /// `EndTxn`: commits (`commit`) or aborts `producer`'s transaction of `transactional_id`.
    pub fn end_txn(&self, transactional_id: &str, producer: ProducerIdAndEpoch, commit: bool) -> Result<(), TxnError> {
        let mut b = self.lock();
        let Broker { partitions, txns, events, .. } = &mut *b;
        let meta = txns
            .get_mut(transactional_id)
            .ok_or_else(|| TxnError::InvalidProducerIdMapping { transactional_id: transactional_id.to_owned() })?;
        if meta.producer.producer_id != producer.producer_id {
            return Err(TxnError::InvalidProducerIdMapping { transactional_id: transactional_id.to_owned() });
        }
        if meta.producer.epoch != producer.epoch {
            return Err(TxnError::ProducerFenced { transactional_id: transactional_id.to_owned(), epoch: producer.epoch, cause: meta.fenced_by });
        }
        let invalid = |state: &str| TxnError::InvalidTxnState { transactional_id: transactional_id.to_owned(), state: state.to_owned() };
        match (meta.state, commit) {
            (TxnState::Ongoing { .. }, _) => {
                Broker::write_markers(partitions, meta, producer, commit);
                meta.state = if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
                events.push(TxnEvent::Ended { transactional_id: transactional_id.to_owned(), producer, commit });
                Ok(())
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
            (TxnState::CompleteCommit, false) => Err(invalid("CompleteCommit, abort requested")),
            (TxnState::CompleteAbort, true) => Err(invalid("CompleteAbort, commit requested")),
            (TxnState::Empty, _) => Err(invalid("Empty")),
        }
    }

    /// Up to `max` records of `partition` from `from`, as a reader at `isolation` gets them.
    pub fn read(&self, partition: u32, from: u64, isolation: IsolationLevel, max: usize) -> Result<ReadBatch, TxnError> {
        let b = self.lock();
        let log = b.partitions.get(partition as usize).ok_or(TxnError::UnknownPartition(partition))?;
        Ok(log.read(from, isolation, max))
    }

    pub fn last_stable_offset(&self, partition: u32) -> Option<u64> {
        self.lock().partitions.get(partition as usize).map(PartitionLog::last_stable_offset)
    }

    pub fn high_watermark(&self, partition: u32) -> Option<u64> {
        self.lock().partitions.get(partition as usize).map(PartitionLog::high_watermark)
    }

    /// The coordinator's metadata of `transactional_id`.
    pub fn transaction(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.lock().txns.get(transactional_id).cloned()
    }

    /// Transactional ids with an open transaction that start with `prefix` (what Flink's
    /// LISTING abort strategy gets from `listTransactions`).
    pub fn open_transactions(&self, prefix: &str) -> Vec<String> {
        let b = self.lock();
        b.txns
            .iter()
            .filter(|(tid, m)| tid.starts_with(prefix) && matches!(m.state, TxnState::Ongoing { .. }))
            .map(|(tid, _)| tid.clone())
            .collect()
    }

    /// Markers per (producer, commit) summed over partitions.
    pub fn markers(&self) -> BTreeMap<(ProducerIdAndEpoch, bool), u32> {
        let b = self.lock();
        let mut all = BTreeMap::new();
        for p in &b.partitions {
            for (k, n) in p.markers() {
                *all.entry(*k).or_default() += n;
            }
        }
        all
    }

    /// Everything the coordinator did since the last call.
    pub fn take_events(&self) -> Vec<TxnEvent> {
        std::mem::take(&mut self.lock().events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn log() -> TransactionalLog {
        TransactionalLog::new(BrokerSettings { partitions: 2, ..BrokerSettings::default() })
    }

    fn committed(log: &TransactionalLog, p: u32) -> Vec<String> {
        log.read(p, 0, IsolationLevel::ReadCommitted, usize::MAX).unwrap().records.into_iter().map(|r| r.value).collect()
    }

    #[test]
    fn the_first_init_of_an_id_is_epoch_0_and_each_later_one_bumps_it() {
        let log = log();
        let a = log.init_producer_id("t", MIN).unwrap();
        assert_eq!(a.epoch, 0);
        let b = log.init_producer_id("t", MIN).unwrap();
        assert_eq!((b.producer_id, b.epoch), (a.producer_id, 1));
        assert_ne!(log.init_producer_id("u", MIN).unwrap().producer_id, a.producer_id);
    }

    #[test]
    fn init_with_a_timeout_above_the_brokers_maximum_is_refused_with_kafkas_error() {
        let log = log();
        let err = log.init_producer_id("t", Duration::from_secs(3600)).unwrap_err();
        assert_eq!(err, TxnError::InvalidTransactionTimeout { timeout_ms: 3_600_000, max_ms: Some(900_000) });
        assert!(err.to_string().contains(
            "The transaction timeout is larger than the maximum value allowed by the broker (as configured by transaction.max.timeout.ms)"
        ));
        assert!(log.transaction("t").is_none(), "nothing is created for a refused init");
        assert!(log.init_producer_id("t", Duration::from_secs(900)).is_ok(), "15 min is allowed: the check is <=");
    }

    #[test]
    fn re_init_fences_the_open_transaction_aborts_it_and_refuses_the_old_epoch() {
        let log = log();
        let old = log.init_producer_id("t", MIN).unwrap();
        log.send(Some(("t", old)), 0, "a").unwrap();
        let new = log.init_producer_id("t", MIN).unwrap();
        assert_eq!(new.epoch, old.epoch + 2, "fence bump, then the retry's bump (TransactionCoordinator.scala:266-272)");
        // Partition 0 saw the abort marker at the fenced epoch: it refuses the zombie itself.
        assert!(matches!(log.send(Some(("t", old)), 0, "b"), Err(TxnError::InvalidProducerEpoch { .. })));
        // Partition 1 is new to the transaction: the coordinator refuses it.
        assert!(matches!(log.send(Some(("t", old)), 1, "c"), Err(TxnError::ProducerFenced { cause: Some(FenceCause::NewerProducer), .. })));
        assert!(matches!(log.end_txn("t", old, true), Err(TxnError::ProducerFenced { .. })));
        assert!(committed(&log, 0).is_empty());
        let r = log.read(0, 0, IsolationLevel::ReadUncommitted, 10).unwrap();
        assert_eq!(r.records.len(), 1);
        assert_eq!(r.records[0].fate, super::super::log::Fate::Aborted);
    }

    #[test]
    fn records_are_invisible_to_read_committed_until_the_commit_marker() {
        let log = log();
        let p = log.init_producer_id("t", MIN).unwrap();
        log.send(None, 0, "plain").unwrap();
        log.send(Some(("t", p)), 0, "x").unwrap();
        log.send(None, 0, "after").unwrap();
        assert_eq!(committed(&log, 0), ["plain"], "the open transaction holds the LSO at x: 'after' waits too");
        assert_eq!(log.last_stable_offset(0), Some(1));
        log.end_txn("t", p, true).unwrap();
        assert_eq!(committed(&log, 0), ["plain", "x", "after"]);
    }

    #[test]
    fn a_second_commit_of_a_committed_transaction_is_a_no_op_and_an_abort_after_commit_is_invalid() {
        let log = log();
        let p = log.init_producer_id("t", MIN).unwrap();
        log.send(Some(("t", p)), 0, "x").unwrap();
        log.end_txn("t", p, true).unwrap();
        log.end_txn("t", p, true).unwrap();
        assert_eq!(log.markers().get(&(p, true)), Some(&1), "the re-commit wrote no second marker");
        assert!(matches!(log.end_txn("t", p, false), Err(TxnError::InvalidTxnState { .. })));
        assert_eq!(committed(&log, 0), ["x"]);
    }

    #[test]
    fn the_coordinator_aborts_a_transaction_open_longer_than_its_timeout_and_fences_its_commit() {
        let log = log();
        let p = log.init_producer_id("t", MIN).unwrap();
        log.tick(Duration::from_secs(5));
        log.send(Some(("t", p)), 1, "x").unwrap();
        assert!(log.tick(Duration::from_secs(60)).is_empty(), "55 s open: not yet");
        assert!(log.tick(Duration::from_secs(69)).is_empty(), "the deadline (65 s) passed, but the coordinator looks only every 10 s");
        let aborted = log.tick(Duration::from_secs(71));
        assert_eq!(aborted.len(), 1);
        assert_eq!(
            aborted[0].to_string(),
            "transaction t aborted by the coordinator: open for 65000 ms > transaction.timeout.ms 60000",
            "aborted at the first look after the deadline (70 s)"
        );
        assert_eq!(log.last_stable_offset(1), log.high_watermark(1), "the LSO moved past the aborted transaction");
        assert!(matches!(
            log.end_txn("t", p, true),
            Err(TxnError::ProducerFenced { cause: Some(FenceCause::TransactionTimedOut), .. })
        ));
        assert!(committed(&log, 1).is_empty());
    }

    #[test]
    fn a_long_downtime_reports_the_abort_at_the_coordinators_first_look_past_the_deadline() {
        let log = log();
        let p = log.init_producer_id("t", MIN).unwrap();
        log.send(Some(("t", p)), 0, "x").unwrap();
        let aborted = log.tick(Duration::from_secs(3600));
        assert_eq!(aborted.len(), 1);
        assert!(matches!(aborted[0], TxnEvent::AbortedOnTimeout { open_for, .. } if open_for == Duration::from_secs(70)));
    }
}
