//! What an `expect` step judges: the figures it names and the comparisons they must hold.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// `0`, `"> 0"`, `">= 2"`, `"!= 0"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    pub op: Op,
    pub value: i64,
}

impl Comparison {
    pub(super) fn parse(v: &toml::Value) -> Result<Self, StepError> {
        match v {
            toml::Value::Integer(i) => Ok(Comparison { op: Op::Eq, value: *i }),
            toml::Value::String(s) => {
                let s = s.trim();
                let (op, rest) =
                    [("<=", Op::Le), (">=", Op::Ge), ("!=", Op::Ne), ("==", Op::Eq), ("<", Op::Lt), (">", Op::Gt), ("=", Op::Eq)]
                        .iter()
                        .find_map(|(p, op)| s.strip_prefix(p).map(|r| (*op, r)))
                        .unwrap_or((Op::Eq, s));
                let value = rest.trim().parse().map_err(|_| StepError::NotAComparison { text: s.to_string() })?;
                Ok(Comparison { op, value })
            }
            other => Err(StepError::ComparisonType { value: other.clone() }),
        }
    }

    pub fn holds(&self, actual: i64) -> bool {
        match self.op {
            Op::Eq => actual == self.value,
            Op::Ne => actual != self.value,
            Op::Lt => actual < self.value,
            Op::Le => actual <= self.value,
            Op::Gt => actual > self.value,
            Op::Ge => actual >= self.value,
        }
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        };
        write!(f, "{op} {}", self.value)
    }
}

/// A figure an `expect` can check, by its name in the file (`lost`, `checkpoints_completed`). A
/// new figure is a variant here: the compiler then points at what reads it ([`figure`],
/// [`Figure::from_verdict`], [`Figure::of_key`], and the Flink bridge's `flink_figure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantNames, strum::EnumIter, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum Figure {
    Produced,
    Expected,
    State,
    Lost,
    Overcounted,
    RepeatedOutput,
    InFlight,
    Restarts,
    CheckpointsCompleted,
    CheckpointsFailed,
    LastCheckpointMs,
    LastAlignmentMs,
    /// The newest completed checkpoint's start delay: its slowest barrier's time from the
    /// trigger to its subtask (Flink's `start_delay`, the largest of its subtasks').
    LastStartDelayMs,
    /// The newest completed checkpoint's asynchronous part (its slowest subtask's upload).
    LastAsyncMs,
    LastPersistedBytes,
    /// The Kafka sink's output topic at read_committed: lines that should be there and are not
    /// (per key too; -1 without `job.sink = kafka`).
    CommittedOutputGaps,
    /// ... lines beyond the exactly-once set at read_committed.
    CommittedRepeatedOutput,
    /// ... lines beyond the exactly-once set at read_uncommitted (aborted attempts' lines too).
    UncommittedRepeatedOutput,
    /// ... gaps at read_committed that are the lines of a transaction the broker aborted on its
    /// timeout.
    OutputLostByTimeout,
}

/// Figures an `expect` can check, by name.
pub const FIGURES: &[&str] = Figure::VARIANTS;

impl Figure {
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Whether it exists per key (`expect = { key = "a", state = 3 }`).
    pub fn per_key(self) -> bool {
        self.of_key(&KeyVerdict::default()).is_some() || self.is_output()
    }

    /// Whether it judges the Kafka sink's output topic ([`crate::connectors::kafka_sink::verdict`]).
    pub fn is_output(self) -> bool {
        self.of_output(&crate::connectors::kafka_sink::verdict::OutputVerdict::default(), None).is_some()
    }

    /// Its value from the output topic's verdict, for `key` or in total; `None`: not an output figure.
    pub fn of_output(self, o: &crate::connectors::kafka_sink::verdict::OutputVerdict, key: Option<&str>) -> Option<u64> {
        use crate::connectors::kafka_sink::verdict::{IsolationVerdict, KeyOutputVerdict};
        let pick = |v: &IsolationVerdict, f: fn(&KeyOutputVerdict) -> u64, total: u64| match key {
            Some(k) => v.keys.get(k).map_or(0, f),
            None => total,
        };
        let (rc, ru) = (&o.read_committed, &o.read_uncommitted);
        match self {
            Figure::CommittedOutputGaps => Some(pick(rc, |k| k.gaps, rc.gaps)),
            Figure::CommittedRepeatedOutput => Some(pick(rc, |k| k.repeated, rc.repeated)),
            Figure::UncommittedRepeatedOutput => Some(pick(ru, |k| k.repeated, ru.repeated)),
            Figure::OutputLostByTimeout => Some(pick(rc, |k| k.lost_by_timeout, rc.lost_by_timeout)),
            Figure::Produced
            | Figure::Expected
            | Figure::State
            | Figure::Lost
            | Figure::Overcounted
            | Figure::RepeatedOutput
            | Figure::InFlight
            | Figure::Restarts
            | Figure::CheckpointsCompleted
            | Figure::CheckpointsFailed
            | Figure::LastCheckpointMs
            | Figure::LastAlignmentMs
            | Figure::LastStartDelayMs
            | Figure::LastAsyncMs
            | Figure::LastPersistedBytes => None,
        }
    }

