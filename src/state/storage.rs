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

/// The file that makes a directory a checkpoint.
pub const METADATA: &str = "_metadata";
/// `_metadata` while it is being written.
const METADATA_IN_PROGRESS: &str = "_metadata.inprogress";

/// The `chk-<n>` directories of a job directory.
fn checkpoint_dirs(job_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(job_dir) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("chk-")) && e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Cleans the job directories under `dir` left by ckptlab processes that are gone: unfinished
/// `_metadata.inprogress` files, checkpoint directories without `_metadata` (never complete, or
/// half discarded), and shared files that no remaining `_metadata` references. Completed
/// checkpoints stay. Returns what was removed.
pub fn sweep_abandoned(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for job in entries.flatten() {
        let job_dir = job.path();
        let mine = std::fs::symlink_metadata(&job_dir).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.is_dir() && m.uid() == crate::workdir::uid()
        });
        if !mine || !crate::workdir::left_by_dead_process(&job_dir) {
            continue;
        }
        let mut referenced = std::collections::HashSet::new();
        // A `_metadata` that cannot be read is kept as it is, and so is every shared file then.
        let mut all_read = true;
        for chk in checkpoint_dirs(&job_dir) {
            let _ = std::fs::remove_file(chk.join(METADATA_IN_PROGRESS));
            if !chk.join(METADATA).exists() {
                if crate::workdir::remove_tree_under(&job_dir, &chk).is_ok() {
                    removed.push(chk);
                }
                continue;
            }
            match CheckpointStorage::read_metadata(&chk) {
                Ok(meta) => referenced.extend(meta.keyed.iter().flat_map(StateHandle::shared_files).cloned()),
                Err(_) => all_read = false,
            }
        }
        let shared = job_dir.join("shared");
        if let (true, Ok(files)) = (all_read, std::fs::read_dir(&shared)) {
            for f in files.flatten().map(|f| f.path()) {
                if !referenced.contains(&f) && std::fs::remove_file(&f).is_ok() {
                    removed.push(f);
                }
            }
        }
    }
    removed
}

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
    /// Transactional sink output staged up to this checkpoint and not committed when it was
    /// taken, each line with its transaction's checkpoint (committed on completion, or on restore).
    pub staged_output: Vec<StagedLine>,
    /// Unaligned checkpoints: the in-flight records each task persisted, replayed on restore.
    #[serde(default)]
    pub channel_state: Vec<TaskChannelState>,
}

/// One task's persisted in-flight records (unaligned checkpoints), in arrival order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskChannelState {
    pub task: crate::cluster::task::TaskId,
    pub records: Vec<crate::cluster::task::PersistedRecord>,
}

/// A sink line waiting for its checkpoint to complete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StagedLine {
    pub value: String,
    pub count: u64,
    pub origin: Origin,
    /// The checkpoint whose transaction holds the line (0 until it is staged).
    #[serde(default)]
    pub checkpoint: u64,
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
            let fresh = !job_dir.exists();
            for d in [job_dir.join("shared"), job_dir.join("taskowned"), chk.clone()] {
                std::fs::create_dir_all(&d).map_err(|e| StateError::Write { path: d.display().to_string(), message: e.to_string() })?;
            }
            if fresh {
                // So that a later run can tell this job's leftovers once this process is gone.
                crate::workdir::mark_owner(job_dir)
                    .map_err(|e| StateError::Write { path: job_dir.display().to_string(), message: e.to_string() })?;
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
        let tmp = chk.join(METADATA_IN_PROGRESS);
        let fin = chk.join(METADATA);
        let err = |p: &Path, e: std::io::Error| StateError::Write { path: p.display().to_string(), message: e.to_string() };
        let mut f = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| err(&tmp, e))?;
        f.sync_all().map_err(|e| err(&tmp, e))?;
        std::fs::rename(&tmp, &fin).map_err(|e| err(&fin, e))?;
        // The rename is durable only once the directory is synced.
        if let Ok(dir) = std::fs::File::open(&chk) {
            let _ = dir.sync_all();
        }
        Ok(bytes.len() as u64)
    }

    /// Removes a checkpoint no longer retained (or one that failed): its exclusive files. Shared
    /// files are the [`super::shared::SharedStateRegistry`]'s.
    pub fn discard(&self, checkpoint: u64) {
        if let (Some(job_dir), Some(chk)) = (&self.job_dir, self.chk_dir(checkpoint)) {
            // `_metadata` goes first: a process killed halfway leaves a directory that no longer
            // looks like a checkpoint, never a `_metadata` that names deleted files.
            let _ = std::fs::remove_file(chk.join(METADATA));
            let _ = crate::workdir::remove_tree_under(job_dir, &chk);
        }
    }

    /// The job is over and its checkpoints are not retained: the whole job directory goes, its
    /// checkpoints' `_metadata` files first.
    pub fn discard_job(&self) {
        let Some(job_dir) = &self.job_dir else { return };
        for chk in checkpoint_dirs(job_dir) {
            let _ = std::fs::remove_file(chk.join(METADATA));
        }
        if let Some(root) = job_dir.parent() {
            let _ = crate::workdir::remove_tree_under(root, job_dir);
        }
    }

    /// Whether every shared file that `handles` reference is on disk with its recorded size: a
    /// checkpoint referencing a missing file must not complete (its restore would fail).
    pub fn check_shared_files(handles: &[StateHandle]) -> Result<(), StateError> {
        for h in handles {
            if let StateHandle::RocksDb { files, .. } = h {
                for f in files.iter().filter(|f| f.shared) {
                    match std::fs::metadata(&f.path) {
                        Ok(m) if m.len() == f.size => {}
                        Ok(m) => {
                            return Err(StateError::Corrupt {
                                path: f.path.display().to_string(),
                                message: format!("shared file has {} bytes where the snapshot recorded {}", m.len(), f.size),
                            })
                        }
                        Err(e) => {
                            return Err(StateError::Read {
                                path: f.path.display().to_string(),
                                message: format!("shared file referenced by the checkpoint: {e}"),
                            })
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads a retained checkpoint's metadata back (`--restore`, tests).
    pub fn read_metadata(chk_dir: &Path) -> Result<CheckpointMetadata, StateError> {
        let path = chk_dir.join(METADATA);
        let bytes = std::fs::read(&path).map_err(|e| StateError::Read { path: path.display().to_string(), message: e.to_string() })?;
        serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt { path: path.display().to_string(), message: e.to_string() })
    }
}
