//! The typed configuration the engine gets: [`Config`] and its parts, validated out of the layers
//! by [`ConfigLayers::build`], which reads each option of the schema through a `Reader` whose
//! errors name the layer (file and line), the key and the allowed values.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strum::VariantNames;

use super::layers::{backend_label, parse_loose_value, value_text, ConfigLayers, Entry, SeedBackend};
use super::schema::{
    BackendKind, CheckpointMode, ClaimMode, EmbeddedRetention, KeyBy, Kind, OffsetReset, RestartStrategyType, Retention, SinkKind,
    SourceKind, StorageKind, DELAYS_TABLE, RECORD_COST_TABLE, SCHEMA, SINK_PROPERTIES_TABLE,
};
use super::kafka_sink::{
    DeliveryGuarantee, TransactionTimeoutTooLarge, DEFAULT_TRANSACTION_MAX_TIMEOUT, DEFAULT_TRANSACTION_TIMEOUT, MISSING_TRANSACTIONAL_ID_PREFIX,
};
use super::ConfigError;
use crate::duration::{format_duration, parse_duration, parse_size};
use crate::types::{Alignment as BarrierAlignment, CheckpointOptions};

/// The buffer timeout in force when `execution.buffer-timeout.enabled = false`: buffers are
/// flushed only when full (or when a barrier must go), never by time.
pub const BUFFER_TIMEOUT_DISABLED: Duration = Duration::from_secs(365 * 24 * 3600);

/// Flink's `HeartbeatManagerOptions.FAILED_RPC_DETECTION_DISABLED`: a threshold of -1 switches
/// the detection by failed RPCs off (HeartbeatServicesImpl.java:51-55 allows > 0 or -1).
pub const RPC_FAILURE_DETECTION_DISABLED: i64 = -1;

/// The largest backoff multiplier of the exponential-delay restart strategy.
const MAX_BACKOFF_MULTIPLIER: f64 = 100.0;

