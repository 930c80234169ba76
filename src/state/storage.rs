//! Checkpoint storage: where completed checkpoints live, in Flink's layout for filesystem storage:
//!
//! ```text
//! <dir>/<job-id>/chk-<n>/counter-<i>   one file per keyed subtask
//! <dir>/<job-id>/chk-<n>/_metadata     written last, atomically (temp, fsync, rename)
//! <dir>/<job-id>/shared/               (incremental backends)
//! <dir>/<job-id>/taskowned/
//! ```
//! A checkpoint directory without `_metadata` is not a checkpoint.
//!
//! Savepoints (self-contained, no reference to a shared file; canonical or native format) go to
//! `<execution.checkpointing.savepoint-dir>/savepoint-<job6>-<random12>/`, each subtask's state in
//! a file or directory beside `_metadata`, as Flink lays them out; ckptlab never deletes one.
//! What a job was (name, parallelism, key-by, topic) is in `_metadata` too, so that a restore
//! into an incompatible job fails with a reason ([`check_compatible`]) instead of wrong counts.
//!
//! Filesystem storage can be made as slow and unreliable as an object store
//! (`ckptlab.storage.*`, [`ObjectStore`]): files are still written to the local disk, and each
//! upload then costs what a request to S3 would, may fail with an IO error, and waits for the
//! throttling limit. Simplified on purpose: the cost is paid after the local write (on the
//! engine's clock, so a paused clock pays it too), a failed request is not retried (an S3
//! client's retries are folded into the failure rate), and throttling queues requests instead of
//! answering 503 SlowDown.

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{SavepointFormat, SnapshotTarget, StateError, StateHandle};
use crate::config::{StorageBehaviour, StorageKind};
use crate::types::{CheckpointMode, Origin, PersistedRecord, TaskId};

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

/// Writes `bytes` as `name` in `dir` whole: into `NAME.inprogress`, synced, then renamed (a
/// crash leaves the old file or none, never half of one).
fn write_whole(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = dir.join(format!("{name}.inprogress"));
    let fin = dir.join(name);
    let err = |p: &Path, e: std::io::Error| StateError::Write { path: p.display().to_string(), message: e.to_string() };
    let _ = crate::workdir::remove_file_under(dir, &tmp);
    let mut f = crate::workdir::create_private_file(&tmp).map_err(|e| err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| err(&tmp, e))?;
    f.sync_all().map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, &fin).map_err(|e| err(&fin, e))?;
    Ok(())
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
            let _ = crate::workdir::remove_file_under(&job_dir, &chk.join(METADATA_IN_PROGRESS));
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
                if !referenced.contains(&f) && crate::workdir::remove_file_under(&shared, &f).is_ok() {
                    removed.push(f);
                }
            }
        }
    }
    removed
}

/// A checkpoint or a savepoint (Flink's `CheckpointType` as far as a restore cares).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SnapshotKind {
    #[default]
    Checkpoint,
    /// Canonical and self-contained; taken on request, never used for failover, never deleted.
    Savepoint,
}

impl SnapshotKind {
    pub fn label(self) -> &'static str {
        match self {
            SnapshotKind::Checkpoint => "checkpoint",
            SnapshotKind::Savepoint => "savepoint",
        }
    }
}

impl CheckpointMetadata {
    /// The snapshot's format: a savepoint's as recorded, else native (a checkpoint is always in
    /// its backend's own format; so is a savepoint of a ckptlab before canonical savepoints).
    pub fn format(&self) -> SavepointFormat {
        self.format.unwrap_or(SavepointFormat::Native)
    }

    /// "checkpoint", "canonical savepoint", "native savepoint".
    pub fn what(&self) -> String {
        match self.kind {
            SnapshotKind::Checkpoint => "checkpoint".into(),
            SnapshotKind::Savepoint => format!("{} savepoint", self.format().name()),
        }
    }
}

/// The snapshot format this ckptlab writes and reads. 2: keys are in Flink's key groups
/// (`murmurHash(String.hashCode()) % max parallelism`, src/keygroup.rs); 1 (no
/// `format_version` in `_metadata`): ckptlab's earlier FNV-based key groups, which put keys on
/// other groups and subtasks, so such a snapshot is refused, not restored onto the wrong ones.
pub const FORMAT_VERSION: u32 = 2;

fn format_version_1() -> u32 {
    1
}

/// The job a snapshot belongs to, as far as restoring it elsewhere must agree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobShape {
    /// The snapshot format (`FORMAT_VERSION` when written; 1 when `_metadata` has none).
    #[serde(default = "format_version_1")]
    pub format_version: u32,
    pub name: String,
    /// The counter's parallelism when the snapshot was taken (the key groups' owners).
    pub parallelism: usize,
    /// Key groups (Flink's max parallelism): a restore needs the same number.
    pub max_parallelism: u16,
    pub key_by: crate::config::KeyBy,
    pub topic: String,
    pub partitions: u32,
    /// `state.backend.type` that wrote it (a restore into the other one needs a canonical
    /// savepoint).
    pub backend: crate::config::BackendKind,
}

impl JobShape {
    pub fn of(cfg: &crate::config::Config, partitions: u32) -> Self {
        JobShape {
            format_version: FORMAT_VERSION,
            name: cfg.job.name.clone(),
            parallelism: cfg.job.parallelism,
            max_parallelism: cfg.job.max_parallelism,
            key_by: cfg.job.key_by,
            topic: cfg.source.topic.clone(),
            partitions,
            backend: cfg.backend,
        }
    }
}

