//! Safe by construction: what a careless or hostile scenario, config or neighbour can make
//! ckptlab do to the disk, and the inputs that once crashed, hung or silently did nothing. Each
//! test drives the real binary, with its private directory in a scratch place ($CKPTLAB_HOME or
//! TMPDIR), as a user would.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Runs the binary with `env` set (and nothing of the caller's CKPTLAB_HOME).
fn ckptlab(args: &[&str], env: &[(&str, &Path)]) -> common::Ran {
    let mut c = common::binary();
    c.args(args).env_remove("CKPTLAB_HOME").env_remove("CKPTLAB_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    common::ran(&mut c)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Fast channels, so a run takes well under a second.
const FAST: &str = "[config.ckptlab]\nhop-delay = \"0ms\"\n[config.execution.buffer-timeout]\ninterval = \"0ms\"\n";

fn uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

#[test]
fn a_step_naming_a_path_never_deletes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    std::fs::create_dir_all(victim.join("inside")).unwrap();
    std::fs::write(victim.join("inside").join("precious"), b"keep me").unwrap();
    let home = tmp.path().join("home");
    for (kill, start) in [(victim.display().to_string(), victim.display().to_string()), ("../../victim".into(), "tm-1".into())] {
        let f = write(tmp.path(), "x.toml", &format!("name = \"x\"\n{FAST}[[steps]]\nstart = {start:?}\n[[steps]]\nkill = {kill:?}\n"));
        let out = ckptlab(&["run", &f, "--backend", "rocksdb"], &[("CKPTLAB_HOME", &home)]);
        assert_eq!(out.code, 2, "refused before anything runs: {}", out.text());
        assert!(
            out.stderr.contains("x.toml:") && out.stderr.contains("tm-1 .. tm-64"),
            "names the line and the allowed names: {}",
            out.text()
        );
        assert!(!out.stdout.contains("PASSED"), "{}", out.text());
    }
    assert_eq!(std::fs::read(victim.join("inside").join("precious")).unwrap(), b"keep me");
}

#[test]
fn killing_a_task_manager_that_is_not_there_is_an_error_naming_those_that_are() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "k.toml", &format!("name = \"k\"\n{FAST}[[steps]]\nkill = \"tm-9\"\n"));
    let out = ckptlab(&["run", &f], &[("CKPTLAB_HOME", &tmp.path().join("home"))]);
    assert_eq!(out.code, 2, "{}", out.text());
    assert!(out.stderr.contains("k.toml:") && out.stderr.contains("tm-9") && out.stderr.contains("tm-1, tm-2"), "{}", out.text());
    // A TM started by an earlier step can be killed.
    let f = write(tmp.path(), "k3.toml", &format!("name = \"k3\"\n{FAST}[[steps]]\nstart = true\n[[steps]]\nkill = \"tm-3\"\n"));
    let out = ckptlab(&["run", &f, "-q"], &[("CKPTLAB_HOME", &tmp.path().join("home"))]);
    assert_eq!(out.code, 0, "{}", out.text());
}

#[test]
fn the_private_directory_is_0700_and_holds_everything_a_run_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "c.toml",
        &format!(
            "name = \"c\"\n{FAST}[[steps]]\nproduce = [\"a\"]\n[[steps]]\ncheckpoint = true\n[[steps]]\nawait = \"checkpoint-completed\"\n"
        ),
    );
    // TMPDIR, as a user without CKPTLAB_HOME has it.
    let out = ckptlab(&["run", &f, "--backend", "rocksdb", "-q"], &[("TMPDIR", tmp.path())]);
    assert_eq!(out.code, 0, "{}", out.text());
    let home = tmp.path().join(format!("ckptlab-{}", uid()));
    let meta = std::fs::symlink_metadata(&home).expect("the private directory exists");
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o777, 0o700);
    assert!(!tmp.path().join("ckptlab").exists(), "nothing in the old shared <temp>/ckptlab");
    // The job ended: its checkpoints (not retained) and its TMs' local directories are gone.
    let leftovers: Vec<_> = walk(&home).into_iter().filter(|p| p.is_file()).collect();
    assert!(leftovers.is_empty(), "a finished run leaves no files: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn a_planted_symlink_in_place_of_the_private_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("attacker");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&target, tmp.path().join(format!("ckptlab-{}", uid()))).unwrap();
    let f = write(tmp.path(), "s.toml", &format!("name = \"s\"\n{FAST}[[steps]]\nproduce = [\"a\"]\n"));
    let out = ckptlab(&["run", &f, "--backend", "fs"], &[("TMPDIR", tmp.path())]);
    assert_eq!(out.code, 2, "{}", out.text());
    assert!(out.stderr.contains("symbolic link") && out.stderr.contains("CKPTLAB_HOME"), "{}", out.text());
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "nothing written through the link");
}