impl ConfigLayers {
    /// Validates every layer into a typed configuration.
    pub fn build(&self) -> Result<Config, ConfigError> {
        let r = Reader { layers: self };
        let interval = r.duration_or_off("execution.checkpointing.interval")?;
        let mode: CheckpointMode = r.choice("execution.checkpointing.mode")?;
        let storage: StorageKind = r.choice("execution.checkpointing.storage")?;
        let dir_text = r.text("execution.checkpointing.dir")?;
        let dir = checkpoint_dir(&dir_text).map_err(|e| r.bad("execution.checkpointing.dir", e.to_string()))?;
        let restart_kind = r.choice::<RestartStrategyType>("restart-strategy.type")?.kind();
        let multiplier = r.float("restart-strategy.exponential-delay.backoff-multiplier")?;
        if !(1.0..=MAX_BACKOFF_MULTIPLIER).contains(&multiplier) {
            return Err(r.bad(
                "restart-strategy.exponential-delay.backoff-multiplier",
                format!("allowed: a number from 1.0 to {MAX_BACKOFF_MULTIPLIER}"),
            ));
        }
        let initial_backoff = r.duration("restart-strategy.exponential-delay.initial-backoff")?;
        let max_backoff = r.duration("restart-strategy.exponential-delay.max-backoff")?;
        if initial_backoff > max_backoff {
            return Err(r.bad(
                "restart-strategy.exponential-delay.initial-backoff",
                "cannot be higher than restart-strategy.exponential-delay.max-backoff (as Flink)".into(),
            ));
        }
        let jitter_factor = r.float("restart-strategy.exponential-delay.jitter-factor")?;
        if !(0.0..=1.0).contains(&jitter_factor) {
            return Err(r.bad("restart-strategy.exponential-delay.jitter-factor", "allowed: a number from 0.0 to 1.0".into()));
        }
        let buffer_timeout = if r.bool("execution.buffer-timeout.enabled")? {
            r.duration("execution.buffer-timeout.interval")?
        } else {
            BUFFER_TIMEOUT_DISABLED
        };
        // Flink's checks (HeartbeatServicesImpl.java:45-55).
        let (heartbeat_interval, heartbeat_timeout) = (r.duration("heartbeat.interval")?, r.duration("heartbeat.timeout")?);
        if heartbeat_interval.is_zero() {
            return Err(r.bad("heartbeat.interval", "allowed: a duration above 0ms".into()));
        }
        if heartbeat_timeout < heartbeat_interval {
            return Err(r.bad(
                "heartbeat.timeout",
                format!("must be at least heartbeat.interval = {} (Flink refuses a shorter timeout)", format_duration(heartbeat_interval)),
            ));
        }
        let heartbeat_rpc_failure_threshold = match r.int("heartbeat.rpc-failure-threshold")? {
            RPC_FAILURE_DETECTION_DISABLED => None,
            n if n > 0 => Some(n as u32),
            _ => return Err(r.bad("heartbeat.rpc-failure-threshold", "allowed: 1 or more, or -1 to switch the detection off".into())),
        };
        let parallelism = r.int("job.parallelism")? as usize;
        let taskmanagers = r.int("taskmanager.count")? as usize;
        let slots_per_tm = r.int("taskmanager.number-of-task-slots")? as usize;
        if parallelism > taskmanagers * slots_per_tm {
            // Flink would wait for slots that never come (slot.request.timeout): say it now.
            return Err(r.bad(
                "job.parallelism",
                format!(
                    "needs {parallelism} slots, the cluster has {} (taskmanager.count = {taskmanagers} x taskmanager.number-of-task-slots = {slots_per_tm})",
                    taskmanagers * slots_per_tm
                ),
            ));
        }
        // Flink's pipeline.max-parallelism: -1 = KeyGroupRangeAssignment.computeDefaultMaxParallelism
        // (128 for every parallelism ckptlab allows, src/keygroup.rs). The engine keeps 128 key
        // groups, so another number is refused rather than silently not modelled.
        let max_parallelism = match r.int("job.max-parallelism")? {
            -1 => crate::keygroup::compute_default_max_parallelism(parallelism as u32),
            m => m as u32,
        };
        if max_parallelism != u32::from(crate::keygroup::MAX_PARALLELISM) {
            return Err(r.bad(
                "job.max-parallelism",
                format!(
                    "{max_parallelism} key groups are not modelled: ckptlab's engine keeps {} (Flink's default for job.parallelism <= 85); allowed: -1 (Flink's default), {}",
                    crate::keygroup::MAX_PARALLELISM,
                    crate::keygroup::MAX_PARALLELISM
                ),
            ));
        }
        let max_parallelism = crate::keygroup::MAX_PARALLELISM;
        let kafka_sink = self.kafka_sink(&r)?;
        let delays = self.pattern_durations(DELAYS_TABLE, ChannelPattern::parse)?;
        let record_costs = self.pattern_durations(RECORD_COST_TABLE, SubtaskPattern::parse)?;
        // A pattern that matches nothing in this job is a typo (`counter[9]` with 2 counters):
        // refuse it, naming what exists, rather than run an experiment without its delay.
        let last = parallelism.saturating_sub(1);
        let job_channels = (0..parallelism)
            .flat_map(|i| (0..parallelism).map(move |j| (("source", i), ("counter", j))))
            .chain((0..parallelism).map(|j| (("counter", j), ("sink", 0))));
        let job_channels: Vec<_> = job_channels.collect();
        for (p, _) in &delays {
            if !job_channels.iter().any(|(from, to)| p.matches(*from, *to)) {
                return Err(r.bad(
                    &format!("{DELAYS_TABLE}.{}", p.text),
                    format!(
                        "matches no channel of this job; with job.parallelism = {parallelism} the channels are source[0..{last}]->counter[0..{last}] and counter[0..{last}]->sink[0] (any index may be *)"
                    ),
                ));
            }
        }
        for (p, _) in &record_costs {
            if !(0..parallelism).any(|j| p.matches(("counter", j))) && !p.matches(("sink", 0)) {
                return Err(r.bad(
                    &format!("{RECORD_COST_TABLE}.{}", p.text),
                    format!("matches no subtask of this job; with job.parallelism = {parallelism} they are counter[0..{last}] and sink[0] (any index may be *)"),
                ));
            }
        }
        let unaligned = r.bool("execution.checkpointing.unaligned.enabled")?;
        if unaligned && mode == CheckpointMode::AtLeastOnce {
            // As Flink: unaligned checkpoints are an exactly-once technique.
            return Err(r.bad(
                "execution.checkpointing.unaligned.enabled",
                "unaligned checkpoints need execution.checkpointing.mode = EXACTLY_ONCE (AT_LEAST_ONCE never aligns, so there is nothing to unalign)".into(),
            ));
        }
        let backend: BackendKind = r.choice("state.backend.type")?;
        if backend.snapshots_need_filesystem() && storage == StorageKind::JobManager {
            return Err(r.bad(
                "state.backend.type",
                "rocksdb snapshots are files: it needs execution.checkpointing.storage = \"filesystem\" (--backend rocksdb sets both)"
                    .into(),
            ));
        }
        let savepoint_text = r.text("execution.checkpointing.savepoint-dir")?;
        let savepoint_dir = savepoint_dir(&savepoint_text).map_err(|e| r.bad("execution.checkpointing.savepoint-dir", e.to_string()))?;
        let recovery_text = r.text("execution.state-recovery.path")?;
        let recovery_path = match recovery_text.trim() {
            "" => None,
            t => Some(PathBuf::from(t.strip_prefix("file://").unwrap_or(t))),
        };
        let embedded_text = r.text("source.embedded.dir")?;
        let embedded_dir = match embedded_text.trim() {
            "" => None,
            t if t.contains("://") => {
                return Err(
                    r.bad("source.embedded.dir", "a local directory is needed here (no URI scheme); \"\" keeps the topic in memory".into())
                )
            }
            t => Some(PathBuf::from(t)),
        };
        let tmp_text = r.text("taskmanager.tmp-dirs")?;
        let tm_dir = local_dir(&tmp_text).map_err(|e| r.bad("taskmanager.tmp-dirs", e.to_string()))?;
        Ok(Config {
            checkpointing: CheckpointingConfig {
                interval,
                mode,
                timeout: r.duration("execution.checkpointing.timeout")?,
                min_pause: r.duration("execution.checkpointing.min-pause")?,
                max_concurrent: r.int("execution.checkpointing.max-concurrent-checkpoints")? as usize,
                tolerable_failed: r.int("execution.checkpointing.tolerable-failed-checkpoints")? as u64,
                storage,
                dir,
                num_retained: r.int("execution.checkpointing.num-retained")? as usize,
                incremental: r.bool("execution.checkpointing.incremental")?,
                unaligned,
                aligned_timeout: r.duration("execution.checkpointing.aligned-checkpoint-timeout")?,
                retention: r.choice("execution.checkpointing.externalized-checkpoint-retention")?,
                savepoint_dir,
            },
            recovery: RecoveryConfig { path: recovery_path, claim: r.choice("execution.state-recovery.claim-mode")? },
            buffer_timeout,
            backend,
            restart: RestartConfig {
                kind: restart_kind,
                fixed_attempts: r.int("restart-strategy.fixed-delay.attempts")? as u64,
                fixed_delay: r.duration("restart-strategy.fixed-delay.delay")?,
                initial_backoff,
                max_backoff,
                multiplier,
                reset_threshold: r.duration("restart-strategy.exponential-delay.reset-backoff-threshold")?,
                jitter_factor,
                attempts_before_reset: r.int("restart-strategy.exponential-delay.attempts-before-reset-backoff")? as u64,
            },
            heartbeat_timeout,
            heartbeat_interval,
            heartbeat_rpc_failure_threshold,
            slot_request_timeout: r.duration("slot.request.timeout")?,
            taskmanagers,
            slots_per_tm,
            tm_dir,
            job: JobConfig {
                name: r.text("job.name")?,
                parallelism,
                max_parallelism,
                key_by: r.choice("job.key-by")?,
                sink: r.choice("job.sink")?,
                kafka_sink,
            },
            source: SourceConfig {
                kafka: match r.choice::<SourceKind>("source.kind")? {
                    SourceKind::Kafka => {
                        let servers = r.text("source.bootstrap-servers")?;
                        if servers.trim().is_empty() {
                            return Err(r.bad("source.bootstrap-servers", "a broker list such as \"localhost:9092\", or \"mock\"".into()));
                        }
                        Some(KafkaSource { bootstrap_servers: servers.trim().to_string(), group_id: r.text("source.group-id")? })
                    }
                    SourceKind::Embedded => None,
                },
                partitions: r.int("source.partitions")? as u32,
                topic: r.text("source.topic")?,
                embedded_dir,
                offset_reset: r.choice("source.auto-offset-reset")?,
                retention: r.choice::<EmbeddedRetention>("source.embedded.retention")?,
            },
            lab: LabConfig {
                hop_delay: r.duration("ckptlab.hop-delay")?,
                network: NetworkBuffers::new(
                    r.size("taskmanager.memory.segment-size")?,
                    r.int("taskmanager.network.memory.buffers-per-channel")? as usize,
                    r.int("taskmanager.network.memory.floating-buffers-per-gate")? as usize,
                    r.int("taskmanager.network.memory.max-buffers-per-channel")? as usize,
                    r.int("ckptlab.channel-capacity")? as usize,
                    r.int("ckptlab.buffer-records")? as usize,
                ),
                jobmanager_max_state_size: r.size("ckptlab.jobmanager-max-state-size")?,
                audit: r.bool("ckptlab.audit")?,
                generator_rate: r.int("ckptlab.generator-rate")? as u64,
                delays,
                record_costs,
                storage: StorageBehaviour {
                    latency: r.duration("ckptlab.storage.latency")?,
                    latency_per_mb: r.duration("ckptlab.storage.latency-per-mb")?,
                    failure_rate: {
                        let rate = r.float("ckptlab.storage.failure-rate")?;
                        if !(0.0..=1.0).contains(&rate) {
                            return Err(r.bad("ckptlab.storage.failure-rate", "allowed: a number from 0.0 to 1.0".into()));
                        }
                        rate
                    },
                    requests_per_second: match r.int("ckptlab.storage.requests-per-second")? {
                        0 => None,
                        n => Some(n as u32),
                    },
                },
            },
        })
    }
}

