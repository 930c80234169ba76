//! The transactional sink (two-phase commit, as Flink's KafkaSink with EXACTLY_ONCE delivery):
//! lines of checkpoint n's transaction become visible when n completes. With exactly-once
//! checkpoints the output is then exactly-once end to end, at the price of latency equal to the
//! checkpoint interval.
//!
//! Its external system aborts a transaction left open longer than
//! `sink.properties.transaction.timeout.ms` (the Kafka sink's key; 1 h by default, as
//! KafkaSinkBuilder sets), counted from its first line, as Kafka's transaction coordinator does
//! (TransactionCoordinator.abortTimedOutTransactions). A commit that comes later (a job down
//! longer than the timeout, with a pre-committed transaction in its checkpoint) finds it aborted:
//! its lines are lost, and said so ("output lost: transaction timed out while the job was
//! down"), so that the timeout can be shown without Kafka. The clock is the wall clock: the
//! external system's, across attempts and processes.

use std::collections::BTreeMap;
use std::time::Duration;

use super::kafka_sink::{KafkaCommittable, KafkaSinkState, DEFAULT_TRANSACTION_TIMEOUT};
use super::sink::{RestoredSinkState, Sink, SinkError, SinkOutput, SinkSnapshot};
use super::transactions::ProducerIdAndEpoch;
use crate::events::Event;
use crate::state::storage::StagedLine;

/// A prepared transaction: its lines and when it opened (ms since the Unix epoch).
type Prepared = (Vec<StagedLine>, u64);

pub struct TransactionalSink {
    timeout: Duration,
    /// The open transaction, and when its first line came.
    open: Vec<StagedLine>,
    open_since: Option<u64>,
    /// Prepared transactions waiting for their checkpoint to complete.
    prepared: BTreeMap<u64, Prepared>,
}

