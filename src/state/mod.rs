//! Keyed state backends and checkpoint storage.
//!
//! Flink 2 splits what the seed calls a state backend in two: where working state lives
//! (`state.backend.type`: hashmap | rocksdb, a [`KeyedStateBackend`]) and where snapshots go
//! (`execution.checkpointing.storage`: jobmanager | filesystem, a [`storage::CheckpointStorage`]).
//! The runtime only talks to the trait, so another backend plugs in without touching it.

pub mod canonical;
pub mod hashmap;
pub mod rocks;
pub mod shared;
pub mod storage;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{BackendKind, Config, StorageKind};

/// Why a state operation failed; shown on screen as the checkpoint's or restore's failure reason.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum StateError {
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is corrupt: {message}")]
    Corrupt { path: String, message: String },
    #[error("snapshot of {size} bytes exceeds jobmanager storage's maximum of {max} bytes (use filesystem storage: --backend fs)")]
    TooLarge { size: u64, max: u64 },
    /// An error of the backend itself (RocksDB's message, verbatim).
    #[error("{message}")]
    Backend { message: String },
    #[error("{0}")]
    Unsupported(String),
    /// A request to checkpoint storage failed (`ckptlab.storage.failure-rate`): Flink's async
    /// part then fails with the IOException, and the task declines the checkpoint.
    #[error("checkpoint storage: {request} failed: {why}")]
    Storage { request: String, why: String },
    /// The task that took the snapshot went away while it was being written.
    #[error("snapshot cancelled: its task is gone")]
    Cancelled,
    /// A handle in `_metadata` names a path outside the snapshot's own directory and its job's
    /// `shared/` (or through a symlink): refused before anything is opened.
    #[error("{metadata}: {field} = {target} is refused before anything is opened: {why}")]
    Refused { metadata: String, field: String, target: String, why: String },
    /// A handle in another backend's native format (a checkpoint or a native savepoint of the
    /// other backend). Flink's words, StateUtil.unexpectedStateHandleException
    /// (StateUtil.java:152-154), thrown by HeapRestoreOperation.java:118-120 and
    /// RocksDBIncrementalRestoreOperation.java:346-356.
    #[error(
        "Unexpected state handle type, expected one of: {}, but found: {found}. This can mostly happen when a different \
         StateBackend from the one that was used for taking a checkpoint/savepoint is used when restoring.",
        .expected.join(", ")
    )]
    UnexpectedHandle { expected: Vec<&'static str>, found: &'static str },
}

/// Flink's `SavepointFormatType` (`flink savepoint --type canonical|native`,
/// SavepointFormatType.java:29-43): CANONICAL, the default, is one format for every backend and
/// lets a job change backends; NATIVE is the backend's own (RocksDB: its SST files), restorable
/// only into the backend that wrote it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, strum::EnumString, strum::IntoStaticStr, strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum SavepointFormat {
    #[default]
    Canonical,
    Native,
}

impl SavepointFormat {
    /// `canonical` / `native`, as a scenario step writes it.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// A reference to one subtask's snapshot of keyed state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StateHandle {
    /// Bytes kept by the JobManager (jobmanager storage); not written anywhere.
    Memory {
        #[serde(skip)]
        bytes: Arc<Vec<u8>>,
        size: u64,
    },
    /// A file under the checkpoint directory (filesystem storage).
    File { path: PathBuf, size: u64 },
    /// A RocksDB snapshot: its files, exclusive to this checkpoint (`dir`) or shared.
    RocksDb { dir: PathBuf, key_groups: Range<u16>, files: Vec<rocks::RocksFile>, size: u64 },
    /// A canonical savepoint's file ([`canonical`]): key groups of (key, count), written and read
    /// by either backend (Flink's KeyGroupsSavepointStateHandle).
    Canonical { path: PathBuf, size: u64, key_groups: Range<u16> },
}

/// Flink's class names of the handle kinds, for [`StateError::UnexpectedHandle`].
pub(crate) const HEAP_HANDLE: &str = "heap key groups (KeyGroupsStateHandle)";
pub(crate) const ROCKSDB_HANDLE: &str = "RocksDB files (IncrementalRemoteKeyedStateHandle)";
pub(crate) const CANONICAL_HANDLE: &str = "canonical savepoint (KeyGroupsSavepointStateHandle)";

impl StateHandle {
    pub fn size(&self) -> u64 {
        match self {
            StateHandle::Memory { size, .. }
            | StateHandle::File { size, .. }
            | StateHandle::RocksDb { size, .. }
            | StateHandle::Canonical { size, .. } => *size,
        }
    }

