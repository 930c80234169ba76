//! The scenario's configuration on Flink: which ckptlab options are Flink options (the same names,
//! checked against Flink 2.3.0's `ConfigOption`s), the job's shape (parallelism, key-by, sink,
//! channel delays, record costs), and the steps and options Flink cannot do.

use std::path::Path;
use std::time::Duration;

use crate::config::{Config, OffsetReset, RestartKind, SinkKind, StorageKind, BUFFER_TIMEOUT_DISABLED};
use crate::scenario::{Action, Scenario};

/// A Flink duration value ("500 ms"); Flink's parser takes whole numbers with a unit.
fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// Flink's own default for an option, as [`flink_options`] would write it (Flink 2.3.0's
/// `CheckpointingOptions`, `RestartStrategyOptions`, `HeartbeatManagerOptions`, `ExecutionOptions`,
/// `StateBackendOptions`, `JobManagerOptions`).
pub fn flink_default(key: &str, checkpointing_on: bool) -> Option<&'static str> {
    Some(match key {
        "execution.checkpointing.mode" => "EXACTLY_ONCE",
        "execution.checkpointing.timeout" => "600000 ms",
        "execution.checkpointing.min-pause" => "0 ms",
        "execution.checkpointing.max-concurrent-checkpoints" => "1",
        "execution.checkpointing.tolerable-failed-checkpoints" => "0",
        "execution.checkpointing.unaligned.enabled" => "false",
        "execution.checkpointing.aligned-checkpoint-timeout" => "0 ms",
        "execution.checkpointing.num-retained" => "1",
        "execution.checkpointing.incremental" => "false",
        "execution.checkpointing.externalized-checkpoint-retention" => "NO_EXTERNALIZED_CHECKPOINTS",
        "execution.checkpointing.storage" => "jobmanager",
        "state.backend.type" => "hashmap",
        // Flink 2 restarts with exponential-delay when checkpointing is on, never when it is off.
        "restart-strategy.type" if checkpointing_on => "exponential-delay",
        "restart-strategy.type" => "none",
        "restart-strategy.fixed-delay.attempts" => "1",
        "restart-strategy.fixed-delay.delay" => "1000 ms",
        "restart-strategy.exponential-delay.initial-backoff" => "1000 ms",
        "restart-strategy.exponential-delay.max-backoff" => "60000 ms",
        "restart-strategy.exponential-delay.backoff-multiplier" => "1.5",
        "restart-strategy.exponential-delay.reset-backoff-threshold" => "3600000 ms",
        "restart-strategy.exponential-delay.jitter-factor" => "0.1",
        "heartbeat.timeout" => "50000 ms",
        "heartbeat.interval" => "10000 ms",
        "heartbeat.rpc-failure-threshold" => "2",
        "slot.request.timeout" => "300000 ms",
        "execution.buffer-timeout.enabled" => "true",
        "execution.buffer-timeout.interval" => "100 ms",
        _ => return None,
    })
}

