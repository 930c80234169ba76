//! Flink's SharedStateRegistry: incremental RocksDB checkpoints reference SST files in
//! `<job-id>/shared/` across checkpoints; the JobManager counts, per file, the retained
//! checkpoints that reference it, and deletes a file when the last one is dropped. Files uploaded
//! by a checkpoint that never completed are referenced by nobody and are deleted at once.

use std::collections::HashMap;
use std::path::PathBuf;

use super::StateHandle;

#[derive(Debug, Default)]
pub struct SharedStateRegistry {
    refs: HashMap<PathBuf, usize>,
    /// `<job-id>/shared/`: the only place the registry deletes files (a handle read back from
    /// disk could name any path).
    root: Option<PathBuf>,
}

impl SharedStateRegistry {
    /// A registry for the shared files under `root` (`None`: jobmanager storage, no files).
    pub fn new(root: Option<PathBuf>) -> Self {
        SharedStateRegistry { refs: HashMap::new(), root }
    }

    /// The storage changed (a backend switch from jobmanager to filesystem storage).
    pub fn set_root(&mut self, root: Option<PathBuf>) {
        self.root = root;
    }

    /// Only below `root` and through no symlink: the paths come from `_metadata` files.
    fn delete(&self, path: &std::path::Path) {
        if let Some(root) = &self.root {
            let _ = crate::workdir::remove_file_under(root, path);
        }
    }

    /// A completed checkpoint's handles: one more reference to each shared file.
    pub fn register(&mut self, handles: &[StateHandle]) {
        for path in handles.iter().flat_map(StateHandle::shared_files) {
            *self.refs.entry(path.clone()).or_insert(0) += 1;
        }
    }

    /// A dropped checkpoint's handles: one reference less; files nobody references are deleted.
    /// Returns the deleted files.
    pub fn unregister(&mut self, handles: &[StateHandle]) -> Vec<PathBuf> {
        let mut deleted = Vec::new();
        for path in handles.iter().flat_map(StateHandle::shared_files) {
            let remaining = match self.refs.get_mut(path) {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    *n
                }
                None => 0,
            };
            if remaining == 0 {
                self.refs.remove(path);
                self.delete(path);
                deleted.push(path.clone());
            }
        }
        deleted
    }

    /// Handles of a checkpoint that failed: shared files no retained checkpoint references were
    /// uploaded for it alone, and are deleted.
    pub fn discard_unregistered(&mut self, handles: &[StateHandle]) {
        for path in handles.iter().flat_map(StateHandle::shared_files) {
            if !self.refs.contains_key(path) {
                self.delete(path);
            }
        }
    }

    /// Shared files referenced now.
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }
}
