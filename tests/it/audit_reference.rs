//! The incremental auditor against a naive reference: the per-record auditor ckptlab had before
//! (one entry per record and subtask, a walk of the whole topic per verdict), kept here, fed the
//! same calls on random schedules of a simulated engine: records delivered to their subtask in
//! order per partition, snapshots at each subtask's own moment (so a checkpoint may hold records past
//! its offsets, as at-least-once does, or miss some before them, as a broken engine would), failures
//! that drop what was in flight, restores from the latest or an older checkpoint or from nothing
//! (offset reset earliest or latest), channel state replayed below the start, repeated and missing
//! output lines, a broker that loses every record it had (a Kafka broker restarted empty: the
//! sources go on at its new log start). Every figure both compute must agree, per key, and the
//! records the broker lost are lost with that cause.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::time::Instant;

use ckptlab::audit::{key_of, AppliedBatch, Auditor, Verdict};
use ckptlab::state::KeyIdMap;
use ckptlab::cluster::element::Origin;
use ckptlab::config::KeyBy;
use ckptlab::connectors::{EmbeddedTopic, Topic};
use ckptlab::events::EventBus;
use ckptlab::keygroup::{key_group, operator_index};
use proptest::prelude::*;

type Shadow = HashMap<Origin, u32>;

/// The reference: ckptlab's auditor as it was before it became incremental (figures only).
struct Naive {
    topic: Arc<dyn Topic>,
    parallelism: usize,
    attempt: u64,
    deployed: bool,
    baseline: Vec<u64>,
    start: Vec<u64>,
    position: Vec<u64>,
    live: Vec<Shadow>,
    published: Vec<HashMap<Arc<str>, u64>>,
    parts: BTreeMap<u64, Vec<Option<Shadow>>>,
    completed: BTreeMap<u64, Vec<Shadow>>,
    emitted: HashSet<Origin>,
    repeated: HashMap<String, u64>,
}

impl Naive {
    fn new(topic: Arc<dyn Topic>, parallelism: usize) -> Self {
        let n = topic.partitions() as usize;
        Naive {
            topic,
            parallelism,
            attempt: 0,
            deployed: false,
            baseline: vec![0; n],
            start: vec![0; n],
            position: vec![0; n],
            live: vec![Shadow::new(); parallelism],
            published: vec![HashMap::new(); parallelism],
            parts: BTreeMap::new(),
            completed: BTreeMap::new(),
            emitted: HashSet::new(),
            repeated: HashMap::new(),
        }
    }
    fn deploy(&mut self, attempt: u64, start: &[u64], checkpoint: Option<u64>) {
        self.attempt = attempt;
        if !self.deployed {
            self.baseline = start.to_vec();
            self.deployed = true;
        }
        self.start = start.to_vec();
        self.position = start.to_vec();
        self.live = match checkpoint.and_then(|c| self.completed.get(&c)) {
            Some(s) => s.clone(),
            None => vec![Shadow::new(); self.parallelism],
        };
        self.published = vec![HashMap::new(); self.parallelism];
    }
    fn restored(&mut self, subtask: usize, entries: Vec<(Arc<str>, u64)>) {
        self.published[subtask] = entries.into_iter().collect();
    }
    fn applied(&mut self, subtask: usize, origin: Origin, key: &Arc<str>, count: u64) {
        *self.live[subtask].entry(origin).or_insert(0) += 1;
        self.published[subtask].insert(key.clone(), count);
    }
    fn snapshot(&mut self, subtask: usize, checkpoint: u64) {
        let shadow = self.live[subtask].clone();
        let n = self.parallelism;
        self.parts.entry(checkpoint).or_insert_with(|| vec![None; n])[subtask] = Some(shadow);
    }
    fn completed(&mut self, checkpoint: u64) {
        if let Some(parts) = self.parts.remove(&checkpoint) {
            self.completed.insert(checkpoint, parts.into_iter().map(Option::unwrap_or_default).collect());
        }
        self.parts = self.parts.split_off(&checkpoint);
    }
    fn emitted(&mut self, origin: Origin, key: &str) {
        if !self.emitted.insert(origin) {
            *self.repeated.entry(key.to_string()).or_insert(0) += 1;
        }
    }
    /// Per key: (expected, state, lost, overcounted, repeated output, output gaps).
    fn verdict(&self) -> BTreeMap<String, (u64, u64, u64, u64, u64, u64)> {
        let mut keys: BTreeMap<String, (u64, u64, u64, u64, u64, usize, u64)> = BTreeMap::new();
        let mut values = Vec::new();
        for p in 0..self.topic.partitions() {
            let len = self.topic.len(p);
            let base = self.baseline[p as usize];
            values.clear();
            self.topic.read(p, base, (len - base.min(len)) as usize, &mut values);
            for (i, value) in values.iter().enumerate() {
                let offset = base + i as u64;
                let key = key_of(value, KeyBy::Record);
                let subtask = operator_index(key_group(key), self.parallelism);
                let e = keys.entry(key.to_string()).or_insert((0, 0, 0, 0, 0, subtask, 0));
                let c = u64::from(self.live[subtask].get(&Origin { partition: p, offset }).copied().unwrap_or(0));
                if offset < self.position[p as usize] {
                    e.0 += 1;
                }
                if offset < self.start[p as usize] && c == 0 {
                    e.2 += 1;
                }
                e.3 += c.saturating_sub(1);
                let origin = Origin { partition: p, offset };
                if !self.emitted.is_empty() && c > 0 && offset < self.position[p as usize] && !self.emitted.contains(&origin) {
                    e.6 += 1;
                }
            }
        }
        keys.iter_mut()
            .map(|(k, e)| {
                let state = self.published[e.5].get(k.as_str()).copied().unwrap_or(0);
                let repeated = self.repeated.get(k).copied().unwrap_or(0);
                (k.clone(), (e.0, state, e.2, e.3, repeated, e.6))
            })
            .collect()
    }
}

