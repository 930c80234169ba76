//! `ckptlab flink export`: a self-contained Flink job for a scenario, to read and to run on a real
//! cluster: the Java sources of the job (the same classes the bridge runs), job.properties (the
//! topology's shape and the scenario's Flink options), run.sh (javac + jar + `flink run`) and a
//! README that says what each part is.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::harness::{HARNESS_ONLY, SOURCES};
use super::options::JobSpec;
use crate::config::Config;
use crate::scenario::{Action, Scenario};

#[derive(Debug, Error)]
#[error("cannot write {path}: {problem}")]
pub struct ExportError {
    pub path: String,
    pub problem: String,
}

/// Options that a real cluster takes from its own configuration (config.yaml), not from a job.
const CLUSTER_OPTIONS: &[&str] =
    &["heartbeat.timeout", "heartbeat.interval", "heartbeat.rpc-failure-threshold", "slot.request.timeout"];

/// The KafkaSink of `job.sink = kafka`: exported only (it is compiled against Flink's Kafka
/// connector, which the bridge's MiniCluster does not have; CheckpointJob loads it by name).
const KAFKA_OUTPUT: (&str, &str) = ("src/ckptlab/flink/KafkaOutput.java", include_str!("../../assets/flink/src/ckptlab/flink/KafkaOutput.java"));

/// Flink's Kafka connector for Flink 2.x (apache/flink-connector-kafka v5.0.0, built against Flink
/// 2.1 and 2.2: its artifacts are `5.0.0-2.1` and `5.0.0-2.2`; none names 2.3 yet), and the
/// kafka-clients it depends on (its pom's kafka.version).
pub const KAFKA_CONNECTOR: &str = "org.apache.flink:flink-connector-kafka:5.0.0-2.2";
pub const KAFKA_CLIENTS: &str = "org.apache.kafka:kafka-clients:4.2.0";

/// The files of the export: (path relative to the directory, content).
pub fn files(scenario: &Scenario, cfg: &Config, out_dir: &Path, log_dir: &Path) -> Vec<(PathBuf, String)> {
    let spec = JobSpec::of(cfg, log_dir, out_dir);
    let mut out: Vec<(PathBuf, String)> =
        SOURCES.iter().filter(|(p, _)| !HARNESS_ONLY.iter().any(|h| p.ends_with(h))).map(|(p, text)| (PathBuf::from(p), text.to_string())).collect();
    if spec.sink == crate::config::SinkKind::Kafka {
        out.push((PathBuf::from(KAFKA_OUTPUT.0), KAFKA_OUTPUT.1.to_string()));
    }
    out.push((PathBuf::from("job.properties"), spec.to_properties()));
    out.push((PathBuf::from("run.sh"), run_script()));
    out.push((PathBuf::from("README.md"), readme(scenario, cfg, &spec, log_dir)));
    out
}

/// Writes the export into `out_dir` (created if needed); returns the paths written.
pub fn write(scenario: &Scenario, cfg: &Config, out_dir: &Path, log_dir: &Path) -> Result<Vec<PathBuf>, ExportError> {
    let mut written = Vec::new();
    for (rel, text) in files(scenario, cfg, out_dir, log_dir) {
        let path = out_dir.join(&rel);
        let err = |e: std::io::Error| ExportError { path: path.display().to_string(), problem: e.to_string() };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        std::fs::write(&path, text).map_err(err)?;
        if rel == Path::new("run.sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
        }
        written.push(path);
    }
    Ok(written)
}

