//! The Flink bridge on real Apache Flink: the seed's exactly-once experiment (a kill, records
//! produced while the job is down, a restart from the checkpoint) run through the binary on
//! ckptlab and on a Flink MiniCluster. On CI (`CI` set) a missing Java or pip fails the test;
//! on a developer's machine it skips with the reason. With FLINK_HOME unset and an empty cache
//! this exercises the first-use install of Flink's jars from PyPI (~350 MB, minutes).

use crate::common;

use std::process::Command;

/// Why the bridge cannot run here (Java 17+ with javac, and pip unless FLINK_HOME is given).
fn missing_prerequisite() -> Option<String> {
    let java = Command::new("java").arg("-version").output();
    let javac = Command::new("javac").arg("-version").output();
    if std::env::var_os("JAVA_HOME").is_none() && (java.is_err() || javac.is_err()) {
        return Some("no `java` and `javac` on PATH and no JAVA_HOME (the Flink bridge needs a JDK 17+)".into());
    }
    if std::env::var_os("FLINK_HOME").is_none() {
        let pip = Command::new("python3").args(["-m", "pip", "--version"]).output();
        if !pip.is_ok_and(|o| o.status.success()) {
            return Some("no `python3 -m pip` to install Flink's jars (apache-flink-libraries) and no FLINK_HOME".into());
        }
    }
    None
}

#[test]
fn exactly_once_with_a_kill_loses_and_overcounts_nothing_on_ckptlab_and_on_flink() {
    if let Some(why) = missing_prerequisite() {
        common::skip(&why);
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ckptlab"))
        .args(["flink", "run", "assets/scenarios/seed-exactly-once.toml", "--json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status.code());
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\n{stderr}"));
    for side in ["ckptlab", "flink"] {
        let v = &report[side]["verdict"];
        assert_eq!(v["lost"], 0, "{side} lost records: {v}");
        assert_eq!(v["overcounted"], 0, "{side} counted records twice: {v}");
        assert_eq!(v["state"], 6, "{side}'s count is not a..f: {v}");
    }
    let flink = &report["flink"];
    assert!(flink["restarts"].as_u64().unwrap_or(0) >= 1, "the Flink job did not restart: {flink}");
    let history = flink["history"].as_array().cloned().unwrap_or_default();
    assert!(history.iter().any(|e| e["event"]["event"] == "tm-terminated"), "no task manager was terminated on Flink: {history:?}");
    assert!(history.iter().any(|e| e["event"]["event"] == "restart"), "no restart in Flink's history: {history:?}");
    assert_eq!(report["agreement"]["lost"], true);
    assert_eq!(report["agreement"]["overcounted"], true);
    assert_eq!(report["passed"], true);
}
