//! The auditor's record in a snapshot: each counter subtask's shadow as the checkpoint or
//! savepoint captured it, written beside `_metadata` as `_auditor`, so that a run restored from
//! that snapshot, in another process and at another parallelism, is judged whole (expected and
//! state are the whole counts, not what the restored run added). A snapshot without it (taken
//! with the auditor off, by an older ckptlab, or whose record could not be written) is judged
//! from the restored point on, as before, and says why.
//!
//! Flink keeps nothing like it: the auditor is ckptlab's ground truth, not part of the job's
//! state, and neither backend reads it. It lives in the snapshot's own directory and goes with
//! it (a subsumed checkpoint's directory is removed whole; a claimed one file by file, this one
//! with them).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{key_of, lock, Auditor, KeyShadows, Ranges, Shadow};
use crate::config::KeyBy;
use crate::connectors::topic::Topic;
use crate::keygroup::{key_group, operator_index};

/// The record's file name in a snapshot's directory.
pub const RECORD_FILE: &str = "_auditor";

/// The record's format; another version is not read (the restore is judged from its point on).
pub const RECORD_VERSION: u32 = 1;

/// The auditor's state for one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditRecord {
    pub version: u32,
    pub checkpoint: u64,
    pub key_by: KeyBy,
    /// Per partition, where the auditor started following (where the first attempt of the
    /// first run started): the whole counts are counted from there.
    pub baseline: Vec<u64>,
    /// Per partition, what the broker was known to have lost, and what the sources went past.
    pub broker_lost: Vec<Ranges>,
    pub skipped: Vec<Ranges>,
    /// Per counter subtask of the job that took the snapshot.
    pub shadows: Vec<Shadow>,
}

/// Why a snapshot's record cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not an auditor record: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: auditor record version {version}, this ckptlab reads version {RECORD_VERSION}", .path.display())]
    Version { path: PathBuf, version: u32 },
}

/// What a record holds, for `ckptlab inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordTotals {
    pub subtasks: usize,
    pub keys: usize,
    /// Applications of records the snapshot's state holds, summed over keys.
    pub applied: u64,
    pub lost: u64,
    pub bytes: u64,
}

/// How the verdict of a restored run is scoped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreJudged {
    /// From the snapshot's auditor record: the whole counts, whatever run made them.
    Whole,
    /// From the restored point on (the restored counts are taken as given), and why.
    FromRestoredPoint(String),
}

impl RestoreJudged {
    /// The verdict's scope, in the words `ckptlab run` and the workbench show.
    pub fn scope(&self, offsets: &str) -> String {
        match self {
            RestoreJudged::Whole => format!(
                "whole: the snapshot's auditor record (`{RECORD_FILE}`) carries what its state holds, so expected and state are the whole counts of every run since the first (restored at offsets {offsets})"
            ),
            RestoreJudged::FromRestoredPoint(why) => format!(
                "from the restored point on (offsets {offsets}): {why}; the restored counts are taken as given, and each key's state is judged by what this run added to it"
            ),
        }
    }
}

impl AuditRecord {
    /// The record in snapshot directory `dir`: `Ok(None)` when it has none.
    pub fn read(dir: &Path) -> Result<Option<AuditRecord>, RecordError> {
        let path = dir.join(RECORD_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(RecordError::Read { path, source }),
        };
        // The version first: a record of another version may not parse as this one.
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let v: Versioned = serde_json::from_slice(&bytes).map_err(|e| RecordError::Parse { path: path.clone(), message: e.to_string() })?;
        if v.version != RECORD_VERSION {
            return Err(RecordError::Version { path, version: v.version });
        }
        let record: AuditRecord = serde_json::from_slice(&bytes).map_err(|e| RecordError::Parse { path: path.clone(), message: e.to_string() })?;
        let partitions = record.baseline.len();
        let shaped = record.broker_lost.len() == partitions
            && record.skipped.len() == partitions
            && record.shadows.iter().all(|s| {
                s.covered.len() == partitions && s.walked.len() == partitions && s.broker_known.len() == partitions && s.restore_tallied.len() == partitions
            });
        if !shaped || record.shadows.is_empty() {
            return Err(RecordError::Parse { path, message: format!("its per-partition lists do not all have {partitions} entries") });
        }
        Ok(Some(record))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an auditor record serializes")
    }

    pub fn totals(&self, bytes: u64) -> RecordTotals {
        let mut t = RecordTotals { subtasks: self.shadows.len(), keys: 0, applied: 0, lost: 0, bytes };
        for s in &self.shadows {
            t.keys += s.keys.len();
            for k in s.keys.values() {
                t.applied += k.applies;
                t.lost += k.lost();
            }
        }
        t
    }

