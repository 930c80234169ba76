//! The KafkaSink's writer: Flink's KafkaWriter (none, at-least-once) and ExactlyOnceKafkaWriter
//! (exactly-once), with the INCREMENTING transaction naming strategy, Flink's default.
//!
//! The runtime calls, for one sink subtask:
//! - [`KafkaSinkWriter::new`] at deployment (and after every restore): exactly-once aborts the
//!   lingering transactions of previous attempts ([`super::abort`]) and begins the transaction
//!   named for the restored checkpoint + 1 (ExactlyOnceKafkaWriter.java:190-218);
//! - [`KafkaSinkWriter::write`] for each `(key,count)` line; every line of subtask i goes to
//!   partition i mod partitions (Flink's FlinkFixedPartitioner.java:76-82);
//! - [`KafkaSinkWriter::barrier`] when the barrier of a checkpoint is to be forwarded: the flush
//!   (`prepareSnapshotPreBarrier` -> KafkaWriter.flush, skipped for `none`, KafkaWriter.java:181-188),
//!   the committable of the transaction if it holds a record (`prepareCommit`,
//!   ExactlyOnceKafkaWriter.java:220-233; an empty one is recycled, no committable) and the next
//!   transaction (`snapshotState` begins checkpoint + 1's, ExactlyOnceKafkaWriter.java:235-248).
//!   The committable goes into the snapshot with the committer's state; the producer that holds
//!   it stays with the writer until the committer takes it ([`KafkaSinkWriter::take_precommitted`]),
//!   as Flink hands the producer along with the committable in the same process.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{abort, transactional_id, DeliveryGuarantee, KafkaCommittable, KafkaSinkSettings, KafkaWriterState, RestoredSink, SinkError};
use crate::connectors::transactions::{ProducerFactory, TransactionalProducer, TxnError};

/// What a barrier leaves for the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterSnapshot {
    /// The transaction the checkpoint closed (exactly-once, when it holds a record).
    pub committable: Option<KafkaCommittable>,
    /// The writer's state (exactly-once).
    pub state: Option<KafkaWriterState>,
}

/// One sink subtask's writer.
pub struct KafkaSinkWriter {
    guarantee: DeliveryGuarantee,
    prefix: String,
    subtask: u32,
    factory: Arc<dyn ProducerFactory>,
    partition: u32,
    current: Box<dyn TransactionalProducer>,
    records_in_transaction: u64,
    /// The checkpoint the open transaction is named for (the naming context's lastCheckpointId).
    transaction_checkpoint: u64,
    precommitted: BTreeMap<String, Box<dyn TransactionalProducer>>,
    /// Ids the abort of lingering transactions found used at start.
    aborted_at_start: Vec<String>,
}

/// Begins the transaction named for `next`, initialising the ids of checkpoints skipped since
/// `last` first (the INCREMENTING strategy fills gaps, TransactionNamingStrategyImpl.java:40-59).
fn open_transaction(
    factory: &dyn ProducerFactory,
    prefix: &str,
    subtask: u32,
    last: u64,
    next: u64,
) -> Result<Box<dyn TransactionalProducer>, TxnError> {
    if next <= last {
        return Err(TxnError::IllegalState("a transaction is named for a checkpoint after the last one"));
    }
    for skipped in last + 1..next {
        factory.create(Some(&transactional_id(prefix, subtask, skipped)))?.init_transactions()?;
    }
    let mut producer = factory.create(Some(&transactional_id(prefix, subtask, next)))?;
    producer.init_transactions()?;
    producer.begin_transaction()?;
    Ok(producer)
}