    /// Its value for one key; `None`: a figure of the whole job only.
    pub fn of_key(self, kv: &KeyVerdict) -> Option<u64> {
        match self {
            Figure::Expected => Some(kv.expected),
            Figure::State => Some(kv.state),
            Figure::Lost => Some(kv.lost),
            Figure::Overcounted => Some(kv.overcounted),
            Figure::Produced
            | Figure::RepeatedOutput
            | Figure::InFlight
            | Figure::Restarts
            | Figure::CheckpointsCompleted
            | Figure::CheckpointsFailed
            | Figure::LastCheckpointMs
            | Figure::LastAlignmentMs
            | Figure::LastStartDelayMs
            | Figure::LastAsyncMs
            | Figure::LastPersistedBytes
            | Figure::CommittedOutputGaps
            | Figure::CommittedRepeatedOutput
            | Figure::UncommittedRepeatedOutput
            | Figure::OutputLostByTimeout => None,
        }
    }

    /// Whether the auditor makes it (every per-key figure, and the verdict's totals); the others
    /// (restarts, checkpoints) come from the engine itself.
    pub(super) fn from_verdict(self, key: Option<&str>) -> bool {
        key.is_some()
            || match self {
                Figure::Produced
                | Figure::Expected
                | Figure::State
                | Figure::Lost
                | Figure::Overcounted
                | Figure::RepeatedOutput
                | Figure::InFlight
                | Figure::CommittedOutputGaps
                | Figure::CommittedRepeatedOutput
                | Figure::UncommittedRepeatedOutput
                | Figure::OutputLostByTimeout => true,
                Figure::Restarts
                | Figure::CheckpointsCompleted
                | Figure::CheckpointsFailed
                | Figure::LastCheckpointMs
                | Figure::LastAlignmentMs
                | Figure::LastStartDelayMs
                | Figure::LastAsyncMs
                | Figure::LastPersistedBytes => false,
            }
    }
}

/// A figure's value now: for `key`, when the figure exists per key (parsing refuses the others).
/// `output`: the Kafka sink's output verdict (`None` without `job.sink = kafka`, where the output
/// figures are -1).
pub(super) fn figure(
    name: Figure,
    v: &Verdict,
    key: Option<&str>,
    restarts: u64,
    ck: &CheckpointSummary,
    output: Option<&crate::connectors::kafka_sink::verdict::OutputVerdict>,
) -> i64 {
    if let Some(per_key) = key.and_then(|k| name.of_key(&v.keys.get(k).cloned().unwrap_or_default())) {
        return per_key as i64;
    }
    // The newest completed checkpoint (-1 when none completed).
    let last = || ck.history.iter().rev().find(|c| c.failure.is_none());
    match name {
        Figure::Produced => v.produced as i64,
        Figure::Expected => v.expected as i64,
        Figure::State => v.state as i64,
        Figure::Lost => v.lost as i64,
        Figure::Overcounted => v.overcounted as i64,
        Figure::RepeatedOutput => v.repeated_output as i64,
        Figure::InFlight => v.in_flight,
        Figure::Restarts => restarts as i64,
        Figure::CheckpointsCompleted => ck.completed as i64,
        Figure::CheckpointsFailed => ck.failed as i64,
        Figure::LastCheckpointMs => last().map_or(-1, |c| c.duration_ms as i64),
        Figure::LastAlignmentMs => last().map_or(-1, |c| c.alignment_ms as i64),
        Figure::LastStartDelayMs => last().map_or(-1, |c| c.start_delay_ms as i64),
        Figure::LastAsyncMs => last().map_or(-1, |c| c.async_ms as i64),
        Figure::LastPersistedBytes => last().map_or(-1, |c| c.persisted_size as i64),
        Figure::CommittedOutputGaps | Figure::CommittedRepeatedOutput | Figure::UncommittedRepeatedOutput | Figure::OutputLostByTimeout => {
            output.and_then(|o| name.of_output(o, key)).map_or(-1, |n| n as i64)
        }
    }
}