/// The Flink options a ckptlab configuration means, in a stable order. `run_dir` holds the
/// checkpoints of a filesystem storage.
pub fn flink_options(cfg: &Config, run_dir: &Path) -> Vec<(String, String)> {
    let c = &cfg.checkpointing;
    let mut o: Vec<(&str, String)> = Vec::new();
    if let Some(i) = c.interval {
        o.push(("execution.checkpointing.interval", ms(i)));
    }
    o.push(("execution.checkpointing.mode", c.mode.flink_name().into()));
    o.push(("execution.checkpointing.timeout", ms(c.timeout)));
    o.push(("execution.checkpointing.min-pause", ms(c.min_pause)));
    o.push(("execution.checkpointing.max-concurrent-checkpoints", c.max_concurrent.to_string()));
    o.push(("execution.checkpointing.tolerable-failed-checkpoints", c.tolerable_failed.to_string()));
    o.push(("execution.checkpointing.unaligned.enabled", c.unaligned.to_string()));
    o.push(("execution.checkpointing.aligned-checkpoint-timeout", ms(c.aligned_timeout)));
    o.push(("execution.checkpointing.num-retained", c.num_retained.to_string()));
    o.push(("execution.checkpointing.incremental", c.incremental.to_string()));
    o.push(("execution.checkpointing.externalized-checkpoint-retention", c.retention.flink_name().into()));
    // ckptlab's option values are Flink's: the names come from the config enums.
    o.push(("execution.checkpointing.storage", <&str>::from(c.storage).into()));
    match c.storage {
        StorageKind::JobManager => {}
        StorageKind::Filesystem => o.push(("execution.checkpointing.dir", format!("file://{}", run_dir.join("checkpoints").display()))),
    }
    o.push(("state.backend.type", <&str>::from(cfg.backend).into()));
    let r = &cfg.restart;
    match r.effective(c.interval.is_some()) {
        RestartKind::None => o.push(("restart-strategy.type", "none".into())),
        RestartKind::FixedDelay => {
            o.push(("restart-strategy.type", "fixed-delay".into()));
            o.push(("restart-strategy.fixed-delay.attempts", r.fixed_attempts.min(i32::MAX as u64).to_string()));
            o.push(("restart-strategy.fixed-delay.delay", ms(r.fixed_delay)));
        }
        RestartKind::ExponentialDelay => {
            o.push(("restart-strategy.type", "exponential-delay".into()));
            o.push(("restart-strategy.exponential-delay.initial-backoff", ms(r.initial_backoff)));
            o.push(("restart-strategy.exponential-delay.max-backoff", ms(r.max_backoff)));
            o.push(("restart-strategy.exponential-delay.backoff-multiplier", r.multiplier.to_string()));
            o.push(("restart-strategy.exponential-delay.reset-backoff-threshold", ms(r.reset_threshold)));
            o.push(("restart-strategy.exponential-delay.jitter-factor", r.jitter_factor.to_string()));
        }
    }
    // The key groups ckptlab's engine uses (job.max-parallelism, src/keygroup.rs), so that the
    // keyBy of the Flink job puts each key on the same group and subtask. Flink's default (-1,
    // PipelineOptions.MAX_PARALLELISM) computes the same 128 for ckptlab's parallelisms; written
    // out so that both sides agree by construction, not by coincidence.
    o.push(("pipeline.max-parallelism", cfg.job.max_parallelism.to_string()));
    o.push(("heartbeat.timeout", ms(cfg.heartbeat_timeout)));
    o.push(("heartbeat.interval", ms(cfg.heartbeat_interval)));
    let threshold = cfg.heartbeat_rpc_failure_threshold.map_or(crate::cluster::heartbeat::RPC_FAILURE_DETECTION_DISABLED, i64::from);
    o.push(("heartbeat.rpc-failure-threshold", threshold.to_string()));
    o.push(("slot.request.timeout", ms(cfg.slot_request_timeout)));
    if cfg.buffer_timeout == BUFFER_TIMEOUT_DISABLED {
        o.push(("execution.buffer-timeout.enabled", "false".into()));
    } else {
        o.push(("execution.buffer-timeout.enabled", "true".into()));
        o.push(("execution.buffer-timeout.interval", ms(cfg.buffer_timeout)));
    }
    o.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Options whose value here differs from Flink's default: (key, value, Flink's default).
pub fn differences_from_flink(options: &[(String, String)], checkpointing_on: bool) -> Vec<(String, String, String)> {
    options
        .iter()
        .filter_map(|(k, v)| {
            let d = flink_default(k, checkpointing_on)?;
            (d != v).then(|| (k.clone(), v.clone(), d.to_string()))
        })
        .collect()
}

/// The job's shape and the cluster's, as the Java job reads them (job.properties).
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub parallelism: usize,
    pub partitions: u32,
    pub constant_key: bool,
    pub sink: SinkKind,
    pub topic: String,
    pub log_dir: String,
    pub earliest: bool,
    pub taskmanagers: usize,
    pub slots: usize,
    /// Latency of each source subtask's channels to the counters, in ms (ckptlab.delays).
    pub source_delay_ms: Vec<u64>,
    /// Time per record in each counter subtask, in ms (ckptlab.record-cost).
    pub counter_cost_ms: Vec<u64>,
    pub flink: Vec<(String, String)>,
    /// `job.sink = kafka`: the KafkaSink's options as job.properties writes them (`sink.*`,
    /// ckptlab's keys, KafkaSinkBuilder's settings); empty for the other sinks.
    pub kafka_sink: Vec<(String, String)>,
}

