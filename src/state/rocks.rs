//! The RocksDB backend (`state.backend.type = "rocksdb"`): each counter subtask keeps its keyed
//! state in its own RocksDB instance under its task manager's local directory, as Flink's
//! RocksDBStateBackend does.
//!
//! - Keys are prefixed by their key group (2 bytes, big endian), so a restore can pick key groups
//!   and a scan comes out grouped; values are the count as 8 little-endian bytes. Writes skip the
//!   WAL (Flink does the same): durability comes from checkpoints, not from the local disk.
//! - A snapshot's synchronous part flushes the memtable and takes a RocksDB checkpoint (hard links
//!   to the immutable SST files, copies of MANIFEST, CURRENT, OPTIONS); the asynchronous part
//!   copies those files into `<checkpoint dir>/<job-id>/chk-<n>/counter-<i>/`.
//! - Incremental (`execution.checkpointing.incremental`): SST files go to `<job-id>/shared/`, and
//!   an SST file that the last *completed* checkpoint already uploaded is referenced, not copied
//!   again. The JobManager's [`super::shared::SharedStateRegistry`] counts references and deletes
//!   a shared file when no retained checkpoint needs it any more.
//! - Savepoints: a native one is a full, self-contained copy of the files (Flink's
//!   RocksNativeFullSnapshotStrategy); a canonical one is written in [`super::canonical`]'s
//!   backend-independent format, scanned from the RocksDB checkpoint the synchronous part took
//!   (Flink's RocksDBFullSnapshotResources + FullSnapshotAsyncWriter).
//! - Restore checks each file (regular, recorded size, the FNV-64 recorded at upload) while it
//!   copies it back into a fresh local directory (the local disk of a killed task manager is
//!   gone), opens them and reads every entry once, so that a damaged file fails the restore
//!   naming it rather than a later read (the restart strategy retries the same checkpoint). A
//!   RocksDB snapshot of other key groups (rescaling) is read entry by entry, and so is a
//!   canonical savepoint; a heap snapshot is refused with Flink's reason (a different backend's
//!   checkpoint or native savepoint: StateUtil.java:152-154).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{DBCompressionType, IteratorMode, LogLevel, Options, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use super::{KeyedStateBackend, PendingSnapshot, Snapshot, SnapshotCancellation, SnapshotTarget, StateError, StateHandle};
use crate::keygroup::key_group;

/// One file of a RocksDB snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RocksFile {
    /// The file's name in the RocksDB directory (`000012.sst`, `MANIFEST-000005`, `CURRENT`).
    pub name: String,
    /// Where the checkpoint keeps it.
    pub path: PathBuf,
    pub size: u64,
    /// In `<job-id>/shared/`, reference counted across checkpoints (incremental SST files).
    pub shared: bool,
    /// FNV-64 of its bytes, taken while it was uploaded and checked before a restore uses it
    /// (`None` in metadata of ckptlab before issue 20: then only RocksDB's block checksums).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u64>,
}

/// A RocksDB file uploaded to shared storage, reusable by later checkpoints.
#[derive(Debug, Clone)]
struct Uploaded {
    path: PathBuf,
    size: u64,
    checksum: u64,
}

pub struct RocksDbBackend {
    /// `<taskmanager dir>/job_<id>_counter_<i>_attempt_<a>`: the DB lives in `db/` below it.
    dir: PathBuf,
    /// `dir/db`.
    db_path: PathBuf,
    db: Option<DB>,
    write: WriteOptions,
    incremental: bool,
    key_buf: Vec<u8>,
    /// SST files of the last completed checkpoint this instance knows of (name -> upload).
    confirmed: HashMap<String, Uploaded>,
    /// Shared files each of our snapshots referenced, by checkpoint, until one is confirmed.
    /// Filled by the snapshots' asynchronous parts when their upload finished (on a blocking
    /// thread), read by the next snapshot's synchronous part.
    uploads: Arc<Mutex<Uploads>>,
    /// The keys' ids ([`KeyedStateBackend::increment_with_id`]): RocksDB has no entry in memory
    /// to keep them in.
    key_ids: super::KeyIdMap,
}

type Uploads = BTreeMap<u64, HashMap<String, Uploaded>>;

