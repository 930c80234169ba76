//! `job.sink = kafka`: Flink's KafkaSink as one of the cluster's sinks, its writer and committer
//! ([`super::writer`], [`super::committer`]) in the sink subtask, as Flink 2's SinkWriterOperator
//! and CommitterOperator run them chained in one task:
//!
//! - deployment (`recover`): the committer commits the restored checkpoint's committables again
//!   (CommitterOperator.initializeState -> commit of the restored committables; the broker
//!   answers a re-commit with success), then the writer starts, aborting lingering transactions
//!   of the prefix (ExactlyOnceKafkaWriter.initializeState, TransactionAbortStrategyImpl.PROBING);
//! - each line goes to the producer (KafkaWriter.write); with none and at-least-once it is
//!   visible at once, with exactly-once when its transaction commits;
//! - the barrier (`prepare_commit`): flush, pre-commit, next transaction
//!   (KafkaWriter.flush / prepareCommit / snapshotState); the committables and writer state go
//!   into the snapshot;
//! - close (`close`, the task cancelled or failed while its TaskManager runs): the writer aborts
//!   its open transaction (ExactlyOnceKafkaWriter.close); a killed TaskManager closes nothing;
//! - notifyCheckpointComplete (`commit`): the committables of that checkpoint and older ones are
//!   committed (CommitterOperator.notifyCheckpointComplete -> KafkaCommitter.commit). A
//!   transaction the broker aborted meanwhile (its timeout) is lost, and said so
//!   ([`super::output::OutputTopic::record_loss`]); any other commit error fails the task.
//!
//! Lines also go to the output pane and the auditor when they become visible at read_committed
//! (the [`SinkOutput`]), so the verdict's output figures speak of what a read_committed reader
//! sees in this process; [`super::verdict`] judges the topic itself at both isolation levels.

use std::sync::Arc;

use super::output::{blocking, OutputTopic};
use super::{
    CommitOutcome, DeliveryGuarantee, KafkaCommittable, KafkaCommitter, KafkaSinkSettings, KafkaSinkState, KafkaSinkWriter, RestoredSink,
    SinkError as KafkaSinkError,
};
use crate::connectors::sink::{RestoredSinkState, Sink, SinkError, SinkOutput, SinkSnapshot};
use crate::connectors::transactions::ProducerFactory;
use crate::state::storage::StagedLine;

/// The sink subtask's index: ckptlab runs the sink with parallelism 1.
const SUBTASK: u32 = 0;
const PARALLELISM: u32 = 1;

/// Flink's KafkaSink in a sink subtask.
pub struct KafkaSink {
    settings: KafkaSinkSettings,
    output: Arc<OutputTopic>,
    /// The output topic's producers with this sink's properties ([`OutputTopic::producers`]).
    producers: Arc<dyn ProducerFactory>,
    /// `None` until deployed ([`Sink::recover`]).
    writer: Option<KafkaSinkWriter>,
    committer: KafkaCommitter,
    /// Lines of the open transaction (exactly-once).
    open: Vec<StagedLine>,
    /// Pre-committed transactions waiting for their checkpoint to complete, with their lines.
    pending: Vec<(KafkaCommittable, Vec<StagedLine>)>,
}

impl KafkaSink {
    /// The sink writing to `output` with `producers` (the topic's, with this sink's properties).
    pub fn new(settings: KafkaSinkSettings, output: Arc<OutputTopic>, producers: Arc<dyn ProducerFactory>) -> Self {
        let committer = KafkaCommitter::new(producers.clone());
        KafkaSink { settings, output, producers, writer: None, committer, open: Vec::new(), pending: Vec::new() }
    }

    fn writer(&mut self) -> Result<&mut KafkaSinkWriter, SinkError> {
        self.writer.as_mut().ok_or(SinkError::Kafka(KafkaSinkError::Producer(crate::connectors::transactions::TxnError::IllegalState(
            "the KafkaSink's writer was not started",
        ))))
    }

