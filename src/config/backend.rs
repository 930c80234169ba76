//! What differs between the state backends, asked of [`BackendKind`] by name.
//!
//! Each capability is one `match` naming every backend, so a new backend (Flink's ForSt, say)
//! makes the compiler point here: answer each question for it once, and the engine's places that
//! depend on the answer (the task managers' local directory, the shared files a claimed
//! checkpoint hands over, the storage its snapshots need) follow without being touched.
//! The backend's own code is one file under `src/state/` and its arm in
//! [`crate::state::create_backend`].

use super::layers::SeedBackend;
use super::schema::BackendKind;

impl BackendKind {
    /// Whether its working state lives in files on the task manager (`taskmanager.tmp-dirs`,
    /// one directory per subtask), rather than on the heap.
    pub fn keeps_local_dir(self) -> bool {
        match self {
            BackendKind::HashMap => false,
            BackendKind::RocksDb => true,
        }
    }

    /// Whether its checkpoints may reference files of earlier ones (`<job-id>/shared/`,
    /// incremental checkpoints), so that a checkpoint restored under CLAIM hands its files over
    /// to the new job.
    pub fn shares_files_across_checkpoints(self) -> bool {
        match self {
            BackendKind::HashMap => false,
            BackendKind::RocksDb => true,
        }
    }

    /// Whether its snapshots are files (they cannot be kept as bytes by the JobManager), so that
    /// it needs `execution.checkpointing.storage = "filesystem"`.
    pub fn snapshots_need_filesystem(self) -> bool {
        match self {
            BackendKind::HashMap => false,
            BackendKind::RocksDb => true,
        }
    }
}

/// The seed's name (`memory`, `fs`, `rocksdb`), as `--backend` and a scenario's
/// `switch-backend` write it.
impl std::fmt::Display for SeedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str((*self).into())
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;
    use crate::config::{StorageKind, DEFAULT_CONF};

    /// Catches: a backend added to [`BackendKind`] that `conf/ckptlab.toml`'s comment on
    /// `state.backend.type` does not offer (the shipped file is where a user reads the choices).
    #[test]
    fn the_shipped_conf_offers_every_backend() {
        let line = DEFAULT_CONF
            .lines()
            .skip_while(|l| l.trim() != "[state.backend]")
            .find(|l| l.trim_start().starts_with("type"))
            .expect("conf/ckptlab.toml sets state.backend.type");
        let (_, comment) = line.split_once(" # ").expect("a one-line comment");
        for b in BackendKind::iter() {
            let name: &str = b.into();
            assert!(comment.split(|c: char| !c.is_alphanumeric()).any(|w| w == name), "the comment on state.backend.type lacks {name}: {comment}");
        }
    }

    /// Catches: a backend whose snapshots need files but whose seed shorthand keeps them on the
    /// JobManager (`--backend X` would then be refused by the configuration it sets).
    #[test]
    fn every_seed_backend_is_a_valid_pair() {
        for seed in SeedBackend::iter() {
            let (backend, storage) = seed.pair();
            assert!(!(backend.snapshots_need_filesystem() && storage == StorageKind::JobManager), "{seed}");
            assert_eq!(seed.to_string().parse::<SeedBackend>(), Ok(seed), "its name reads back");
        }
    }
}