/// The embedded broker's `transaction.max.timeout.ms` (Kafka's default, 15 min).
const EMBEDDED_TRANSACTION_MAX_TIMEOUT: Duration = DEFAULT_TRANSACTION_MAX_TIMEOUT;

/// The producer property KafkaSink sets itself unless given (KafkaSinkBuilder.java:86-88).
pub const TRANSACTION_TIMEOUT_PROPERTY: &str = "transaction.timeout.ms";

impl ConfigLayers {
    /// `sink.*`: the Kafka sink's options, checked as Flink's KafkaSinkBuilder checks them, and
    /// against the embedded broker's `transaction.max.timeout.ms` when it is the one written to.
    fn kafka_sink(&self, r: &Reader) -> Result<KafkaSinkConfig, ConfigError> {
        let delivery_guarantee: DeliveryGuarantee = r.choice("sink.delivery-guarantee")?;
        let prefix = r.text("sink.transactional-id-prefix")?;
        let transactional_id_prefix = (!prefix.trim().is_empty()).then(|| prefix.trim().to_string());
        let output_topic = r.text("sink.output-topic")?;
        if output_topic.trim().is_empty() {
            return Err(r.bad("sink.output-topic", "allowed: a topic name such as \"output-topic\"".into()));
        }
        let prefix_len = SINK_PROPERTIES_TABLE.len() + 1;
        let mut properties = Vec::new();
        let mut transaction_timeout = DEFAULT_TRANSACTION_TIMEOUT;
        for (key, entry) in self.entries.range(format!("{SINK_PROPERTIES_TABLE}.")..) {
            if !key.starts_with(SINK_PROPERTIES_TABLE) || key.as_bytes().get(SINK_PROPERTIES_TABLE.len()) != Some(&b'.') {
                break;
            }
            let name = key[prefix_len..].to_string();
            let value = match &entry.value {
                toml::Value::String(s) => s.clone(),
                other => value_text(other),
            };
            if name == TRANSACTION_TIMEOUT_PROPERTY {
                transaction_timeout = match value.trim().parse::<u64>() {
                    Ok(ms) if ms > 0 => Duration::from_millis(ms),
                    _ => return Err(r.bad(key, "allowed: a number of milliseconds above 0, as Kafka's producer reads it (e.g. 600000)".into())),
                };
            }
            properties.push((name, value));
        }
        let kafka = r.choice::<SourceKind>("source.kind")? == SourceKind::Kafka;
        let sink_is_kafka = r.choice::<SinkKind>("job.sink")? == SinkKind::Kafka;
        if sink_is_kafka && delivery_guarantee == DeliveryGuarantee::ExactlyOnce {
            if transactional_id_prefix.is_none() {
                // KafkaSinkBuilder.java:200-203, in its words.
                return Err(r.bad(
                    "sink.transactional-id-prefix",
                    format!("{MISSING_TRANSACTIONAL_ID_PREFIX} (required with sink.delivery-guarantee = exactly-once)"),
                ));
            }
            if !kafka && transaction_timeout > EMBEDDED_TRANSACTION_MAX_TIMEOUT {
                // What the embedded broker answers InitProducerId with; Flink's job fails with it
                // at start (the writer's initTransactions). Refused here, before the job runs.
                let refusal = TransactionTimeoutTooLarge {
                    timeout_ms: transaction_timeout.as_millis() as u64,
                    max_ms: Some(EMBEDDED_TRANSACTION_MAX_TIMEOUT.as_millis() as u64),
                };
                let key = format!("{SINK_PROPERTIES_TABLE}.{TRANSACTION_TIMEOUT_PROPERTY}");
                let message = format!(
                    "{refusal}; KafkaSink's default is 1 h, the embedded broker's transaction.max.timeout.ms is Kafka's default 15 min: set {key} to at most 900000"
                );
                return Err(match self.entries.get(&key) {
                    Some(_) => r.bad(&key, message),
                    None => ConfigError::Invalid { origin: "configuration".into(), message: format!("`{key}` (default 3600000): {message}") },
                });
            }
        }
        Ok(KafkaSinkConfig { delivery_guarantee, transactional_id_prefix, output_topic: output_topic.trim().to_string(), properties, transaction_timeout })
    }

    /// The entries of a pattern table as (pattern, duration), each error naming its key.
    fn pattern_durations<P>(&self, table: &str, parse: impl Fn(&str) -> Result<P, BadPattern>) -> Result<Vec<(P, Duration)>, ConfigError> {
        let prefix = format!("{table}.");
        let mut out = Vec::new();
        for (key, entry) in self.entries.range(prefix.clone()..) {
            let Some(pattern) = key.strip_prefix(&prefix) else { break };
            let bad = |message: String| ConfigError::BadValue {
                origin: entry.origin.clone(),
                key: key.clone(),
                value: value_text(&entry.value),
                message,
            };
            let pattern = parse(pattern).map_err(|e| bad(e.to_string()))?;
            let d = match &entry.value {
                toml::Value::String(s) => parse_duration(s).map_err(|e| e.to_string()),
                toml::Value::Integer(i) if *i >= 0 => parse_duration(&i.to_string()).map_err(|e| e.to_string()),
                _ => Err("expected a duration such as \"300ms\"".to_string()),
            }
            .map_err(bad)?;
            out.push((pattern, d));
        }
        Ok(out)
    }
}

/// Reads typed values out of the layers, producing errors that name origin, key and allowed values.
struct Reader<'a> {
    layers: &'a ConfigLayers,
}

