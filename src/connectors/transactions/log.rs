//! One partition of the embedded output topic, with Kafka's transactional records.
//!
//! Every record takes an offset, and so does every transaction marker (a control record no
//! consumer is handed). A partition tracks, per producer id, the first offset of its open
//! transaction (the broker's `currentTxnFirstOffset`, ProducerAppendInfo.java:215-218) and keeps
//! the aborted ones in an index (the broker's aborted transaction index, sent with every
//! read_committed fetch). The **last stable offset** is the first offset of the oldest open
//! transaction, or the high watermark when none is open: a read_committed reader reads only below
//! it and skips records of aborted transactions; a read_uncommitted reader reads up to the high
//! watermark (KIP-98, "Consumer: read_committed").
//!
//! Epoch fencing at the partition: a write (record or marker) from an epoch older than the last
//! this partition saw for the producer id is refused (ProducerAppendInfo.java:96-109).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::producer::ProducerIdAndEpoch;

/// What a reader knows about a record's transaction at the time it reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[strum(serialize_all = "kebab-case")]
pub enum Fate {
    /// Written without a transaction: visible at once to both isolation levels.
    NonTransactional,
    Committed,
    Aborted,
    /// Its transaction is still open (only a read_uncommitted reader sees it).
    Open,
}

/// A record as a reader is handed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRecord {
    pub offset: u64,
    pub value: String,
    pub fate: Fate,
    /// The transaction's producer, `None` when written without one.
    pub producer: Option<ProducerIdAndEpoch>,
}

/// What a reader got from one read, and where its next read starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBatch {
    pub records: Vec<ReadRecord>,
    /// The offset to read from next (past markers and skipped aborted records).
    pub next: u64,
}

/// `isolation.level` of a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::EnumString, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum IsolationLevel {
    /// Only below the last stable offset, without aborted records: Kafka's consumer
    /// `isolation.level = read_committed`.
    ReadCommitted,
    /// Everything up to the high watermark, aborted and open records included (Kafka's default).
    ReadUncommitted,
}

#[derive(Debug, Clone)]
enum Entry {
    Data { value: String, producer: Option<ProducerIdAndEpoch> },
    Marker,
}

/// A write the partition refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StaleEpoch {
    /// The newest epoch the partition has seen for the producer id.
    pub(super) seen: i16,
}

/// One partition's log.
#[derive(Debug, Default)]
pub struct PartitionLog {
    entries: Vec<Entry>,
    /// Producer id -> first offset of its open transaction.
    open: HashMap<i64, u64>,
    /// Producer id -> aborted transactions as (first offset, marker offset).
    aborted: HashMap<i64, Vec<(u64, u64)>>,
    /// Producer id -> the newest epoch written (records or markers).
    epochs: HashMap<i64, i16>,
    /// Transaction markers written, per (producer, commit): what "no transaction committed twice"
    /// is checked against.
    markers: BTreeMap<(ProducerIdAndEpoch, bool), u32>,
}

