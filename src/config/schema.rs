//! The option table: every key ckptlab knows, with Flink 2.x's name, the kind of value it holds,
//! whether a running job picks up a change, and, for a choice, the enum whose names are its values.
//!
//! Nothing here reads a file or holds a value: [`super::layers`] stores what each layer set, and
//! [`super::model`] validates the stack into a [`super::Config`] against this table.

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoStaticStr, VariantNames};

// The checkpointing mode is vocabulary every layer speaks, and a configuration choice: like the
// choice enums below it knows its option values (strum), which the schema and `build` read.
pub use crate::types::CheckpointMode;
// `sink.delivery-guarantee`'s values are Flink's DeliveryGuarantee, kept with the sink's other
// option values in `kafka_sink.rs`.
pub use super::kafka_sink::DeliveryGuarantee;

/// The kind of value an option holds, used for validation and error messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Duration,
    DurationOrOff,
    Size,
    Int { min: i64, max: i64 },
    Float,
    Bool,
    Text,
    Choice(&'static [&'static str]),
}

/// One option of the schema.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub key: &'static str,
    pub kind: Kind,
    /// Whether a running job picks up a change (from its next checkpoint or channel flush).
    pub runtime: bool,
}

/// Every option ckptlab knows. `conf/ckptlab.toml` lists each with its default (checked by a test).
pub const SCHEMA: &[OptionSpec] = &[
    OptionSpec { key: "execution.checkpointing.interval", kind: Kind::DurationOrOff, runtime: true },
    OptionSpec { key: "execution.checkpointing.mode", kind: Kind::Choice(CheckpointMode::VARIANTS), runtime: true },
    OptionSpec { key: "execution.checkpointing.timeout", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "execution.checkpointing.min-pause", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "execution.checkpointing.max-concurrent-checkpoints", kind: Kind::Int { min: 1, max: 64 }, runtime: true },
    OptionSpec { key: "execution.checkpointing.tolerable-failed-checkpoints", kind: Kind::Int { min: 0, max: 1_000_000 }, runtime: true },
    OptionSpec { key: "execution.checkpointing.storage", kind: Kind::Choice(StorageKind::VARIANTS), runtime: false },
    OptionSpec { key: "execution.checkpointing.dir", kind: Kind::Text, runtime: false },
    OptionSpec { key: "execution.checkpointing.num-retained", kind: Kind::Int { min: 1, max: 1000 }, runtime: true },
    OptionSpec { key: "execution.checkpointing.incremental", kind: Kind::Bool, runtime: false },
    OptionSpec { key: "execution.checkpointing.unaligned.enabled", kind: Kind::Bool, runtime: true },
    OptionSpec { key: "execution.checkpointing.aligned-checkpoint-timeout", kind: Kind::Duration, runtime: true },
    OptionSpec {
        key: "execution.checkpointing.externalized-checkpoint-retention",
        kind: Kind::Choice(Retention::VARIANTS),
        runtime: false,
    },
    OptionSpec { key: "execution.checkpointing.savepoint-dir", kind: Kind::Text, runtime: false },
    OptionSpec { key: "execution.state-recovery.path", kind: Kind::Text, runtime: false },
    OptionSpec { key: "execution.state-recovery.claim-mode", kind: Kind::Choice(ClaimMode::VARIANTS), runtime: false },
    OptionSpec { key: "execution.buffer-timeout.enabled", kind: Kind::Bool, runtime: true },
    OptionSpec { key: "execution.buffer-timeout.interval", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "state.backend.type", kind: Kind::Choice(BackendKind::VARIANTS), runtime: false },
    OptionSpec { key: "restart-strategy.type", kind: Kind::Choice(RestartStrategyType::VARIANTS), runtime: true },
    OptionSpec { key: "restart-strategy.fixed-delay.attempts", kind: Kind::Int { min: 0, max: i64::MAX }, runtime: true },
    OptionSpec { key: "restart-strategy.fixed-delay.delay", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "restart-strategy.exponential-delay.initial-backoff", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "restart-strategy.exponential-delay.max-backoff", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "restart-strategy.exponential-delay.backoff-multiplier", kind: Kind::Float, runtime: true },
    OptionSpec { key: "restart-strategy.exponential-delay.reset-backoff-threshold", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "restart-strategy.exponential-delay.jitter-factor", kind: Kind::Float, runtime: true },
    OptionSpec {
        key: "restart-strategy.exponential-delay.attempts-before-reset-backoff",
        kind: Kind::Int { min: 1, max: i32::MAX as i64 },
        runtime: true,
    },
    OptionSpec { key: "heartbeat.timeout", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "heartbeat.interval", kind: Kind::Duration, runtime: false },
    OptionSpec { key: "heartbeat.rpc-failure-threshold", kind: Kind::Int { min: -1, max: i32::MAX as i64 }, runtime: false },
    OptionSpec { key: "slot.request.timeout", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "taskmanager.count", kind: Kind::Int { min: 1, max: MAX_TASK_MANAGERS as i64 }, runtime: false },
    OptionSpec { key: "taskmanager.number-of-task-slots", kind: Kind::Int { min: 1, max: 64 }, runtime: false },
    OptionSpec { key: "taskmanager.tmp-dirs", kind: Kind::Text, runtime: false },
    OptionSpec { key: "taskmanager.memory.segment-size", kind: Kind::Size, runtime: false },
    OptionSpec { key: "taskmanager.network.memory.buffers-per-channel", kind: Kind::Int { min: 0, max: 1_000_000 }, runtime: false },
    OptionSpec { key: "taskmanager.network.memory.floating-buffers-per-gate", kind: Kind::Int { min: 1, max: 1_000_000 }, runtime: false },
    OptionSpec { key: "taskmanager.network.memory.max-buffers-per-channel", kind: Kind::Int { min: 1, max: 1_000_000 }, runtime: false },
    OptionSpec { key: "job.name", kind: Kind::Text, runtime: false },
    OptionSpec { key: "job.parallelism", kind: Kind::Int { min: 1, max: 64 }, runtime: false },
    OptionSpec { key: "job.max-parallelism", kind: Kind::Int { min: -1, max: 32768 }, runtime: false },
    OptionSpec { key: "job.key-by", kind: Kind::Choice(KeyBy::VARIANTS), runtime: false },
    OptionSpec { key: "job.sink", kind: Kind::Choice(SinkKind::VARIANTS), runtime: false },
    OptionSpec { key: "sink.delivery-guarantee", kind: Kind::Choice(DeliveryGuarantee::VARIANTS), runtime: false },
    OptionSpec { key: "sink.transactional-id-prefix", kind: Kind::Text, runtime: false },
    OptionSpec { key: "sink.output-topic", kind: Kind::Text, runtime: false },
    OptionSpec { key: "source.kind", kind: Kind::Choice(SourceKind::VARIANTS), runtime: false },
    OptionSpec { key: "source.bootstrap-servers", kind: Kind::Text, runtime: false },
    OptionSpec { key: "source.group-id", kind: Kind::Text, runtime: false },
    OptionSpec { key: "source.partitions", kind: Kind::Int { min: 1, max: 64 }, runtime: false },
    OptionSpec { key: "source.topic", kind: Kind::Text, runtime: false },
    OptionSpec { key: "source.embedded.dir", kind: Kind::Text, runtime: false },
    OptionSpec { key: "source.auto-offset-reset", kind: Kind::Choice(OffsetReset::VARIANTS), runtime: true },
    OptionSpec { key: "source.embedded.retention", kind: Kind::Choice(EmbeddedRetention::VARIANTS), runtime: false },
    OptionSpec { key: "ckptlab.hop-delay", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "ckptlab.channel-capacity", kind: Kind::Int { min: 0, max: 1_000_000 }, runtime: false },
    OptionSpec { key: "ckptlab.buffer-records", kind: Kind::Int { min: 0, max: 1_000_000 }, runtime: false },
    OptionSpec { key: "ckptlab.jobmanager-max-state-size", kind: Kind::Size, runtime: false },
    OptionSpec { key: "ckptlab.audit", kind: Kind::Bool, runtime: false },
    OptionSpec { key: "ckptlab.generator-rate", kind: Kind::Int { min: 1, max: 1_000_000 }, runtime: true },
    OptionSpec { key: "ckptlab.storage.latency", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "ckptlab.storage.latency-per-mb", kind: Kind::Duration, runtime: true },
    OptionSpec { key: "ckptlab.storage.failure-rate", kind: Kind::Float, runtime: true },
    OptionSpec { key: "ckptlab.storage.requests-per-second", kind: Kind::Int { min: 0, max: 1_000_000 }, runtime: true },
];