fn rocks_err(op: &str, path: &Path, e: rocksdb::Error) -> StateError {
    StateError::Backend { message: format!("RocksDB {op} ({}): {e}", path.display()) }
}

fn io_write(path: &Path, e: std::io::Error) -> StateError {
    StateError::Write { path: path.display().to_string(), message: e.to_string() }
}

fn io_read(path: &Path, e: std::io::Error) -> StateError {
    StateError::Read { path: path.display().to_string(), message: e.to_string() }
}

/// Bytes RocksDB preallocates for a MANIFEST file (its default is 4 MiB).
const MANIFEST_PREALLOCATION: usize = 64 * 1024;

fn options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.set_compression_type(DBCompressionType::Lz4);
    // RocksDB's own LOG file stays small; ckptlab reports errors itself.
    o.set_log_level(LogLevel::Warn);
    o.set_keep_log_file_num(1);
    // A count is 8 bytes every time: update it in place in the memtable rather than adding a
    // version per record (a memtable of a million versions of 10,000 keys made every get and put
    // a deep skiplist search). In-place updates need single-writer memtables.
    o.set_allow_concurrent_memtable_write(false);
    o.set_inplace_update_support(true);
    // RocksDB preallocates 4 MiB for each MANIFEST; one instance per subtask and attempt made a
    // run killed outright leave megabytes per instance. A counter's MANIFEST stays tiny.
    o.set_manifest_preallocation_size(MANIFEST_PREALLOCATION);
    // Working state is disposable (checkpoints hold what counts): closing must not flush the
    // memtable. A killed TM's directory is already gone, and a flush into it fails, after which
    // RocksDB backs off for a second while close waits: a stalled worker thread.
    // (Not bound by the crate's Options, so set through RocksDB's option string.)
    o.get_options_from_string("avoid_flush_during_shutdown=true").unwrap_or(o)
}

/// The stored key: key group (big endian) then the key's bytes.
fn encode_key(buf: &mut Vec<u8>, key: &str) {
    buf.clear();
    buf.extend_from_slice(&key_group(key).to_be_bytes());
    buf.extend_from_slice(key.as_bytes());
}

/// Why a stored entry is not a counter's (key group, key, count).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum EntryError {
    #[error("an entry of {key} key and {value} value bytes is not ckptlab's")]
    Shape { key: usize, value: usize },
    #[error("a key is not UTF-8")]
    KeyNotUtf8,
}

fn decode_entry(k: &[u8], v: &[u8]) -> Result<(u16, String, u64), EntryError> {
    if k.len() < 2 || v.len() != 8 {
        return Err(EntryError::Shape { key: k.len(), value: v.len() });
    }
    let kg = u16::from_be_bytes([k[0], k[1]]);
    let key = String::from_utf8(k[2..].to_vec()).map_err(|_| EntryError::KeyNotUtf8)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(v);
    Ok((kg, key, u64::from_le_bytes(b)))
}

impl RocksDbBackend {
    /// A backend whose instance directory is `dir` (created on first use, deleted on drop).
    pub fn new(dir: PathBuf, incremental: bool) -> Self {
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        RocksDbBackend {
            db_path: dir.join("db"),
            dir,
            db: None,
            write,
            incremental,
            key_buf: Vec::new(),
            confirmed: HashMap::new(),
            uploads: Arc::default(),
            key_ids: super::KeyIdMap::default(),
        }
    }

    fn db_path(&self) -> PathBuf {
        self.db_path.clone()
    }

    /// Opens the DB on first use.
    fn open(&mut self) -> Result<(), StateError> {
        if self.db.is_none() {
            let path = &self.db_path;
            std::fs::create_dir_all(path).map_err(|e| io_write(path, e))?;
            let db = DB::open(&options(), path).map_err(|e| rocks_err("open", path, e))?;
            self.db = Some(db);
        }
        Ok(())
    }

    fn db(&mut self) -> Result<&DB, StateError> {
        self.open()?;
        Ok(self.db.as_ref().expect("opened above"))
    }

    /// The last completed checkpoint's uploads become the files later snapshots may reference.
    fn promote(&mut self, last_completed: Option<u64>) {
        let Some(done) = last_completed else { return };
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let newest_done = uploads.range(..=done).next_back().map(|(id, _)| *id);
        if let Some(id) = newest_done {
            self.confirmed = uploads.remove(&id).unwrap_or_default();
            *uploads = uploads.split_off(&(id + 1));
        }
    }

