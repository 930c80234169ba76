//! The durable embedded topic (`source.embedded.dir`): the embedded topic's partitions kept as
//! append-only files, so that quitting and `--restore` resume on the same records (the seed's
//! Kafka kept them too). The default embedded topic stays in memory ([`super::EmbeddedTopic`]).
//!
//! # File format (also read by the Flink job of `ckptlab flink export`: keep it this simple)
//!
//! ```text
//! <dir>/<topic>-<p>.log     one file per partition p = 0, 1, ...
//! ```
//! - One record per line: the record's value in UTF-8, then `\n`. Inside a value, a backslash is
//!   written `\\` and a newline `\n` (backslash, letter n); nothing else is escaped, and no other
//!   backslash sequence may appear.
//! - A record's offset is its line number, counted from 0.
//! - A last line without its final `\n` is a torn write (the process died while appending): it
//!   does not exist. Opening the topic cuts it off, so the next record starts on a line of its own.
//! - Records are only ever appended; nothing rewrites or deletes a line.
//! - `<dir>/<topic>.lock` is held (flock) while a ckptlab process has the topic open: a second
//!   process on the same files is refused rather than interleaving lines.
//!
//! Each append is one `write` to a file opened with `O_APPEND`: it survives the process being
//! killed (the kernel has it), not a power cut (no fsync per record). The records are also kept in
//! memory, as in the in-memory topic, for the sources and the auditor.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use super::topic::{choose_partition, read_log, Topic, TopicError, TopicReader};
use crate::events::{Event, EventBus};

/// The file of partition `p` of `topic` under `dir`.
pub fn partition_path(dir: &Path, topic: &str, p: u32) -> PathBuf {
    dir.join(format!("{topic}-{p}.log"))
}

/// A value as one line of a partition file (with its final `\n`).
pub fn encode_line(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 1);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// Why a line of a partition file is not a value of this format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("`\\{0}` is not an escape of this format (only `\\\\` and `\\n` are)")]
    UnknownEscape(char),
    #[error("a lone `\\` at the end of the line (only `\\\\` and `\\n` are escapes)")]
    LoneBackslash,
}

/// A line of a partition file (without its `\n`) back to the value; `Err` says what is wrong.
pub fn decode_line(line: &str) -> Result<String, DecodeError> {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => return Err(DecodeError::UnknownEscape(other)),
            None => return Err(DecodeError::LoneBackslash),
        }
    }
    Ok(out)
}

/// Reads one partition file: its records, and the length of its whole lines (a torn last line
/// lies beyond it). Errors name the file and the line.
fn read_partition(path: &Path) -> Result<(Vec<Arc<str>>, u64), TopicError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(|e| TopicError::Unavailable(format!("{}: cannot read: {e}", path.display())))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(TopicError::Unavailable(format!("{}: cannot read: {e}", path.display()))),
    }
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut values = Vec::new();
    if whole == 0 {
        return Ok((values, 0));
    }
    // Every line up to the last `\n` (whole lines only; an empty line is an empty record).
    for (i, line) in bytes[..whole - 1].split(|b| *b == b'\n').enumerate() {
        let text =
            std::str::from_utf8(line).map_err(|e| TopicError::Unavailable(format!("{}:{}: not UTF-8 ({e})", path.display(), i + 1)))?;
        let value = decode_line(text).map_err(|m| TopicError::Unavailable(format!("{}:{}: {m}", path.display(), i + 1)))?;
        values.push(Arc::from(value.as_str()));
    }
    Ok((values, whole as u64))
}

struct Partition {
    values: Vec<Arc<str>>,
    file: File,
    path: PathBuf,
}

/// The embedded topic on disk.
pub struct FileLogTopic {
    name: String,
    dir: PathBuf,
    parts: RwLock<Vec<Partition>>,
    next: AtomicU32,
    version: watch::Sender<u64>,
    events: EventBus,
    /// Held for the topic's lifetime: the flock on `<topic>.lock`.
    _lock: Mutex<File>,
    /// The embedded broker's output topic (the Kafka sink's), in memory: it does not outlive the
    /// process as the input topic's files do.
    output: crate::connectors::kafka_sink::output::OutputSlot,
}