/// One step of the simulated engine.
#[derive(Debug, Clone)]
enum Op {
    /// Produce records with these key indices (round-robin partitions).
    Produce(Vec<u8>),
    /// The sources pass up to this many records of every partition.
    Advance(u8),
    /// Subtask `s` applies up to `n` of the records delivered to it, in order per partition.
    Apply { subtask: u8, n: u8, emit_twice: bool, skip_line: bool },
    /// Subtask `s` snapshots for the open checkpoint.
    Snapshot(u8),
    /// The open checkpoint completes (with the sources' offsets when it was opened).
    Complete,
    /// A checkpoint is opened at the sources' current offsets.
    Open,
    /// Retention asks the auditor how far it may free the topic (the auditor seals stretches).
    Seal,
    /// Failure and restore: from the latest completed checkpoint, an older one, or nothing.
    Restore { older: bool, from_nothing: bool, earliest: bool, replay_channel_state: u8 },
    /// The broker loses every record produced so far (restarted empty): the auditor still knows
    /// them, no source can read them any more.
    BrokerLoss,
}

/// The operations, with or without a broker that loses its log (`BrokerLoss`).
fn op_with(broker_loss: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::collection::vec(0u8..6, 1..6).prop_map(Op::Produce),
        3 => (1u8..6).prop_map(Op::Advance),
        5 => (0u8..2, 1u8..6, proptest::bool::weighted(0.1), proptest::bool::weighted(0.1))
            .prop_map(|(subtask, n, emit_twice, skip_line)| Op::Apply { subtask, n, emit_twice, skip_line }),
        2 => (0u8..2).prop_map(Op::Snapshot),
        1 => Just(Op::Open),
        1 => Just(Op::Complete),
        1 => Just(Op::Seal),
        1 => (proptest::bool::weighted(0.2), proptest::bool::weighted(0.2), any::<bool>(), 0u8..4)
            .prop_map(|(older, from_nothing, earliest, replay_channel_state)| Op::Restore { older, from_nothing, earliest, replay_channel_state }),
        broker_loss => Just(Op::BrokerLoss),
    ]
}

/// The engine's operations without broker losses: what CI checks against the reference.
fn op() -> impl Strategy<Value = Op> {
    op_with(0)
}

/// With broker losses (issue 20 §3): a broker may lose its log several times in one run.
fn op_with_broker_loss() -> impl Strategy<Value = Op> {
    op_with(1)
}

const PARTITIONS: u32 = 2;
const PARALLELISM: usize = 2;