impl Reader<'_> {
    fn entry(&self, key: &str) -> Result<&Entry, ConfigError> {
        self.layers.entries.get(key).ok_or_else(|| ConfigError::Invalid {
            origin: "configuration".into(),
            message: format!("`{key}` has no value (the shipped conf/ckptlab.toml sets every key)"),
        })
    }

    fn bad(&self, key: &str, message: String) -> ConfigError {
        match self.layers.entries.get(key) {
            Some(e) => ConfigError::BadValue { origin: e.origin.clone(), key: key.to_string(), value: value_text(&e.value), message },
            None => ConfigError::Invalid { origin: "configuration".into(), message: format!("`{key}`: {message}") },
        }
    }

    fn string_like(&self, key: &str, expected: &str) -> Result<String, ConfigError> {
        match &self.entry(key)?.value {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            _ => Err(self.bad(key, format!("expected {expected}"))),
        }
    }

    fn duration(&self, key: &str) -> Result<Duration, ConfigError> {
        let text = self.string_like(key, "a duration such as \"500ms\", \"5s\" or \"1min\"")?;
        parse_duration(&text).map_err(|m| self.bad(key, format!("{m}; allowed: a duration such as 500ms, 5s, 1min")))
    }

    fn duration_or_off(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let text = self.string_like(key, "a duration such as \"5s\", or \"off\"")?;
        if text.eq_ignore_ascii_case("off") || text.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let d = parse_duration(&text).map_err(|m| self.bad(key, format!("{m}; allowed: a duration such as 100ms, 1s, 5s, or \"off\"")))?;
        if d < Duration::from_millis(10) {
            return Err(self.bad(key, "the interval must be at least 10ms, or \"off\"".into()));
        }
        Ok(Some(d))
    }

    fn size(&self, key: &str) -> Result<u64, ConfigError> {
        let text = self.string_like(key, "a size such as \"5mb\"")?;
        parse_size(&text).map_err(|m| self.bad(key, m.to_string()))
    }

    fn int(&self, key: &str) -> Result<i64, ConfigError> {
        let Some(spec) = SCHEMA.iter().find(|s| s.key == key) else { unreachable!("schema key {key}") };
        let Kind::Int { min, max } = spec.kind else { unreachable!("{key} is an integer option") };
        let range = if max == i64::MAX { format!("an integer >= {min}") } else { format!("an integer from {min} to {max}") };
        match &self.entry(key)?.value {
            toml::Value::Integer(i) if (min..=max).contains(i) => Ok(*i),
            _ => Err(self.bad(key, format!("allowed: {range}"))),
        }
    }

    fn float(&self, key: &str) -> Result<f64, ConfigError> {
        match &self.entry(key)?.value {
            toml::Value::Float(f) if f.is_finite() => Ok(*f),
            toml::Value::Integer(i) => Ok(*i as f64),
            _ => Err(self.bad(key, "allowed: a finite number such as 2.0".into())),
        }
    }

    fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        match &self.entry(key)?.value {
            toml::Value::Boolean(b) => Ok(*b),
            _ => Err(self.bad(key, "allowed: true, false".into())),
        }
    }

    fn text(&self, key: &str) -> Result<String, ConfigError> {
        match &self.entry(key)?.value {
            toml::Value::String(s) => Ok(s.clone()),
            _ => Err(self.bad(key, "allowed: a string".into())),
        }
    }

    /// A choice option as its enum (any case), the error listing the enum's names.
    fn choice<T: VariantNames + std::str::FromStr>(&self, key: &str) -> Result<T, ConfigError> {
        let entry = self.entry(key)?;
        let bad = || ConfigError::BadChoice {
            origin: entry.origin.clone(),
            key: key.to_string(),
            value: value_text(&entry.value),
            allowed: T::VARIANTS,
        };
        match &entry.value {
            toml::Value::String(s) => s.parse().map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// `taskmanager.tmp-dirs`: a local path; "" = `tm` in ckptlab's private directory
/// ([`crate::workdir::home`]).
fn local_dir(text: &str) -> Result<PathBuf, BadPath> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(crate::workdir::home().join("tm"));
    }
    if t.contains("://") {
        return Err(BadPath::NotLocal);
    }
    Ok(PathBuf::from(t))
}

fn savepoint_dir(text: &str) -> Result<PathBuf, BadPath> {
    if text.trim().is_empty() {
        return Ok(crate::workdir::home().join("savepoints"));
    }
    checkpoint_dir(text)
}

/// Why a directory option's value is no directory ckptlab can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BadPath {
    #[error("a local directory is needed here (no URI scheme)")]
    NotLocal,
    #[error("a file:// URI needs a path, as in file:///tmp/ckptlab")]
    EmptyFileUri,
    #[error("scheme `{0}://` is not supported here; allowed: a local path or a file:// URI")]
    Scheme(String),
}

fn checkpoint_dir(text: &str) -> Result<PathBuf, BadPath> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(crate::workdir::home().join("checkpoints"));
    }
    if let Some(rest) = t.strip_prefix("file://") {
        if rest.is_empty() {
            return Err(BadPath::EmptyFileUri);
        }
        return Ok(PathBuf::from(rest));
    }
    if let Some((scheme, _)) = t.split_once("://") {
        return Err(BadPath::Scheme(scheme.to_string()));
    }
    Ok(PathBuf::from(t))
}

/// How exactly-once checkpoints treat barriers (`execution.checkpointing.unaligned.enabled`):
/// the user's choice. With a nonzero `aligned-checkpoint-timeout` an unaligned-enabled checkpoint
/// starts aligned: the barrier's own [`crate::types::Alignment`] (Flink's `AlignmentType`) tells
/// which a checkpoint is, so the two are different types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Alignment {
    Aligned,
    Unaligned,
}

/// The checkpointing a job runs with, as one value: off (no interval), at-least-once, or
/// exactly-once aligned or unaligned. The workbench's `m` key, a compared side and the view all
/// speak it; [`CheckpointingMode::settings`] is the one place it becomes options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointingMode {
    /// `execution.checkpointing.interval` = off (Flink's default).
    Off,
    AtLeastOnce,
    ExactlyOnce(Alignment),
}

/// The interval a checkpointing mode takes when the settings it starts from have checkpointing
/// off: the seed's `checkpointInterval = 1000` (Flink itself has no default).
pub const INTERVAL_WHEN_OFF: Duration = Duration::from_secs(1);

impl CheckpointingMode {
    /// The mode a validated configuration runs.
    pub fn of(c: &CheckpointingConfig) -> CheckpointingMode {
        match (c.interval, c.mode, c.unaligned) {
            (None, _, _) => CheckpointingMode::Off,
            (Some(_), CheckpointMode::AtLeastOnce, _) => CheckpointingMode::AtLeastOnce,
            (Some(_), CheckpointMode::ExactlyOnce, false) => CheckpointingMode::ExactlyOnce(Alignment::Aligned),
            (Some(_), CheckpointMode::ExactlyOnce, true) => CheckpointingMode::ExactlyOnce(Alignment::Unaligned),
        }
    }

    /// The options that make this mode, each as `--set` would take it, in an order whose every
    /// step is valid (unaligned is exactly-once only: it goes off before AT_LEAST_ONCE comes, and
    /// on after EXACTLY_ONCE). A checkpointing mode runs every `interval`.
    pub fn settings(self, interval: Duration) -> Vec<(&'static str, String)> {
        const INTERVAL: &str = "execution.checkpointing.interval";
        const MODE: &str = "execution.checkpointing.mode";
        const UNALIGNED: &str = "execution.checkpointing.unaligned.enabled";
        let every = format_duration(interval);
        match self {
            CheckpointingMode::Off => vec![(INTERVAL, "off".into())],
            CheckpointingMode::AtLeastOnce => {
                vec![(UNALIGNED, "false".into()), (MODE, CheckpointMode::AtLeastOnce.flink_name().into()), (INTERVAL, every)]
            }
            CheckpointingMode::ExactlyOnce(Alignment::Aligned) => {
                vec![(UNALIGNED, "false".into()), (MODE, CheckpointMode::ExactlyOnce.flink_name().into()), (INTERVAL, every)]
            }
            CheckpointingMode::ExactlyOnce(Alignment::Unaligned) => {
                vec![(MODE, CheckpointMode::ExactlyOnce.flink_name().into()), (UNALIGNED, "true".into()), (INTERVAL, every)]
            }
        }
    }

