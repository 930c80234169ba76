//! The counter, the seed's StatefulMapper: one count per key in keyed state; for each record it
//! adds one and emits `(record, count)`. An [`Operator`] run by the operator runner.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use super::element::Record;
use super::operator::{OpenError, Operator, OperatorSnapshot};
use super::task::TaskContext;
use crate::audit::AppliedBatch;
use crate::state::{KeyedStateBackend, StateError, StateHandle};

/// The counts a job started with when it was restored from a snapshot of another run
/// (`--restore`): the auditor never saw the records behind them, so it judges from the restored
/// point on, as if those counts were zero (the verdict's scope). Filled by the counters that
/// restore that snapshot; later restores of the same job (failovers) read their key groups' share.
#[derive(Debug, Default)]
pub struct AuditBaseline(Mutex<FxHashMap<Arc<str>, u64>>);

impl AuditBaseline {
    fn record(&self, entries: &[(Arc<str>, u64)]) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.extend(entries.iter().cloned());
    }

    fn share(&self, key_groups: &Range<u16>) -> FxHashMap<Arc<str>, u64> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().filter(|(k, _)| key_groups.contains(&crate::keygroup::key_group(k))).map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Keys and the total of their restored counts.
    pub fn totals(&self) -> (usize, u64) {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (m.len(), m.values().sum())
    }
}

/// How a counter relates to a restore from another run's snapshot.
#[derive(Debug, Clone)]
pub struct AuditScope {
    pub baseline: Arc<AuditBaseline>,
    /// This attempt restores that snapshot itself: what it reads is the baseline.
    pub records_baseline: bool,
}

pub struct Counter {
    pub index: usize,
    pub key_groups: Range<u16>,
    pub backend: Box<dyn KeyedStateBackend>,
    /// The checkpoint the task was deployed with, and its keyed state handles.
    pub restore: Option<(u64, Vec<StateHandle>)>,
    /// Records applied since the auditor last heard (this buffer's), their keys by the backend's
    /// key ids: the auditor settles ranges once per partition of a buffer, keys by id.
    applied: AppliedBatch,
    /// Set when the job was restored from another run's snapshot.
    audit_scope: Option<AuditScope>,
    /// This subtask's share of the baseline, subtracted from what the auditor hears.
    base: FxHashMap<Arc<str>, u64>,
}

impl Counter {
    pub fn new(
        index: usize,
        key_groups: Range<u16>,
        backend: Box<dyn KeyedStateBackend>,
        restore: Option<(u64, Vec<StateHandle>)>,
    ) -> Self {
        Counter { index, key_groups, backend, restore, applied: AppliedBatch::default(), audit_scope: None, base: FxHashMap::default() }
    }

    /// The job was restored from another run's snapshot: the auditor hears counts above it.
    pub fn with_audit_scope(mut self, scope: Option<AuditScope>) -> Self {
        self.audit_scope = scope;
        self
    }

    fn above_base(&self, key: &str, count: u64) -> u64 {
        count.saturating_sub(self.base.get(key).copied().unwrap_or(0))
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
            let mut entries = self.backend.entries().map_err(|e| OpenError::Failed(format!("state backend error: {e}")))?;
            if let Some(scope) = &self.audit_scope {
                if scope.records_baseline {
                    scope.baseline.record(&entries);
                    // What this subtask restored is its share: no pass over the whole baseline.
                    self.base = entries.iter().cloned().collect();
                } else {
                    self.base = scope.baseline.share(&self.key_groups);
                }
                for (k, v) in entries.iter_mut() {
                    *v = self.above_base(k, *v);
                }
                entries.retain(|(_, v)| *v > 0);
            }
            ctx.auditor.restored(ctx.attempt, self.index, entries);
        }
        Ok(())
    }

    #[inline]
    fn process(&mut self, ctx: &TaskContext, mut r: Record) -> Result<Option<Record>, StateError> {
        let count = if ctx.auditor.enabled() {
            // The key's id comes with the backend's own lookup: the auditor finds the key's
            // figures by it, with no second hash lookup of the key.
            let (count, id) = self.backend.increment_with_id(&r.key)?;
            let heard = if self.base.is_empty() { count } else { self.above_base(&r.key, count) };
            self.applied.push(r.origin, id, heard);
            count
        } else {
            self.backend.increment(&r.key)?
        };
        r.count = count;
        Ok(Some(r))
    }

    fn end_of_batch(&mut self, ctx: &TaskContext) {
        if !self.applied.is_empty() {
            ctx.auditor.applied_batch(ctx.attempt, self.index, &mut self.applied, self.backend.key_ids());
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
