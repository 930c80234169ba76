//! Why a run failed, typed: the step's line, what kind of failure, and the sentence a user reads.
//! `ckptlab run --json` prints these fields, so a tool reads the line and the kind without
//! parsing the sentence; the text (`line 13: expected state = 4, got 3`) is its `Display`.

use serde::{Deserialize, Serialize};
use strum::{IntoStaticStr, VariantNames};

/// One failure of a run: an `expect` that did not hold, a refused command, a timed-out await ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The line of the step that failed in the scenario file; none for what the run as a whole
    /// reports (the job never ran, the state was not restored, the verdict is inconsistent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub kind: FailureKind,
    /// What went wrong, in a sentence (without the `line N:` prefix).
    pub message: String,
}

/// What kind of failure (the JSON's `kind`: the serde name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, VariantNames)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum FailureKind {
    /// An `expect` figure did not hold (`expected state = 4, got 3`).
    Expectation,
    /// An `expect` of a verdict figure while the auditor is off (`ckptlab.audit = false`).
    AuditorOff,
    /// The operator's state differs from the auditor's record: the figures cannot be trusted.
    InconsistentVerdict,
    /// An `await` did not reach its condition within its timeout.
    AwaitTimeout,
    /// The job did not start running at the beginning of the run.
    NotRunning,
    /// The engine refused a step's command (a TM that is not there, a rejected `set` ...).
    Refused,
    /// A `produce` step's record could not be written to the topic.
    Produce,
    /// A `savepoint` or `stop-with-savepoint` step did not complete.
    Savepoint,
    /// The job's state could not be restored from the snapshot it started from.
    NotRestored,
}

impl Failure {
    /// A failure of the step at `line`.
    pub fn at(line: usize, kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure { line: Some(line), kind, message: message.into() }
    }

    /// A failure of the run as a whole.
    pub fn of_run(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure { line: None, kind, message: message.into() }
    }

    /// Whether the text a user reads contains `pattern`.
    pub fn contains(&self, pattern: &str) -> bool {
        self.to_string().contains(pattern)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_failure_reads_with_its_line_and_serializes_line_and_kind_apart() {
        let f = Failure::at(13, FailureKind::Expectation, "expected state = 4, got 3");
        assert_eq!(f.to_string(), "line 13: expected state = 4, got 3");
        let j = serde_json::to_value(&f).unwrap();
        assert_eq!(j, serde_json::json!({"line": 13, "kind": "expectation", "message": "expected state = 4, got 3"}));
        assert_eq!(serde_json::from_value::<Failure>(j).unwrap(), f);
    }

    #[test]
    fn a_run_failure_has_no_line() {
        let f = Failure::of_run(FailureKind::NotRestored, "not restored: gone");
        assert_eq!(f.to_string(), "not restored: gone");
        assert!(serde_json::to_value(&f).unwrap().get("line").is_none());
    }
}
