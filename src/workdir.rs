//! ckptlab's own directories on the local disk, and the only ways it deletes there.
//!
//! Everything ckptlab writes by default (checkpoints, task managers' local directories, the log)
//! lives under one private directory per user, `<temp>/ckptlab-<uid>` (or `$CKPTLAB_HOME`),
//! created `0700`. An existing one is used only when it is a real directory (not a symlink, checked
//! with `lstat`) owned by this user; anything else is refused with the reason, never followed.
//!
//! Deletes go through [`remove_tree_under`], [`remove_file_under`] and [`remove_empty_dir_under`],
//! which refuse a target that is not strictly below the directory ckptlab created for it (or the
//! snapshot it read it from), whose path holds anything but plain names (`..`, `/`, `.`), or that
//! is reached through a symbolic link below that root. No string from a scenario, a config value,
//! a key or a record reaches a path without passing [`plain_name`] first.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The environment variable that moves the private directory elsewhere.
pub const HOME_VAR: &str = "CKPTLAB_HOME";

/// Why a directory or file cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum WorkDirError {
    #[error("{path}: is a symbolic link; ckptlab does not follow links for its private directory (remove it, or set {HOME_VAR})")]
    Symlink { path: String },
    #[error(
        "{path}: owned by uid {owner}, not by you (uid {me}); refusing to use another user's directory (remove it, or set {HOME_VAR})"
    )]
    ForeignOwner { path: String, owner: u32, me: u32 },
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("refusing to delete {target}: it is not a plain path below {root}")]
    Outside { target: String, root: String },
    #[error("refusing to delete {target}: {through} is not a directory (a symbolic link, or a file), and could lead out of {root}")]
    Through { target: String, through: String, root: String },
}

fn io(path: &Path, e: std::io::Error) -> WorkDirError {
    WorkDirError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// This process's effective user id.
pub fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The private directory's path (not created): `$CKPTLAB_HOME`, else `<temp>/ckptlab-<uid>`.
pub fn home() -> PathBuf {
    match std::env::var_os(HOME_VAR) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => std::env::temp_dir().join(format!("ckptlab-{}", uid())),
    }
}

/// Creates the private directory (0700) or checks the existing one; returns its path.
pub fn prepare_home() -> Result<PathBuf, WorkDirError> {
    let home = home();
    ensure_private_dir(&home)?;
    Ok(home)
}

/// `path` as a private directory: created 0700 when missing (parents as usual); when present it
/// must be a real directory owned by this user, and is narrowed to 0700.
pub fn ensure_private_dir(path: &Path) -> Result<(), WorkDirError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(path, e)),
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| io(path, e))?;
    check_owned_dir(path, &meta)?;
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(|e| io(path, e))?;
    }
    Ok(())
}

fn check_owned_dir(path: &Path, meta: &std::fs::Metadata) -> Result<(), WorkDirError> {
    let display = path.display().to_string();
    if meta.file_type().is_symlink() {
        return Err(WorkDirError::Symlink { path: display });
    }
    if !meta.is_dir() {
        return Err(WorkDirError::NotADirectory { path: display });
    }
    let me = uid();
    if meta.uid() != me {
        return Err(WorkDirError::ForeignOwner { path: display, owner: meta.uid(), me });
    }
    Ok(())
}

/// Opens a log file for appending: never through a symlink (O_NOFOLLOW), created 0600, and only
/// when it is a regular file of ours.
pub fn open_log(path: &Path) -> Result<std::fs::File, WorkDirError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => WorkDirError::Symlink { path: path.display().to_string() },
            _ => io(path, e),
        })?;
    let meta = file.metadata().map_err(|e| io(path, e))?;
    if !meta.is_file() {
        return Err(WorkDirError::Io { path: path.display().to_string(), message: "not a regular file".into() });
    }
    if meta.uid() != uid() {
        return Err(WorkDirError::ForeignOwner { path: path.display().to_string(), owner: meta.uid(), me: uid() });
    }
    Ok(file)
}

/// A string from outside (a task manager's name, a job id) as one path component: non-empty,
/// at most 64 characters of `[A-Za-z0-9_.-]`, and not `.` or `..`.
pub fn plain_name(s: &str) -> Option<&str> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s != "."
        && s != ".."
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then_some(s)
}