/// Old spellings still accepted, with the key Flink 2.x reads instead (Flink's `withDeprecatedKeys`).
pub const DEPRECATED_KEYS: &[(&str, &str)] = &[
    ("execution.buffer-timeout", "execution.buffer-timeout.interval"),
    // Flink 2's CheckpointingOptions.SAVEPOINT_DIRECTORY and StateRecoveryOptions keep these.
    ("state.savepoints.dir", "execution.checkpointing.savepoint-dir"),
    ("execution.savepoint.path", "execution.state-recovery.path"),
    ("execution.savepoint-restore-mode", "execution.state-recovery.claim-mode"),
];

/// The key an option is stored under: the Flink 2.x name for a deprecated spelling.
pub fn canonical_key(key: &str) -> &str {
    DEPRECATED_KEYS.iter().find(|(old, _)| *old == key).map_or(key, |(_, new)| new)
}

/// Task managers a cluster can have, counting those started later (`tm-1` .. `tm-64`).
pub const MAX_TASK_MANAGERS: usize = 64;

/// The table whose keys are channel patterns rather than option names.
pub const DELAYS_TABLE: &str = "ckptlab.delays";
/// The table whose keys are subtask patterns (`counter[1]`, `sink[*]`): time each record takes there.
pub const RECORD_COST_TABLE: &str = "ckptlab.record-cost";
/// Tables keyed by patterns, not by option names.
pub(super) const PATTERN_TABLES: &[&str] = &[DELAYS_TABLE, RECORD_COST_TABLE];
/// The Kafka sink's producer properties (the connector's `properties.*`): any Kafka producer
/// key, dotted as Kafka spells it (`sink.properties.transaction.timeout.ms`), passed through.
pub const SINK_PROPERTIES_TABLE: &str = "sink.properties";

