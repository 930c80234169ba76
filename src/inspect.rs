//! `ckptlab inspect PATH`: what is inside a retained checkpoint or a savepoint, as Flink's State
//! Processor API would let one read it: its id, type, time and job, the source offsets per
//! partition, per counter subtask the key groups it held and their entries (key -> count, the
//! first N and the totals), and its sizes (state, shared files an incremental checkpoint
//! references, channel state of an unaligned one). Text or `--json`.
//!
//! It only reads: the snapshot's files are copied nowhere but a private temporary directory
//! (RocksDB opens a copy read-only) and nothing of the snapshot changes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::format_size;
use crate::keygroup::{key_group_range, MAX_PARALLELISM};
use crate::state::storage::{find_snapshot, read_state, CheckpointMetadata, JobShape, RestoreError, METADATA};
use crate::config::BackendKind;
use crate::state::StateHandle;
use strum::IntoEnumIterator;

/// Entries shown per subtask unless `--entries` says otherwise.
pub const DEFAULT_ENTRIES: usize = 10;

/// Why a snapshot cannot be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Not a snapshot, a `_metadata` that names files outside it, or state that fails its checks.
    #[error(transparent)]
    Find(#[from] RestoreError),
}

/// Everything `inspect` tells about a snapshot (the `--json` object).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Inspection {
    /// The directory holding `_metadata`.
    pub dir: String,
    /// `checkpoint` or `savepoint`.
    pub kind: String,
    /// `canonical` (any backend restores it) or `native` (only the backend that wrote it).
    pub format: String,
    /// `state.backend.type` of the job that took it (`None`: not recorded).
    pub backend: Option<String>,
    /// The backends that can restore it (Flink: a canonical savepoint into any, a checkpoint or
    /// native savepoint only into its own).
    pub restorable_into: Vec<String>,
    /// `_metadata`'s `format_version` (2: Flink's key groups).
    pub format_version: u32,
    pub id: u64,
    /// When it completed, UTC (`None`: written by a ckptlab that did not record it).
    pub completed_at: Option<String>,
    pub job_id: String,
    /// The job that took it (`None`: written before ckptlab recorded it).
    pub job: Option<JobShape>,
    pub mode: String,
    /// Subtasks of the keyed operator when it was taken.
    pub parallelism: usize,
    pub max_parallelism: u16,
    /// Per partition, the next offset its source reads after a restore.
    pub offsets: Vec<PartitionOffset>,
    pub subtasks: Vec<SubtaskState>,
    pub sizes: Sizes,
    /// Keys and the sum of their counts over all subtasks.
    pub total_keys: u64,
    pub total_count: u64,
    /// Transactional sink lines staged and not yet committed when it was taken.
    pub staged_output_lines: usize,
    /// The auditor's record beside `_metadata` (what a restored run is judged from).
    #[serde(default)]
    pub auditor: AuditorRecordState,
}

