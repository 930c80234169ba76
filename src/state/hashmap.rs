//! The heap backend (`hashmap`): state in a hash map, snapshots serialized per key group.
//!
//! Native format (checkpoints, native savepoints): a header line `ckptlab-heap 1`, a line with
//! the FNV-64 checksum of the body, then the body as JSON (`{"<key group>": [["key", count],
//! ...]}`), so a damaged file is detected on restore instead of silently restoring wrong counts.
//! A canonical savepoint is written in [`super::canonical`]'s format instead. A restore reads
//! those two only: a RocksDB snapshot is refused with Flink's reason (HeapRestoreOperation.java
//! :118-120 accepts nothing but its own KeyGroupsStateHandle, HeapKeyedStateBackendBuilder.java
//! :148-149 sends a savepoint handle to HeapSavepointRestoreOperation).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use std::io::Write;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use super::{KeyIds, KeyedStateBackend, PendingSnapshot, Snapshot, SnapshotCancellation, SnapshotTarget, StateError, StateHandle};
use crate::config::{BackendKind, StorageKind};
use crate::keygroup::key_group;

const HEADER: &str = "ckptlab-heap 1";

#[derive(Default)]
pub struct HashMapBackend {
    values: FxHashMap<Arc<str>, Entry>,
    /// Each key's id (kept in its entry, so that the counter's one lookup yields it too).
    key_ids: KeyIds,
}

/// A key's count and its id in the backend's [`KeyIds`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    count: u64,
    id: u32,
}

impl HashMapBackend {
    fn insert_new(&mut self, key: Arc<str>, count: u64) -> u32 {
        let id = self.key_ids.push(key.clone());
        self.values.insert(key, Entry { count, id });
        id
    }
}

impl KeyedStateBackend for HashMapBackend {
    fn name(&self) -> &'static str {
        "hashmap"
    }

    fn get(&mut self, key: &str) -> Result<u64, StateError> {
        Ok(self.values.get(key).map_or(0, |e| e.count))
    }

    fn put(&mut self, key: &Arc<str>, value: u64) -> Result<(), StateError> {
        match self.values.get_mut(&**key) {
            Some(e) => e.count = value,
            None => {
                self.insert_new(key.clone(), value);
            }
        }
        Ok(())
    }

    fn increment(&mut self, key: &Arc<str>) -> Result<u64, StateError> {
        self.increment_with_id(key).map(|(count, _)| count)
    }

    #[inline]
    fn increment_with_id(&mut self, key: &Arc<str>) -> Result<(u64, u32), StateError> {
        if let Some(e) = self.values.get_mut(&**key) {
            e.count += 1;
            return Ok((e.count, e.id));
        }
        Ok((1, self.insert_new(key.clone(), 1)))
    }

    fn key_ids(&self) -> &KeyIds {
        &self.key_ids
    }

    fn snapshot(&mut self, target: &SnapshotTarget) -> Result<PendingSnapshot, StateError> {
        // The synchronous part: a copy of the map (keys are shared `Arc`s, so this copies
        // pointers and counts), standing in for Flink's copy-on-write state table.
        let sync_start = Instant::now();
        let values = self.values.clone();
        let sync_duration = sync_start.elapsed();
        let target = target.clone();
        let write = move |cancel: &SnapshotCancellation| {
            let async_start = Instant::now();
            let canonical = target.canonical();
            let bytes = if canonical {
                let entries = values.iter().map(|(k, e)| (key_group(k), &**k, e.count)).collect();
                super::canonical::encode(self_name(), target.key_groups.clone(), entries)
            } else {
                encode(&values)
            };
            drop(values);
            let size = bytes.len() as u64;
            let (handle, written) = match (target.storage, &target.dir) {
                (StorageKind::Filesystem, Some(dir)) => {
                    let path = dir.join(&target.file_stem);
                    if cancel.is_cancelled() {
                        return Err(StateError::Cancelled);
                    }
                    write_file(&path, &bytes)?;
                    let handle = if canonical {
                        StateHandle::Canonical { path: path.clone(), size, key_groups: target.key_groups.clone() }
                    } else {
                        StateHandle::File { path: path.clone(), size }
                    };
                    (handle, vec![path])
                }
                _ => {
                    if size > target.max_memory_size {
                        return Err(StateError::TooLarge { size, max: target.max_memory_size });
                    }
                    (StateHandle::Memory { bytes: Arc::new(bytes), size }, Vec::new())
                }
            };
            Ok(Snapshot {
                handle,
                checkpointed_size: size,
                full_size: size,
                sync_duration,
                async_duration: async_start.elapsed(),
                uploads: if written.is_empty() { Vec::new() } else { vec![size] },
                written_under: target
                    .dir
                    .as_deref()
                    .and_then(|chk| chk.parent())
                    .map(|job| job.to_path_buf())
                    .filter(|_| !written.is_empty()),
                written,
            })
        };
        Ok(PendingSnapshot { sync_duration, write: Box::new(write) })
    }

    fn restore(&mut self, handles: &[StateHandle], key_groups: Range<u16>) -> Result<(), StateError> {
        self.values.clear();
        // The keys are numbered anew, in a new space (ids from before name other keys now).
        self.key_ids.clear();
        for handle in handles {
            handle.check_restorable_by(BackendKind::HashMap)?;
        }
        for handle in handles {
            let entries = match handle {
                StateHandle::Canonical { path, size, .. } => super::canonical::read(path, *size)?.1,
                native => read_entries(native)?,
            };
            for (kg, k, v) in entries {
                if key_groups.contains(&kg) {
                    self.put(&Arc::from(k.as_str()), v)?;
                }
            }
        }
        Ok(())
    }

    fn entries(&mut self) -> Result<Vec<(Arc<str>, u64)>, StateError> {
        Ok(self.values.iter().map(|(k, e)| (k.clone(), e.count)).collect())
    }
}