impl JobSpec {
    /// The job for a configuration whose embedded topic lives in `log_dir`.
    pub fn of(cfg: &Config, log_dir: &Path, run_dir: &Path) -> JobSpec {
        let p = cfg.job.parallelism;
        JobSpec {
            name: cfg.job.name.clone(),
            parallelism: p,
            partitions: cfg.source.partitions,
            constant_key: cfg.job.key_by == crate::config::KeyBy::Constant,
            sink: cfg.job.sink,
            topic: cfg.source.topic.clone(),
            log_dir: log_dir.display().to_string(),
            earliest: cfg.source.offset_reset == OffsetReset::Earliest,
            taskmanagers: cfg.taskmanagers,
            slots: cfg.slots_per_tm,
            // A slow channel from source[i] to every counter: what Flink can emulate (see ChannelDelay.java).
            source_delay_ms: (0..p)
                .map(|i| (0..p).map(|j| cfg.extra_delay(("source", i), ("counter", j))).min().unwrap_or_default().as_millis() as u64)
                .collect(),
            counter_cost_ms: (0..p).map(|j| cfg.record_cost(("counter", j)).as_millis() as u64).collect(),
            flink: flink_options(cfg, run_dir),
            kafka_sink: if cfg.job.sink == SinkKind::Kafka { kafka_sink_options(cfg) } else { Vec::new() },
        }
    }

    /// job.properties (java.util.Properties syntax).
    pub fn to_properties(&self) -> String {
        let mut lines = vec![
            "# Written by ckptlab: the scenario's job for ckptlab.flink.CheckpointJob; flink.* are Flink options.".to_string(),
            format!("job.name={}", escape(&self.name)),
            format!("job.parallelism={}", self.parallelism),
            format!("job.key-by={}", if self.constant_key { "constant" } else { "record" }),
            format!("job.sink={}", sink_name(self.sink)),
            format!("source.dir={}", escape(&self.log_dir)),
            format!("source.topic={}", escape(&self.topic)),
            format!("source.partitions={}", self.partitions),
            format!("source.auto-offset-reset={}", if self.earliest { "earliest" } else { "latest" }),
            format!("cluster.taskmanagers={}", self.taskmanagers),
            format!("cluster.slots={}", self.slots),
        ];
        for (i, d) in self.source_delay_ms.iter().enumerate().filter(|(_, d)| **d > 0) {
            lines.push(format!("delay.source.{i}={d}"));
        }
        for (i, c) in self.counter_cost_ms.iter().enumerate().filter(|(_, c)| **c > 0) {
            lines.push(format!("cost.counter.{i}={c}"));
        }
        for (k, v) in &self.flink {
            lines.push(format!("flink.{k}={}", escape(v)));
        }
        for (k, v) in &self.kafka_sink {
            lines.push(format!("{k}={}", escape(v)));
        }
        lines.join("\n") + "\n"
    }

    /// What the Flink job emulates or leaves out of ckptlab's lab options, for the output.
    pub fn emulation_notes(&self, cfg: &Config) -> Vec<String> {
        let mut notes = Vec::new();
        for (i, d) in self.source_delay_ms.iter().enumerate().filter(|(_, d)| **d > 0) {
            notes.push(format!(
                "channel delay: source[{i}]->counter[*] = {d} ms is a forward-connected delay operator after source subtask {i} that holds its records and its barriers {d} ms (a slow wire: latency, order kept); Flink has no such option"
            ));
        }
        let partial: Vec<String> = cfg
            .lab
            .delays
            .iter()
            .filter(|(p, _)| !(0..self.parallelism).any(|i| self.source_delay_ms[i] > 0 && p.matches(("source", i), ("counter", 0))))
            .map(|(p, d)| format!("{} = {}", p.text, crate::duration::format_duration(*d)))
            .collect();
        if !partial.is_empty() {
            notes.push(format!("not emulated on Flink (only source[i]->counter[*] delays are): {}", partial.join(", ")));
        }
        for (j, c) in self.counter_cost_ms.iter().enumerate().filter(|(_, c)| **c > 0) {
            notes.push(format!("record cost: counter[{j}] sleeps {c} ms per record on Flink too (a slow consumer)"));
        }
        if !cfg.lab.hop_delay.is_zero() {
            notes.push(format!(
                "ckptlab.hop-delay = {} (every hop, to watch barriers travel) is not emulated: it delays every channel alike, so it changes no outcome",
                crate::duration::format_duration(cfg.lab.hop_delay)
            ));
        }
        notes
    }
}