/// The simulated engine: the same calls reach both auditors.
struct Sim {
    topic: Arc<EmbeddedTopic>,
    real: Auditor,
    naive: Naive,
    attempt: u64,
    position: Vec<u64>,
    /// Per subtask and partition: the next offset to look at for delivery.
    cursor: Vec<Vec<u64>>,
    /// Per subtask and partition: records below the start replayed from channel state first.
    replay: Vec<Vec<Vec<u64>>>,
    counts: Vec<HashMap<Arc<str>, u64>>,
    /// Per subtask, its backend's key ids: numbered anew by each attempt (restored keys first, in
    /// the restored map's order), as the heap backend does, so a slot kept from another attempt's
    /// ids would put a record on another key.
    ids: Vec<KeyIdMap>,
    snapshots: HashMap<u64, Vec<HashMap<Arc<str>, u64>>>,
    open: Option<(u64, Vec<u64>)>,
    next_checkpoint: u64,
    completed: Vec<(u64, Vec<u64>)>,
    /// Per partition, where the broker's log starts: below it no source reads.
    log_start: Vec<u64>,
    /// Per partition, the offsets the sources went past because the broker had lost them.
    skipped: Vec<Vec<(u64, u64)>>,
    /// Per partition, what the broker lost that a source still needed: from where the attempt's
    /// losses were not tallied yet (its start: records in flight are in it) to where it went on.
    broker_ranges: Vec<Vec<(u64, u64)>>,
}

impl Sim {
    fn new() -> Self {
        let topic = EmbeddedTopic::new("t", PARTITIONS, EventBus::new(Instant::now()));
        let dyn_topic: Arc<dyn Topic> = topic.clone();
        let mut s = Sim {
            real: Auditor::new(true, dyn_topic.clone(), PARALLELISM, KeyBy::Record),
            naive: Naive::new(dyn_topic, PARALLELISM),
            topic,
            attempt: 0,
            position: vec![0; PARTITIONS as usize],
            cursor: vec![vec![0; PARTITIONS as usize]; PARALLELISM],
            replay: vec![vec![Vec::new(); PARTITIONS as usize]; PARALLELISM],
            counts: vec![HashMap::new(); PARALLELISM],
            ids: (0..PARALLELISM).map(|_| KeyIdMap::default()).collect(),
            snapshots: HashMap::new(),
            open: None,
            next_checkpoint: 1,
            completed: Vec::new(),
            log_start: vec![0; PARTITIONS as usize],
            skipped: vec![Vec::new(); PARTITIONS as usize],
            broker_ranges: vec![Vec::new(); PARTITIONS as usize],
        };
        s.deploy(vec![0; PARTITIONS as usize], None);
        s
    }

    fn deploy(&mut self, start: Vec<u64>, checkpoint: Option<u64>) {
        self.attempt += 1;
        self.real.deploy(self.attempt, &start, checkpoint);
        self.naive.deploy(self.attempt, &start, checkpoint);
        self.position = start.clone();
        self.counts = match checkpoint.and_then(|c| self.snapshots.get(&c)) {
            Some(c) => c.clone(),
            None => vec![HashMap::new(); PARALLELISM],
        };
        for s in 0..PARALLELISM {
            self.cursor[s] = start.clone();
            self.replay[s] = vec![Vec::new(); PARTITIONS as usize];
            let entries: Vec<(Arc<str>, u64)> = self.counts[s].iter().map(|(k, v)| (k.clone(), *v)).collect();
            self.ids[s] = KeyIdMap::default();
            for (k, _) in &entries {
                self.ids[s].id(k);
            }
            self.real.restored(self.attempt, s, entries.clone());
            self.naive.restored(s, entries);
        }
        self.open = None;
    }

    /// A source whose position the broker lost goes on at the log start (on its first read).
    fn reset_lost_positions(&mut self) {
        for p in 0..PARTITIONS {
            let pi = p as usize;
            if self.position[pi] < self.log_start[pi] {
                let (from, to) = (self.position[pi], self.log_start[pi]);
                self.real.source_reset(self.attempt, p, from, to);
                self.skipped[pi].push((from, to));
                self.broker_ranges[pi].push((self.naive.start[pi].min(from), to));
                self.naive.start[pi] = to;
                self.naive.position[pi] = to;
                self.position[pi] = to;
            }
        }
    }

    fn value(&self, p: u32, o: u64) -> Arc<str> {
        let mut out = Vec::new();
        self.topic.read(p, o, 1, &mut out);
        out.pop().expect("record exists")
    }

    fn owner(key: &str) -> usize {
        operator_index(key_group(key), PARALLELISM)
    }

