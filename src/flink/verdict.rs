//! The Flink side's verdict, against the same truth as ckptlab's: the records in the log.
//!
//! Expected per key: the records of the partition files from where the job first started
//! reading (its starting position: `latest` at the job's start, or 0). State per key: the last
//! "(record,count)" the Flink sink wrote for the key (the count it holds). Overcounted = state -
//! expected when positive. Lost = expected - state when positive, but only once the job has
//! caught up (read the whole log and processed it): before that the shortfall is records not yet
//! processed, which a job in a restart loop may never reach, and it is reported as such
//! (`in_flight`), never as lost. Coarser than ckptlab's auditor, which follows every record (it
//! can tell a lost record from a counted twice one on the same key; here they cancel out), but
//! the same truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::audit::{key_of, KeyVerdict, Verdict};
use crate::config::KeyBy;
use crate::connectors::filelog::{decode_line, partition_path, DecodeError};
use crate::scenario::Figure;

/// The log's records per key, from `start[p]` on in partition p, and each partition's length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogTruth {
    pub expected: BTreeMap<String, u64>,
    /// Records in the log, from the start positions on.
    pub produced: u64,
    /// Whole lines per partition.
    pub lengths: Vec<u64>,
}

/// Why the log's truth could not be read: the file and, for a bad record, its line.
#[derive(Debug, Error)]
pub enum TruthError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: not UTF-8 ({source})", path.display())]
    NotUtf8 { path: PathBuf, line: usize, source: std::str::Utf8Error },
    #[error("{}:{line}: {source}", path.display())]
    BadRecord { path: PathBuf, line: usize, source: DecodeError },
}

/// Reads the partition files (a torn last line does not exist yet).
pub fn log_truth(dir: &Path, topic: &str, partitions: u32, key_by: KeyBy, start: &[u64]) -> Result<LogTruth, TruthError> {
    let mut truth = LogTruth::default();
    for p in 0..partitions {
        let path = partition_path(dir, topic, p);
        let text = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(TruthError::Read { path, source }),
        };
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let from = start.get(p as usize).copied().unwrap_or(0);
        let mut n = 0u64;
        if whole > 0 {
            for (i, line) in text[..whole - 1].split(|b| *b == b'\n').enumerate() {
                n += 1;
                if (i as u64) < from {
                    continue;
                }
                let line = std::str::from_utf8(line).map_err(|source| TruthError::NotUtf8 { path: path.clone(), line: i + 1, source })?;
                let value = decode_line(line).map_err(|source| TruthError::BadRecord { path: path.clone(), line: i + 1, source })?;
                *truth.expected.entry(key_of(&value, key_by).to_string()).or_default() += 1;
                truth.produced += 1;
            }
        }
        truth.lengths.push(n);
    }
    Ok(truth)
}

/// The last count per key in a print sink's output: lines "(record,count)", other lines (a log
/// line, a stack trace in the same stream) skipped. The record may hold commas: the count is
/// after the last one.
pub fn last_counts(output: &str, key_by: KeyBy) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in output.lines() {
        let Some(inner) = line.strip_prefix('(').and_then(|l| l.strip_suffix(')')) else { continue };
        let Some((value, count)) = inner.rsplit_once(',') else { continue };
        let Ok(count) = count.parse::<u64>() else { continue };
        counts.insert(key_of(value, key_by).to_string(), count);
    }
    counts
}

/// The verdict of the Flink side: the sink's last count per key against the log's truth. Before
/// the job `caught_up`, a key's shortfall is records not yet processed (`in_flight`), not lost.
pub fn flink_verdict(truth: &LogTruth, counts: &BTreeMap<String, u64>, caught_up: bool) -> Verdict {
    let mut v = Verdict { produced: truth.produced, audited: true, consistent: true, ..Default::default() };
    let keys: std::collections::BTreeSet<&String> = truth.expected.keys().chain(counts.keys()).collect();
    for k in keys {
        let expected = truth.expected.get(k).copied().unwrap_or(0);
        let state = counts.get(k).copied().unwrap_or(0);
        let short = expected.saturating_sub(state);
        let kv = KeyVerdict {
            expected,
            state,
            lost: if caught_up { short } else { 0 },
            overcounted: state.saturating_sub(expected),
            ..Default::default()
        };
        if !caught_up {
            v.in_flight += short as i64;
        }
        v.expected += kv.expected;
        v.state += kv.state;
        v.lost += kv.lost;
        v.overcounted += kv.overcounted;
        v.keys.insert(k.clone(), kv);
    }
    v
}

