//! The KafkaSink's committer (KafkaCommitter.java:92-151): commits a pre-committed transaction
//! when its checkpoint completes, through the writer's producer when it still has it, else
//! through a producer that resumes the transaction from the committable's producer id and epoch
//! (after a restore). Its outcomes are Flink's:
//!
//! - the broker answers a commit of a transaction it already committed with success and writes
//!   nothing (TransactionCoordinator.scala:598-600): a restored committable whose commit went
//!   through before the failure is committed again, harmlessly;
//! - PRODUCER_FENCED: the epoch moved on, because the coordinator aborted the transaction on its
//!   timeout (the usual case during a long recovery) or another producer took the id. Flink logs
//!   it as likely data loss and drops the committable without failing the job
//!   (`signalFailedWithKnownReason`, KafkaCommitter.java:109-112, 153-185): the lines are lost, and
//!   ckptlab says so ([`CommitOutcome::Lost`]);
//! - INVALID_TXN_STATE: the transaction was aborted (commit after abort); dropped the same way
//!   (KafkaCommitter.java:113-122);
//! - anything else fails the job over (KafkaCommitter.java:141-149).

use std::sync::Arc;

use super::{KafkaCommittable, SinkError};
use crate::connectors::transactions::{FenceCause, ProducerFactory, TransactionalProducer, TxnError};

/// Why a committable could not be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
pub enum LossCause {
    /// The coordinator aborted the transaction: open longer than `transaction.timeout.ms`.
    #[strum(to_string = "the broker aborted it after transaction.timeout.ms")]
    TimedOut,
    /// The id's epoch moved on for another reason (another producer with the id, or a broker
    /// that does not say why).
    #[strum(to_string = "its producer was fenced")]
    Fenced,
    /// The transaction had been aborted.
    #[strum(to_string = "it had been aborted")]
    Aborted,
}

/// What became of one committable.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    /// The broker answered the commit with success (committed now, or already before).
    Committed,
    /// The transaction will never commit: its lines are lost from the read_committed output.
    Lost { committable: KafkaCommittable, cause: LossCause, error: TxnError, during_recovery: bool },
}

impl std::fmt::Display for CommitOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitOutcome::Committed => write!(f, "committed"),
            CommitOutcome::Lost { committable: c, cause, during_recovery, .. } => {
                let lines = format!("{} lines of checkpoint {}", c.records, c.checkpoint);
                match (cause, during_recovery) {
                    (LossCause::TimedOut, true) => {
                        write!(f, "output lost: transaction timed out while the job was down ({}: {lines})", c.transactional_id)
                    }
                    (LossCause::TimedOut, false) => {
                        write!(f, "output lost: transaction timed out before its checkpoint's commit ({}: {lines})", c.transactional_id)
                    }
                    (cause, _) => write!(f, "output lost: transaction {} not committed, {cause} ({lines})", c.transactional_id),
                }
            }
        }
    }
}

/// One sink subtask's committer.
pub struct KafkaCommitter {
    factory: Arc<dyn ProducerFactory>,
}

impl KafkaCommitter {
    pub fn new(factory: Arc<dyn ProducerFactory>) -> Self {
        KafkaCommitter { factory }
    }

    /// Commits `committable`, through `producer` (the writer's) when given. `Err` fails the job.
    pub fn commit(
        &mut self,
        committable: &KafkaCommittable,
        producer: Option<Box<dyn TransactionalProducer>>,
    ) -> Result<CommitOutcome, SinkError> {
        let during_recovery = producer.is_none();
        let mut producer = match producer {
            Some(p) => p,
            None => self.factory.resume(&committable.transactional_id, committable.producer)?,
        };
        let lost = |cause, error| Ok(CommitOutcome::Lost { committable: committable.clone(), cause, error, during_recovery });
        match producer.commit_transaction() {
            Ok(()) => Ok(CommitOutcome::Committed),
            Err(e @ TxnError::ProducerFenced { cause: Some(FenceCause::TransactionTimedOut), .. }) => lost(LossCause::TimedOut, e),
            Err(e @ (TxnError::ProducerFenced { .. } | TxnError::InvalidProducerEpoch { .. })) => lost(LossCause::Fenced, e),
            Err(e @ TxnError::InvalidTxnState { .. }) => lost(LossCause::Aborted, e),
            Err(e) => Err(e.into()),
        }
    }

    /// After a restore: commits every committable the restored checkpoint kept, in checkpoint
    /// order (the notification of their checkpoints may have been lost with the failure).
    pub fn recover(&mut self, committables: &[KafkaCommittable]) -> Result<Vec<CommitOutcome>, SinkError> {
        let mut sorted: Vec<&KafkaCommittable> = committables.iter().collect();
        sorted.sort_by_key(|c| c.checkpoint);
        sorted.into_iter().map(|c| self.commit(c, None)).collect()
    }
}