    fn apply(&mut self, s: usize, n: usize, emit_twice: bool, skip_line: bool) {
        // As a counter subtask does: one batch per buffer, aggregated per key (its fast path when
        // the records lie past everything applied, record by record otherwise).
        let mut batch = AppliedBatch::default();
        for _ in 0..n {
            // Channel state first, then records in order from the cursor, this subtask's only.
            let mut next = None;
            for p in 0..PARTITIONS as usize {
                if let Some(o) = self.replay[s][p].first().copied() {
                    self.replay[s][p].remove(0);
                    next = Some((p as u32, o));
                    break;
                }
            }
            if next.is_none() {
                'find: for p in 0..PARTITIONS as usize {
                    while self.cursor[s][p] < self.position[p] {
                        // Records the source went past were never sent.
                        if let Some(&(_, to)) = self.skipped[p].iter().find(|(a, b)| (*a..*b).contains(&self.cursor[s][p])) {
                            self.cursor[s][p] = to;
                            continue;
                        }
                        let o = self.cursor[s][p];
                        self.cursor[s][p] += 1;
                        if Self::owner(&self.value(p as u32, o)) == s {
                            next = Some((p as u32, o));
                            break 'find;
                        }
                    }
                }
            }
            let Some((p, o)) = next else { break };
            let key = self.value(p, o);
            let count = self.counts[s].entry(key.clone()).or_insert(0);
            *count += 1;
            let origin = Origin { partition: p, offset: o };
            batch.push(origin, self.ids[s].id(&key), *count);
            self.naive.applied(s, origin, &key, *count);
            if !skip_line {
                self.real.emitted(origin, &key);
                self.naive.emitted(origin, &key);
                if emit_twice {
                    self.real.emitted(origin, &key);
                    self.naive.emitted(origin, &key);
                }
            }
        }
        self.real.applied_batch(self.attempt, s, &mut batch, self.ids[s].ids());
        assert!(batch.is_empty(), "the auditor empties the batch it applied");
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Produce(keys) => {
                for k in keys {
                    self.topic.produce(&format!("k{k}"), None).expect("embedded topic");
                }
            }
            Op::Advance(n) => {
                self.reset_lost_positions();
                for p in 0..PARTITIONS {
                    let to = (self.position[p as usize] + u64::from(*n)).min(self.topic.len(p));
                    self.position[p as usize] = to;
                    self.real.source_advanced(self.attempt, p, to);
                    self.naive.position[p as usize] = to;
                }
            }
            Op::Apply { subtask, n, emit_twice, skip_line } => self.apply(*subtask as usize, *n as usize, *emit_twice, *skip_line),
            Op::Seal => {
                for p in 0..PARTITIONS {
                    // Only its side effect matters here: the figures must not change.
                    let _ = self.real.retain_floor(p);
                }
            }
            Op::Open => {
                if self.open.is_none() {
                    self.open = Some((self.next_checkpoint, self.position.clone()));
                    self.next_checkpoint += 1;
                }
            }
            Op::Snapshot(s) => {
                if let Some((id, _)) = self.open.clone() {
                    let s = *s as usize;
                    self.real.snapshot(self.attempt, s, id);
                    self.naive.snapshot(s, id);
                    let n = PARALLELISM;
                    let counts = self.counts[s].clone();
                    self.snapshots.entry(id).or_insert_with(|| vec![HashMap::new(); n])[s] = counts;
                }
            }
            Op::Complete => {
                if let Some((id, offsets)) = self.open.take() {
                    self.real.checkpoint_completed(id);
                    self.naive.completed(id);
                    self.completed.push((id, offsets));
                }
            }
            Op::BrokerLoss => {
                for p in 0..PARTITIONS as usize {
                    self.log_start[p] = self.topic.len(p as u32);
                }
            }
            Op::Restore { older, from_nothing, earliest, replay_channel_state } => {
                let chosen = if *from_nothing {
                    None
                } else if *older && self.completed.len() > 1 {
                    Some(self.completed[self.completed.len() - 2].clone())
                } else {
                    self.completed.last().cloned()
                };
                match chosen {
                    Some((id, offsets)) => {
                        self.deploy(offsets.clone(), Some(id));
                        // Unaligned: a few records just below the offsets come back from channel state.
                        for p in 0..PARTITIONS as usize {
                            let lo = offsets[p].saturating_sub(u64::from(*replay_channel_state));
                            for o in lo..offsets[p] {
                                // Only records the sources sent: not those they went past.
                                if self.skipped[p].iter().any(|(a, b)| (*a..*b).contains(&o)) {
                                    continue;
                                }
                                let s = Self::owner(&self.value(p as u32, o));
                                self.replay[s][p].push(o);
                            }
                        }
                    }
                    None => {
                        let start =
                            (0..PARTITIONS).map(|p| if *earliest { self.log_start[p as usize] } else { self.topic.len(p) }).collect();
                        self.deploy(start, None);
                    }
                }
                self.reset_lost_positions();
            }
        }
    }
}

