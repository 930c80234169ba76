//! Restores that say why, and snapshots that read nothing outside themselves (issue 20).
//!
//! - Every bad-file case of the fault-injection pass (flipped bytes, truncated, missing, wrong
//!   size, moved with old absolute paths, foreign, `..`, `/etc/passwd`, RocksDB `dir = /etc`,
//!   symlinks, FIFOs ...) makes `ckptlab run --restore` exit 2 before the job starts, naming the
//!   file and the reason; `ckptlab inspect` says the same (one check for both).
//! - A handle outside the snapshot is refused before anything is opened: the tests point it at a
//!   FIFO, whose open would block the process forever.
//! - Savepoints can be moved and copied: each restores from its own files; a corrupted copy is
//!   refused while the original still restores.
//! - A file that vanishes after the job started fails the restores of the restart strategy's
//!   attempts with the reason, and the verdict reads "not restored: REASON", never `ok`.

use crate::common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ckptlab::connectors::EmbeddedTopic;
use ckptlab::events::{Event, EventBus};
use ckptlab::scenario::{self, Player, Scenario};
use crate::common::{paused, run_steps, scratch_dir, try_start_on_topic};

/// Filesystem checkpoints under `root`, kept when the job ends, full speed.
fn base(root: &Path, backend: &str, incremental: bool) -> Vec<(String, String)> {
    vec![
        ("execution.checkpointing.interval".into(), "100ms".into()),
        ("execution.checkpointing.storage".into(), "filesystem".into()),
        ("execution.checkpointing.dir".into(), root.join("chk").display().to_string()),
        ("execution.checkpointing.savepoint-dir".into(), root.join("sp").display().to_string()),
        ("execution.checkpointing.externalized-checkpoint-retention".into(), "RETAIN_ON_CANCELLATION".into()),
        ("execution.checkpointing.incremental".into(), incremental.to_string()),
        ("state.backend.type".into(), backend.into()),
        ("taskmanager.tmp-dirs".into(), root.join("tm").display().to_string()),
        ("ckptlab.hop-delay".into(), "0ms".into()),
        ("source.auto-offset-reset".into(), "earliest".into()),
    ]
}

const FILL: &str = "[[steps]]\nproduce = [\"a\", \"b\", \"a\", \"c\", \"a\", \"b\", \"d\"]\n[[steps]]\nawait = \"caught-up\"\n[[steps]]\nawait = \"checkpoint-completed\"\n[[steps]]\nawait = \"checkpoint-completed\"\n";

/// A job on `topic` that counts a few keys and keeps its checkpoints: its newest `chk-<n>` and a
/// native savepoint.
async fn first_job(root: &Path, topic: &Arc<EmbeddedTopic>, backend: &str, incremental: bool) -> (PathBuf, PathBuf) {
    let engine = try_start_on_topic(&base(root, backend, incremental), topic).expect("engine starts");
    // Native: the bad-file cases edit a RocksDB savepoint's files (a canonical one has one file).
    let report = run_steps(&engine, &format!("{FILL}[[steps]]\nsavepoint = true\nformat = \"native\"\n")).await;
    assert!(report.passed, "{:?}", report.failures);
    let job = root.join("chk").join(engine.job_id());
    engine.shutdown().await;
    let newest = common::retained(&job).last().map(|m| job.join(format!("chk-{}", m.checkpoint))).expect("a retained checkpoint");
    (newest, PathBuf::from(report.savepoints.last().expect("a savepoint")))
}