#[test]
fn a_private_directory_owned_by_someone_else_is_refused() {
    if uid() != 0 {
        return common::skip("planting a directory owned by another user needs root (chown); CI runs as root");
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("ckptlab-0");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let f = write(tmp.path(), "o.toml", &format!("name = \"o\"\n{FAST}[[steps]]\nproduce = [\"a\"]\n"));
    let out = ckptlab(&["run", &f, "--backend", "fs"], &[("TMPDIR", tmp.path())]);
    assert_eq!(out.code, 2, "{}", out.text());
    assert!(out.stderr.contains("owned by uid 65534"), "{}", out.text());
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0, "nothing written into another user's directory");
}

#[test]
fn leftovers_of_a_killed_run_are_swept_and_completed_checkpoints_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let dead_pid = "4999999\n"; // above the kernel's pid_max: never a live process
                                // A task manager root of a dead run, with a RocksDB instance's directory.
    let tm_root = home.join("tm").join("ckptlab-0123456789ab");
    std::fs::create_dir_all(tm_root.join("tm-1").join("job_x_counter_0_attempt_1").join("db")).unwrap();
    std::fs::write(tm_root.join(".ckptlab-owner"), dead_pid).unwrap();
    // A job directory of a dead run: one complete checkpoint, one cut off while writing its
    // metadata, one half discarded (no _metadata left), and a shared file nobody references.
    let job = home.join("checkpoints").join("deadjob");
    std::fs::create_dir_all(job.join("shared")).unwrap();
    std::fs::write(job.join(".ckptlab-owner"), dead_pid).unwrap();
    let kept_sst = job.join("shared").join("kept.sst");
    std::fs::write(&kept_sst, b"sst").unwrap();
    std::fs::write(job.join("shared").join("orphan.sst"), b"sst").unwrap();
    for (n, files) in [(1, vec!["_metadata"]), (2, vec!["_metadata.inprogress", "counter-0"]), (3, vec!["counter-0"])] {
        let chk = job.join(format!("chk-{n}"));
        std::fs::create_dir_all(&chk).unwrap();
        for f in files {
            std::fs::write(chk.join(f), b"{}").unwrap();
        }
    }
    let meta = serde_json::json!({
        "job_id": "deadjob", "checkpoint": 1, "mode": "EXACTLY_ONCE", "offsets": [], "staged_output": [],
        "keyed": [{"kind": "rocks_db", "dir": job.join("chk-1").join("counter-0"), "key_groups": {"start": 0, "end": 128},
                   "files": [{"name": "kept.sst", "path": kept_sst, "size": 3, "shared": true}], "size": 3}]
    });
    std::fs::write(job.join("chk-1").join("_metadata"), serde_json::to_vec(&meta).unwrap()).unwrap();
    // A job directory of a live process (ours, the test) is not touched.
    let live = home.join("checkpoints").join("livejob").join("chk-9");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(home.join("checkpoints").join("livejob").join(".ckptlab-owner"), format!("{}\n", std::process::id())).unwrap();

    let f = write(tmp.path(), "w.toml", &format!("name = \"w\"\n{FAST}[[steps]]\nproduce = [\"a\"]\n"));
    let out = ckptlab(&["run", &f, "--backend", "rocksdb", "-q"], &[("CKPTLAB_HOME", &home)]);
    assert_eq!(out.code, 0, "{}", out.text());
    assert!(!tm_root.exists(), "the dead run's TM directories are swept");
    assert!(job.join("chk-1").join("_metadata").exists() && kept_sst.exists(), "a completed checkpoint stays, with its shared files");
    assert!(!job.join("chk-2").exists(), "a checkpoint cut off before its _metadata is removed");
    assert!(!job.join("chk-3").exists(), "a half-discarded checkpoint is removed");
    assert!(!job.join("shared").join("orphan.sst").exists(), "an unreferenced shared file is removed");
    assert!(live.exists(), "a live process's job is left alone");
}