    /// The asynchronous part of a canonical savepoint: every entry of the RocksDB checkpoint in
    /// `local` (taken by the synchronous part, immutable), opened read-only, scanned in key order
    /// and written as one canonical file `exclusive`.
    fn canonical_savepoint(&self, local: PathBuf, exclusive: PathBuf, target: &SnapshotTarget, sync_duration: std::time::Duration) -> PendingSnapshot {
        let (instance_dir, key_groups) = (self.dir.clone(), target.key_groups.clone());
        let written_under = exclusive.parent().map(Path::to_path_buf);
        let write = move |cancel: &SnapshotCancellation| {
            let async_start = Instant::now();
            let result = (|| {
                let db = DB::open_for_read_only(&options(), &local, false).map_err(|e| rocks_err("open", &local, e))?;
                let entries = scan(&db, &local)?;
                drop(db);
                if cancel.is_cancelled() {
                    return Err(StateError::Cancelled);
                }
                let name: &'static str = crate::config::BackendKind::RocksDb.into();
                let bytes = super::canonical::encode(name, key_groups.clone(), entries.iter().map(|(g, k, v)| (*g, k.as_str(), *v)).collect());
                write_new(&exclusive, &bytes)?;
                Ok(bytes.len() as u64)
            })();
            let _ = crate::workdir::remove_tree_under(&instance_dir, &local);
            let size = result?;
            Ok(Snapshot {
                handle: StateHandle::Canonical { path: exclusive.clone(), size, key_groups },
                checkpointed_size: size,
                full_size: size,
                sync_duration,
                async_duration: async_start.elapsed(),
                written: vec![exclusive],
                uploads: vec![size],
                written_under,
            })
        };
        PendingSnapshot { sync_duration, write: Box::new(write) }
    }

    /// Rebuilds the local DB from a snapshot of exactly our key groups: its files, checked
    /// (regular file, size, checksum) and copied back.
    fn restore_files(&mut self, dir: &Path, files: &[RocksFile]) -> Result<(), StateError> {
        let path = self.db_path();
        std::fs::create_dir_all(&path).map_err(|e| io_write(&path, e))?;
        for f in files {
            let (_, checksum) = copy_checked(f, &path.join(&f.name))?;
            if f.shared {
                self.confirmed.insert(f.name.clone(), Uploaded { path: f.path.clone(), size: f.size, checksum });
            }
        }
        let db = DB::open(&options(), &path).map_err(|e| corrupt_in(dir, files, &format!("RocksDB open: {e}")))?;
        self.db = Some(db);
        Ok(())
    }
}

/// Copies a snapshot file `f` to `dst` after checking it (regular file, recorded size) and
/// checks the copy's checksum against the recorded one.
fn copy_checked(f: &RocksFile, dst: &Path) -> Result<(u64, u64), StateError> {
    super::check_file(&f.path, f.size)?;
    let (size, checksum) = copy_hashed(&f.path, dst).map_err(|e| match e {
        CopyError::Read(e) => io_read(&f.path, e),
        CopyError::Write(e) => io_write(dst, e),
    })?;
    if size != f.size {
        return Err(StateError::Corrupt {
            path: f.path.display().to_string(),
            message: format!("{size} bytes where the snapshot recorded {}", f.size),
        });
    }
    if let Some(want) = f.checksum.filter(|want| *want != checksum) {
        return Err(StateError::Corrupt {
            path: f.path.display().to_string(),
            message: format!("checksum mismatch (FNV-64 {checksum:016x} where the snapshot recorded {want:016x})"),
        });
    }
    Ok((size, checksum))
}

/// A RocksDB error about a copy of a snapshot's files, told about the snapshot's own file it
/// names (RocksDB names the copy), else about the snapshot's directory.
fn corrupt_in(dir: &Path, files: &[RocksFile], message: &str) -> StateError {
    let path = files.iter().find(|f| message.contains(&f.name)).map_or_else(|| dir.display().to_string(), |f| f.path.display().to_string());
    StateError::Corrupt { path, message: message.to_string() }
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copies `src` to a new `0600` file `dst` (synced), hashing what it copies: (bytes, FNV-64).
fn copy_hashed(src: &Path, dst: &Path) -> Result<(u64, u64), CopyError> {
    use std::io::{Read, Write};
    let mut from = std::fs::File::open(src).map_err(CopyError::Read)?;
    let mut to = crate::workdir::create_private_file(dst).map_err(CopyError::Write)?;
    let mut hash = super::Fnv64::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(CopyError::Read)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        size += n as u64;
    }
    to.sync_all().map_err(CopyError::Write)?;
    Ok((size, hash.finish()))
}

