//! The auditor's mirror: the in-memory copy of every partition, each record with its Kafka offset
//! (offsets have gaps, indices do not), and the logs a broker lost kept before the new one.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::events::{Event, EventBus};

/// The mirror's copy of one partition: its records in order and the Kafka offset of each. Kafka
/// offsets have gaps (commit markers, aborted records); a record's index in `values` is its offset
/// for the engine.
///
/// A broker that comes back without the partition's records (restarted empty, topic recreated)
/// starts a new *log* of it: Kafka offsets begin again at its log start. The mirror keeps the
/// records of the lost log (the auditor still judges them) and appends the new log's after them,
/// so indices stay unique and contiguous; only indices from `log_start` on are on the broker.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct PartitionLog {
    pub(super) values: Vec<Arc<str>>,
    pub(super) offsets: Vec<u64>,
    /// The last record's timestamp: with its offset and value, what tells it from another
    /// record a restarted broker may hold at the same offset.
    pub(super) last_timestamp: Option<i64>,
    /// The index of the current log's first record: below it the broker lost the records.
    pub(super) log_start: u64,
    /// The Kafka offset the current log begins at (its log start offset when it was found).
    pub(super) base: u64,
    /// How many logs the broker lost (0: the partition is as it was first read).
    pub(super) restarts: u32,
}

impl PartitionLog {
    /// The Kafka offsets of the current log's records.
    pub(super) fn current(&self) -> &[u64] {
        &self.offsets[(self.log_start as usize).min(self.offsets.len())..]
    }

    /// The Kafka offset after the last record seen of the current log.
    pub(super) fn next_offset(&self) -> u64 {
        self.current().last().map_or(self.base, |o| o + 1)
    }

    /// The Kafka offset where the record at `index` is, or would be: past the records seen, the
    /// offsets are assumed to have no gap. An index the broker lost maps to the current log's start.
    pub(super) fn offset_of(&self, index: u64) -> u64 {
        if index < self.log_start {
            return self.base;
        }
        match self.offsets.get(index as usize) {
            Some(o) => *o,
            None => self.next_offset() + (index - self.offsets.len() as u64),
        }
    }

    /// The index of the first record at or after Kafka offset `offset` of the current log (the
    /// inverse of [`PartitionLog::offset_of`]).
    pub(super) fn index_of(&self, offset: u64) -> u64 {
        let next = self.next_offset();
        if offset >= next {
            self.offsets.len() as u64 + (offset - next)
        } else {
            self.log_start + self.current().partition_point(|o| *o < offset) as u64
        }
    }

    /// The index of the record at exactly `offset` of the current log, when it has been seen.
    pub(super) fn known_index(&self, offset: u64) -> Option<u64> {
        let cur = self.current();
        let i = cur.partition_point(|o| *o < offset);
        (cur.get(i) == Some(&offset)).then_some(self.log_start + i as u64)
    }

    /// Where the mirror holds the record a consumer received at Kafka offset `offset`. One look:
    /// the mirror appends meanwhile, and two looks (is the offset known? else, was it read past?)
    /// took a record appended between them for one the mirror had read past, and dropped it.
    pub(super) fn mirrored(&self, offset: u64, value: &str) -> Mirrored {
        match self.known_index(offset) {
            Some(index) if self.values.get(index as usize).is_some_and(|v| v.as_ref() == value) => Mirrored::At(index),
            Some(_) => Mirrored::Other,
            None if offset < self.next_offset() => Mirrored::Absent,
            None => Mirrored::NotYet,
        }
    }

    /// Whether a record of the current log has been seen.
    pub(super) fn has_current(&self) -> bool {
        !self.current().is_empty()
    }

    /// The broker lost the current log: the next records read are a new one, from Kafka offset
    /// `base`. Returns the records of the lost log.
    pub(super) fn lose_log(&mut self, base: u64) -> u64 {
        let lost = self.values.len() as u64 - self.log_start;
        self.log_start = self.values.len() as u64;
        self.base = base;
        self.last_timestamp = None;
        self.restarts += 1;
        lost
    }
}

/// Where the mirror holds a record a source's consumer received (see [`PartitionLog::mirrored`]).
#[derive(Debug, PartialEq)]
pub(super) enum Mirrored {
    /// At this index.
    At(u64),
    /// Another record is at that offset: the consumer reads a log the mirror has not checked.
    Other,
    /// The mirror read past the offset and holds no record there.
    Absent,
    /// The mirror has not read that far yet.
    NotYet,
}

/// What the mirror made of a record the broker served.
#[derive(Debug, PartialEq)]
pub(super) enum Appended {
    /// The next record: its index.
    New(u64),
    /// An offset at or before one seen already: the broker serves the partition anew.
    ServedAgain { after: u64 },
}

/// The in-memory copy of the topic that the mirror consumer keeps (the auditor's view).
pub(super) struct Mirror {
    pub(super) logs: RwLock<Vec<PartitionLog>>,
    pub(super) version: watch::Sender<u64>,
    pub(super) events: EventBus,
    /// The [`Reconnects`] epoch up to which the mirror has checked that the broker still has
    /// what it read (or recorded what it lost): a source creates its consumer only then.
    pub(super) checked: AtomicU64,
}

impl Mirror {
    pub(super) fn new(partitions: u32, events: EventBus) -> Self {
        Mirror {
            logs: RwLock::new(vec![PartitionLog::default(); partitions as usize]),
            version: watch::channel(0).0,
            events,
            checked: AtomicU64::new(0),
        }
    }

