//! The headless surface as a user drives it: `ckptlab run`, its exit codes, its errors, its JSON.

use crate::common;

fn ckptlab(args: &[&str]) -> (i32, String, String) {
    let r = common::ran(common::binary().args(args));
    (r.code, r.stdout, r.stderr)
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

/// A tool reads which step failed and how from `--json` without parsing the sentence: the
/// failure is an object with its line and kind, under a schema version.
#[test]
fn a_failed_expect_in_json_names_its_line_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "wrong.toml", &QUICK.replace("state = 3 }", "state = 4 }"));
    let (code, out, err) = ckptlab(&["run", &f, "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(j["schema_version"], 1, "{out}");
    assert_eq!(j["passed"], false);
    assert_eq!(
        j["failures"],
        serde_json::json!([{ "line": 13, "kind": "expectation", "message": "expected state = 4, got 3" }]),
        "{out}"
    );
}

/// Catches: an effective configuration that drops an option, names the wrong layer (a --set
/// reported as the scenario's), or lets an earlier layer win.
#[test]
fn run_json_lists_the_effective_configuration_with_each_options_layer() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "quick.toml", QUICK);
    let (code, out, err) = ckptlab(&["run", &f, "--json", "--set", "heartbeat.timeout=7s"]);
    assert_eq!(code, 0, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    let options = j["effective_config"].as_array().expect("effective_config is a list");
    let find = |key: &str| options.iter().find(|o| o["key"] == key).unwrap_or_else(|| panic!("{key} missing: {out}"));
    assert_eq!((&find("heartbeat.timeout")["value"], &find("heartbeat.timeout")["layer"]), (&serde_json::json!("\"7s\""), &serde_json::json!("command_line")), "values as TOML writes them");
    assert_eq!(find("ckptlab.hop-delay")["layer"], "scenario", "{out}");
    // Run from the package root, as cargo runs tests: ./conf/ckptlab.toml is read as a conf file.
    assert_eq!(find("job.parallelism")["layer"], "conf_file", "{out}");
    assert!(find("job.parallelism")["origin"].as_str().is_some_and(|o| o.starts_with("conf/ckptlab.toml:")), "{out}");
    for spec in ckptlab::config::SCHEMA {
        assert!(options.iter().any(|o| o["key"] == spec.key), "{} missing from effective_config", spec.key);
    }
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
    assert!(out.trim_end().lines().last().is_some_and(|l| l.starts_with("Docs: docs/workbench.md")), "{out}");
}

/// Every subcommand's help ends naming its page of docs/, and that page exists.
#[test]
fn each_subcommands_help_names_its_docs_page() {
    let pages = [
        ("run", "scenarios"),
        ("bench", "performance"),
        ("tour", "compare"),
        ("inspect", "retention"),
        ("lesson", "lessons"),
        ("compare", "compare"),
        ("flink", "flink"),
    ];
    for (command, page) in pages {
        let (code, out, _) = ckptlab(&[command, "--help"]);
        assert_eq!(code, 0, "{command} --help");
        let docs = format!("Docs: docs/{page}.md");
        assert_eq!(out.trim_end().lines().last(), Some(docs.as_str()), "{command} --help:\n{out}");
        assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/{page}.md")).is_file(), "docs/{page}.md");
    }
}

/// `ckptlab tour | head -3`: the reader went away; ckptlab ends quietly (no panic, no backtrace)
/// with 141, as a Unix tool the broken pipe ended, not 0 (the tour did not finish).
#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child =
        common::binary().arg("tour").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("binary runs");
    // Read the first line, then close the pipe as `head -1` does.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 64];
    let n = stdout.read(&mut first).expect("a first line");
    assert!(n > 0);
    drop(stdout);
    let out = child.wait_with_output().expect("it ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "quiet on a closed pipe: {err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}

#[test]
fn a_missing_partition_exits_2_at_its_line_naming_the_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "p.toml", "name = \"p\"\n\n[[steps]]\nproduce = [\"a\"]\npartition = 7\n");
    let (code, _, err) = ckptlab(&["run", &f]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("p.toml:5:") && err.contains("partitions 0 and 1"), "{err}");
    assert_eq!(err.matches("p.toml").count(), 1, "the path once: {err}");
}

#[test]
fn a_missing_file_has_no_line_zero() {
    let (code, _, err) = ckptlab(&["run", "/nonexistent/nope.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/nope.toml: cannot read") && !err.contains(":0:"), "{err}");
}

#[test]
fn an_unknown_channel_pattern_is_refused_naming_the_channels() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(
        &dir,
        "d.toml",
        "name = \"d\"\n[config.ckptlab.delays]\n\"source[1]->counter[9]\" = \"50ms\"\n[[steps]]\nwait = \"1ms\"\n",
    );
    let (code, _, err) = ckptlab(&["run", &f]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("d.toml:3:") && err.contains("matches no channel") && err.contains("source[0..1]->counter[0..1]"), "{err}");
    let (code, _, err) = ckptlab(&["run", &f, "--set", "ckptlab.delays.source[0]->sink[0]=1ms"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn scenario_without_a_terminal_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let f = scenario(&dir, "quick.toml", QUICK);
    let (code, _, err) = ckptlab(&["--scenario", &f]);
    assert_eq!(code, 2);
    assert!(err.contains("ckptlab run"), "{err}");
}

/// Issue 26: an installed binary (tarball, wheel) has no assets/ beside it; `ckptlab run NAME`
/// plays a shipped scenario from any directory, and an unknown name lists the shipped ones.
/// Catches: `run` reading only files (exit 2 in an empty directory).
#[test]
fn run_plays_a_shipped_scenario_by_name_from_an_empty_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = common::binary().current_dir(dir.path()).args(["run", "seed-exactly-once", "-q"]).output().expect("ckptlab runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("PASSED"), "{stdout}");
    let out = common::binary().current_dir(dir.path()).args(["run", "seed-exactly-twice"]).output().expect("ckptlab runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("seed-exactly-twice") && stderr.contains("cannot read") && stderr.contains("shipped: seed-checkpoints-disabled, seed-exactly-once"), "{stderr}");
}