    /// The backend whose native format this is; `None`: canonical, any backend reads it.
    pub fn native_backend(&self) -> Option<BackendKind> {
        match self {
            StateHandle::Memory { .. } | StateHandle::File { .. } => Some(BackendKind::HashMap),
            StateHandle::RocksDb { .. } => Some(BackendKind::RocksDb),
            StateHandle::Canonical { .. } => None,
        }
    }

    /// Flink's name for the handle's kind.
    pub fn kind_name(&self) -> &'static str {
        match self {
            StateHandle::Memory { .. } | StateHandle::File { .. } => HEAP_HANDLE,
            StateHandle::RocksDb { .. } => ROCKSDB_HANDLE,
            StateHandle::Canonical { .. } => CANONICAL_HANDLE,
        }
    }

    /// Whether `backend` can restore this handle: its own native format, or the canonical one.
    pub fn check_restorable_by(&self, backend: BackendKind) -> Result<(), StateError> {
        match self.native_backend() {
            Some(b) if b != backend => {
                let own = match backend {
                    BackendKind::HashMap => HEAP_HANDLE,
                    BackendKind::RocksDb => ROCKSDB_HANDLE,
                };
                Err(StateError::UnexpectedHandle { expected: vec![own, CANONICAL_HANDLE], found: self.kind_name() })
            }
            Some(_) | None => Ok(()),
        }
    }

    /// The files of a snapshot that is a set of files (RocksDB's), exclusive to it or shared
    /// with other checkpoints; none for a handle that is one file or none.
    pub fn files(&self) -> &[rocks::RocksFile] {
        match self {
            StateHandle::RocksDb { files, .. } => files,
            StateHandle::Memory { .. } | StateHandle::File { .. } | StateHandle::Canonical { .. } => &[],
        }
    }

    /// [`Self::files`], to point them elsewhere (a claimed checkpoint's files adopted).
    pub fn files_mut(&mut self) -> &mut [rocks::RocksFile] {
        match self {
            StateHandle::RocksDb { files, .. } => files,
            StateHandle::Memory { .. } | StateHandle::File { .. } | StateHandle::Canonical { .. } => &mut [],
        }
    }

    /// The files in `<job-id>/shared/` this handle references (incremental snapshots).
    pub fn shared_files(&self) -> impl Iterator<Item = &PathBuf> {
        self.files().iter().filter(|f| f.shared).map(|f| &f.path)
    }
}

/// Checks, without opening it, that a snapshot file is a regular file (a FIFO or a device would
/// block or read forever) with the size the snapshot recorded: a missing, truncated or grown file
/// is named before any byte of it is read.
pub fn check_file(path: &std::path::Path, recorded: u64) -> Result<(), StateError> {
    let shown = || path.display().to_string();
    let m = std::fs::symlink_metadata(path).map_err(|e| StateError::Read { path: shown(), message: e.to_string() })?;
    if !m.file_type().is_file() {
        return Err(StateError::Corrupt { path: shown(), message: "not a regular file (a snapshot's state is a plain file)".into() });
    }
    if m.len() != recorded {
        return Err(StateError::Corrupt { path: shown(), message: format!("{} bytes where the snapshot recorded {recorded}", m.len()) });
    }
    Ok(())
}

/// FNV-1a, 64 bits: the checksum of heap snapshots and of every RocksDB snapshot file, computed
/// while the file is written and checked before a restore uses it.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }

    pub fn of(bytes: &[u8]) -> u64 {
        let mut h = Fnv64::default();
        h.update(bytes);
        h.finish()
    }
}

/// Every (key group, key, count) of one subtask's snapshot, after checking each file it names
/// (regular file, recorded size, checksum): what `ckptlab inspect` shows and what a restore
/// checks before the job starts. One function for both, so they agree on what is damaged.
///
/// This is the State Processor API's view (it reads every format); a backend's restore reads
/// only its own native format and the canonical one.
pub fn read_handle(handle: &StateHandle) -> Result<Vec<(u16, String, u64)>, StateError> {
    match handle {
        StateHandle::RocksDb { dir, files, .. } => rocks::read_snapshot(dir, files),
        StateHandle::Canonical { path, size, .. } => canonical::read(path, *size).map(|(_, entries)| entries),
        StateHandle::Memory { .. } | StateHandle::File { .. } => hashmap::read_entries(handle),
    }
}

