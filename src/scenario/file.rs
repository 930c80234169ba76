//! A scenario file: reading and checking it (the steps, `[config]`, `[compare]`), with errors
//! that name the file and the line.

use super::*;

/// A bad scenario file: names the file and the line (0: the file as a whole, e.g. unreadable).
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.message),
            line => write!(f, "{}:{line}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ScenarioError {}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub file: String,
    pub name: String,
    pub description: String,
    pub config: Option<toml::Table>,
    pub steps: Vec<Step>,
    /// `[compare] modes = [...]`: every step runs on one cluster per mode (see [`crate::compare`]).
    pub compare: Option<Vec<crate::compare::SideMode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    config: Option<toml::Table>,
    #[serde(default)]
    steps: Vec<toml::Spanned<toml::Table>>,
    compare: Option<toml::Spanned<RawCompare>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompare {
    modes: Vec<String>,
}

impl Scenario {
    /// Reads a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Scenario::parse(&text, &file)
    }

    /// Parses scenario text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| ScenarioError {
            file: file.to_string(),
            line: e.span().map_or(0, |s| line_of(text, s.start)),
            message: e.message().to_string(),
        })?;
        let compare = match &raw.compare {
            Some(c) => Some(crate::compare::parse_modes(&c.get_ref().modes).map_err(|e| ScenarioError {
                file: file.to_string(),
                line: line_of(text, c.span().start),
                message: format!("[compare] modes: {e}"),
            })?),
            None => None,
        };
        let mut steps = Vec::new();
        for spanned in &raw.steps {
            let line = line_of(text, spanned.span().start);
            let err = |e: StepError| ScenarioError { file: file.to_string(), line, message: e.to_string() };
            // A bad `format` is told at its own line.
            let format_err = |e: StepError| match e {
                StepError::SavepointFormat { .. } => ScenarioError { file: file.to_string(), line: key_line(text, line, "format"), message: e.to_string() },
                other => err(other),
            };
            let mut step = parse_step(spanned.get_ref(), line).map_err(format_err)?;
            step.partition_line = partition_line(text, line);
            if let Action::Expect { side: Some(side), .. } = &mut step.action {
                *side = compared_side(side, compare.as_deref()).map_err(err)?;
            }
            steps.push(step);
        }
        if let Some(cfg) = &raw.config {
            // Validate keys now so a typo is reported with the file before anything runs, at the
            // line of the bad key (the file named once).
            let located = |e: ConfigError| ScenarioError {
                file: file.to_string(),
                line: e.key().and_then(|k| line_of_key(text, &format!("config.{k}"))).unwrap_or_else(|| config_line(text)),
                message: e.detail(),
            };
            let mut probe = ConfigLayers::builtin();
            probe.merge_table(cfg, "[config]").map_err(located)?;
            probe.build().map_err(located)?;
        }
        Ok(Scenario { file: file.to_string(), name: raw.name, description: raw.description, config: raw.config, steps, compare })
    }

    /// Checks the steps against the cluster they will run on: every task manager a `kill` names
    /// exists by then (from `taskmanager.count` or an earlier `start`), every partition a step
    /// names exists. The error names the step's line.
    pub fn check(&self, cfg: &Config) -> Result<(), ScenarioError> {
        let err = |line: usize, message: String| ScenarioError { file: self.file.clone(), line, message };
        let mut tms: Vec<usize> = (1..=cfg.taskmanagers).collect();
        let partitions = cfg.source.partitions;
        for step in &self.steps {
            let partition = match &step.action {
                Action::Produce { partition, .. } => *partition,
                Action::Generate(spec) => spec.partition,
                Action::Kill(_)
                | Action::KillBeforeCommit(_)
                | Action::Hang(_)
                | Action::Start(_)
                | Action::Checkpoint
                | Action::Set(_)
                | Action::Wait(_)
                | Action::Await { .. }
                | Action::Expect { .. }
                | Action::Resubmit
                | Action::StopGenerators
                | Action::SwitchBackend(_)
                | Action::Savepoint { .. } => None,
            };
            if let Some(p) = partition.filter(|p| *p >= partitions) {
                let numbered = match partitions {
                    1 => "only partition 0".to_string(),
                    2 => "partitions 0 and 1".to_string(),
                    n => format!("partitions 0 to {}", n - 1),
                };
                return Err(err(
                    step.partition_line,
                    format!("partition {p} does not exist: the topic has {numbered} (source.partitions = {partitions})"),
                ));
            }
            match &step.action {
                Action::Kill(name) | Action::KillBeforeCommit(name) | Action::Hang(name) => {
                    let verb = if matches!(step.action, Action::Hang(_)) { "hang" } else { "kill" };
                    let n = taskmanager::parse_name(name).map_err(|e| err(step.line, e.to_string()))?;
                    if !tms.contains(&n) {
                        let known = tms.iter().map(|n| taskmanager::name(*n)).collect::<Vec<_>>().join(", ");
                        return Err(err(
                            step.line,
                            format!(
                                "{verb}: no task manager {name} here; the cluster has {known} (taskmanager.count = {}, plus those started by earlier steps)",
                                cfg.taskmanagers
                            ),
                        ));
                    }
                }
                Action::Start(Some(name)) => {
                    let n = taskmanager::parse_name(name).map_err(|e| err(step.line, e.to_string()))?;
                    if !tms.contains(&n) {
                        tms.push(n);
                    }
                }
                Action::Start(None) => {
                    let next = (1..).find(|n| !tms.contains(n)).unwrap_or(1);
                    tms.push(next);
                }
                Action::Produce { .. }
                | Action::Generate(_)
                | Action::Checkpoint
                | Action::Set(_)
                | Action::Wait(_)
                | Action::Await { .. }
                | Action::Expect { .. }
                | Action::Resubmit
                | Action::StopGenerators
                | Action::SwitchBackend(_)
                | Action::Savepoint { .. } => {}
            }
        }
        Ok(())
    }

    /// Puts the scenario's `[config]` on top of `layers`.
    pub fn apply_config(&self, layers: &mut ConfigLayers) -> Result<(), ConfigError> {
        match &self.config {
            Some(cfg) => layers.merge_table(cfg, &format!("{} [config]", self.file)),
            None => Ok(()),
        }
    }
}