    /// A fenced producer's error names the prefix (two jobs sharing one fence each other).
    fn fenced(&self, e: KafkaSinkError) -> KafkaSinkError {
        e.naming_prefix(self.settings.transactional_id_prefix.as_deref())
    }

    fn exactly_once(&self) -> bool {
        self.settings.delivery_guarantee == DeliveryGuarantee::ExactlyOnce
    }

    /// What became of one commit: visible lines, or a loss the verdict names.
    fn settle(&self, outcome: CommitOutcome, checkpoint: u64, lines: &[StagedLine], out: &SinkOutput) {
        match outcome {
            CommitOutcome::Committed => {
                out.commit(checkpoint, lines);
            }
            lost @ CommitOutcome::Lost { .. } => self.output.record_loss(&lost),
        }
    }
}

impl Sink for KafkaSink {
    fn recover(&mut self, restored: RestoredSinkState, out: &SinkOutput) -> Result<(), SinkError> {
        let kafka = restored.snapshot.kafka.unwrap_or_default();
        let mut committables = kafka.committables;
        committables.sort_by_key(|c| c.checkpoint);
        for c in &committables {
            let lines: Vec<StagedLine> = restored.snapshot.staged.iter().filter(|l| l.checkpoint == c.checkpoint).cloned().collect();
            let outcome = blocking(|| self.committer.commit(c, None))?;
            self.settle(outcome, c.checkpoint, &lines, out);
        }
        let restored = RestoredSink { checkpoint: restored.checkpoint, writer_states: kafka.writer_states };
        let factory = self.producers.clone();
        let settings = self.settings.clone();
        let writer = blocking(|| KafkaSinkWriter::new(&settings, SUBTASK, PARALLELISM, factory, &restored)).map_err(|e| self.fenced(e))?;
        self.writer = Some(writer);
        Ok(())
    }

    fn write(&mut self, line: StagedLine, out: &SinkOutput) -> Result<(), SinkError> {
        let text = format!("({},{})", line.value, line.count);
        let written = self.writer()?.write(&text);
        written.map_err(|e| self.fenced(e))?;
        if self.exactly_once() {
            self.open.push(line);
        } else {
            out.emit(&line);
        }
        Ok(())
    }

    fn prepare_commit(&mut self, checkpoint: u64) -> Result<SinkSnapshot, SinkError> {
        let writer = self.writer()?;
        let snap = blocking(|| writer.barrier(checkpoint));
        let snap = snap.map_err(|e| self.fenced(e))?;
        if !self.exactly_once() {
            return Ok(SinkSnapshot::default());
        }
        let mut lines = std::mem::take(&mut self.open);
        if let Some(c) = snap.committable {
            for l in &mut lines {
                l.checkpoint = checkpoint;
            }
            self.pending.push((c, lines));
        }
        Ok(SinkSnapshot {
            staged: self.pending.iter().flat_map(|(_, lines)| lines.iter().cloned()).collect(),
            kafka: Some(KafkaSinkState {
                committables: self.pending.iter().map(|(c, _)| c.clone()).collect(),
                writer_states: snap.state.into_iter().collect(),
            }),
        })
    }

    /// The writer's close (ExactlyOnceKafkaWriter.close -> abortCurrentProducer,
    /// ExactlyOnceKafkaWriter.java:269-293): the open transaction is aborted, so a read_committed
    /// reader goes on at once instead of after `transaction.timeout.ms`. Pre-committed
    /// transactions stay for the committer of the next attempt.
    fn close(&mut self) {
        if let Some(writer) = self.writer.take() {
            blocking(|| writer.close());
        }
    }

    fn commit(&mut self, checkpoint: u64, out: &SinkOutput) -> Result<(), SinkError> {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending).into_iter().partition(|(c, _)| c.checkpoint <= checkpoint);
        self.pending = later;
        for (c, lines) in due {
            let producer = self.writer()?.take_precommitted(&c.transactional_id);
            let outcome = blocking(|| self.committer.commit(&c, producer))?;
            self.settle(outcome, c.checkpoint, &lines, out);
        }
        Ok(())
    }
}