/// Where a snapshot goes.
#[derive(Debug, Clone)]
pub struct SnapshotTarget {
    pub checkpoint: u64,
    pub storage: StorageKind,
    /// `<dir>/<job-id>/chk-<n>` for filesystem storage.
    pub dir: Option<PathBuf>,
    /// The task's name, used for its file name ("counter-1").
    pub file_stem: String,
    pub max_memory_size: u64,
    /// The key groups the snapshotting subtask owns.
    pub key_groups: Range<u16>,
    /// The newest checkpoint known to be complete (incremental snapshots reuse only its files).
    pub last_completed: Option<u64>,
    /// A savepoint and its format: self-contained (no file of it in `shared/`, no reference to
    /// an earlier checkpoint's files), canonical or the backend's native one. `None`: a checkpoint.
    pub savepoint: Option<SavepointFormat>,
}

impl SnapshotTarget {
    /// A canonical savepoint: the backend writes [`canonical`]'s format.
    pub fn canonical(&self) -> bool {
        self.savepoint == Some(SavepointFormat::Canonical)
    }
}

/// A finished snapshot: the handle to acknowledge and what it cost.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub handle: StateHandle,
    /// Bytes written by this checkpoint (the delta, for incremental backends).
    pub checkpointed_size: u64,
    /// Bytes of the whole state.
    pub full_size: u64,
    pub sync_duration: Duration,
    pub async_duration: Duration,
    /// What this snapshot created in storage (files, and the exclusive directory of a RocksDB
    /// snapshot), never what it references from earlier checkpoints: what
    /// [`Snapshot::discard`] deletes when nobody will acknowledge the snapshot.
    pub written: Vec<PathBuf>,
    /// The bytes of each file it uploaded, one request each to checkpoint storage (an
    /// incremental RocksDB snapshot uploads only its new SST files and its small private ones;
    /// files it only references cost nothing).
    pub uploads: Vec<u64>,
    /// The checkpoint storage's job directory every `written` path lies below (`None` when the
    /// snapshot wrote nothing: jobmanager storage).
    pub written_under: Option<PathBuf>,
}

impl Snapshot {
    /// Deletes what this snapshot wrote (a snapshot whose task went away before acknowledging
    /// it). Files it only references belong to completed checkpoints and stay. Blocking I/O:
    /// call it off the tokio workers.
    pub fn discard(&self) {
        if let Some(root) = &self.written_under {
            discard_written(root, &self.written);
        }
    }
}

/// Deletes paths a snapshot created in checkpoint storage, each only when it lies below `root`
/// (the job directory the storage made): paths come from ckptlab's own storage layout and the
/// backend's own file names, and a path that is not below it is left alone.
pub(crate) fn discard_written(root: &std::path::Path, written: &[PathBuf]) {
    for path in written {
        let _ = crate::workdir::remove_tree_under(root, path);
    }
}

/// Set when the task that took a snapshot is gone: the snapshot's asynchronous part stops early
/// and deletes what it wrote (Flink cancels the AsyncCheckpointRunnable and discards its state).
#[derive(Debug, Clone, Default)]
pub struct SnapshotCancellation(Arc<AtomicBool>);

impl SnapshotCancellation {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The asynchronous part of a snapshot: serialise and write what the synchronous part captured.
pub type AsyncSnapshotPart = Box<dyn FnOnce(&SnapshotCancellation) -> Result<Snapshot, StateError> + Send>;

/// A snapshot after its synchronous part (Flink's `SnapshotStrategy.asyncSnapshot` split): the
/// state is captured (a copy of the heap map, a RocksDB checkpoint of hard links) and the task may
/// go on changing it; [`PendingSnapshot::write`] is the asynchronous part, run on a blocking
/// thread while the task processes records.
pub struct PendingSnapshot {
    pub sync_duration: Duration,
    pub write: AsyncSnapshotPart,
}

impl PendingSnapshot {
    /// Runs the asynchronous part here and now; a part that saw `cancel` set deletes what it had
    /// written and fails with [`StateError::Cancelled`].
    pub fn run(self, cancel: &SnapshotCancellation) -> Result<Snapshot, StateError> {
        let snapshot = (self.write)(cancel)?;
        if cancel.is_cancelled() {
            snapshot.discard();
            return Err(StateError::Cancelled);
        }
        Ok(snapshot)
    }

