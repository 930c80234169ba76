//! Keys in Flink's key groups, and snapshots that say which key groups they hold (issue 22 §4).
//!
//! - A job's snapshot holds each key in the key group and on the subtask Flink 2.3 puts it on
//!   (`KeyGroupRangeAssignment.assignKeyToParallelOperator(key, 128, 2)`, values printed by
//!   Flink's own class, see src/keygroup.rs), in both backends: routing, state and the RocksDB
//!   key prefix all use Flink's assignment.
//! - A snapshot of the earlier format (FNV key groups: `_metadata` without `format_version`) is
//!   refused at submission, exit 2, naming its `_metadata` and its version.
//! - A restore with another max parallelism, or at a parallelism above the snapshot's, is
//!   refused with Flink's reason (StateAssignmentOperation.checkParallelismPreconditions).
//! - `job.max-parallelism` other than 128 is refused as not modelled, naming the allowed values.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ckptlab::cluster::Engine;
use ckptlab::connectors::{EmbeddedTopic, Topic};
use ckptlab::events::EventBus;
use ckptlab::scenario::{self, Scenario};
use crate::common::{layers, paused, scratch_dir};

/// (key, its key group among 128, its subtask at parallelism 2), from Flink 2.3's
/// KeyGroupRangeAssignment.assignToKeyGroup / assignKeyToParallelOperator (see src/keygroup.rs
/// for how they were printed). Under ckptlab's earlier FNV hash "a" was on another group.
const FLINK: &[(&str, u16, usize)] =
    &[("a", 81, 1), ("b", 22, 0), ("key-17", 96, 1), ("\u{e9}", 30, 0), ("\u{fc}ber", 73, 1), ("\u{1f600}", 54, 0), ("hello world", 92, 1)];

fn pairs(root: &Path, backend: &str) -> Vec<(String, String)> {
    vec![
        ("execution.checkpointing.interval".into(), "100ms".into()),
        ("execution.checkpointing.storage".into(), "filesystem".into()),
        ("execution.checkpointing.dir".into(), root.join("chk").display().to_string()),
        ("execution.checkpointing.externalized-checkpoint-retention".into(), "RETAIN_ON_CANCELLATION".into()),
        ("state.backend.type".into(), backend.into()),
        ("taskmanager.tmp-dirs".into(), root.join("tm").display().to_string()),
        ("ckptlab.hop-delay".into(), "0ms".into()),
        ("source.auto-offset-reset".into(), "earliest".into()),
    ]
}

/// A job that counts the keys of [`FLINK`] and keeps its checkpoints: its newest `chk-<n>`.
fn snapshot(root: &Path, backend: &str) -> PathBuf {
    paused(async {
        let topic = EmbeddedTopic::new("input-topic", 2, EventBus::new(tokio::time::Instant::now()));
        let p = pairs(root, backend);
        let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let l = layers(&refs);
        let cfg = l.build().expect("valid test config");
        let engine = Engine::start_with_topic(l, cfg, EventBus::new(tokio::time::Instant::now()), Some(topic.clone() as Arc<dyn Topic>))
            .expect("engine starts");
        let keys: Vec<String> = FLINK.iter().map(|(k, _, _)| format!("{k:?}")).collect();
        let steps = format!(
            "name = \"kg\"\n[[steps]]\nproduce = [{}]\n[[steps]]\nawait = \"caught-up\"\n[[steps]]\nawait = \"checkpoint-completed\"\n[[steps]]\nawait = \"checkpoint-completed\"\n",
            keys.join(", ")
        );
        let s = Scenario::parse(&steps, "kg.toml").expect("valid steps");
        let report = scenario::run(&s, &engine, |_| {}).await;
        assert!(report.passed, "{:?}", report.failures);
        let job = root.join("chk").join(engine.job_id());
        engine.shutdown().await;
        common::retained(&job).last().map(|m| job.join(format!("chk-{}", m.checkpoint))).expect("a retained checkpoint")
    })
}

#[test]
fn a_snapshot_holds_each_key_in_flinks_key_group_on_flinks_subtask() {
    let scratch = scratch_dir();
    for backend in ["hashmap", "rocksdb"] {
        let chk = snapshot(&scratch.path().join(backend), backend);
        let found = ckptlab::state::storage::find_snapshot(&chk).unwrap();
        assert_eq!(found.metadata.job.as_ref().map(|j| (j.format_version, j.max_parallelism)), Some((2, 128)), "{backend}");
        let mut seen = Vec::new();
        ckptlab::state::storage::read_state(&found, |subtask, _, entries| {
            for (kg, key, count) in entries {
                seen.push((key, kg, subtask, count));
            }
        })
        .unwrap();
        seen.sort();
        let mut want: Vec<(String, u16, usize, u64)> = FLINK.iter().map(|&(k, kg, s)| (k.to_string(), kg, s, 1)).collect();
        want.sort();
        assert_eq!(seen, want, "{backend}: (key, key group, subtask, count) as Flink assigns them");
    }
}

