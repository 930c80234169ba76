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
    LastPersistedBytes,
}

/// Figures an `expect` can check, by name.
pub const FIGURES: &[&str] = Figure::VARIANTS;

impl Figure {
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Whether it exists per key (`expect = { key = "a", state = 3 }`).
    pub fn per_key(self) -> bool {
        self.of_key(&KeyVerdict::default()).is_some()
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
            | Figure::LastPersistedBytes => None,
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
                | Figure::InFlight => true,
                Figure::Restarts
                | Figure::CheckpointsCompleted
                | Figure::CheckpointsFailed
                | Figure::LastCheckpointMs
                | Figure::LastAlignmentMs
                | Figure::LastPersistedBytes => false,
            }
    }
}

/// A figure's value now: for `key`, when the figure exists per key (parsing refuses the others).
pub(super) fn figure(name: Figure, v: &Verdict, key: Option<&str>, restarts: u64, ck: &CheckpointSummary) -> i64 {
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
        Figure::LastPersistedBytes => last().map_or(-1, |c| c.persisted_size as i64),
    }
}
