//! The client side of the embedded transactional log: a producer as the Java client behaves.
//!
//! Records are queued in the client and reach the log in batches of `linger` records, on
//! `flush`, or on commit (which flushes first): what a crash drops is what was queued, as a dead
//! process's accumulator. `beginTransaction` is local; the coordinator learns of the transaction
//! with its first record. `commitTransaction` with no record delivered sends no EndTxn
//! (TransactionManager.java:816-824). A producer made by [`ProducerFactory::resume`] is in the
//! transaction with `transactionStarted` set, as FlinkKafkaInternalProducer.resumeTransaction
//! leaves it (FlinkKafkaInternalProducer.java:300-337). Dropping a producer aborts nothing: a
//! killed task's transaction lingers until fenced or timed out.

use std::sync::Arc;
use std::time::Duration;

use super::coordinator::TransactionalLog;
use super::producer::{ProducerFactory, ProducerIdAndEpoch, TransactionalProducer, TxnError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Uninitialized,
    Ready,
    /// `started`: a record reached the coordinator (or the transaction was resumed).
    InTransaction { started: bool },
    /// After a fencing error nothing more is possible (the Java client's FATAL_ERROR).
    Fatal,
}

/// A producer of the embedded log.
pub struct EmbeddedProducer {
    log: Arc<TransactionalLog>,
    transactional_id: Option<String>,
    timeout: Duration,
    linger: usize,
    producer: Option<ProducerIdAndEpoch>,
    state: ClientState,
    queued: Vec<(u32, String)>,
}

impl EmbeddedProducer {
    fn fail(&mut self, e: TxnError) -> TxnError {
        if matches!(e, TxnError::ProducerFenced { .. }) {
            self.state = ClientState::Fatal;
        }
        e
    }

    fn deliver(&mut self) -> Result<(), TxnError> {
        let transactional = match (&self.transactional_id, self.producer) {
            (Some(tid), Some(p)) => Some((tid.clone(), p)),
            _ => None,
        };
        for (partition, value) in std::mem::take(&mut self.queued) {
            let sent = self.log.send(transactional.as_ref().map(|(t, p)| (t.as_str(), *p)), partition, &value);
            if let Err(e) = sent {
                return Err(self.fail(e));
            }
            if let ClientState::InTransaction { started } = &mut self.state {
                *started = true;
            }
        }
        Ok(())
    }

    fn require_transaction(&self) -> Result<(), TxnError> {
        match self.state {
            ClientState::InTransaction { .. } => Ok(()),
            ClientState::Fatal => Err(TxnError::IllegalState("the producer was fenced: it cannot be used any more")),
            _ => Err(TxnError::IllegalState("no transaction is open: call beginTransaction first")),
        }
    }

    fn end(&mut self, commit: bool) -> Result<(), TxnError> {
        self.require_transaction()?;
        let ClientState::InTransaction { started } = self.state else { unreachable!("required above") };
        if commit {
            self.deliver()?;
        } else {
            self.queued.clear();
        }
        let started = started || matches!(self.state, ClientState::InTransaction { started: true });
        if started {
            let (Some(tid), Some(p)) = (self.transactional_id.clone(), self.producer) else {
                return Err(TxnError::IllegalState("a transaction without a producer id"));
            };
            if let Err(e) = self.log.end_txn(&tid, p, commit) {
                return Err(self.fail(e));
            }
        }
        self.state = ClientState::Ready;
        Ok(())
    }
}

impl TransactionalProducer for EmbeddedProducer {
    fn transactional_id(&self) -> Option<&str> {
        self.transactional_id.as_deref()
    }

    fn init_transactions(&mut self) -> Result<ProducerIdAndEpoch, TxnError> {
        let Some(tid) = self.transactional_id.clone() else {
            return Err(TxnError::IllegalState("initTransactions needs a transactional.id"));
        };
        let p = self.log.init_producer_id(&tid, self.timeout)?;
        self.producer = Some(p);
        self.state = ClientState::Ready;
        self.queued.clear();
        Ok(p)
    }

    fn begin_transaction(&mut self) -> Result<(), TxnError> {
        match self.state {
            ClientState::Ready => {
                self.state = ClientState::InTransaction { started: false };
                Ok(())
            }
            ClientState::Uninitialized => Err(TxnError::IllegalState("initTransactions has not been called")),
            ClientState::InTransaction { .. } => Err(TxnError::IllegalState("a transaction is already open")),
            ClientState::Fatal => Err(TxnError::IllegalState("the producer was fenced: it cannot be used any more")),
        }
    }

