//! The abort of lingering transactions when an exactly-once writer starts: Flink's default
//! PROBING strategy (TransactionAbortStrategyImpl.java:47-117).
//!
//! For each prefix (the configured one, and the restored state's when it differs), for this
//! subtask and every subtask `subtask + k * parallelism` a larger previous attempt may have had
//! (downscaling), it re-initialises `prefix-subtask-c` for c = restored checkpoint + 1, + 2, ...
//! `initTransactions` fences the id's producers and aborts its open transaction; an epoch of 0
//! says the id was never used, and the probe stops there (transaction ids are used one after the
//! other). A subtask with no used id ends the search. The probe is not free of side effects: each
//! id it touches is initialised, so a restart loop widens the next search (the strategy's own
//! caveat, TransactionAbortStrategyImpl.java:39-44).

use super::transactional_id;
use crate::connectors::transactions::{ProducerFactory, TxnError};

/// Re-initialises every id a previous attempt of `subtask` may have left open after the
/// restored checkpoint (`start_checkpoint` = restored + 1). Returns the ids found used (epoch > 0
/// on re-initialisation): those whose open transaction, if any, is now aborted.
pub fn abort_lingering(
    factory: &dyn ProducerFactory,
    prefixes: &[String],
    subtask: u32,
    parallelism: u32,
    start_checkpoint: u64,
) -> Result<Vec<String>, TxnError> {
    let mut used = Vec::new();
    for prefix in prefixes {
        let mut s = subtask;
        loop {
            let before = used.len();
            probe_subtask(factory, prefix, s, start_checkpoint, &mut used)?;
            if used.len() == before {
                break;
            }
            s += parallelism.max(1);
        }
    }
    Ok(used)
}

fn probe_subtask(factory: &dyn ProducerFactory, prefix: &str, subtask: u32, start: u64, used: &mut Vec<String>) -> Result<(), TxnError> {
    for checkpoint in start.. {
        let tid = transactional_id(prefix, subtask, checkpoint);
        let mut producer = factory.create(Some(&tid))?;
        let epoch = producer.init_transactions()?.epoch;
        producer.flush()?;
        if epoch == 0 {
            return Ok(());
        }
        used.push(tid);
    }
    Ok(())
}