#[derive(Default)]
struct Upload {
    files: Vec<RocksFile>,
    /// Bytes copied (the checkpointed size).
    bytes: u64,
    /// What the upload created: the exclusive directory and new shared files.
    written: Vec<PathBuf>,
    /// The bytes of each file copied (one request each to checkpoint storage).
    uploads: Vec<u64>,
    shared: HashMap<String, Uploaded>,
}

/// Copies the RocksDB checkpoint in `local` to storage: SST files to `shared` (or referenced
/// there, when `confirmed` by a completed checkpoint and still in storage) when incremental, the
/// rest to `exclusive`. On failure or cancellation, what it wrote so far is deleted.
fn upload(
    local: &Path,
    exclusive: &Path,
    shared: &Path,
    incremental: bool,
    confirmed: &HashMap<String, Uploaded>,
    cancel: &SnapshotCancellation,
) -> Result<Upload, StateError> {
    let mut up = Upload::default();
    let result = upload_into(&mut up, local, exclusive, shared, incremental, confirmed, cancel);
    if result.is_err() {
        // `shared` is `<job-id>/shared`: everything an upload writes lies below the job directory.
        if let Some(job) = shared.parent() {
            super::discard_written(job, &up.written);
        }
    }
    result.map(|()| up)
}

fn upload_into(
    up: &mut Upload,
    local: &Path,
    exclusive: &Path,
    shared: &Path,
    incremental: bool,
    confirmed: &HashMap<String, Uploaded>,
    cancel: &SnapshotCancellation,
) -> Result<(), StateError> {
    // A checkpoint directory discarded meanwhile (the checkpoint expired) comes back here, as
    // Flink's file system creates parent directories: the late acknowledgement makes the
    // JobManager delete it again, and a task gone before acknowledging deletes it itself.
    crate::workdir::create_private_dirs(exclusive).map_err(|e| io_write(exclusive, e))?;
    up.written.push(exclusive.to_path_buf());
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(local).map_err(|e| io_read(local, e))? {
        names.push(entry.map_err(|e| io_read(local, e))?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    for name in names {
        if cancel.is_cancelled() {
            return Err(StateError::Cancelled);
        }
        let src = local.join(&name);
        let size = std::fs::metadata(&src).map_err(|e| io_read(&src, e))?.len();
        if incremental && name.ends_with(".sst") {
            // A confirmed file is reused only while it is still in storage with its size.
            // Only files of this job's own `shared/` are reused: a checkpoint restored from another
            // job (`--restore`, NO_CLAIM) is not ours to depend on, so its files are uploaded again
            // (Flink's NO_CLAIM makes the first checkpoint a full one for the same reason).
            let known = confirmed
                .get(&name)
                .filter(|u| u.path.starts_with(shared) && u.size == size && std::fs::metadata(&u.path).is_ok_and(|m| m.len() == u.size))
                .cloned();
            let uploaded = match known {
                Some(u) => u,
                None => {
                    crate::workdir::create_private_dirs(shared).map_err(|e| io_write(shared, e))?;
                    let dst = shared.join(format!("{:016x}-{name}", rand::random::<u64>()));
                    up.written.push(dst.clone());
                    let (size, checksum) = copy_synced(&src, &dst)?;
                    up.bytes += size;
                    up.uploads.push(size);
                    Uploaded { path: dst, size, checksum }
                }
            };
            up.files.push(RocksFile {
                name: name.clone(),
                path: uploaded.path.clone(),
                size: uploaded.size,
                shared: true,
                checksum: Some(uploaded.checksum),
            });
            up.shared.insert(name, uploaded);
        } else {
            let dst = exclusive.join(&name);
            let (size, checksum) = copy_synced(&src, &dst)?;
            up.bytes += size;
            up.uploads.push(size);
            up.files.push(RocksFile { name, path: dst, size, shared: false, checksum: Some(checksum) });
        }
    }
    Ok(())
}

/// Writes a new, synced `0600` file (never over an existing one).
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    use std::io::Write;
    let mut f = crate::workdir::create_private_file(path).map_err(|e| io_write(path, e))?;
    f.write_all(bytes).map_err(|e| io_write(path, e))?;
    f.sync_data().map_err(|e| io_write(path, e))
}

/// An upload's copy: (bytes, FNV-64).
fn copy_synced(src: &Path, dst: &Path) -> Result<(u64, u64), StateError> {
    copy_hashed(src, dst).map_err(|e| match e {
        CopyError::Read(e) => io_read(src, e),
        CopyError::Write(e) => io_write(dst, e),
    })
}

/// Every entry of a RocksDB snapshot (any key groups), read from a temporary copy of its files,
/// each checked first (regular file, recorded size, checksum).
pub fn read_snapshot(dir: &Path, files: &[RocksFile]) -> Result<Vec<(u16, String, u64)>, StateError> {
    let home = crate::workdir::prepare_home()
        .map_err(|e| StateError::Write { path: crate::workdir::home().display().to_string(), message: e.to_string() })?;
    let tmp = home.join(format!("read-{:016x}", rand::random::<u64>()));
    let result = (|| {
        crate::workdir::create_private_dirs(&tmp).map_err(|e| io_write(&tmp, e))?;
        for f in files {
            copy_checked(f, &tmp.join(&f.name))?;
        }
        let db = DB::open_for_read_only(&options(), &tmp, false).map_err(|e| corrupt_in(dir, files, &format!("RocksDB open: {e}")))?;
        scan(&db, &tmp).map_err(|e| match e {
            StateError::Corrupt { message, .. } => corrupt_in(dir, files, &message),
            other => other,
        })
    })();
    let _ = crate::workdir::remove_tree_under(&home, &tmp);
    result
}

/// Reads every entry; a damaged block fails here (RocksDB verifies block checksums on read).
fn scan(db: &DB, path: &Path) -> Result<Vec<(u16, String, u64)>, StateError> {
    let mut out = Vec::new();
    for item in db.iterator(IteratorMode::Start) {
        let (k, v) = item.map_err(|e| StateError::Corrupt { path: path.display().to_string(), message: format!("RocksDB read: {e}") })?;
        out.push(decode_entry(&k, &v).map_err(|e| StateError::Corrupt { path: path.display().to_string(), message: e.to_string() })?);
    }
    Ok(out)
}

impl KeyedStateBackend for RocksDbBackend {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn get(&mut self, key: &str) -> Result<u64, StateError> {
        self.open()?;
        encode_key(&mut self.key_buf, key);
        let db = self.db.as_ref().expect("opened above");
        match db.get_pinned(&self.key_buf).map_err(|e| rocks_err("get", &self.db_path, e))? {
            Some(v) if v.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v);
                Ok(u64::from_le_bytes(b))
            }
            Some(v) => {
                Err(StateError::Corrupt { path: self.db_path.display().to_string(), message: format!("a value of {} bytes", v.len()) })
            }
            None => Ok(0),
        }
    }

    fn put(&mut self, key: &Arc<str>, value: u64) -> Result<(), StateError> {
        self.open()?;
        encode_key(&mut self.key_buf, key);
        let db = self.db.as_ref().expect("opened above");
        db.put_opt(&self.key_buf, value.to_le_bytes(), &self.write).map_err(|e| rocks_err("put", &self.db_path, e))
    }

    fn increment_with_id(&mut self, key: &Arc<str>) -> Result<(u64, u32), StateError> {
        let v = self.increment(key)?;
        // An id names a key whatever the database holds: a restore keeps them.
        Ok((v, self.key_ids.id(key)))
    }

    fn key_ids(&self) -> &super::KeyIds {
        self.key_ids.ids()
    }

    fn snapshot(&mut self, target: &SnapshotTarget) -> Result<PendingSnapshot, StateError> {
        let Some(chk_dir) = &target.dir else {
            return Err(StateError::Unsupported(
                "RocksDB snapshots are files: set execution.checkpointing.storage = filesystem (--backend rocksdb does)".into(),
            ));
        };
        self.promote(target.last_completed);
        // The synchronous part: flush and hard-link the immutable files (RocksDB's checkpoint).
        let sync_start = Instant::now();
        let local = self.dir.join(format!("chk-{}", target.checkpoint));
        let _ = crate::workdir::remove_tree_under(&self.dir, &local);
        {
            let path = self.db_path();
            let db = self.db()?;
            db.flush().map_err(|e| rocks_err("flush", &path, e))?;
            let cp = Checkpoint::new(db).map_err(|e| rocks_err("checkpoint", &path, e))?;
            cp.create_checkpoint(&local).map_err(|e| rocks_err("checkpoint", &local, e))?;
        }
        let sync_duration = sync_start.elapsed();
        // The asynchronous part: upload (copy) the checkpoint's files, off the task.
        let exclusive = chk_dir.join(&target.file_stem);
        let shared = chk_dir.parent().map(|job| job.join("shared")).unwrap_or_else(|| chk_dir.join("shared"));
        let job_dir = shared.parent().map(Path::to_path_buf);
        // A savepoint is self-contained: every file copied into its own directory, none shared.
        let incremental = self.incremental && target.savepoint.is_none();
        if target.canonical() {
            return Ok(self.canonical_savepoint(local, exclusive, target, sync_duration));
        }
        let confirmed = if incremental { self.confirmed.clone() } else { HashMap::new() };
        let (instance_dir, uploads) = (self.dir.clone(), self.uploads.clone());
        let (checkpoint, key_groups) = (target.checkpoint, target.key_groups.clone());
        let write = move |cancel: &SnapshotCancellation| {
            let async_start = Instant::now();
            let result = upload(&local, &exclusive, &shared, incremental, &confirmed, cancel);
            let _ = crate::workdir::remove_tree_under(&instance_dir, &local);
            let up = result?;
            let full_size = up.files.iter().map(|f| f.size).sum();
            if incremental {
                uploads.lock().unwrap_or_else(|e| e.into_inner()).insert(checkpoint, up.shared);
            }
            let handle = StateHandle::RocksDb { dir: exclusive, key_groups, files: up.files, size: full_size };
            Ok(Snapshot {
                handle,
                checkpointed_size: up.bytes,
                full_size,
                sync_duration,
                async_duration: async_start.elapsed(),
                written: up.written,
                uploads: up.uploads,
                written_under: job_dir,
            })
        };
        Ok(PendingSnapshot { sync_duration, write: Box::new(write) })
    }

    fn restore(&mut self, handles: &[StateHandle], key_groups: Range<u16>) -> Result<(), StateError> {
        for handle in handles {
            handle.check_restorable_by(crate::config::BackendKind::RocksDb)?;
        }
        self.db = None;
        let _ = crate::workdir::remove_tree_under(&self.dir, &self.db_path());
        self.confirmed.clear();
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).clear();
        // Our own key groups in one RocksDB snapshot: its files are the DB.
        let own = handles.iter().find_map(|h| match h {
            StateHandle::RocksDb { key_groups: kg, files, dir, .. } if *kg == key_groups => Some((dir.clone(), files.clone())),
            _ => None,
        });
        if let Some((dir, files)) = own {
            self.restore_files(&dir, &files)?;
            let path = self.db_path();
            scan(self.db.as_ref().expect("restored"), &path).map_err(|e| match e {
                StateError::Corrupt { message, .. } => corrupt_in(&dir, &files, &message),
                other => other,
            })?;
            return Ok(());
        }
        // Other key groups (rescaling), or a canonical savepoint: entry by entry.
        let mut entries = Vec::new();
        for h in handles {
            entries.extend(match h {
                StateHandle::RocksDb { dir, files, .. } => read_snapshot(dir, files)?,
                StateHandle::Canonical { path, size, .. } => super::canonical::read(path, *size)?.1,
                other => return Err(StateError::UnexpectedHandle { expected: vec![super::ROCKSDB_HANDLE, super::CANONICAL_HANDLE], found: other.kind_name() }),
            });
        }
        for (kg, key, value) in entries {
            if key_groups.contains(&kg) {
                self.put(&Arc::from(key.as_str()), value)?;
            }
        }
        self.db()?;
        Ok(())
    }

    fn entries(&mut self) -> Result<Vec<(Arc<str>, u64)>, StateError> {
        let path = self.db_path();
        let db = self.db()?;
        Ok(scan(db, &path)?.into_iter().map(|(_, k, v)| (Arc::from(k.as_str()), v)).collect())
    }
}

