//! The auditor: the ground truth against which every run is judged.
//!
//! It follows each record of the topic by its origin (partition, offset) and knows, for each counter
//! subtask, which records' effects are in the live state (its *shadow*). Shadows are copied when a
//! subtask snapshots and put back when a checkpoint is restored, exactly as the state itself, so the
//! figures are exact, not estimated:
//!
//! - expected: records the sources have passed (consumed, or skipped by an offset reset);
//! - lost: passed records whose effect is missing from the state and that will not arrive any more
//!   (they lie before where the current run's sources started), by cause: no checkpoint to restore
//!   (the offset reset skipped or forgot them), a restore that did not bring them back, or a
//!   broker that lost them (a Kafka broker restarted empty: the sources could not read them);
//! - overcounted: extra applications of a record already reflected;
//! - in flight: consumed in this run and not yet applied.
//!
//! Once caught up, `state = expected - lost + overcounted` for every key.
//!
//! # Cost: O(anomalies), not O(records)
//! A shadow does not hold one entry per record. Per partition it holds the offsets whose effect is in
//! the state as ranges, and a range may span records of other subtasks: within one attempt a subtask
//! receives the records of a partition that are its own in offset order, each once (one FIFO channel
//! from the partition's source), so everything of its own between the first and the last record it
//! applied was applied. A run of an exact job is one range per partition. Per key it holds counts
//! (applications, distinct records, losses by cause) in slots of a vector ([`KeyShadows`]), found
//! by the key's id in the counter's state backend, so that a record costs no hash lookup of its
//! key beyond the backend's own; a snapshot is a copy of the vector and a verdict is O(keys), plus a walk of the few records whose fate is open: the
//! ones in flight, and the ones a restore left out (walked once, when the job is deployed).
//! Each subtask's shadow has its own lock; a verdict holds each only to clone it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::config::KeyBy;
use crate::connectors::topic::Topic;
use crate::keygroup::{key_group, operator_index};
use crate::state::{KeyIdMap, KeyIds};
use crate::types::Origin;

mod keys;
mod record;
pub use keys::{KeyShadows, Slot};
use keys::SlotsOf;
pub use record::{AuditRecord, RecordError, RecordMismatch, RecordTotals, RestoreJudged, RECORD_FILE, RECORD_VERSION};

/// The verdict for one key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyVerdict {
    pub expected: u64,
    pub state: u64,
    pub lost: u64,
    /// Lost because a (re)start had no checkpoint to restore: the offset reset skipped them, or the
    /// empty state forgot them (Flink does the same).
    pub lost_no_checkpoint: u64,
    /// Lost although a checkpoint was restored: the checkpoint did not hold them and the sources did
    /// not replay them. Never happens in a correct engine.
    pub lost_by_restore: u64,
    /// Lost because the broker lost them before a source read them (a Kafka broker that came back
    /// empty): the sources went on from the broker's log start (`auto.offset.reset`).
    #[serde(default)]
    pub lost_by_broker: u64,
    pub overcounted: u64,
    /// Output lines that repeat a line already emitted for the same record.
    pub repeated_output: u64,
    /// Records in the state whose output line was never emitted (yet: a transaction may be pending).
    pub output_gaps: u64,
    pub subtask: usize,
}

/// The verdict: per key and totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub produced: u64,
    pub expected: u64,
    pub state: u64,
    pub lost: u64,
    pub lost_no_checkpoint: u64,
    pub lost_by_restore: u64,
    #[serde(default)]
    pub lost_by_broker: u64,
    pub overcounted: u64,
    pub in_flight: i64,
    /// Records of the topic the sources have not passed yet (they are still to come, unless the
    /// job FAILED for good: then they are never processed, see [`Verdict::never_processed`]).
    #[serde(default)]
    pub unread: u64,
    pub repeated_output: u64,
    pub output_lines: u64,
    /// Records in the state with no output line (sinks that write lines only).
    pub output_gaps: u64,
    /// Per key; from [`Auditor::verdict`] every key, from [`Auditor::verdict_page`] a page of
    /// them (from row `keys_from` on, of `key_count`), from [`Auditor::verdict_totals`] none.
    pub keys: BTreeMap<String, KeyVerdict>,
    /// How many keys the whole table has (whatever `keys` holds).
    #[serde(default)]
    pub key_count: usize,
    /// The row of the whole table `keys` starts at (0 unless a page was asked for).
    #[serde(default)]
    pub keys_from: usize,
    /// The operator's state equals the auditor's shadow for every key (a self-check), and the
    /// topic still holds what the auditor read ([`Topic::truth_lost`] says why not).
    pub consistent: bool,
    /// Whether the auditor was on: with it off nothing was checked, and nothing reads as "ok".
    pub audited: bool,
}

impl Verdict {
    /// Records the job has not processed yet: consumed and not in the state (in flight), and
    /// not read at all (unread). Late, not lost, while the job runs or restarts; never processed
    /// once it FAILED and will not restart.
    pub fn never_processed(&self) -> u64 {
        self.unread + self.in_flight.max(0) as u64
    }

    /// Records still to be applied: in flight or unread. None of them is lost or overcounted.
    pub fn catching_up(&self) -> u64 {
        self.never_processed()
    }

    /// The summary of a job that FAILED and will not restart: what it never processed, beside
    /// its losses (its `ok` would hide that its state stopped short of the others').
    pub fn failed_summary(&self) -> String {
        let base = self.summary();
        match self.never_processed() {
            0 => format!("FAILED, {base}"),
            n => format!("FAILED: {n} records never processed; {base}"),
        }
    }

    /// `ok`, `lost N`, `overcounted N` (or both) for the totals; `inconsistent` when the
    /// auditor's record and the operator's state disagree (then no figure can be trusted).
    pub fn summary(&self) -> String {
        if !self.audited {
            return "not audited".into();
        }
        if !self.consistent {
            return "inconsistent".into();
        }
        summary(self.lost, self.overcounted)
    }
}

/// The one meaning of "caught up", for the state pane, the lesson's `await caught-up` and the
/// scenario player alike: the engine says every record of the topic was read and everything the
/// sources (and channel-state replays) emitted reached the sink (`Engine::caught_up`), and the
/// auditor has nothing in flight or unread. A job that is down is never caught up.
pub fn caught_up(engine_caught_up: bool, verdict: Option<&Verdict>) -> bool {
    engine_caught_up && verdict.is_none_or(|v| !v.audited || v.catching_up() == 0)
}

/// `ok`, `lost N`, `overcounted N`, or `lost N, overcounted M`.
pub fn summary(lost: u64, overcounted: u64) -> String {
    match (lost, overcounted) {
        (0, 0) => "ok".into(),
        (l, 0) => format!("lost {l}"),
        (0, o) => format!("overcounted {o}"),
        (l, o) => format!("lost {l}, overcounted {o}"),
    }
}

/// Disjoint, non-adjacent half-open ranges of offsets of one partition. Written as a list of
/// `[start, end)` pairs (the auditor's record in a snapshot), and read back only when they are
/// ascending, non-empty and apart: a damaged record is refused, never restored into a shadow
/// whose lookups assume that order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<(u64, u64)>", into = "Vec<(u64, u64)>")]
pub struct Ranges(BTreeMap<u64, u64>);

/// A list of pairs that is not a [`Ranges`]: which pair, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("range {index} [{start}, {end}) {why}")]
pub struct RangesError {
    pub index: usize,
    pub start: u64,
    pub end: u64,
    pub why: &'static str,
}

impl TryFrom<Vec<(u64, u64)>> for Ranges {
    type Error = RangesError;

    fn try_from(pairs: Vec<(u64, u64)>) -> Result<Self, RangesError> {
        let mut m = BTreeMap::new();
        let mut prev_end = None;
        for (index, (start, end)) in pairs.into_iter().enumerate() {
            let bad = |why| RangesError { index, start, end, why };
            if start >= end {
                return Err(bad("is empty or reversed"));
            }
            if prev_end.is_some_and(|e| start <= e) {
                return Err(bad("overlaps or touches the one before (ranges are ascending and apart)"));
            }
            prev_end = Some(end);
            m.insert(start, end);
        }
        Ok(Ranges(m))
    }
}

impl From<Ranges> for Vec<(u64, u64)> {
    fn from(r: Ranges) -> Self {
        r.0.into_iter().collect()
    }
}

impl Ranges {
    pub fn contains(&self, o: u64) -> bool {
        self.0.range(..=o).next_back().is_some_and(|(_, &e)| o < e)
    }

