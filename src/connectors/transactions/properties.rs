//! Properties of the embedded transactional log over random interleavings of producers (several
//! transactional ids, epochs bumped by re-initialisation at random), sends, commits, aborts,
//! non-transactional writes and coordinator timeouts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use proptest::prelude::*;

use super::coordinator::{BrokerSettings, TransactionalLog, TxnEvent};
use super::log::IsolationLevel;
use super::producer::ProducerIdAndEpoch;

const IDS: [&str; 3] = ["sink-0-1", "sink-0-2", "sink-1-1"];
const PARTITIONS: u32 = 2;
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
enum Op {
    /// `initTransactions` for an id: a new producer, fencing the id's older ones.
    Init(usize),
    Begin(usize),
    Send(usize, u32),
    Commit(usize),
    Abort(usize),
    Plain(u32),
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..IDS.len()).prop_map(Op::Init),
        2 => any::<usize>().prop_map(Op::Begin),
        5 => (any::<usize>(), 0..PARTITIONS).prop_map(|(h, p)| Op::Send(h, p)),
        2 => any::<usize>().prop_map(Op::Commit),
        1 => any::<usize>().prop_map(Op::Abort),
        1 => (0..PARTITIONS).prop_map(Op::Plain),
        1 => (0..40u64).prop_map(Op::Tick),
    ]
}

struct Handle {
    tid: &'static str,
    producer: ProducerIdAndEpoch,
    /// The id's initialisation this handle came from.
    generation: u32,
    /// Records sent in the open transaction: (partition, offset).
    txn: Option<Vec<(u32, u64)>>,
    /// The coordinator aborted its transaction on the timeout.
    timed_out: bool,
}

#[derive(Default)]
struct Model {
    handles: Vec<Handle>,
    generations: HashMap<&'static str, u32>,
    /// Every record written: (partition, offset) -> committed or non-transactional.
    visible: BTreeSet<(u32, u64)>,
    written: BTreeSet<(u32, u64)>,
    now: Duration,
}

impl Model {
    fn live(&self, h: &Handle) -> bool {
        h.generation == self.generations[&h.tid] && !h.timed_out
    }

    /// First offset per partition of every transaction the model says is open at the broker.
    fn open_first_offsets(&self) -> BTreeMap<u32, u64> {
        let mut first = BTreeMap::new();
        for h in self.handles.iter().filter(|h| self.live(h)) {
            for &(p, o) in h.txn.iter().flatten() {
                let e = first.entry(p).or_insert(o);
                *e = (*e).min(o);
            }
        }
        first
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let log = TransactionalLog::new(BrokerSettings { partitions: PARTITIONS, ..BrokerSettings::default() });
    let mut m = Model::default();
    for op in ops {
        let n = m.handles.len();
        match op {
            Op::Init(i) => {
                let tid = IDS[i];
                let producer = log.init_producer_id(tid, TIMEOUT).expect("a valid timeout");
                let g = m.generations.entry(tid).or_default();
                *g += 1;
                let generation = *g;
                m.handles.push(Handle { tid, producer, generation, txn: None, timed_out: false });
            }
            Op::Begin(h) if n > 0 => {
                let h = &mut m.handles[h % n];
                if h.txn.is_none() {
                    h.txn = Some(Vec::new());
                }
            }
            Op::Send(h, p) if n > 0 => {
                let live = m.live(&m.handles[h % n]);
                let handle = &mut m.handles[h % n];
                let Some(txn) = &mut handle.txn else { continue };
                let sent = log.send(Some((handle.tid, handle.producer)), p, "v");
                if live {
                    let offset = sent.map_err(|e| TestCaseError::fail(format!("a live producer's send failed: {e}")))?;
                    txn.push((p, offset));
                    m.written.insert((p, offset));
                } else {
                    prop_assert!(sent.as_ref().is_err_and(|e| e.is_fenced()), "a fenced producer wrote: {sent:?}");
                }
            }
            Op::Commit(h) | Op::Abort(h) if n > 0 => {
                let commit = matches!(op, Op::Commit(_));
                let live = m.live(&m.handles[h % n]);
                let handle = &mut m.handles[h % n];
                let Some(txn) = handle.txn.take() else { continue };
                if txn.is_empty() {
                    // The client sends no EndTxn for a transaction with no record.
                    continue;
                }
                let ended = log.end_txn(handle.tid, handle.producer, commit);
                if live {
                    prop_assert!(ended.is_ok(), "a live producer's end failed: {ended:?}");
                    if commit {
                        m.visible.extend(txn);
                    }
                } else {
                    prop_assert!(ended.as_ref().is_err_and(|e| e.is_fenced()), "a fenced producer ended its transaction: {ended:?}");
                }
            }
            Op::Plain(p) => {
                let offset = log.send(None, p, "plain").expect("non-transactional writes succeed");
                m.written.insert((p, offset));
                m.visible.insert((p, offset));
            }
            Op::Tick(s) => {
                m.now += Duration::from_secs(s);
                for e in log.tick(m.now) {
                    let TxnEvent::AbortedOnTimeout { producer, transactional_id, .. } = e else { continue };
                    let h = m.handles.iter_mut().find(|h| h.producer == producer && h.tid == transactional_id && h.txn.is_some());
                    prop_assert!(h.is_some(), "the coordinator aborted a transaction nobody had open: {transactional_id} {producer}");
                    if let Some(h) = h {
                        h.timed_out = true;
                    }
                }
            }
            _ => {}
        }
        // A re-initialisation aborted the open transaction of every older producer of the id.
        let open = m.open_first_offsets();
        for p in 0..PARTITIONS {
            let hw = log.high_watermark(p).expect("partition exists");
            let lso = log.last_stable_offset(p).expect("partition exists");
            let expected_lso = open.get(&p).copied().unwrap_or(hw);
            prop_assert_eq!(lso, expected_lso, "partition {}: the LSO is the first offset of the oldest open transaction", p);
            let committed: Vec<u64> =
                log.read(p, 0, IsolationLevel::ReadCommitted, usize::MAX).expect("read").records.iter().map(|r| r.offset).collect();
            let expected: Vec<u64> = m.visible.iter().filter(|&&(q, o)| q == p && o < lso).map(|&(_, o)| o).collect();
            prop_assert_eq!(committed, expected, "partition {}: read_committed is exactly the committed records below the LSO", p);
            let all: Vec<u64> =
                log.read(p, 0, IsolationLevel::ReadUncommitted, usize::MAX).expect("read").records.iter().map(|r| r.offset).collect();
            let written: Vec<u64> = m.written.iter().filter(|&&(q, _)| q == p).map(|&(_, o)| o).collect();
            prop_assert_eq!(all, written, "partition {}: read_uncommitted sees every record", p);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn read_committed_is_exactly_the_committed_records_and_fenced_epochs_never_commit(ops in prop::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
