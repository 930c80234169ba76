//! The output truth: the Kafka sink's output topic judged as two consumers read it,
//! `isolation.level = read_committed` and `read_uncommitted`, per key, against the auditor's
//! count of the records each key consumed.
//!
//! The job writes `(key,n)` for the n-th record of a key, so exactly-once output is, per key,
//! the lines `(key,1)` .. `(key,expected)`, each once. Against that set a reader's lines are:
//! - **gaps**: a line of the set that the reader never got;
//! - **repeated**: every line beyond the first copy of a line of the set (a line again, after a
//!   replay, or a count past the truth, after an over-count);
//! - **aborted seen**: lines of aborted transactions the reader was handed (read_uncommitted
//!   only; a read_committed consumer skips them);
//! - **lost by timeout**: the gaps whose line the broker holds only in transactions its
//!   coordinator aborted on `transaction.timeout.ms` (the embedded broker says which): the
//!   verdict names the cause, "output lost: transaction timed out while the job was down".
//!
//! Exactly-once read_committed has no gap and no repeat except lines lost by timeout;
//! read_uncommitted shows a killed attempt's aborted lines as repeats; at-least-once repeats at
//! both levels. Lines of a transaction still waiting for its checkpoint are gaps at
//! read_committed until it commits: judge once the last checkpoint completed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::output::OutputTopic;
use crate::audit::Verdict;
use crate::config::{Config, KeyBy, SinkKind};
use crate::connectors::transactions::{Fate, IsolationLevel, ProducerIdAndEpoch, ReadRecord, TxnError};
use crate::connectors::Topic;
use crate::events::EventBus;

/// One key's output at one isolation level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOutputVerdict {
    pub lines: u64,
    pub gaps: u64,
    pub repeated: u64,
    pub aborted_seen: u64,
    pub lost_by_timeout: u64,
}

/// The output at one isolation level: totals and per key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationVerdict {
    pub lines: u64,
    pub gaps: u64,
    pub repeated: u64,
    pub aborted_seen: u64,
    pub lost_by_timeout: u64,
    pub keys: BTreeMap<String, KeyOutputVerdict>,
    /// What this broker does not do that these figures rely on (a broker that keeps no
    /// transaction markers ...): the summary says it after the figures, so that they are not
    /// taken for Kafka's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caveat: Option<String>,
}

impl IsolationVerdict {
    fn add(&mut self, key: &str, k: KeyOutputVerdict) {
        self.lines += k.lines;
        self.gaps += k.gaps;
        self.repeated += k.repeated;
        self.aborted_seen += k.aborted_seen;
        self.lost_by_timeout += k.lost_by_timeout;
        if k != KeyOutputVerdict::default() {
            self.keys.insert(key.to_owned(), k);
        }
    }

    /// `ok`, or what is wrong, in a few words.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.gaps > self.lost_by_timeout {
            parts.push(format!("{} missing", self.gaps - self.lost_by_timeout));
        }
        if self.lost_by_timeout > 0 {
            parts.push(format!("{} lost by timeout", self.lost_by_timeout));
        }
        if self.repeated > 0 {
            parts.push(format!("{} repeated", self.repeated));
        }
        if self.aborted_seen > 0 {
            parts.push(format!("{} aborted seen", self.aborted_seen));
        }
        let figures = if parts.is_empty() { "ok".to_owned() } else { parts.join(", ") };
        match &self.caveat {
            Some(c) => format!("{figures} (but {c})"),
            None => figures,
        }
    }
}

/// A broker whose transactions differ from Kafka's in what the judge relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// The embedded broker: Kafka's transactions, each record's fate known.
    Embedded,
    /// librdkafka 2.12's mock cluster: EndTxn writes no marker and every fetch answers
    /// LastStableOffset = end offset with no aborted transactions (rdkafka_mock_handlers.c:538-556,
    /// 2406-2450; transactional.rs's mock tests).
    MockCluster,
    /// Tansu 0.6: an open transaction holds read_committed back (a last stable offset) and
    /// InitProducerId fences the id's older producer and ends its open transaction, but aborted
    /// records are handed to read_committed readers (no aborted-transaction index), and no
    /// coordinator aborts on the timeout nor refuses KafkaSink's 1 h
    /// (tests/it/kafka.rs, tansu_0_6_transactions_as_the_verdict_describes_them).
    Tansu,
    /// Any other Kafka broker: taken to be Kafka's transactions.
    Kafka,
}