    /// The end of the highest range (0 when empty).
    pub fn end(&self) -> u64 {
        self.0.last_key_value().map_or(0, |(_, &e)| e)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many ranges: the shadow's size.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(&a, &b)| (a, b))
    }

    /// Adds `[a, b)`, merging with what it touches.
    pub fn insert(&mut self, a: u64, b: u64) {
        if a >= b {
            return;
        }
        // The common case: extending the last range.
        if let Some(mut last) = self.0.last_entry() {
            if *last.key() <= a && a <= *last.get() {
                let e = last.get_mut();
                *e = (*e).max(b);
                return;
            }
        }
        let (mut a, mut b) = (a, b);
        if let Some((&s, &e)) = self.0.range(..=a).next_back() {
            if e >= a {
                a = s;
                b = b.max(e);
            }
        }
        let inside: Vec<u64> = self.0.range(a..=b).map(|(&s, _)| s).collect();
        for s in inside {
            if let Some(e) = self.0.remove(&s) {
                b = b.max(e);
            }
        }
        self.0.insert(a, b);
    }

    /// Whether any offset of `[a, b)` is in the set.
    pub fn overlaps(&self, a: u64, b: u64) -> bool {
        a < b && self.0.range(..b).next_back().is_some_and(|(_, &e)| e > a)
    }

    /// Adds one offset; true when it was not in the set.
    pub fn insert_one(&mut self, o: u64) -> bool {
        if self.contains(o) {
            return false;
        }
        self.insert(o, o + 1);
        true
    }

    /// The parts of `[a, b)` that are not in the set.
    pub fn holes(&self, a: u64, b: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = a;
        let first = self.0.range(..=a).next_back().map(|(&s, _)| s).unwrap_or(a);
        for (&s, &e) in self.0.range(first..b) {
            if e <= at {
                continue;
            }
            if s > at {
                out.push((at, s.min(b)));
            }
            at = at.max(e);
            if at >= b {
                break;
            }
        }
        if at < b {
            out.push((at, b));
        }
        out
    }
}

/// Per key, what a subtask's state reflects. Written (the auditor's record in a snapshot) as
/// one compact list, `[applies, distinct, lost_no_checkpoint, lost_by_restore, lost_by_broker,
/// state]`: a record holds one per key, and named fields made it five times its state's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "KeyFigures", from = "KeyFigures")]
pub struct KeyShadow {
    /// Applications of the key's records (the count the state should hold).
    pub applies: u64,
    /// Distinct records applied.
    pub distinct: u64,
    pub lost_no_checkpoint: u64,
    pub lost_by_restore: u64,
    pub lost_by_broker: u64,
    /// The count the operator published for the key (its state as the sink sees it): in the same
    /// entry, so that applying a record costs one lookup.
    pub state: u64,
    /// Changed since the verdict's table last read it (it is in its subtask's `dirty` list).
    dirty: bool,
}

/// [`KeyShadow`] as written: its figures in field order.
type KeyFigures = (u64, u64, u64, u64, u64, u64);

impl From<KeyShadow> for KeyFigures {
    fn from(k: KeyShadow) -> Self {
        (k.applies, k.distinct, k.lost_no_checkpoint, k.lost_by_restore, k.lost_by_broker, k.state)
    }
}

impl From<KeyFigures> for KeyShadow {
    fn from((applies, distinct, lost_no_checkpoint, lost_by_restore, lost_by_broker, state): KeyFigures) -> Self {
        KeyShadow { applies, distinct, lost_no_checkpoint, lost_by_restore, lost_by_broker, state, dirty: false }
    }
}

/// A record applied more than once, kept for explanations (bounded).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Repeat {
    pub origin: Origin,
    /// The checkpoint the attempt that applied it again had restored.
    pub restored: Option<u64>,
    /// Where that checkpoint had the record's partition (its source offset).
    pub rewound_to: u64,
}

/// How many repeats a subtask keeps for explanations; the counts are exact regardless.
pub const REPEATS_KEPT: usize = 10_000;

/// What one counter subtask's state reflects, in the form a checkpoint keeps (and its
/// [`AuditRecord`] on disk).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Shadow {
    /// Per partition: the offsets whose effect is in the state (ranges over the subtask's own records).
    pub covered: Vec<Ranges>,
    pub keys: KeyShadows,
    pub repeats: Vec<Repeat>,
    /// Per partition: below this offset every record the state does not hold is tallied lost
    /// (walked when a job was deployed), so a later deploy walks only what lies above.
    pub walked: Vec<u64>,
    /// Per partition: what the broker was known to have lost when losses were last tallied (the
    /// auditor's `broker_lost` then). A lost record below `walked` in it was tallied lost by the
    /// broker; one the broker turns out to have lost later takes that cause when this shadow next
    /// tallies (a checkpoint's shadow restored after the broker loss was found).
    pub broker_known: Vec<Ranges>,
    /// Per partition: the stretches below `walked` tallied while a checkpoint was restored. A lost
    /// record there (not the broker's) was lost despite the restore; elsewhere, for want of one.
    pub restore_tallied: Vec<Ranges>,
}

/// Why a record the state does not hold was tallied lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LossCause {
    NoCheckpoint,
    Restore,
    Broker,
}

impl KeyShadow {
    /// Lost, whatever the cause.
    pub fn lost(&self) -> u64 {
        self.lost_no_checkpoint + self.lost_by_restore + self.lost_by_broker
    }

    fn lost_with(&mut self, cause: LossCause) -> &mut u64 {
        match cause {
            LossCause::NoCheckpoint => &mut self.lost_no_checkpoint,
            LossCause::Restore => &mut self.lost_by_restore,
            LossCause::Broker => &mut self.lost_by_broker,
        }
    }

    /// Takes back one loss of `cause` (the record arrived after all, or changes cause); true when
    /// there was one. A count never goes below zero, whatever the caller believes.
    fn take_back(&mut self, cause: LossCause) -> bool {
        let n = self.lost_with(cause);
        if *n == 0 {
            return false;
        }
        *n -= 1;
        true
    }
}

impl Shadow {
    fn new(partitions: usize) -> Self {
        Shadow {
            covered: vec![Ranges::default(); partitions],
            walked: vec![0; partitions],
            broker_known: vec![Ranges::default(); partitions],
            restore_tallied: vec![Ranges::default(); partitions],
            ..Shadow::default()
        }
    }

    /// The cause a lost record at `o` of partition `p` (below `walked`) was tallied with.
    fn loss_cause(&self, p: usize, o: u64) -> LossCause {
        if self.broker_known.get(p).is_some_and(|r| r.contains(o)) {
            LossCause::Broker
        } else if self.restore_tallied.get(p).is_some_and(|r| r.contains(o)) {
            LossCause::Restore
        } else {
            LossCause::NoCheckpoint
        }
    }
}

/// One counter subtask's live shadow, behind its own lock.
struct Live {
    attempt: u64,
    shadow: Shadow,
    /// Per partition, this attempt's delivery run `[first applied, last applied + 1)`.
    run: Vec<Option<(u64, u64)>>,
    /// Per partition: where this attempt's sources started.
    start: Vec<u64>,
    /// Per partition, the first offset the auditor follows (where the first attempt started).
    floor: Vec<u64>,
    restored: Option<u64>,
    /// Per partition, the records a source went past because the broker had lost them, in this
    /// attempt or an earlier one (a copy of the auditor's `skipped`): no source sends them, ever,
    /// so a delivery run never spans one (the records around it may come from channel state).
    skipped: Vec<Ranges>,
    /// Keys changed since the verdict's table last read this subtask, by slot (each once:
    /// `dirty` flag).
    dirty: Vec<Slot>,
    /// The slot of each key id of the counter's state backend (the hot path's per-key lookup).
    slots_of: SlotsOf,
    /// Every key may have changed (a deploy, a restore, a tally of losses): the table rereads all.
    all_dirty: bool,
}

impl Live {
    /// Marks every key changed: the next verdict rereads this subtask's whole shadow.
    fn touch_all(&mut self) {
        self.all_dirty = true;
        self.dirty.clear();
    }

    fn fold_runs(&mut self) {
        for (p, run) in self.run.iter().enumerate() {
            if let Some((a, b)) = *run {
                self.shadow.covered[p].insert(a, b);
            }
        }
    }

    fn covers(&self, p: usize, o: u64) -> bool {
        matches!(self.run[p], Some((a, b)) if a <= o && o < b) || self.shadow.covered[p].contains(o)
    }
}