fn run_script() -> String {
    r#"#!/usr/bin/env bash
# Builds the job against a Flink 2.x distribution and submits it: ./run.sh (FLINK_HOME must be set).
set -euo pipefail
cd "$(dirname "$0")"
: "${FLINK_HOME:?set FLINK_HOME to a Flink 2.x distribution (bin/flink, lib/flink-dist-*.jar)}"
rm -rf classes && mkdir -p classes
javac -nowarn -d classes -cp "$FLINK_HOME/lib/*" src/ckptlab/flink/*.java
jar cf job.jar -C classes .
exec "$FLINK_HOME/bin/flink" run -c ckptlab.flink.CheckpointJob job.jar "$PWD/job.properties"
"#
    .to_string()
}

fn readme(scenario: &Scenario, cfg: &Config, spec: &JobSpec, log_dir: &Path) -> String {
    let mut r = String::new();
    r.push_str(&format!("# {} on Apache Flink\n\n", scenario.name));
    r.push_str(&format!("Exported by `ckptlab flink export {}`.\n\n", scenario.file));
    for line in scenario.description.lines() {
        r.push_str(&format!("> {line}\n"));
    }
    r.push_str("\n## The job\n\n```text\n");
    r.push_str(&format!(
        "source  FileLogSource: {}/{}-<p>.log, {} partition(s), parallelism {}, starting at {}\n",
        log_dir.display(),
        spec.topic,
        spec.partitions,
        spec.parallelism,
        if spec.earliest { "earliest" } else { "latest" }
    ));
    if spec.source_delay_ms.iter().any(|d| *d > 0) {
        r.push_str("  -> channel-delay (forward; holds records and barriers of a slow source subtask)\n");
    }
    r.push_str(&format!(
        "  -> keyBy({})\n  -> counter CountPerKey: ValueState<Long>, emits \"(record,count)\", parallelism {}\n  -> sink {}, parallelism 1\n```\n\n",
        if spec.constant_key { "record -> \"1\", the seed's constant key" } else { "record" },
        spec.parallelism,
        super::options::sink_name(spec.sink)
    ));
    r.push_str(
        "The source reads ckptlab's file-backed log: one append-only file per partition, one record per line \
         (`\\\\` and `\\n` escapes; a last line without its newline does not exist yet). A split per partition; \
         its state is the next offset (line number), kept in the reader's operator state and restored from a \
         checkpoint as a Kafka source keeps its offsets. The files must be readable by every TaskManager at the \
         same path (a shared filesystem), or change `source.dir` in job.properties.\n\n",
    );
    r.push_str(
        "Feed it records: append lines to the files, or let ckptlab write them: `ckptlab run SCENARIO --set source.embedded.dir=DIR`.\n\n",
    );
    r.push_str("## Checkpointing and recovery (job.properties, `flink.*`)\n\n");
    for (k, v) in &spec.flink {
        let note = if CLUSTER_OPTIONS.contains(&k.as_str()) { "  (a cluster option: set it in the cluster's config.yaml)" } else { "" };
        r.push_str(&format!("- `{k}: {v}`{note}\n"));
    }
    if spec.sink == crate::config::SinkKind::Kafka {
        r.push_str(&format!(
            "\n## The Kafka sink\n\n`job.sink = kafka`: the counter's lines go to Kafka through Flink's KafkaSink \
             (src/ckptlab/flink/KafkaOutput.java), with ckptlab's `sink.*` options in job.properties: {}. \
             It needs Flink's Kafka connector, which is not part of a Flink distribution: put `{KAFKA_CONNECTOR}` \
             (flink-connector-kafka-5.0.0-2.2.jar, the connector for Flink 2.x; no release is built against 2.3 yet) \
             and its `{KAFKA_CLIENTS}` into `$FLINK_HOME/lib` of the cluster (and of the machine that runs ./run.sh, \
             which compiles against `$FLINK_HOME/lib/*`), or shade them into job.jar. In Maven:\n\n```xml\n<dependency>\n  \
             <groupId>org.apache.flink</groupId>\n  <artifactId>flink-connector-kafka</artifactId>\n  <version>5.0.0-2.2</version>\n</dependency>\n```\n\n\
             `ckptlab flink run` cannot run this sink (the connector is not in the PyPI wheels it installs Flink from) and refuses it.\n",
            spec.kafka_sink.iter().map(|(k, v)| format!("`{k}={v}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    let notes = spec.emulation_notes(cfg);
    if !notes.is_empty() {
        r.push_str("\n## What ckptlab's lab options become\n\n");
        for n in notes {
            r.push_str(&format!("- {n}\n"));
        }
    }
    let failures: Vec<String> = scenario
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Kill(tm) => Some(format!("- line {}: kill {tm}: stop a TaskManager process (e.g. `kill -9` its JVM)", s.line)),
            Action::Hang(tm) => Some(format!(
                "- line {}: hang {tm}: `kill -STOP` its TaskManager's JVM (it answers nothing, its connections stay open; the JobManager finds it at heartbeat.timeout; `kill -CONT` resumes it)",
                s.line
            )),
            Action::Start(tm) => Some(format!(
                "- line {}: start {}: `$FLINK_HOME/bin/taskmanager.sh start`",
                s.line,
                tm.as_deref().unwrap_or("a task manager")
            )),
            Action::Checkpoint => Some(format!("- line {}: checkpoint: `flink checkpoint <job-id>`", s.line)),
            Action::Produce { values, .. } => Some(format!("- line {}: produce {}", s.line, values.join(" "))),
            Action::Generate(g) => Some(format!("- line {}: generate {} records/s over {}", s.line, g.rate, g.keys.join(","))),
            // Flink's CLI: `flink savepoint --type`, `flink stop --type --savepointPath`, `flink run -s`.
            Action::Savepoint { stop: false, format } => {
                Some(format!("- line {}: savepoint: `flink savepoint --type {} <job-id> file:///path/to/savepoints`", s.line, format.name()))
            }
            Action::Savepoint { stop: true, format } => Some(format!(
                "- line {}: stop-with-savepoint: `flink stop --type {} --savepointPath file:///path/to/savepoints <job-id>`",
                s.line,
                format.name()
            )),
            Action::Resubmit => Some(format!("- line {}: resubmit: `flink run -s <savepoint path> -c ckptlab.flink.CheckpointJob job.jar job.properties`", s.line)),
            Action::SwitchBackend(b) => Some(format!(
                "- line {}: switch-backend {b}: `flink stop --type canonical --savepointPath ... <job-id>`, change `flink.state.backend.type` in job.properties, `flink run -s <savepoint path> ...` (only a canonical savepoint restores into another backend)",
                s.line
            )),
            Action::Set(pairs) => Some(format!(
                "- line {}: set {}: Flink applies configuration at submission: `flink stop --type canonical --savepointPath ... <job-id>`, change it in job.properties (`flink.`-prefixed), `flink run -s <savepoint path> ...`",
                s.line,
                pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
            )),
            // Not a step a person does by hand on a Flink cluster (waits and checks), or refused
            // before the export (a kill between a checkpoint's completion and its notification).
            Action::KillBeforeCommit(_)
            | Action::Wait(_) | Action::Await { .. } | Action::Expect { .. } | Action::StopGenerators => None,
        })
        .collect();
    if !failures.is_empty() {
        r.push_str("\n## The scenario's steps by hand\n\n");
        for f in failures {
            r.push_str(&f);
            r.push('\n');
        }
    }
    r.push_str("\n## Run\n\n```sh\nexport FLINK_HOME=/path/to/flink-2.x\n$FLINK_HOME/bin/start-cluster.sh\n./run.sh\n```\n\n");
    r.push_str("`ckptlab flink run` runs the same job on a MiniCluster and compares its verdict with ckptlab's.\n");
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigLayers;

    #[test]
    fn an_export_has_the_job_sources_properties_script_and_readme() {
        let text = "name = \"slow\"\ndescription = \"d\"\n[config.execution.checkpointing]\ninterval = \"500ms\"\nmode = \"AT_LEAST_ONCE\"\n[config.ckptlab.delays]\n\"source[1]->counter[*]\" = \"50ms\"\n[[steps]]\nkill = \"tm-2\"\n";
        let s = Scenario::parse(text, "slow.toml").unwrap();
        let mut l = ConfigLayers::builtin();
        s.apply_config(&mut l).unwrap();
        let cfg = l.build().unwrap();
        let files = files(&s, &cfg, Path::new("/out"), Path::new("/data/log"));
        let get = |name: &str| files.iter().find(|(p, _)| p.ends_with(name)).map(|(_, t)| t.clone()).unwrap_or_else(|| panic!("no {name}"));
        assert!(get("CheckpointJob.java").contains("class CheckpointJob"));
        assert!(get("FileLogSource.java").contains("SplitEnumerator"));
        assert!(!files.iter().any(|(p, _)| p.ends_with("Harness.java") || p.ends_with("RestartCounter.java")));
        let props = get("job.properties");
        assert!(props.contains("flink.execution.checkpointing.mode=AT_LEAST_ONCE") && props.contains("delay.source.1=50"), "{props}");
        assert!(props.contains("source.dir=/data/log"), "{props}");
        assert!(get("run.sh").contains("flink\" run -c ckptlab.flink.CheckpointJob"));
        let readme = get("README.md");
        assert!(readme.contains("channel-delay") && readme.contains("line 8: kill tm-2"), "{readme}");
    }

    /// Issue 23: `job.sink = kafka` exports a KafkaSink job (KafkaOutput, the sink's options in
    /// job.properties) and a README naming the connector's Maven coordinates. Catches an export
    /// that writes the print sink's job for a kafka scenario, or leaves the connector unnamed.
    #[test]
    fn a_kafka_sink_exports_a_kafka_sink_job_with_the_connectors_coordinates() {
        let text = "name = \"k\"\n[config.job]\nsink = \"kafka\"\n[config.sink]\ndelivery-guarantee = \"exactly-once\"\ntransactional-id-prefix = \"ck\"\noutput-topic = \"counts\"\n[config.sink.properties]\n\"transaction.timeout.ms\" = \"600000\"\n";
        let s = Scenario::parse(text, "k.toml").unwrap();
        let mut l = ConfigLayers::builtin();
        s.apply_config(&mut l).unwrap();
        let cfg = l.build().unwrap();
        let files = files(&s, &cfg, Path::new("/out"), Path::new("/data/log"));
        let get = |name: &str| files.iter().find(|(p, _)| p.ends_with(name)).map(|(_, t)| t.clone()).unwrap_or_else(|| panic!("no {name}"));
        assert!(get("KafkaOutput.java").contains("KafkaSink.<String>builder()"));
        let props = get("job.properties");
        for line in ["job.sink=kafka", "sink.output-topic=counts", "sink.delivery-guarantee=exactly-once", "sink.transactional-id-prefix=ck", "sink.bootstrap-servers=localhost:9092"] {
            assert!(props.contains(&format!("{line}\n")), "{line}: {props}");
        }
        let readme = get("README.md");
        assert!(readme.contains("org.apache.flink:flink-connector-kafka:5.0.0-2.2") && readme.contains("<version>5.0.0-2.2</version>"), "{readme}");
        // Another sink exports no KafkaOutput (it would not compile without the connector).
        let plain = Scenario::parse("name = \"p\"\n", "p.toml").unwrap();
        let cfg = ConfigLayers::builtin().build().unwrap();
        assert!(!super::files(&plain, &cfg, Path::new("/out"), Path::new("/log")).iter().any(|(p, _)| p.ends_with("KafkaOutput.java")));
    }
}
