//! The KafkaSink against the embedded transactional log, under failures: a job of one sink
//! subtask whose source replays from the restored checkpoint's position, with checkpoints,
//! completions, lost notifications, kills, downtimes and the broker's clock; then the same as
//! a property over random schedules.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::connectors::transactions::{
    BrokerSettings, EmbeddedProducers, Fate, IsolationLevel, ProducerFactory, TransactionalLog, TxnError, TxnEvent,
};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The line of the i-th record (from 0): the job's `(key,count)`, count from 1.
fn line(i: usize) -> String {
    format!("(k,{})", i + 1)
}

/// A transaction's committable and the input positions its lines came from.
type Staged = (KafkaCommittable, Range<usize>);

struct Completed {
    position: usize,
    /// The committer's state: every committable not committed when the snapshot was taken.
    committables: Vec<Staged>,
    writer_states: Vec<KafkaWriterState>,
}

struct Attempt {
    writer: KafkaSinkWriter,
    committer: KafkaCommitter,
    position: usize,
    txn_start: usize,
    pending: Vec<Staged>,
    in_flight: Option<(u64, usize, Vec<Staged>, Option<KafkaWriterState>)>,
}

struct Job {
    log: Arc<TransactionalLog>,
    factory: Arc<EmbeddedProducers>,
    settings: KafkaSinkSettings,
    now: Duration,
    running: Option<Attempt>,
    completed: BTreeMap<u64, Completed>,
    next_checkpoint: u64,
    lost: Vec<(CommitOutcome, Range<usize>)>,
    failures: Vec<SinkError>,
}

impl Job {
    fn new(guarantee: DeliveryGuarantee, linger: usize) -> Job {
        let log = Arc::new(TransactionalLog::new(BrokerSettings::default()));
        Job::on(log, guarantee, linger, "ckptlab")
    }

    fn on(log: Arc<TransactionalLog>, guarantee: DeliveryGuarantee, linger: usize, prefix: &str) -> Job {
        let factory = Arc::new(EmbeddedProducers { log: log.clone(), timeout: TIMEOUT, linger });
        let settings = KafkaSinkSettings { delivery_guarantee: guarantee, transactional_id_prefix: Some(prefix.to_owned()) };
        let mut job = Job {
            log,
            factory,
            settings,
            now: Duration::ZERO,
            running: None,
            completed: BTreeMap::new(),
            next_checkpoint: 1,
            lost: Vec::new(),
            failures: Vec::new(),
        };
        job.restart(Duration::ZERO);
        job
    }

    fn fail(&mut self, e: SinkError) {
        self.failures.push(e);
        self.running = None;
    }

    fn write(&mut self, n: usize) {
        let Some(a) = &mut self.running else { return };
        for _ in 0..n {
            if let Err(e) = a.writer.write(&line(a.position)) {
                return self.fail(e);
            }
            a.position += 1;
        }
    }

    fn checkpoint(&mut self) {
        let Some(a) = &mut self.running else { return };
        if a.in_flight.is_some() {
            return;
        }
        let n = self.next_checkpoint;
        self.next_checkpoint += 1;
        match a.writer.barrier(n) {
            Ok(snap) => {
                if let Some(c) = snap.committable {
                    a.pending.push((c, a.txn_start..a.position));
                }
                a.txn_start = a.position;
                a.in_flight = Some((n, a.position, a.pending.clone(), snap.state));
            }
            Err(e) => self.fail(e),
        }
    }

    /// The in-flight checkpoint completes; `notify` delivers notifyCheckpointComplete.
    fn complete(&mut self, notify: bool) {
        let Some(a) = &mut self.running else { return };
        let Some((n, position, committables, state)) = a.in_flight.take() else { return };
        self.completed.insert(n, Completed { position, committables, writer_states: state.into_iter().collect() });
        if notify {
            self.notify();
        }
    }

    /// notifyCheckpointComplete of the latest completed checkpoint: commits what it covers.
    fn notify(&mut self) {
        let Some(latest) = self.completed.keys().next_back().copied() else { return };
        let Some(a) = &mut self.running else { return };
        let (due, later): (Vec<Staged>, Vec<Staged>) = a.pending.drain(..).partition(|(c, _)| c.checkpoint <= latest);
        a.pending = later;
        for (c, range) in due {
            let producer = a.writer.take_precommitted(&c.transactional_id);
            match a.committer.commit(&c, producer) {
                Ok(CommitOutcome::Committed) => {}
                Ok(lost) => self.lost.push((lost, range)),
                Err(e) => return self.fail(e),
            }
        }
    }