/// An expect's `side`, as the mode's name: a mode of `[compare]` (any case) or a side's position
/// (`left`, `middle`, `right`).
fn compared_side(side: &str, modes: Option<&[crate::compare::SideMode]>) -> Result<String, StepError> {
    let Some(modes) = modes else {
        return Err(StepError::SideWithoutCompare { side: side.to_string() });
    };
    let by_position = crate::compare::side_names(modes.len()).iter().position(|n| n.eq_ignore_ascii_case(side)).map(|i| modes[i]);
    let by_mode = crate::compare::SideMode::parse(side).ok().filter(|m| modes.contains(m));
    match by_mode.or(by_position) {
        Some(m) => Ok(m.name().to_string()),
        None => Err(StepError::UnknownSide { side: side.to_string(), allowed: modes.iter().map(|m| m.name()).collect() }),
    }
}

/// The line of a step's `partition` (its own key, or inside `generate = { .. }`), else the step's.
fn partition_line(text: &str, step_line: usize) -> usize {
    let mut lines = text.lines().enumerate().skip(step_line);
    lines
        .by_ref()
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            let l = l.trim_start();
            l.starts_with("partition") || (l.starts_with("generate") && l.contains("partition"))
        })
        .map_or(step_line, |(i, _)| i + 1)
}

/// The line of a step's own `key`, else the step's.
fn key_line(text: &str, step_line: usize, key: &str) -> usize {
    text.lines()
        .enumerate()
        .skip(step_line)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')))
        .map_or(step_line, |(i, _)| i + 1)
}

fn config_line(text: &str) -> usize {
    text.lines().position(|l| l.trim_start().starts_with("[config")).map_or(0, |i| i + 1)
}
