//! The auditor: the ground truth against which every run is judged.
//!
//! It follows each record of the topic by its origin (partition, offset) and knows, for each counter
//! subtask, how many times each record's effect is in the live state (its *shadow*). Shadows are
//! copied when a subtask snapshots and put back when a checkpoint is restored, exactly as the state
//! itself, so the figures are exact, not estimated:
//!
//! - expected: records the sources have passed (consumed, or skipped by an offset reset);
//! - lost: passed records whose effect is missing from the state and that will not arrive any more
//!   (they lie before where the current run's sources started: skipped, or forgotten by a restart
//!   from an older checkpoint or from nothing);
//! - overcounted: extra applications of a record already reflected;
//! - in flight: consumed in this run and not yet applied.
//!
//! Once caught up, `state = expected - lost + overcounted` for every key.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::cluster::element::Origin;
use crate::config::KeyBy;
use crate::connectors::Topic;
use crate::keygroup::{key_group, operator_index};

type Shadow = HashMap<Origin, u32>;

/// The verdict for one key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyVerdict {
    pub expected: u64,
    pub state: u64,
    pub lost: u64,
    pub overcounted: u64,
    pub subtask: usize,
}

/// The verdict: per key and totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub produced: u64,
    pub expected: u64,
    pub state: u64,
    pub lost: u64,
    pub overcounted: u64,
    pub in_flight: i64,
    pub repeated_output: u64,
    pub output_lines: u64,
    pub keys: BTreeMap<String, KeyVerdict>,
    /// The operator's state equals the auditor's shadow for every key (a self-check), and the
    /// topic still holds what the auditor read ([`Topic::truth_lost`] says why not).
    pub consistent: bool,
}