/// Creates `path` and its missing parents as `0700` directories (narrowed further by the umask,
/// never widened): checkpoints, savepoints and the durable topic live outside the private
/// directory, and hold the job's state and records.
pub fn create_private_dirs(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// Creates a new file `0600` (narrowed by the umask), never over an existing one and never
/// through a symlink.
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Whether `target` is strictly below `root` through plain names only (no `..`, `.`, root or
/// prefix components after `root`).
pub fn is_below(root: &Path, target: &Path) -> bool {
    let Ok(rest) = target.strip_prefix(root) else { return false };
    let mut parts = 0;
    for c in rest.components() {
        match c {
            Component::Normal(_) => parts += 1,
            _ => return false,
        }
    }
    parts > 0 && root.components().all(|c| !matches!(c, Component::ParentDir))
}

/// Deletes `target` recursively, only when it is strictly below `root` (see [`is_below`]) and
/// every directory between them is a real one (a symlink there is refused, not followed). A
/// symlink at `target` is removed as a link, never followed. A missing target is fine.
///
/// Atomic against a link swapped in on the way: the way down is walked by descriptor, one plain
/// name at a time with `O_NOFOLLOW`, and the tree is then emptied and removed from those
/// descriptors (`openat` + `unlinkat`), never by path again, so no check is followed by a use
/// that could resolve elsewhere.
pub fn remove_tree_under(root: &Path, target: &Path) -> Result<(), WorkDirError> {
    use std::os::fd::AsFd;
    let Some((parent, name)) = open_parent_under(root, target)? else { return Ok(()) };
    remove_entry_at(parent.as_fd(), &name, target)
}

/// Removes the entry `name` of the open directory `dir`: a directory is emptied first, through
/// its own descriptor opened without following links; anything else (a file, a symlink) is
/// unlinked. `shown` is its path, for errors only. A missing entry is fine.
fn remove_entry_at(dir: std::os::fd::BorrowedFd<'_>, name: &std::ffi::CStr, shown: &Path) -> Result<(), WorkDirError> {
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
    let not_found = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOENT);
    // SAFETY: `dir` is an open directory and `name` a NUL-terminated plain name.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(()),
            // Not a directory, or a symlink (to anything): the entry itself goes.
            Some(libc::ENOTDIR | libc::ELOOP) => {
                // SAFETY: as above.
                if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
                    let e = std::io::Error::last_os_error();
                    if !not_found(&e) {
                        return Err(io(shown, e));
                    }
                }
                Ok(())
            }
            _ => Err(io(shown, e)),
        };
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let sub = unsafe { OwnedFd::from_raw_fd(fd) };
    for entry in entries_of(sub.as_fd()).map_err(|e| io(shown, e))? {
        let child = shown.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(entry.to_bytes()));
        remove_entry_at(sub.as_fd(), &entry, &child)?;
    }
    // SAFETY: as above.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
        let e = std::io::Error::last_os_error();
        if !not_found(&e) {
            return Err(io(shown, e));
        }
    }
    Ok(())
}