/// Tansu's cluster id by default (`tansu broker --cluster-id`, default "tansu_cluster").
const TANSU_CLUSTER_ID_PREFIX: &str = "tansu";

impl BrokerKind {
    /// What read_committed figures cannot show on this broker.
    pub fn read_committed_caveat(self) -> Option<&'static str> {
        match self {
            BrokerKind::Embedded | BrokerKind::Kafka => None,
            BrokerKind::MockCluster => Some(
                "read_committed on this broker shows aborted and open lines: librdkafka's mock cluster keeps no transaction markers and no last stable offset, so these are read_uncommitted's figures",
            ),
            BrokerKind::Tansu => Some(
                "read_committed on this broker shows aborted lines: Tansu 0.6 holds open transactions back but keeps no aborted-transaction index, so an aborted attempt's lines count as repeats",
            ),
        }
    }

    /// What read_uncommitted figures cannot show on this broker.
    pub fn read_uncommitted_caveat(self) -> Option<&'static str> {
        match self {
            BrokerKind::Embedded | BrokerKind::Kafka => None,
            BrokerKind::MockCluster | BrokerKind::Tansu => {
                Some("aborted lines are not told apart on this broker: its read_committed readers skip none")
            }
        }
    }

    /// The broker of a Kafka output topic: `mock` from the configuration, Tansu by the cluster
    /// id it reports.
    fn of(output: &OutputTopic, cfg: &Config) -> BrokerKind {
        let Some(servers) = output.servers() else { return BrokerKind::Embedded };
        if cfg.source.kafka.as_ref().is_some_and(|k| k.bootstrap_servers == "mock") {
            return BrokerKind::MockCluster;
        }
        match crate::connectors::kafka::transactional::cluster_id(servers, CLUSTER_ID_WAIT) {
            Some(id) if id.starts_with(TANSU_CLUSTER_ID_PREFIX) => BrokerKind::Tansu,
            _ => BrokerKind::Kafka,
        }
    }
}

/// How long the verdict waits for a broker's cluster id.
const CLUSTER_ID_WAIT: Duration = Duration::from_secs(3);

/// `verdict.output_isolation` of `ckptlab run --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputVerdict {
    pub topic: String,
    pub read_committed: IsolationVerdict,
    pub read_uncommitted: IsolationVerdict,
    /// Why committed output is missing, one line per lost transaction (the committer's words).
    pub causes: Vec<String>,
}

impl OutputVerdict {
    /// `output topic T: read_committed ok (N lines), read_uncommitted 3 repeated (M lines)`, as
    /// `ckptlab run` prints it, for one run and for each compared side.
    pub fn summary_line(&self) -> String {
        format!(
            "output topic {}: read_committed {} ({} lines), read_uncommitted {} ({} lines)",
            self.topic,
            self.read_committed.summary(),
            self.read_committed.lines,
            self.read_uncommitted.summary(),
            self.read_uncommitted.lines
        )
    }
}

/// `(record,n)` -> (the record's key, n): the key is the record itself, or the seed's constant
/// (`job.key-by`).
fn parse_line(value: &str, key_by: KeyBy) -> Option<(&str, u64)> {
    let inner = value.strip_prefix('(')?.strip_suffix(')')?;
    let (record, n) = inner.rsplit_once(',')?;
    Some((crate::audit::key_of(record, key_by), n.parse().ok()?))
}

