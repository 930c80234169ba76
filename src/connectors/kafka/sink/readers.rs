//! The two consumers a user runs on the output topic to see what the KafkaSink wrote:
//! `isolation.level = read_uncommitted` (every line as soon as the producer sent it, aborted
//! transactions' lines included) and `read_committed` (only below the last stable offset, aborted
//! lines skipped), polled side by side as `kafka-console-consumer --isolation-level ...` would be.
//!
//! Each poll stamps the lines it got; a line first seen uncommitted at `t_u` and then committed
//! at `t_c` waited `t_c - t_u`: the committed output's lag, measured as a reader sees it (with
//! exactly-once it is the checkpoint interval, plus the checkpoint's own duration, for the first
//! line of a transaction). A line the read_committed reader went past without returning was
//! aborted: it is marked in the uncommitted column, as Kafka's consumer at read_committed skips it
//! (an aborted transaction's records below the LSO; KafkaConsumer docs, "Reading Transactional
//! Messages").
//!
//! The poller runs only once someone looks (the view asks for [`ReadersView`]), every [`POLL`];
//! the output topic runs it (`OutputTopic::readers_view`) and hands each poll what to read.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::connectors::transactions::{Fate, IsolationLevel, ReadRecord, TransactionalLog, TxnError};

/// How often the two readers poll the topic (the lag's resolution).
pub const POLL: Duration = Duration::from_millis(50);
/// Lines kept per reader for the pane.
pub const READER_KEEP: usize = 400;
/// Lags kept for the mean (the last transactions' lines).
const LAG_KEEP: usize = 2000;

/// What a line's mark says in a reader's column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineMark {
    /// Visible to both readers (committed, or written without a transaction).
    Visible,
    /// Seen at read_uncommitted, its transaction still open.
    Open,
    /// Its transaction was aborted: a read_committed reader never sees it.
    Aborted,
    /// The same line again at this reader (a replay after a restore).
    Repeat,
}

/// One line as a reader got it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderLine {
    pub offset: u64,
    /// `(key,count)`, as the sink wrote it.
    pub text: String,
    pub mark: LineMark,
    /// Milliseconds since the engine started when this reader first got it.
    pub seen_ms: u64,
}

/// Both readers now, for the output pane and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadersView {
    pub topic: String,
    pub committed: Vec<ReaderLine>,
    pub uncommitted: Vec<ReaderLine>,
    /// Lines each reader got in all.
    pub committed_total: u64,
    pub uncommitted_total: u64,
    /// Lines of aborted transactions the uncommitted reader got.
    pub aborted: u64,
    /// Lines seen uncommitted whose transaction is still open.
    pub open: u64,
    /// The longest wait of a line of the newest commit the committed reader saw (ms): how far
    /// the committed output trails the uncommitted one.
    pub lag_ms: Option<u64>,
    /// The mean wait of the last [`LAG_KEEP`] committed lines (ms).
    pub mean_lag_ms: Option<u64>,
}

#[derive(Default)]
struct State {
    view: ReadersView,
    /// The next offset each reader reads from (embedded broker).
    next_uncommitted: u64,
    next_committed: u64,
    /// How many records of a Kafka reader's accumulated list were taken.
    taken_uncommitted: usize,
    taken_committed: usize,
    /// Open lines by offset: when the uncommitted reader first got them.
    pending: BTreeMap<u64, u64>,
    seen_committed: HashSet<String>,
    seen_uncommitted: HashSet<String>,
    lags: VecDeque<u64>,
    uncommitted: VecDeque<ReaderLine>,
    committed: VecDeque<ReaderLine>,
}

/// The readers of one output topic. The topic ([`super::OutputTopic`]) hands them what to read
/// and runs their poller; they keep what each has seen.
#[derive(Default)]
pub struct OutputReaders {
    state: Mutex<State>,
    started: std::sync::atomic::AtomicBool,
}