pub(super) fn in_pattern_table(key: &str) -> bool {
    PATTERN_TABLES.iter().chain([&SINK_PROPERTIES_TABLE]).any(|t| key.strip_prefix(t).is_some_and(|rest| rest.len() > 1 && rest.starts_with('.')))
}

/// Whether an option may change while the job runs (a scenario's `set`, the workbench's keys):
/// the schema says so, or it is a channel's extra latency (`ckptlab.delays`).
pub fn changes_at_runtime(key: &str) -> bool {
    SCHEMA.iter().any(|s| s.key == key && s.runtime) || key.strip_prefix(DELAYS_TABLE).is_some_and(|rest| rest.starts_with('.'))
}

pub(super) fn key_hint(key: &str) -> String {
    let table = key.rsplit_once('.').map(|(t, _)| t).unwrap_or("");
    let siblings: Vec<&str> = SCHEMA.iter().filter(|s| s.key.rsplit_once('.').map(|(t, _)| t) == Some(table)).map(|s| s.key).collect();
    if !siblings.is_empty() {
        return format!("; known keys in [{table}]: {}", siblings.join(", "));
    }
    let mut tables: Vec<&str> = SCHEMA.iter().filter_map(|s| s.key.rsplit_once('.').map(|(t, _)| t)).collect();
    tables.extend(PATTERN_TABLES);
    tables.sort();
    tables.dedup();
    format!("; known tables: {}", tables.join(", "))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, EnumString, IntoStaticStr, VariantNames, EnumIter)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum StorageKind {
    JobManager,
    Filesystem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, EnumString, IntoStaticStr, VariantNames, EnumIter)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum BackendKind {
    HashMap,
    RocksDb,
}

/// `restart-strategy.type`: a strategy, or `default` (Flink 2 picks by whether checkpointing is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumString, VariantNames)]
#[strum(serialize_all = "kebab-case", ascii_case_insensitive)]
pub enum RestartStrategyType {
    Default,
    None,
    FixedDelay,
    ExponentialDelay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, EnumString, VariantNames)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum KeyBy {
    Record,
    Constant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, EnumString, VariantNames)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum SinkKind {
    Print,
    Transactional,
    Discard,
    /// Flink's KafkaSink (`sink.delivery-guarantee`, `sink.transactional-id-prefix`,
    /// `sink.properties.*`) writing to `sink.output-topic`: on the embedded broker, or on the
    /// Kafka cluster of `--kafka`.
    Kafka,
}