    /// A checkpoint that failed after the sink saw its barrier (expired, declined).
    fn fail_checkpoint(&mut self) {
        if let Some(a) = &mut self.running {
            a.in_flight = None;
        }
    }

    fn kill(&mut self) {
        self.running = None;
    }

    /// Starts a new attempt after `downtime`, from the latest completed checkpoint.
    fn restart(&mut self, downtime: Duration) {
        if self.running.is_some() {
            return;
        }
        self.advance(downtime);
        let latest = self.completed.iter().next_back();
        let restored = RestoredSink {
            checkpoint: latest.map(|(n, _)| *n),
            writer_states: latest.map(|(_, c)| c.writer_states.clone()).unwrap_or_default(),
        };
        let position = latest.map_or(0, |(_, c)| c.position);
        let staged: Vec<Staged> = latest.map(|(_, c)| c.committables.clone()).unwrap_or_default();
        let factory: Arc<dyn ProducerFactory> = self.factory.clone();
        let mut committer = KafkaCommitter::new(factory.clone());
        let committables: Vec<KafkaCommittable> = staged.iter().map(|(c, _)| c.clone()).collect();
        match committer.recover(&committables) {
            Ok(outcomes) => {
                for (outcome, (_, range)) in outcomes.into_iter().zip(staged) {
                    if outcome != CommitOutcome::Committed {
                        self.lost.push((outcome, range));
                    }
                }
            }
            Err(e) => return self.failures.push(e),
        }
        match KafkaSinkWriter::new(&self.settings, 0, 1, factory, &restored) {
            Ok(writer) => {
                self.running =
                    Some(Attempt { writer, committer, position, txn_start: position, pending: Vec::new(), in_flight: None });
            }
            Err(e) => self.failures.push(e),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.log.tick(self.now);
    }

    /// Ends the schedule: a running job with every line of a completed checkpoint committed.
    fn finish(&mut self) {
        for _ in 0..4 {
            self.restart(Duration::ZERO);
            self.complete(true);
            self.checkpoint();
            self.complete(true);
            if self.running.is_some() {
                return;
            }
        }
        panic!("the job does not come back: {:?}", self.failures);
    }

    fn final_position(&self) -> usize {
        self.completed.values().next_back().map_or(0, |c| c.position)
    }

    fn read(&self, isolation: IsolationLevel) -> Vec<String> {
        self.log.read(0, 0, isolation, usize::MAX).unwrap().records.into_iter().map(|r| r.value).collect()
    }

    fn lost_lines(&self) -> BTreeSet<usize> {
        self.lost.iter().flat_map(|(_, r)| r.clone()).collect()
    }
}

fn lines(range: impl Iterator<Item = usize>) -> Vec<String> {
    range.map(line).collect()
}

#[test]
fn a_kill_between_pre_commit_and_commit_is_committed_once_by_the_restore() {
    let mut job = Job::new(DeliveryGuarantee::ExactlyOnce, 0);
    job.write(3);
    job.checkpoint();
    job.complete(false);
    assert!(job.read(IsolationLevel::ReadCommitted).is_empty(), "pre-committed, not committed");
    job.kill();
    job.restart(Duration::from_secs(5));
    assert_eq!(job.read(IsolationLevel::ReadCommitted), lines(0..3));
    job.write(2);
    job.finish();
    assert_eq!(job.read(IsolationLevel::ReadCommitted), lines(0..5));
    assert!(job.log.markers().iter().all(|((_, commit), n)| !commit || *n == 1), "each transaction committed once");
}

#[test]
fn a_kill_after_the_commit_makes_the_restores_re_commit_a_no_op() {
    let mut job = Job::new(DeliveryGuarantee::ExactlyOnce, 0);
    job.write(3);
    job.checkpoint();
    job.complete(true);
    let markers = job.log.markers();
    job.kill();
    job.restart(Duration::from_secs(5));
    assert_eq!(job.log.markers(), markers, "the re-commit wrote no marker");
    assert!(job.lost.is_empty());
    job.finish();
    assert_eq!(job.read(IsolationLevel::ReadCommitted), lines(0..3), "no duplicate");
}

#[test]
fn a_downtime_longer_than_the_transaction_timeout_loses_exactly_that_transactions_lines() {
    let mut job = Job::new(DeliveryGuarantee::ExactlyOnce, 0);
    job.write(2);
    job.checkpoint();
    job.complete(true);
    job.write(3);
    job.checkpoint();
    job.complete(false);
    job.kill();
    job.restart(Duration::from_secs(600));
    let events: Vec<String> = job.log.take_events().iter().filter(|e| matches!(e, TxnEvent::AbortedOnTimeout { .. })).map(|e| e.to_string()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("transaction ckptlab-0-2 aborted by the coordinator: open for 70000 ms > transaction.timeout.ms 60000"), "{events:?}");
    assert_eq!(job.lost.len(), 1);
    let (outcome, range) = &job.lost[0];
    assert!(matches!(outcome, CommitOutcome::Lost { cause: LossCause::TimedOut, during_recovery: true, .. }));
    assert!(outcome.to_string().starts_with("output lost: transaction timed out while the job was down (ckptlab-0-2: 3 lines of checkpoint 2)"), "{outcome}");
    assert_eq!(*range, 2..5);
    job.write(1);
    job.finish();
    assert_eq!(job.read(IsolationLevel::ReadCommitted), lines([0, 1, 5].into_iter()));
}

#[test]
fn a_second_sink_with_the_same_prefix_fences_the_first_with_a_typed_error() {
    let log = Arc::new(TransactionalLog::new(BrokerSettings::default()));
    let mut first = Job::on(log.clone(), DeliveryGuarantee::ExactlyOnce, 0, "shared");
    first.write(2);
    first.checkpoint();
    first.complete(true);
    first.write(1);
    let _second = Job::on(log, DeliveryGuarantee::ExactlyOnce, 0, "shared");
    first.write(1);
    assert!(first.running.is_none(), "the first sink failed at once");
    assert!(
        matches!(first.failures.as_slice(), [SinkError::Producer(e)] if e.is_fenced()),
        "fenced, not hung: {:?}",
        first.failures
    );
}

#[test]
fn a_lingering_transaction_of_a_killed_attempt_is_aborted_at_restore_and_stops_holding_the_lso() {
    let mut job = Job::new(DeliveryGuarantee::ExactlyOnce, 0);
    job.write(2);
    job.checkpoint();
    job.complete(true);
    job.write(3);
    job.kill();
    assert_eq!(job.log.last_stable_offset(0), Some(3), "the killed attempt's transaction holds the LSO (2 records + marker)");
    job.restart(Duration::from_secs(1));
    assert_eq!(job.log.last_stable_offset(0), job.log.high_watermark(0), "aborted by the probe");
    let fates: Vec<Fate> = job.log.read(0, 0, IsolationLevel::ReadUncommitted, 100).unwrap().records.iter().map(|r| r.fate).collect();
    assert_eq!(fates, [Fate::Committed, Fate::Committed, Fate::Aborted, Fate::Aborted, Fate::Aborted]);
    assert_eq!(job.running.as_ref().unwrap().writer.aborted_at_start(), ["ckptlab-0-2"]);
}

/// A fresh start (nothing restored) with the prefix of a job that died with an open transaction
/// (a job before it on this broker, as `ckptlab bench` runs them): the probe starts at checkpoint
/// 1 (restored id `CheckpointIDCounter.INITIAL_CHECKPOINT_ID - 1`, ExactlyOnceKafkaWriter.java
/// :167-170, 194-196) and walks the previous job's ids up to the first unused one, aborting its
/// lingering transaction (TransactionAbortStrategyImpl.PROBING).
/// Catches: a fresh writer that probes only from a restored checkpoint, leaving the previous
/// job's transaction to hold the last stable offset until `transaction.timeout.ms`.
#[test]
fn a_fresh_start_aborts_a_previous_jobs_lingering_transaction_of_its_prefix() {
    let log = Arc::new(TransactionalLog::new(BrokerSettings::default()));
    let mut before = Job::on(log.clone(), DeliveryGuarantee::ExactlyOnce, 0, "bench");
    before.write(2);
    before.checkpoint();
    before.complete(true);
    before.write(3);
    before.kill();
    assert!(log.last_stable_offset(0) < log.high_watermark(0), "the dead job's transaction holds the LSO");
    let fresh = Job::on(log.clone(), DeliveryGuarantee::ExactlyOnce, 0, "bench");
    assert_eq!(log.last_stable_offset(0), log.high_watermark(0), "aborted by the fresh start's probe");
    assert_eq!(fresh.running.as_ref().expect("runs").writer.aborted_at_start(), ["bench-0-1", "bench-0-2"]);
}

#[test]
fn a_restore_with_a_new_prefix_also_aborts_the_old_prefixs_transactions() {
    let mut job = Job::new(DeliveryGuarantee::ExactlyOnce, 0);
    job.write(2);
    job.checkpoint();
    job.complete(true);
    job.write(1);
    job.kill();
    job.settings.transactional_id_prefix = Some("renamed".into());
    job.restart(Duration::ZERO);
    assert_eq!(job.log.last_stable_offset(0), job.log.high_watermark(0));
    assert!(job.log.open_transactions("ckptlab").is_empty());
}

#[test]
fn none_loses_what_the_producer_had_queued_at_a_kill_and_at_least_once_does_not() {
    for (guarantee, kept) in [(DeliveryGuarantee::None, false), (DeliveryGuarantee::AtLeastOnce, true)] {
        let mut job = Job::new(guarantee, 5);
        job.write(2);
        job.checkpoint();
        job.complete(true);
        job.kill();
        job.finish();
        assert_eq!(job.read(IsolationLevel::ReadUncommitted) == lines(0..2), kept, "{guarantee}");
    }
}

#[test]
fn at_least_once_repeats_the_lines_written_after_the_restored_checkpoint() {
    let mut job = Job::new(DeliveryGuarantee::AtLeastOnce, 0);
    job.write(2);
    job.checkpoint();
    job.complete(true);
    job.write(2);
    job.kill();
    job.restart(Duration::ZERO);
    job.write(2);
    job.finish();
    assert_eq!(job.read(IsolationLevel::ReadCommitted), lines([0, 1, 2, 3, 2, 3].into_iter()), "visible at once, no transactions");
}

#[test]
fn exactly_once_without_a_prefix_is_refused_with_flinks_message() {
    let log = Arc::new(TransactionalLog::new(BrokerSettings::default()));
    let factory: Arc<dyn ProducerFactory> = Arc::new(EmbeddedProducers { log, timeout: TIMEOUT, linger: 0 });
    let settings = KafkaSinkSettings { delivery_guarantee: DeliveryGuarantee::ExactlyOnce, transactional_id_prefix: None };
    let err = KafkaSinkWriter::new(&settings, 0, 1, factory, &RestoredSink::default()).err().expect("refused");
    assert_eq!(err, SinkError::MissingTransactionalIdPrefix);
    assert!(err.to_string().starts_with("EXACTLY_ONCE delivery guarantee requires a transactionalIdPrefix"));
}

#[test]
fn the_kafka_sinks_default_timeout_is_refused_by_a_broker_at_its_default_maximum() {
    let log = Arc::new(TransactionalLog::new(BrokerSettings::default()));
    let factory: Arc<dyn ProducerFactory> = Arc::new(EmbeddedProducers { log, timeout: DEFAULT_TRANSACTION_TIMEOUT, linger: 0 });
    let settings = KafkaSinkSettings { delivery_guarantee: DeliveryGuarantee::ExactlyOnce, transactional_id_prefix: Some("p".into()) };
    let err = KafkaSinkWriter::new(&settings, 0, 1, factory, &RestoredSink::default()).err().expect("refused");
    assert_eq!(err, SinkError::Producer(TxnError::InvalidTransactionTimeout { timeout_ms: 3_600_000, max_ms: Some(900_000) }));
    assert!(err.to_string().starts_with("org.apache.kafka.common.KafkaException: Unexpected error in InitProducerIdResponse; The transaction timeout is larger than the maximum value allowed by the broker (as configured by transaction.max.timeout.ms)."), "{err}");
}

#[test]
fn skipped_checkpoint_ids_are_initialised_so_the_probe_does_not_stop_at_the_gap() {
    let mut job = Job::new(DeliveryGuarantee::ExactlyOnce, 0);
    job.write(1);
    job.checkpoint();
    job.complete(true);
    job.next_checkpoint += 2; // checkpoints 2 and 3 never reached the sink
    job.write(1);
    job.checkpoint(); // checkpoint 4 closes the transaction named 2, opens 5 after initialising 3 and 4
    job.write(1);
    job.kill();
    job.restart(Duration::ZERO);
    assert_eq!(job.log.last_stable_offset(0), job.log.high_watermark(0), "ckptlab-0-5's transaction was found past the gap");
}

// ---- the property ----

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    Checkpoint,
    Complete { notify: bool },
    Notify,
    FailCheckpoint,
    SkipCheckpointId,
    Kill,
    Restart { downtime_s: u64 },
    Advance { s: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..4usize).prop_map(Op::Write),
        3 => Just(Op::Checkpoint),
        3 => any::<bool>().prop_map(|notify| Op::Complete { notify }),
        1 => Just(Op::Notify),
        1 => Just(Op::FailCheckpoint),
        1 => Just(Op::SkipCheckpointId),
        1 => Just(Op::Kill),
        2 => prop_oneof![Just(0u64), Just(30), Just(200)].prop_map(|downtime_s| Op::Restart { downtime_s }),
        1 => (0..90u64).prop_map(|s| Op::Advance { s }),
    ]
}

