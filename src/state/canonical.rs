//! The canonical savepoint format: one backend-independent layout of keyed state that both
//! backends write for a canonical savepoint and both read on restore, so that a job can move from
//! `hashmap` to `rocksdb` and back (Flink 2's `SavepointFormatType.CANONICAL`, "a canonical,
//! common for all state backends format. It lets you switch state backends",
//! SavepointFormatType.java:32; FLINK-20976, FLIP-203).
//!
//! In Flink both backends hand their state to one writer: `HeapKeyedStateBackend.savepoint()`
//! (HeapKeyedStateBackend.java:508-517) and `RocksDBKeyedStateBackend.savepoint()`
//! (RocksDBKeyedStateBackend.java:705-711) return `SavepointResources` that
//! `SavepointSnapshotStrategy` (SavepointSnapshotStrategy.java:69-73) writes with
//! `FullSnapshotAsyncWriter`: per key group its start offset, then its key/value pairs, key
//! groups in order, `END_OF_KEY_GROUP_MARK` = 0xFFFF (FullSnapshotAsyncWriter.java:135-231,
//! FullSnapshotUtil). The restore side is the backend's own: the heap builder picks
//! `HeapSavepointRestoreOperation` for a `SavepointKeyedStateHandle`
//! (HeapKeyedStateBackendBuilder.java:148-149), RocksDB its full restore for anything not
//! incremental (RocksDBKeyedStateBackendBuilder.java:547-548, :598). ckptlab does the same with
//! one writer ([`encode`]) and one reader ([`decode`]) here; neither backend reads the other's
//! native files.
//!
//! Layout, version 1 (all integers big endian):
//!
//! ```text
//! "ckptlab-keygroups\n"                magic
//! u32  format version                  (CANONICAL_FORMAT_VERSION)
//! u8 n, n bytes                        the backend that wrote it ("hashmap" | "rocksdb")
//! u16 first, u16 end                   the key groups the subtask owned (end exclusive)
//! per key group with entries, ascending:
//!   u16 key group, u32 entries, then per entry in key order: u32 key length, key (UTF-8), u64 count
//! u16 0xFFFF                           end of the key groups (Flink's END_OF_KEY_GROUP_MARK)
//! u64  FNV-64 of every byte before it
//! ```

use std::ops::Range;
use std::path::Path;

/// The version of the layout above that this ckptlab writes and reads.
pub const CANONICAL_FORMAT_VERSION: u32 = 1;

const MAGIC: &[u8] = b"ckptlab-keygroups\n";
/// Flink's `FullSnapshotUtil.END_OF_KEY_GROUP_MARK` (no key group is 0xFFFF: at most 32768).
const END_OF_KEY_GROUPS: u16 = 0xFFFF;

/// Why bytes are not a canonical savepoint file: told with the file's name as a corrupt file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("not a ckptlab canonical savepoint file (bad magic)")]
    BadMagic,
    #[error("canonical format version {found}, this ckptlab reads version {CANONICAL_FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("truncated: {what} missing at byte {at}")]
    Truncated { what: &'static str, at: usize },
    #[error("checksum mismatch (FNV-64 {computed:016x} where the file recorded {recorded:016x})")]
    Checksum { computed: u64, recorded: u64 },
    #[error("the writing backend's name is not UTF-8")]
    BackendNotUtf8,
    #[error("key group {group} lies outside the file's range {first}..{end}, or comes out of order")]
    KeyGroup { group: u16, first: u16, end: u16 },
    #[error("a key in key group {group} is not UTF-8")]
    KeyNotUtf8 { group: u16 },
    #[error("keys of key group {group} are not in order")]
    Unsorted { group: u16 },
    #[error("{0} bytes after the end mark")]
    Trailing(usize),
}

/// What a canonical file says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalHeader {
    pub version: u32,
    /// `state.backend.type` of the subtask that wrote it.
    pub written_by: String,
    pub key_groups: Range<u16>,
}