/// Both verdicts, per key: expected, then state, lost and overcounted for each engine (Flink's
/// lost is `?` while it had not caught up: see [`flink_verdict`]).
pub fn side_by_side(ckptlab: &Verdict, flink: &Verdict, flink_caught_up: bool) -> String {
    let flink_lost = |n: u64| if flink_caught_up { n.to_string() } else { "?".to_string() };
    let header = ["key", "expected", "ckptlab", "Flink", "lost ck", "lost Fl", "over ck", "over Fl"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    let keys: std::collections::BTreeSet<&String> = ckptlab.keys.keys().chain(flink.keys.keys()).collect();
    let none = KeyVerdict::default();
    for k in keys {
        let c = ckptlab.keys.get(k).unwrap_or(&none);
        let f = flink.keys.get(k).unwrap_or(&none);
        let expected = if c.expected == f.expected { c.expected.to_string() } else { format!("{}/{}", c.expected, f.expected) };
        rows.push(vec![
            k.clone(),
            expected,
            c.state.to_string(),
            f.state.to_string(),
            c.lost.to_string(),
            flink_lost(f.lost),
            c.overcounted.to_string(),
            f.overcounted.to_string(),
        ]);
    }
    let expected =
        if ckptlab.expected == flink.expected { ckptlab.expected.to_string() } else { format!("{}/{}", ckptlab.expected, flink.expected) };
    rows.push(vec![
        "TOTAL".into(),
        expected,
        ckptlab.state.to_string(),
        flink.state.to_string(),
        ckptlab.lost.to_string(),
        flink_lost(flink.lost),
        ckptlab.overcounted.to_string(),
        flink.overcounted.to_string(),
    ]);
    let widths: Vec<usize> = (0..header.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, cell)| if c == 0 { format!("{cell:<w$}", w = widths[c]) } else { format!("{cell:>w$}", w = widths[c]) })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 || i == rows.len() - 2 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    out
}