    /// Both parts at once, for callers that do not overlap them (tests, tools).
    pub fn complete(self) -> Result<Snapshot, StateError> {
        self.run(&SnapshotCancellation::default())
    }
}

/// Working keyed state of one counter subtask: one `u64` per key.
pub trait KeyedStateBackend: Send {
    /// Flink 2's name for it (`hashmap`, `rocksdb`).
    fn name(&self) -> &'static str;
    fn get(&mut self, key: &str) -> Result<u64, StateError>;
    fn put(&mut self, key: &Arc<str>, value: u64) -> Result<(), StateError>;
    /// Adds one to a key's value and returns the new value (the counter's hot path; a backend
    /// may do it in one lookup).
    fn increment(&mut self, key: &Arc<str>) -> Result<u64, StateError> {
        let v = self.get(key)? + 1;
        self.put(key, v)?;
        Ok(v)
    }
    /// [`KeyedStateBackend::increment`], and the key's id in [`KeyedStateBackend::key_ids`]:
    /// the audited counter's hot path, so that the auditor keeps its per-key figures by that id
    /// instead of looking the key up again (the heap backend keeps the id in the key's entry).
    fn increment_with_id(&mut self, key: &Arc<str>) -> Result<(u64, u32), StateError>;
    /// The ids [`KeyedStateBackend::increment_with_id`] gave, in their current space.
    fn key_ids(&self) -> &KeyIds;
    /// Takes a snapshot's synchronous part (a copy the task may go on changing) and returns its
    /// asynchronous part (the write to storage), which must not touch the working state.
    fn snapshot(&mut self, target: &SnapshotTarget) -> Result<PendingSnapshot, StateError>;
    /// Loads the key groups in `key_groups` out of every handle of a checkpoint.
    fn restore(&mut self, handles: &[StateHandle], key_groups: Range<u16>) -> Result<(), StateError>;
    /// Every key and its value (the state pane).
    fn entries(&mut self) -> Result<Vec<(Arc<str>, u64)>, StateError>;
}

/// Dense ids for a backend's keys (0, 1, 2 ... in the order keys came), and the key of each.
/// An id means its key only within one *space*: a backend that numbers its keys anew (a heap
/// restore rebuilds its map) takes a new space, unique in the process, so that a holder of ids
/// from before ([`crate::audit`]'s translation to its slots) knows to forget them.
#[derive(Debug)]
pub struct KeyIds {
    space: u64,
    keys: Vec<Arc<str>>,
}

/// The next id space (process-wide, so that no two backends' spaces are ever the same).
static NEXT_SPACE: AtomicU64 = AtomicU64::new(0);

impl Default for KeyIds {
    fn default() -> Self {
        KeyIds { space: NEXT_SPACE.fetch_add(1, Ordering::Relaxed), keys: Vec::new() }
    }
}

impl KeyIds {
    /// Gives `key` (a key this space has no id for) the next id.
    pub fn push(&mut self, key: Arc<str>) -> u32 {
        let id = u32::try_from(self.keys.len()).expect("fewer than 2^32 keys per subtask");
        self.keys.push(key);
        id
    }

    /// The key of `id` (an id of this space).
    #[inline]
    pub fn key(&self, id: u32) -> &Arc<str> {
        &self.keys[id as usize]
    }

    #[inline]
    pub fn space(&self) -> u64 {
        self.space
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Forgets every id: the next ones are of a new space.
    pub fn clear(&mut self) {
        *self = KeyIds::default();
    }
}

/// Key ids for a backend with no in-memory entry per key (RocksDB): a map of its own, one more
/// lookup per record (RocksDB's own read and write cost far more).
#[derive(Debug, Default)]
pub struct KeyIdMap {
    by_key: rustc_hash::FxHashMap<Arc<str>, u32>,
    ids: KeyIds,
}

impl KeyIdMap {
    pub fn id(&mut self, key: &Arc<str>) -> u32 {
        if let Some(&id) = self.by_key.get(&**key) {
            return id;
        }
        let id = self.ids.push(key.clone());
        self.by_key.insert(key.clone(), id);
        id
    }

    pub fn ids(&self) -> &KeyIds {
        &self.ids
    }
}

/// Creates the backend a counter subtask runs with; `local_dir` is the subtask's directory under
/// its task manager's local directory (used by RocksDB, created on first use).
pub fn create_backend(config: &Config, local_dir: PathBuf) -> Box<dyn KeyedStateBackend> {
    match config.backend {
        BackendKind::HashMap => Box::new(hashmap::HashMapBackend::default()),
        BackendKind::RocksDb => Box::new(rocks::RocksDbBackend::new(local_dir, config.checkpointing.incremental)),
    }
}