impl Drop for RocksDbBackend {
    fn drop(&mut self) {
        // Close first, then remove the instance's directory (a finished attempt leaves nothing).
        self.db = None;
        if let Some(parent) = self.dir.parent() {
            let _ = crate::workdir::remove_tree_under(parent, &self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageKind;
    use crate::keygroup::key_group_range;

    fn target(job: &Path, checkpoint: u64, key_groups: Range<u16>, last_completed: Option<u64>) -> SnapshotTarget {
        let dir = job.join(format!("chk-{checkpoint}"));
        std::fs::create_dir_all(&dir).unwrap();
        SnapshotTarget {
            checkpoint,
            storage: StorageKind::Filesystem,
            dir: Some(dir),
            file_stem: "counter-0".into(),
            max_memory_size: 0,
            key_groups,
            last_completed,
            savepoint: None,
        }
    }

    fn fill(b: &mut RocksDbBackend, keys: std::ops::Range<u32>) {
        for i in keys {
            b.increment(&Arc::from(format!("key-{i}").as_str())).unwrap();
        }
    }

    #[test]
    fn a_full_snapshot_restores_into_a_fresh_instance() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = RocksDbBackend::new(tmp.path().join("a"), false);
        fill(&mut b, 0..1000);
        fill(&mut b, 0..10);
        let snap = b.snapshot(&target(&tmp.path().join("job"), 1, 0..128, None)).and_then(PendingSnapshot::complete).unwrap();
        assert_eq!(snap.checkpointed_size, snap.full_size);
        assert!(matches!(&snap.handle, StateHandle::RocksDb { files, .. } if files.iter().all(|f| !f.shared)));
        let mut r = RocksDbBackend::new(tmp.path().join("b"), false);
        r.restore(&[snap.handle], 0..128).unwrap();
        assert_eq!(r.get("key-3").unwrap(), 2);
        assert_eq!(r.get("key-999").unwrap(), 1);
        assert_eq!(r.entries().unwrap().len(), 1000);
    }

    #[test]
    fn incremental_snapshots_reference_the_last_completed_checkpoints_files() {
        let tmp = tempfile::tempdir().unwrap();
        let job = tmp.path().join("job");
        let mut b = RocksDbBackend::new(tmp.path().join("a"), true);
        fill(&mut b, 0..50_000);
        let one = b.snapshot(&target(&job, 1, 0..128, None)).and_then(PendingSnapshot::complete).unwrap();
        fill(&mut b, 0..3);
        // Checkpoint 1 not known complete: nothing may be referenced, everything is uploaded again.
        let two = b.snapshot(&target(&job, 2, 0..128, None)).and_then(PendingSnapshot::complete).unwrap();
        assert_eq!(two.checkpointed_size, two.full_size);
        fill(&mut b, 0..3);
        let three = b.snapshot(&target(&job, 3, 0..128, Some(2))).and_then(PendingSnapshot::complete).unwrap();
        assert!(three.checkpointed_size * 10 < three.full_size, "a small delta: {} of {}", three.checkpointed_size, three.full_size);
        let shared = |s: &Snapshot| s.handle.shared_files().cloned().collect::<Vec<_>>();
        let new: Vec<_> = shared(&three).into_iter().filter(|p| !shared(&two).contains(p)).collect();
        assert_eq!(new.len(), 1, "only the SST flushed for checkpoint 3 is uploaded: {new:?}");
        assert!(shared(&two).iter().any(|p| shared(&three).contains(p)), "checkpoint 3 shares files with 2");
        assert!(!shared(&one).iter().any(|p| shared(&three).contains(p)), "and none with 1, which was never confirmed");
        let mut r = RocksDbBackend::new(tmp.path().join("b"), true);
        r.restore(&[three.handle], 0..128).unwrap();
        assert_eq!(r.get("key-0").unwrap(), 3);
    }

    #[test]
    fn other_key_groups_restore_entry_by_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let mut whole = RocksDbBackend::new(tmp.path().join("a"), false);
        fill(&mut whole, 0..200);
        let snap = whole.snapshot(&target(&tmp.path().join("job"), 1, 0..128, None)).and_then(PendingSnapshot::complete).unwrap();
        let mut total = 0;
        for s in 0..2 {
            let mut half = RocksDbBackend::new(tmp.path().join(format!("h{s}")), false);
            half.restore(std::slice::from_ref(&snap.handle), key_group_range(s, 2)).unwrap();
            total += half.entries().unwrap().len();
        }
        assert_eq!(total, 200, "each key lands in exactly one half");
    }

    // Catches a RocksDB restore that reads the heap's native files (the old backend switch):
    // Flink refuses another backend's checkpoint with StateUtil's message.
    #[test]
    fn a_heap_checkpoint_is_refused_with_flinks_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let mut heap = super::super::hashmap::HashMapBackend::default();
        heap.put(&Arc::from("x"), 41).unwrap();
        let heap_snap = heap.snapshot(&target(&tmp.path().join("job2"), 1, 0..128, None)).and_then(PendingSnapshot::complete).unwrap();
        let e = RocksDbBackend::new(tmp.path().join("r"), false).restore(&[heap_snap.handle], 0..128).unwrap_err();
        assert!(matches!(e, StateError::UnexpectedHandle { .. }), "{e}");
        assert!(e.to_string().starts_with("Unexpected state handle type, expected one of: RocksDB files"), "{e}");
    }