fn guarantee() -> impl Strategy<Value = DeliveryGuarantee> {
    prop_oneof![Just(DeliveryGuarantee::None), Just(DeliveryGuarantee::AtLeastOnce), Just(DeliveryGuarantee::ExactlyOnce)]
}

fn run(guarantee: DeliveryGuarantee, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut job = Job::new(guarantee, 2);
    for op in ops {
        match op {
            Op::Write(n) => job.write(n),
            Op::Checkpoint => job.checkpoint(),
            Op::Complete { notify } => job.complete(notify),
            Op::Notify => job.notify(),
            Op::FailCheckpoint => job.fail_checkpoint(),
            Op::SkipCheckpointId => job.next_checkpoint += 1,
            Op::Kill => job.kill(),
            Op::Restart { downtime_s } => job.restart(Duration::from_secs(downtime_s)),
            Op::Advance { s } => job.advance(Duration::from_secs(s)),
        }
    }
    job.finish();
    let total = job.final_position();
    let committed = job.read(IsolationLevel::ReadCommitted);
    match guarantee {
        DeliveryGuarantee::ExactlyOnce => {
            let timed_out: BTreeSet<(String, ProducerIdAndEpoch)> = job
                .log
                .take_events()
                .into_iter()
                .filter_map(|e| match e {
                    TxnEvent::AbortedOnTimeout { transactional_id, producer, .. } => Some((transactional_id, producer)),
                    _ => None,
                })
                .collect();
            for (outcome, _) in &job.lost {
                let CommitOutcome::Lost { committable: c, cause, .. } = outcome else { unreachable!("only losses are kept") };
                prop_assert_eq!(*cause, LossCause::TimedOut, "a loss with no timeout: {}", outcome);
                prop_assert!(
                    timed_out.contains(&(c.transactional_id.clone(), c.producer)),
                    "{} was reported lost but the coordinator never aborted it",
                    c.transactional_id
                );
            }
            let lost = job.lost_lines();
            let expected = lines((0..total).filter(|i| !lost.contains(i)));
            prop_assert_eq!(committed, expected, "read_committed: every line once, in order, but the lost transactions' (lost: {:?})", lost);
            // The output verdict says the same: no repeat, and the only gaps are the lost
            // transactions' lines, each lost by the timeout.
            let records = |iso| job.log.read(0, 0, iso, usize::MAX).unwrap().records;
            let producers = timed_out.iter().map(|(_, p)| *p).collect();
            let truth = BTreeMap::from([("k".to_string(), total as u64)]);
            let (rc, _) = super::verdict::judge(
                &truth,
                &records(IsolationLevel::ReadCommitted),
                &records(IsolationLevel::ReadUncommitted),
                &producers,
                true,
                crate::config::KeyBy::Record,
            );
            prop_assert_eq!((rc.gaps, rc.repeated, rc.lost_by_timeout), (lost.len() as u64, 0, lost.len() as u64), "the read_committed verdict");
            for ((producer, commit), n) in job.log.markers() {
                prop_assert!(!commit || n == 1, "{} committed {} times", producer, n);
            }
        }
        DeliveryGuarantee::AtLeastOnce => {
            let seen: BTreeSet<&String> = committed.iter().collect();
            for l in lines(0..total) {
                prop_assert!(seen.contains(&l), "at-least-once lost {}", l);
            }
        }
        DeliveryGuarantee::None => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn read_committed_has_no_gap_and_no_repeat_but_a_timed_out_transactions_lines(
        guarantee in guarantee(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(guarantee, ops)?;
    }
}

/// Records/s of the sink on the embedded log per delivery guarantee (a checkpoint every 1000
/// lines). `cargo test --release --lib kafka_sink::scenarios::embedded_throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn embedded_throughput() {
    for guarantee in [DeliveryGuarantee::None, DeliveryGuarantee::AtLeastOnce, DeliveryGuarantee::ExactlyOnce] {
        let mut job = Job::new(guarantee, 100);
        let n = 200_000;
        let start = std::time::Instant::now();
        for _ in 0..n / 1000 {
            job.write(1000);
            job.checkpoint();
            job.complete(true);
        }
        let secs = start.elapsed().as_secs_f64();
        let visible = job.read(IsolationLevel::ReadCommitted).len();
        println!("embedded {guarantee}: {:.0} records/s ({visible} of {n} visible at read_committed)", n as f64 / secs);
    }
}