impl KafkaSinkWriter {
    /// The writer of sink subtask `subtask` of `parallelism`, restored from `restored`.
    pub fn new(
        settings: &KafkaSinkSettings,
        subtask: u32,
        parallelism: u32,
        factory: Arc<dyn ProducerFactory>,
        restored: &RestoredSink,
    ) -> Result<Self, SinkError> {
        let partition = subtask % factory.partitions().max(1);
        let guarantee = settings.delivery_guarantee;
        let (prefix, current, transaction_checkpoint, aborted_at_start) = if guarantee == DeliveryGuarantee::ExactlyOnce {
            let prefix = settings.transactional_id_prefix.clone().ok_or(SinkError::MissingTransactionalIdPrefix)?;
            // CheckpointIDCounter.INITIAL_CHECKPOINT_ID - 1 when nothing was restored.
            let restored_checkpoint = restored.checkpoint.unwrap_or(0);
            let mut prefixes = vec![prefix.clone()];
            if let Some(old) = restored.writer_states.first().filter(|s| s.transactional_id_prefix != prefix) {
                prefixes.push(old.transactional_id_prefix.clone());
            }
            let aborted = abort::abort_lingering(factory.as_ref(), &prefixes, subtask, parallelism, restored_checkpoint + 1)?;
            let current = open_transaction(factory.as_ref(), &prefix, subtask, restored_checkpoint, restored_checkpoint + 1)?;
            (prefix, current, restored_checkpoint + 1, aborted)
        } else {
            (String::new(), factory.create(None)?, 0, Vec::new())
        };
        Ok(KafkaSinkWriter {
            guarantee,
            prefix,
            subtask,
            factory,
            partition,
            current,
            records_in_transaction: 0,
            transaction_checkpoint,
            precommitted: BTreeMap::new(),
            aborted_at_start,
        })
    }

    pub fn delivery_guarantee(&self) -> DeliveryGuarantee {
        self.guarantee
    }

    /// The ids whose lingering transactions the start aborted (exactly-once).
    pub fn aborted_at_start(&self) -> &[String] {
        &self.aborted_at_start
    }

    /// The open transaction's id (exactly-once).
    pub fn transactional_id(&self) -> Option<&str> {
        self.current.transactional_id()
    }

    /// One line to the output topic.
    pub fn write(&mut self, line: &str) -> Result<(), SinkError> {
        self.current.send(self.partition, line)?;
        self.records_in_transaction += 1;
        Ok(())
    }

    /// The barrier of `checkpoint`: flush, pre-commit, next transaction.
    pub fn barrier(&mut self, checkpoint: u64) -> Result<WriterSnapshot, SinkError> {
        if self.guarantee != DeliveryGuarantee::None {
            self.current.flush()?;
        }
        if self.guarantee != DeliveryGuarantee::ExactlyOnce {
            self.records_in_transaction = 0;
            return Ok(WriterSnapshot::default());
        }
        let committable = if self.records_in_transaction > 0 {
            let transactional_id = self.current.transactional_id().map(str::to_owned);
            let producer = self.current.producer_id_and_epoch();
            let (Some(transactional_id), Some(producer)) = (transactional_id, producer) else {
                return Err(TxnError::IllegalState("an exactly-once transaction without a transactional id").into());
            };
            Some(KafkaCommittable { transactional_id, producer, checkpoint, records: self.records_in_transaction, opened_ms: None })
        } else {
            None
        };
        let next = open_transaction(self.factory.as_ref(), &self.prefix, self.subtask, self.transaction_checkpoint, checkpoint + 1)?;
        let closed = std::mem::replace(&mut self.current, next);
        if let Some(c) = &committable {
            self.precommitted.insert(c.transactional_id.clone(), closed);
        }
        self.transaction_checkpoint = checkpoint + 1;
        self.records_in_transaction = 0;
        Ok(WriterSnapshot {
            committable,
            state: Some(KafkaWriterState { transactional_id_prefix: self.prefix.clone(), subtask: self.subtask }),
        })
    }

    /// The producer holding the pre-committed transaction `transactional_id`, for the committer.
    pub fn take_precommitted(&mut self, transactional_id: &str) -> Option<Box<dyn TransactionalProducer>> {
        self.precommitted.remove(transactional_id)
    }

    /// An orderly close (the task cancelled or failed): with exactly-once the open transaction
    /// is aborted when it holds a record (ExactlyOnceKafkaWriter.java:279-293), a fenced producer
    /// notwithstanding; the producers are then closed without waiting for what they still queue
    /// (KafkaWriter.java:200-211 -> FlinkKafkaInternalProducer.close, `close(Duration.ZERO)`,
    /// FlinkKafkaInternalProducer.java:135-142): `none` loses it, as a failure does. A killed
    /// task closes nothing: its transaction lingers until the next attempt or the timeout aborts it.
    pub fn close(mut self) {
        if self.guarantee == DeliveryGuarantee::ExactlyOnce && self.records_in_transaction > 0 {
            let _ = self.current.abort_transaction();
        }
    }
}