/// Whether the snapshot carries the auditor's record, and what it holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum AuditorRecordState {
    /// None: a restored run is judged from the restored point on.
    #[default]
    Absent,
    Present(crate::audit::RecordTotals),
    /// There, but it cannot be used (the reason).
    Unusable { reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionOffset {
    pub partition: u32,
    pub offset: u64,
}

/// One keyed subtask's part of the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubtaskState {
    pub subtask: usize,
    /// Key groups `first..end` (end exclusive).
    pub key_groups: [u16; 2],
    /// `heap` (one file), `rocksdb` (its SST and manifest files) or `canonical` (one file of key
    /// groups, any backend's).
    pub format: String,
    /// A canonical file's own format version and the backend that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
    pub keys: u64,
    pub total_count: u64,
    /// Bytes of its state (all its files, shared ones included).
    pub state_bytes: u64,
    pub files: usize,
    /// Files an incremental checkpoint references in `shared/` (uploaded by it or before it).
    pub shared_files: usize,
    pub shared_bytes: u64,
    /// The first entries in key order (key, count).
    pub first: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Sizes {
    pub state_bytes: u64,
    /// Files only this snapshot owns.
    pub exclusive_bytes: u64,
    /// Shared files it references (incremental RocksDB checkpoints; a savepoint has none).
    pub shared_bytes: u64,
    pub shared_files: usize,
    /// In-flight records persisted by an unaligned checkpoint (their JSON in `_metadata`).
    pub channel_state_bytes: u64,
    pub channel_state_records: usize,
    pub metadata_bytes: u64,
}

fn utc(ms: u64) -> Option<String> {
    if ms == 0 {
        return None;
    }
    chrono::DateTime::from_timestamp_millis(ms as i64).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// Reads the snapshot at `path`.
pub fn inspect(path: &Path, entries_shown: usize) -> Result<Inspection, InspectError> {
    let found = find_snapshot(path)?;
    let m: &CheckpointMetadata = &found.metadata;
    let parallelism = m.job.as_ref().map_or(m.keyed.len(), |j| j.parallelism).max(1);
    let mut sizes = Sizes { metadata_bytes: std::fs::metadata(found.dir.join(METADATA)).map_or(0, |md| md.len()), ..Sizes::default() };
    let mut shared_seen = BTreeSet::new();
    let mut subtasks = Vec::new();
    let (mut total_keys, mut total_count) = (0u64, 0u64);
    // The same read and checks as a restore makes before its job starts.
    read_state(&found, |i, handle, entries| {
        let (format, key_groups, files, shared): (&str, _, usize, Vec<(PathBuf, u64)>) = match handle {
            StateHandle::RocksDb { key_groups, files, .. } => {
                ("rocksdb", key_groups.clone(), files.len(), files.iter().filter(|f| f.shared).map(|f| (f.path.clone(), f.size)).collect())
            }
            StateHandle::Canonical { key_groups, .. } => ("canonical", key_groups.clone(), 1, Vec::new()),
            StateHandle::Memory { .. } | StateHandle::File { .. } => ("heap", key_group_range(i, parallelism), 1, Vec::new()),
        };
        let header = match handle {
            StateHandle::Canonical { path, .. } => crate::state::canonical::read_header(path).ok(),
            StateHandle::RocksDb { .. } | StateHandle::Memory { .. } | StateHandle::File { .. } => None,
        };
        let mut entries: Vec<(String, u64)> = entries.into_iter().map(|(_, k, v)| (k, v)).collect();
        entries.sort_unstable();
        let count: u64 = entries.iter().map(|(_, v)| v).sum();
        let shared_bytes: u64 = shared.iter().map(|(_, s)| s).sum();
        for (p, s) in &shared {
            if shared_seen.insert(p.clone()) {
                sizes.shared_bytes += s;
                sizes.shared_files += 1;
            }
        }
        sizes.state_bytes += handle.size();
        sizes.exclusive_bytes += handle.size() - shared_bytes.min(handle.size());
        total_keys += entries.len() as u64;
        total_count += count;
        subtasks.push(SubtaskState {
            subtask: i,
            key_groups: [key_groups.start, key_groups.end],
            format: format.into(),
            canonical_version: header.as_ref().map(|h| h.version),
            written_by: header.map(|h| h.written_by),
            keys: entries.len() as u64,
            total_count: count,
            state_bytes: handle.size(),
            files,
            shared_files: shared.len(),
            shared_bytes,
            first: entries.into_iter().take(entries_shown).collect(),
        });
    })?;
    for c in &m.channel_state {
        sizes.channel_state_records += c.records.len();
        sizes.channel_state_bytes += serde_json::to_vec(&c.records).map_or(0, |b| b.len() as u64);
    }
    let backend = m.job.as_ref().map(|j| <&str>::from(j.backend)).or_else(|| m.keyed.iter().find_map(|h| h.native_backend()).map(<&str>::from));
    let restorable_into = BackendKind::iter()
        .filter(|b| m.keyed.iter().all(|h| h.check_restorable_by(*b).is_ok()))
        .map(|b| <&str>::from(b).to_string())
        .collect();
    Ok(Inspection {
        dir: found.dir.display().to_string(),
        kind: m.kind.label().into(),
        format: m.format().name().into(),
        backend: backend.map(str::to_string),
        restorable_into,
        format_version: m.job.as_ref().map_or(1, |j| j.format_version),
        id: m.checkpoint,
        completed_at: utc(m.completed_at_ms),
        job_id: m.job_id.clone(),
        job: m.job.clone(),
        mode: m.mode.flink_name().into(),
        parallelism,
        max_parallelism: m.job.as_ref().map_or(MAX_PARALLELISM, |j| j.max_parallelism),
        offsets: m.offsets.iter().map(|(partition, offset)| PartitionOffset { partition: *partition, offset: *offset }).collect(),
        subtasks,
        sizes,
        total_keys,
        total_count,
        staged_output_lines: m.staged_output.len(),
        auditor: match crate::audit::AuditRecord::read(&found.dir) {
            Ok(None) => AuditorRecordState::Absent,
            Ok(Some(r)) => {
                let bytes = std::fs::metadata(found.dir.join(crate::audit::RECORD_FILE)).map_or(0, |m| m.len());
                AuditorRecordState::Present(r.totals(bytes))
            }
            Err(e) => AuditorRecordState::Unusable { reason: e.to_string() },
        },
    })
}

/// The text `ckptlab inspect` prints.
pub fn render(i: &Inspection) -> String {
    let mut out = String::new();
    let job = i.job.as_ref();
    out.push_str(&format!("{} {} of job {} ({})\n", i.kind, i.id, job.map_or("(name not recorded)", |j| j.name.as_str()), i.job_id));
    out.push_str(&format!("  path          {}\n", i.dir));
    out.push_str(&format!("  completed     {}\n", i.completed_at.as_deref().unwrap_or("(time not recorded)")));
    let canonical = i.subtasks.iter().find_map(|t| t.canonical_version.map(|v| (v, t.written_by.clone().unwrap_or_default())));
    out.push_str(&format!(
        "  format        {}{}, written by {}; restorable into {}; _metadata format version {}\n",
        i.format,
        canonical.as_ref().map_or(String::new(), |(v, _)| format!(" (key groups of key/value pairs, canonical format version {v})")),
        i.backend.as_deref().or(canonical.as_ref().map(|(_, b)| b.as_str())).unwrap_or("(not recorded)"),
        if i.restorable_into.is_empty() { "nothing".to_string() } else { i.restorable_into.join(" or ") },
        i.format_version
    ));
    out.push_str(&format!(
        "  job           {}, parallelism {}, max parallelism {}{}\n",
        i.mode,
        i.parallelism,
        i.max_parallelism,
        job.map_or(String::new(), |j| format!(", key-by {:?}, state.backend.type {:?}", j.key_by, j.backend).to_lowercase())
    ));
    let offsets: Vec<String> = i.offsets.iter().map(|o| format!("p{} {}", o.partition, o.offset)).collect();
    out.push_str(&format!(
        "  offsets       {}{} (the next offset each partition's source reads)\n",
        job.map_or(String::new(), |j| format!("{}: ", j.topic)),
        if offsets.is_empty() { "none".to_string() } else { offsets.join(", ") }
    ));
    let s = &i.sizes;
    out.push_str(&format!(
        "  sizes         state {} (exclusive {}, shared {} in {} files), channel state {} ({} records), _metadata {}\n",
        format_size(s.state_bytes),
        format_size(s.exclusive_bytes),
        format_size(s.shared_bytes),
        s.shared_files,
        format_size(s.channel_state_bytes),
        s.channel_state_records,
        format_size(s.metadata_bytes)
    ));
    if i.staged_output_lines > 0 {
        out.push_str(&format!("  sink          {} staged output lines (transactional, committed on restore)\n", i.staged_output_lines));
    }
    let record = crate::audit::RECORD_FILE;
    out.push_str(&match &i.auditor {
        AuditorRecordState::Absent => {
            format!("  auditor       no record ({record}): a run restored from it is judged from the restored point on\n")
        }
        AuditorRecordState::Present(t) => format!(
            "  auditor       record {record} ({}): {} keys over {} subtasks, {} records applied, {} lost; a run restored from it is judged whole\n",
            format_size(t.bytes),
            t.keys,
            t.subtasks,
            t.applied,
            t.lost
        ),
        AuditorRecordState::Unusable { reason } => {
            format!("  auditor       record unusable ({reason}): a run restored from it is judged from the restored point on\n")
        }
    });
    out.push('\n');
    let mut table = crate::table::TextTable::new(vec![crate::table::Column::left(); 7]);
    table.row(["subtask", "key groups", "format", "keys", "total", "state", "files (shared)"]);
    for t in &i.subtasks {
        table.row([
            format!("counter[{}]", t.subtask),
            format!("{}..{}", t.key_groups[0], t.key_groups[1]),
            t.format.clone(),
            t.keys.to_string(),
            t.total_count.to_string(),
            format_size(t.state_bytes),
            format!("{} ({})", t.files, t.shared_files),
        ]);
    }
    table.row([
        "TOTAL".into(),
        format!("0..{}", i.max_parallelism),
        String::new(),
        i.total_keys.to_string(),
        i.total_count.to_string(),
        format_size(s.state_bytes),
        String::new(),
    ]);
    out.push_str(&table.render());
    for t in i.subtasks.iter().filter(|t| !t.first.is_empty()) {
        out.push_str(&format!("\ncounter[{}]: first {} of {} keys\n", t.subtask, t.first.len(), t.keys));
        for (k, v) in &t.first {
            out.push_str(&format!("  {k:?} -> {v}\n"));
        }
    }
    out
}