/// [`first_job`] on a topic of its own.
fn fixture(root: &Path, backend: &str, incremental: bool) -> (PathBuf, PathBuf) {
    paused(async {
        let topic = EmbeddedTopic::new("input-topic", 2, EventBus::new(tokio::time::Instant::now()));
        first_job(root, &topic, backend, incremental).await
    })
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    // In the last quarter: a heap file's body, past its header and checksum line.
    let i = bytes.len() * 3 / 4;
    bytes[i] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn edit_metadata(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("_metadata");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// A RocksDB file whose name contains `pattern`, of subtask `i` or, when it has none (a subtask
/// without keys flushes no SST), of the first subtask that has one: (subtask, index, path).
fn rocks_file(dir: &Path, i: usize, pattern: &str) -> (usize, usize, PathBuf) {
    let meta = ckptlab::state::storage::CheckpointStorage::read_metadata(dir).expect("readable metadata");
    let order = std::iter::once(i).chain(0..meta.keyed.len());
    for t in order {
        let ckptlab::state::StateHandle::RocksDb { files, .. } = &meta.keyed[t] else { panic!("a RocksDB handle") };
        if let Some((j, f)) = files.iter().enumerate().find(|(_, f)| f.name.contains(pattern)) {
            return (t, j, f.path.clone());
        }
    }
    panic!("no file {pattern} in {}", dir.display())
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other precondition.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

/// `ckptlab run` of a one-step scenario restoring `path`; killed after 60 s (an open of a FIFO
/// would block it forever: the test then fails on the exit code, not on the clock).
fn restore_run(root: &Path, path: &Path, extra: &[&str]) -> Outcome {
    let scenario = root.join("restore.toml");
    std::fs::write(&scenario, "name = \"restore\"\n[[steps]]\nwait = \"10ms\"\n").unwrap();
    let mut args: Vec<String> =
        vec!["run".into(), scenario.display().to_string(), "-q".into(), "--restore".into(), path.display().to_string()];
    for s in [
        format!("execution.checkpointing.dir={}", root.join("chk2").display()),
        format!("taskmanager.tmp-dirs={}", root.join("tm2").display()),
        "execution.checkpointing.storage=filesystem".to_string(),
    ] {
        args.push("--set".into());
        args.push(s);
    }
    // Into the backend that wrote it: a checkpoint restores only there (the damage is the point).
    let meta = if path.is_file() { path.to_path_buf() } else { path.join("_metadata") };
    let backend = std::fs::read(&meta)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["job"]["backend"].as_str().map(str::to_string));
    if let Some(b) = backend.filter(|_| !extra.iter().any(|e| e.starts_with("state.backend.type"))) {
        args.extend(["--set".to_string(), format!("state.backend.type={b}")]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = common::binary()
        .args(&args)
        .env("CKPTLAB_HOME", root.join("home"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ckptlab runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    Outcome { code, stderr }
}

/// One bad-file case: a name, what to restore, and what the error must say.
struct Case {
    name: &'static str,
    path: PathBuf,
    says: Vec<String>,
}

/// A fresh copy of `chk` (a whole job directory copy when `with_job`, for shared files).
fn copy_of(root: &Path, chk: &Path, name: &str, with_job: bool) -> PathBuf {
    let dst = root.join("cases").join(name);
    std::fs::create_dir_all(&dst).unwrap();
    if with_job {
        let job = chk.parent().unwrap();
        copy_tree(job, &dst.join("job"));
        dst.join("job").join(chk.file_name().unwrap())
    } else {
        copy_tree(chk, &dst.join("chk-9"));
        dst.join("chk-9")
    }
}

fn bad_cases(root: &Path, heap: &Path, rocks: &Path, incr: &Path, savepoint: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let disp = |p: &Path| p.display().to_string();

    let d = copy_of(root, heap, "heap-flipped", false);
    flip_byte(&d.join("counter-0"));
    cases.push(Case {
        name: "flipped bytes in a heap state file",
        says: vec![format!("{} is corrupt: checksum mismatch", disp(&d.join("counter-0")))],
        path: d,
    });

    // The line break between checksum and body (a byte no check looked at before).
    let d = copy_of(root, heap, "heap-flipped-line-break", false);
    let f = d.join("counter-0");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes["ckptlab-heap 1\n".len() + 16] ^= 0x5a;
    std::fs::write(&f, bytes).unwrap();
    cases.push(Case {
        name: "flipped line break in a heap state file",
        says: vec![format!("{} is corrupt: bad checksum line", disp(&f))],
        path: d,
    });

    let d = copy_of(root, rocks, "rocks-sst-flipped", false);
    let (_, _, sst) = rocks_file(&d, 0, ".sst");
    flip_byte(&sst);
    cases.push(Case {
        name: "flipped bytes in a RocksDB SST",
        says: vec![format!("{} is corrupt: checksum mismatch", disp(&sst))],
        path: d,
    });

    let d = copy_of(root, rocks, "rocks-manifest-flipped", false);
    let (_, _, manifest) = rocks_file(&d, 1, "MANIFEST");
    flip_byte(&manifest);
    cases.push(Case {
        name: "flipped bytes in a RocksDB MANIFEST",
        says: vec![format!("{} is corrupt: checksum mismatch", disp(&manifest))],
        path: d,
    });

    let d = copy_of(root, heap, "heap-truncated", false);
    let f = d.join("counter-1");
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(len / 2).unwrap();
    cases.push(Case {
        name: "truncated heap file",
        says: vec![format!("{} is corrupt: {} bytes where the snapshot recorded {len}", disp(&f), len / 2)],
        path: d,
    });

    let d = copy_of(root, heap, "heap-missing", false);
    std::fs::remove_file(d.join("counter-1")).unwrap();
    cases.push(Case {
        name: "missing heap file",
        says: vec![format!("cannot read {}: No such file or directory", disp(&d.join("counter-1")))],
        path: d,
    });

    let d = copy_of(root, rocks, "rocks-missing-current", false);
    let (_, _, current) = rocks_file(&d, 0, "CURRENT");
    std::fs::remove_file(&current).unwrap();
    cases.push(Case {
        name: "missing RocksDB CURRENT",
        says: vec![format!("cannot read {}: No such file or directory", disp(&current))],
        path: d,
    });

    let d = copy_of(root, heap, "heap-wrong-size", false);
    let len = std::fs::metadata(d.join("counter-0")).unwrap().len();
    edit_metadata(&d, |v| v["keyed"][0]["size"] = serde_json::json!(len + 7));
    cases.push(Case {
        name: "wrong size in _metadata",
        says: vec![format!("{} is corrupt: {len} bytes where the snapshot recorded {}", disp(&d.join("counter-0")), len + 7)],
        path: d,
    });

    // Old metadata (absolute paths, as ckptlab wrote before issue 20), then moved.
    let d = copy_of(root, heap, "heap-moved-absolute", false);
    let old_abs = d.join("counter-0");
    edit_metadata(&d, |v| {
        v["keyed"][0]["path"] = serde_json::json!(d.join("counter-0"));
        v["keyed"][1]["path"] = serde_json::json!(d.join("counter-1"));
    });
    let moved = root.join("cases").join("heap-moved-absolute-elsewhere");
    std::fs::rename(&d, &moved).unwrap();
    cases.push(Case {
        name: "moved checkpoint with absolute paths in old metadata",
        says: s(&[
            "keyed[0].path",
            &disp(&old_abs),
            "is refused before anything is opened: it lies outside the snapshot's directory",
            &disp(&moved),
        ]),
        path: moved,
    });

    let d = copy_of(root, heap, "heap-foreign", false);
    edit_metadata(&d, |v| v["keyed"][1]["path"] = serde_json::json!(heap.join("counter-1")));
    cases.push(Case {
        name: "foreign path (another checkpoint's file)",
        says: s(&["keyed[1].path", &disp(&heap.join("counter-1")), "it lies outside the snapshot's directory"]),
        path: d,
    });

    let d = copy_of(root, heap, "heap-dotdot", false);
    edit_metadata(&d, |v| v["keyed"][0]["path"] = serde_json::json!("../../../../etc/passwd"));
    cases.push(Case { name: "`..` path", says: s(&["keyed[0].path = ../../../../etc/passwd is refused", "no `..`"]), path: d });

    let d = copy_of(root, heap, "heap-etc-passwd", false);
    edit_metadata(&d, |v| v["keyed"][0]["path"] = serde_json::json!("/etc/passwd"));
    cases.push(Case {
        name: "absolute /etc/passwd",
        says: s(&["keyed[0].path = /etc/passwd is refused", "outside the snapshot's directory"]),
        path: d,
    });

    let d = copy_of(root, rocks, "rocks-dir-etc", false);
    edit_metadata(&d, |v| v["keyed"][0]["dir"] = serde_json::json!("/etc"));
    cases.push(Case {
        name: "RocksDB dir = /etc",
        says: s(&["keyed[0].dir = /etc is refused", "outside the snapshot's directory"]),
        path: d,
    });

    let d = copy_of(root, rocks, "rocks-file-shadow", false);
    let (t, j, _) = rocks_file(&d, 1, ".sst");
    edit_metadata(&d, |v| v["keyed"][t]["files"][j]["path"] = serde_json::json!("/etc/shadow"));
    cases.push(Case {
        name: "RocksDB file = /etc/shadow",
        says: s(&[&format!("keyed[{t}].files[{j}].path = /etc/shadow is refused"), "outside"]),
        path: d,
    });

    let d = copy_of(root, heap, "heap-symlink-out", false);
    let outside = root.join("cases").join("outside-counter-0");
    std::fs::copy(d.join("counter-0"), &outside).unwrap();
    std::fs::remove_file(d.join("counter-0")).unwrap();
    std::os::unix::fs::symlink(&outside, d.join("counter-0")).unwrap();
    cases.push(Case {
        name: "symlink out of the snapshot",
        says: s(&["keyed[0].path", "is a symbolic link; ckptlab follows none out of a snapshot"]),
        path: d,
    });

    let d = copy_of(root, heap, "heap-fifo-inside", false);
    std::fs::remove_file(d.join("counter-0")).unwrap();
    mkfifo(&d.join("counter-0"));
    cases.push(Case {
        name: "FIFO in place of a state file",
        says: vec![format!("{} is corrupt: not a regular file", disp(&d.join("counter-0")))],
        path: d,
    });

    let d = copy_of(root, heap, "heap-dir-inside", false);
    std::fs::remove_file(d.join("counter-1")).unwrap();
    std::fs::create_dir(d.join("counter-1")).unwrap();
    cases.push(Case {
        name: "directory in place of a state file",
        says: vec![format!("{} is corrupt: not a regular file", disp(&d.join("counter-1")))],
        path: d,
    });

    let d = copy_of(root, incr, "incr-shared-missing", true);
    let (_, _, shared) = rocks_file(&d, 0, ".sst");
    std::fs::remove_file(&shared).unwrap();
    cases.push(Case {
        name: "missing shared SST (incremental)",
        says: vec![format!("cannot read {}: No such file or directory", disp(&shared))],
        path: d,
    });

    let d = copy_of(root, incr, "incr-shared-flipped", true);
    let (_, _, shared) = rocks_file(&d, 1, ".sst");
    flip_byte(&shared);
    cases.push(Case {
        name: "flipped bytes in a shared SST",
        says: vec![format!("{} is corrupt: checksum mismatch", disp(&shared))],
        path: d,
    });

    let d = copy_of(root, incr, "incr-shared-dotdot", true);
    let (t, j, _) = rocks_file(&d, 0, ".sst");
    edit_metadata(&d, |v| v["keyed"][t]["files"][j]["path"] = serde_json::json!("../../../etc/passwd"));
    cases.push(Case {
        name: "shared path with `..`",
        says: s(&[&format!("keyed[{t}].files[{j}].path = ../../../etc/passwd is refused"), "its job's shared/"]),
        path: d,
    });

    let d = root.join("cases").join("savepoint-with-shared");
    copy_tree(savepoint, &d);
    edit_metadata(&d, |v| v["keyed"][0]["files"][0]["shared"] = serde_json::json!(true));
    cases.push(Case {
        name: "savepoint naming a shared file",
        says: s(&["keyed[0].files[0].path", "a savepoint is self-contained"]),
        path: d,
    });

    let d = copy_of(root, heap, "heap-metadata-garbage", false);
    std::fs::write(d.join("_metadata"), b"{\"job_id\": ").unwrap();
    cases.push(Case {
        name: "_metadata cut short",
        says: vec![format!("{} is corrupt: EOF while parsing", disp(&d.join("_metadata")))],
        path: d,
    });
    cases
}

/// The fault-injection pass's bad files: each one exits 2 before the job starts, naming the file
/// and the reason (on main, ten of these restarted nine times and ended "job RESTARTING" with
/// `ok` verdicts, the others read foreign files), and `inspect` says the same.
#[test]
fn every_bad_snapshot_file_is_refused_at_submission_with_its_name_and_reason() {
    let scratch = scratch_dir();
    let root = scratch.path();
    let (heap, _) = fixture(&root.join("heap"), "hashmap", false);
    let (rocks, rocks_savepoint) = fixture(&root.join("rocks"), "rocksdb", false);
    let (incr, _) = fixture(&root.join("incr"), "rocksdb", true);
    let cases = bad_cases(root, &heap, &rocks, &incr, &rocks_savepoint);
    let mut refused = 0;
    for c in &cases {
        let out = restore_run(root, &c.path, &[]);
        assert_eq!(out.code, Some(2), "{}: exit 2 at submission; stderr: {}", c.name, out.stderr);
        assert!(out.stderr.contains("execution.state-recovery.path"), "{}: {}", c.name, out.stderr);
        for says in &c.says {
            assert!(out.stderr.contains(says.as_str()), "{}: the reason names {says:?}; stderr: {}", c.name, out.stderr);
        }
        let inspected = ckptlab::inspect::inspect(&c.path, 10).map(|_| ()).map_err(|e| e.to_string());
        let e = inspected.expect_err(c.name);
        assert!(c.says.iter().all(|says| e.contains(says.as_str())), "{}: inspect says the same: {e}", c.name);
        refused += 1;
    }
    println!("{refused} bad-file cases: {refused} exit 2 with the file and the reason");
    assert_eq!(refused, 22);
    // And the pristine snapshots restore.
    for good in [&heap, &rocks, &incr] {
        let out = restore_run(root, good, &[]);
        assert_eq!(out.code, Some(0), "{}: {}", good.display(), out.stderr);
    }
}

/// A handle outside the snapshot is refused before it is opened: it names a FIFO, whose open
/// for reading would block until a writer comes (none does), so the process would hang.
#[test]
fn a_handle_naming_a_fifo_outside_the_snapshot_is_never_opened() {
    let scratch = scratch_dir();
    let root = scratch.path();
    let (heap, _) = fixture(&root.join("heap"), "hashmap", false);
    let fifo = root.join("trap");
    mkfifo(&fifo);
    for (name, target) in [("absolute", fifo.display().to_string()), ("dotdot", "../../../trap".to_string())] {
        let d = copy_of(root, &heap, name, false);
        edit_metadata(&d, |v| v["keyed"][0]["path"] = serde_json::json!(target));
        let out = restore_run(root, &d, &[]);
        assert_eq!(out.code, Some(2), "{name}: refused at once, not blocked on the FIFO: {}", out.stderr);
        assert!(out.stderr.contains(&format!("keyed[0].path = {target} is refused before anything is opened")), "{name}: {}", out.stderr);
        let e = ckptlab::inspect::inspect(&d, 10).map(|_| ()).expect_err(name).to_string();
        assert!(e.contains("is refused before anything is opened"), "{e}");
    }
}

/// Counts in a snapshot, read by `inspect` (the same read a restore makes).
fn counts(path: &Path) -> BTreeMap<String, u64> {
    let i = ckptlab::inspect::inspect(path, usize::MAX).unwrap_or_else(|e| panic!("inspect {}: {e}", path.display()));
    i.subtasks.iter().flat_map(|t| t.first.clone()).collect()
}

/// Restores `path` in a new engine and stops it with a savepoint: the counts it restored.
fn restored_counts(root: &Path, path: &Path, backend: &str) -> Result<BTreeMap<String, u64>, String> {
    paused(async {
        let topic = EmbeddedTopic::new("input-topic", 2, EventBus::new(tokio::time::Instant::now()));
        let mut pairs = base(&root.join("again"), backend, false);
        pairs.push(("execution.state-recovery.path".into(), path.display().to_string()));
        let engine = try_start_on_topic(&pairs, &topic).map_err(|e| e.to_string())?;
        let report = run_steps(&engine, "[[steps]]\nstop-with-savepoint = true\n").await;
        engine.shutdown().await;
        assert!(report.passed, "{:?}", report.failures);
        Ok(counts(Path::new(report.savepoints.last().expect("a savepoint"))))
    })
}

/// Savepoints are self-contained and relocatable (Flink's relative state handles): moved, the
/// savepoint restores; copied, the copy restores from its own files (the original deleted);
/// a corrupted copy is refused while the original still restores.
#[test]
fn savepoints_restore_after_a_move_and_a_copy_reads_only_its_own_files() {
    for backend in ["hashmap", "rocksdb"] {
        let scratch = scratch_dir();
        let root = scratch.path();
        let (_, savepoint) = fixture(&root.join("first"), backend, false);
        let want = counts(&savepoint);
        assert_eq!(want.values().sum::<u64>(), 7, "{backend}: {want:?}");
        let raw = std::fs::read_to_string(savepoint.join("_metadata")).unwrap();
        assert!(!raw.contains(&root.display().to_string()), "{backend}: no absolute path in _metadata: {raw}");

        let moved = root.join("elsewhere").join("moved-savepoint");
        std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        std::fs::rename(&savepoint, &moved).unwrap();
        assert_eq!(restored_counts(root, &moved, backend).unwrap(), want, "{backend}: a moved savepoint restores");

        let copy = root.join("copies").join("copy");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        copy_tree(&moved, &copy);
        let corrupted = root.join("copies").join("corrupted");
        copy_tree(&moved, &corrupted);
        let victim = std::fs::read_dir(&corrupted)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("counter-")))
            .unwrap();
        let victim = if victim.is_dir() { rocks_file(&corrupted, 0, ".sst").2 } else { victim };
        flip_byte(&victim);
        let e = restored_counts(root, &corrupted, backend).expect_err("a corrupted copy is refused");
        assert!(e.contains(&format!("{} is corrupt: checksum mismatch", victim.display())), "{backend}: {e}");
        assert_eq!(restored_counts(root, &moved, backend).unwrap(), want, "{backend}: the original still restores");

        std::fs::remove_dir_all(&moved).unwrap();
        assert_eq!(restored_counts(root, &copy, backend).unwrap(), want, "{backend}: the copy restores from its own files");
    }
}

/// `_metadata` names files relative to its snapshot (exclusive) and to its job's `shared/`: a
/// whole job directory moved elsewhere still restores its incremental checkpoint.
#[test]
fn a_moved_job_directory_restores_its_incremental_checkpoint() {
    let scratch = scratch_dir();
    let root = scratch.path();
    let (incr, _) = fixture(&root.join("incr"), "rocksdb", true);
    let raw = std::fs::read_to_string(incr.join("_metadata")).unwrap();
    assert!(!raw.contains(&root.display().to_string()), "no absolute path in _metadata: {raw}");
    let want = counts(&incr);
    let job = incr.parent().unwrap();
    let moved_job = root.join("moved").join("job");
    std::fs::create_dir_all(moved_job.parent().unwrap()).unwrap();
    std::fs::rename(job, &moved_job).unwrap();
    let moved = moved_job.join(incr.file_name().unwrap());
    assert_eq!(restored_counts(root, &moved, "rocksdb").unwrap(), want);
}

/// A file of the restored checkpoint removed after the job started: each restart's restore
/// fails with the reason (events, status, the run's last lines), the restart strategy bounds
/// the retries, and the verdict reads "not restored: REASON" in place of `ok`.
#[test]
fn a_state_file_removed_after_start_fails_the_restores_and_the_verdict_says_not_restored() {
    let scratch = scratch_dir();
    let root = scratch.path();
    paused(async {
        let topic = EmbeddedTopic::new("input-topic", 2, EventBus::new(tokio::time::Instant::now()));
        let (heap, _) = first_job(&root.join("heap"), &topic, "hashmap", false).await;
        let mut pairs = base(&root.join("second"), "hashmap", false);
        pairs.retain(|(k, _)| k != "execution.checkpointing.interval");
        pairs.extend([
            ("execution.checkpointing.interval".to_string(), "off".to_string()),
            ("execution.state-recovery.path".to_string(), heap.display().to_string()),
            ("restart-strategy.type".to_string(), "fixed-delay".to_string()),
            ("restart-strategy.fixed-delay.attempts".to_string(), "2".to_string()),
            ("restart-strategy.fixed-delay.delay".to_string(), "100ms".to_string()),
        ]);
        let engine = try_start_on_topic(&pairs, &topic).expect("the snapshot is whole at submission");
        let mut events = engine.events().subscribe();
        let mut failing = Vec::new();
        let before =
            Scenario::parse("name = \"t\"\n[[steps]]\nproduce = [\"a\", \"e\"]\n[[steps]]\nawait = \"caught-up\"\n", "t.toml").unwrap();
        let kill = Scenario::parse("name = \"t\"\n[[steps]]\nkill = \"tm-2\"\n[[steps]]\nstart = \"tm-2\"\n", "t.toml").unwrap();
        let s = Scenario::parse("name = \"t\"\n[[steps]]\nawait = \"running\"\ntimeout = \"5s\"\n", "t.toml").unwrap();
        let mut player = Player::start(&engine, &mut |_| {}).await;
        for step in &before.steps {
            assert_eq!(player.play(&engine, step, &mut |_| {}).await, scenario::Flow::Continue);
        }
        assert!(player.failures().is_empty(), "the first attempt restores and runs: {:?}", player.failures());
        let gone = heap.join("counter-0");
        std::fs::remove_file(&gone).unwrap();
        for step in kill.steps.iter().chain(&s.steps) {
            if matches!(step.action, scenario::Action::Await { .. }) {
                // The restarts run their course first: the job ends FAILED (strategy exhausted).
                let failed = tokio::time::timeout(Duration::from_secs(60), async {
                    loop {
                        match events.recv().await.expect("events").event {
                            Event::JobFailing { reason } => failing.push(reason),
                            Event::JobFailed { .. } => break,
                            _ => {}
                        }
                    }
                })
                .await;
                assert!(failed.is_ok(), "the job fails once the restart strategy is exhausted: {failing:?}");
            }
            if player.play(&engine, step, &mut |_| {}).await == scenario::Flow::Stop {
                break;
            }
        }
        let report = player.finish(&engine, &s, &mut |_| {}).await;
        let view = engine.view(false);
        engine.shutdown().await;
        let reason = format!("cannot read {}: No such file or directory (os error 2)", gone.display());
        let restore_failures = failing.iter().filter(|r| r.contains("could not restore checkpoint") && r.contains(&reason)).count();
        assert_eq!(restore_failures, 2, "the kill took one attempt, each of the other two restores fails naming the file: {failing:?}");
        assert_eq!(report.status, "FAILED");
        assert!(view.failure.as_deref().is_some_and(|f| f.contains(&reason)), "the status line's cause: {:?}", view.failure);
        let not_restored = report.restore_failure.clone().expect("the report says the state was not restored");
        // Each counter subtask reads every handle for its key groups: either may fail first.
        assert!(not_restored.starts_with("counter[") && not_restored.contains("could not restore checkpoint"), "{not_restored}");
        assert!(not_restored.ends_with(&reason), "{not_restored}");
        let table = scenario::report_table(&report);
        assert!(!table.lines().any(|l| l.trim_end().ends_with(" ok")), "no row reads ok:\n{table}");
        assert!(table.contains(&format!("not restored: {not_restored}")), "{table}");
        for key in ["a", "e"] {
            assert!(table.lines().any(|l| l.starts_with(key) && l.trim_end().ends_with("not restored")), "{key}:\n{table}");
        }
        assert!(report.failures.iter().any(|f| f.contains("await running timed out") && f.contains(&reason)), "{:?}", report.failures);
        let failure = scenario::Failure::of_run(scenario::FailureKind::NotRestored, format!("not restored: {not_restored}"));
        assert!(report.failures.contains(&failure), "{:?}", report.failures);
    });
}

/// Files ckptlab writes outside its private directory (checkpoints, savepoints, the durable
/// topic) are 0600, their
/// directories 0700, whatever a looser umask would give.
#[test]
fn checkpoint_and_savepoint_files_are_private_under_a_loose_umask() {
    let scratch = scratch_dir();
    let root = scratch.path();
    let scenario = root.join("s.toml");
    std::fs::write(&scenario, format!("name = \"s\"\n{FILL}[[steps]]\nsavepoint = true\n")).unwrap();
    let mut cmd = format!("umask 022; exec {} run {} -q", common::BIN, scenario.display());
    for (k, v) in base(&root.join("out"), "rocksdb", true) {
        cmd.push_str(&format!(" --set {k}={v}"));
    }
    cmd.push_str(&format!(" --set source.embedded.dir={}", root.join("out").join("topic").display()));
    let out = Command::new("sh").arg("-c").arg(&cmd).env("CKPTLAB_HOME", root.join("home")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mut seen = 0;
    for top in [root.join("out").join("chk"), root.join("out").join("sp"), root.join("out").join("topic")] {
        let mut stack = vec![top];
        while let Some(p) = stack.pop() {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o777;
            if m.is_dir() {
                assert_eq!(mode, 0o700, "{}", p.display());
                stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
            } else {
                assert_eq!(mode, 0o600, "{}", p.display());
                seen += 1;
            }
        }
    }
    assert!(seen > 5, "checkpoint and savepoint files were checked: {seen}");
}

/// CLAIM hands the restored snapshot to the job, which deletes it once its own checkpoints
/// subsume it (Flink's RecoveryClaimMode.CLAIM), wherever it lies: a checkpoint of a job whose
/// checkpoint directory is not this job's (kept forever before), and a savepoint.
#[test]
fn claim_deletes_the_claimed_snapshot_once_subsumed_wherever_it_lies() {
    let scratch = scratch_dir();
    let root = scratch.path();
    paused(async {
        let topic = EmbeddedTopic::new("input-topic", 2, EventBus::new(tokio::time::Instant::now()));
        let (chk, savepoint) = first_job(&root.join("first"), &topic, "hashmap", false).await;
        for (n, claimed) in [chk.clone(), savepoint.clone()].into_iter().enumerate() {
            let mut pairs = base(&root.join(format!("second-{n}")), "hashmap", false);
            pairs.push(("execution.state-recovery.path".into(), claimed.display().to_string()));
            pairs.push(("execution.state-recovery.claim-mode".into(), "CLAIM".into()));
            let engine = try_start_on_topic(&pairs, &topic).expect("engine starts");
            let report = run_steps(
                &engine,
                "[[steps]]\nproduce = [\"a\"]\n[[steps]]\nawait = \"caught-up\"\n[[steps]]\nawait = \"checkpoint-completed\"\n[[steps]]\nawait = \"checkpoint-completed\"\n[[steps]]\nexpect = { lost = 0, overcounted = 0 }\n",
            )
            .await;
            engine.shutdown().await;
            assert!(report.passed, "{:?}", report.failures);
            assert!(!claimed.exists(), "a claimed snapshot goes once subsumed: {}", claimed.display());
        }
    });
}

// ---------------------------------------------------------------- issue 22 §3: changing backends

/// `base` on `backend`, restoring `from` (under `claim`) when given.
fn restoring(root: &Path, backend: &str, incremental: bool, from: Option<&Path>, claim: &str) -> Vec<(String, String)> {
    let mut pairs = base(root, backend, incremental);
    if let Some(p) = from {
        pairs.push(("execution.state-recovery.path".into(), p.display().to_string()));
        pairs.push(("execution.state-recovery.claim-mode".into(), claim.into()));
    }
    pairs
}

/// A job on `backend` (restoring `from` when given) that produces `values`, catches up, and stops
/// with a savepoint in `format`: that savepoint's directory, and the job's newest checkpoint.
async fn stop_with(root: &Path, topic: &Arc<EmbeddedTopic>, backend: &str, from: Option<&Path>, values: &str, format: &str) -> (PathBuf, PathBuf) {
    let engine = try_start_on_topic(&restoring(root, backend, false, from, "NO_CLAIM"), topic).expect("engine starts");
    let steps = format!(
        "[[steps]]\nproduce = {values}\n[[steps]]\nawait = \"caught-up\"\n[[steps]]\nawait = \"checkpoint-completed\"\n\
         [[steps]]\nexpect = {{ lost = 0, overcounted = 0 }}\n[[steps]]\nsavepoint = true\nformat = \"{format}\"\n"
    );
    let report = run_steps(&engine, &steps).await;
    assert!(report.passed, "{backend}: {:?}", report.failures);
    let job = root.join("chk").join(engine.job_id());
    engine.shutdown().await;
    let newest = common::retained(&job).last().map(|m| job.join(format!("chk-{}", m.checkpoint)));
    (PathBuf::from(report.savepoints.last().expect("a savepoint")), newest.unwrap_or_default())
}

/// Every key's count in a snapshot, as `ckptlab inspect` reads it.
fn inspected(path: &Path) -> (ckptlab::inspect::Inspection, BTreeMap<String, u64>) {
    let i = ckptlab::inspect::inspect(path, 1000).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let counts = i.subtasks.iter().flat_map(|t| t.first.iter().cloned()).collect();
    (i, counts)
}

fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

// Catches the old backend switch (a backend reading the other's native files) and a canonical
// savepoint that is a backend's files under another name: heap -> canonical -> RocksDB ->
// canonical -> heap keeps every count exact, each savepoint is one key-groups file per subtask
// that `inspect` names canonical, written by the backend that took it, restorable into both.
#[test]
fn a_canonical_savepoint_moves_a_job_between_backends_with_exact_counts() {
    let scratch = scratch_dir();
    let root = scratch.path();
    paused(async {
        let topic = EmbeddedTopic::new("input-topic", 2, EventBus::new(tokio::time::Instant::now()));
        let (heap_sp, _) = stop_with(&root.join("1"), &topic, "hashmap", None, "[\"a\", \"b\", \"a\", \"c\", \"a\", \"b\", \"d\"]", "canonical").await;
        let (i, c) = inspected(&heap_sp);
        assert_eq!(c, map(&[("a", 3), ("b", 2), ("c", 1), ("d", 1)]));
        assert_eq!((i.kind.as_str(), i.format.as_str(), i.backend.as_deref()), ("savepoint", "canonical", Some("hashmap")));
        assert_eq!(i.restorable_into, ["hashmap", "rocksdb"]);
        assert!(i.subtasks.iter().all(|t| t.format == "canonical" && t.canonical_version == Some(1) && t.written_by.as_deref() == Some("hashmap")));
        let text = ckptlab::inspect::render(&i);
        assert!(
            text.contains("format        canonical (key groups of key/value pairs, canonical format version 1), written by hashmap; restorable into hashmap or rocksdb; _metadata format version 2"),
            "{text}"
        );
        let (rocks_sp, _) = stop_with(&root.join("2"), &topic, "rocksdb", Some(&heap_sp), "[\"a\", \"e\"]", "canonical").await;
        let (i, c) = inspected(&rocks_sp);
        assert_eq!(c, map(&[("a", 4), ("b", 2), ("c", 1), ("d", 1), ("e", 1)]), "heap -> RocksDB");
        assert!(i.subtasks.iter().all(|t| t.format == "canonical" && t.written_by.as_deref() == Some("rocksdb") && t.files == 1));
        let (back, _) = stop_with(&root.join("3"), &topic, "hashmap", Some(&rocks_sp), "[\"b\"]", "canonical").await;
        assert_eq!(inspected(&back).1, map(&[("a", 4), ("b", 3), ("c", 1), ("d", 1), ("e", 1)]), "RocksDB -> heap");
    });
}

// Catches a restore that accepts another backend's checkpoint or native savepoint (the old
// engine read either into either): refused at submission with Flink's StateUtil message and
// ckptlab's hint, for both directions, while the same backend still restores them.
#[test]
fn a_checkpoint_or_native_savepoint_restores_only_into_its_own_backend() {
    let scratch = scratch_dir();
    let root = scratch.path();
    paused(async {
        for (n, (from, to)) in [("hashmap", "rocksdb"), ("rocksdb", "hashmap")].into_iter().enumerate() {
            let topic = EmbeddedTopic::new("input-topic", 2, EventBus::new(tokio::time::Instant::now()));
            let (native, chk) = stop_with(&root.join(format!("{n}")), &topic, from, None, "[\"a\", \"b\"]", "native").await;
            let (i, c) = inspected(&native);
            assert_eq!((i.format.as_str(), i.restorable_into.clone(), c), ("native", vec![from.to_string()], map(&[("a", 1), ("b", 1)])));
            for (what, snapshot) in [("native savepoint", &native), ("checkpoint", &chk)] {
                let e = try_start_on_topic(&restoring(&root.join(format!("{n}-{what}")), to, false, Some(snapshot), "NO_CLAIM"), &topic)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| panic!("a {what} of {from} restored into {to}"));
                assert!(e.contains(&format!("is a {what} of the {from} backend and cannot be restored into {to}")), "{e}");
                assert!(e.contains("Unexpected state handle type, expected one of: ") && e.contains("This can mostly happen when a different StateBackend from the one that was used for taking a checkpoint/savepoint is used when restoring."), "{e}");
                assert!(e.contains("take a canonical savepoint to change backends"), "{e}");
                let same = try_start_on_topic(&restoring(&root.join(format!("{n}-{what}-same")), from, false, Some(snapshot), "NO_CLAIM"), &topic);
                same.unwrap_or_else(|e| panic!("a {what} restores into its own backend {from}: {e}")).shutdown().await;
            }
        }
    });
}

/// The SST files of a checkpoint's handles: (name, inode).
fn ssts(m: &ckptlab::state::storage::CheckpointMetadata) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    m.keyed
        .iter()
        .flat_map(|h| match h {
            ckptlab::state::StateHandle::RocksDb { files, .. } => files.clone(),
            _ => Vec::new(),
        })
        .filter(|f| f.name.ends_with(".sst"))
        .map(|f| (f.name, std::fs::metadata(&f.path).map(|md| md.ino()).unwrap_or(0)))
        .collect()
}

// Catches CLAIM re-uploading every restored SST file (RecoveryClaimMode.java:33: the job owns
// the snapshot, and RocksDB's first checkpoint may reuse its files) and NO_CLAIM reusing any
// (its first checkpoint is full, CheckpointCoordinator.java:1800): the first checkpoint after
// the restore uploads none of the restored files under CLAIM and all of them under NO_CLAIM.
#[test]
fn the_first_checkpoint_after_a_claim_restore_reuses_the_restored_rocksdb_files() {
    let scratch = scratch_dir();
    let root = scratch.path();
    paused(async {
        let mut uploaded = BTreeMap::new();
        for claim in ["CLAIM", "NO_CLAIM"] {
            let topic = EmbeddedTopic::new("input-topic", 2, EventBus::new(tokio::time::Instant::now()));
            let dir = root.join(claim);
            let (chk, _) = first_job(&dir.join("first"), &topic, "rocksdb", true).await;
            let restored = ssts(&ckptlab::state::storage::CheckpointStorage::read_metadata(&chk).unwrap());
            assert!(!restored.is_empty(), "the restored checkpoint has SST files");
            let engine = try_start_on_topic(&restoring(&dir.join("second"), "rocksdb", true, Some(&chk), claim), &topic).expect("engine starts");
            let report = run_steps(&engine, "[[steps]]\nawait = \"checkpoint-completed\"\n[[steps]]\nexpect = { lost = 0, overcounted = 0 }\n").await;
            assert!(report.passed, "{claim}: {:?}", report.failures);
            let job = dir.join("second").join("chk").join(engine.job_id());
            engine.shutdown().await;
            let first = common::retained(&job).into_iter().next().expect("the new job's first checkpoint");
            let now = ssts(&first);
            assert_eq!(now.len(), restored.len(), "{claim}: no new records, the same SST files");
            let fresh = now.iter().filter(|f| !restored.contains(f)).count();
            uploaded.insert(claim, (fresh, now.len()));
        }
        assert_eq!(uploaded["CLAIM"].0, 0, "CLAIM: the restored SST files are referenced, none uploaded: {uploaded:?}");
        assert_eq!(uploaded["NO_CLAIM"].0, uploaded["NO_CLAIM"].1, "NO_CLAIM: the first checkpoint is full: {uploaded:?}");
    });
}