fn figures(v: &Verdict) -> BTreeMap<String, (u64, u64, u64, u64, u64, u64)> {
    v.keys
        .iter()
        .filter(|(_, k)| k.expected + k.state + k.lost + k.overcounted + k.repeated_output + k.output_gaps > 0)
        .map(|(k, kv)| (k.clone(), (kv.expected, kv.state, kv.lost, kv.overcounted, kv.repeated_output, kv.output_gaps)))
        .collect()
}

/// Every total of a verdict, and whether it is consistent.
#[allow(clippy::type_complexity)]
fn totals_of(v: &Verdict) -> ((u64, u64, u64, u64, u64, u64, u64), (u64, i64, u64, u64, u64, u64, bool)) {
    (
        (v.produced, v.expected, v.state, v.lost, v.lost_no_checkpoint, v.lost_by_restore, v.lost_by_broker),
        (v.overcounted, v.in_flight, v.unread, v.repeated_output, v.output_lines, v.output_gaps, v.consistent),
    )
}

/// The incremental verdict equals the per-record reference after every step of `ops`.
fn check_against_reference(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut sim = Sim::new();
    for (i, op) in ops.iter().enumerate() {
        sim.step(op);
        // Compare after every step, not only at the end: live figures too.
        let real = sim.real.verdict();
        let naive = sim.naive.verdict();
        let naive: BTreeMap<_, _> = naive.into_iter().filter(|(_, f)| f.0 + f.1 + f.2 + f.3 + f.4 + f.5 > 0).collect();
        prop_assert_eq!(figures(&real), naive, "after step {} ({:?})", i, op);
        // The totals alone and a page of rows come from the same table as the whole verdict.
        let totals = sim.real.verdict_totals();
        prop_assert_eq!(totals_of(&totals), totals_of(&real), "totals after step {} ({:?})", i, op);
        prop_assert_eq!(totals.key_count, real.keys.len());
        // The incrementally kept totals are the sums of the rows.
        let sum = |f: fn(&ckptlab::audit::KeyVerdict) -> u64| real.keys.values().map(f).sum::<u64>();
        prop_assert_eq!(
            (real.expected, real.state, real.lost, real.overcounted, real.repeated_output, real.output_gaps),
            (sum(|k| k.expected), sum(|k| k.state), sum(|k| k.lost), sum(|k| k.overcounted), sum(|k| k.repeated_output), sum(|k| k.output_gaps)),
            "totals against the rows after step {} ({:?})", i, op
        );
        let page = sim.real.verdict_page(1, 3);
        let expected_page: BTreeMap<_, _> = real.keys.iter().skip(1).take(3).map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(&page.keys, &expected_page, "a page of rows after step {} ({:?})", i, op);
        prop_assert!(real.consistent, "the simulated operator counts what it applies: {:?}", real);
        prop_assert_eq!(real.lost, real.lost_no_checkpoint + real.lost_by_restore + real.lost_by_broker);
        if !ops[..=i].iter().any(|o| matches!(o, Op::BrokerLoss)) {
            prop_assert_eq!(real.lost_by_broker, 0);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(200), ..ProptestConfig::default() })]

    #[test]
    fn incremental_verdict_equals_the_per_record_reference(ops in proptest::collection::vec(op(), 1..80)) {
        check_against_reference(&ops)?;
    }

    /// The same with a broker that loses its log, once or several times (issue 20 §3).
    #[test]
    fn with_broker_losses_the_incremental_verdict_equals_the_per_record_reference(ops in proptest::collection::vec(op_with_broker_loss(), 1..80)) {
        check_against_reference(&ops)?;
    }

    /// The broker cause per key: every lost record the sources went past is lost by the broker
    /// (whenever the auditor learnt of it, and in whichever shadow it was tallied), and only
    /// records the broker lost while a source needed them are. The lost totals agree with the
    /// reference (the test above).
    #[test]
    fn the_broker_cause_is_given_to_exactly_the_records_the_broker_lost_while_needed(ops in proptest::collection::vec(op_with_broker_loss(), 1..80)) {
        check_broker_cause(&ops)?;
    }
}