impl FileLogTopic {
    /// Opens (or creates) `topic` under `dir`. Existing files keep their partition count, as an
    /// existing Kafka topic does; `partitions` applies to a new topic.
    pub fn open(dir: &Path, topic: &str, partitions: u32, events: EventBus) -> Result<Arc<Self>, TopicError> {
        let unavailable = |what: String| TopicError::Unavailable(format!("source.embedded.dir = {}: {what}", dir.display()));
        if crate::workdir::plain_name(topic).is_none() {
            return Err(unavailable(format!("topic `{topic}` cannot name a file (use letters, digits, `-`, `_`, `.`)")));
        }
        // Records are the user's data: 0700 / 0600 (narrowed by the umask), as checkpoints.
        crate::workdir::create_private_dirs(dir).map_err(|e| unavailable(format!("cannot create it: {e}")))?;
        let lock_path = dir.join(format!("{topic}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| unavailable(format!("cannot open {}: {e}", lock_path.display())))?;
        // An exclusive flock without waiting (std's `try_lock` is flock on Linux): held by the open
        // file description, so a second open in this process is refused too.
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(unavailable(format!("topic `{topic}` is open in another ckptlab process ({} is locked)", lock_path.display())))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(unavailable(format!("cannot lock {}: {e}", lock_path.display()))),
        }
        let existing = (0..).take_while(|p| partition_path(dir, topic, *p).exists()).count() as u32;
        let count = if existing > 0 { existing } else { partitions };
        let mut parts = Vec::new();
        for p in 0..count {
            let path = partition_path(dir, topic, p);
            let (values, whole) = read_partition(&path)?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| TopicError::Unavailable(format!("{}: cannot open for appending: {e}", path.display())))?;
            // A torn last line does not exist: cut it off so the next record starts a line.
            let len = file.metadata().map(|m| m.len()).unwrap_or(whole);
            if len > whole {
                file.set_len(whole)
                    .map_err(|e| TopicError::Unavailable(format!("{}: cannot cut off a torn last line: {e}", path.display())))?;
                tracing::info!("{}: cut off a torn last line ({} bytes)", path.display(), len - whole);
            }
            parts.push(Partition { values, file, path });
        }
        Ok(Arc::new(FileLogTopic {
            name: topic.to_string(),
            dir: dir.to_path_buf(),
            parts: RwLock::new(parts),
            next: AtomicU32::new(0),
            version: watch::channel(0).0,
            events,
            _lock: Mutex::new(lock),
            output: Default::default(),
        }))
    }

    /// The directory the partition files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The file topic's reader: the in-memory copy of the log.
struct FileLogReader(Arc<FileLogTopic>);

impl TopicReader for FileLogReader {
    fn read(&mut self, partition: u32, from: u64, max: usize, out: &mut Vec<Arc<str>>) -> usize {
        self.0.read(partition, from, max, out)
    }
}

impl Topic for FileLogTopic {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_topic(
        &self,
        settings: &crate::connectors::kafka_sink::OutputTopicSettings,
        events: &EventBus,
    ) -> Result<Arc<crate::connectors::kafka_sink::OutputTopic>, crate::connectors::transactions::TxnError> {
        self.output.get_or_make(&settings.topic, || Ok(crate::connectors::kafka_sink::OutputTopic::embedded(settings, events.clone())))
    }

    fn partitions(&self) -> u32 {
        self.parts.read().unwrap_or_else(|e| e.into_inner()).len() as u32
    }

    fn len(&self, partition: u32) -> u64 {
        let parts = self.parts.read().unwrap_or_else(|e| e.into_inner());
        parts.get(partition as usize).map_or(0, |p| p.values.len() as u64)
    }

    fn read(&self, partition: u32, from: u64, max: usize, out: &mut Vec<Arc<str>>) -> usize {
        let parts = self.parts.read().unwrap_or_else(|e| e.into_inner());
        let Some(part) = parts.get(partition as usize) else { return 0 };
        read_log(std::slice::from_ref(&part.values), 0, from, max, out)
    }