#[test]
fn the_log_never_follows_a_planted_symlink() {
    // The workbench opens its log before the terminal; `open_log` is what it calls. Here through
    // the library, since the workbench needs a terminal (the tmux tests cover that path).
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, b"root only\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let home = tmp.path().join("home");
    ckptlab::workdir::ensure_private_dir(&home).unwrap();
    std::os::unix::fs::symlink(&secret, home.join("ckptlab.log")).unwrap();
    let e = ckptlab::workdir::open_log(&home.join("ckptlab.log")).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read(&secret).unwrap(), b"root only\n");
}

/// Inputs that crashed, hung, or passed while doing nothing: each is an error naming the file,
/// the line or key, and what is allowed.
#[test]
fn bad_inputs_are_refused_up_front_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let cases: &[(&str, &str, &[&str])] = &[
        ("rate", "[[steps]]\ngenerate = { rate = 9223372036854775807, duration = \"1s\" }\n", &["rate", "10000000"]),
        ("partition", "[[steps]]\ngenerate = { rate = 10, duration = \"1s\", partition = 5 }\n", &["partition 5", "source.partitions"]),
        ("produce-partition", "[[steps]]\nproduce = [\"a\"]\npartition = 2\n", &["partition 2"]),
        ("set-static", "[[steps]]\nset = { \"job.parallelism\" = 1 }\n", &["job.parallelism", "cannot change while the job runs"]),
        ("start-name", "[[steps]]\nstart = \"filesystem\"\n", &["filesystem", "tm-1 .. tm-64"]),
        ("no-tms", "[config.taskmanager]\ncount = 0\n", &["taskmanager.count", "from 1 to 64"]),
        ("slots", "[config.job]\nparallelism = 3\n", &["job.parallelism", "needs 3 slots, the cluster has 2"]),
        ("nan", "[config.restart-strategy.exponential-delay]\nbackoff-multiplier = nan\n", &["backoff-multiplier", "finite number"]),
        ("inf", "[config.restart-strategy.exponential-delay]\nbackoff-multiplier = inf\n", &["backoff-multiplier"]),
        ("hours", "[config.heartbeat]\ntimeout = \"99999999999h\"\n", &["heartbeat.timeout", "longest allowed"]),
        ("float", "[config.heartbeat]\ntimeout = 1e308\n", &["heartbeat.timeout", "longest allowed"]),
        ("mutated", "[[steps]]\nprodcue = [\"a\"]\n", &["`prodcue`", "allowed: produce"]),
    ];
    for (name, body, needles) in cases {
        let f = write(tmp.path(), &format!("{name}.toml"), &format!("name = \"{name}\"\n{body}"));
        let out = ckptlab(&["run", &f], &[("CKPTLAB_HOME", &home)]);
        assert_eq!(out.code, 2, "{name}: {}", out.text());
        assert!(out.stderr.contains(&format!("{name}.toml")), "{name}: names the file: {}", out.text());
        for n in *needles {
            assert!(out.stderr.contains(n), "{name}: says {n:?}: {}", out.text());
        }
    }
}

#[test]
fn backend_names_are_case_insensitive() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "b.toml", &format!("name = \"b\"\n{FAST}[[steps]]\nproduce = [\"a\"]\n"));
    let out = ckptlab(&["run", &f, "--backend", "ROCKSDB", "-q"], &[("CKPTLAB_HOME", &tmp.path().join("home"))]);
    assert_eq!(out.code, 0, "{}", out.text());
    assert!(out.stdout.contains("rocksdb") || out.stdout.contains("TOTAL"), "{}", out.text());
}

#[test]
fn a_refused_step_fails_the_run_naming_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    // tm-1 is killed twice: the second kill does nothing, and says so.
    let f = write(tmp.path(), "twice.toml", &format!("name = \"twice\"\n{FAST}[[steps]]\nkill = \"tm-1\"\n[[steps]]\nkill = \"tm-1\"\n"));
    let out = ckptlab(&["run", &f], &[("CKPTLAB_HOME", &tmp.path().join("home"))]);
    assert_eq!(out.code, 1, "{}", out.text());
    assert!(out.stdout.contains("FAILED line 8: kill: tm-1 is not running"), "{}", out.text());
}