/// After every step of `ops`: each key's `lost_by_broker` lies between its lost records the
/// sources went past and its lost records in what the broker lost while a source needed it.
fn check_broker_cause(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut sim = Sim::new();
    for (i, op) in ops.iter().enumerate() {
        sim.step(op);
        let real = sim.real.verdict();
        let (skipped, needed) = sim.broker_lost_bounds();
        for (key, kv) in &real.keys {
            let lo = skipped.get(key).copied().unwrap_or(0);
            let hi = needed.get(key).copied().unwrap_or(0);
            prop_assert!(
                lo <= kv.lost_by_broker && kv.lost_by_broker <= hi,
                "after step {} ({:?}): {} lost by the broker, want {}..={}: {:?}",
                i,
                op,
                key,
                lo,
                hi,
                kv
            );
        }
    }
    Ok(())
}

fn apply(subtask: u8, n: u8) -> Op {
    Op::Apply { subtask, n, emit_twice: false, skip_line: false }
}

fn restore(older: bool, from_nothing: bool) -> Op {
    Op::Restore { older, from_nothing, earliest: false, replay_channel_state: 0 }
}

/// The shrunk case of the reference property with broker losses. The broker loses its log twice
/// in one attempt; the source goes past p0@1 (k1), then past p0@3. Catches an auditor that keeps
/// only the last reset per partition: counter[1]'s delivery run p0@0 then p0@2 spanned the
/// first reset, so p0@1 read as held, and k1's lost record was counted an output gap too
/// (k1 (1, 0, 1, 0, 0, 1) against the reference's (1, 0, 1, 0, 0, 0)).
#[test]
fn a_run_never_spans_a_reset_when_the_broker_loses_its_log_twice_in_one_attempt() {
    let ops = [
        Op::Produce(vec![4]),
        Op::Advance(1),
        Op::Produce(vec![0]),
        Op::Produce(vec![1]),
        Op::BrokerLoss,
        Op::Produce(vec![0, 4]),
        Op::Advance(1),
        Op::Produce(vec![0, 0]),
        Op::BrokerLoss,
        Op::Advance(1),
        apply(1, 2),
    ];
    check_against_reference(&ops).unwrap_or_else(|e| panic!("{e}"));
    check_broker_cause(&ops).unwrap_or_else(|e| panic!("{e}"));
}

/// Another shrunk case of the reference property with broker losses: the broker loses p0@1
/// (k4) and a source goes past it; a later attempt restores a checkpoint whose channel state
/// replays p0@0 and p0@2 (k1) to counter[1]. Catches an auditor that cuts a delivery run only at
/// the current attempt's resets: the run p0@0..=2 spanned the record skipped in an earlier
/// attempt, and k4's lost record read as held and as an output gap (k4 (1, 0, 1, 0, 0, 1)).
#[test]
fn a_run_of_replayed_channel_state_never_spans_a_record_skipped_in_an_earlier_attempt() {
    let ops = [
        Op::Produce(vec![1, 0]),
        restore(false, false),
        Op::Produce(vec![4]),
        Op::BrokerLoss,
        Op::Produce(vec![0, 1]),
        Op::Advance(1),
        Op::Open,
        Op::Complete,
        Op::Restore { older: false, from_nothing: false, earliest: false, replay_channel_state: 3 },
        apply(1, 2),
    ];
    check_against_reference(&ops).unwrap_or_else(|e| panic!("{e}"));
    check_broker_cause(&ops).unwrap_or_else(|e| panic!("{e}"));
}

