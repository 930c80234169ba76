//! Checkpoint storage: where completed checkpoints live, in Flink's layout for filesystem storage:
//!
//! ```text
//! <dir>/<job-id>/chk-<n>/counter-<i>   one file per keyed subtask
//! <dir>/<job-id>/chk-<n>/_metadata     written last, atomically (temp, fsync, rename)
//! <dir>/<job-id>/shared/               (incremental backends)
//! <dir>/<job-id>/taskowned/
//! ```
//! A checkpoint directory without `_metadata` is not a checkpoint.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{SnapshotTarget, StateError, StateHandle};
use crate::cluster::element::Origin;
use crate::config::{CheckpointMode, StorageKind};

/// What `_metadata` holds: enough to restore the job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMetadata {
    pub job_id: String,
    pub checkpoint: u64,
    pub mode: CheckpointMode,
    /// Source offsets: partition -> next offset to read.
    pub offsets: Vec<(u32, u64)>,
    /// Keyed state handles, one per counter subtask.
    pub keyed: Vec<StateHandle>,
    /// Transactional sink output staged for this checkpoint (committed when it completes).
    pub staged_output: Vec<StagedLine>,
}

/// A sink line waiting for its checkpoint to complete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StagedLine {
    pub value: String,
    pub count: u64,
    pub origin: Origin,
}

/// Where snapshots are written.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    pub kind: StorageKind,
    /// `<dir>/<job-id>` for filesystem storage.
    pub job_dir: Option<PathBuf>,
    pub max_memory_size: u64,
    /// The newest completed checkpoint (0: none), shared with every task's copy.
    last_completed: Arc<AtomicU64>,
}

impl CheckpointStorage {
    pub fn new(kind: StorageKind, dir: &Path, job_id: &str, max_memory_size: u64) -> Self {
        let job_dir = (kind == StorageKind::Filesystem).then(|| dir.join(job_id));
        CheckpointStorage { kind, job_dir, max_memory_size, last_completed: Arc::new(AtomicU64::new(0)) }
    }

    /// The same storage with another kind (the backend was switched while the job ran).
    pub fn with_kind(&self, kind: StorageKind, dir: &Path, job_id: &str, max_memory_size: u64) -> Self {
        CheckpointStorage { last_completed: self.last_completed.clone(), ..Self::new(kind, dir, job_id, max_memory_size) }
    }

    /// Tells the tasks' snapshots which checkpoint completed last.
    pub fn completed(&self, checkpoint: u64) {
        self.last_completed.fetch_max(checkpoint, Ordering::AcqRel);
    }

    fn chk_dir(&self, checkpoint: u64) -> Option<PathBuf> {
        self.job_dir.as_ref().map(|d| d.join(format!("chk-{checkpoint}")))
    }

    /// Creates the checkpoint's directory (filesystem) and says where each task writes.
    pub fn prepare(&self, checkpoint: u64) -> Result<(), StateError> {
        if let (Some(job_dir), Some(chk)) = (&self.job_dir, self.chk_dir(checkpoint)) {
            for d in [job_dir.join("shared"), job_dir.join("taskowned"), chk.clone()] {
                std::fs::create_dir_all(&d).map_err(|e| StateError::Write { path: d.display().to_string(), message: e.to_string() })?;
            }
        }
        Ok(())
    }

    pub fn target(&self, checkpoint: u64, file_stem: &str, key_groups: Range<u16>) -> SnapshotTarget {
        let last = self.last_completed.load(Ordering::Acquire);
        SnapshotTarget {
            checkpoint,
            storage: self.kind,
            dir: self.chk_dir(checkpoint),
            file_stem: file_stem.to_string(),
            max_memory_size: self.max_memory_size,
            key_groups,
            last_completed: (last > 0).then_some(last),
        }
    }

    /// Writes `_metadata` atomically; returns its size (0 for jobmanager storage).
    pub fn write_metadata(&self, meta: &CheckpointMetadata) -> Result<u64, StateError> {
        let Some(chk) = self.chk_dir(meta.checkpoint) else { return Ok(0) };
        let bytes = serde_json::to_vec_pretty(meta).expect("metadata serializes");
        let tmp = chk.join("_metadata.inprogress");
        let fin = chk.join("_metadata");
        let err = |p: &Path, e: std::io::Error| StateError::Write { path: p.display().to_string(), message: e.to_string() };
        let mut f = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| err(&tmp, e))?;
        f.sync_all().map_err(|e| err(&tmp, e))?;
        std::fs::rename(&tmp, &fin).map_err(|e| err(&fin, e))?;
        Ok(bytes.len() as u64)
    }

    /// Removes a checkpoint no longer retained (or one that failed): its exclusive files. Shared
    /// files are the [`super::shared::SharedStateRegistry`]'s.
    pub fn discard(&self, checkpoint: u64) {
        if let Some(chk) = self.chk_dir(checkpoint) {
            // A leftover directory is harmless: without _metadata it is never restored.
            let _ = std::fs::remove_dir_all(chk);
        }
    }

    /// Reads a retained checkpoint's metadata back (`--restore`, tests).
    pub fn read_metadata(chk_dir: &Path) -> Result<CheckpointMetadata, StateError> {
        let path = chk_dir.join("_metadata");
        let bytes = std::fs::read(&path).map_err(|e| StateError::Read { path: path.display().to_string(), message: e.to_string() })?;
        serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt { path: path.display().to_string(), message: e.to_string() })
    }
}
