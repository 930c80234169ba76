//! The headless surface as a user drives it: `ckptlab run`, its exit codes, its errors, its JSON.

use std::process::Command;

fn ckptlab(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckptlab")).args(args).output().expect("binary runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn scenario(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const QUICK: &str = r#"
name = "quick"
description = "three records, no failure"
[config.ckptlab]
hop-delay = "0ms"
[config.execution]
buffer-timeout = "0ms"
[[steps]]
produce = ["a", "b", "a"]
[[steps]]
await = "caught-up"
timeout = "10s"
[[steps]]
expect = { lost = 0, overcounted = 0, state = 3 }
[[steps]]
expect = { key = "a", state = 2 }
"#;

#[test]
fn run_json_reports_the_verdict_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "quick.toml", QUICK);
    let (code, out, err) = ckptlab(&["run", &f, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(j["scenario"], "quick");
    assert_eq!(j["passed"], true);
    for k in ["produced", "lost", "overcounted", "repeated_output"] {
        assert!(j["verdict"][k].is_u64(), "verdict.{k}");
    }
    assert_eq!(j["verdict"]["keys"]["a"]["expected"], 2);
    assert_eq!(j["verdict"]["keys"]["a"]["state"], 2);
    assert_eq!(j["verdict"]["keys"]["b"]["lost"], 0);
    assert_eq!(j["verdict"]["keys"]["b"]["overcounted"], 0);
    assert!(j["checkpoints"]["completed"].is_u64() && j["checkpoints"]["failed"].is_u64());
    assert_eq!(j["restarts"], 0);
}

#[test]
fn run_prints_the_verdict_table() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "quick.toml", QUICK);
    let (code, out, _) = ckptlab(&["run", &f]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("key") && out.contains("overcounted") && out.contains("TOTAL") && out.contains("PASSED"), "{out}");
}

#[test]
fn a_failed_expect_exits_one_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "wrong.toml", &QUICK.replace("state = 3 }", "state = 4 }"));
    let (code, out, _) = ckptlab(&["run", &f]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED line 13: expected state = 4, got 3"), "{out}");
}

#[test]
fn a_bad_scenario_exits_two_and_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "bad.toml", "name = \"bad\"\n[[steps]]\nproduce = [\"a\"]\n[[steps]]\nkil = \"tm-1\"\n");
    let (code, _, err) = ckptlab(&["run", &f]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml:4:") && err.contains("allowed: produce"), "{err}");
}

#[test]
fn a_bad_set_names_the_key_and_the_allowed_values() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "quick.toml", QUICK);
    let (code, _, err) = ckptlab(&["run", &f, "--set", "execution.checkpointing.mode=TWICE"]);
    assert_eq!(code, 2);
    assert!(err.contains("--set") && err.contains("execution.checkpointing.mode") && err.contains("EXACTLY_ONCE, AT_LEAST_ONCE"), "{err}");
}

#[test]
fn a_bad_config_file_is_named_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "quick.toml", QUICK);
    let c = scenario(&dir, "my.toml", "[restart-strategy]\ntype = \"sometimes\"\n");
    let (code, _, err) = ckptlab(&["run", &f, "--config", &c]);
    assert_eq!(code, 2);
    assert!(err.contains("my.toml") && err.contains("restart-strategy.type") && err.contains("fixed-delay"), "{err}");
    let c = scenario(&dir, "typo.toml", "[taskmanager]\nslots = 2\n");
    let (code, _, err) = ckptlab(&["run", &f, "--config", &c]);
    assert_eq!(code, 2);
    assert!(err.contains("typo.toml") && err.contains("slots") && err.contains("taskmanager.number-of-task-slots"), "{err}");
}

#[test]
fn scenario_config_is_layered_under_set() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "quick.toml", QUICK);
    let (code, out, _) = ckptlab(&["run", &f, "--set", "execution.checkpointing.interval=off", "--backend", "fs"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checkpointing off") && out.contains("FsStateBackend"), "{out}");
}

#[test]
fn the_rocksdb_backend_runs_and_a_bad_backend_name_lists_the_allowed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "quick.toml", QUICK);
    let chk = format!("execution.checkpointing.dir={}", dir.path().join("chk").display());
    let tmp = format!("taskmanager.tmp-dirs={}", dir.path().join("tm").display());
    let (code, out, err) = ckptlab(&["run", &f, "--backend", "rocksdb", "--set", &chk, "--set", &tmp, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["verdict"]["state"], 3, "{out}");
    let (code, _, err) = ckptlab(&["run", &f, "--set", "state.backend.type=rocksdb"]);
    assert_eq!(code, 2);
    assert!(err.contains("state.backend.type") && err.contains("filesystem"), "rocksdb needs filesystem storage: {err}");
    let (code, _, err) = ckptlab(&["run", &f, "--backend", "nvram"]);
    assert_eq!(code, 2);
    assert!(err.contains("memory, fs, rocksdb"), "{err}");
}

#[test]
fn events_are_written_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "quick.toml", QUICK);
    let ev = dir.path().join("events.jsonl");
    let (code, _, _) = ckptlab(&["run", &f, "-q", "--events", &ev.display().to_string()]);
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&ev).unwrap();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    for k in ["task_manager_started", "job_submitted", "job_running", "record_produced", "sink_emitted"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "sink_emitted").count(), 3);
}

#[test]
fn help_documents_the_commands() {
    let (code, out, _) = ckptlab(&["--help"]);
    assert_eq!(code, 0);
    for w in ["run", "bench", "--config", "--set", "--backend", "--events"] {
        assert!(out.contains(w), "{w} in --help");
    }
}