struct Global {
    attempt: u64,
    deployed: bool,
    baseline: Vec<u64>,
    start: Vec<u64>,
    position: Vec<u64>,
    restored: Option<u64>,
    parts: BTreeMap<u64, Vec<Option<Shadow>>>,
    /// Per completed checkpoint, each counter subtask's shadow.
    completed: BTreeMap<u64, Vec<Shadow>>,
    /// Per partition, the offsets the sources went past because the broker had lost them, with
    /// the records in flight then (the losses tallied with the broker's cause).
    broker_lost: Vec<Ranges>,
    /// Per partition, the offsets the sources went past (never sent by any source).
    skipped: Vec<Ranges>,
}

/// What the sinks made visible.
#[derive(Default)]
struct Output {
    emitted: Vec<Ranges>,
    repeated: FxHashMap<Arc<str>, u64>,
    lines: u64,
}

/// The verdict's per-key table, kept from one verdict to the next: a row changes only when its
/// subtask changed the key since (the subtask's dirty keys), and the totals with it, so a verdict
/// costs O(changed keys), not O(keys).
#[derive(Default)]
struct Table {
    rows: FxHashMap<Arc<str>, (usize, KeyShadow)>,
    sums: Sums,
    /// The rows' keys in order, for pages of rows; rebuilt when a key came or went since.
    order: Vec<Arc<str>>,
    order_stale: bool,
}

/// The table's totals, before the walks' adjustments (records in flight, applied beyond the
/// sources' position, output gaps).
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    /// Distinct applied + lost.
    expected: u64,
    state: u64,
    lost_no_checkpoint: u64,
    lost_by_restore: u64,
    lost_by_broker: u64,
    overcounted: u64,
    /// Keys whose published state is not the count of applications the auditor heard.
    mismatched: u64,
}

impl Sums {
    fn add(&mut self, ks: &KeyShadow, sign: bool) {
        let f = |total: &mut u64, n: u64| if sign { *total += n } else { *total -= n };
        f(&mut self.expected, ks.distinct + ks.lost());
        f(&mut self.state, ks.state);
        f(&mut self.lost_no_checkpoint, ks.lost_no_checkpoint);
        f(&mut self.lost_by_restore, ks.lost_by_restore);
        f(&mut self.lost_by_broker, ks.lost_by_broker);
        f(&mut self.overcounted, ks.applies - ks.distinct.min(ks.applies));
        f(&mut self.mismatched, u64::from(ks.state != ks.applies));
    }
}

/// A subtask's ranges, copied for the verdict's walks.
struct Coverage {
    covered: Vec<Ranges>,
    run: Vec<Option<(u64, u64)>>,
}

/// Which rows of the per-key table a verdict carries.
#[derive(Debug, Clone, Copy)]
enum Rows {
    None,
    All,
    Page { first: usize, count: usize },
}

type Adjust = FxHashMap<Arc<str>, (u64, u64, usize, u64)>;

impl Table {
    /// Takes subtask `s`'s changed keys into the table (all of them after a deploy or a tally),
    /// and returns its ranges for the walks. Called with the subtask's lock held.
    fn refresh(&mut self, s: usize, live: &mut Live) -> Coverage {
        if live.all_dirty {
            let sums = &mut self.sums;
            let before = self.rows.len();
            self.rows.retain(|_, (sub, ks)| {
                let keep = *sub != s;
                if !keep {
                    sums.add(ks, false);
                }
                keep
            });
            self.order_stale |= self.rows.len() != before;
            for (key, ks) in live.shadow.keys.iter_mut() {
                ks.dirty = false;
                self.put(s, key, *ks);
            }
            live.all_dirty = false;
            live.dirty.clear();
        } else {
            for slot in live.dirty.drain(..) {
                let (key, ks) = live.shadow.keys.slot_mut(slot);
                ks.dirty = false;
                let ks = *ks;
                self.put(s, key, ks);
            }
        }
        Coverage { covered: live.shadow.covered.clone(), run: live.run.clone() }
    }

    fn put(&mut self, s: usize, key: &Arc<str>, ks: KeyShadow) {
        self.sums.add(&ks, true);
        match self.rows.get_mut(key) {
            Some(row) => {
                self.sums.add(&row.1, false);
                *row = (s, ks);
            }
            None => {
                self.rows.insert(key.clone(), (s, ks));
                self.order_stale = true;
            }
        }
    }

    /// Keys the verdict names that have no row: only in flight so far, or only repeated in
    /// the output. Few: they are looked up one by one.
    fn extra<'a>(&self, adjust: &'a Adjust, repeated: &'a FxHashMap<Arc<str>, u64>) -> Vec<&'a Arc<str>> {
        let mut extra: Vec<&Arc<str>> = adjust.keys().chain(repeated.keys()).filter(|k| !self.rows.contains_key(&***k)).collect();
        extra.sort();
        extra.dedup();
        extra
    }

    fn key_count(&self, adjust: &Adjust, repeated: &FxHashMap<Arc<str>, u64>) -> usize {
        self.rows.len() + self.extra(adjust, repeated).len()
    }

    /// Sorts the rows' keys again if a key came or went since.
    fn sort(&mut self) {
        if self.order_stale {
            self.order = self.rows.keys().cloned().collect();
            self.order.sort();
            self.order_stale = false;
        }
    }

    /// Every key in order (after [`Table::sort`]): the rows' merged with the few extra ones.
    fn order(&self, adjust: &Adjust, repeated: &FxHashMap<Arc<str>, u64>) -> std::borrow::Cow<'_, [Arc<str>]> {
        let extra = self.extra(adjust, repeated);
        if extra.is_empty() {
            return std::borrow::Cow::Borrowed(&self.order);
        }
        let mut all: Vec<Arc<str>> = self.order.iter().cloned().chain(extra.into_iter().cloned()).collect();
        all.sort();
        std::borrow::Cow::Owned(all)
    }
}

/// What a counter subtask applied since it last told the auditor (a buffer's records): per record
/// its origin, key (by its id in the state backend's [`KeyIds`]) and the key's count after it, and per partition the batch's first and last
/// offset, kept as it goes, so that the auditor settles the delivery ranges once per partition of
/// the batch (not per record) when the batch lies past everything applied.
///
/// Measured (issue 24): gathering per key here as well (a map per buffer, or a cache of keys by
/// address) cost more than it saved at 10,000 keys (a buffer of ~1,500 records holds ~1,400 keys,
/// so the auditor's lookup per key is one per record anyway) and the audited runs fell from x0.7
/// to x0.45 of unaudited: the per-key work stays one per record, but by the key's id, a vector
/// lookup where the backend's own lookup found the id (no hash of the key, no `Arc` to clone).
#[derive(Debug, Default)]
pub struct AppliedBatch {
    records: Vec<(Origin, u32, u64)>,
    /// Per partition: the batch's first and last offset.
    spans: Vec<Option<(u64, u64)>>,
    /// Some partition's offsets did not rise within the batch.
    unordered: bool,
}

impl AppliedBatch {
    /// One record applied: its origin, its key's id and the key's count after it.
    #[inline]
    pub fn push(&mut self, origin: Origin, key_id: u32, count: u64) {
        self.records.push((origin, key_id, count));
        let p = origin.partition as usize;
        if p >= self.spans.len() {
            self.spans.resize(p + 1, None);
        }
        match &mut self.spans[p] {
            Some((_, last)) if origin.offset > *last => *last = origin.offset,
            Some(_) => self.unordered = true,
            span @ None => *span = Some((origin.offset, origin.offset)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.records.clear();
        self.spans.iter_mut().for_each(|s| *s = None);
        self.unordered = false;
    }
}

/// Shared by the tasks of every attempt; calls from a stale attempt (a task not yet cancelled after
/// a failover) are ignored.
pub struct Auditor {
    enabled: bool,
    topic: Arc<dyn Topic>,
    parallelism: usize,
    key_by: KeyBy,
    global: Mutex<Global>,
    live: Vec<Mutex<Live>>,
    output: Mutex<Output>,
    /// The verdict's per-key table (only verdicts take this lock; tasks never do).
    table: Mutex<Table>,
}

/// The key a value is partitioned by.
pub fn key_of(value: &str, key_by: KeyBy) -> &str {
    match key_by {
        KeyBy::Record => value,
        KeyBy::Constant => CONSTANT_KEY,
    }
}

/// The seed's `keyBy((any) -> 1)`.
pub const CONSTANT_KEY: &str = "1";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The per-key tally of a walk: (in flight, applied beyond the position, subtask, output gaps).
fn bump<'a>(m: &'a mut FxHashMap<Arc<str>, (u64, u64, usize, u64)>, key: &str, s: usize) -> &'a mut (u64, u64, usize, u64) {
    if !m.contains_key(key) {
        m.insert(Arc::from(key), (0, 0, s, 0));
    }
    m.get_mut(key).expect("inserted above")
}