/// What one poll reads from: the embedded broker's log, which each reader reads on from its own
/// offset, or a Kafka topic's `read` at an isolation level (every record that reader has got).
pub enum ReadFrom<'a> {
    Embedded(&'a TransactionalLog),
    Kafka(&'a dyn Fn(IsolationLevel) -> Result<Vec<ReadRecord>, TxnError>),
}

impl OutputReaders {
    /// True the first time only: whoever gets it starts the poller.
    pub fn start(&self) -> bool {
        !self.started.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// What the readers of the topic `topic` have seen so far.
    pub fn view(&self, topic: &str) -> ReadersView {
        let s = lock(&self.state);
        let mut v = s.view.clone();
        v.topic = topic.to_owned();
        v.uncommitted = s.uncommitted.iter().cloned().collect();
        v.committed = s.committed.iter().cloned().collect();
        v
    }

    /// One poll of both readers at `now` (ms on the engine's clock): the uncommitted one first,
    /// so that a line committed between the two reads is seen uncommitted before it is seen
    /// committed.
    pub fn poll(&self, now: u64, from: ReadFrom<'_>) {
        let mut s = lock(&self.state);
        let (new_u, new_c, bound) = match from {
            ReadFrom::Embedded(log) => {
                let (from_u, from_c) = (s.next_uncommitted, s.next_committed);
                let (Ok(u), Ok(c)) =
                    (log.read(0, from_u, IsolationLevel::ReadUncommitted, usize::MAX), log.read(0, from_c, IsolationLevel::ReadCommitted, usize::MAX))
                else {
                    return;
                };
                s.next_uncommitted = u.next;
                s.next_committed = c.next;
                (u.records, c.records, Some(c.next))
            }
            ReadFrom::Kafka(read) => {
                let (Ok(u), Ok(c)) = (read(IsolationLevel::ReadUncommitted), read(IsolationLevel::ReadCommitted)) else { return };
                let new_u: Vec<ReadRecord> = u.get(s.taken_uncommitted..).unwrap_or_default().to_vec();
                let new_c: Vec<ReadRecord> = c.get(s.taken_committed..).unwrap_or_default().to_vec();
                s.taken_uncommitted = u.len();
                s.taken_committed = c.len();
                // A Kafka reader at read_committed does not return aborted records: those below the
                // last one it returned were skipped.
                let bound = c.last().map(|r| r.offset);
                (new_u, new_c, bound)
            }
        };
        s.absorb(now, new_u, new_c, bound);
    }
}

impl State {
    fn absorb(&mut self, now: u64, new_u: Vec<ReadRecord>, new_c: Vec<ReadRecord>, bound: Option<u64>) {
        for r in new_u {
            self.view.uncommitted_total += 1;
            let mark = match r.fate {
                Fate::Aborted => {
                    self.view.aborted += 1;
                    LineMark::Aborted
                }
                Fate::Open => {
                    self.pending.insert(r.offset, now);
                    LineMark::Open
                }
                Fate::Committed | Fate::NonTransactional if !self.seen_uncommitted.insert(r.value.clone()) => LineMark::Repeat,
                Fate::Committed | Fate::NonTransactional => LineMark::Visible,
            };
            if mark == LineMark::Open {
                self.seen_uncommitted.insert(r.value.clone());
            }
            push(&mut self.uncommitted, ReaderLine { offset: r.offset, text: r.value, mark, seen_ms: now });
        }
        let mut newest_commit_lag = None;
        for r in new_c {
            self.view.committed_total += 1;
            let waited = self.pending.remove(&r.offset).map(|t| now.saturating_sub(t)).unwrap_or(0);
            newest_commit_lag = Some(newest_commit_lag.unwrap_or(0).max(waited));
            if self.lags.len() >= LAG_KEEP {
                self.lags.pop_front();
            }
            self.lags.push_back(waited);
            self.mark_uncommitted(r.offset, LineMark::Visible);
            let mark = if self.seen_committed.insert(r.value.clone()) { LineMark::Visible } else { LineMark::Repeat };
            push(&mut self.committed, ReaderLine { offset: r.offset, text: r.value, mark, seen_ms: now });
        }
        // Open lines the committed reader went past were aborted.
        if let Some(bound) = bound {
            let passed: Vec<u64> = self.pending.range(..bound).map(|(o, _)| *o).collect();
            for o in passed {
                self.pending.remove(&o);
                self.view.aborted += 1;
                self.mark_uncommitted(o, LineMark::Aborted);
            }
        }
        if newest_commit_lag.is_some() {
            self.view.lag_ms = newest_commit_lag;
        }
        if !self.lags.is_empty() {
            self.view.mean_lag_ms = Some(self.lags.iter().sum::<u64>() / self.lags.len() as u64);
        }
        self.view.open = self.pending.len() as u64;
    }

    /// The uncommitted column's line at `offset` (if still kept) learns its transaction's end.
    fn mark_uncommitted(&mut self, offset: u64, end: LineMark) {
        let i = self.uncommitted.partition_point(|l| l.offset < offset);
        if let Some(l) = self.uncommitted.get_mut(i).filter(|l| l.offset == offset && l.mark == LineMark::Open) {
            l.mark = end;
        }
    }
}

fn push(lines: &mut VecDeque<ReaderLine>, l: ReaderLine) {
    if lines.len() >= READER_KEEP {
        lines.pop_front();
    }
    lines.push_back(l);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::transactions::ProducerIdAndEpoch;

    const P: Option<ProducerIdAndEpoch> = Some(ProducerIdAndEpoch { producer_id: 1, epoch: 0 });

    fn rec(offset: u64, value: &str, fate: Fate) -> ReadRecord {
        ReadRecord { offset, value: value.into(), fate, producer: P }
    }

    /// Catches: a committed line whose wait is not measured from when the uncommitted reader
    /// first had it, or an open line never marked when its transaction aborted.
    #[test]
    fn committed_lines_carry_their_wait_and_skipped_open_lines_are_aborted() {
        let mut s = State::default();
        s.absorb(100, vec![rec(0, "(a,1)", Fate::Open), rec(1, "(a,2)", Fate::Open)], vec![], Some(0));
        assert_eq!(s.view.open, 2);
        assert_eq!(s.view.lag_ms, None);
        // The transaction commits; the committed reader gets both at 1100.
        s.absorb(1100, vec![], vec![rec(0, "(a,1)", Fate::Committed), rec(1, "(a,2)", Fate::Committed)], Some(3));
        assert_eq!(s.view.lag_ms, Some(1000));
        assert_eq!(s.uncommitted.iter().map(|l| l.mark).collect::<Vec<_>>(), vec![LineMark::Visible, LineMark::Visible]);
        // A killed attempt's open line, then the committed reader goes past it.
        s.absorb(1200, vec![rec(3, "(a,3)", Fate::Open)], vec![], Some(3));
        s.absorb(1300, vec![], vec![], Some(5));
        assert_eq!(s.view.aborted, 1);
        assert_eq!(s.uncommitted.back().map(|l| l.mark), Some(LineMark::Aborted));
        assert_eq!(s.view.open, 0);
    }

    /// Catches: a line written again (at-least-once's replay) not marked at read_committed.
    #[test]
    fn a_line_read_twice_is_a_repeat() {
        let mut s = State::default();
        let nt = |o, v| ReadRecord { offset: o, value: String::from(v), fate: Fate::NonTransactional, producer: None };
        s.absorb(0, vec![nt(0, "(a,1)"), nt(1, "(a,1)")], vec![nt(0, "(a,1)"), nt(1, "(a,1)")], Some(2));
        assert_eq!(s.committed.iter().map(|l| l.mark).collect::<Vec<_>>(), vec![LineMark::Visible, LineMark::Repeat]);
        assert_eq!(s.view.lag_ms, Some(0), "non-transactional lines wait for nothing");
    }
}