/// Judges the records of both readers against `expected` (records consumed per key).
/// `timed_out`: producers of transactions the coordinator aborted on their timeout.
pub fn judge(
    expected: &BTreeMap<String, u64>,
    committed: &[ReadRecord],
    uncommitted: &[ReadRecord],
    timed_out: &BTreeSet<ProducerIdAndEpoch>,
    fates_known: bool,
    key_by: KeyBy,
) -> (IsolationVerdict, IsolationVerdict) {
    // A Kafka reader does not say which records were aborted: those below the last record
    // read_committed returned that it skipped were.
    let committed_offsets: BTreeSet<u64> = committed.iter().map(|r| r.offset).collect();
    let committed_end = committed_offsets.last().copied();
    let aborted = |r: &ReadRecord| {
        if fates_known {
            r.fate == Fate::Aborted
        } else {
            committed_end.is_some_and(|end| r.offset < end) && !committed_offsets.contains(&r.offset)
        }
    };
    // Lines the broker holds in a transaction its coordinator aborted on the timeout. A gap
    // among them is that transaction's loss: had it not been pre-committed, the restore would
    // have replayed its records and the line would be there (an earlier attempt's copy, aborted
    // by fencing, does not change that).
    let in_timed_out: BTreeSet<(&str, u64)> = uncommitted
        .iter()
        .filter(|r| r.producer.is_some_and(|p| timed_out.contains(&p)))
        .filter_map(|r| parse_line(&r.value, key_by))
        .collect();
    let one = |records: &[ReadRecord], committed_level: bool| {
        let mut per_key: BTreeMap<&str, (HashMap<u64, u64>, u64, u64)> = BTreeMap::new();
        for r in records {
            let Some((key, n)) = parse_line(&r.value, key_by) else { continue };
            let e = per_key.entry(key).or_default();
            *e.0.entry(n).or_default() += 1;
            e.1 += 1;
            if aborted(r) {
                e.2 += 1;
            }
        }
        let keys: BTreeSet<&str> = expected.keys().map(String::as_str).chain(per_key.keys().copied()).collect();
        let mut v = IsolationVerdict::default();
        for key in keys {
            let want = expected.get(key).copied().unwrap_or(0);
            let (seen, lines, aborted_seen) = per_key.remove(key).unwrap_or_default();
            let mut k = KeyOutputVerdict { lines, aborted_seen, ..KeyOutputVerdict::default() };
            let mut present = 0;
            for n in 1..=want {
                if seen.get(&n).copied().unwrap_or(0) > 0 {
                    present += 1;
                } else {
                    k.gaps += 1;
                    if committed_level && in_timed_out.contains(&(key, n)) {
                        k.lost_by_timeout += 1;
                    }
                }
            }
            k.repeated = lines - present;
            v.add(key, k);
        }
        v
    };
    (one(committed, true), one(uncommitted, false))
}

/// How long a Kafka output topic must stay quiet before it counts as read whole.
const SETTLED: Duration = Duration::from_millis(500);

/// The output topic judged now, against the auditor's verdict `truth`.
pub fn of_topic(output: &OutputTopic, truth: &Verdict, key_by: KeyBy, broker: BrokerKind) -> Result<OutputVerdict, TxnError> {
    let expected: BTreeMap<String, u64> = truth.keys.iter().map(|(k, v)| (k.clone(), v.expected)).collect();
    let committed = output.read_settled(IsolationLevel::ReadCommitted, SETTLED)?;
    let uncommitted = output.read_settled(IsolationLevel::ReadUncommitted, SETTLED)?;
    let timed_out: BTreeSet<ProducerIdAndEpoch> = output.timed_out().into_iter().map(|(_, p)| p).collect();
    let (mut read_committed, mut read_uncommitted) = judge(&expected, &committed, &uncommitted, &timed_out, output.is_embedded(), key_by);
    read_committed.caveat = broker.read_committed_caveat().map(str::to_owned);
    read_uncommitted.caveat = broker.read_uncommitted_caveat().map(str::to_owned);
    let causes = output.losses().into_iter().map(|l| l.message).collect();
    Ok(OutputVerdict { topic: output.name().to_owned(), read_committed, read_uncommitted, causes })
}

/// The output of a job run with `cfg` on `topic`'s broker, judged: `None` unless its sink is the
/// Kafka sink.
pub fn of_run(topic: &dyn Topic, cfg: &Config, events: &EventBus, truth: &Verdict) -> Option<Result<OutputVerdict, TxnError>> {
    if cfg.job.sink != SinkKind::Kafka {
        return None;
    }
    let settings = super::OutputTopicSettings::of(&cfg.job.kafka_sink);
    let output = match topic.output_topic(&settings, events) {
        Ok(o) => o,
        Err(e) => return Some(Err(e)),
    };
    let broker = super::output::blocking(|| BrokerKind::of(&output, cfg));
    Some(of_topic(&output, truth, cfg.job.key_by, broker))
}