    fn produce(&self, value: &str, partition: Option<u32>) -> Result<(u32, u64), TopicError> {
        let mut parts = self.parts.write().unwrap_or_else(|e| e.into_inner());
        let p = choose_partition(&self.name, partition, parts.len() as u32, &self.next)?;
        let part = &mut parts[p as usize];
        // One write of the whole line: the record exists once it returns (and a torn one never).
        part.file
            .write_all(encode_line(value).as_bytes())
            .map_err(|e| TopicError::Unavailable(format!("{}: cannot append: {e}", part.path.display())))?;
        let offset = part.values.len() as u64;
        part.values.push(Arc::from(value));
        drop(parts);
        self.version.send_modify(|v| *v += 1);
        self.events.publish(Event::RecordProduced { partition: p, offset, value: value.to_string() });
        Ok((p, offset))
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn reader(self: Arc<Self>, _assignment: &[(u32, u64)]) -> Box<dyn TopicReader> {
        Box::new(FileLogReader(self))
    }

    fn describe(&self) -> String {
        format!("embedded, on disk in {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus() -> EventBus {
        EventBus::new(tokio::time::Instant::now())
    }

    #[test]
    fn lines_round_trip_backslashes_and_newlines() {
        for v in ["a", "", "x\\y", "two\nlines", "\\n literally", "ü ✓", "end\\"] {
            let line = encode_line(v);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'), "{line:?}");
            assert_eq!(decode_line(&line[..line.len() - 1]).unwrap(), v);
        }
        assert!(decode_line("bad \\t escape").unwrap_err().to_string().contains("\\t"));
    }

    #[tokio::test]
    async fn records_survive_reopening_with_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        {
            let t = FileLogTopic::open(dir.path(), "input-topic", 2, bus()).unwrap();
            assert_eq!(t.produce("a", Some(0)).unwrap(), (0, 0));
            assert_eq!(t.produce("b\nc", Some(0)).unwrap(), (0, 1));
            assert_eq!(t.produce("d", Some(1)).unwrap(), (1, 0));
        }
        let t = FileLogTopic::open(dir.path(), "input-topic", 2, bus()).unwrap();
        let mut out = Vec::new();
        assert_eq!(t.read(0, 0, 10, &mut out), 2);
        assert_eq!(out, vec![Arc::from("a"), Arc::from("b\nc")]);
        assert_eq!(t.len(1), 1);
        assert_eq!(std::fs::read_to_string(partition_path(dir.path(), "input-topic", 0)).unwrap(), "a\nb\\nc\n");
    }

    #[tokio::test]
    async fn a_torn_last_line_does_not_exist_and_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = partition_path(dir.path(), "t", 0);
        std::fs::write(&path, "a\nb\nhalf-writ").unwrap();
        std::fs::write(partition_path(dir.path(), "t", 1), "").unwrap();
        let t = FileLogTopic::open(dir.path(), "t", 2, bus()).unwrap();
        assert_eq!(t.len(0), 2);
        t.produce("c", Some(0)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
    }

    #[tokio::test]
    async fn an_existing_topic_keeps_its_partition_count() {
        let dir = tempfile::tempdir().unwrap();
        drop(FileLogTopic::open(dir.path(), "t", 3, bus()).unwrap());
        assert_eq!(FileLogTopic::open(dir.path(), "t", 2, bus()).unwrap().partitions(), 3);
    }

    #[tokio::test]
    async fn a_bad_line_is_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(partition_path(dir.path(), "t", 0), "ok\nbad \\q\n").unwrap();
        let e = FileLogTopic::open(dir.path(), "t", 1, bus()).err().unwrap().to_string();
        assert!(e.contains("t-0.log:2") && e.contains("\\q"), "{e}");
    }

    #[tokio::test]
    async fn a_second_process_on_the_same_topic_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = FileLogTopic::open(dir.path(), "t", 1, bus()).unwrap();
        // flock locks belong to the open file description: a second open in this process conflicts too.
        let e = FileLogTopic::open(dir.path(), "t", 1, bus()).err().unwrap().to_string();
        assert!(e.contains("another ckptlab process"), "{e}");
    }
}