    /// Whether this record can judge a restored run on `topic` keyed by `key_by` (the run is
    /// judged from the restored point on when not, with the reason). The topic must hold every
    /// record the snapshot counted, at the same offsets (the durable embedded topic or Kafka; a
    /// new in-memory topic does not).
    pub fn fits(&self, topic: &dyn Topic, key_by: KeyBy, offsets: &[(u32, u64)]) -> Result<(), RecordMismatch> {
        if self.key_by != key_by {
            return Err(RecordMismatch::KeyBy { record: self.key_by, job: key_by });
        }
        let partitions = topic.partitions() as usize;
        if self.baseline.len() != partitions {
            return Err(RecordMismatch::Partitions { record: self.baseline.len(), topic: partitions });
        }
        for p in 0..partitions {
            let counted = self.shadows.iter().map(|s| s.covered[p].end().max(s.walked[p])).max().unwrap_or(0);
            let restored = offsets.iter().filter(|(q, _)| *q as usize == p).map(|(_, o)| *o).max().unwrap_or(0);
            let needed = counted.max(restored);
            let held = topic.len(p as u32);
            if held < needed {
                return Err(RecordMismatch::TopicShort { partition: p, held, needed });
            }
        }
        Ok(())
    }
}

/// Why a readable record does not fit the restored run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordMismatch {
    #[error("its record was taken with job.key-by = {}, this job keys by {}", key_by_name(*.record), key_by_name(*.job))]
    KeyBy { record: KeyBy, job: KeyBy },
    #[error("its record follows {record} partitions, the topic has {topic}")]
    Partitions { record: usize, topic: usize },
    #[error(
        "the topic does not hold the records its state counted (partition {partition} ends at {held}, the snapshot counted up to {needed}: a new in-memory topic? set source.embedded.dir for a durable one)"
    )]
    TopicShort { partition: usize, held: u64, needed: u64 },
}

fn key_by_name(k: KeyBy) -> String {
    format!("{k:?}").to_lowercase()
}

impl Auditor {
    /// The record of `checkpoint`: each subtask's shadow as its snapshot captured it (its parts,
    /// before the checkpoint completes; its shadows after). None with the auditor off, or when
    /// the auditor holds nothing of it.
    pub fn record_of(&self, checkpoint: u64) -> Option<AuditRecord> {
        if !self.enabled {
            return None;
        }
        let g = lock(&self.global);
        let partitions = g.start.len();
        let shadows: Vec<Shadow> = match (g.completed.get(&checkpoint), g.parts.get(&checkpoint)) {
            (Some(s), _) => s.clone(),
            (None, Some(parts)) => parts.iter().map(|s| s.clone().unwrap_or_else(|| Shadow::new(partitions))).collect(),
            (None, None) => return None,
        };
        Some(AuditRecord {
            version: RECORD_VERSION,
            checkpoint,
            key_by: self.key_by,
            baseline: g.baseline.clone(),
            broker_lost: g.broker_lost.clone(),
            skipped: g.skipped.clone(),
            shadows,
        })
    }

    /// A run restored from a snapshot carrying `record` starts from it: the snapshot's shadows,
    /// redistributed to this job's subtasks, become the completed checkpoint that the first
    /// deploy restores, and the auditor follows from the record's baseline. Call before the job
    /// is deployed, after [`AuditRecord::fits`].
    pub fn seed(&self, record: AuditRecord) {
        if !self.enabled {
            return;
        }
        let shadows = if record.shadows.len() == self.parallelism {
            record.shadows
        } else {
            self.rescale(&record.shadows)
        };
        let mut g = lock(&self.global);
        g.deployed = true;
        g.baseline = record.baseline;
        g.start = g.baseline.clone();
        g.position = g.baseline.clone();
        g.broker_lost = record.broker_lost;
        g.skipped = record.skipped;
        g.completed.insert(record.checkpoint, shadows);
    }