/// A figure an `expect` names, on the Flink side (`None`: Flink's side does not measure it).
/// `last`: Flink's newest completed checkpoint (its statistics: end-to-end duration, persisted
/// in-flight data, the longest alignment), for the `last_*` figures; -1 when none completed, as
/// ckptlab's own figures say it.
#[allow(clippy::too_many_arguments)]
pub fn flink_figure(
    name: Figure,
    key: Option<&str>,
    v: &Verdict,
    restarts: u64,
    completed: u64,
    failed: u64,
    last: Option<&super::harness::FlinkCheckpoint>,
) -> Option<i64> {
    if let Some(k) = key {
        return name.of_key(&v.keys.get(k).cloned().unwrap_or_default()).map(|n| n as i64);
    }
    Some(match name {
        Figure::Produced => v.produced,
        Figure::Expected => v.expected,
        Figure::State => v.state,
        Figure::Lost => v.lost,
        Figure::Overcounted => v.overcounted,
        Figure::Restarts => restarts,
        Figure::CheckpointsCompleted => completed,
        Figure::CheckpointsFailed => failed,
        Figure::LastCheckpointMs => return Some(last.map_or(-1, |c| c.duration_ms as i64)),
        // Older harness lines carry no persisted data or alignment: not measured then.
        Figure::LastAlignmentMs => return last.map_or(Some(-1), |c| c.alignment_ms.map(|a| a as i64)),
        Figure::LastPersistedBytes => return last.map_or(Some(-1), |c| c.persisted_bytes.map(|b| b as i64)),
        // The Flink side does not measure these.
        Figure::RepeatedOutput | Figure::InFlight | Figure::LastStartDelayMs | Figure::LastAsyncMs => return None,
        // The bridge refuses job.sink = kafka (issue 23): no output topic on the Flink side.
        Figure::CommittedOutputGaps | Figure::CommittedRepeatedOutput | Figure::UncommittedRepeatedOutput | Figure::OutputLostByTimeout => {
            return None
        }
    } as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(pairs: &[(&str, u64)]) -> LogTruth {
        LogTruth {
            expected: pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            produced: pairs.iter().map(|(_, n)| n).sum(),
            lengths: vec![],
        }
    }

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    #[test]
    fn the_sinks_last_counts_against_the_log_give_lost_and_overcounted() {
        let v = flink_verdict(&truth(&[("x", 10), ("y", 5), ("z", 2)]), &counts(&[("x", 12), ("y", 5)]), true);
        assert_eq!((v.expected, v.state, v.lost, v.overcounted), (17, 17, 2, 2));
        assert_eq!(v.keys["x"].overcounted, 2);
        assert_eq!(v.keys["z"].lost, 2);
        assert_eq!(v.keys["z"].state, 0);
    }

    #[test]
    fn the_seeds_disabled_run_forgets_and_skips() {
        // a b c counted, the TM killed, d e f skipped (latest), g counted from zero.
        let v = flink_verdict(&truth(&[("1", 7)]), &counts(&[("1", 1)]), true);
        assert_eq!((v.lost, v.overcounted, v.state), (6, 0, 1));
    }

    #[test]
    fn the_last_line_per_key_of_the_print_output_is_the_state() {
        let out = "(a,1)\n(b,1)\n12:00:01 INFO something (x,9) else\n(a,2)\n(a,1)\n(c,d,1)\nnot a line\n(b,x)\n";
        // After a restore, replayed records print again: the last line is what the state holds.
        assert_eq!(last_counts(out, KeyBy::Record), counts(&[("a", 1), ("b", 1), ("c,d", 1)]));
        assert_eq!(last_counts("(a,1)\n(b,2)\n(c,3)\n", KeyBy::Constant), counts(&[("1", 3)]));
        let v = flink_verdict(&truth(&[("a", 2), ("b", 1)]), &last_counts(out, KeyBy::Record), true);
        assert_eq!((v.lost, v.overcounted), (1, 1));
    }

    #[test]
    fn a_shortfall_before_catching_up_is_unprocessed_not_lost() {
        // A job in a restart loop: its sink is behind the log, which is no loss (yet).
        let v = flink_verdict(&truth(&[("x", 10), ("y", 5)]), &counts(&[("x", 4), ("y", 7)]), false);
        assert_eq!((v.lost, v.in_flight, v.overcounted), (0, 6, 2));
        assert_eq!(v.keys["x"].lost, 0);
        let caught = flink_verdict(&truth(&[("x", 10), ("y", 5)]), &counts(&[("x", 4), ("y", 7)]), true);
        assert_eq!((caught.lost, caught.in_flight), (6, 0));
        let table = side_by_side(&caught, &v, false);
        assert!(table.contains("TOTAL") && table.lines().count() == 6, "{table}");
        assert!(table.lines().last().is_some_and(|l| l.contains('?')), "{table}");
    }

    #[test]
    fn the_log_is_read_from_the_start_position_and_a_torn_line_is_not_there() {
        let dir = std::env::temp_dir().join(format!("ckptlab-truth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(partition_path(&dir, "t", 0), "a\nb\na\nhalf").unwrap();
        std::fs::write(partition_path(&dir, "t", 1), "a\\nb\n").unwrap();
        let t = log_truth(&dir, "t", 2, KeyBy::Record, &[1, 0]).unwrap();
        std::fs::write(partition_path(&dir, "t", 1), b"a\n\xff\n").unwrap();
        let e = log_truth(&dir, "t", 2, KeyBy::Record, &[0, 0]).unwrap_err().to_string();
        assert!(e.contains("t-1.log:2: not UTF-8"), "{e}");
        std::fs::write(partition_path(&dir, "t", 1), "a\\x\n").unwrap();
        let e = log_truth(&dir, "t", 2, KeyBy::Record, &[0, 0]).unwrap_err().to_string();
        assert!(e.contains("t-1.log:1: `\\x` is not an escape"), "{e}");
        assert_eq!(t.lengths, vec![3, 1]);
        assert_eq!(t.expected, counts(&[("a", 1), ("b", 1), ("a\nb", 1)]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
