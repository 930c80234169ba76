//! The counter, the seed's StatefulMapper: one count per key in keyed state; for each record it
//! adds one and emits `(record, count)`. An [`Operator`] run by the operator runner.

use std::ops::Range;
use std::sync::Arc;

use super::element::{Origin, Record};
use super::operator::{OpenError, Operator, OperatorSnapshot};
use super::task::TaskContext;
use crate::state::{KeyedStateBackend, StateError, StateHandle};

pub struct Counter {
    pub index: usize,
    pub key_groups: Range<u16>,
    pub backend: Box<dyn KeyedStateBackend>,
    /// The checkpoint the task was deployed with, and its keyed state handles.
    pub restore: Option<(u64, Vec<StateHandle>)>,
    /// Records applied since the auditor last heard: (origin, key, count after).
    applied: Vec<(Origin, Arc<str>, u64)>,
}

impl Counter {
    pub fn new(index: usize, key_groups: Range<u16>, backend: Box<dyn KeyedStateBackend>, restore: Option<(u64, Vec<StateHandle>)>) -> Self {
        Counter { index, key_groups, backend, restore, applied: Vec::new() }
    }
}

impl Operator for Counter {
    fn open(&mut self, ctx: &TaskContext) -> Result<(), OpenError> {
        if let Some((checkpoint, handles)) = self.restore.take() {
            self.backend
                .restore(&handles, self.key_groups.clone())
                .map_err(|e| OpenError::Restore { checkpoint, message: format!("restore failed: {e}") })?;
        }
        // The auditor starts from what the restored state holds (a full read: skipped when it is off).
        if ctx.auditor.enabled() {
            let entries = self.backend.entries().map_err(|e| OpenError::Failed(format!("state backend error: {e}")))?;
            ctx.auditor.restored(ctx.attempt, self.index, entries);
        }
        Ok(())
    }

    #[inline]
    fn process(&mut self, ctx: &TaskContext, mut r: Record) -> Result<Option<Record>, StateError> {
        let count = self.backend.increment(&r.key)?;
        if ctx.auditor.enabled() {
            self.applied.push((r.origin, r.key.clone(), count));
        }
        r.count = count;
        Ok(Some(r))
    }

    fn end_of_batch(&mut self, ctx: &TaskContext) {
        if !self.applied.is_empty() {
            ctx.auditor.applied(ctx.attempt, self.index, &self.applied);
            self.applied.clear();
        }
    }

    fn snapshot(&mut self, ctx: &TaskContext, checkpoint: u64) -> Result<OperatorSnapshot, StateError> {
        let target = ctx.storage.target(checkpoint, &format!("counter-{}", self.index), self.key_groups.clone());
        let pending = self.backend.snapshot(&target)?;
        // The auditor's shadow is copied here, at the synchronous point the state was captured,
        // not when the write finishes (records processed meanwhile are not in this snapshot).
        ctx.auditor.snapshot(ctx.attempt, self.index, checkpoint);
        Ok(OperatorSnapshot::Keyed(pending))
    }
}