impl PartitionLog {
    /// The offset the next entry takes.
    pub fn high_watermark(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The first offset of the oldest open transaction, else the high watermark.
    pub fn last_stable_offset(&self) -> u64 {
        self.open.values().copied().min().unwrap_or_else(|| self.high_watermark())
    }

    fn check_epoch(&self, p: ProducerIdAndEpoch) -> Result<(), StaleEpoch> {
        match self.epochs.get(&p.producer_id) {
            Some(&seen) if p.epoch < seen => Err(StaleEpoch { seen }),
            _ => Ok(()),
        }
    }

    /// Whether a write from `producer` would be refused: the partition saw a newer epoch.
    pub(super) fn refuses(&self, producer: ProducerIdAndEpoch) -> bool {
        self.check_epoch(producer).is_err()
    }

    /// Appends a record, in `producer`'s open transaction when given (opening it in this
    /// partition with this record), else visible at once.
    pub(super) fn append(&mut self, value: &str, producer: Option<ProducerIdAndEpoch>) -> Result<u64, StaleEpoch> {
        let offset = self.high_watermark();
        if let Some(p) = producer {
            self.check_epoch(p)?;
            self.epochs.insert(p.producer_id, p.epoch);
            self.open.entry(p.producer_id).or_insert(offset);
        }
        self.entries.push(Entry::Data { value: value.to_owned(), producer });
        Ok(offset)
    }

    /// Writes `producer`'s commit or abort marker, which closes its open transaction here.
    pub(super) fn append_marker(&mut self, producer: ProducerIdAndEpoch, commit: bool) -> Result<u64, StaleEpoch> {
        self.check_epoch(producer)?;
        let offset = self.high_watermark();
        self.epochs.insert(producer.producer_id, producer.epoch);
        if let Some(first) = self.open.remove(&producer.producer_id) {
            if !commit {
                self.aborted.entry(producer.producer_id).or_default().push((first, offset));
            }
        }
        self.entries.push(Entry::Marker);
        *self.markers.entry((producer, commit)).or_default() += 1;
        Ok(offset)
    }

    /// The fate of `producer_id`'s record at `offset`, as of now.
    fn fate(&self, offset: u64, producer_id: i64) -> Fate {
        if self.open.get(&producer_id).is_some_and(|&first| first <= offset) {
            return Fate::Open;
        }
        let aborted = self.aborted.get(&producer_id).is_some_and(|ranges| {
            // Ranges are appended in offset order; the candidate is the last one starting at or
            // before the offset.
            let i = ranges.partition_point(|&(first, _)| first <= offset);
            i > 0 && offset < ranges[i - 1].1
        });
        if aborted {
            Fate::Aborted
        } else {
            Fate::Committed
        }
    }

    /// Up to `max` records from `from` at `isolation`.
    pub fn read(&self, from: u64, isolation: IsolationLevel, max: usize) -> ReadBatch {
        let end = match isolation {
            IsolationLevel::ReadCommitted => self.last_stable_offset(),
            IsolationLevel::ReadUncommitted => self.high_watermark(),
        };
        let mut batch = ReadBatch::default();
        let mut offset = from;
        while offset < end && batch.records.len() < max {
            if let Entry::Data { value, producer } = &self.entries[offset as usize] {
                let fate = producer.map_or(Fate::NonTransactional, |p| self.fate(offset, p.producer_id));
                if !(isolation == IsolationLevel::ReadCommitted && fate == Fate::Aborted) {
                    batch.records.push(ReadRecord { offset, value: value.clone(), fate, producer: *producer });
                }
            }
            offset += 1;
        }
        batch.next = offset;
        batch
    }

    /// How many markers of each kind each producer epoch wrote here.
    pub fn markers(&self) -> &BTreeMap<(ProducerIdAndEpoch, bool), u32> {
        &self.markers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: ProducerIdAndEpoch = ProducerIdAndEpoch { producer_id: 1, epoch: 0 };
    const P2: ProducerIdAndEpoch = ProducerIdAndEpoch { producer_id: 2, epoch: 0 };

    fn values(b: &ReadBatch) -> Vec<&str> {
        b.records.iter().map(|r| r.value.as_str()).collect()
    }

    #[test]
    fn read_committed_stops_at_the_first_open_transaction_and_skips_aborted_records() {
        let mut log = PartitionLog::default();
        log.append("plain", None).unwrap();
        log.append("a1", Some(P1)).unwrap();
        log.append("b1", Some(P2)).unwrap();
        log.append_marker(P2, false).unwrap();
        log.append("a2", Some(P1)).unwrap();
        assert_eq!(log.last_stable_offset(), 1, "P1's open transaction holds the LSO at its first record");
        assert_eq!(values(&log.read(0, IsolationLevel::ReadCommitted, 100)), ["plain"]);
        let all = log.read(0, IsolationLevel::ReadUncommitted, 100);
        assert_eq!(values(&all), ["plain", "a1", "b1", "a2"]);
        assert_eq!(all.records.iter().map(|r| r.fate).collect::<Vec<_>>(), [Fate::NonTransactional, Fate::Open, Fate::Aborted, Fate::Open]);
        log.append_marker(P1, true).unwrap();
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        let committed = log.read(0, IsolationLevel::ReadCommitted, 100);
        assert_eq!(values(&committed), ["plain", "a1", "a2"], "b1 was aborted, markers are never handed out");
        assert_eq!(committed.next, 6);
    }

    #[test]
    fn a_write_from_an_older_epoch_than_the_partition_saw_is_refused() {
        let mut log = PartitionLog::default();
        let newer = ProducerIdAndEpoch { epoch: 1, ..P1 };
        log.append_marker(newer, false).unwrap();
        assert_eq!(log.append("zombie", Some(P1)), Err(StaleEpoch { seen: 1 }));
        assert_eq!(log.high_watermark(), 1);
    }

    #[test]
    fn a_producers_next_transaction_after_an_abort_is_not_taken_for_aborted() {
        let mut log = PartitionLog::default();
        log.append("x", Some(P1)).unwrap();
        log.append_marker(P1, false).unwrap();
        log.append("y", Some(P1)).unwrap();
        log.append_marker(P1, true).unwrap();
        assert_eq!(values(&log.read(0, IsolationLevel::ReadCommitted, 100)), ["y"]);
    }
}