    // Catches a canonical savepoint that is RocksDB's files under another name (the old
    // "canonical" copy of SSTs): it must be one key-groups file, which the heap reads, and whose
    // counts come back exact when rescaled into two RocksDB halves.
    #[test]
    fn a_canonical_savepoint_is_one_key_groups_file_both_backends_read() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = RocksDbBackend::new(tmp.path().join("a"), true);
        fill(&mut b, 0..500);
        fill(&mut b, 0..7);
        let mut t = target(&tmp.path().join("sp"), 1, 0..128, None);
        t.savepoint = Some(crate::state::SavepointFormat::Canonical);
        let snap = b.snapshot(&t).and_then(PendingSnapshot::complete).unwrap();
        let StateHandle::Canonical { path, .. } = &snap.handle else { panic!("a canonical handle, got {:?}", snap.handle) };
        let (header, entries) = super::super::canonical::read(path, snap.handle.size()).unwrap();
        assert_eq!((header.written_by.as_str(), entries.len()), ("rocksdb", 500));
        let mut heap = super::super::hashmap::HashMapBackend::default();
        heap.restore(std::slice::from_ref(&snap.handle), 0..128).unwrap();
        assert_eq!((heap.entries().unwrap().len(), heap.get("key-3").unwrap(), heap.get("key-99").unwrap()), (500, 2, 1));
        let mut total = 0;
        for s in 0..2 {
            let mut half = RocksDbBackend::new(tmp.path().join(format!("h{s}")), false);
            half.restore(std::slice::from_ref(&snap.handle), key_group_range(s, 2)).unwrap();
            total += half.entries().unwrap().iter().map(|(_, v)| v).sum::<u64>();
        }
        assert_eq!(total, 507);
    }

    #[test]
    fn a_missing_file_fails_the_restore_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = RocksDbBackend::new(tmp.path().join("a"), false);
        fill(&mut b, 0..10);
        let snap = b.snapshot(&target(&tmp.path().join("job"), 1, 0..128, None)).and_then(PendingSnapshot::complete).unwrap();
        let StateHandle::RocksDb { files, .. } = &snap.handle else { panic!("a RocksDB handle") };
        let sst = files.iter().find(|f| f.name.ends_with(".sst")).unwrap();
        std::fs::remove_file(&sst.path).unwrap();
        let e = RocksDbBackend::new(tmp.path().join("b"), false).restore(&[snap.handle.clone()], 0..128).unwrap_err();
        assert!(e.to_string().contains(&sst.path.display().to_string()), "{e}");
    }

    #[test]
    fn dropping_the_backend_removes_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("instance");
        let mut b = RocksDbBackend::new(dir.clone(), false);
        fill(&mut b, 0..3);
        assert!(dir.join("db").is_dir());
        drop(b);
        assert!(!dir.exists());
    }
}