/// `source.kind`: the embedded topic or a Kafka broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumString, VariantNames)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum SourceKind {
    Embedded,
    Kafka,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, EnumString, VariantNames)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum OffsetReset {
    Latest,
    Earliest,
}

/// What the embedded topic keeps (`source.embedded.retention`); the topic reads it as
/// `connectors::topic::Retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, EnumString, VariantNames)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum EmbeddedRetention {
    /// Every record, for the whole run (Kafka with unlimited retention): `earliest` replays all.
    #[default]
    Unbounded,
    /// Records below the latest completed checkpoint's offsets (and every source's position) are
    /// released, as Kafka's retention deletes old segments; `earliest` then starts at the oldest
    /// record kept (Kafka's log start offset).
    Checkpointed,
}

/// Flink 2's `ExternalizedCheckpointRetention`: whether a job's checkpoints outlive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, EnumString, IntoStaticStr, VariantNames)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE", ascii_case_insensitive)]
pub enum Retention {
    /// Flink's default: checkpoints are deleted whenever the job ends.
    NoExternalizedCheckpoints,
    /// Kept when the job is cancelled (quit, end of `ckptlab run`) or fails.
    RetainOnCancellation,
    /// Deleted when the job is cancelled, kept when it fails.
    DeleteOnCancellation,
}

impl Retention {
    pub fn flink_name(self) -> &'static str {
        self.into()
    }

    /// Whether the checkpoints stay when the job ends in `status` (Flink's CheckpointProperties:
    /// a FINISHED job discards them under every policy).
    pub fn keeps(self, failed: bool, finished: bool) -> bool {
        match self {
            _ if finished => false,
            Retention::NoExternalizedCheckpoints => false,
            Retention::RetainOnCancellation => true,
            Retention::DeleteOnCancellation => failed,
        }
    }
}

/// Flink 2's `RecoveryClaimMode` (`execution.state-recovery.claim-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, EnumString, IntoStaticStr, VariantNames)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE", ascii_case_insensitive)]
pub enum ClaimMode {
    /// Flink's default: the restored snapshot stays the user's; nothing of the new job depends on
    /// its files (the first checkpoint is a full one) and ckptlab never deletes it.
    NoClaim,
    /// The job owns the restored checkpoint and deletes it once newer ones subsume it.
    Claim,
}

impl ClaimMode {
    pub fn flink_name(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layers::flatten;
    use crate::config::{Config, ConfigLayers, DEFAULT_CONF};

    #[test]
    fn shipped_conf_lists_every_option_and_only_known_ones() {
        let table: toml::Table = DEFAULT_CONF.parse().unwrap();
        let mut flat = Vec::new();
        flatten("", &table, &mut flat);
        for spec in SCHEMA {
            assert!(flat.iter().any(|(k, _)| k == spec.key), "conf/ckptlab.toml lacks {}", spec.key);
        }
        for (k, _) in &flat {
            assert!(in_pattern_table(k) || SCHEMA.iter().any(|s| s.key == k), "conf/ckptlab.toml has unknown {k}");
        }
        for line in DEFAULT_CONF.lines() {
            let l = line.trim();
            if !l.is_empty() && !l.starts_with('#') && !l.starts_with('[') {
                assert!(l.contains(" # "), "option without a one-line comment: {l}");
            }
        }
        Config::builtin();
    }

    #[test]
    fn every_choice_lists_its_enums_names_and_reads_each_back_in_any_case() {
        use strum::IntoEnumIterator;
        for mode in CheckpointMode::iter() {
            let mut l = ConfigLayers::builtin();
            l.set(&format!("execution.checkpointing.mode={}", mode.flink_name().to_lowercase()), "--set").unwrap();
            assert_eq!(l.build().unwrap().checkpointing.mode, mode);
        }
        let spec = SCHEMA.iter().find(|s| s.key == "restart-strategy.type").unwrap();
        assert_eq!(spec.kind, Kind::Choice(&["default", "none", "fixed-delay", "exponential-delay"]));
        let mut l = ConfigLayers::builtin();
        l.set("source.embedded.retention=sometimes", "--set").unwrap();
        let e = l.build().unwrap_err().to_string();
        assert!(e.contains("allowed values: unbounded, checkpointed"), "{e}");
    }
}