/// What `_metadata` holds: enough to restore the job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMetadata {
    pub job_id: String,
    pub checkpoint: u64,
    /// Checkpoint or savepoint (older metadata: a checkpoint).
    #[serde(default)]
    pub kind: SnapshotKind,
    /// A savepoint's format (`None`: a checkpoint, or a savepoint of a ckptlab before canonical
    /// savepoints, whose files are its backend's own: native).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<SavepointFormat>,
    /// Wall-clock time it completed, milliseconds since the Unix epoch (0: unknown).
    #[serde(default)]
    pub completed_at_ms: u64,
    /// The job that took it (`None` in metadata of ckptlab before issue 14).
    #[serde(default)]
    pub job: Option<JobShape>,
    pub mode: CheckpointMode,
    /// Source offsets: partition -> next offset to read.
    pub offsets: Vec<(u32, u64)>,
    /// Keyed state handles, one per counter subtask.
    pub keyed: Vec<StateHandle>,
    /// Transactional sink output staged up to this checkpoint and not committed when it was
    /// taken, each line with its transaction's checkpoint (committed on completion, or on restore).
    pub staged_output: Vec<StagedLine>,
    /// The Kafka sink's committables and writer state (exactly-once; issue 23).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_sink: Option<crate::connectors::kafka_sink::KafkaSinkState>,
    /// Unaligned checkpoints: the in-flight records each task persisted, replayed on restore.
    #[serde(default)]
    pub channel_state: Vec<TaskChannelState>,
}

/// One task's persisted in-flight records (unaligned checkpoints), in arrival order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskChannelState {
    pub task: TaskId,
    pub records: Vec<PersistedRecord>,
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

/// Checkpoint storage's behaviour as an object store, shared by every task's uploads and the
/// JobManager's `_metadata` writes, changed while the job runs (`ckptlab.storage.*`).
#[derive(Debug)]
pub struct ObjectStore {
    behaviour: Mutex<StorageBehaviour>,
    /// When the next request may start under the throttling limit.
    next_start: Mutex<Option<tokio::time::Instant>>,
    requests: AtomicU64,
    failures: AtomicU64,
}