/// Records read from the topic per walk step.
const WALK_CHUNK: usize = 4096;

impl Auditor {
    pub fn new(enabled: bool, topic: Arc<dyn Topic>, parallelism: usize, key_by: KeyBy) -> Self {
        let partitions = topic.partitions() as usize;
        Auditor {
            enabled,
            topic,
            parallelism,
            key_by,
            global: Mutex::new(Global {
                attempt: 0,
                deployed: false,
                baseline: vec![0; partitions],
                start: vec![0; partitions],
                position: vec![0; partitions],
                restored: None,
                parts: BTreeMap::new(),
                completed: BTreeMap::new(),
                broker_lost: vec![Ranges::default(); partitions],
                skipped: vec![Ranges::default(); partitions],
            }),
            live: (0..parallelism)
                .map(|_| {
                    Mutex::new(Live {
                        attempt: 0,
                        shadow: Shadow::new(partitions),
                        run: vec![None; partitions],
                        start: vec![0; partitions],
                        floor: vec![0; partitions],
                        restored: None,
                        skipped: vec![Ranges::default(); partitions],
                        dirty: Vec::new(),
                        slots_of: SlotsOf::default(),
                        all_dirty: false,
                    })
                })
                .collect(),
            output: Mutex::new(Output { emitted: vec![Ranges::default(); partitions], ..Output::default() }),
            table: Mutex::new(Table::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn owner(&self, key: &str) -> usize {
        operator_index(key_group(key), self.parallelism)
    }

    /// Calls `f(offset, key, owner)` for every record of `[from, to)` of partition `p` the topic holds.
    fn walk(&self, p: u32, from: u64, to: u64, mut f: impl FnMut(u64, &str, usize)) {
        let mut values = Vec::new();
        let mut at = from;
        let mut owners: FxHashMap<Arc<str>, usize> = FxHashMap::default();
        while at < to {
            values.clear();
            let n = self.topic.read(p, at, (to - at).min(WALK_CHUNK as u64) as usize, &mut values);
            if n == 0 {
                return;
            }
            for (i, v) in values.iter().enumerate() {
                let key = key_of(v, self.key_by);
                let owner = match owners.get(key) {
                    Some(&o) => o,
                    None => {
                        let o = self.owner(key);
                        if owners.len() < 1 << 16 {
                            owners.insert(Arc::from(key), o);
                        }
                        o
                    }
                };
                f(at + i as u64, key, owner);
            }
            at += n as u64;
        }
    }

    /// A new attempt starts: sources at `start` (partition -> offset), state from `checkpoint`.
    /// The records below `start` that the restored state does not hold are lost from now on: they
    /// are tallied per key here, once, with their cause.
    pub fn deploy(&self, attempt: u64, start: &[u64], checkpoint: Option<u64>) {
        if !self.enabled {
            return;
        }
        let restored = {
            let mut g = lock(&self.global);
            g.attempt = attempt;
            if !g.deployed {
                g.baseline = start.to_vec();
                g.deployed = true;
            }
            g.start = start.to_vec();
            g.position = start.to_vec();
            g.restored = checkpoint;
            // Each subtask's shadow as the checkpoint captured it (not re-derived from the topic: a
            // Kafka mirror may not hold those records yet when a job restarts right after an outage).
            let partitions = g.start.len();
            match checkpoint.and_then(|c| g.completed.get(&c)) {
                Some(shadows) => shadows.clone(),
                None => vec![Shadow::new(partitions); self.parallelism],
            }
        };
        let (baseline, skipped) = {
            let g = lock(&self.global);
            (g.baseline.clone(), g.skipped.clone())
        };
        let mut lives: Vec<MutexGuard<'_, Live>> = self.live.iter().map(lock).collect();
        for (live, shadow) in lives.iter_mut().zip(restored) {
            live.attempt = attempt;
            live.shadow = shadow;
            // The restored shadow's slots are its own.
            live.slots_of.forget();
            live.run = vec![None; start.len()];
            // The operator publishes what it restored (`restored`); until then its state is empty.
            for ks in live.shadow.keys.values_mut() {
                ks.state = 0;
            }
            live.start = start.to_vec();
            live.floor = baseline.clone();
            live.restored = checkpoint;
            live.skipped = skipped.clone();
            live.touch_all();
        }
        drop(lives);
        self.tally_losses(&baseline);
    }

    /// The lost walk: per partition, from where each subtask's shadow has tallied losses up to
    /// where this attempt's sources started. Done at deploy; what the topic did not hold yet then (a
    /// Kafka mirror behind the broker) is tallied by a later call, with the same cause.
    fn tally_losses(&self, baseline: &[u64]) {
        let broker_lost = lock(&self.global).broker_lost.clone();
        let mut lives: Vec<MutexGuard<'_, Live>> = self.live.iter().map(lock).collect();
        for (s, live) in lives.iter_mut().enumerate() {
            self.learn_broker_losses(s, live, &broker_lost, baseline);
        }
        let Some(first) = lives.first() else { return };
        let (start, restored) = (first.start.clone(), first.restored);
        for (p, &to) in start.iter().enumerate() {
            let frontier: Vec<u64> = lives.iter().map(|l| l.shadow.walked[p].max(baseline.get(p).copied().unwrap_or(0))).collect();
            let Some(&from) = frontier.iter().min() else { continue };
            if from >= to {
                // Nothing to walk (below the baseline nothing is followed).
                for live in lives.iter_mut() {
                    live.shadow.walked[p] = live.shadow.walked[p].max(to);
                }
                continue;
            }
            let mut reached = from;
            self.walk(p as u32, from, to, |o, key, s| {
                reached = o + 1;
                let live = &mut lives[s];
                // The delivery run too: a broker reset tallies in the middle of an attempt.
                if o < frontier[s] || live.covers(p, o) {
                    return;
                }
                live.all_dirty = true;
                let ks = live.shadow.keys.entry(key);
                if broker_lost.get(p).is_some_and(|r| r.contains(o)) {
                    ks.lost_by_broker += 1;
                } else if restored.is_some() {
                    ks.lost_by_restore += 1;
                } else {
                    ks.lost_no_checkpoint += 1;
                }
            });
            // A record that arrives below `walked` is one that was tallied lost.
            for (live, f) in lives.iter_mut().zip(&frontier) {
                if let Some(r) = live.shadow.restore_tallied.get_mut(p).filter(|_| restored.is_some() && reached > *f) {
                    r.insert(*f, reached);
                }
                live.shadow.walked[p] = reached.max(*f);
            }
        }
    }

    /// Subtask `s`'s records tallied lost with another cause before the broker was known to have
    /// lost them take the broker's cause: a checkpoint's shadow tallied before a source found the
    /// broker's loss (a restart from nothing with `latest` skipped them), restored after. The
    /// cause of a record the broker lost does not depend on when the auditor learnt of it, nor on
    /// which shadow it was tallied in (and [`Auditor::explain`] gives the same cause). Walks only
    /// the broker's losses this shadow did not know, each once.
    fn learn_broker_losses(&self, s: usize, live: &mut Live, broker_lost: &[Ranges], baseline: &[u64]) {
        for (p, lost) in broker_lost.iter().enumerate() {
            let lo = baseline.get(p).copied().unwrap_or(0);
            let hi = live.shadow.walked.get(p).copied().unwrap_or(0);
            let Some(known) = live.shadow.broker_known.get(p) else { continue };
            let mut unknown = Vec::new();
            for (a, b) in lost.iter() {
                let (a, b) = (a.max(lo), b.min(hi));
                if a < b {
                    unknown.extend(known.holes(a, b));
                }
            }
            for (a, b) in unknown {
                self.walk(p as u32, a, b, |o, key, owner| {
                    if owner != s || live.covers(p, o) {
                        return;
                    }
                    let cause = live.shadow.loss_cause(p, o);
                    if let Some(ks) = live.shadow.keys.get_mut(key) {
                        if ks.take_back(cause) {
                            ks.lost_by_broker += 1;
                            live.all_dirty = true;
                        }
                    }
                });
            }
        }
        live.shadow.broker_known = broker_lost.to_vec();
    }

    /// Losses not tallied yet (the topic did not hold those records when the job was deployed).
    fn tally_pending_losses(&self) {
        let pending = self.live.iter().any(|l| {
            let l = lock(l);
            l.shadow.walked.iter().zip(&l.start).any(|(w, s)| w < s)
        });
        if pending {
            let baseline = lock(&self.global).baseline.clone();
            self.tally_losses(&baseline);
        }
    }

    /// A source went on at `to` instead of `from` in `partition` because the broker had lost the
    /// records from `from` on (a Kafka broker restarted empty, see `TopicReader::reset`). The
    /// records up to `to` that the state does not hold are lost, with that cause; those still in
    /// flight (read before the broker lost them) are taken back when they arrive.
    pub fn source_reset(&self, attempt: u64, partition: u32, from: u64, to: u64) {
        if !self.enabled || to <= from {
            return;
        }
        let p = partition as usize;
        // From where losses are still to be tallied: the records in flight are in it.
        let walked = self.live.iter().map(|l| lock(l).shadow.walked.get(p).copied().unwrap_or(0)).min().unwrap_or(from);
        let baseline = {
            let mut g = lock(&self.global);
            if g.attempt != attempt || p >= g.start.len() {
                return;
            }
            g.broker_lost[p].insert(walked.min(from), to);
            g.skipped[p].insert(from, to);
            g.start[p] = g.start[p].max(to);
            g.position[p] = to;
            g.baseline.clone()
        };
        for l in &self.live {
            let mut l = lock(l);
            if l.attempt == attempt {
                l.start[p] = l.start[p].max(to);
                if let Some(r) = l.skipped.get_mut(p) {
                    r.insert(from, to);
                }
            }
        }
        self.tally_losses(&baseline);
    }

    /// A source moved its position in a partition.
    pub fn source_advanced(&self, attempt: u64, partition: u32, position: u64) {
        if !self.enabled {
            return;
        }
        let mut g = lock(&self.global);
        if g.attempt == attempt {
            if let Some(p) = g.position.get_mut(partition as usize) {
                *p = position;
            }
        }
    }

    /// A counter subtask restored its state: its published values.
    pub fn restored(&self, attempt: u64, subtask: usize, entries: Vec<(Arc<str>, u64)>) {
        if !self.enabled {
            return;
        }
        let mut live = lock(&self.live[subtask]);
        if live.attempt == attempt {
            for ks in live.shadow.keys.values_mut() {
                ks.state = 0;
            }
            for (key, count) in entries {
                let slot = live.shadow.keys.slot_of_arc(&key);
                live.shadow.keys.at_mut(slot).state = count;
            }
            live.touch_all();
        }
    }

    /// A counter subtask applied records: (origin, key, the key's new count). The same as
    /// [`Auditor::applied_batch`] of a batch of these.
    pub fn applied(&self, attempt: u64, subtask: usize, batch: &[(Origin, Arc<str>, u64)]) {
        if !self.enabled || batch.is_empty() {
            return;
        }
        let mut ids = KeyIdMap::default();
        let mut b = AppliedBatch::default();
        for (origin, key, count) in batch {
            b.push(*origin, ids.id(key), *count);
        }
        self.applied_batch(attempt, subtask, &mut b, ids.ids());
    }

    /// A counter subtask applied the records of `batch` (a buffer's, usually), which is left
    /// empty. In the common case (each partition's records of the batch lie past everything the
    /// subtask applied and past where its sources started) the ranges are settled once per
    /// partition and each record costs one vector lookup of its key id; otherwise (a restore
    /// rewound the sources, channel state is replayed) record by record, as the ranges require.
    /// `ids` names the batch's key ids (the subtask's state backend's).
    pub fn applied_batch(&self, attempt: u64, subtask: usize, batch: &mut AppliedBatch, ids: &KeyIds) {
        if !self.enabled || batch.records.is_empty() {
            batch.clear();
            return;
        }
        let mut guard = lock(&self.live[subtask]);
        let live = &mut *guard;
        if live.attempt != attempt {
            drop(guard);
            batch.clear();
            return;
        }
        live.slots_of.enter(ids);
        if !self.apply_fresh(live, batch, ids) {
            self.apply_each(live, batch, ids);
        }
        drop(guard);
        batch.clear();
    }

    /// The fast path of [`Auditor::applied_batch`]: true when it applied the batch, which it
    /// does only when per partition the batch's offsets rise, start at or past the delivery run's
    /// end, every covered range and the sources' start, and no skipped stretch lies in between.
    fn apply_fresh(&self, live: &mut Live, batch: &AppliedBatch, ids: &KeyIds) -> bool {
        let partitions = live.run.len();
        if batch.unordered || batch.spans.len() > partitions {
            return false;
        }
        for (p, s) in batch.spans.iter().enumerate() {
            let Some((first, last)) = *s else { continue };
            let from = live.run[p].map_or(first, |(_, e)| e);
            if first < from || first < live.shadow.covered[p].end() || first < live.start[p] {
                return false;
            }
            if live.skipped[p].overlaps(from, last + 1) {
                return false;
            }
        }
        for (p, s) in batch.spans.iter().enumerate() {
            if let Some((first, last)) = *s {
                live.run[p] = Some(live.run[p].map_or((first, last + 1), |(a, _)| (a, last + 1)));
            }
        }
        for &(_, id, count) in &batch.records {
            let slot = live.slots_of.slot(id, ids, &mut live.shadow.keys);
            let ks = live.shadow.keys.at_mut(slot);
            ks.applies += 1;
            ks.distinct += 1;
            ks.state = count;
            if !ks.dirty {
                ks.dirty = true;
                live.dirty.push(slot);
            }
        }
        true
    }

    /// The slow path of [`Auditor::applied_batch`]: record by record.
    fn apply_each(&self, live: &mut Live, batch: &AppliedBatch, ids: &KeyIds) {
        for &(origin, id, count) in &batch.records {
            let p = origin.partition as usize;
            let o = origin.offset;
            if p >= live.run.len() {
                continue;
            }
            let before = live.covers(p, o);
            // Records a source went past (the broker had lost them) were never delivered: a run
            // ends before them, and the next one starts after (channel state replayed across).
            let skipped = &live.skipped[p];
            match live.run[p] {
                Some((a, e)) if o > e && skipped.overlaps(e, o) => {
                    live.shadow.covered[p].insert(a, e);
                    live.run[p] = Some((o, o + 1));
                }
                Some((_, ref mut e)) if o >= *e => *e = o + 1,
                Some((a, e)) if a <= o && o < e => {}
                Some((a, e)) => {
                    live.shadow.covered[p].insert(a, e);
                    live.run[p] = Some((o, o + 1));
                }
                None => live.run[p] = Some((o, o + 1)),
            }
            let below_start = o < live.start[p] && o < live.shadow.walked[p] && o >= live.floor[p];
            let cause = if below_start && !before { Some(live.shadow.loss_cause(p, o)) } else { None };
            let slot = live.slots_of.slot(id, ids, &mut live.shadow.keys);
            let ks = live.shadow.keys.at_mut(slot);
            ks.applies += 1;
            ks.state = count;
            if !ks.dirty {
                ks.dirty = true;
                live.dirty.push(slot);
            }
            if before {
                if live.shadow.repeats.len() < REPEATS_KEPT {
                    let rewound_to = live.start[p];
                    live.shadow.repeats.push(Repeat { origin, restored: live.restored, rewound_to });
                }
            } else {
                ks.distinct += 1;
                // A record below the start that arrives after all: in-flight records an unaligned
                // checkpoint persisted, replayed from channel state. It was tallied lost; it is not.
                // Taken back from the cause it was tallied with (in flight when a broker reset moved
                // the source on: the broker's), else from any, so that the causes add up to `lost`.
                if let Some(cause) = cause {
                    let _ = ks.take_back(cause)
                        || ks.take_back(LossCause::Restore)
                        || ks.take_back(LossCause::NoCheckpoint)
                        || ks.take_back(LossCause::Broker);
                }
            }
        }
    }

    /// A counter subtask snapshotted its state for `checkpoint`: O(ranges), the maps are shared.
    pub fn snapshot(&self, attempt: u64, subtask: usize, checkpoint: u64) {
        if !self.enabled {
            return;
        }
        let shadow = {
            let mut live = lock(&self.live[subtask]);
            if live.attempt != attempt {
                return;
            }
            live.fold_runs();
            live.shadow.clone()
        };
        let mut g = lock(&self.global);
        if g.attempt != attempt {
            return;
        }
        let n = self.parallelism;
        g.parts.entry(checkpoint).or_insert_with(|| vec![None; n])[subtask] = Some(shadow);
    }

    /// A checkpoint completed: its parts become a restorable shadow.
    pub fn checkpoint_completed(&self, checkpoint: u64) {
        self.checkpoint_completed_beside(checkpoint, &[]);
    }

    /// A checkpoint completed while the savepoints `pending` (older ids among them) are still in
    /// flight: their parts stay. A checkpoint subsumes older checkpoints, never a savepoint
    /// (CheckpointCoordinator.dropSubsumedCheckpoints, PendingCheckpoint.canBeSubsumed), and an
    /// older savepoint whose last acknowledgement comes later (its asynchronous part took longer,
    /// a manual checkpoint beside a stop-with-savepoint) still completes and may be restored.
    pub fn checkpoint_completed_beside(&self, checkpoint: u64, pending: &[u64]) {
        if !self.enabled {
            return;
        }
        let mut g = lock(&self.global);
        if let Some(parts) = g.parts.remove(&checkpoint) {
            let partitions = g.start.len();
            let shadows: Vec<Shadow> = parts.into_iter().map(|s| s.unwrap_or_else(|| Shadow::new(partitions))).collect();
            g.completed.insert(checkpoint, shadows);
        }
        // Parts of older checkpoints can no longer complete; those of older savepoints can.
        let mut newer = g.parts.split_off(&checkpoint);
        for id in pending {
            if let Some(parts) = g.parts.remove(id) {
                newer.insert(*id, parts);
            }
        }
        g.parts = newer;
    }

    /// A checkpoint failed or is no longer retained.
    pub fn checkpoint_discarded(&self, checkpoint: u64) {
        if !self.enabled {
            return;
        }
        let mut g = lock(&self.global);
        g.parts.remove(&checkpoint);
        g.completed.remove(&checkpoint);
    }

    /// The sink emitted a line for a record; returns whether that record had one already.
    pub fn emitted(&self, origin: Origin, value: &str) -> bool {
        if !self.enabled {
            return false;
        }
        let key = key_of(value, self.key_by);
        let mut out = lock(&self.output);
        out.lines += 1;
        let Some(set) = out.emitted.get_mut(origin.partition as usize) else { return false };
        let repeat = !set.insert_one(origin.offset);
        if repeat {
            match out.repeated.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    out.repeated.insert(Arc::from(key), 1);
                }
            }
        }
        repeat
    }

    /// The lowest offset of partition `p` a later walk may still read: the first stretch of a kept
    /// or live shadow that a deploy would walk (what its subtask did not apply above where losses
    /// are tallied), and the first record held in a state whose output line is missing. Retention
    /// keeps everything from here on; below it the auditor's figures are tallied for good.
    pub fn retain_floor(&self, p: u32) -> u64 {
        if !self.enabled {
            return u64::MAX;
        }
        self.tally_pending_losses();
        self.seal(p);
        let p = p as usize;
        let first_hole = |s: &Shadow, run: Option<(u64, u64)>| -> u64 {
            let Some(covered) = s.covered.get(p) else { return u64::MAX };
            let mut c = covered.clone();
            if let Some((a, b)) = run {
                c.insert(a, b);
            }
            let from = s.walked.get(p).copied().unwrap_or(0);
            c.holes(from, u64::MAX).first().map_or(u64::MAX, |h| h.0)
        };
        let mut floor = u64::MAX;
        let mut coverage: Vec<Ranges> = Vec::new();
        for l in &self.live {
            let l = lock(l);
            floor = floor.min(first_hole(&l.shadow, l.run.get(p).copied().flatten()));
            let mut c = l.shadow.covered.get(p).cloned().unwrap_or_default();
            if let Some(Some((a, b))) = l.run.get(p) {
                c.insert(*a, *b);
            }
            coverage.push(c);
        }
        {
            let g = lock(&self.global);
            for shadows in g.completed.values() {
                for s in shadows {
                    floor = floor.min(first_hole(s, None));
                }
            }
        }
        let pos = lock(&self.global).position.get(p).copied().unwrap_or(0);
        let out = lock(&self.output);
        if out.lines > 0 {
            if let Some(set) = out.emitted.get(p) {
                for (a, b) in set.holes(0, pos) {
                    let first = coverage.iter().flat_map(|c| c.iter()).filter(|&(x, y)| x.max(a) < y.min(b)).map(|(x, _)| x.max(a)).min();
                    if let Some(f) = first {
                        floor = floor.min(f);
                        break;
                    }
                }
            }
        }
        floor
    }

    /// Marks as covered the stretches of partition `p` below the sources' position that hold none
    /// of a subtask's own records (a subtask no record of `p` goes to has nothing but such
    /// stretches): they can hold no loss, so no later walk needs them. Walked without the lock.
    fn seal(&self, p: u32) {
        let pi = p as usize;
        let pos = lock(&self.global).position.get(pi).copied().unwrap_or(0);
        for (s, l) in self.live.iter().enumerate() {
            let (holes, attempt) = {
                let l = lock(l);
                let Some(covered) = l.shadow.covered.get(pi) else { continue };
                let mut c = covered.clone();
                if let Some(Some((a, b))) = l.run.get(pi) {
                    c.insert(*a, *b);
                }
                let from = l.shadow.walked.get(pi).copied().unwrap_or(0);
                (c.holes(from, pos), l.attempt)
            };
            let mut empty = Vec::new();
            for (a, b) in holes {
                let mut mine = false;
                let mut reached = a;
                self.walk(p, a, b, |o, _, owner| {
                    reached = o + 1;
                    mine |= owner == s;
                });
                if !mine && reached == b {
                    empty.push((a, b));
                }
            }
            let mut l = lock(l);
            if l.attempt == attempt {
                for (a, b) in empty {
                    l.shadow.covered[pi].insert(a, b);
                }
            }
        }
    }

    /// Source positions of the current run, per partition.
    pub fn positions(&self) -> Vec<u64> {
        lock(&self.global).position.clone()
    }

    /// The size of the auditor's record: ranges over all live and kept shadows (for benchmarks and
    /// tests: it grows with anomalies, not with records).
    pub fn footprint(&self) -> usize {
        let ranges = |s: &Shadow| s.covered.iter().map(Ranges::count).sum::<usize>();
        let live: usize = self.live.iter().map(|l| ranges(&lock(l).shadow)).sum();
        let g = lock(&self.global);
        let kept: usize =
            g.completed.values().flatten().map(ranges).sum::<usize>() + g.parts.values().flatten().flatten().map(ranges).sum::<usize>();
        drop(g);
        let out: usize = lock(&self.output).emitted.iter().map(Ranges::count).sum();
        live + kept + out
    }

    /// The verdict's totals now, without the per-key table (`keys` is empty, `key_count` says how
    /// many rows it has): O(keys changed since the last verdict + records in flight).
    pub fn verdict_totals(&self) -> Verdict {
        self.judge(Rows::None)
    }

    /// The verdict with `count` rows of its per-key table from row `first` on (in key order), as
    /// a view that shows a page of rows needs: O(changed keys + in flight + count).
    pub fn verdict_page(&self, first: usize, count: usize) -> Verdict {
        self.judge(Rows::Page { first, count })
    }

    /// The verdict now (exact once caught up; live figures count in-flight records apart), with
    /// every key's row: O(keys) for the table it returns, plus what [`Auditor::verdict_totals`]
    /// costs. No lock a task waits on is held while it is computed.
    pub fn verdict(&self) -> Verdict {
        self.judge(Rows::All)
    }

    fn judge(&self, rows: Rows) -> Verdict {
        let mut v = Verdict { consistent: true, audited: self.enabled, ..Verdict::default() };
        if !self.enabled {
            return v;
        }
        self.tally_pending_losses();
        let (start, position) = {
            let g = lock(&self.global);
            (g.start.clone(), g.position.clone())
        };
        // The table first, then each subtask's lock in turn, each only to take its changed keys
        // and its ranges (O(changed keys + ranges)): a task waits on its lock no longer than that.
        let mut table = lock(&self.table);
        let copies: Vec<Coverage> = self.live.iter().enumerate().map(|(s, l)| table.refresh(s, &mut lock(l))).collect();
        let (emitted, repeated, lines) = {
            let o = lock(&self.output);
            (o.emitted.clone(), o.repeated.clone(), o.lines)
        };
        v.output_lines = lines;
        let covers = |c: &Coverage, p: usize, o: u64| matches!(c.run[p], Some((a, b)) if a <= o && o < b) || c.covered[p].contains(o);
        // Per key: (in flight (+), applied beyond the sources' position (-), subtask, output gaps).
        let mut adjust: FxHashMap<Arc<str>, (u64, u64, usize, u64)> = FxHashMap::default();
        for p in 0..self.topic.partitions() as usize {
            v.produced += self.topic.len(p as u32);
            let pos = position.get(p).copied().unwrap_or(0);
            v.unread += self.topic.len(p as u32).saturating_sub(pos);
            let st = start.get(p).copied().unwrap_or(0);
            // In flight: each subtask's own records between where it is and the sources' position.
            let done: Vec<u64> = copies.iter().map(|c| c.run[p].map_or(st, |(_, e)| e.max(st))).collect();
            let lo = done.iter().copied().min().unwrap_or(pos);
            if lo < pos {
                self.walk(p as u32, lo, pos, |o, key, s| {
                    if o >= done[s] && !covers(&copies[s], p, o) {
                        bump(&mut adjust, key, s).0 += 1;
                    }
                });
            }
            // Applied beyond the position: not passed yet as the sources see it (a restored
            // at-least-once state holds records past its offsets; a source publishes after sending).
            let hi = copies.iter().map(|c| c.covered[p].end().max(c.run[p].map_or(0, |r| r.1))).max().unwrap_or(0);
            if hi > pos {
                self.walk(p as u32, pos, hi, |o, key, s| {
                    if covers(&copies[s], p, o) {
                        bump(&mut adjust, key, s).1 += 1;
                    }
                });
            }
            // Output gaps: records in the state without a line, below the position.
            if lines > 0 {
                let holes = emitted.get(p).map(|set| set.holes(0, pos)).unwrap_or_default();
                if !holes.is_empty() {
                    for (s, c) in copies.iter().enumerate() {
                        let mut mine = c.covered[p].clone();
                        if let Some((ra, rb)) = c.run[p] {
                            mine.insert(ra, rb);
                        }
                        for &(a, b) in &holes {
                            for (ca, cb) in mine.iter() {
                                let (x, y) = (ca.max(a), cb.min(b));
                                if x < y {
                                    self.walk(p as u32, x, y, |_, key, owner| {
                                        if owner == s {
                                            bump(&mut adjust, key, s).3 += 1;
                                        }
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        // Totals: the table's sums, with the few keys the walks adjusted taken out and put back.
        let t = table.sums;
        v.expected = t.expected;
        v.state = t.state;
        v.lost_no_checkpoint = t.lost_no_checkpoint;
        v.lost_by_restore = t.lost_by_restore;
        v.lost_by_broker = t.lost_by_broker;
        v.lost = t.lost_no_checkpoint + t.lost_by_restore + t.lost_by_broker;
        v.overcounted = t.overcounted;
        v.consistent = t.mismatched == 0;
        for (key, &(inflight, beyond, _, gaps)) in &adjust {
            match table.rows.get(key) {
                Some((_, ks)) => {
                    let base = ks.distinct + ks.lost();
                    v.expected = v.expected - base + (base + inflight).saturating_sub(beyond);
                }
                None => v.expected += inflight,
            }
            v.output_gaps += gaps;
        }
        v.repeated_output = repeated.values().sum();
        v.in_flight = v.expected as i64 - v.lost as i64 - (v.state as i64 - v.overcounted as i64);
        v.key_count = table.key_count(&adjust, &repeated);
        if !matches!(rows, Rows::None) {
            table.sort();
        }
        let row = |key: &Arc<str>| -> Option<KeyVerdict> {
            let adj = adjust.get(key);
            let rep = repeated.get(key).copied();
            let kv = match (table.rows.get(key), adj) {
                (Some(&(s, ks)), _) => {
                    let (inflight, beyond, _, gaps) = adj.copied().unwrap_or((0, 0, s, 0));
                    let lost = ks.lost();
                    KeyVerdict {
                        expected: (ks.distinct + lost + inflight).saturating_sub(beyond),
                        state: ks.state,
                        lost,
                        lost_no_checkpoint: ks.lost_no_checkpoint,
                        lost_by_restore: ks.lost_by_restore,
                        lost_by_broker: ks.lost_by_broker,
                        overcounted: ks.applies - ks.distinct.min(ks.applies),
                        repeated_output: rep.unwrap_or(0),
                        output_gaps: gaps,
                        subtask: s,
                    }
                }
                // Keys only in flight so far.
                (None, Some(&(inflight, _, s, _))) => {
                    KeyVerdict { expected: inflight, subtask: s, repeated_output: rep.unwrap_or(0), ..KeyVerdict::default() }
                }
                (None, None) => KeyVerdict { subtask: self.owner(key), repeated_output: rep?, ..KeyVerdict::default() },
            };
            Some(kv)
        };
        match rows {
            Rows::None => {}
            Rows::All => {
                // In key order, so that the map is built in one pass (no insert walks the tree).
                let order = table.order(&adjust, &repeated);
                let rows: Vec<(String, KeyVerdict)> = order.iter().filter_map(|k| row(k).map(|kv| (k.to_string(), kv))).collect();
                v.keys = rows.into_iter().collect();
            }
            Rows::Page { first, count } => {
                let order = table.order(&adjust, &repeated);
                for key in order.iter().skip(first).take(count) {
                    if let Some(kv) = row(key) {
                        v.keys.insert(key.to_string(), kv);
                    }
                }
                v.keys_from = first.min(order.len());
            }
        }
        drop(table);
        // The figures are counted against a topic that lost records: they prove nothing.
        if self.topic.truth_lost().is_some() {
            v.consistent = false;
        }
        v
    }

    /// Why a key's figures are what they are: its repeated and lost records, with their cause.
    pub fn explain(&self, key: &str) -> Explanation {
        let mut ex = Explanation { key: key.to_string(), ..Explanation::default() };
        if !self.enabled {
            return ex;
        }
        let s = self.owner(key);
        ex.subtask = s;
        let (baseline, start, broker_lost) = {
            let g = lock(&self.global);
            (g.baseline.clone(), g.start.clone(), g.broker_lost.clone())
        };
        let (shadow, run, restored) = {
            let l = lock(&self.live[s]);
            (l.shadow.clone(), l.run.clone(), l.restored)
        };
        ex.restored = restored;
        let ks = shadow.keys.get(key).copied().unwrap_or_default();
        ex.lost_no_checkpoint = ks.lost_no_checkpoint;
        ex.lost_by_restore = ks.lost_by_restore;
        ex.lost_by_broker = ks.lost_by_broker;
        ex.overcounted = ks.applies - ks.distinct.min(ks.applies);
        // Repeats, grouped by partition into runs of consecutive records of this key.
        let mut mine: Vec<Repeat> = Vec::new();
        for r in shadow.repeats.iter().filter(|r| self.key_at(r.origin) == Some(key.to_string())) {
            mine.push(*r);
        }
        mine.sort_by_key(|r| (r.origin.partition, r.origin.offset));
        for r in mine {
            match ex.repeated.last_mut() {
                Some(g) if g.partition == r.origin.partition && g.restored == r.restored => {
                    g.to = r.origin.offset;
                    g.records += 1;
                }
                _ => ex.repeated.push(RepeatRange {
                    partition: r.origin.partition,
                    from: r.origin.offset,
                    to: r.origin.offset,
                    records: 1,
                    restored: r.restored,
                    rewound_to: r.rewound_to,
                }),
            }
        }
        // Lost: this key's records below the start that the state does not hold.
        let mut lost: Vec<LostRange> = Vec::new();
        for (p, &st) in start.iter().enumerate() {
            let from = baseline.get(p).copied().unwrap_or(0);
            let mut open = false;
            self.walk(p as u32, from, st, |o, k, owner| {
                if owner != s || k != key {
                    return;
                }
                let held = matches!(run[p], Some((a, b)) if a <= o && o < b) || shadow.covered[p].contains(o);
                let by_broker = broker_lost.get(p).is_some_and(|r| r.contains(o));
                if held {
                    open = false;
                } else if open && lost.last().is_some_and(|l| l.by_broker == by_broker) {
                    if let Some(l) = lost.last_mut() {
                        l.to = o;
                        l.records += 1;
                    }
                } else {
                    lost.push(LostRange { partition: p as u32, from: o, to: o, records: 1, start: st, by_broker });
                    open = true;
                }
            });
        }
        ex.lost = lost;
        ex
    }

    fn key_at(&self, origin: Origin) -> Option<String> {
        let mut out = Vec::new();
        if self.topic.read(origin.partition, origin.offset, 1, &mut out) == 1 {
            return Some(key_of(&out[0], self.key_by).to_string());
        }
        None
    }
}

/// Records of one key applied more than once: `partition@from..=to` (offsets of this key's records
/// in that stretch), applied again after the restore of `restored`, whose offsets rewound the
/// partition to `rewound_to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepeatRange {
    pub partition: u32,
    pub from: u64,
    pub to: u64,
    /// This key's records in the stretch (other keys' records lie between them).
    #[serde(default)]
    pub records: u64,
    pub restored: Option<u64>,
    pub rewound_to: u64,
}

/// Records of one key lost: `partition@from..=to`, below where the sources started (`start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LostRange {
    pub partition: u32,
    pub from: u64,
    pub to: u64,
    /// This key's records in the stretch.
    #[serde(default)]
    pub records: u64,
    pub start: u64,
    /// The broker had lost them when a source was to read them (see `KeyVerdict::lost_by_broker`).
    #[serde(default)]
    pub by_broker: bool,
}

/// Why a key was overcounted or lost, record by record (see [`Auditor::explain`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub key: String,
    pub subtask: usize,
    /// The checkpoint the current attempt restored (None: it started from nothing).
    pub restored: Option<u64>,
    pub overcounted: u64,
    pub lost_no_checkpoint: u64,
    pub lost_by_restore: u64,
    #[serde(default)]
    pub lost_by_broker: u64,
    pub repeated: Vec<RepeatRange>,
    pub lost: Vec<LostRange>,
}

impl Explanation {
    /// The explanation as lines a person reads.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.overcounted == 0 && self.lost_no_checkpoint + self.lost_by_restore + self.lost_by_broker == 0 {
            out.push(format!("{}: every record counted once (counter[{}])", self.key, self.subtask));
            return out;
        }
        let of_key = |n: u64| if n == 1 { format!("1 record of {}", self.key) } else { format!("{n} records of {}", self.key) };
        for r in &self.repeated {
            let span = if r.from == r.to {
                format!("p{}@{}", r.partition, r.from)
            } else {
                format!("p{}@{}..{} ({})", r.partition, r.from, r.to, of_key(r.records))
            };
            let why = match r.restored {
                Some(c) => format!(
                    "counted again after the restore of checkpoint {c}, which rewound p{} to {}: the checkpoint's state already held them (at-least-once: they overtook the barrier on a faster channel while counter[{}] did not align)",
                    r.partition, r.rewound_to, self.subtask
                ),
                None => "counted again after a restart from nothing (earliest replays what the state already held? the state was empty: a repeat within one attempt means a broken engine)".to_string(),
            };
            out.push(format!("{span} applied more than once: {why}"));
        }
        if self.overcounted > 0 && self.repeated.is_empty() {
            out.push(format!("{} records applied more than once (not kept for explanation)", self.overcounted));
        }
        for l in &self.lost {
            let span = if l.from == l.to {
                format!("p{}@{}", l.partition, l.from)
            } else {
                format!("p{}@{}..{} ({})", l.partition, l.from, l.to, of_key(l.records))
            };
            let why = if l.by_broker {
                format!(
                    "the broker lost them (it came back empty, or the topic was recreated) before a source read them; the sources went on at p{}@{} (auto.offset.reset), as Flink's KafkaSource does",
                    l.partition, l.start
                )
            } else if self.lost_by_restore > 0 {
                format!(
                    "the restored checkpoint {} did not hold them and the sources started at p{}@{}",
                    self.restored.map_or("-".into(), |c| c.to_string()),
                    l.partition,
                    l.start
                )
            } else {
                format!(
                    "no checkpoint had completed: the state started empty and the sources started at p{}@{} (auto.offset.reset), so they were skipped or forgotten; Flink does the same",
                    l.partition, l.start
                )
            };
            out.push(format!("{span} lost: {why}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Ranges;

    fn ranges(r: &Ranges) -> Vec<(u64, u64)> {
        r.iter().collect()
    }

    // Catches an insert that keeps touching ranges apart ([0,5) [5,10) as two): the shadow's
    // size would grow with every record instead of staying one range per hole.
    #[test]
    fn touching_and_overlapping_inserts_merge_into_one_range() {
        let mut r = Ranges::default();
        r.insert(0, 5);
        r.insert(5, 10);
        r.insert(3, 7);
        assert_eq!(ranges(&r), vec![(0, 10)]);
        assert_eq!(r.count(), 1);
    }

    // Catches a merge that drops the end of a range it swallows, or one that only looks at the
    // range before `a`: [8, 22) bridges three ranges and ends inside the last one.
    #[test]
    fn an_insert_bridging_several_ranges_keeps_the_furthest_end() {
        let mut r = Ranges::default();
        r.insert(0, 5);
        r.insert(12, 15);
        r.insert(20, 30);
        r.insert(8, 22);
        assert_eq!(ranges(&r), vec![(0, 5), (8, 30)]);
        r.insert(5, 8);
        assert_eq!(ranges(&r), vec![(0, 30)]);
    }

    // Catches the fast path (extending the last range) taken for an insert below it: [0, 3)
    // below [10, 20) is a range of its own, and the hole between them stays a hole.
    #[test]
    fn an_insert_below_the_last_range_leaves_the_hole_between() {
        let mut r = Ranges::default();
        r.insert(10, 20);
        r.insert(0, 3);
        assert_eq!(ranges(&r), vec![(0, 3), (10, 20)]);
        assert_eq!(r.end(), 20);
    }

    // Catches an off-by-one in `contains` (half-open ends counted as inside, starts as outside)
    // and a hole reported as covered: the verdict's lost and duplicated records come from here.
    #[test]
    fn contains_sees_holes_and_half_open_ends() {
        let mut r = Ranges::default();
        r.insert(0, 3);
        r.insert(5, 8);
        let inside: Vec<u64> = (0..10).filter(|&o| r.contains(o)).collect();
        assert_eq!(inside, vec![0, 1, 2, 5, 6, 7]);
        assert!(!Ranges::default().contains(0));
    }

    // Catches an overlap test that looks only at the range starting before `b` without its end,
    // or counts a touching end as inside: a delivery run would then be cut (or not) wrongly
    // at the records a broker lost.
    #[test]
    fn overlaps_sees_any_offset_in_common_and_nothing_at_touching_ends() {
        let mut r = Ranges::default();
        r.insert(5, 8);
        r.insert(20, 30);
        assert!(!r.overlaps(0, 5) && !r.overlaps(8, 20) && !r.overlaps(30, 40));
        assert!(r.overlaps(7, 9) && r.overlaps(0, 6) && r.overlaps(9, 21) && r.overlaps(6, 7));
        assert!(!r.overlaps(6, 6), "an empty span overlaps nothing");
        assert!(!Ranges::default().overlaps(0, 100));
    }

    // Catches `insert_one` reporting a duplicate as new (an overcount the verdict would miss)
    // and an empty insert ([a, a) or reversed) creating a range.
    #[test]
    fn insert_one_tells_new_from_duplicate_and_empty_inserts_add_nothing() {
        let mut r = Ranges::default();
        r.insert(4, 4);
        r.insert(9, 2);
        assert!(r.is_empty());
        assert!(r.insert_one(7));
        assert!(!r.insert_one(7));
        assert!(r.insert_one(8));
        assert_eq!(ranges(&r), vec![(7, 9)]);
    }

    // Catches a record read back without its order checked: a reversed, empty, overlapping or
    // touching pair would give a shadow whose `contains` answers wrongly, so the restored run's
    // verdict would be wrong rather than refused.
    #[test]
    fn ranges_read_back_only_ascending_non_empty_and_apart() {
        let mut r = Ranges::default();
        r.insert(0, 5);
        r.insert(9, 12);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "[[0,5],[9,12]]");
        assert_eq!(serde_json::from_str::<Ranges>(&json).unwrap(), r);
        for (bad, index) in [("[[5,5]]", 0), ("[[0,5],[4,9]]", 1), ("[[0,5],[5,9]]", 1), ("[[9,12],[0,5]]", 1), ("[[0,5],[7,6]]", 1)] {
            let e = Ranges::try_from(serde_json::from_str::<Vec<(u64, u64)>>(bad).unwrap()).unwrap_err();
            assert_eq!(e.index, index, "{bad}: {e}");
            assert!(serde_json::from_str::<Ranges>(bad).is_err(), "{bad} is refused by serde too");
        }
    }
}