    /// The settings that change `from` into this mode: those `from` does not already have
    /// (all of them coming from off, which hides the others).
    pub fn changes_from(self, from: CheckpointingMode, interval: Duration) -> Vec<(&'static str, String)> {
        let had = if from == CheckpointingMode::Off { Vec::new() } else { from.settings(interval) };
        self.settings(interval).into_iter().filter(|s| !had.contains(s)).collect()
    }

    /// Puts this mode on top of `layers`, keeping their interval when they checkpoint (else
    /// [`INTERVAL_WHEN_OFF`]); `origin` names the layer in errors.
    pub fn apply(self, layers: &mut ConfigLayers, origin: &str) -> Result<(), ConfigError> {
        let now = layers.build()?.checkpointing;
        let interval = now.interval.unwrap_or(INTERVAL_WHEN_OFF);
        for (key, value) in self.changes_from(CheckpointingMode::of(&now), interval) {
            layers.set_value(key, parse_loose_value(&value), origin)?;
        }
        Ok(())
    }

    /// The status line's words: `EXACTLY_ONCE aligned`, `EXACTLY_ONCE unaligned`,
    /// `AT_LEAST_ONCE`, `checkpointing off`.
    pub fn label(self) -> &'static str {
        match self {
            CheckpointingMode::Off => "checkpointing off",
            CheckpointingMode::AtLeastOnce => "AT_LEAST_ONCE",
            CheckpointingMode::ExactlyOnce(Alignment::Aligned) => "EXACTLY_ONCE aligned",
            CheckpointingMode::ExactlyOnce(Alignment::Unaligned) => "EXACTLY_ONCE unaligned",
        }
    }
}