impl Default for ObjectStore {
    fn default() -> Self {
        ObjectStore {
            behaviour: Mutex::new(StorageBehaviour::default()),
            next_start: Mutex::new(None),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

/// How many uploads of one snapshot run at once: Flink's
/// `state.backend.rocksdb.checkpoint.transfer.thread.num`, 4 by default (RocksDBOptions.java:84-88).
pub const UPLOAD_THREADS: usize = 4;

impl ObjectStore {
    pub fn set(&self, behaviour: StorageBehaviour) {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = behaviour;
    }

    pub fn behaviour(&self) -> StorageBehaviour {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests made and failed so far (the run's, across backend switches).
    pub fn counts(&self) -> (u64, u64) {
        (self.requests.load(Ordering::Relaxed), self.failures.load(Ordering::Relaxed))
    }

    /// One request: waits its turn under the throttling limit, takes its latency, then may fail.
    /// The behaviour is read when the request starts, so a change applies to the next requests.
    pub async fn request(&self, what: &str, bytes: u64) -> Result<(), StateError> {
        let b = self.behaviour();
        if let Some(rps) = b.requests_per_second.filter(|r| *r > 0) {
            let start = {
                let mut next = self.next_start.lock().unwrap_or_else(|e| e.into_inner());
                let now = tokio::time::Instant::now();
                let start = next.map_or(now, |n| n.max(now));
                *next = Some(start + Duration::from_secs_f64(1.0 / f64::from(rps)));
                start
            };
            tokio::time::sleep_until(start).await;
        }
        tokio::time::sleep(b.request_cost(bytes)).await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        if self.fails(b.failure_rate) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Err(StateError::Storage {
                request: format!("{what} ({})", crate::duration::format_size(bytes)),
                why: format!("IO error (ckptlab.storage.failure-rate = {})", b.failure_rate),
            });
        }
        Ok(())
    }

    /// The uploads of one snapshot, `UPLOAD_THREADS` at a time: the first failure fails it.
    pub async fn upload(&self, uploads: &[u64]) -> Result<(), StateError> {
        use futures::stream::TryStreamExt;
        let n = uploads.len();
        futures::stream::iter(uploads.iter().enumerate().map(Ok))
            .try_for_each_concurrent(UPLOAD_THREADS, |(i, bytes)| async move {
                self.request(&format!("upload {} of {n}", i + 1), *bytes).await
            })
            .await
    }

    /// The `_metadata` write: one request that may fail, with no latency (the JobManager writes
    /// it in its own loop; simplified on purpose).
    fn metadata_write(&self, bytes: u64) -> Result<(), StateError> {
        let b = self.behaviour();
        self.requests.fetch_add(1, Ordering::Relaxed);
        if self.fails(b.failure_rate) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Err(StateError::Storage {
                request: format!("{METADATA} write ({})", crate::duration::format_size(bytes)),
                why: format!("IO error (ckptlab.storage.failure-rate = {})", b.failure_rate),
            });
        }
        Ok(())
    }

    fn fails(&self, rate: f64) -> bool {
        rate > 0.0 && (rate >= 1.0 || rand::random::<f64>() < rate)
    }
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
    /// `execution.checkpointing.savepoint-dir`.
    pub savepoint_dir: PathBuf,
    /// Savepoints in progress: checkpoint id -> their directory and format (read by the tasks'
    /// snapshots).
    savepoints: Arc<Mutex<HashMap<u64, (PathBuf, SavepointFormat)>>>,
    /// How slow and unreliable it is (`ckptlab.storage.*`); filesystem storage only.
    object_store: Arc<ObjectStore>,
}

impl CheckpointStorage {
    pub fn new(kind: StorageKind, dir: &Path, job_id: &str, max_memory_size: u64) -> Self {
        let job_dir = (kind == StorageKind::Filesystem).then(|| dir.join(job_id));
        CheckpointStorage {
            kind,
            job_dir,
            max_memory_size,
            last_completed: Arc::new(AtomicU64::new(0)),
            savepoint_dir: crate::workdir::home().join("savepoints"),
            savepoints: Arc::default(),
            object_store: Arc::default(),
        }
    }

    /// Storage that behaves as `behaviour` says from now on.
    pub fn with_behaviour(self, behaviour: StorageBehaviour) -> Self {
        self.object_store.set(behaviour);
        self
    }

    /// The object store every upload to this storage goes through.
    pub fn object_store(&self) -> &Arc<ObjectStore> {
        &self.object_store
    }

    /// Savepoints go below `dir` (`execution.checkpointing.savepoint-dir`).
    pub fn with_savepoint_dir(mut self, dir: &Path) -> Self {
        self.savepoint_dir = dir.to_path_buf();
        self
    }

    /// The same storage with another kind (the backend was switched while the job ran).
    pub fn with_kind(&self, kind: StorageKind, dir: &Path, job_id: &str, max_memory_size: u64) -> Self {
        CheckpointStorage {
            last_completed: self.last_completed.clone(),
            savepoints: self.savepoints.clone(),
            savepoint_dir: self.savepoint_dir.clone(),
            object_store: self.object_store.clone(),
            ..Self::new(kind, dir, job_id, max_memory_size)
        }
    }

    /// Creates a savepoint's directory, `<savepoint-dir>/savepoint-<job6>-<random12>` as Flink
    /// names them, and makes checkpoint `checkpoint`'s snapshots go there in `format`.
    pub fn begin_savepoint(&self, checkpoint: u64, job_id: &str, format: SavepointFormat) -> Result<PathBuf, StateError> {
        let err = |p: &Path, e: std::io::Error| StateError::Write {
            path: format!("execution.checkpointing.savepoint-dir = {}", p.display()),
            message: e.to_string(),
        };
        crate::workdir::create_private_dirs(&self.savepoint_dir).map_err(|e| err(&self.savepoint_dir, e))?;
        let name = format!("savepoint-{}-{:012x}", &job_id[..6.min(job_id.len())], rand::random::<u64>() & 0xffff_ffff_ffff);
        let dir = self.savepoint_dir.join(name);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| err(&dir, e))?;
        }
        self.savepoints.lock().unwrap_or_else(|e| e.into_inner()).insert(checkpoint, (dir.clone(), format));
        Ok(dir)
    }

    /// The directory of savepoint `checkpoint`, while it is in progress.
    pub fn savepoint_location(&self, checkpoint: u64) -> Option<PathBuf> {
        self.savepoints.lock().unwrap_or_else(|e| e.into_inner()).get(&checkpoint).map(|(d, _)| d.clone())
    }

    /// The format of savepoint `checkpoint`, while it is in progress.
    pub fn savepoint_format(&self, checkpoint: u64) -> Option<SavepointFormat> {
        self.savepoints.lock().unwrap_or_else(|e| e.into_inner()).get(&checkpoint).map(|(_, f)| *f)
    }

    /// The savepoint completed (its files stay, forever) or failed (`discard`: its directory goes).
    pub fn end_savepoint(&self, checkpoint: u64, discard: bool) {
        let dir = self.savepoints.lock().unwrap_or_else(|e| e.into_inner()).remove(&checkpoint).map(|(d, _)| d);
        if let (true, Some(dir)) = (discard, dir) {
            let _ = crate::workdir::remove_file_under(&self.savepoint_dir, &dir.join(METADATA));
            let _ = crate::workdir::remove_tree_under(&self.savepoint_dir, &dir);
        }
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
                crate::workdir::create_private_dirs(&d)
                    .map_err(|e| StateError::Write { path: d.display().to_string(), message: e.to_string() })?;
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
        if let Some((dir, format)) = self.savepoints.lock().unwrap_or_else(|e| e.into_inner()).get(&checkpoint).cloned() {
            // Self-contained: every file in the savepoint's own directory, whatever the storage.
            return SnapshotTarget {
                checkpoint,
                storage: StorageKind::Filesystem,
                dir: Some(dir),
                file_stem: file_stem.to_string(),
                max_memory_size: self.max_memory_size,
                key_groups,
                last_completed: None,
                savepoint: Some(format),
            };
        }
        let last = self.last_completed.load(Ordering::Acquire);
        SnapshotTarget {
            savepoint: None,
            checkpoint,
            storage: self.kind,
            dir: self.chk_dir(checkpoint),
            file_stem: file_stem.to_string(),
            max_memory_size: self.max_memory_size,
            key_groups,
            last_completed: (last > 0).then_some(last),
        }
    }

    /// Writes `_metadata` atomically, every path in it relative to the snapshot's directory
    /// (exclusive files) or to its job's `shared/` (incremental RocksDB files), so that a moved
    /// or copied snapshot reads its own files; returns its size (0 for jobmanager storage).
    pub fn write_metadata(&self, meta: &CheckpointMetadata) -> Result<u64, StateError> {
        let Some(chk) = self.location(meta.checkpoint) else { return Ok(0) };
        let relative = relativize(meta, &chk)?;
        let bytes = serde_json::to_vec_pretty(&relative).expect("metadata serializes");
        self.object_store.metadata_write(bytes.len() as u64)?;
        write_whole(&chk, METADATA, &bytes)?;
        // The rename is durable only once the directory is synced.
        if let Ok(dir) = std::fs::File::open(&chk) {
            let _ = dir.sync_all();
        }
        Ok(bytes.len() as u64)
    }

    /// The directory of a checkpoint or savepoint, if it has one (not with jobmanager storage,
    /// where a checkpoint lives in memory).
    pub fn location(&self, checkpoint: u64) -> Option<PathBuf> {
        self.savepoint_location(checkpoint).or_else(|| self.chk_dir(checkpoint))
    }

    /// Writes `bytes` as `name` in the directory of `checkpoint` (a checkpoint's or savepoint's),
    /// durably and whole: a file beside the state that is not state (the auditor's record,
    /// ckptlab's own: not a request to the modelled checkpoint storage, whose latency and
    /// failures are Flink's files'). Returns its size.
    pub fn write_side_file(&self, checkpoint: u64, name: &str, bytes: &[u8]) -> Result<u64, StateError> {
        let Some(chk) = self.location(checkpoint) else { return Ok(0) };
        write_whole(&chk, name, bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Removes a checkpoint no longer retained (or one that failed): its exclusive files. Shared
    /// files are the [`super::shared::SharedStateRegistry`]'s.
    pub fn discard(&self, checkpoint: u64) {
        if let (Some(job_dir), Some(chk)) = (&self.job_dir, self.chk_dir(checkpoint)) {
            // `_metadata` goes first: a process killed halfway leaves a directory that no longer
            // looks like a checkpoint, never a `_metadata` that names deleted files.
            let _ = crate::workdir::remove_file_under(job_dir, &chk.join(METADATA));
            let _ = crate::workdir::remove_tree_under(job_dir, &chk);
        }
    }

    /// The job is over and its retained checkpoints stay (`externalized-checkpoint-retention`):
    /// everything else of the job directory goes: directories of checkpoints that never completed,
    /// shared files none of `kept` references. Returns the kept checkpoints' directories.
    pub fn keep_retained(&self, kept: &[CheckpointMetadata]) -> Vec<PathBuf> {
        let Some(job_dir) = &self.job_dir else { return Vec::new() };
        let keep: std::collections::HashSet<PathBuf> = kept.iter().filter_map(|m| self.chk_dir(m.checkpoint)).collect();
        for chk in checkpoint_dirs(job_dir) {
            if !keep.contains(&chk) {
                let _ = crate::workdir::remove_file_under(job_dir, &chk.join(METADATA));
                let _ = crate::workdir::remove_tree_under(job_dir, &chk);
            }
        }
        let referenced: std::collections::HashSet<&PathBuf> =
            kept.iter().flat_map(|m| m.keyed.iter().flat_map(StateHandle::shared_files)).collect();
        let shared = job_dir.join("shared");
        if let Ok(files) = std::fs::read_dir(&shared) {
            for f in files.flatten().map(|f| f.path()) {
                if !referenced.contains(&f) {
                    let _ = crate::workdir::remove_file_under(&shared, &f);
                }
            }
        }
        let mut dirs: Vec<PathBuf> = keep.into_iter().filter(|d| d.join(METADATA).exists()).collect();
        dirs.sort();
        dirs
    }

    /// A checkpoint restored under CLAIM: the job owns it, so its first incremental checkpoint
    /// may reference the restored SST files instead of uploading them again (Flink's CLAIM:
    /// "Flink will take ownership of the given snapshot", RecoveryClaimMode.java:33, and the
    /// RocksDB backend starts from the restored SST files and checkpoint id,
    /// RocksDBKeyedStateBackendBuilder.java:401-404; only NO_CLAIM forces the first checkpoint
    /// full, CheckpointCoordinator.java:1800 + :1753-1757). Simplified: Flink references the
    /// files where they lie; ckptlab hard-links each into this job's `shared/` (its `_metadata`
    /// paths are relative to it) and points `meta`'s handles there, so no byte is copied. A file
    /// that cannot be linked (another file system) keeps its path and is uploaded again.
    /// Returns the adopted files.
    pub fn adopt_claimed_shared(&self, meta: &mut CheckpointMetadata) -> Vec<PathBuf> {
        let Some(job_dir) = &self.job_dir else { return Vec::new() };
        if meta.kind != SnapshotKind::Checkpoint {
            return Vec::new();
        }
        let shared = job_dir.join("shared");
        let fresh = !job_dir.exists();
        if crate::workdir::create_private_dirs(&shared).is_err() {
            return Vec::new();
        }
        if fresh {
            let _ = crate::workdir::mark_owner(job_dir);
        }
        let mut adopted = Vec::new();
        for h in &mut meta.keyed {
            for f in h.files_mut().iter_mut().filter(|f| f.shared && !f.path.starts_with(&shared)) {
                let Some(name) = f.path.file_name() else { continue };
                let to = shared.join(name);
                if to.exists() || std::fs::hard_link(&f.path, &to).is_ok() {
                    f.path = to.clone();
                    adopted.push(to);
                }
            }
        }
        adopted
    }

    /// Deletes a snapshot the job claimed (`execution.state-recovery.claim-mode = CLAIM`) once
    /// newer checkpoints subsumed it, wherever it lies: as Flink discards a claimed snapshot, its
    /// `_metadata` first, then each exclusive file its handles name (all below `dir`: refused
    /// otherwise when it was read), then its directories only when empty (Flink's
    /// disposeStorageLocation deletes the exclusive directory non-recursively). Files in another
    /// job's `shared/` stay. Every path comes from `_metadata`, read long before: each is deleted
    /// only below `dir` and through real directories ([`crate::workdir::remove_file_under`]), so a
    /// handle naming a file elsewhere, or a directory swapped for a link since, deletes nothing
    /// outside. Returns whether the directory is gone.
    pub fn discard_claimed(dir: &Path, meta: &CheckpointMetadata) -> bool {
        // Not a snapshot (any more): nothing of it is deleted.
        let metadata = dir.join(METADATA);
        if std::fs::symlink_metadata(&metadata).is_err() || crate::workdir::remove_file_under(dir, &metadata).is_err() {
            return false;
        }
        // The auditor's record beside it (not state: no handle names it).
        let _ = crate::workdir::remove_file_under(dir, &dir.join(crate::audit::RECORD_FILE));
        let mut dirs = Vec::new();
        for h in &meta.keyed {
            match h {
                StateHandle::Memory { .. } => {}
                StateHandle::File { path, .. } | StateHandle::Canonical { path, .. } => {
                    let _ = crate::workdir::remove_file_under(dir, path);
                }
                StateHandle::RocksDb { dir: exclusive, files, .. } => {
                    for f in files.iter().filter(|f| !f.shared) {
                        let _ = crate::workdir::remove_file_under(dir, &f.path);
                    }
                    dirs.push(exclusive.clone());
                }
            }
        }
        for d in dirs {
            let _ = crate::workdir::remove_empty_dir_under(dir, &d);
        }
        // The claimed directory itself: the path the user restored from, empty by now.
        std::fs::remove_dir(dir).is_ok()
    }

    /// The job is over and its checkpoints are not retained: the whole job directory goes, its
    /// checkpoints' `_metadata` files first.
    pub fn discard_job(&self) {
        let Some(job_dir) = &self.job_dir else { return };
        for chk in checkpoint_dirs(job_dir) {
            let _ = crate::workdir::remove_file_under(job_dir, &chk.join(METADATA));
        }
        if let Some(root) = job_dir.parent() {
            let _ = crate::workdir::remove_tree_under(root, job_dir);
        }
    }

    /// Whether every shared file that `handles` reference is on disk with its recorded size: a
    /// checkpoint referencing a missing file must not complete (its restore would fail).
    pub fn check_shared_files(handles: &[StateHandle]) -> Result<(), StateError> {
        for f in handles.iter().flat_map(|h| h.files()).filter(|f| f.shared) {
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
        Ok(())
    }

    /// Reads a retained checkpoint's or a savepoint's metadata back (`--restore`, `inspect`,
    /// the sweep, tests), every path resolved below `chk_dir` or its job's `shared/`. A handle
    /// that leaves them (an absolute path elsewhere, `..`, a symlink) is refused by name before
    /// any file it names is opened.
    pub fn read_metadata(chk_dir: &Path) -> Result<CheckpointMetadata, StateError> {
        let path = chk_dir.join(METADATA);
        let bytes = std::fs::read(&path).map_err(|e| StateError::Read { path: path.display().to_string(), message: e.to_string() })?;
        let meta: CheckpointMetadata =
            serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt { path: path.display().to_string(), message: e.to_string() })?;
        resolve(meta, chk_dir)
    }
}

/// The job's `shared/` directory of a checkpoint directory `<dir>/<job-id>/chk-<n>`; a savepoint
/// (self-contained, Flink's canonical format) has none.
fn shared_root(snapshot_dir: &Path, kind: SnapshotKind) -> Option<PathBuf> {
    match kind {
        SnapshotKind::Checkpoint => snapshot_dir.parent().map(|job| job.join("shared")),
        SnapshotKind::Savepoint => None,
    }
}

/// `meta` as `_metadata` stores it: exclusive paths relative to `dir`, shared ones relative to
/// the job's `shared/`. Flink writes a savepoint's handles the same way (a
/// RelativeFileStateHandle, MetadataV2V3SerializerBase's RELATIVE_STREAM_STATE_HANDLE, resolved
/// against the directory holding `_metadata` on restore); ckptlab does it for checkpoints too, so
/// that a moved job directory still restores.
fn relativize(meta: &CheckpointMetadata, dir: &Path) -> Result<CheckpointMetadata, StateError> {
    let shared = shared_root(dir, meta.kind);
    let rel = |p: &Path, root: Option<&Path>| -> Result<PathBuf, StateError> {
        root.and_then(|r| p.strip_prefix(r).ok())
            .filter(|r| r.components().all(|c| matches!(c, Component::Normal(_))))
            .map(Path::to_path_buf)
            .ok_or_else(|| StateError::Write {
                path: dir.join(METADATA).display().to_string(),
                message: format!(
                    "{} lies outside the snapshot's directory and its job's shared/: a snapshot names only its own files",
                    p.display()
                ),
            })
    };
    let mut out = meta.clone();
    for h in &mut out.keyed {
        match h {
            StateHandle::Memory { .. } => {}
            StateHandle::File { path, .. } | StateHandle::Canonical { path, .. } => *path = rel(path, Some(dir))?,
            StateHandle::RocksDb { dir: exclusive, files, .. } => {
                *exclusive = rel(exclusive, Some(dir))?;
                for f in files {
                    f.path = if f.shared { rel(&f.path, shared.as_deref())? } else { rel(&f.path, Some(dir))? };
                }
            }
        }
    }
    Ok(out)
}

/// Resolves the paths of `_metadata` read from `dir`: relative ones below their root, absolute
/// ones (ckptlab before issue 20) only when they lie below it already. Nothing is opened: only
/// `lstat` on the way down, so a symlink is seen and refused, never followed.
fn resolve(mut meta: CheckpointMetadata, dir: &Path) -> Result<CheckpointMetadata, StateError> {
    let metadata = dir.join(METADATA).display().to_string();
    let shared = shared_root(dir, meta.kind);
    let refuse = |field: &str, target: &Path, why: String| StateError::Refused {
        metadata: metadata.clone(),
        field: field.to_string(),
        target: target.display().to_string(),
        why,
    };
    let resolve_one = |field: String, given: &Path, root: Option<&Path>, root_name: &str| -> Result<PathBuf, StateError> {
        let Some(root) = root else {
            return Err(refuse(&field, given, "a savepoint is self-contained: it has no shared files".into()));
        };
        let candidate = if given.is_absolute() {
            if !crate::workdir::is_below(root, given) {
                return Err(refuse(&field, given, format!("it lies outside {root_name} {}", root.display())));
            }
            given.to_path_buf()
        } else {
            if given.as_os_str().is_empty() || !given.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(refuse(
                    &field,
                    given,
                    format!("a path in `{METADATA}` is a plain relative path below {root_name} (no `..`, no `.`)"),
                ));
            }
            root.join(given)
        };
        let mut walk = root.to_path_buf();
        for c in candidate.strip_prefix(root).unwrap_or(Path::new("")).components() {
            walk.push(c);
            match std::fs::symlink_metadata(&walk) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refuse(
                        &field,
                        given,
                        format!("{} is a symbolic link; ckptlab follows none out of a snapshot", walk.display()),
                    ))
                }
                Ok(_) => {}
                // A missing file is reported by the state check, with its name.
                Err(_) => break,
            }
        }
        Ok(candidate)
    };
    const OWN: &str = "the snapshot's directory";
    const SHARED: &str = "its job's shared/";
    for (i, h) in meta.keyed.iter_mut().enumerate() {
        match h {
            StateHandle::Memory { .. } => {
                return Err(refuse(&format!("keyed[{i}]"), Path::new("memory"), "jobmanager-memory state is never written to disk".into()))
            }
            StateHandle::File { path, .. } | StateHandle::Canonical { path, .. } => {
                *path = resolve_one(format!("keyed[{i}].path"), path, Some(dir), OWN)?
            }
            StateHandle::RocksDb { dir: exclusive, files, .. } => {
                *exclusive = resolve_one(format!("keyed[{i}].dir"), exclusive, Some(dir), OWN)?;
                for (j, f) in files.iter_mut().enumerate() {
                    if !crate::workdir::plain_name(&f.name).is_some_and(|n| n == f.name) {
                        return Err(refuse(
                            &format!("keyed[{i}].files[{j}].name"),
                            Path::new(&f.name),
                            "a RocksDB file's name is a plain file name".into(),
                        ));
                    }
                    let field = format!("keyed[{i}].files[{j}].path");
                    f.path = if f.shared {
                        resolve_one(field, &f.path, shared.as_deref(), SHARED)?
                    } else {
                        resolve_one(field, &f.path, Some(dir), OWN)?
                    };
                }
            }
        }
    }
    Ok(meta)
}