/// Every (key group, key, count) of a heap snapshot in its native format (`ckptlab inspect`, and
/// this backend's restore). A file is checked (regular, its recorded size) before it is opened,
/// and its checksum before its body is parsed.
pub fn read_entries(handle: &StateHandle) -> Result<Vec<(u16, String, u64)>, StateError> {
    let (bytes, path) = match handle {
        StateHandle::Memory { bytes, .. } => (bytes.as_ref().clone(), "jobmanager memory".to_string()),
        StateHandle::File { path, size } => {
            super::check_file(path, *size)?;
            let bytes = std::fs::read(path).map_err(|e| StateError::Read { path: path.display().to_string(), message: e.to_string() })?;
            (bytes, path.display().to_string())
        }
        other => {
            return Err(StateError::UnexpectedHandle { expected: vec![super::HEAP_HANDLE], found: other.kind_name() });
        }
    };
    let groups = decode(&bytes).map_err(|e| StateError::Corrupt { path, message: e.to_string() })?;
    Ok(groups.into_iter().flat_map(|(kg, entries)| entries.into_iter().map(move |(k, v)| (kg, k, v))).collect())
}

fn encode(values: &FxHashMap<Arc<str>, Entry>) -> Vec<u8> {
    let mut groups: BTreeMap<u16, Vec<(&str, u64)>> = BTreeMap::new();
    for (k, e) in values {
        groups.entry(key_group(k)).or_default().push((k, e.count));
    }
    for entries in groups.values_mut() {
        entries.sort_unstable();
    }
    let body = serde_json::to_vec(&groups).expect("maps of strings and numbers serialize");
    let mut out = format!("{HEADER}\n{:016x}\n", fnv64(&body)).into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Why bytes are not a heap snapshot in its native format (told as the file's corruption).
#[derive(Debug, thiserror::Error)]
pub enum HeapFormatError {
    #[error("not a ckptlab heap snapshot (bad header)")]
    Header,
    #[error("bad checksum line")]
    ChecksumLine,
    #[error("checksum mismatch")]
    Checksum,
    #[error("bad body: {0}")]
    Body(#[from] serde_json::Error),
}

fn decode(bytes: &[u8]) -> Result<BTreeMap<u16, Vec<(String, u64)>>, HeapFormatError> {
    let header_len = HEADER.len() + 1;
    // Every byte outside the body is checked too: a flipped line break is damage as well.
    if bytes.len() < header_len + 17 || &bytes[..HEADER.len()] != HEADER.as_bytes() || bytes[HEADER.len()] != b'\n' {
        return Err(HeapFormatError::Header);
    }
    if bytes[header_len + 16] != b'\n' {
        return Err(HeapFormatError::ChecksumLine);
    }
    let sum_text = std::str::from_utf8(&bytes[header_len..header_len + 16]).map_err(|_| HeapFormatError::ChecksumLine)?;
    let sum = u64::from_str_radix(sum_text, 16).map_err(|_| HeapFormatError::ChecksumLine)?;
    let body = &bytes[header_len + 17..];
    if fnv64(body) != sum {
        return Err(HeapFormatError::Checksum);
    }
    Ok(serde_json::from_slice(body)?)
}

fn self_name() -> &'static str {
    BackendKind::HashMap.into()
}

fn fnv64(bytes: &[u8]) -> u64 {
    super::Fnv64::of(bytes)
}

/// Writes a new file: never over an existing one, and never into a directory that is gone (the
/// checkpoint was discarded while its snapshot was being written: it must not come back).
fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), StateError> {
    let err = |e: std::io::Error| StateError::Write { path: path.display().to_string(), message: e.to_string() };
    let mut f = crate::workdir::create_private_file(path).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_data().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygroup::key_group_range;

    fn target(storage: StorageKind, dir: Option<std::path::PathBuf>, max: u64) -> SnapshotTarget {
        SnapshotTarget {
            checkpoint: 1,
            storage,
            dir,
            file_stem: "counter-0".into(),
            max_memory_size: max,
            key_groups: 0..128,
            last_completed: None,
            savepoint: None,
        }
    }

    #[test]
    fn snapshot_restores_only_owned_key_groups() {
        let mut b = HashMapBackend::default();
        for (i, k) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            b.put(&Arc::from(*k), i as u64 + 1).unwrap();
        }
        let snap = b.snapshot(&target(StorageKind::JobManager, None, 1 << 20)).and_then(PendingSnapshot::complete).unwrap();
        let mut total = 0;
        for s in 0..2 {
            let mut r = HashMapBackend::default();
            r.restore(std::slice::from_ref(&snap.handle), key_group_range(s, 2)).unwrap();
            for (k, v) in r.entries().unwrap() {
                assert_eq!(b.get(&k).unwrap(), v);
                total += 1;
            }
        }
        assert_eq!(total, 6);
    }

    // Catches a heap canonical savepoint written in the heap's own JSON (or a heap restore that
    // cannot read the shared format): the file is the key-groups format, read back exactly.
    #[test]
    fn a_canonical_savepoint_round_trips_through_the_shared_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = HashMapBackend::default();
        for i in 0..300u64 {
            b.put(&Arc::from(format!("k{i}").as_str()), i + 1).unwrap();
        }
        let mut t = target(StorageKind::Filesystem, Some(dir.path().to_path_buf()), 0);
        t.savepoint = Some(crate::state::SavepointFormat::Canonical);
        let snap = b.snapshot(&t).and_then(PendingSnapshot::complete).unwrap();
        let StateHandle::Canonical { path, .. } = &snap.handle else { panic!("a canonical handle") };
        assert!(std::fs::read(path).unwrap().starts_with(b"ckptlab-keygroups\n"));
        let mut r = HashMapBackend::default();
        r.restore(&[snap.handle.clone()], 0..128).unwrap();
        let mut got = r.entries().unwrap();
        got.sort();
        let mut want = b.entries().unwrap();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn jobmanager_storage_refuses_snapshots_over_the_cap() {
        let mut b = HashMapBackend::default();
        for i in 0..100 {
            b.put(&Arc::from(format!("key-{i}").as_str()), i).unwrap();
        }
        let e = b.snapshot(&target(StorageKind::JobManager, None, 100)).and_then(PendingSnapshot::complete).unwrap_err();
        assert!(matches!(e, StateError::TooLarge { .. }));
        assert!(e.to_string().contains("filesystem"));
    }

    #[test]
    fn corrupt_file_is_detected_on_restore() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = HashMapBackend::default();
        b.put(&Arc::from("a"), 7).unwrap();
        let snap =
            b.snapshot(&target(StorageKind::Filesystem, Some(dir.path().to_path_buf()), 0)).and_then(PendingSnapshot::complete).unwrap();
        let StateHandle::File { path, .. } = &snap.handle else { panic!("file handle expected") };
        let mut bytes = std::fs::read(path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x55;
        std::fs::write(path, bytes).unwrap();
        let e = HashMapBackend::default().restore(&[snap.handle.clone()], 0..128).unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
    }
}