/// Encodes one subtask's state; `entries` are (key group, key, count), in any order.
pub fn encode(written_by: &str, key_groups: Range<u16>, mut entries: Vec<(u16, &str, u64)>) -> Vec<u8> {
    entries.sort_unstable();
    let mut out = Vec::with_capacity(64 + entries.iter().map(|(_, k, _)| k.len() + 12).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&CANONICAL_FORMAT_VERSION.to_be_bytes());
    let name = &written_by.as_bytes()[..written_by.len().min(255)];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&key_groups.start.to_be_bytes());
    out.extend_from_slice(&key_groups.end.to_be_bytes());
    let mut i = 0;
    while i < entries.len() {
        let group = entries[i].0;
        let n = entries[i..].iter().take_while(|(g, _, _)| *g == group).count();
        out.extend_from_slice(&group.to_be_bytes());
        out.extend_from_slice(&(n as u32).to_be_bytes());
        for (_, key, count) in &entries[i..i + n] {
            out.extend_from_slice(&(key.len() as u32).to_be_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&count.to_be_bytes());
        }
        i += n;
    }
    out.extend_from_slice(&END_OF_KEY_GROUPS.to_be_bytes());
    let sum = super::Fnv64::of(&out);
    out.extend_from_slice(&sum.to_be_bytes());
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CanonicalError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or(CanonicalError::Truncated { what, at: self.at })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, CanonicalError> {
        Ok(u16::from_be_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, CanonicalError> {
        Ok(u32::from_be_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, CanonicalError> {
        Ok(u64::from_be_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
}

/// Decodes a canonical file: its header and every (key group, key, count), checked first
/// against its checksum, then for order and range.
pub fn decode(bytes: &[u8]) -> Result<(CanonicalHeader, Vec<(u16, String, u64)>), CanonicalError> {
    if !bytes.starts_with(MAGIC) {
        return Err(CanonicalError::BadMagic);
    }
    if bytes.len() < MAGIC.len() + 8 {
        return Err(CanonicalError::Truncated { what: "header", at: bytes.len() });
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let recorded = u64::from_be_bytes(sum.try_into().expect("8 bytes"));
    let computed = super::Fnv64::of(body);
    let mut r = Reader { bytes: body, at: MAGIC.len() };
    let version = r.u32("format version")?;
    // The version is told before the checksum: a newer ckptlab's file is not "damaged".
    if version != CANONICAL_FORMAT_VERSION {
        return Err(CanonicalError::Version { found: version });
    }
    if computed != recorded {
        return Err(CanonicalError::Checksum { computed, recorded });
    }
    let n = r.take(1, "backend name length")?[0] as usize;
    let written_by = std::str::from_utf8(r.take(n, "backend name")?).map_err(|_| CanonicalError::BackendNotUtf8)?.to_string();
    let (first, end) = (r.u16("first key group")?, r.u16("end key group")?);
    let mut entries = Vec::new();
    let mut last_group: Option<u16> = None;
    loop {
        let group = r.u16("key group")?;
        if group == END_OF_KEY_GROUPS {
            break;
        }
        if group < first || group >= end || last_group.is_some_and(|g| g >= group) {
            return Err(CanonicalError::KeyGroup { group, first, end });
        }
        last_group = Some(group);
        let count = r.u32("entry count")?;
        let start = entries.len();
        for _ in 0..count {
            let len = r.u32("key length")? as usize;
            let key = std::str::from_utf8(r.take(len, "key")?).map_err(|_| CanonicalError::KeyNotUtf8 { group })?.to_string();
            let value = r.u64("count")?;
            entries.push((group, key, value));
        }
        if entries[start..].windows(2).any(|w| w[0].1 >= w[1].1) {
            return Err(CanonicalError::Unsorted { group });
        }
    }
    if r.at != body.len() {
        return Err(CanonicalError::Trailing(body.len() - r.at));
    }
    Ok((CanonicalHeader { version, written_by, key_groups: first..end }, entries))
}

/// Reads and decodes the canonical file of a handle, checked first (regular file, its recorded
/// size), every failure naming the file.
pub fn read(path: &Path, size: u64) -> Result<(CanonicalHeader, Vec<(u16, String, u64)>), super::StateError> {
    super::check_file(path, size)?;
    let shown = || path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| super::StateError::Read { path: shown(), message: e.to_string() })?;
    decode(&bytes).map_err(|e| super::StateError::Corrupt { path: shown(), message: e.to_string() })
}

/// The header of a canonical file, read from its first bytes only (for `ckptlab inspect`, after
/// [`read`] checked the whole file).
pub fn read_header(path: &Path) -> Result<CanonicalHeader, super::StateError> {
    use std::io::Read;
    let shown = || path.display().to_string();
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take((MAGIC.len() + 4 + 1 + 255 + 4) as u64).read_to_end(&mut head))
        .map_err(|e| super::StateError::Read { path: shown(), message: e.to_string() })?;
    let corrupt = |e: CanonicalError| super::StateError::Corrupt { path: shown(), message: e.to_string() };
    if !head.starts_with(MAGIC) {
        return Err(corrupt(CanonicalError::BadMagic));
    }
    let mut r = Reader { bytes: &head, at: MAGIC.len() };
    let version = r.u32("format version").map_err(corrupt)?;
    let n = r.take(1, "backend name length").map_err(corrupt)?[0] as usize;
    let written_by = String::from_utf8_lossy(r.take(n, "backend name").map_err(corrupt)?).into_owned();
    let (first, end) = (r.u16("first key group").map_err(corrupt)?, r.u16("end key group").map_err(corrupt)?);
    Ok(CanonicalHeader { version, written_by, key_groups: first..end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_decodes_to_its_sorted_entries_and_header() {
        let bytes = encode("rocksdb", 0..64, vec![(3, "b", 2), (1, "z", 1), (3, "a", 7)]);
        let (h, e) = decode(&bytes).unwrap();
        assert_eq!(h, CanonicalHeader { version: CANONICAL_FORMAT_VERSION, written_by: "rocksdb".into(), key_groups: 0..64 });
        assert_eq!(e, vec![(1, "z".into(), 1), (3, "a".into(), 7), (3, "b".into(), 2)]);
        let (_, empty) = decode(&encode("hashmap", 64..128, Vec::new())).unwrap();
        assert!(empty.is_empty());
    }

    // Catches a reader that trusts damaged bytes: a flipped bit anywhere, a cut tail, or a newer
    // version each fail, naming what is wrong.
    #[test]
    fn damage_and_other_versions_are_refused() {
        let bytes = encode("hashmap", 0..128, vec![(5, "k", 9)]);
        for i in MAGIC.len() + 4..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(decode(&b).is_err(), "a flip at byte {i} went unnoticed");
        }
        assert!(matches!(decode(&bytes[..bytes.len() - 3]), Err(_)));
        let mut v2 = bytes.clone();
        v2[MAGIC.len() + 3] = 2;
        assert_eq!(decode(&v2), Err(CanonicalError::Version { found: 2 }));
        assert_eq!(decode(b"ckptlab-heap 1\n0\n{}"), Err(CanonicalError::BadMagic));
    }
}