impl Default for TransactionalSink {
    fn default() -> Self {
        TransactionalSink::new(DEFAULT_TRANSACTION_TIMEOUT)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The transaction's name in events and loss messages.
fn transaction_id(checkpoint: u64) -> String {
    format!("2pc-{checkpoint}")
}

impl TransactionalSink {
    pub fn new(timeout: Duration) -> Self {
        TransactionalSink { timeout, open: Vec::new(), open_since: None, prepared: BTreeMap::new() }
    }

    /// Commits checkpoint `id`'s transaction, unless the external system aborted it on its
    /// timeout: then its lines are lost, published as [`Event::OutputLost`].
    fn commit_one(&self, id: u64, lines: &[StagedLine], opened: Option<u64>, during_recovery: bool, out: &SinkOutput) {
        let open_for = opened.map(|o| now_ms().saturating_sub(o));
        if let Some(open_for) = open_for.filter(|ms| *ms > self.timeout.as_millis() as u64) {
            let when = if during_recovery { "while the job was down" } else { "before its checkpoint's commit" };
            let message = format!(
                "output lost: transaction timed out {when} ({}: {} lines of checkpoint {id}, open {open_for} ms > transaction.timeout.ms {})",
                transaction_id(id),
                lines.len(),
                self.timeout.as_millis()
            );
            out.events.publish(Event::OutputLost { transactional_id: transaction_id(id), checkpoint: id, lines: lines.len() as u64, message });
            return;
        }
        out.commit(id, lines);
    }
}

impl Sink for TransactionalSink {
    fn recover(&mut self, restored: RestoredSinkState, out: &SinkOutput) -> Result<(), SinkError> {
        let mut by_checkpoint: BTreeMap<u64, Vec<StagedLine>> = BTreeMap::new();
        for line in restored.snapshot.staged {
            by_checkpoint.entry(line.checkpoint).or_default().push(line);
        }
        let opened: BTreeMap<u64, u64> = restored
            .snapshot
            .kafka
            .iter()
            .flat_map(|k| k.committables.iter())
            .filter_map(|c| Some((c.checkpoint, c.opened_ms?)))
            .collect();
        for (id, lines) in by_checkpoint {
            self.commit_one(id, &lines, opened.get(&id).copied(), true, out);
        }
        Ok(())
    }

    fn write(&mut self, line: StagedLine, _out: &SinkOutput) -> Result<(), SinkError> {
        self.open_since.get_or_insert_with(now_ms);
        self.open.push(line);
        Ok(())
    }

    fn prepare_commit(&mut self, checkpoint: u64) -> Result<SinkSnapshot, SinkError> {
        let mut lines = std::mem::take(&mut self.open);
        for l in &mut lines {
            l.checkpoint = checkpoint;
        }
        let opened = self.open_since.take().unwrap_or_else(now_ms);
        self.prepared.insert(checkpoint, (lines, opened));
        // The open times go into the snapshot beside the lines, in the committables' form.
        let committables = self
            .prepared
            .iter()
            .map(|(id, (lines, opened))| KafkaCommittable {
                transactional_id: transaction_id(*id),
                producer: ProducerIdAndEpoch { producer_id: 0, epoch: 0 },
                checkpoint: *id,
                records: lines.len() as u64,
                opened_ms: Some(*opened),
            })
            .collect();
        Ok(SinkSnapshot {
            staged: self.prepared.values().flat_map(|(lines, _)| lines.iter().cloned()).collect(),
            kafka: Some(KafkaSinkState { committables, writer_states: Vec::new() }),
        })
    }

    fn commit(&mut self, checkpoint: u64, out: &SinkOutput) -> Result<(), SinkError> {
        let later = self.prepared.split_off(&(checkpoint + 1));
        for (id, (lines, opened)) in std::mem::replace(&mut self.prepared, later) {
            self.commit_one(id, &lines, Some(opened), false, out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::topic::EmbeddedTopic;
    use crate::connectors::Topic;
    use crate::events::EventBus;
    use crate::types::Origin;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};

    fn line(value: &str, checkpoint: u64) -> StagedLine {
        StagedLine { value: value.into(), count: 1, origin: Origin { partition: 0, offset: 0 }, checkpoint }
    }

    fn restored(opened_ms: u64) -> RestoredSinkState {
        let c = KafkaCommittable {
            transactional_id: transaction_id(3),
            producer: ProducerIdAndEpoch { producer_id: 0, epoch: 0 },
            checkpoint: 3,
            records: 2,
            opened_ms: Some(opened_ms),
        };
        RestoredSinkState {
            checkpoint: Some(3),
            snapshot: SinkSnapshot {
                staged: vec![line("a", 3), line("b", 3)],
                kafka: Some(KafkaSinkState { committables: vec![c], writer_states: Vec::new() }),
            },
        }
    }

    /// Restores a checkpoint whose pre-committed transaction opened `ago` before now; returns
    /// the lines made visible and the loss messages published.
    fn restore(timeout: Duration, ago: Duration) -> (usize, Vec<String>) {
        let events = EventBus::new(tokio::time::Instant::now());
        let mut rx = events.subscribe();
        let topic: Arc<dyn Topic> = EmbeddedTopic::new("input-topic", 1, events.clone());
        let auditor = crate::audit::Auditor::new(false, topic, 1, crate::config::KeyBy::Record);
        let lines = Mutex::default();
        let committed = AtomicU64::new(0);
        let out = SinkOutput { events: &events, auditor: &auditor, lines: &lines, committed: &committed, log: None };
        let mut sink = TransactionalSink::new(timeout);
        sink.recover(restored(now_ms() - ago.as_millis() as u64), &out).unwrap();
        let mut lost = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let Event::OutputLost { message, .. } = e.event {
                lost.push(message);
            }
        }
        let visible = lines.lock().unwrap().len();
        (visible, lost)
    }

    /// Catches: a two-phase-commit sink whose restore commits a transaction its external system
    /// aborted on the timeout (the lines would be visible), or loses one that was still within it.
    #[test]
    fn a_restore_after_a_downtime_longer_than_the_timeout_loses_the_transactions_lines_and_says_why() {
        let (visible, lost) = restore(Duration::from_secs(4), Duration::from_secs(10));
        assert_eq!(visible, 0);
        assert_eq!(lost.len(), 1);
        assert!(lost[0].starts_with("output lost: transaction timed out while the job was down (2pc-3: 2 lines of checkpoint 3"), "{lost:?}");
        let (visible, lost) = restore(Duration::from_secs(4), Duration::from_secs(1));
        assert_eq!((visible, lost.len()), (2, 0), "within the timeout the restore commits it");
    }
}