/// A snapshot found at a path a user gave (`--restore`, `ckptlab inspect`).
#[derive(Debug, Clone)]
pub struct FoundSnapshot {
    /// The directory holding `_metadata`.
    pub dir: PathBuf,
    pub metadata: CheckpointMetadata,
}

/// Why a path cannot be restored or inspected.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum RestoreError {
    #[error("{path}: {message}")]
    NotASnapshot { path: String, message: String },
    #[error("{path}: {error}")]
    Unreadable { path: String, error: StateError },
    #[error("{path} cannot be restored into this job: {reason}")]
    Incompatible { path: String, reason: String },
    /// `_metadata` of another snapshot format (`FORMAT_VERSION`).
    #[error(
        "{path}: snapshot format version {version}, this ckptlab reads version {FORMAT_VERSION} only: version 1 put keys in \
         ckptlab's own (FNV) key groups, version 2 in Flink's (murmurHash(String.hashCode()) % max parallelism), so its keys \
         would be restored onto other subtasks than they are routed to; take a new snapshot with this ckptlab"
    )]
    Format { path: String, version: u32 },
    /// A subtask's state cannot be read: a file missing, of another size, failing its checksum.
    #[error("{dir}: counter[{subtask}]'s state: {error}")]
    State { dir: String, subtask: usize, error: StateError },
    /// A checkpoint or native savepoint of one backend, restored into the other: Flink's reason
    /// ([`StateError::UnexpectedHandle`]) and what to do instead.
    #[error(
        "{path} is a {what} of the {from} backend and cannot be restored into {to} (state.backend.type): {error} \
         (take a canonical savepoint to change backends: `S` in the workbench, or a `savepoint` step with format = \"canonical\", \
         then restore that)"
    )]
    OtherBackend { path: String, what: String, from: &'static str, to: &'static str, error: StateError },
}