    /// Shadows of `old.len()` subtasks as this job's subtasks own their keys (Flink's key groups:
    /// a key's owner follows from its group and the parallelism). Per key the figures move with
    /// the key. A record at offset `o` is in the state when its old owner's shadow covered it:
    /// where all old shadows agree no record is read; where they differ, the records are read
    /// from the topic and each takes its old owner's answer. Losses were tallied up to the same
    /// offset by every subtask but when the topic was short at a deploy; then the furthest is
    /// kept (a record none tallied is then not tallied, rather than one tallied twice).
    fn rescale(&self, old: &[Shadow]) -> Vec<Shadow> {
        let partitions = old.first().map_or(0, |s| s.covered.len());
        let n_old = old.len();
        let mut merged_covered = vec![Ranges::default(); partitions];
        for (p, merged) in merged_covered.iter_mut().enumerate() {
            let mut cuts: Vec<u64> = old.iter().flat_map(|s| s.covered[p].iter().flat_map(|(a, b)| [a, b])).collect();
            cuts.sort_unstable();
            cuts.dedup();
            for w in cuts.windows(2) {
                let (a, b) = (w[0], w[1]);
                let covering = old.iter().filter(|s| s.covered[p].contains(a)).count();
                if covering == n_old {
                    merged.insert(a, b);
                } else if covering > 0 {
                    self.walk(p as u32, a, b, |o, key, _| {
                        let owner_then = operator_index(key_group(key), n_old);
                        if old[owner_then].covered[p].contains(o) {
                            merged.insert(o, o + 1);
                        }
                    });
                }
            }
        }
        let mut out: Vec<Shadow> = (0..self.parallelism).map(|_| Shadow::new(partitions)).collect();
        for s in out.iter_mut() {
            s.covered = merged_covered.clone();
            for p in 0..partitions {
                s.walked[p] = old.iter().map(|o| o.walked[p]).max().unwrap_or(0);
                for o in old {
                    for (a, b) in o.broker_known[p].iter() {
                        s.broker_known[p].insert(a, b);
                    }
                    for (a, b) in o.restore_tallied[p].iter() {
                        s.restore_tallied[p].insert(a, b);
                    }
                }
            }
        }
        let mut keys: Vec<KeyShadows> = vec![KeyShadows::default(); self.parallelism];
        for o in old {
            for (k, ks) in o.keys.iter() {
                keys[self.owner(k)].insert(k.clone(), *ks);
            }
        }
        for (s, k) in out.iter_mut().zip(keys) {
            s.keys = k;
        }
        // Repeats (kept for explanations) go with their record's key, when the topic has it.
        for o in old {
            for r in &o.repeats {
                let mut v = Vec::new();
                if self.topic.read(r.origin.partition, r.origin.offset, 1, &mut v) == 1 {
                    let owner = self.owner(key_of(&v[0], self.key_by));
                    if out[owner].repeats.len() < super::REPEATS_KEPT {
                        out[owner].repeats.push(*r);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::KeyShadow;
    use std::sync::Arc;

    fn record(partitions: usize) -> AuditRecord {
        AuditRecord {
            version: RECORD_VERSION,
            checkpoint: 7,
            key_by: KeyBy::Record,
            baseline: vec![0; partitions],
            broker_lost: vec![Ranges::default(); partitions],
            skipped: vec![Ranges::default(); partitions],
            shadows: vec![Shadow::new(partitions), Shadow::new(partitions)],
        }
    }

    // Catches a reader that takes a record of another version, or one whose per-partition lists
    // disagree (a shadow indexed past its end at the first record), instead of refusing it so
    // that the restore is judged from its point on; and a missing record taken as an error.
    #[test]
    fn a_record_is_read_back_and_a_missing_other_version_or_misshapen_one_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AuditRecord::read(dir.path()).unwrap().is_none(), "no record: None, not an error");
        let mut r = record(2);
        let figures = KeyShadow { applies: 5, distinct: 4, lost_no_checkpoint: 1, lost_by_restore: 2, lost_by_broker: 3, state: 6, dirty: true };
        r.shadows[1].keys.insert(Arc::from("a"), figures);
        let bytes = r.to_bytes();
        assert!(String::from_utf8_lossy(&bytes).contains(r#""keys":{"a":[5,4,1,2,3,6]}"#), "one compact list per key");
        std::fs::write(dir.path().join(RECORD_FILE), bytes).unwrap();
        let back = AuditRecord::read(dir.path()).unwrap().expect("the record");
        assert_eq!((back.checkpoint, back.shadows.len(), back.baseline), (7, 2, vec![0, 0]));
        assert_eq!(back.shadows[1].keys.get("a"), Some(&KeyShadow { dirty: false, ..figures }), "every figure read back in its place");
        let mut other = r.clone();
        other.version = RECORD_VERSION + 1;
        std::fs::write(dir.path().join(RECORD_FILE), other.to_bytes()).unwrap();
        assert!(matches!(AuditRecord::read(dir.path()), Err(RecordError::Version { version, .. }) if version == RECORD_VERSION + 1));
        let mut misshapen = r.clone();
        misshapen.shadows[1] = Shadow::new(3);
        std::fs::write(dir.path().join(RECORD_FILE), misshapen.to_bytes()).unwrap();
        assert!(matches!(AuditRecord::read(dir.path()), Err(RecordError::Parse { .. })));
        std::fs::write(dir.path().join(RECORD_FILE), b"{\"version\": 1, \"checkpoint\": ").unwrap();
        let e = AuditRecord::read(dir.path()).unwrap_err();
        assert!(e.to_string().contains(RECORD_FILE), "the error names the file: {e}");
    }
}