/// The shrunk case of the broker-cause property. The broker loses p0@0 and p1@0; a restart from
/// nothing with `latest` skips them (no source needed them: lost for want of a checkpoint);
/// checkpoint 2 keeps that shadow; a restore of the older checkpoint 1 (offsets 0) finds the
/// broker lost them (by the broker, now known); the restore of checkpoint 2 brings its shadow
/// back. Catches an auditor that keeps the cause a restored shadow was tallied with before the
/// broker's loss was known: k0 stayed `lost_no_checkpoint` while `explain` said the broker.
#[test]
fn a_record_the_broker_lost_keeps_the_broker_cause_in_a_shadow_tallied_before_that_was_known() {
    let ops = [
        Op::Open,
        Op::Complete,
        Op::Produce(vec![2]),
        Op::Produce(vec![0]),
        Op::BrokerLoss,
        restore(false, true),
        Op::Open,
        Op::Snapshot(0),
        Op::Complete,
        restore(true, false),
        restore(false, false),
    ];
    check_broker_cause(&ops).unwrap_or_else(|e| panic!("{e}"));
    check_against_reference(&ops).unwrap_or_else(|e| panic!("{e}"));
    let mut sim = Sim::new();
    for op in &ops {
        sim.step(op);
    }
    let v = sim.real.verdict();
    assert_eq!((v.lost, v.lost_by_broker, v.lost_no_checkpoint, v.lost_by_restore), (2, 2, 0, 0), "{v:?}");
    let ex = sim.real.explain("k0");
    assert_eq!(ex.lost_by_broker, 1);
    assert!(ex.lost.iter().all(|l| l.by_broker), "{:?}", ex.lost);
}

impl Sim {
    /// Per key, lost records (as the reference counts them) that the sources went past, and lost
    /// records in what the broker lost while a source needed it.
    fn broker_lost_bounds(&self) -> (HashMap<String, u64>, HashMap<String, u64>) {
        let (mut skipped, mut needed) = (HashMap::new(), HashMap::new());
        for p in 0..PARTITIONS as usize {
            for o in 0..self.naive.start[p] {
                if o < self.naive.baseline[p] {
                    continue;
                }
                let key = self.value(p as u32, o);
                let s = Self::owner(&key);
                if self.naive.live[s].contains_key(&Origin { partition: p as u32, offset: o }) {
                    continue;
                }
                let inside = |ranges: &[(u64, u64)]| ranges.iter().any(|(a, b)| (*a..*b).contains(&o));
                if inside(&self.skipped[p]) {
                    *skipped.entry(key.to_string()).or_insert(0) += 1;
                }
                if inside(&self.broker_ranges[p]) {
                    *needed.entry(key.to_string()).or_insert(0) += 1;
                }
            }
        }
        (skipped, needed)
    }
}

/// The auditor's record stays small on an exact run: one range per partition and subtask however
/// many records pass, where the reference holds one entry per record.
#[test]
fn an_exact_run_costs_ranges_not_records() {
    let mut sim = Sim::new();
    for round in 0..200u64 {
        sim.step(&Op::Produce((0..6).collect()));
        sim.step(&Op::Advance(10));
        sim.step(&Op::Apply { subtask: 0, n: 10, emit_twice: false, skip_line: false });
        sim.step(&Op::Apply { subtask: 1, n: 10, emit_twice: false, skip_line: false });
        if round % 20 == 0 {
            sim.step(&Op::Open);
            sim.step(&Op::Snapshot(0));
            sim.step(&Op::Snapshot(1));
            sim.step(&Op::Complete);
        }
    }
    let v = sim.real.verdict();
    assert_eq!(v.produced, 1200);
    assert_eq!((v.expected, v.state, v.lost, v.overcounted, v.output_gaps), (1200, 1200, 0, 0, 0), "{v:?}");
    // Live: 2 subtasks x 2 partitions; output: 2 partitions; each kept checkpoint the same as live.
    let footprint = sim.real.footprint();
    assert!(footprint <= 4 + 2 + 10 * 4, "{footprint} ranges for 1200 records");
}