#[test]
fn run_prints_why_checkpoints_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "big.toml",
        &format!(
            "name = \"big\"\n{FAST}[config.execution.checkpointing]\ninterval = \"50ms\"\n\
             [[steps]]\ngenerate = {{ rate = 2000, duration = \"300ms\", keys = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\"] }}\n[[steps]]\nwait = \"500ms\"\n"
        ),
    );
    let out = ckptlab(&["run", &f, "--set", "ckptlab.jobmanager-max-state-size=20b"], &[("CKPTLAB_HOME", &tmp.path().join("home"))]);
    assert!(out.stdout.contains("failed: ") && out.stdout.contains("checkpoint "), "the reason is printed: {}", out.text());
}

/// Every `_metadata` under `checkpoints/` names files that exist with their recorded sizes.
fn assert_checkpoints_whole(checkpoints: &Path, trial: usize) -> usize {
    use ckptlab::state::storage::CheckpointStorage;
    use ckptlab::state::StateHandle;
    let mut complete = 0;
    for job in std::fs::read_dir(checkpoints).into_iter().flatten().flatten() {
        for chk in std::fs::read_dir(job.path()).into_iter().flatten().flatten() {
            if !chk.file_name().to_string_lossy().starts_with("chk-") || !chk.path().join("_metadata").exists() {
                continue;
            }
            let meta = CheckpointStorage::read_metadata(&chk.path())
                .unwrap_or_else(|e| panic!("trial {trial}: a _metadata that does not read: {e}"));
            for h in &meta.keyed {
                let files: Vec<(std::path::PathBuf, u64)> = match h {
                    StateHandle::File { path, size } => vec![(path.clone(), *size)],
                    StateHandle::Canonical { path, size, .. } => vec![(path.clone(), *size)],
                    StateHandle::RocksDb { files, .. } => files.iter().map(|f| (f.path.clone(), f.size)).collect(),
                    StateHandle::Memory { .. } => Vec::new(),
                };
                for (path, size) in files {
                    let len = std::fs::metadata(&path).map(|m| m.len());
                    assert_eq!(
                        len.ok(),
                        Some(size),
                        "trial {trial}: {} names {} which is missing or cut",
                        chk.path().display(),
                        path.display()
                    );
                }
            }
            complete += 1;
        }
    }
    complete
}

/// The process killed outright (SIGKILL) at varying moments while incremental RocksDB
/// checkpoints are written, retained and discarded every 20 ms: whatever it leaves, a checkpoint
/// directory with `_metadata` is whole. The next run sweeps what the dead ones left.
#[test]
fn checkpoints_left_by_killed_runs_are_whole_or_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let f = write(
        tmp.path(),
        "busy.toml",
        &format!(
            "name = \"busy\"\n{FAST}[config.execution.checkpointing]\ninterval = \"20ms\"\nnum-retained = 2\nincremental = true\n\
             [[steps]]\ngenerate = {{ rate = 20000, duration = \"5s\", keys = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\", \"i\", \"j\"] }}\n\
             [[steps]]\nwait = \"5s\"\n"
        ),
    );
    let mut complete = 0;
    for trial in 0..20 {
        let mut child = common::binary()
            .args(["run", &f, "--backend", "rocksdb", "-q"])
            .env("CKPTLAB_HOME", &home)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(250 + (trial as u64 * 137) % 400));
        child.kill().unwrap();
        child.wait().unwrap();
        complete += assert_checkpoints_whole(&home.join("checkpoints"), trial);
    }
    assert!(complete > 0, "the trials were killed after some checkpoints completed");
    let dead_tm_roots = std::fs::read_dir(home.join("tm")).unwrap().count();
    assert!(dead_tm_roots > 0, "killed runs leave their TM directories");
    let out = ckptlab(
        &["run", &write(tmp.path(), "one.toml", &format!("name = \"one\"\n{FAST}[[steps]]\nproduce = [\"a\"]\n")), "-q"],
        &[("CKPTLAB_HOME", &home)],
    );
    assert_eq!(out.code, 0, "{}", out.text());
    assert_eq!(std::fs::read_dir(home.join("tm")).unwrap().count(), 0, "the next run swept the dead runs' TM directories");
    assert_checkpoints_whole(&home.join("checkpoints"), 99);
}