    pub(super) fn append(&self, partition: u32, offset: u64, timestamp: Option<i64>, value: Arc<str>) -> Option<Appended> {
        let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
        let log = logs.get_mut(partition as usize)?;
        if offset < log.next_offset() && log.has_current() {
            // The mirror never seeks back: an offset served again means the broker lost its log.
            return Some(Appended::ServedAgain { after: log.next_offset() - 1 });
        }
        let index = log.values.len() as u64;
        log.values.push(value.clone());
        log.offsets.push(offset);
        log.last_timestamp = timestamp;
        drop(logs);
        self.version.send_modify(|v| *v += 1);
        self.events.publish(Event::RecordProduced { partition, offset: index, value: value.to_string() });
        Some(Appended::New(index))
    }

    pub(super) fn with<T>(&self, partition: u32, f: impl FnOnce(&PartitionLog) -> T) -> Option<T> {
        self.logs.read().unwrap_or_else(|e| e.into_inner()).get(partition as usize).map(f)
    }

    pub(super) fn partitions(&self) -> u32 {
        self.logs.read().unwrap_or_else(|e| e.into_inner()).len() as u32
    }

    pub(super) fn len(&self, partition: u32) -> u64 {
        self.with(partition, |l| l.values.len() as u64).unwrap_or(0)
    }

    pub(super) fn offset_of(&self, partition: u32, index: u64) -> u64 {
        self.with(partition, |l| l.offset_of(index)).unwrap_or(index)
    }

    pub(super) fn index_of(&self, partition: u32, offset: u64) -> u64 {
        self.with(partition, |l| l.index_of(offset)).unwrap_or(offset)
    }

    /// The first index of the partition the broker still has.
    pub(super) fn log_start(&self, partition: u32) -> u64 {
        self.with(partition, |l| l.log_start).unwrap_or(0)
    }

    /// How many logs of the partition the broker lost.
    pub(super) fn restarts(&self, partition: u32) -> u32 {
        self.with(partition, |l| l.restarts).unwrap_or(0)
    }

    /// Whether the last record read from `partition` is this one.
    pub(super) fn is_last(&self, partition: u32, offset: u64, timestamp: Option<i64>, value: &str) -> bool {
        self.with(partition, |l| {
            l.current().last() == Some(&offset) && l.last_timestamp == timestamp && l.values.last().is_some_and(|v| v.as_ref() == value)
        })
        .unwrap_or(false)
    }

    /// The broker lost `partition`'s log; its next one begins at Kafka offset `base`. Returns the
    /// records lost with it (the auditor keeps them).
    pub(super) fn lose_log(&self, partition: u32, base: u64) -> u64 {
        let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
        let lost = logs.get_mut(partition as usize).map_or(0, |l| l.lose_log(base));
        drop(logs);
        // Sources waiting behind the lost records look again.
        self.version.send_modify(|v| *v += 1);
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(offsets: &[u64]) -> PartitionLog {
        PartitionLog {
            values: offsets.iter().map(|o| Arc::from(o.to_string().as_str())).collect(),
            offsets: offsets.to_vec(),
            ..PartitionLog::default()
        }
    }

    #[test]
    fn record_indices_skip_the_offsets_of_commit_markers() {
        // Two transactions of two records, each followed by its commit marker (offsets 2 and 5).
        let l = log(&[0, 1, 3, 4]);
        assert_eq!((0..4).map(|i| l.offset_of(i)).collect::<Vec<_>>(), [0, 1, 3, 4]);
        assert_eq!(l.offset_of(4), 5, "past the records seen: right after the last one");
        assert_eq!(l.offset_of(6), 7);
        assert_eq!([0, 1, 2, 3, 4, 5, 6].map(|o| l.index_of(o)), [0, 1, 2, 2, 3, 4, 5]);
        assert_eq!(l.known_index(3), Some(2));
        assert_eq!(l.known_index(2), None, "a marker is no record");
        assert_eq!(l.next_offset(), 5);
    }

    #[test]
    fn a_received_record_is_mirrored_at_its_index_or_not_yet() {
        // Records at offsets 0, 1 and 3 (a commit marker at 2).
        let l = log(&[0, 1, 3]);
        assert_eq!(l.mirrored(1, "1"), Mirrored::At(1));
        assert_eq!(l.mirrored(3, "3"), Mirrored::At(2));
        assert_eq!(l.mirrored(3, "x"), Mirrored::Other, "another record at a known offset");
        assert_eq!(l.mirrored(2, "2"), Mirrored::Absent, "read past, no record there");
        assert_eq!(l.mirrored(4, "4"), Mirrored::NotYet);
    }

    #[test]
    fn without_gaps_indices_are_offsets() {
        let l = log(&[0, 1, 2]);
        assert!((0..6).all(|o| l.index_of(o) == o && l.offset_of(o) == o));
        assert_eq!(PartitionLog::default().offset_of(3), 3);
    }

    #[test]
    fn an_offset_served_again_is_reported_not_appended() {
        let m = Mirror::new(1, EventBus::new(tokio::time::Instant::now()));
        assert_eq!(m.append(0, 0, None, Arc::from("a")), Some(Appended::New(0)));
        assert_eq!(m.append(0, 3, None, Arc::from("b")), Some(Appended::New(1)));
        assert_eq!(m.append(0, 0, None, Arc::from("c")), Some(Appended::ServedAgain { after: 3 }));
        assert_eq!(m.len(0), 2);
    }
}