/// The KafkaSink of `job.sink = kafka` for a real cluster: the broker is `--kafka`'s
/// (`source.bootstrap-servers`) when one is given, else `localhost:9092` to edit.
fn kafka_sink_options(cfg: &Config) -> Vec<(String, String)> {
    let k = &cfg.job.kafka_sink;
    let servers = cfg.source.kafka.as_ref().map_or_else(|| "localhost:9092".to_string(), |s| s.bootstrap_servers.clone());
    let mut o = vec![
        ("sink.bootstrap-servers".to_string(), servers),
        ("sink.output-topic".to_string(), k.output_topic.clone()),
        ("sink.delivery-guarantee".to_string(), k.delivery_guarantee.to_string()),
    ];
    if let Some(p) = &k.transactional_id_prefix {
        o.push(("sink.transactional-id-prefix".to_string(), p.clone()));
    }
    for (name, v) in &k.properties {
        o.push((format!("sink.properties.{name}"), v.clone()));
    }
    o
}

/// The sink's name as `job.sink` spells it.
pub fn sink_name(kind: SinkKind) -> &'static str {
    match kind {
        SinkKind::Print => "print",
        SinkKind::Transactional => "transactional",
        SinkKind::Discard => "discard",
        SinkKind::Kafka => "kafka",
    }
}

/// A value for java.util.Properties: backslashes and line breaks escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Why the job submitted again with `key = value` cannot do what ckptlab does with it live
/// (None: the bridge plays it as stop-with-savepoint + resubmission).
pub fn set_refusal(key: &str, value: &str, max_parallelism: impl std::fmt::Display) -> Option<String> {
    let said = format!("set {key} = {value}");
    // Read by the JobManager's and TaskManagers' processes when they start (HeartbeatManagerOptions,
    // JobManagerOptions#SLOT_REQUEST_TIMEOUT: the cluster's config.yaml, bridge::cluster_options),
    // not by a job: a new job leaves them as they were.
    if key.starts_with("heartbeat.") || key == "slot.request.timeout" {
        return Some(format!(
            "{said}: Flink reads {key} when the JobManager and TaskManagers start, not when a job is submitted: a new job from a savepoint would not change it (restart the cluster with it)"
        ));
    }
    // StateAssignmentOperation#checkParallelismPreconditions (StateAssignmentOperation.java:748-757
    // in Flink 2.3.0's line table) refuses the restore: keyed state is split into max-parallelism
    // key groups when it is written, and cannot be split again.
    if key == "job.max-parallelism" || key == "pipeline.max-parallelism" {
        return Some(format!(
            "{said}: Flink refuses to restore a savepoint into another max parallelism (\"Failed to rollback to checkpoint/savepoint ... Max parallelism mismatch between checkpoint/savepoint state and new program. \
             Cannot map operator ... with max parallelism {max_parallelism} to new program with max parallelism {value}. This indicates that the program has been changed in a non-compatible way after the checkpoint/savepoint.\", \
             StateAssignmentOperation.checkParallelismPreconditions)"
        ));
    }
    None
}