impl Verdict {
    /// `ok`, `lost N`, `overcounted N` (or both) for the totals; `inconsistent` when the
    /// auditor's record and the operator's state disagree (then no figure can be trusted).
    pub fn summary(&self) -> String {
        if !self.consistent {
            return "inconsistent".into();
        }
        summary(self.lost, self.overcounted)
    }
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

struct AuditState {
    attempt: u64,
    deployed: bool,
    baseline: Vec<u64>,
    start: Vec<u64>,
    position: Vec<u64>,
    live: Vec<Shadow>,
    published: Vec<HashMap<Arc<str>, u64>>,
    parts: BTreeMap<u64, Vec<Option<Shadow>>>,
    /// Per completed checkpoint, each counter subtask's shadow.
    completed: BTreeMap<u64, Vec<Shadow>>,
    emitted: HashSet<Origin>,
    repeated: u64,
    lines: u64,
}

/// Shared by the tasks of every attempt; calls from a stale attempt (a task not yet cancelled after
/// a failover) are ignored.
pub struct Auditor {
    enabled: bool,
    topic: Arc<dyn Topic>,
    parallelism: usize,
    key_by: KeyBy,
    inner: Mutex<AuditState>,
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

impl Auditor {
    pub fn new(enabled: bool, topic: Arc<dyn Topic>, parallelism: usize, key_by: KeyBy) -> Self {
        let partitions = topic.partitions() as usize;
        Auditor {
            enabled,
            topic,
            parallelism,
            key_by,
            inner: Mutex::new(AuditState {
                attempt: 0,
                deployed: false,
                baseline: vec![0; partitions],
                start: vec![0; partitions],
                position: vec![0; partitions],
                live: vec![Shadow::new(); parallelism],
                published: vec![HashMap::new(); parallelism],
                parts: BTreeMap::new(),
                completed: BTreeMap::new(),
                emitted: HashSet::new(),
                repeated: 0,
                lines: 0,
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn lock(&self) -> MutexGuard<'_, AuditState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subtask_of(&self, key: &str) -> usize {
        operator_index(key_group(key), self.parallelism)
    }

    /// A new attempt starts: sources at `start` (partition -> offset), state from `checkpoint`.
    pub fn deploy(&self, attempt: u64, start: &[u64], checkpoint: Option<u64>) {
        if !self.enabled {
            return;
        }
        let mut s = self.lock();
        s.attempt = attempt;
        if !s.deployed {
            s.baseline = start.to_vec();
            s.deployed = true;
        }
        s.start = start.to_vec();
        s.position = start.to_vec();
        // Each subtask's shadow as the checkpoint captured it (not re-derived from the topic: a
        // Kafka mirror may not hold those records yet when a job restarts right after an outage).
        s.live = match checkpoint.and_then(|c| s.completed.get(&c)) {
            Some(shadows) => shadows.clone(),
            None => vec![Shadow::new(); self.parallelism],
        };
        s.published = vec![HashMap::new(); self.parallelism];
    }

    /// A source moved its position in a partition.
    pub fn source_advanced(&self, attempt: u64, partition: u32, position: u64) {
        if !self.enabled {
            return;
        }
        let mut s = self.lock();
        if s.attempt == attempt {
            if let Some(p) = s.position.get_mut(partition as usize) {
                *p = position;
            }
        }
    }

    /// A counter subtask restored its state: its published values.
    pub fn restored(&self, attempt: u64, subtask: usize, entries: Vec<(Arc<str>, u64)>) {
        if !self.enabled {
            return;
        }
        let mut s = self.lock();
        if s.attempt == attempt {
            s.published[subtask] = entries.into_iter().collect();
        }
    }

    /// A counter subtask applied records: (origin, key, the key's new count).
    pub fn applied(&self, attempt: u64, subtask: usize, batch: &[(Origin, Arc<str>, u64)]) {
        if !self.enabled || batch.is_empty() {
            return;
        }
        let mut s = self.lock();
        if s.attempt != attempt {
            return;
        }
        for (origin, key, count) in batch {
            *s.live[subtask].entry(*origin).or_insert(0) += 1;
            s.published[subtask].insert(key.clone(), *count);
        }
    }

    /// A counter subtask snapshotted its state for `checkpoint`.
    pub fn snapshot(&self, attempt: u64, subtask: usize, checkpoint: u64) {
        if !self.enabled {
            return;
        }
        let mut s = self.lock();
        if s.attempt != attempt {
            return;
        }
        let shadow = s.live[subtask].clone();
        let n = self.parallelism;
        s.parts.entry(checkpoint).or_insert_with(|| vec![None; n])[subtask] = Some(shadow);
    }

    /// A checkpoint completed: its parts become a restorable shadow.
    pub fn checkpoint_completed(&self, checkpoint: u64) {
        if !self.enabled {
            return;
        }
        let mut s = self.lock();
        if let Some(parts) = s.parts.remove(&checkpoint) {
            let shadows: Vec<Shadow> = parts.into_iter().map(Option::unwrap_or_default).collect();
            s.completed.insert(checkpoint, shadows);
        }
        // Parts of older checkpoints can no longer complete.
        s.parts = s.parts.split_off(&checkpoint);
    }

    /// A checkpoint failed or is no longer retained.
    pub fn checkpoint_discarded(&self, checkpoint: u64) {
        if !self.enabled {
            return;
        }
        let mut s = self.lock();
        s.parts.remove(&checkpoint);
        s.completed.remove(&checkpoint);
    }

    /// The sink emitted a line for a record; returns whether that record had one already.
    pub fn emitted(&self, origin: Origin) -> bool {
        if !self.enabled {
            return false;
        }
        let mut s = self.lock();
        s.lines += 1;
        let repeat = !s.emitted.insert(origin);
        if repeat {
            s.repeated += 1;
        }
        repeat
    }

    /// Source positions of the current run, per partition.
    pub fn positions(&self) -> Vec<u64> {
        self.lock().position.clone()
    }

    /// The verdict now (exact once caught up; live figures count in-flight records apart).
    pub fn verdict(&self) -> Verdict {
        let mut v = Verdict { consistent: true, ..Verdict::default() };
        if !self.enabled {
            return v;
        }
        let s = self.lock();
        v.repeated_output = s.repeated;
        v.output_lines = s.lines;
        let mut shadow_totals: HashMap<String, u64> = HashMap::new();
        let mut values = Vec::new();
        for p in 0..self.topic.partitions() {
            let len = self.topic.len(p);
            v.produced += len;
            let base = s.baseline.get(p as usize).copied().unwrap_or(0);
            let start = s.start.get(p as usize).copied().unwrap_or(0);
            let pos = s.position.get(p as usize).copied().unwrap_or(0);
            values.clear();
            self.topic.read(p, base, (len - base.min(len)) as usize, &mut values);
            for (i, value) in values.iter().enumerate() {
                let offset = base + i as u64;
                let key = key_of(value, self.key_by);
                let subtask = self.subtask_of(key);
                let kv = v.keys.entry(key.to_string()).or_insert_with(|| KeyVerdict { subtask, ..KeyVerdict::default() });
                let c = u64::from(s.live[subtask].get(&Origin { partition: p, offset }).copied().unwrap_or(0));
                *shadow_totals.entry(key.to_string()).or_insert(0) += c;
                if offset < pos {
                    kv.expected += 1;
                }
                if offset < start && c == 0 {
                    kv.lost += 1;
                }
                kv.overcounted += c.saturating_sub(1);
            }
        }
        for (key, kv) in v.keys.iter_mut() {
            kv.state = s.published[kv.subtask].get(key.as_str()).copied().unwrap_or(0);
            if shadow_totals.get(key).copied().unwrap_or(0) != kv.state {
                v.consistent = false;
            }
            v.expected += kv.expected;
            v.state += kv.state;
            v.lost += kv.lost;
            v.overcounted += kv.overcounted;
        }
        v.in_flight = v.expected as i64 - v.lost as i64 - (v.state as i64 - v.overcounted as i64);
        // The figures are counted against a topic that lost records: they prove nothing.
        if self.topic.truth_lost().is_some() {
            v.consistent = false;
        }
        v
    }
}