fn edit_metadata(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("_metadata");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn copy_of(chk: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    let status = Command::new("cp").arg("-a").arg(chk).arg(to).status().expect("cp");
    assert!(status.success());
    to.join(chk.file_name().unwrap())
}

/// `ckptlab run --restore path` of a one-step scenario, with `--set` pairs.
fn restore_run(root: &Path, path: &Path, sets: &[&str]) -> common::Ran {
    let scenario = root.join("restore.toml");
    std::fs::write(&scenario, "name = \"restore\"\n[[steps]]\nwait = \"10ms\"\n").unwrap();
    let mut cmd = common::binary();
    cmd.args(["run", &scenario.display().to_string(), "-q", "--restore", &path.display().to_string()]);
    let mut all = vec![
        format!("execution.checkpointing.dir={}", root.join("chk2").display()),
        format!("taskmanager.tmp-dirs={}", root.join("tm2").display()),
        "execution.checkpointing.storage=filesystem".to_string(),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    for s in all {
        cmd.args(["--set", &s]);
    }
    cmd.env("CKPTLAB_HOME", root.join("home"));
    common::ran(&mut cmd)
}

#[test]
fn old_format_and_other_max_parallelism_snapshots_are_refused_with_the_reason() {
    let scratch = scratch_dir();
    let root = scratch.path();
    let chk = snapshot(&root.join("heap"), "hashmap");

    // The pristine one restores (the refusals below are not a restore that always fails).
    let ok = restore_run(root, &chk, &[]);
    assert_eq!(ok.code, 0, "{}", ok.text());

    let cases: Vec<(&str, Box<dyn Fn(&mut serde_json::Value)>, Vec<String>, Vec<&str>)> = vec![
        (
            "format 1 (no format_version)",
            Box::new(|v| {
                v["job"].as_object_mut().unwrap().remove("format_version");
            }),
            vec!["snapshot format version 1, this ckptlab reads version 2".into()],
            vec![],
        ),
        (
            "format 1 (no job, before issue 14)",
            Box::new(|v| v["job"] = serde_json::Value::Null),
            vec!["snapshot format version 1".into()],
            vec![],
        ),
        (
            "another max parallelism",
            Box::new(|v| v["job"]["max_parallelism"] = 256.into()),
            vec!["The maximum parallelism (256) with which the latest checkpoint".into(), "current maximum parallelism (128)".into(), "changed. This is currently not supported.".into()],
            vec![],
        ),
        (
            "a parallelism above the snapshot's max parallelism",
            Box::new(|v| v["job"]["max_parallelism"] = 2.into()),
            vec!["The maximum parallelism (2) of the restored state is lower than the configured parallelism (3)".into()],
            vec!["job.parallelism=3", "taskmanager.count=3"],
        ),
    ];
    for (i, (name, edit, says, sets)) in cases.iter().enumerate() {
        let d = copy_of(&chk, &root.join(format!("case-{i}")));
        edit_metadata(&d, edit);
        let out = restore_run(root, &d, sets);
        assert_eq!(out.code, 2, "{name}: exit 2 at submission: {}", out.text());
        // The format refusal names the `_metadata` file, the others the snapshot's directory.
        let metadata = if i < 2 { d.join("_metadata") } else { d.clone() }.display().to_string();
        assert!(out.stderr.contains(&metadata), "{name}: names {metadata}: {}", out.stderr);
        for s in says {
            assert!(out.stderr.contains(s.as_str()), "{name}: says {s:?}: {}", out.stderr);
        }
    }
}

#[test]
fn a_max_parallelism_the_engine_does_not_model_is_refused_naming_the_allowed_values() {
    let scratch = scratch_dir();
    let scenario = scratch.path().join("s.toml");
    std::fs::write(&scenario, "name = \"s\"\n[[steps]]\nwait = \"10ms\"\n").unwrap();
    let run = |set: &str| {
        let mut cmd = common::binary();
        cmd.args(["run", &scenario.display().to_string(), "-q", "--set", set]).env("CKPTLAB_HOME", scratch.path().join("home"));
        common::ran(&mut cmd)
    };
    let out = run("job.max-parallelism=256");
    assert_eq!(out.code, 2, "{}", out.text());
    assert!(out.stderr.contains("job.max-parallelism") && out.stderr.contains("allowed: -1 (Flink's default), 128"), "{}", out.stderr);
    for fine in ["job.max-parallelism=128", "job.max-parallelism=-1"] {
        let out = run(fine);
        assert_eq!(out.code, 0, "{fine}: {}", out.text());
    }
}