/// Why a scenario cannot run on Flink as it is: its first such step or option, by line.
/// `local_cluster`: the run is on ckptlab's local cluster of processes, where a TaskManager's
/// JVM can be hung alone (SIGSTOP).
pub fn refusal(scenario: &Scenario, cfg: &Config, local_cluster: bool) -> Option<String> {
    if cfg.source.kafka.is_some() {
        return Some(format!(
            "{}: source.kind = kafka: the Flink side reads the file-backed log only (Flink's Kafka connector jar is not in apache-flink-libraries); drop --kafka",
            scenario.file
        ));
    }
    if cfg.job.sink == SinkKind::Kafka {
        return Some(format!(
            "{}: job.sink = kafka: Flink's Kafka connector (org.apache.flink:flink-connector-kafka) is not in apache-flink-libraries, the PyPI wheels the bridge installs Flink from, \
             so the Flink side has no KafkaSink to run; `ckptlab flink export` writes the job with a KafkaSink for a real cluster (its README names the connector's Maven coordinates)",
            scenario.file
        ));
    }
    if cfg.recovery.path.is_some() {
        return Some(format!("{}: --restore: a ckptlab checkpoint cannot start a Flink job (their formats differ)", scenario.file));
    }
    if scenario.compare.is_some() {
        return Some(format!(
            "{}: [compare] runs one cluster per mode; the Flink bridge runs one job: run each mode on its own (ckptlab flink run FILE --set execution.checkpointing.mode=...)",
            scenario.file
        ));
    }
    for step in &scenario.steps {
        let why = match &step.action {
            // Flink applies configuration when a job is submitted: the bridge plays a `set` as a
            // Flink user would, stop-with-savepoint and a new job from it with the new options
            // (bridge::Resubmission). Refused here only what that new job cannot take.
            Action::Set(pairs) => pairs.iter().find_map(|(k, v)| set_refusal(k, v, cfg.job.max_parallelism)),
            // Savepoints (either format), a stop-with-savepoint, a resubmission from it and a
            // backend change through a canonical savepoint: Flink's own REST and client calls.
            Action::Savepoint { .. } | Action::Resubmit | Action::SwitchBackend(_) => None,
            // The MiniCluster runs every TaskManager in the bridge's one JVM, and its
            // terminateTaskManager closes one: there is no way to freeze one alone with its
            // connections open, so the nearest action (a kill) would test another failure.
            Action::Hang(_) if local_cluster => None,
            Action::Hang(tm) => Some(format!(
                "hang {tm}: Flink's MiniCluster runs every TaskManager in one JVM, so one cannot hang alone with its connections open \
                 (on a real cluster: `kill -STOP` its JVM, and the JobManager finds it at heartbeat.timeout; `ckptlab flink run --cluster local` does that, `ckptlab flink export` writes that step)"
            )),
            Action::KillBeforeCommit(tm) => Some(format!(
                "kill {tm} when = \"before-commit\": the bridge cannot place a kill between a checkpoint's completion and its notification on Flink"
            )),
            // Named one by one, so that a new step is a compile error here until someone decides
            // whether the bridge can run it.
            Action::Produce { .. }
            | Action::Generate(_)
            | Action::Kill(_)
            | Action::Start(_)
            | Action::Checkpoint
            | Action::Wait(_)
            | Action::Await { .. }
            | Action::Expect { .. }
            | Action::StopGenerators => None,
        };
        if let Some(why) = why {
            return Some(format!("{}:{}: this step cannot run on Flink: {why}", scenario.file, step.line));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigLayers;

    fn cfg(pairs: &[&str]) -> Config {
        let mut l = ConfigLayers::builtin();
        for p in pairs {
            l.set(p, "test").unwrap();
        }
        l.build().unwrap()
    }

    #[test]
    fn scenario_options_become_flink_options_with_flink_units() {
        let c = cfg(&[
            "execution.checkpointing.interval=500ms",
            "execution.checkpointing.mode=AT_LEAST_ONCE",
            "execution.buffer-timeout.interval=1ms",
            "heartbeat.timeout=2s",
            "heartbeat.interval=500ms",
            "heartbeat.rpc-failure-threshold=3",
            "restart-strategy.type=fixed-delay",
            "restart-strategy.fixed-delay.delay=200ms",
        ]);
        let o = flink_options(&c, Path::new("/run"));
        let get = |k: &str| o.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("execution.checkpointing.interval"), Some("500 ms"));
        assert_eq!(get("execution.checkpointing.mode"), Some("AT_LEAST_ONCE"));
        assert_eq!(get("execution.buffer-timeout.interval"), Some("1 ms"));
        assert_eq!(get("heartbeat.timeout"), Some("2000 ms"));
        assert_eq!(get("heartbeat.interval"), Some("500 ms"));
        assert_eq!(get("heartbeat.rpc-failure-threshold"), Some("3"));
        assert_eq!(get("restart-strategy.type"), Some("fixed-delay"));
        assert_eq!(get("restart-strategy.fixed-delay.delay"), Some("200 ms"));
        let diff = differences_from_flink(&o, true);
        assert!(diff.iter().any(|(k, v, d)| k == "execution.buffer-timeout.interval" && v == "1 ms" && d == "100 ms"), "{diff:?}");
        assert!(!diff.iter().any(|(k, _, _)| k == "execution.checkpointing.max-concurrent-checkpoints"), "{diff:?}");
    }

    #[test]
    fn checkpointing_off_leaves_the_interval_unset() {
        let c = cfg(&["execution.checkpointing.interval=off"]);
        let o = flink_options(&c, Path::new("/run"));
        assert!(!o.iter().any(|(k, _)| k == "execution.checkpointing.interval"));
    }

    #[test]
    fn a_slow_channel_becomes_a_delay_on_its_source_subtask() {
        let c = cfg(&["ckptlab.delays.source[1]->counter[*]=50ms", "ckptlab.record-cost.counter[1]=5ms"]);
        let spec = JobSpec::of(&c, Path::new("/log"), Path::new("/run"));
        assert_eq!(spec.source_delay_ms, vec![0, 50]);
        assert_eq!(spec.counter_cost_ms, vec![0, 5]);
        let props = spec.to_properties();
        assert!(props.contains("delay.source.1=50\n") && !props.contains("delay.source.0"), "{props}");
        assert!(props.contains("cost.counter.1=5\n") && props.contains("source.dir=/log\n"), "{props}");
    }

    fn scenario(steps: &str) -> Scenario {
        Scenario::parse(&format!("name = \"x\"\n[[steps]]\nproduce = [\"a\"]\n{steps}"), "s.toml").unwrap()
    }

    /// The table of what the bridge refuses: a `set` that a new job from a savepoint cannot take
    /// (cluster options, another max parallelism), with Flink's reason and the step's line.
    /// Catches a bridge that refuses every `set` again, or plays a cluster option as if a
    /// resubmission changed it.
    #[test]
    fn sets_a_new_job_cannot_take_are_refused_by_their_line_with_flinks_reason() {
        for (step, why) in [
            ("set = { \"heartbeat.timeout\" = \"5s\" }", "when the JobManager and TaskManagers start"),
            ("set = { \"slot.request.timeout\" = \"5s\" }", "when the JobManager and TaskManagers start"),
        ] {
            let s = scenario(&format!("[[steps]]\n{step}\n"));
            let got = refusal(&s, &cfg(&[]), false).unwrap_or_else(|| panic!("not refused: {step}"));
            assert!(got.starts_with("s.toml:4:") && got.contains(why), "{step}: {got}");
            // The same on the local cluster: a resubmission there changes no process either.
            assert!(refusal(&s, &cfg(&[]), true).is_some(), "{step}");
        }
        // A scenario cannot `set` job.max-parallelism at all (ckptlab applies it at cluster start:
        // the parser refuses it); the table still says Flink's reason.
        let why = set_refusal("job.max-parallelism", "256", 128).unwrap();
        assert!(why.contains("Max parallelism mismatch between checkpoint/savepoint state and new program"), "{why}");
        assert!(why.contains("with max parallelism 128 to new program with max parallelism 256"), "{why}");
        assert_eq!(set_refusal("execution.checkpointing.unaligned.enabled", "true", 128), None);
    }

    /// What runs now: a `set` of a job option (stop-with-savepoint + resubmission), savepoints in
    /// both formats and stop, resubmit, switch-backend. Catches a bridge that still refuses them.
    #[test]
    fn sets_of_job_options_savepoints_resubmit_and_backend_switches_run() {
        for step in [
            "set = { \"execution.checkpointing.unaligned.enabled\" = true }",
            "set = { \"execution.checkpointing.mode\" = \"AT_LEAST_ONCE\", \"execution.checkpointing.interval\" = \"200ms\" }",
            "set = { \"restart-strategy.type\" = \"fixed-delay\" }",
            "savepoint = true",
            "savepoint = true\nformat = \"native\"",
            "stop-with-savepoint = true\nformat = \"canonical\"",
            "stop-with-savepoint = true\n[[steps]]\nresubmit = true",
            "switch-backend = \"rocksdb\"",
        ] {
            let s = scenario(&format!("[[steps]]\n{step}\n"));
            assert_eq!(refusal(&s, &cfg(&[]), false), None, "{step}");
            assert_eq!(refusal(&s, &cfg(&[]), true), None, "{step}");
        }
    }

    /// Issue 23: the Flink side has no Kafka sink (the connector is not in the PyPI wheels).
    #[test]
    fn a_kafka_sink_is_refused_naming_the_missing_connector() {
        let s = scenario("");
        let why = refusal(&s, &cfg(&["job.sink=kafka"]), false).unwrap();
        assert!(why.contains("job.sink = kafka") && why.contains("flink-connector-kafka") && why.contains("ckptlab flink export"), "{why}");
        assert_eq!(refusal(&s, &cfg(&["job.sink=print"]), false), None);
    }

    #[test]
    fn a_hang_is_refused_on_the_minicluster_and_played_on_the_local_cluster() {
        let s = Scenario::parse("name = \"x\"\n[[steps]]\nhang = \"tm-1\"\n", "h.toml").unwrap();
        let why = refusal(&s, &cfg(&[]), false).unwrap();
        assert!(why.starts_with("h.toml:2:") && why.contains("one JVM"), "{why}");
        assert_eq!(refusal(&s, &cfg(&[]), true), None);
    }
}
