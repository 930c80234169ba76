//! A job's transaction log on disk: the newest transaction (checkpoint id) its transactional sink
//! committed, in `<ckptlab home>/transactions/<job-id>`. It plays the part of the external
//! system's own record of its transactions (Kafka's transaction coordinator), which outlives the
//! process that wrote them: a restore in a new process reads the log of the job that took the
//! snapshot, so a transaction that job committed is not committed, emitted, a second time, as
//! Flink's committer finds a Kafka transaction already committed. Within one process the log in
//! memory ([`super::sink::TransactionLog`]) decides; this file only carries it across processes.

use std::io;
use std::path::PathBuf;

/// Where one job's committed transactions are recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitLog {
    path: PathBuf,
}

impl CommitLog {
    /// The log of job `job_id` (32 hex digits, as ckptlab and Flink name jobs); `None` for any
    /// other name, such as one read from a foreign `_metadata`, which must not name a path.
    pub fn of(job_id: &str) -> Option<Self> {
        let valid = !job_id.is_empty() && job_id.len() <= 64 && job_id.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| CommitLog { path: crate::workdir::home().join("transactions").join(job_id) })
    }

    /// The newest committed transaction; `None` when the job never committed one here.
    pub fn read(&self) -> io::Result<Option<u64>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text.trim().parse().map(Some).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{}: not a checkpoint id: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))),
        }
    }

    /// Records `checkpoint` as the newest committed transaction, whole or not at all (a
    /// temporary file renamed over the log).
    pub fn write(&self, checkpoint: u64) -> io::Result<()> {
        let dir = self.path.parent().expect("the log is below the transactions directory");
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, format!("{checkpoint}\n"))?;
        std::fs::rename(&tmp, &self.path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_job_ids_name_a_log() {
        assert!(CommitLog::of("0123456789abcdef0123456789abcdef").is_some());
        for bad in ["", "../../etc/passwd", "/etc/passwd", "abc/def", "x".repeat(10).as_str()] {
            assert_eq!(CommitLog::of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_written_log_reads_back_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog { path: dir.path().join("transactions").join("ab") };
        assert_eq!(log.read().unwrap(), None);
        log.write(7).unwrap();
        log.write(9).unwrap();
        assert_eq!(log.read().unwrap(), Some(9));
        std::fs::write(log.path(), "nine").unwrap();
        assert!(log.read().unwrap_err().to_string().contains("not a checkpoint id"));
    }
}