    fn send(&mut self, partition: u32, value: &str) -> Result<(), TxnError> {
        if self.transactional_id.is_some() {
            self.require_transaction()?;
        }
        self.queued.push((partition, value.to_owned()));
        if self.queued.len() > self.linger {
            self.deliver()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TxnError> {
        self.deliver()
    }

    fn commit_transaction(&mut self) -> Result<(), TxnError> {
        self.end(true)
    }

    fn abort_transaction(&mut self) -> Result<(), TxnError> {
        self.end(false)
    }

    fn producer_id_and_epoch(&self) -> Option<ProducerIdAndEpoch> {
        self.producer
    }
}

/// Makes producers of one embedded log.
#[derive(Clone)]
pub struct EmbeddedProducers {
    pub log: Arc<TransactionalLog>,
    /// `transaction.timeout.ms`.
    pub timeout: Duration,
    /// Records a producer queues before they go to the log (0: each at once).
    pub linger: usize,
}

impl EmbeddedProducers {
    fn producer(&self, transactional_id: Option<&str>) -> EmbeddedProducer {
        EmbeddedProducer {
            log: self.log.clone(),
            transactional_id: transactional_id.map(str::to_owned),
            timeout: self.timeout,
            linger: self.linger,
            producer: None,
            state: if transactional_id.is_some() { ClientState::Uninitialized } else { ClientState::Ready },
            queued: Vec::new(),
        }
    }
}

impl ProducerFactory for EmbeddedProducers {
    fn partitions(&self) -> u32 {
        self.log.partitions()
    }

    fn create(&self, transactional_id: Option<&str>) -> Result<Box<dyn TransactionalProducer>, TxnError> {
        Ok(Box::new(self.producer(transactional_id)))
    }

    fn resume(&self, transactional_id: &str, producer: ProducerIdAndEpoch) -> Result<Box<dyn TransactionalProducer>, TxnError> {
        let mut p = self.producer(Some(transactional_id));
        p.producer = Some(producer);
        p.state = ClientState::InTransaction { started: true };
        Ok(Box::new(p))
    }

    fn transaction_timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::super::coordinator::BrokerSettings;
    use super::super::log::IsolationLevel;
    use super::*;

    fn producers(linger: usize) -> EmbeddedProducers {
        EmbeddedProducers { log: Arc::new(TransactionalLog::new(BrokerSettings::default())), timeout: Duration::from_secs(60), linger }
    }

    fn uncommitted(f: &EmbeddedProducers) -> usize {
        f.log.read(0, 0, IsolationLevel::ReadUncommitted, usize::MAX).unwrap().records.len()
    }

    #[test]
    fn queued_records_reach_the_log_in_batches_on_flush_and_on_commit() {
        let f = producers(2);
        let mut p = f.create(Some("t")).unwrap();
        p.init_transactions().unwrap();
        p.begin_transaction().unwrap();
        p.send(0, "a").unwrap();
        p.send(0, "b").unwrap();
        assert_eq!(uncommitted(&f), 0, "two records fit the batch");
        p.send(0, "c").unwrap();
        assert_eq!(uncommitted(&f), 3);
        p.send(0, "d").unwrap();
        p.commit_transaction().unwrap();
        assert_eq!(f.log.read(0, 0, IsolationLevel::ReadCommitted, 10).unwrap().records.len(), 4, "commit flushed d first");
    }

    #[test]
    fn a_commit_with_no_record_sends_no_end_txn() {
        let f = producers(0);
        let mut p = f.create(Some("t")).unwrap();
        p.init_transactions().unwrap();
        p.begin_transaction().unwrap();
        p.commit_transaction().unwrap();
        assert!(f.log.markers().is_empty());
    }

    #[test]
    fn send_outside_a_transaction_on_a_transactional_producer_is_an_illegal_state() {
        let f = producers(0);
        let mut p = f.create(Some("t")).unwrap();
        p.init_transactions().unwrap();
        assert!(matches!(p.send(0, "a"), Err(TxnError::IllegalState(_))));
    }

    #[test]
    fn a_fenced_producer_is_unusable_afterwards() {
        let f = producers(0);
        let mut old = f.create(Some("t")).unwrap();
        old.init_transactions().unwrap();
        old.begin_transaction().unwrap();
        let mut new = f.create(Some("t")).unwrap();
        new.init_transactions().unwrap();
        assert!(old.send(0, "a").unwrap_err().is_fenced());
        assert!(matches!(old.begin_transaction(), Err(TxnError::IllegalState(_))));
    }
}