/// The running engine's output, judged ([`of_run`] on the engine's parts): the one place the
/// sink names the runtime above it, for the callers that hold an engine.
pub fn of_engine(engine: &crate::cluster::Engine, truth: &Verdict) -> Option<Result<OutputVerdict, TxnError>> {
    of_run(&*engine.topic(), &engine.config(), engine.events(), truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: ProducerIdAndEpoch = ProducerIdAndEpoch { producer_id: 1, epoch: 0 };
    const P2: ProducerIdAndEpoch = ProducerIdAndEpoch { producer_id: 2, epoch: 0 };

    fn rec(offset: u64, value: &str, fate: Fate, producer: Option<ProducerIdAndEpoch>) -> ReadRecord {
        ReadRecord { offset, value: value.into(), fate, producer }
    }

    fn expected(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    /// Catches: a judge that counts an aborted attempt's lines at read_committed, or that does
    /// not show them as repeats at read_uncommitted.
    #[test]
    fn an_aborted_attempt_repeats_at_read_uncommitted_only() {
        let committed = [rec(0, "(a,1)", Fate::Committed, Some(P2)), rec(1, "(a,2)", Fate::Committed, Some(P2))];
        let uncommitted = [
            rec(0, "(a,1)", Fate::Aborted, Some(P1)),
            rec(1, "(a,1)", Fate::Committed, Some(P2)),
            rec(2, "(a,2)", Fate::Committed, Some(P2)),
        ];
        let (rc, ru) = judge(&expected(&[("a", 2)]), &committed, &uncommitted, &BTreeSet::new(), true, KeyBy::Record);
        assert_eq!((rc.gaps, rc.repeated, rc.aborted_seen), (0, 0, 0));
        assert_eq!(rc.summary(), "ok");
        assert_eq!((ru.gaps, ru.repeated, ru.aborted_seen), (0, 1, 1));
    }

    /// Catches: gaps of a timed-out transaction not told apart from other gaps.
    #[test]
    fn gaps_held_only_by_a_timed_out_transaction_are_lost_by_timeout() {
        let committed = [rec(0, "(a,1)", Fate::Committed, Some(P1))];
        let uncommitted = [rec(0, "(a,1)", Fate::Committed, Some(P1)), rec(1, "(a,2)", Fate::Aborted, Some(P2))];
        let timed_out = BTreeSet::from([P2]);
        let (rc, _) = judge(&expected(&[("a", 3)]), &committed, &uncommitted, &timed_out, true, KeyBy::Record);
        assert_eq!((rc.gaps, rc.lost_by_timeout), (2, 1), "(a,2) timed out, (a,3) was never written");
        assert_eq!(rc.keys["a"].lost_by_timeout, 1);
        assert_eq!(rc.summary(), "1 missing, 1 lost by timeout");
    }

    /// Catches: over-counted lines (past the truth) not counted as repeated output.
    #[test]
    fn lines_past_the_truth_are_repeats() {
        let committed = [rec(0, "(a,1)", Fate::NonTransactional, None), rec(1, "(a,2)", Fate::NonTransactional, None), rec(2, "(a,3)", Fate::NonTransactional, None)];
        let (rc, _) = judge(&expected(&[("a", 2)]), &committed, &committed, &BTreeSet::new(), true, KeyBy::Record);
        assert_eq!((rc.gaps, rc.repeated), (0, 1));
    }

    /// Catches: a Kafka reader's skipped (aborted) records not found by their offsets.
    #[test]
    fn without_fates_records_read_committed_skipped_are_aborted() {
        let committed = [rec(1, "(a,1)", Fate::Committed, None)];
        let uncommitted = [rec(0, "(a,1)", Fate::Open, None), rec(1, "(a,1)", Fate::Open, None)];
        let (_, ru) = judge(&expected(&[("a", 1)]), &committed, &uncommitted, &BTreeSet::new(), false, KeyBy::Record);
        assert_eq!((ru.aborted_seen, ru.repeated), (1, 1));
    }

    /// Catches: figures from a broker without transaction markers reported as Kafka's.
    #[test]
    fn a_brokers_caveat_follows_the_figures_in_the_summary() {
        let mut v = IsolationVerdict { repeated: 3, ..IsolationVerdict::default() };
        v.caveat = BrokerKind::MockCluster.read_committed_caveat().map(str::to_owned);
        assert!(v.summary().starts_with("3 repeated (but read_committed on this broker shows aborted and open lines: librdkafka's mock cluster keeps no transaction markers"), "{}", v.summary());
        assert_eq!(BrokerKind::Kafka.read_committed_caveat(), None);
        assert_eq!(BrokerKind::Embedded.read_uncommitted_caveat(), None);
        assert!(BrokerKind::Tansu.read_committed_caveat().is_some_and(|c| c.contains("Tansu")));
    }

    #[test]
    fn keys_with_commas_and_parentheses_parse_from_the_last_comma() {
        assert_eq!(parse_line("(a,b,3)", KeyBy::Record), Some(("a,b", 3)));
        assert_eq!(parse_line("(a,b,3)", KeyBy::Constant), Some(("1", 3)), "the seed's keyBy(any -> 1)");
        assert_eq!(parse_line("(x)", KeyBy::Record), None);
    }
}