/// Losses are attributed to their cause: a restart with no checkpoint and `latest` skips records
/// (Flink does the same); a restore that forgets records is the engine's fault.
#[test]
fn losses_carry_their_cause() {
    let mut sim = Sim::new();
    sim.step(&Op::Produce(vec![0, 1, 2, 3]));
    sim.step(&Op::Advance(2));
    sim.step(&Op::Apply { subtask: 0, n: 4, emit_twice: false, skip_line: false });
    sim.step(&Op::Apply { subtask: 1, n: 4, emit_twice: false, skip_line: false });
    sim.step(&Op::Restore { older: false, from_nothing: true, earliest: false, replay_channel_state: 0 });
    let v = sim.real.verdict();
    assert_eq!((v.lost, v.lost_no_checkpoint, v.lost_by_restore), (4, 4, 0), "{v:?}");
    // A checkpoint whose subtask 0 part misses what it applied (a broken snapshot), then restored.
    sim.step(&Op::Produce(vec![0, 1, 2, 3, 4, 5]));
    sim.step(&Op::Advance(3));
    sim.step(&Op::Open);
    sim.step(&Op::Snapshot(0));
    sim.step(&Op::Apply { subtask: 0, n: 6, emit_twice: false, skip_line: false });
    sim.step(&Op::Apply { subtask: 1, n: 6, emit_twice: false, skip_line: false });
    sim.step(&Op::Snapshot(1));
    sim.step(&Op::Complete);
    sim.step(&Op::Restore { older: false, from_nothing: false, earliest: false, replay_channel_state: 0 });
    let v = sim.real.verdict();
    let naive_lost: u64 = sim.naive.verdict().values().map(|f| f.2).sum();
    assert_eq!(v.lost, naive_lost);
    assert!(v.lost_by_restore > 0, "{v:?}");
    assert_eq!(v.lost_no_checkpoint, 4, "{v:?}");
    let key = v.keys.iter().find(|(_, k)| k.lost_by_restore > 0).map(|(k, _)| k.clone()).expect("a key lost by the restore");
    let ex = sim.real.explain(&key);
    let lines = ex.lines();
    assert!(lines.iter().any(|l| l.contains("lost") && l.contains("restored checkpoint")), "{lines:?}");
    // A stretch counts this key's records only (other keys' records lie between them), and the
    // counts add up to the key's losses.
    let listed: u64 = ex.lost.iter().map(|l| l.records).sum();
    assert_eq!(listed, v.keys[&key].lost, "{:?}", ex.lost);
    assert!(ex.lost.iter().all(|l| l.records >= 1 && l.records <= l.to - l.from + 1), "{:?}", ex.lost);
}

/// A broker that loses its log (a Kafka broker restarted empty) while the sources are behind: the
/// records they had not read are lost with the broker's cause, key by key, and nothing else
/// changes: the same run with a broker that keeps its log has the same figures except for them.
#[test]
fn records_the_broker_lost_are_lost_by_the_broker_and_nothing_else_changes() {
    let run = |broker_loses: bool| {
        let mut sim = Sim::new();
        sim.step(&Op::Produce(vec![0, 1, 2, 3, 4, 5]));
        sim.step(&Op::Advance(1));
        sim.step(&Op::Apply { subtask: 0, n: 6, emit_twice: false, skip_line: false });
        sim.step(&Op::Apply { subtask: 1, n: 6, emit_twice: false, skip_line: false });
        if broker_loses {
            sim.step(&Op::BrokerLoss);
        }
        sim.step(&Op::Produce(vec![0, 1, 2, 3]));
        sim.step(&Op::Advance(6));
        sim.step(&Op::Apply { subtask: 0, n: 10, emit_twice: false, skip_line: false });
        sim.step(&Op::Apply { subtask: 1, n: 10, emit_twice: false, skip_line: false });
        (sim.real.verdict(), sim)
    };
    let (kept, _) = run(false);
    let (lost, sim) = run(true);
    assert_eq!((kept.produced, kept.expected, kept.state, kept.lost), (10, 10, 10, 0), "{kept:?}");
    // Each partition had 3 records and the sources had read 1: 2 per partition were lost.
    assert_eq!((lost.produced, lost.expected, lost.state), (10, 10, 6), "{lost:?}");
    assert_eq!((lost.lost, lost.lost_by_broker, lost.lost_no_checkpoint, lost.lost_by_restore, lost.overcounted), (4, 4, 0, 0, 0));
    assert!(lost.consistent);
    for (key, k) in &kept.keys {
        let l = &lost.keys[key];
        assert_eq!(l.lost, l.lost_by_broker, "{key}: only the broker's cause");
        assert_eq!(k.expected, l.expected, "{key}: the same records passed");
        assert_eq!(k.state, l.state + l.lost_by_broker, "{key}: the state misses exactly what the broker lost");
        assert_eq!((k.overcounted, k.repeated_output, k.output_gaps), (l.overcounted, l.repeated_output, l.output_gaps), "{key}");
    }
    let key = lost.keys.iter().find(|(_, k)| k.lost_by_broker > 0).map(|(k, _)| k.clone()).expect("a key the broker lost");
    let ex = sim.real.explain(&key);
    assert_eq!(ex.lost_by_broker, lost.keys[&key].lost_by_broker);
    assert!(ex.lost.iter().all(|l| l.by_broker), "{:?}", ex.lost);
    let lines = ex.lines();
    assert!(lines.iter().any(|l| l.contains("lost: the broker lost them")), "{lines:?}");
}