/// The names in the open directory `dir`, without `.` and `..`.
fn entries_of(dir: std::os::fd::BorrowedFd<'_>) -> std::io::Result<Vec<std::ffi::CString>> {
    use std::os::fd::AsRawFd;
    // `fdopendir` takes the descriptor it is given: hand it a duplicate.
    // SAFETY: `dir` is an open descriptor.
    let dup = unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` is an open directory descriptor this function owns; on success the stream owns it.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let e = std::io::Error::last_os_error();
        // SAFETY: the stream did not take `dup`.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    let mut names = Vec::new();
    loop {
        // readdir returns null at the end and on an error; errno tells them apart.
        // SAFETY: errno is this thread's; `stream` is an open directory stream and the entry is
        // read before the next call.
        let entry = unsafe {
            *libc::__errno_location() = 0;
            libc::readdir(stream)
        };
        if entry.is_null() {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error().unwrap_or(0) != 0 {
                // SAFETY: as below.
                unsafe { libc::closedir(stream) };
                return Err(e);
            }
            break;
        }
        // SAFETY: `d_name` is NUL-terminated within the entry.
        let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    // SAFETY: `stream` is open and closed once (which closes `dup`).
    unsafe { libc::closedir(stream) };
    Ok(names)
}

/// Deletes the file `target` (a symlink: the link itself), only when it is strictly below `root`
/// (see [`is_below`]) and reached through real directories: each directory below `root` is
/// opened without following a link (`O_NOFOLLOW`) and the file unlinked from the last one
/// (`unlinkat`), so a link swapped in after any check cannot lead out of `root`. Paths read from
/// a file (`_metadata`) are deleted this way. A missing target is fine; a directory is refused.
pub fn remove_file_under(root: &Path, target: &Path) -> Result<(), WorkDirError> {
    unlink_under(root, target, 0)
}

/// Deletes the empty directory `target`, as [`remove_file_under`] deletes a file (a directory
/// that is not empty stays, with an error).
pub fn remove_empty_dir_under(root: &Path, target: &Path) -> Result<(), WorkDirError> {
    unlink_under(root, target, libc::AT_REMOVEDIR)
}

fn unlink_under(root: &Path, target: &Path, flags: libc::c_int) -> Result<(), WorkDirError> {
    use std::os::fd::AsRawFd;
    let Some((parent, name)) = open_parent_under(root, target)? else { return Ok(()) };
    // SAFETY: `parent` is an open directory and `name` a NUL-terminated plain name.
    if unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), flags) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(io(target, e));
        }
    }
    Ok(())
}

/// Opens the directory holding `target` by walking down from `root` one plain name at a time
/// without following links, and returns it with `target`'s last name. None: a directory on the
/// way is missing (so is the target). Refuses a target outside `root` and a way through a link.
fn open_parent_under(root: &Path, target: &Path) -> Result<Option<(std::os::fd::OwnedFd, std::ffi::CString)>, WorkDirError> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let outside = || WorkDirError::Outside { target: target.display().to_string(), root: root.display().to_string() };
    if !is_below(root, target) {
        return Err(outside());
    }
    let rest = target.strip_prefix(root).map_err(|_| outside())?;
    let names: Vec<CString> =
        rest.components().map(|c| CString::new(c.as_os_str().as_bytes())).collect::<Result<_, _>>().map_err(|_| outside())?;
    let Some((name, dirs)) = names.split_last() else { return Err(outside()) };
    // The root itself is ckptlab's directory or the snapshot the user named: opened as given.
    let mut dir: OwnedFd = match std::fs::File::open(root) {
        Ok(f) => f.into(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(root, e)),
    };
    let mut walked = root.to_path_buf();
    for d in dirs {
        walked.push(std::ffi::OsStr::from_bytes(d.as_bytes()));
        // SAFETY: `dir` is an open directory and `d` a NUL-terminated plain name.
        let fd =
            unsafe { libc::openat(dir.as_raw_fd(), d.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                Some(libc::ELOOP | libc::ENOTDIR) => Err(WorkDirError::Through {
                    target: target.display().to_string(),
                    through: walked.display().to_string(),
                    root: root.display().to_string(),
                }),
                _ => Err(io(&walked, e)),
            };
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        dir = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    Ok(Some((dir, name.clone())))
}

/// The file that says which process owns a directory ckptlab made (`<dir>/.ckptlab-owner`).
const OWNER_FILE: &str = ".ckptlab-owner";

/// Marks `dir` as this process's, so a later ckptlab can tell a dead process's leftovers.
pub fn mark_owner(dir: &Path) -> Result<(), WorkDirError> {
    let path = dir.join(OWNER_FILE);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| io(&path, e))?;
    writeln!(f, "{}", std::process::id()).map_err(|e| io(&path, e))
}

/// The pid recorded in `dir`'s owner file, if any.
pub fn owner_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(OWNER_FILE)).ok()?.trim().parse().ok()
}

/// Whether a process with this pid exists now.
pub fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Whether `dir` was left by a ckptlab process that is gone (its owner file names a dead pid).
pub fn left_by_dead_process(dir: &Path) -> bool {
    owner_pid(dir).is_some_and(|pid| pid != std::process::id() && !process_alive(pid))
}

/// Deletes the directories below `root` whose name starts with `prefix` and whose owner process
/// is gone (task managers' local directories of a crashed run). Returns what was deleted.
pub fn sweep_dead(root: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut swept = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let named = name.to_str().is_some_and(|n| n.starts_with(prefix));
        // Only real directories of this user: never another user's, never through a link.
        let mine = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == uid());
        if named && mine && left_by_dead_process(&path) && remove_tree_under(root, &path).is_ok() {
            swept.push(path);
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_only() {
        assert_eq!(plain_name("tm-1"), Some("tm-1"));
        for bad in ["", ".", "..", "../x", "/tmp/victim", "a/b", "x\0", &"a".repeat(65)] {
            assert_eq!(plain_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn below_means_strictly_below_through_plain_names() {
        let root = Path::new("/tmp/ckptlab-0/tm");
        assert!(is_below(root, &root.join("tm-1")));
        assert!(!is_below(root, root));
        assert!(!is_below(root, Path::new("/tmp/victim")));
        assert!(!is_below(root, &root.join("..").join("x")));
        assert!(!is_below(root, &root.join("/tmp/victim")), "join of an absolute path replaces the root");
    }

    #[test]
    fn remove_tree_under_refuses_outside_and_keeps_the_target() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let victim = tmp.path().join("victim");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(&victim).unwrap();
        assert!(remove_tree_under(&root, &root.join("..").join("victim")).is_err());
        assert!(remove_tree_under(&root, &victim).is_err());
        assert!(victim.is_dir());
        remove_tree_under(&root, &root.join("a")).unwrap();
        assert!(!root.join("a").exists());
        remove_tree_under(&root, &root.join("missing")).unwrap();
    }

    #[test]
    fn a_tree_is_removed_whole_and_a_link_inside_it_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("t/a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("t/a/b/f"), b"x").unwrap();
        std::fs::write(root.join("t/g"), b"y").unwrap();
        std::fs::write(outside.join("keep"), b"z").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("t/a/link")).unwrap();
        remove_tree_under(&root, &root.join("t")).unwrap();
        assert!(!root.join("t").exists());
        assert!(outside.join("keep").is_file(), "the link's target is kept");
    }

    /// The way down is held by descriptor: an intermediate directory swapped for a link after it
    /// was walked cannot redirect the delete (a delete by path, as `remove_dir_all(target)` does,
    /// would follow the new link and empty the victim).
    #[test]
    fn a_link_swapped_in_after_the_walk_does_not_redirect_the_delete() {
        use std::os::fd::AsFd;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let victim = tmp.path().join("victim");
        std::fs::create_dir_all(root.join("a/t")).unwrap();
        std::fs::write(root.join("a/t/f"), b"x").unwrap();
        std::fs::create_dir_all(victim.join("t")).unwrap();
        std::fs::write(victim.join("t/keep"), b"z").unwrap();
        let target = root.join("a/t");
        let (parent, name) = open_parent_under(&root, &target).unwrap().unwrap();
        std::fs::rename(root.join("a"), root.join("a-moved")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("a")).unwrap();
        remove_entry_at(parent.as_fd(), &name, &target).unwrap();
        assert!(victim.join("t/keep").is_file(), "the victim is untouched");
        assert!(!root.join("a-moved/t").exists(), "the tree that was walked is the one removed");
    }

    #[test]
    fn a_symlink_below_the_root_is_removed_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let victim = tmp.path().join("victim");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("keep"), b"x").unwrap();
        std::os::unix::fs::symlink(&victim, root.join("link")).unwrap();
        remove_tree_under(&root, &root.join("link")).unwrap();
        assert!(victim.join("keep").exists());
    }

    // Catches a file delete that follows a link on the way (`remove_file` by path): `root/link`
    // points out of the root, and `root/link/keep` must not reach the file there.
    #[test]
    fn a_file_below_a_symlinked_directory_is_not_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let victim = tmp.path().join("victim");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("keep"), b"x").unwrap();
        std::os::unix::fs::symlink(&victim, root.join("link")).unwrap();
        assert!(matches!(remove_file_under(&root, &root.join("link/keep")), Err(WorkDirError::Through { .. })));
        assert!(matches!(remove_tree_under(&root, &root.join("link/keep")), Err(WorkDirError::Through { .. })));
        assert!(remove_empty_dir_under(&root, &root.join("link")).is_err(), "a link is no directory");
        assert!(victim.join("keep").exists(), "the file outside the root stays");
        assert!(remove_file_under(&root, &victim.join("keep")).is_err());
        assert!(remove_file_under(&root, &root.join("..").join("victim").join("keep")).is_err());
        assert!(victim.join("keep").exists());
        // Inside: a file goes, a missing one is fine, a directory is not a file.
        std::fs::write(root.join("a/f"), b"x").unwrap();
        remove_file_under(&root, &root.join("a/f")).unwrap();
        assert!(!root.join("a/f").exists());
        remove_file_under(&root, &root.join("a/f")).unwrap();
        remove_file_under(&root, &root.join("missing/f")).unwrap();
        assert!(remove_file_under(&root, &root.join("a")).is_err());
        remove_empty_dir_under(&root, &root.join("a")).unwrap();
        assert!(!root.join("a").exists());
    }

    #[test]
    fn private_dir_is_0700_and_a_symlink_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("home");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let target = tmp.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(ensure_private_dir(&link), Err(WorkDirError::Symlink { .. })));
    }

    #[test]
    fn an_existing_private_dir_is_narrowed_to_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("home");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn the_log_is_never_opened_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("secret");
        std::fs::write(&target, b"root's file\n").unwrap();
        let link = tmp.path().join("ckptlab.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(open_log(&link), Err(WorkDirError::Symlink { .. })));
        assert_eq!(std::fs::read(&target).unwrap(), b"root's file\n");
        let real = tmp.path().join("real.log");
        open_log(&real).unwrap();
        assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn leftovers_of_a_dead_process_are_swept_and_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let mine = root.join("ckptlab-live");
        let dead = root.join("ckptlab-dead");
        let unmarked = root.join("ckptlab-unmarked");
        for d in [&mine, &dead, &unmarked] {
            std::fs::create_dir_all(d).unwrap();
        }
        mark_owner(&mine).unwrap();
        // A pid above the kernel's maximum (4194304) never exists.
        std::fs::write(dead.join(OWNER_FILE), "4999999\n").unwrap();
        let swept = sweep_dead(root, "ckptlab-");
        assert_eq!(swept, vec![dead.clone()]);
        assert!(mine.exists() && unmarked.exists() && !dead.exists());
    }
}