/// The number in a `chk-<n>` directory's name.
fn chk_number(dir: &Path) -> Option<u64> {
    dir.file_name()?.to_str()?.strip_prefix("chk-")?.parse().ok()
}

/// Finds the snapshot `path` names: a checkpoint or savepoint directory (with `_metadata`), its
/// `_metadata` file, or a job directory (`<dir>/<job-id>`: its newest complete `chk-<n>`). A
/// directory without `_metadata` is not a snapshot (never complete, or half deleted).
pub fn find_snapshot(path: &Path) -> Result<FoundSnapshot, RestoreError> {
    let shown = path.display().to_string();
    let not = |message: String| RestoreError::NotASnapshot { path: shown.clone(), message };
    let meta = std::fs::metadata(path).map_err(|e| not(e.to_string()))?;
    let dir = if meta.is_file() {
        if path.file_name().and_then(|n| n.to_str()) != Some(METADATA) {
            return Err(not(format!("not a `{METADATA}` file nor a checkpoint or savepoint directory")));
        }
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else if path.join(METADATA).is_file() {
        path.to_path_buf()
    } else {
        let mut complete: Vec<(u64, PathBuf)> =
            checkpoint_dirs(path).into_iter().filter(|d| d.join(METADATA).is_file()).filter_map(|d| Some((chk_number(&d)?, d))).collect();
        complete.sort();
        match complete.pop() {
            Some((_, d)) => d,
            None if path.join(METADATA_IN_PROGRESS).exists() => {
                return Err(not(format!("`{METADATA}` was never completed here: not a checkpoint (its process died while writing it)")))
            }
            None => {
                return Err(not(format!(
                    "no `{METADATA}` here: give a checkpoint directory (chk-<n>), a savepoint directory, or a job directory holding a complete chk-<n>"
                )))
            }
        }
    };
    let metadata =
        CheckpointStorage::read_metadata(&dir).map_err(|error| RestoreError::Unreadable { path: dir.display().to_string(), error })?;
    Ok(FoundSnapshot { dir, metadata })
}

/// Reads every subtask's state of `found`, each file checked first (regular file, recorded
/// size, checksum), and hands it to `each`: what a restore does before the job starts (Flink
/// checks a snapshot at submission), and what `ckptlab inspect` shows.
pub fn read_state(found: &FoundSnapshot, mut each: impl FnMut(usize, &StateHandle, Vec<(u16, String, u64)>)) -> Result<(), RestoreError> {
    for (i, handle) in found.metadata.keyed.iter().enumerate() {
        let entries =
            super::read_handle(handle).map_err(|error| RestoreError::State { dir: found.dir.display().to_string(), subtask: i, error })?;
        each(i, handle, entries);
    }
    Ok(())
}

/// Whether a snapshot taken by `found` can start a job shaped like `now`: the same key-by, the
/// same number of key groups, the same topic, partitions the topic has, and the backend that
/// wrote it unless it is a canonical savepoint. The parallelism may differ (rescaling).
pub fn check_compatible(found: &FoundSnapshot, now: &JobShape) -> Result<(), RestoreError> {
    let incompatible = |reason: String| RestoreError::Incompatible { path: found.dir.display().to_string(), reason };
    let m = &found.metadata;
    let version = m.job.as_ref().map_or(1, |j| j.format_version);
    if version != FORMAT_VERSION {
        let metadata = found.dir.join(METADATA);
        return Err(RestoreError::Format { path: metadata.display().to_string(), version });
    }
    if let Some(then) = &m.job {
        // Flink's checks, StateAssignmentOperation.checkParallelismPreconditions
        // (StateAssignmentOperation.java:735-760 in 2.3): the parallelism first, then the max
        // parallelism. Flink adopts the snapshot's max parallelism when the job left it unset
        // (ExecutionJobVertex.canRescaleMaxParallelism); ckptlab's engine keeps 128 key groups
        // only, so a snapshot with another number is refused either way.
        if now.parallelism > usize::from(then.max_parallelism) {
            return Err(incompatible(format!(
                "The maximum parallelism ({}) of the restored state is lower than the configured parallelism ({}) (job.parallelism). \
                 Please reduce the parallelism of the task to be lower or equal to the maximum parallelism.",
                then.max_parallelism, now.parallelism
            )));
        }
        if then.max_parallelism != now.max_parallelism {
            return Err(incompatible(format!(
                "The maximum parallelism ({}) with which the latest checkpoint of the execution job vertex counter has been taken \
                 and the current maximum parallelism ({}) (job.max-parallelism) changed. This is currently not supported.",
                then.max_parallelism, now.max_parallelism
            )));
        }
        if then.key_by != now.key_by {
            return Err(incompatible(
                format!(
                    "its state is keyed by {:?}, this job by {:?} (job.key-by): the counts would belong to other keys",
                    then.key_by, now.key_by
                )
                .to_lowercase(),
            ));
        }
        if then.topic != now.topic {
            return Err(incompatible(format!(
                "its sources read topic `{}`, this job reads `{}` (source.topic): the offsets would point into another topic",
                then.topic, now.topic
            )));
        }
    }
    // Flink restores a checkpoint or a native savepoint only into the backend that wrote it; a
    // canonical savepoint into any (docs/content/docs/ops/state/checkpoints_vs_savepoints.md,
    // "State backend change"). Told by the handles' own kinds, as Flink's restore operations
    // tell them (instanceof checks), so `_metadata` without a job shape is judged too.
    for h in &m.keyed {
        if let Err(error) = h.check_restorable_by(now.backend) {
            let from: &'static str = h.native_backend().map_or("canonical", <&str>::from);
            return Err(RestoreError::OtherBackend {
                path: found.dir.display().to_string(),
                what: m.what(),
                from,
                to: now.backend.into(),
                error,
            });
        }
    }
    if let Some((p, _)) = m.offsets.iter().find(|(p, _)| *p >= now.partitions) {
        return Err(incompatible(format!("it has offsets for partition {p}; topic `{}` has partitions 0..{}", now.topic, now.partitions)));
    }
    let kg = now.max_parallelism;
    for h in &m.keyed {
        match h {
            StateHandle::RocksDb { key_groups, .. } => {
                if key_groups.end > kg {
                    return Err(incompatible(format!("a RocksDB snapshot holds key groups {key_groups:?}, beyond 0..{kg}")));
                }
            }
            // Their entries are read one by one on restore, each kept only in the key groups
            // its subtask owns.
            StateHandle::Memory { .. } | StateHandle::File { .. } | StateHandle::Canonical { .. } => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(latency_ms: u64, per_mb_ms: u64, failure_rate: f64, rps: Option<u32>) -> ObjectStore {
        let s = ObjectStore::default();
        s.set(StorageBehaviour {
            latency: Duration::from_millis(latency_ms),
            latency_per_mb: Duration::from_millis(per_mb_ms),
            failure_rate,
            requests_per_second: rps,
        });
        s
    }

    /// Catches: a latency that ignores the bytes (or the request), uploads run one by one
    /// instead of Flink's 4 transfer threads, or a change that does not reach the next request.
    #[tokio::test(start_paused = true)]
    async fn an_upload_pays_per_request_and_per_mb_four_at_a_time() {
        let s = slow(50, 20, 0.0, None);
        let t = tokio::time::Instant::now();
        s.upload(&[2 << 20]).await.expect("no failures");
        assert_eq!(t.elapsed(), Duration::from_millis(50 + 40), "one request of 2 MB");
        let t = tokio::time::Instant::now();
        s.upload(&[0; 8]).await.expect("no failures");
        assert_eq!(t.elapsed(), Duration::from_millis(100), "8 requests, 4 at a time: two rounds of 50 ms");
        s.set(StorageBehaviour::default());
        let t = tokio::time::Instant::now();
        s.upload(&[0; 8]).await.expect("no failures");
        assert_eq!(t.elapsed(), Duration::ZERO, "back to a fast disk");
        assert_eq!(s.counts(), (17, 0));
    }

    /// Catches: a throttling limit per task instead of for the whole storage, or none.
    #[tokio::test(start_paused = true)]
    async fn throttling_spaces_every_request_of_the_storage() {
        let s = Arc::new(slow(0, 0, 0.0, Some(10)));
        let t = tokio::time::Instant::now();
        let (a, b) = tokio::join!(s.upload(&[0; 5]), s.upload(&[0; 5]));
        a.and(b).expect("no failures");
        assert_eq!(t.elapsed(), Duration::from_millis(900), "10 requests at 10/s: the last starts at 900 ms");
    }

    /// Catches: a failure rate that is not applied (or applied to a fast disk), or a failure
    /// that does not name the request and the option.
    #[tokio::test(start_paused = true)]
    async fn a_failing_request_fails_the_upload_with_the_reason() {
        let e = slow(0, 0, 1.0, None).upload(&[1024, 2048]).await.expect_err("every request fails");
        let text = e.to_string();
        assert!(text.contains("checkpoint storage") && text.contains("failure-rate = 1"), "{text}");
        let s = slow(0, 0, 0.0, None);
        for _ in 0..100 {
            s.upload(&[1]).await.expect("rate 0 never fails");
        }
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(StorageKind::Filesystem, dir.path(), "job", 1 << 20)
            .with_behaviour(StorageBehaviour { failure_rate: 1.0, ..StorageBehaviour::default() });
        storage.prepare(1).unwrap();
        let m = CheckpointMetadata { checkpoint: 1, ..meta(Vec::new()) };
        assert!(matches!(storage.write_metadata(&m), Err(StateError::Storage { .. })), "the _metadata write is a request too");
        assert!(!storage.chk_dir(1).unwrap().join(METADATA).exists());
    }

    fn meta(keyed: Vec<StateHandle>) -> CheckpointMetadata {
        CheckpointMetadata {
            job_id: "j".into(),
            checkpoint: 3,
            kind: SnapshotKind::Checkpoint,
            format: None,
            completed_at_ms: 0,
            job: None,
            mode: CheckpointMode::ExactlyOnce,
            offsets: Vec::new(),
            keyed,
            staged_output: Vec::new(),
            kafka_sink: None,
            channel_state: Vec::new(),
        }
    }

    fn rocks(dir: &Path, file: &Path, shared: bool) -> StateHandle {
        let f = super::super::rocks::RocksFile { name: "000009.sst".into(), path: file.to_path_buf(), size: 1, shared, checksum: None };
        StateHandle::RocksDb { dir: dir.to_path_buf(), key_groups: 0..128, files: vec![f], size: 1 }
    }

    #[test]
    fn metadata_paths_are_written_relative_and_read_back_below_their_roots() {
        let job = Path::new("/data/chk/job");
        let chk = job.join("chk-3");
        let m = meta(vec![
            StateHandle::File { path: chk.join("counter-0"), size: 1 },
            rocks(&chk.join("counter-1"), &job.join("shared").join("x-000009.sst"), true),
        ]);
        let rel = relativize(&m, &chk).unwrap();
        let text = serde_json::to_string(&rel).unwrap();
        assert!(!text.contains("/data"), "{text}");
        let moved = Path::new("/elsewhere/job/chk-3");
        let back = resolve(rel, moved).unwrap();
        assert_eq!(back.keyed[0], StateHandle::File { path: moved.join("counter-0"), size: 1 });
        assert_eq!(back.keyed[1].shared_files().next().unwrap(), &PathBuf::from("/elsewhere/job/shared/x-000009.sst"));
    }

    #[test]
    fn old_absolute_paths_are_read_only_inside_their_snapshot() {
        let chk = Path::new("/data/chk/job/chk-3");
        let inside = meta(vec![StateHandle::File { path: chk.join("counter-0"), size: 1 }]);
        assert_eq!(resolve(inside.clone(), chk).unwrap(), inside);
        let outside = meta(vec![StateHandle::File { path: "/etc/passwd".into(), size: 1 }]);
        let e = resolve(outside, chk).unwrap_err().to_string();
        assert!(e.contains("keyed[0].path = /etc/passwd is refused before anything is opened"), "{e}");
        let dotdot = meta(vec![rocks(&chk.join("counter-0"), Path::new("../../x.sst"), true)]);
        let e = resolve(dotdot, chk).unwrap_err().to_string();
        assert!(e.contains("keyed[0].files[0].path = ../../x.sst") && e.contains("shared/"), "{e}");
        let foreign = meta(vec![rocks(&chk.join("counter-0"), Path::new("/data/chk/other/shared/x.sst"), true)]);
        assert!(resolve(foreign, chk).is_err());
    }

    // Catches a `_metadata` that does not read back as written: a field lost in the JSON, or a
    // relative path resolved against the wrong directory (restore would then open other files).
    #[test]
    fn metadata_written_to_disk_reads_back_equal() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(StorageKind::Filesystem, tmp.path(), "j", 0);
        storage.prepare(3).unwrap();
        let chk = tmp.path().join("j").join("chk-3");
        let mut m = meta(vec![StateHandle::File { path: chk.join("counter-0"), size: 1 }]);
        m.offsets = vec![(0, 7), (1, 9)];
        assert!(storage.write_metadata(&m).unwrap() > 0);
        assert_eq!(CheckpointStorage::read_metadata(&chk).unwrap(), m);
        assert!(!chk.join(METADATA_IN_PROGRESS).exists(), "the in-progress file is renamed, not left behind");
    }

    // Catches a CLAIM discard that deletes by path what `_metadata` names: read when the job
    // restored, the snapshot's `sub/` was swapped since for a link to a directory outside, and
    // its files and empty directory there must stay (the old `remove_file` / `remove_dir` by
    // path followed the link and deleted them). What lies below the snapshot itself still goes.
    #[test]
    fn a_claimed_snapshot_discard_deletes_nothing_outside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(StorageKind::Filesystem, tmp.path(), "j", 0);
        storage.prepare(3).unwrap();
        let chk = tmp.path().join("j").join("chk-3");
        std::fs::create_dir_all(chk.join("sub/empty")).unwrap();
        for f in ["sub/victim", "sub/000009.sst", "counter-1"] {
            std::fs::write(chk.join(f), b"x").unwrap();
        }
        let m = meta(vec![
            StateHandle::File { path: chk.join("sub/victim"), size: 1 },
            rocks(&chk.join("sub/empty"), &chk.join("sub/000009.sst"), false),
            StateHandle::File { path: chk.join("counter-1"), size: 1 },
        ]);
        storage.write_metadata(&m).unwrap();
        let read = CheckpointStorage::read_metadata(&chk).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("empty")).unwrap();
        for f in ["victim", "000009.sst"] {
            std::fs::write(outside.join(f), b"keep").unwrap();
        }
        std::fs::remove_dir_all(chk.join("sub")).unwrap();
        std::os::unix::fs::symlink(&outside, chk.join("sub")).unwrap();
        // A handle naming a file outside outright (a `_metadata` crafted past the read check).
        let mut crafted = read.clone();
        crafted.keyed.push(StateHandle::File { path: outside.join("victim"), size: 1 });
        crafted.keyed.push(StateHandle::File { path: chk.join("..").join("..").join("outside").join("victim"), size: 1 });
        assert!(!CheckpointStorage::discard_claimed(&chk, &crafted), "the link stays, so the directory does");
        for f in ["victim", "000009.sst", "empty"] {
            assert!(outside.join(f).exists(), "{f} outside the snapshot was deleted");
        }
        assert!(!chk.join(METADATA).exists() && !chk.join("counter-1").exists(), "the snapshot's own files go");
    }

    // Catches a damaged `_metadata` read as something (a default, a panic on unwrap) or refused
    // without the file's name: the user must learn which snapshot is broken.
    #[test]
    fn a_corrupted_metadata_file_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(StorageKind::Filesystem, tmp.path(), "j", 0);
        storage.prepare(3).unwrap();
        let chk = tmp.path().join("j").join("chk-3");
        storage.write_metadata(&meta(Vec::new())).unwrap();
        let file = chk.join(METADATA);
        let text = std::fs::read(&file).unwrap();
        std::fs::write(&file, &text[..text.len() / 2]).unwrap();
        let shown = file.display().to_string();
        match CheckpointStorage::read_metadata(&chk) {
            Err(StateError::Corrupt { path, .. }) => assert_eq!(path, shown),
            other => panic!("a truncated _metadata must be refused as corrupt, got {other:?}"),
        }
        std::fs::remove_file(&file).unwrap();
        match CheckpointStorage::read_metadata(&chk) {
            Err(StateError::Read { path, .. }) => assert_eq!(path, shown),
            other => panic!("a missing _metadata must be refused by name, got {other:?}"),
        }
    }
}