/// The strategy a `restart-strategy.type` names (`default`: none yet, decided by checkpointing);
/// here beside [`RestartKind`] so that the option table names no type of the model.
impl RestartStrategyType {
    pub(super) fn kind(self) -> Option<RestartKind> {
        match self {
            RestartStrategyType::Default => None,
            RestartStrategyType::None => Some(RestartKind::None),
            RestartStrategyType::FixedDelay => Some(RestartKind::FixedDelay),
            RestartStrategyType::ExponentialDelay => Some(RestartKind::ExponentialDelay),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartKind {
    None,
    FixedDelay,
    ExponentialDelay,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointingConfig {
    /// `None`: checkpointing is off.
    pub interval: Option<Duration>,
    pub mode: CheckpointMode,
    pub timeout: Duration,
    pub min_pause: Duration,
    pub max_concurrent: usize,
    pub tolerable_failed: u64,
    pub storage: StorageKind,
    pub dir: PathBuf,
    pub num_retained: usize,
    pub incremental: bool,
    /// `execution.checkpointing.unaligned.enabled` (EXACTLY_ONCE only).
    pub unaligned: bool,
    /// `execution.checkpointing.aligned-checkpoint-timeout`: with unaligned enabled, a
    /// checkpoint starts aligned and switches after this long (zero: unaligned from the start).
    pub aligned_timeout: Duration,
    /// `execution.checkpointing.externalized-checkpoint-retention`: what happens to the job's
    /// checkpoints when it ends.
    pub retention: Retention,
    /// `execution.checkpointing.savepoint-dir` (Flink has no default; ckptlab's is its private
    /// directory's `savepoints/`).
    pub savepoint_dir: PathBuf,
}

/// `execution.state-recovery.*`: where the job starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryConfig {
    /// `execution.state-recovery.path` (`--restore`): a retained checkpoint or a savepoint.
    pub path: Option<PathBuf>,
    pub claim: ClaimMode,
}

impl CheckpointingConfig {
    /// The options the next checkpoint's barrier carries.
    pub fn options(&self) -> CheckpointOptions {
        let alignment = match (self.mode, self.unaligned) {
            (CheckpointMode::ExactlyOnce, true) if self.aligned_timeout.is_zero() => BarrierAlignment::Unaligned,
            (CheckpointMode::ExactlyOnce, true) => {
                BarrierAlignment::AlignedWithTimeout { timeout_ms: self.aligned_timeout.as_millis() as u64 }
            }
            (CheckpointMode::ExactlyOnce, false) | (CheckpointMode::AtLeastOnce, _) => BarrierAlignment::Aligned,
        };
        CheckpointOptions { mode: self.mode, alignment }
    }

    /// Flink's words for the mode: `EXACTLY_ONCE`, `EXACTLY_ONCE unaligned`, `AT_LEAST_ONCE`.
    pub fn mode_label(&self) -> String {
        match self.options().alignment {
            BarrierAlignment::Unaligned => format!("{} unaligned", self.mode.flink_name()),
            BarrierAlignment::AlignedWithTimeout { timeout_ms } => {
                format!("{} aligned, unaligned after {}", self.mode.flink_name(), format_duration(Duration::from_millis(timeout_ms)))
            }
            BarrierAlignment::Aligned => self.mode.flink_name().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestartConfig {
    /// `None`: Flink 2's default (none when checkpointing is off, exponential-delay when on).
    pub kind: Option<RestartKind>,
    pub fixed_attempts: u64,
    pub fixed_delay: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub multiplier: f64,
    pub reset_threshold: Duration,
    /// A restart's backoff varies by up to this share of it, either way.
    pub jitter_factor: f64,
    /// Exponential-delay restarts allowed before the backoff resets; then the job fails.
    pub attempts_before_reset: u64,
}

impl RestartConfig {
    /// The strategy in force given whether checkpointing is on, as Flink 2 picks its default.
    pub fn effective(&self, checkpointing_on: bool) -> RestartKind {
        self.kind.unwrap_or(if checkpointing_on { RestartKind::ExponentialDelay } else { RestartKind::None })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    pub name: String,
    pub parallelism: usize,
    /// `job.max-parallelism`: the number of key groups (Flink's `pipeline.max-parallelism`).
    pub max_parallelism: u16,
    pub key_by: KeyBy,
    pub sink: SinkKind,
    /// `sink.*`: read by the Kafka sink only.
    pub kafka_sink: KafkaSinkConfig,
}

/// `job.sink = kafka`'s options (Flink's KafkaSink builder and the connector's options).
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSinkConfig {
    /// `sink.delivery-guarantee` (KafkaSinkBuilder defaults to none).
    pub delivery_guarantee: DeliveryGuarantee,
    /// `sink.transactional-id-prefix`: `None` when empty (refused with exactly-once).
    pub transactional_id_prefix: Option<String>,
    /// `sink.output-topic`.
    pub output_topic: String,
    /// `sink.properties.*`, key without the prefix, in key order: given to every producer.
    pub properties: Vec<(String, String)>,
    /// `sink.properties.transaction.timeout.ms`, else KafkaSink's 1 h.
    pub transaction_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSource {
    /// A broker list, or `mock` for librdkafka's in-process mock cluster.
    pub bootstrap_servers: String,
    pub group_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// `kind = "kafka"`: where and as which group; `None`: the embedded topic.
    pub kafka: Option<KafkaSource>,
    pub partitions: u32,
    pub topic: String,
    pub offset_reset: OffsetReset,
    /// `source.embedded.dir`: the embedded topic kept as one append-only file per partition
    /// (`None`: in memory).
    pub embedded_dir: Option<PathBuf>,
    /// What the embedded topic keeps (`source.embedded.retention`).
    pub retention: EmbeddedRetention,
}

/// The network buffers of every channel, as Flink 2.3 bounds them (credit-based flow control;
/// `docs/runtime.md`, "Network buffers"). Flink 2.3 fixes the three counts in
/// NettyShuffleEnvironmentConfiguration.fromConfiguration (NettyShuffleEnvironmentConfiguration
/// .java:325 `buffersPerChannel = 2`, :326 `extraBuffersPerGate = 8`, :332
/// `maxBuffersPerChannel = 10`): the options of these names that Flink 1.x read are gone, and
/// ckptlab keeps their names and values so that they can be varied here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkBuffers {
    /// `taskmanager.memory.segment-size` (TaskManagerOptions.MEMORY_SEGMENT_SIZE, 32 KB): the
    /// bytes of one network buffer.
    pub segment_size: u64,
    /// `taskmanager.network.memory.buffers-per-channel`: exclusive buffers of each input channel.
    pub buffers_per_channel: usize,
    /// `taskmanager.network.memory.floating-buffers-per-gate`: buffers an input gate lends to
    /// whichever of its channels has a backlog.
    pub floating_buffers_per_gate: usize,
    /// `taskmanager.network.memory.max-buffers-per-channel`: buffers one subpartition of a
    /// sender may hold before the sender waits.
    pub max_buffers_per_channel: usize,
    /// `ckptlab.channel-capacity` when not 0: every channel holds that many buffers at its
    /// sender and one at its receiver instead of Flink's credits.
    pub channel_capacity: Option<usize>,
    /// Records per buffer: `ckptlab.buffer-records` when not 0, else the segment size over
    /// [`crate::types::MODELLED_RECORD_BYTES`].
    pub buffer_records: usize,
}

impl NetworkBuffers {
    pub fn new(
        segment_size: u64,
        buffers_per_channel: usize,
        floating_buffers_per_gate: usize,
        max_buffers_per_channel: usize,
        channel_capacity: usize,
        buffer_records: usize,
    ) -> Self {
        let buffer_records = match buffer_records {
            0 => (segment_size / crate::types::MODELLED_RECORD_BYTES).max(1) as usize,
            n => n,
        };
        NetworkBuffers {
            segment_size,
            buffers_per_channel,
            floating_buffers_per_gate,
            max_buffers_per_channel,
            channel_capacity: (channel_capacity > 0).then_some(channel_capacity),
            buffer_records,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabConfig {
    pub hop_delay: Duration,
    pub network: NetworkBuffers,
    pub jobmanager_max_state_size: u64,
    pub audit: bool,
    /// Records per second of the TUI's generator (`g`) when it starts.
    pub generator_rate: u64,
    pub delays: Vec<(ChannelPattern, Duration)>,
    /// `ckptlab.record-cost`: how long each record takes in the subtasks a pattern matches.
    pub record_costs: Vec<(SubtaskPattern, Duration)>,
    /// `ckptlab.storage.*`: how slow and unreliable checkpoint storage is.
    pub storage: StorageBehaviour,
}

/// Checkpoint storage as an object store behaves (`ckptlab.storage.*`, all changeable while the
/// job runs): what each request costs, how often one fails, and how many may start per second.
/// The default is a fast local disk: no latency, no failure, no limit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StorageBehaviour {
    /// `ckptlab.storage.latency`: every request's round trip.
    pub latency: Duration,
    /// `ckptlab.storage.latency-per-mb`: on top, per MB (2^20 bytes) the request carries.
    pub latency_per_mb: Duration,
    /// `ckptlab.storage.failure-rate`: the chance (0..1) a request fails with an IO error.
    pub failure_rate: f64,
    /// `ckptlab.storage.requests-per-second`: the throttling limit (`None`: unlimited).
    pub requests_per_second: Option<u32>,
}

impl StorageBehaviour {
    /// How long one request carrying `bytes` takes, throttling aside.
    pub fn request_cost(&self, bytes: u64) -> Duration {
        self.latency + self.latency_per_mb.mul_f64(bytes as f64 / (1u64 << 20) as f64)
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub checkpointing: CheckpointingConfig,
    pub recovery: RecoveryConfig,
    /// The flush timeout of partly filled buffers ([`BUFFER_TIMEOUT_DISABLED`] when
    /// `execution.buffer-timeout.enabled = false`).
    pub buffer_timeout: Duration,
    pub backend: BackendKind,
    pub restart: RestartConfig,
    pub heartbeat_timeout: Duration,
    /// Time between the JobManager's heartbeat requests (`heartbeat.interval`).
    pub heartbeat_interval: Duration,
    /// Failed heartbeat RPCs in a row that declare a task manager unreachable
    /// (`heartbeat.rpc-failure-threshold`); `None`: off (-1).
    pub heartbeat_rpc_failure_threshold: Option<u32>,
    /// How long a restart waits for slots before it fails (a failure that uses a restart attempt).
    pub slot_request_timeout: Duration,
    pub taskmanagers: usize,
    /// Task managers' local directories live below this one (`taskmanager.tmp-dirs`).
    pub tm_dir: PathBuf,
    pub slots_per_tm: usize,
    pub job: JobConfig,
    pub source: SourceConfig,
    pub lab: LabConfig,
}

impl Config {
    /// The built-in defaults.
    pub fn builtin() -> Config {
        ConfigLayers::builtin().build().expect("the shipped defaults are valid (tested)")
    }

    /// The state backend and its checkpoint storage.
    pub fn backend_pair(&self) -> (BackendKind, StorageKind) {
        (self.backend, self.checkpointing.storage)
    }

    /// The seed's name for the backend pair, shown beside Flink 2's names.
    pub fn seed_backend_name(&self) -> &'static str {
        SeedBackend::of(self.backend_pair()).class_name()
    }

    /// "hashmap + jobmanager (MemoryStateBackend)".
    pub fn backend_label(&self) -> String {
        backend_label(self.backend_pair())
    }

    /// "EXACTLY_ONCE every 5s" or "checkpointing off".
    pub fn checkpointing_label(&self) -> String {
        match self.checkpointing.interval {
            Some(i) => format!("{} every {}", self.checkpointing.mode_label(), format_duration(i)),
            None => "checkpointing off".into(),
        }
    }

    /// "print", "transactional", "discard", or "kafka exactly-once to output-topic".
    pub fn sink_label(&self) -> String {
        match self.job.sink {
            SinkKind::Print => "print".into(),
            SinkKind::Transactional => "transactional".into(),
            SinkKind::Discard => "discard".into(),
            SinkKind::Kafka => format!("kafka {} to {}", self.job.kafka_sink.delivery_guarantee, self.job.kafka_sink.output_topic),
        }
    }

    /// How long each record takes in a subtask (`ckptlab.record-cost`).
    pub fn record_cost(&self, subtask: (&str, usize)) -> Duration {
        self.lab.record_costs.iter().filter(|(p, _)| p.matches(subtask)).map(|(_, d)| *d).max().unwrap_or(Duration::ZERO)
    }

    /// The extra delay configured for a channel, on top of the hop delay.
    pub fn extra_delay(&self, from: (&str, usize), to: (&str, usize)) -> Duration {
        self.lab.delays.iter().filter(|(p, _)| p.matches(from, to)).map(|(_, d)| *d).max().unwrap_or(Duration::ZERO)
    }
}

/// A key of a pattern table that is no pattern: the text, and the patterns that table allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a {what} pattern; allowed: {allowed}")]
pub struct BadPattern {
    pub text: String,
    /// `subtask` or `channel`.
    pub what: &'static str,
    pub allowed: &'static str,
}

/// A subtask pattern such as `counter[1]` or `sink[*]` (the operators a runner drives).
#[derive(Debug, Clone, PartialEq)]
pub struct SubtaskPattern {
    pub text: String,
    operator: String,
    index: Option<usize>,
}

impl SubtaskPattern {
    pub fn parse(text: &str) -> Result<Self, BadPattern> {
        let err = || BadPattern {
            text: text.to_string(),
            what: "subtask",
            allowed: "counter[N|*] or sink[0|*], e.g. counter[1] (quoted in a TOML file: \"counter[1]\" = \"5ms\")",
        };
        let unquoted = text.trim();
        let unquoted = unquoted.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(unquoted);
        let (name, rest) = unquoted.split_once('[').ok_or_else(err)?;
        let idx = rest.strip_suffix(']').ok_or_else(err)?;
        if !["counter", "sink"].contains(&name) {
            return Err(err());
        }
        let index = if idx == "*" { None } else { Some(idx.parse().map_err(|_| err())?) };
        Ok(SubtaskPattern { text: text.to_string(), operator: name.to_string(), index })
    }

    pub fn matches(&self, (name, idx): (&str, usize)) -> bool {
        self.operator == name && self.index.is_none_or(|i| i == idx)
    }
}

/// A channel pattern such as `source[1]->counter[*]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelPattern {
    pub text: String,
    from: (String, Option<usize>),
    to: (String, Option<usize>),
}

impl ChannelPattern {
    pub fn parse(text: &str) -> Result<Self, BadPattern> {
        let err = || {
            BadPattern {
            text: text.to_string(),
            what: "channel",
            allowed: "OPERATOR[N|*]->OPERATOR[N|*] with operators source, counter, sink, e.g. source[1]->counter[*] (in a TOML file quoted: \"source[1]->counter[*]\" = \"300ms\"; with --set as is: --set ckptlab.delays.source[1]->counter[*]=300ms)",
        }
        };
        // `--set ckptlab.delays."source[1]->counter[*]"=1s` quotes it as a TOML file would.
        let unquoted = text.trim();
        let unquoted = unquoted.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(unquoted);
        let (a, b) = unquoted.split_once("->").ok_or_else(err)?;
        let side = |s: &str| -> Result<(String, Option<usize>), BadPattern> {
            let s = s.trim();
            let (name, rest) = s.split_once('[').ok_or_else(err)?;
            let idx = rest.strip_suffix(']').ok_or_else(err)?;
            if !["source", "counter", "sink", "*"].contains(&name) {
                return Err(err());
            }
            let idx = if idx == "*" { None } else { Some(idx.parse().map_err(|_| err())?) };
            Ok((name.to_string(), idx))
        };
        Ok(ChannelPattern { text: text.to_string(), from: side(a)?, to: side(b)? })
    }

    pub fn matches(&self, from: (&str, usize), to: (&str, usize)) -> bool {
        let m = |p: &(String, Option<usize>), (name, idx): (&str, usize)| (p.0 == "*" || p.0 == name) && p.1.is_none_or(|i| i == idx);
        m(&self.from, from) && m(&self.to, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_2_defaults_for_timeouts_and_the_exponential_delay_strategy() {
        let c = Config::builtin();
        assert_eq!(c.slot_request_timeout, Duration::from_secs(300), "slot.request.timeout: 300000 ms in Flink 2.3");
        let r = &c.restart;
        assert_eq!((r.initial_backoff, r.max_backoff, r.multiplier), (Duration::from_secs(1), Duration::from_secs(60), 1.5));
        assert_eq!((r.jitter_factor, r.reset_threshold, r.attempts_before_reset), (0.1, Duration::from_secs(3600), i32::MAX as u64));
        let mut l = ConfigLayers::builtin();
        l.set("restart-strategy.exponential-delay.jitter-factor=1.5", "--set").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.contains("jitter-factor") && e.contains("0.0 to 1.0"), "{e}");
        let mut l = ConfigLayers::builtin();
        l.set("restart-strategy.exponential-delay.initial-backoff=2min", "--set").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.contains("initial-backoff") && e.contains("max-backoff"), "{e}");
    }

    #[test]
    fn bad_choice_names_file_key_and_allowed_values() {
        let mut l = ConfigLayers::builtin();
        l.merge_str("[execution.checkpointing]\nmode = \"TWICE\"\n", "my.toml").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.contains("my.toml"), "{e}");
        assert!(e.contains("execution.checkpointing.mode"), "{e}");
        assert!(e.contains("EXACTLY_ONCE, AT_LEAST_ONCE"), "{e}");
    }

    #[test]
    fn parallelism_above_the_slots_is_refused_naming_both() {
        let mut l = ConfigLayers::builtin();
        l.set("job.parallelism=3", "--set").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(
            e.contains("job.parallelism") && e.contains("needs 3 slots, the cluster has 2") && e.contains("taskmanager.count = 2"),
            "{e}"
        );
        l.set("taskmanager.number-of-task-slots=2", "--set").unwrap();
        assert_eq!(l.build().unwrap().job.parallelism, 3);
    }

    #[test]
    fn bad_channel_pattern_is_explained() {
        let mut l = ConfigLayers::builtin();
        l.merge_str("[ckptlab.delays]\n\"src->counter\" = \"1s\"\n", "d.toml").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.contains("d.toml") && e.contains("source[1]->counter[*]"), "{e}");
    }

    #[test]
    fn a_pattern_matching_no_channel_or_subtask_is_refused_with_what_exists() {
        let mut l = ConfigLayers::builtin();
        l.merge_str("[ckptlab.delays]\n\"source[1]->counter[9]\" = \"50ms\"\n", "d.toml").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.starts_with("d.toml:2: ") && e.contains("matches no channel") && e.contains("source[0..1]->counter[0..1]"), "{e}");
        let mut l = ConfigLayers::builtin();
        l.set("ckptlab.record-cost.counter[2]=5ms", "--set").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.contains("matches no subtask") && e.contains("counter[0..1] and sink[0]"), "{e}");
        // Existing ones still pass, quoted or not.
        let mut l = ConfigLayers::builtin();
        l.set("ckptlab.delays.\"source[1]->counter[*]\"=50ms", "--set").unwrap();
        assert_eq!(l.build().unwrap().extra_delay(("source", 1), ("counter", 0)), Duration::from_millis(50));
    }

    #[test]
    fn checkpoint_dir_accepts_file_uri_and_rejects_hdfs() {
        assert_eq!(checkpoint_dir("file:///tmp/x").unwrap(), PathBuf::from("/tmp/x"));
        assert_eq!(checkpoint_dir("hdfs://nn:40010/flink").unwrap_err(), BadPath::Scheme("hdfs".into()));
        let mut l = ConfigLayers::builtin();
        l.set("execution.checkpointing.dir=hdfs://nn:40010/flink", "--set").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.contains("execution.checkpointing.dir") && e.contains("a local path or a file:// URI"), "{e}");
    }

    #[test]
    fn a_checkpointing_mode_is_one_value_and_changes_only_what_differs() {
        let on = Duration::from_millis(500);
        let aligned = CheckpointingMode::ExactlyOnce(Alignment::Aligned);
        let unaligned = CheckpointingMode::ExactlyOnce(Alignment::Unaligned);
        assert_eq!(unaligned.changes_from(aligned, on), [("execution.checkpointing.unaligned.enabled", "true".to_string())]);
        // Unaligned goes off before AT_LEAST_ONCE comes (the engine refuses them together).
        assert_eq!(
            CheckpointingMode::AtLeastOnce.changes_from(unaligned, on),
            [
                ("execution.checkpointing.unaligned.enabled", "false".to_string()),
                ("execution.checkpointing.mode", "AT_LEAST_ONCE".to_string())
            ]
        );
        assert_eq!(CheckpointingMode::Off.changes_from(aligned, on), [("execution.checkpointing.interval", "off".to_string())]);
        for mode in [CheckpointingMode::Off, CheckpointingMode::AtLeastOnce, aligned, unaligned] {
            for from in [CheckpointingMode::Off, CheckpointingMode::AtLeastOnce, aligned, unaligned] {
                let mut l = ConfigLayers::builtin();
                from.apply(&mut l, "from").unwrap();
                mode.apply(&mut l, "to").unwrap();
                assert_eq!(CheckpointingMode::of(&l.build().unwrap().checkpointing), mode, "{from:?} -> {mode:?}");
            }
        }
    }
}

#[cfg(test)]
mod kafka_sink_tests {
    use crate::config::{ConfigLayers, DeliveryGuarantee, SinkKind};
    use std::time::Duration;

    fn kafka(pairs: &[&str]) -> Result<crate::config::Config, crate::config::ConfigError> {
        let mut l = ConfigLayers::builtin();
        l.set("job.sink=kafka", "--set").unwrap();
        for p in pairs {
            l.set(p, "--set").unwrap();
        }
        l.build()
    }

    /// Catches: a Kafka sink whose defaults are not KafkaSink's (none, 1 h, output-topic).
    #[test]
    fn the_kafka_sinks_defaults_are_flinks() {
        let c = kafka(&[]).unwrap();
        assert_eq!(c.job.sink, SinkKind::Kafka);
        let k = &c.job.kafka_sink;
        assert_eq!((k.delivery_guarantee, k.transaction_timeout, k.output_topic.as_str()), (DeliveryGuarantee::None, Duration::from_secs(3600), "output-topic"));
        assert_eq!(k.transactional_id_prefix, None);
    }

    /// Catches: exactly-once accepted without a prefix (Flink refuses to build the sink).
    #[test]
    fn exactly_once_without_a_prefix_names_the_key_and_flinks_reason() {
        let e = kafka(&["sink.delivery-guarantee=exactly-once", "sink.properties.transaction.timeout.ms=600000"]).unwrap_err().to_string();
        assert!(e.contains("`sink.transactional-id-prefix`") && e.contains("EXACTLY_ONCE delivery guarantee requires a transactionalIdPrefix"), "{e}");
    }

    /// Catches: KafkaSink's 1 h default let through against the embedded broker's 15 min maximum,
    /// or refused with other words than Kafka's.
    #[test]
    fn the_default_transaction_timeout_is_refused_by_the_embedded_broker_with_kafkas_message() {
        let e = kafka(&["sink.delivery-guarantee=exactly-once", "sink.transactional-id-prefix=p"]).unwrap_err().to_string();
        assert!(e.contains("sink.properties.transaction.timeout.ms"), "{e}");
        assert!(e.contains("The transaction timeout is larger than the maximum value allowed by the broker (as configured by transaction.max.timeout.ms)."), "{e}");
        let ok = kafka(&["sink.delivery-guarantee=exactly-once", "sink.transactional-id-prefix=p", "sink.properties.transaction.timeout.ms=900000"]);
        assert_eq!(ok.unwrap().job.kafka_sink.transaction_timeout, Duration::from_secs(900), "15 min is allowed (<=)");
        // A Kafka cluster answers for itself (librdkafka's mock accepts 1 h).
        let on_kafka = kafka(&["sink.delivery-guarantee=exactly-once", "sink.transactional-id-prefix=p", "source.kind=kafka", "source.bootstrap-servers=mock"]);
        assert!(on_kafka.is_ok(), "{on_kafka:?}");
    }

    /// Catches: producer properties dropped, or a bad timeout crashing instead of naming its key.
    #[test]
    fn producer_properties_pass_through_and_a_bad_timeout_names_its_key() {
        let c = kafka(&["sink.properties.linger.ms=20", "sink.properties.transaction.timeout.ms=60000"]).unwrap();
        assert_eq!(c.job.kafka_sink.properties, [("linger.ms".to_string(), "20".to_string()), ("transaction.timeout.ms".into(), "60000".into())]);
        let e = kafka(&["sink.properties.transaction.timeout.ms=soon"]).unwrap_err().to_string();
        assert!(e.contains("`sink.properties.transaction.timeout.ms` = \"soon\"") && e.contains("milliseconds"), "{e}");
        let e = kafka(&["sink.delivery-guarantee=twice"]).unwrap_err().to_string();
        assert!(e.contains("allowed values: none, at-least-once, exactly-once"), "{e}");
    }
}
