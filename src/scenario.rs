//! Scenarios: a TOML file of timed steps (produce, kill, start, checkpoint, set, wait, await,
//! expect) run headless against the engine, judged by the auditor.
//!
//! ```toml
//! name = "exactly-once"
//! description = "kill a task manager, produce while it is down, start it again"
//! [config.execution.checkpointing]
//! interval = "1s"
//! [[steps]]
//! produce = ["a", "b", "c"]
//! [[steps]]
//! kill = "tm-1"
//! [[steps]]
//! await = "caught-up"
//! [[steps]]
//! expect = { lost = 0, overcounted = 0 }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strum::{EnumString, IntoEnumIterator, IntoStaticStr, VariantNames};
use tokio::time::Instant;

use crate::audit::{KeyVerdict, Verdict};
use crate::cluster::taskmanager;
use crate::cluster::view::JobStatus;
use crate::cluster::{Command, Engine, Refusable};
use crate::config::{changes_at_runtime, line_of, line_of_key, Config, ConfigError, ConfigLayers};
use crate::connectors::generator::{GeneratorSpec, MAX_GENERATOR_RATE};
use crate::duration::{format_duration, parse_duration, MAX_DURATION};
use crate::events::Event;

/// An await with no `timeout` gives up after this long.
pub const DEFAULT_AWAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Partitions a topic can have (`source.partitions` allows 1 to 64).
const MAX_PARTITIONS: u32 = 64;
/// How often an await looks at the engine.
const POLL: Duration = Duration::from_millis(5);

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, EnumString, IntoStaticStr, VariantNames)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum AwaitCondition {
    CheckpointCompleted,
    Running,
    CaughtUp,
    Failed,
    /// The job was stopped with a savepoint.
    Finished,
}

impl AwaitCondition {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

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
    fn parse(v: &toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Integer(i) => Ok(Comparison { op: Op::Eq, value: *i }),
            toml::Value::String(s) => {
                let s = s.trim();
                let (op, rest) =
                    [("<=", Op::Le), (">=", Op::Ge), ("!=", Op::Ne), ("==", Op::Eq), ("<", Op::Lt), (">", Op::Gt), ("=", Op::Eq)]
                        .iter()
                        .find_map(|(p, op)| s.strip_prefix(p).map(|r| (*op, r)))
                        .unwrap_or((Op::Eq, s));
                let value =
                    rest.trim().parse().map_err(|_| format!("`{s}` is not a comparison (examples: 0, \"> 0\", \">= 2\", \"!= 0\")"))?;
                Ok(Comparison { op, value })
            }
            other => Err(format!("{other} is not a comparison (examples: 0, \"> 0\", \">= 2\")")),
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
    fn from_verdict(self, key: Option<&str>) -> bool {
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

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Produce {
        values: Vec<String>,
        partition: Option<u32>,
    },
    Generate(GeneratorSpec),
    Kill(String),
    Start(Option<String>),
    Checkpoint,
    Set(Vec<(String, String)>),
    Wait(Duration),
    Await {
        condition: AwaitCondition,
        timeout: Duration,
    },
    Expect {
        key: Option<String>,
        checks: Vec<(Figure, Comparison)>,
        /// In a comparison: the side (its mode's name) it judges; `None`: every side.
        side: Option<String>,
    },
    Resubmit,
    /// Stop the generators this run started (a lesson generates until the learner has done the
    /// kill, however long that takes, then stops them so the job can catch up).
    StopGenerators,
    /// Switch the state backend by the seed's name (memory, fs, rocksdb), as `b` does: the job
    /// restarts from its latest checkpoint, read into the new backend.
    SwitchBackend(String),
    /// Take a savepoint and wait for it (`stop`: stop-with-savepoint, the job ends FINISHED).
    Savepoint {
        stop: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub line: usize,
    /// The line of its `partition` key (the step's line when it has none).
    pub partition_line: usize,
    pub action: Action,
    pub note: Option<String>,
}

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

/// A step's action, by its key in the file (`produce = [..]`, `stop-with-savepoint = true`). A
/// new step is a variant here: the compiler then points at [`parse_step`]'s match (and at
/// [`Action`]'s, once the step has its action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumString, IntoStaticStr, VariantNames)]
#[strum(serialize_all = "kebab-case")]
enum StepKind {
    Produce,
    Generate,
    Kill,
    Start,
    Checkpoint,
    Savepoint,
    StopWithSavepoint,
    Set,
    Wait,
    Await,
    Expect,
    Resubmit,
    SwitchBackend,
    StopGenerators,
}

impl StepKind {
    /// The keys allowed beside the action (and `note`).
    fn modifiers(self) -> &'static [&'static str] {
        match self {
            StepKind::Produce => &["partition"],
            StepKind::Await => &["timeout"],
            StepKind::Generate
            | StepKind::Kill
            | StepKind::Start
            | StepKind::Checkpoint
            | StepKind::Savepoint
            | StepKind::StopWithSavepoint
            | StepKind::Set
            | StepKind::Wait
            | StepKind::Expect
            | StepKind::Resubmit
            | StepKind::SwitchBackend
            | StepKind::StopGenerators => &[],
        }
    }
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
            let err = |message: String| ScenarioError { file: file.to_string(), line, message };
            let mut step = parse_step(spanned.get_ref(), line).map_err(err)?;
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
                Action::Kill(name) => {
                    let n = taskmanager::parse_name(name).map_err(|e| err(step.line, e))?;
                    if !tms.contains(&n) {
                        let known = tms.iter().map(|n| taskmanager::name(*n)).collect::<Vec<_>>().join(", ");
                        return Err(err(
                            step.line,
                            format!(
                                "kill: no task manager {name} here; the cluster has {known} (taskmanager.count = {}, plus those started by earlier steps)",
                                cfg.taskmanagers
                            ),
                        ));
                    }
                }
                Action::Start(Some(name)) => {
                    let n = taskmanager::parse_name(name).map_err(|e| err(step.line, e))?;
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
fn compared_side(side: &str, modes: Option<&[crate::compare::SideMode]>) -> Result<String, String> {
    let Some(modes) = modes else {
        return Err(format!(
            "expect names side `{side}`, but only a comparison has sides: add [compare] modes = [\"EXACTLY_ONCE\", \"AT_LEAST_ONCE\"]"
        ));
    };
    let by_position = crate::compare::side_names(modes.len()).iter().position(|n| n.eq_ignore_ascii_case(side)).map(|i| modes[i]);
    let by_mode = crate::compare::SideMode::parse(side).ok().filter(|m| modes.contains(m));
    match by_mode.or(by_position) {
        Some(m) => Ok(m.name().to_string()),
        None => Err(format!(
            "expect side `{side}` is not one of the compared modes; allowed: {}",
            modes.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
        )),
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

fn config_line(text: &str) -> usize {
    text.lines().position(|l| l.trim_start().starts_with("[config")).map_or(0, |i| i + 1)
}

pub fn parse_step(t: &toml::Table, _line: usize) -> Result<Step, String> {
    let actions: Vec<StepKind> = t.keys().filter_map(|k| k.parse().ok()).collect();
    let note = match t.get("note") {
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("`note` must be a string".into()),
        None => None,
    };
    let kind = match actions.as_slice() {
        [one] => *one,
        [] => {
            let keys: Vec<String> = t.keys().filter(|k| k.as_str() != "note").map(|k| format!("`{k}`")).collect();
            let has = if keys.is_empty() { "none".to_string() } else { keys.join(", ") };
            return Err(format!("a step needs one action; this one has {has}; allowed: {}", StepKind::VARIANTS.join(", ")));
        }
        many => {
            let names: Vec<&str> = many.iter().map(|k| <&str>::from(*k)).collect();
            return Err(format!("a step has one action, this one has {}", names.join(", ")));
        }
    };
    let action_name: &'static str = kind.into();
    let modifiers = kind.modifiers();
    for k in t.keys() {
        if k != action_name && k != "note" && !modifiers.contains(&k.as_str()) {
            let allowed = if modifiers.is_empty() { "note".to_string() } else { format!("{}, note", modifiers.join(", ")) };
            return Err(format!("unknown key `{k}` in a `{action_name}` step; allowed beside it: {allowed}"));
        }
    }
    let v = &t[action_name];
    let partition = partition_value(t.get("partition"))?;
    let action = match kind {
        StepKind::Produce => {
            let values = match v {
                toml::Value::String(s) => vec![s.clone()],
                toml::Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str().map(str::to_string).ok_or_else(|| "`produce` takes strings, as in produce = [\"a\", \"b\"]".to_string())
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err("`produce` takes a list of strings, as in produce = [\"a\", \"b\"]".into()),
            };
            Action::Produce { values, partition }
        }
        StepKind::Generate => Action::Generate(parse_generate(v)?),
        StepKind::Kill => {
            let name = v.as_str().ok_or("`kill` names a task manager, as in kill = \"tm-1\"")?;
            taskmanager::parse_name(name).map_err(|e| format!("kill: {e}"))?;
            Action::Kill(name.to_string())
        }
        StepKind::Start => match v {
            toml::Value::String(s) => {
                taskmanager::parse_name(s).map_err(|e| format!("start: {e}"))?;
                Action::Start(Some(s.clone()))
            }
            toml::Value::Boolean(true) => Action::Start(None),
            _ => return Err("`start` names a task manager (start = \"tm-1\") or is true for a new one".into()),
        },
        StepKind::Checkpoint => match v {
            toml::Value::Boolean(true) => Action::Checkpoint,
            _ => return Err("write `checkpoint = true` to trigger a checkpoint now".into()),
        },
        StepKind::Savepoint => match v {
            toml::Value::Boolean(true) => Action::Savepoint { stop: false },
            _ => return Err("write `savepoint = true` to take a savepoint now (into execution.checkpointing.savepoint-dir)".into()),
        },
        StepKind::StopWithSavepoint => match v {
            toml::Value::Boolean(true) => Action::Savepoint { stop: true },
            _ => return Err("write `stop-with-savepoint = true` to take a savepoint and stop the job".into()),
        },
        StepKind::StopGenerators => match v {
            toml::Value::Boolean(true) => Action::StopGenerators,
            _ => return Err("write `stop-generators = true` to stop the generators the run started".into()),
        },
        StepKind::SwitchBackend => match v.as_str() {
            Some(b @ ("memory" | "fs" | "rocksdb")) => Action::SwitchBackend(b.to_string()),
            _ => return Err("`switch-backend` names the seed's backend: memory, fs or rocksdb".into()),
        },
        StepKind::Resubmit => match v {
            toml::Value::Boolean(true) => Action::Resubmit,
            _ => return Err("write `resubmit = true` to submit a FAILED job again".into()),
        },
        StepKind::Set => {
            let table = v.as_table().ok_or("`set` takes a table, as in set = { \"execution.checkpointing.mode\" = \"AT_LEAST_ONCE\" }")?;
            let mut pairs = Vec::new();
            let mut probe = ConfigLayers::builtin();
            for (k, val) in table {
                probe.set_value(k, val.clone(), "set").map_err(|e| e.to_string())?;
                if !changes_at_runtime(k) {
                    return Err(format!(
                        "`{k}` cannot change while the job runs (it applies when the cluster starts): put it in [config], or pass --set {k}=..."
                    ));
                }
                let text = match val {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                pairs.push((k.clone(), text));
            }
            probe.build().map_err(|e| e.to_string())?;
            Action::Set(pairs)
        }
        StepKind::Wait => Action::Wait(duration_value(v, "wait")?),
        StepKind::Await => {
            let name = v.as_str().ok_or("`await` takes a condition name")?;
            let condition: AwaitCondition =
                name.parse().map_err(|_| format!("unknown await condition `{name}`; allowed: {}", AwaitCondition::VARIANTS.join(", ")))?;
            let timeout = match t.get("timeout") {
                Some(x) => duration_value(x, "timeout")?,
                None => DEFAULT_AWAIT_TIMEOUT,
            };
            Action::Await { condition, timeout }
        }
        StepKind::Expect => {
            let table = v.as_table().ok_or("`expect` takes a table, as in expect = { lost = 0, overcounted = \"> 0\" }")?;
            let key = match table.get("key") {
                Some(toml::Value::String(k)) => Some(k.clone()),
                Some(_) => return Err("`key` in expect must be a string".into()),
                None => None,
            };
            let side = match table.get("side") {
                Some(toml::Value::String(s)) => Some(s.clone()),
                Some(_) => return Err("`side` in expect must be a mode's name, as in side = \"AT_LEAST_ONCE\"".into()),
                None => None,
            };
            let mut checks = Vec::new();
            for (figure, val) in table.iter().filter(|(k, _)| k.as_str() != "key" && k.as_str() != "side") {
                let known = figure.parse::<Figure>().ok().filter(|f| key.is_none() || f.per_key());
                let Some(known) = known else {
                    let allowed: Vec<&str> = Figure::iter().filter(|f| key.is_none() || f.per_key()).map(Figure::name).collect();
                    return Err(format!("unknown figure `{figure}` in expect; allowed: {}", allowed.join(", ")));
                };
                checks.push((known, Comparison::parse(val)?));
            }
            if checks.is_empty() {
                return Err("`expect` needs at least one figure, as in expect = { lost = 0 }".into());
            }
            Action::Expect { key, checks, side }
        }
    };
    Ok(Step { line: _line, partition_line: _line, action, note })
}

fn duration_value(v: &toml::Value, what: &str) -> Result<Duration, String> {
    match v {
        toml::Value::String(s) => parse_duration(s).map_err(|e| format!("`{what}`: {e}")),
        toml::Value::Integer(ms) if *ms >= 0 && (*ms as u128) <= MAX_DURATION.as_millis() => Ok(Duration::from_millis(*ms as u64)),
        toml::Value::Integer(ms) if *ms >= 0 => Err(format!("`{what}`: {ms} ms is longer than the longest allowed duration, 30d")),
        _ => Err(format!("`{what}` takes a duration such as \"500ms\"")),
    }
}

fn parse_generate(v: &toml::Value) -> Result<GeneratorSpec, String> {
    let t = v.as_table().ok_or("`generate` takes a table, as in generate = { rate = 200, duration = \"2s\", keys = [\"x\", \"y\"] }")?;
    for k in t.keys() {
        if !["rate", "duration", "keys", "partition"].contains(&k.as_str()) {
            return Err(format!("unknown key `{k}` in generate; allowed: rate, duration, keys, partition"));
        }
    }
    let rate = match t.get("rate") {
        Some(toml::Value::Integer(r)) if (1..=MAX_GENERATOR_RATE as i64).contains(r) => *r as u64,
        _ => return Err(format!("`generate` needs rate = records per second, from 1 to {MAX_GENERATOR_RATE}")),
    };
    let duration = match t.get("duration") {
        Some(d) => Some(duration_value(d, "duration")?),
        None => return Err("`generate` needs a duration, as in duration = \"2s\"".into()),
    };
    let keys = match t.get("keys") {
        Some(toml::Value::Array(a)) => {
            a.iter().map(|x| x.as_str().map(str::to_string).ok_or("`keys` are strings")).collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => return Err("`keys` is a list of strings".into()),
        None => vec!["x".into(), "y".into()],
    };
    let partition = partition_value(t.get("partition"))?;
    Ok(GeneratorSpec { rate, duration, keys, partition })
}

fn partition_value(v: Option<&toml::Value>) -> Result<Option<u32>, String> {
    match v {
        Some(toml::Value::Integer(p)) if (0..MAX_PARTITIONS as i64).contains(p) => Ok(Some(*p as u32)),
        Some(_) => Err(format!("`partition` must be a partition number, from 0 to {}", MAX_PARTITIONS - 1)),
        None => Ok(None),
    }
}

/// The outcome of a run, as `ckptlab run --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    pub scenario: String,
    pub description: String,
    pub passed: bool,
    pub failures: Vec<String>,
    pub verdict: Verdict,
    pub checkpoints: CheckpointSummary,
    pub restarts: u64,
    pub status: String,
    pub duration_ms: u64,
    /// Directories of the savepoints the run took.
    #[serde(default)]
    pub savepoints: Vec<String>,
    /// The job's id: its checkpoints are `<execution.checkpointing.dir>/<job_id>/chk-<n>`.
    #[serde(default)]
    pub job_id: String,
    /// The snapshot the run was started from (`--restore`), and what the verdict covers then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<crate::cluster::RestoreSummary>,
    /// Why the job's state could not be restored (a file of the checkpoint vanished or was
    /// damaged after the job started), when no attempt ran since: the verdict then reads
    /// "not restored", never `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_failure: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointSummary {
    pub triggered: u64,
    pub completed: u64,
    pub failed: u64,
    pub restored: u64,
    /// The last checkpoints, as the checkpoints pane shows them: duration, alignment, the
    /// checkpointed (delta) size and the full size, offsets, failure reason.
    pub history: Vec<crate::cluster::coordinator::CheckpointStats>,
}

/// A figure's value now: for `key`, when the figure exists per key (parsing refuses the others).
fn figure(name: Figure, v: &Verdict, key: Option<&str>, restarts: u64, ck: &CheckpointSummary) -> i64 {
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

/// Runs the steps against a started engine. `narrate` hears a line per step.
pub async fn run(scenario: &Scenario, engine: &Engine, mut narrate: impl FnMut(String)) -> RunReport {
    let mut player = Player::start(engine, &mut narrate).await;
    for step in &scenario.steps {
        if player.play(engine, step, &mut narrate).await == Flow::Stop {
            break;
        }
    }
    player.finish(engine, scenario, &mut narrate).await
}

/// Whether a run goes on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// An `await` timed out: the steps after it would test a state the run never reached.
    Stop,
}

/// Plays steps one at a time against one engine, collecting failures: `run` plays a whole
/// scenario with it; a lesson plays one step when the learner asks, and a comparison or the
/// Flink bridge interleave several engines step by step.
/// It holds no engine: every call names the one it plays on (the one it was attached to).
pub struct Player {
    started: Instant,
    failures: Vec<String>,
    // A command the engine refuses (a TM that is not there, a checkpoint that cannot be taken)
    // fails the step that gave it: a step that silently does nothing must not pass.
    refusals: Refusals,
    savepoints: Vec<String>,
    /// The generators `generate` steps started (`stop-generators` ends them).
    generators: Vec<tokio::task::JoinHandle<()>>,
}

impl Player {
    /// Waits for the job to run (as in the seed, the job is submitted and running before the
    /// first record is typed) and narrates where it was restored from.
    pub async fn start(engine: &Engine, narrate: &mut impl FnMut(String)) -> Player {
        let mut player = Player::attach(engine);
        if let Some(r) = engine.restored_from() {
            narrate(format!("   {}", r.headline()));
            narrate(format!("   verdict scope: {}", r.verdict_scope));
        }
        if !await_condition(engine, AwaitCondition::Running, DEFAULT_AWAIT_TIMEOUT).await {
            player.failures.push(format!("the job did not start running within 30s{}", why_not(&engine.view(false))));
        }
        player
    }

    /// A player on a running engine, without waiting for anything.
    pub fn attach(engine: &Engine) -> Player {
        Player {
            started: Instant::now(),
            failures: Vec::new(),
            refusals: Refusals { events: engine.events().subscribe(), issued: HashMap::new() },
            savepoints: Vec::new(),
            generators: Vec::new(),
        }
    }

    /// The failures so far (an `expect` that did not hold, a refused command, a timed-out await).
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// Collects the engine's refusals of commands given so far.
    pub fn drain(&mut self) {
        self.refusals.drain(&mut self.failures);
    }

    /// Plays one step; `narrate` hears what it did.
    pub async fn play(&mut self, engine: &Engine, step: &Step, narrate: &mut impl FnMut(String)) -> Flow {
        let failures = &mut self.failures;
        let refusals = &mut self.refusals;
        let savepoints = &mut self.savepoints;
        let started = self.started;
        refusals.drain(failures);
        for key in step.action.command_keys() {
            refusals.issued.insert(key, step.line);
        }
        if let Some(note) = &step.note {
            narrate(format!("  # {note}"));
        }
        let at = format!("[{:>6.1}s]", started.elapsed().as_secs_f64());
        match &step.action {
            Action::Produce { values, partition } => {
                for v in values {
                    if let Err(e) = engine.produce(v, *partition) {
                        failures.push(format!("line {}: produce {v:?}: {e}", step.line));
                    }
                }
                narrate(format!("{at} produce {}", values.join(" ")));
            }
            Action::Generate(spec) => {
                narrate(format!(
                    "{at} generate {} records/s for {} over {}",
                    spec.rate,
                    spec.duration.map(format_duration).unwrap_or_default(),
                    spec.keys.join(",")
                ));
                self.generators.push(engine.generate(spec.clone()));
            }
            Action::StopGenerators => {
                let running = self.generators.iter().filter(|g| !g.is_finished()).count();
                narrate(format!("{at} stop the generators ({running} running)"));
                for g in self.generators.drain(..) {
                    g.abort();
                    // Its guard has counted it out of the running generators once it is gone.
                    let _ = g.await;
                }
            }
            Action::Kill(tm) => {
                narrate(format!("{at} kill {tm}"));
                engine.command(Command::KillTaskManager(tm.clone()));
            }
            Action::Start(tm) => {
                narrate(format!("{at} start {}", tm.as_deref().unwrap_or("a new task manager")));
                engine.command(Command::StartTaskManager(tm.clone()));
            }
            Action::Checkpoint => {
                narrate(format!("{at} trigger a checkpoint"));
                engine.command(Command::TriggerCheckpoint);
            }
            Action::Resubmit => {
                narrate(format!("{at} resubmit the job"));
                engine.command(Command::Resubmit);
            }
            Action::SwitchBackend(b) => {
                narrate(format!("{at} switch the state backend to {b}"));
                engine.command(Command::SwitchBackend(b.clone()));
            }
            Action::Savepoint { stop } => {
                narrate(format!("{at} {}", if *stop { "stop with a savepoint" } else { "take a savepoint" }));
                match savepoint(engine, *stop).await {
                    Ok(path) => {
                        narrate(format!("{at} savepoint completed: {path}"));
                        savepoints.push(path);
                    }
                    Err(reason) => {
                        failures.push(format!("line {}: {}: {reason}", step.line, if *stop { "stop-with-savepoint" } else { "savepoint" }))
                    }
                }
            }
            Action::Set(pairs) => {
                for (k, v) in pairs {
                    narrate(format!("{at} set {k} = {v}"));
                    engine.command(Command::Set { key: k.clone(), value: v.clone() });
                }
            }
            Action::Wait(d) => {
                narrate(format!("{at} wait {}", format_duration(*d)));
                let until = Instant::now() + *d;
                while Instant::now() < until {
                    tokio::time::sleep_until(until.min(Instant::now() + DRAIN_EVERY)).await;
                    refusals.drain(failures);
                }
            }
            Action::Await { condition, timeout } => {
                narrate(format!("{at} await {}", condition.name()));
                let reached = await_condition(engine, *condition, *timeout).await;
                refusals.drain(failures);
                if !reached {
                    let v = engine.view(false);
                    failures.push(
                        format!(
                            "line {}: await {} timed out after {} (job {}, tasks running: {}, generators: {}, positions {:?})",
                            step.line,
                            condition.name(),
                            format_duration(*timeout),
                            v.status.label(),
                            v.all_tasks_running,
                            v.generators_running,
                            v.partitions.iter().map(|p| format!("p{}@{}/{}", p.partition, p.position, p.end)).collect::<Vec<_>>()
                        ) + &why_not(&v),
                    );
                    return Flow::Stop;
                }
            }
            Action::Expect { key, checks, .. } => {
                let auditing = engine.config().lab.audit;
                let view = engine.view(true);
                let verdict = view.verdict.clone().unwrap_or_default();
                let ck = summary(&view);
                if !verdict.consistent {
                    failures.push(format!(
                    "line {}: the verdict is inconsistent (the operator's state differs from the auditor's record of what it applied): its figures cannot be trusted",
                    step.line
                ));
                }
                let mut shown = Vec::new();
                for (name, cmp) in checks {
                    if !auditing && name.from_verdict(key.as_deref()) {
                        failures.push(format!(
                        "line {}: expect {name}: the auditor is off (ckptlab.audit = false), so there is no verdict to check; set ckptlab.audit = true",
                        step.line
                    ));
                        shown.push(format!("{name} = ? (the auditor is off) FAILED"));
                        continue;
                    }
                    let actual = figure(*name, &verdict, key.as_deref(), view.restarts, &ck);
                    let ok = cmp.holds(actual);
                    let label = match key {
                        Some(k) => format!("{name}[{k}]"),
                        None => name.to_string(),
                    };
                    shown.push(format!("{label} = {actual} (want {cmp}) {}", if ok { "ok" } else { "FAILED" }));
                    if !ok {
                        failures.push(format!("line {}: expected {label} {cmp}, got {actual}", step.line));
                    }
                }
                narrate(format!("{at} expect {}", shown.join(", ")));
            }
        }
        Flow::Continue
    }

    /// Lets the last commands be answered, then reports the run.
    pub async fn finish(mut self, engine: &Engine, scenario: &Scenario, narrate: &mut impl FnMut(String)) -> RunReport {
        let started = self.started;
        // Commands of the last steps are answered after them.
        tokio::time::sleep(SETTLE).await;
        let cfg = engine.config();
        if cfg.checkpointing.retention != crate::config::Retention::NoExternalizedCheckpoints
            && cfg.checkpointing.storage == crate::config::StorageKind::Filesystem
        {
            narrate(format!(
                "   {}: when the job ends its retained checkpoints stay in {} (ckptlab run --restore that directory resumes from the newest)",
                cfg.checkpointing.retention.flink_name(),
                cfg.checkpointing.dir.join(engine.job_id()).display()
            ));
        }
        self.drain();
        let view = engine.view(true);
        let restore_failure = engine.restore_failure();
        if let Some(reason) = &restore_failure {
            self.failures.push(format!("not restored: {reason}"));
        }
        if view.verdict.as_ref().is_some_and(|v| !v.consistent) {
            self.failures.push(
                "the verdict is inconsistent at the end of the run (the operator's state differs from the auditor's record of what it applied): its figures cannot be trusted"
                    .into(),
            );
        }
        RunReport {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            passed: self.failures.is_empty(),
            failures: self.failures,
            verdict: view.verdict.clone().unwrap_or_default(),
            checkpoints: summary(&view),
            restarts: view.restarts,
            status: view.status.label().to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
            savepoints: self.savepoints,
            job_id: engine.job_id().to_string(),
            restored_from: engine.restored_from().cloned(),
            restore_failure,
        }
    }
}

/// Why a job did not get where a step waited for it: the cause of its last failover (while it
/// is not running again) and the newest checkpoint failure, e.g. the OS error of a full disk.
fn why_not(v: &crate::cluster::view::ClusterView) -> String {
    let mut out = String::new();
    if let Some(cause) = &v.failure {
        out.push_str(&format!("; job {}: {cause}", v.status.label()));
    }
    if let Some((id, reason)) = v.checkpoint_history.iter().rev().find_map(|c| Some((c.id, c.failure.as_deref()?))) {
        // Said once: a failover for too many failed checkpoints already quotes the last reason.
        if !v.failure.as_deref().is_some_and(|f| f.contains(reason)) {
            out.push_str(&format!("; checkpoint {id} failed: {reason}"));
        }
    }
    out
}

/// Takes a savepoint and waits for its outcome (as `flink savepoint` does); a stop-with-savepoint
/// also waits for the job to be FINISHED. Returns the savepoint's directory.
async fn savepoint(engine: &Engine, stop: bool) -> Result<String, String> {
    let mut events = engine.events().subscribe();
    engine.command(Command::TriggerSavepoint { stop });
    let deadline = Instant::now() + DEFAULT_AWAIT_TIMEOUT;
    let mut mine = None;
    let mut done = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(e)) = tokio::time::timeout(left, events.recv()).await else {
            return Err(format!("no outcome within {}", format_duration(DEFAULT_AWAIT_TIMEOUT)));
        };
        match e.event {
            Event::SavepointTriggered { checkpoint, .. } if mine.is_none() => mine = Some(checkpoint),
            Event::CheckpointTriggerRefused { reason } if mine.is_none() => return Err(reason),
            Event::SavepointFailed { checkpoint, reason } if mine == Some(checkpoint) => return Err(reason),
            Event::SavepointCompleted { checkpoint, path, .. } if mine == Some(checkpoint) => {
                if !stop {
                    return Ok(path);
                }
                done = Some(path);
            }
            Event::JobFinished { .. } if done.is_some() => return Ok(done.unwrap_or_default()),
            _ => {}
        }
    }
}

/// How often a `wait` step looks for refusals (and keeps the event queue short).
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// How long the run waits after its last step for the engine to answer its last commands.
const SETTLE: Duration = Duration::from_millis(20);

/// The engine's answers to the commands steps gave: a refusal fails the step that gave it.
struct Refusals {
    events: tokio::sync::mpsc::UnboundedReceiver<crate::events::Stamped>,
    /// The line of the latest step that gave a command, by what a refusal names.
    issued: HashMap<Refused, usize>,
}

/// What a refusal names: a command, or an option's key (a refused `set`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Refused {
    Command(Refusable),
    Option(String),
}

impl Refused {
    /// The key of a [`Event::ConfigRejected`]: a command's name, else an option's key.
    fn of_key(key: String) -> Refused {
        key.parse().map(Refused::Command).unwrap_or(Refused::Option(key))
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Command(c) => write!(f, "{c}"),
            Refused::Option(key) => f.write_str(key),
        }
    }
}

impl Refusals {
    fn drain(&mut self, failures: &mut Vec<String>) {
        while let Ok(stamped) = self.events.try_recv() {
            let (what, reason) = match stamped.event {
                Event::ConfigRejected { key, reason } => (Refused::of_key(key), reason),
                Event::CheckpointTriggerRefused { reason } => (Refused::Command(Refusable::Checkpoint), format!("not triggered: {reason}")),
                Event::GeneratorStopped { reason, produced } => {
                    (Refused::Command(Refusable::Generate), format!("stopped after {produced} records: {reason}"))
                }
                _ => continue,
            };
            if let Some(line) = self.issued.get(&what) {
                failures.push(format!("line {line}: {what}: {reason}"));
            }
        }
    }
}

impl Action {
    /// What a refusal of this step's command names (see [`Refusals`]).
    fn command_keys(&self) -> Vec<Refused> {
        match self {
            Action::Kill(_) => vec![Refused::Command(Refusable::Kill)],
            Action::Start(_) => vec![Refused::Command(Refusable::Start)],
            Action::Resubmit => vec![Refused::Command(Refusable::Resubmit)],
            Action::SwitchBackend(_) => vec![Refused::Command(Refusable::Backend)],
            Action::StopGenerators => Vec::new(),
            Action::Checkpoint | Action::Savepoint { .. } => vec![Refused::Command(Refusable::Checkpoint)],
            Action::Generate(_) => vec![Refused::Command(Refusable::Generate)],
            Action::Set(pairs) => pairs.iter().map(|(k, _)| Refused::Option(k.clone())).collect(),
            Action::Produce { .. } | Action::Wait(_) | Action::Await { .. } | Action::Expect { .. } => Vec::new(),
        }
    }
}

fn summary(view: &crate::cluster::view::ClusterView) -> CheckpointSummary {
    let c = view.checkpoint_counts;
    CheckpointSummary {
        triggered: c.triggered,
        completed: c.completed,
        failed: c.failed,
        restored: c.restored,
        history: view.checkpoint_history.clone(),
    }
}

/// Waits for a condition; false on timeout.
pub async fn await_condition(engine: &Engine, condition: AwaitCondition, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let completed_before = engine.view(false).checkpoint_counts.completed;
    loop {
        let ok = match condition {
            AwaitCondition::CheckpointCompleted => engine.view(false).checkpoint_counts.completed > completed_before,
            AwaitCondition::Running => engine.all_tasks_running(),
            AwaitCondition::CaughtUp => engine.caught_up(),
            AwaitCondition::Failed => engine.status() == JobStatus::Failed,
            AwaitCondition::Finished => engine.status() == JobStatus::Finished,
        };
        if ok {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The verdict table, per key and totals, as `ckptlab run` prints it.
pub fn verdict_table(v: &Verdict) -> String {
    table(v, None)
}

/// A run's verdict table: when the job's state could not be restored, no row reads `ok`: each
/// key says "not restored", the total says why.
pub fn report_table(r: &RunReport) -> String {
    table(&r.verdict, r.restore_failure.as_deref())
}

fn table(v: &Verdict, not_restored: Option<&str>) -> String {
    use crate::table::{Column, TextTable};
    let (l, r) = (Column::left(), Column::right());
    let mut t = TextTable::new(vec![l, r, r, r, r, l]);
    t.row(["key", "expected", "state", "lost", "overcounted", "verdict"]);
    t.rule();
    let keys: BTreeMap<_, _> = v.keys.iter().collect();
    for (k, kv) in keys {
        t.row([
            k.clone(),
            kv.expected.to_string(),
            kv.state.to_string(),
            kv.lost.to_string(),
            kv.overcounted.to_string(),
            match not_restored {
                Some(_) => "not restored".to_string(),
                None => crate::audit::summary(kv.lost, kv.overcounted),
            },
        ]);
    }
    let total = match not_restored {
        Some(reason) => format!("not restored: {reason}"),
        None => v.summary(),
    };
    // One rule under the header when there is no key: the TOTAL follows it.
    if !v.keys.is_empty() {
        t.rule();
    }
    t.row(["TOTAL".into(), v.expected.to_string(), v.state.to_string(), v.lost.to_string(), v.overcounted.to_string(), total]);
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_parse() {
        let c = Comparison::parse(&toml::Value::String("> 0".into())).unwrap();
        assert!(c.holds(1) && !c.holds(0));
        let c = Comparison::parse(&toml::Value::Integer(0)).unwrap();
        assert!(c.holds(0));
        assert!(Comparison::parse(&toml::Value::String("lots".into())).is_err());
    }

    #[test]
    fn bad_step_names_its_line() {
        let text = "name = \"x\"\n[[steps]]\nproduce = [\"a\"]\n[[steps]]\nexplode = true\n";
        let e = Scenario::parse(text, "bad.toml").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.to_string().starts_with("bad.toml:4:"), "{e}");
        assert!(e.message.contains("allowed: produce"), "{e}");
    }

    #[test]
    fn bad_await_and_figure_are_explained() {
        let e = Scenario::parse("name = \"x\"\n[[steps]]\nawait = \"done\"\n", "f.toml").unwrap_err();
        assert!(e.message.contains("caught-up") && e.line == 2, "{e}");
        let e = Scenario::parse("name = \"x\"\n\n[[steps]]\nexpect = { lots = 0 }\n", "f.toml").unwrap_err();
        assert!(e.message.contains("overcounted") && e.line == 3, "{e}");
    }

    #[test]
    fn bad_config_in_scenario_names_file_and_key() {
        let e = Scenario::parse("name = \"x\"\n[config.execution.checkpointing]\nmode = \"TWICE\"\n", "c.toml").unwrap_err();
        assert!(
            e.to_string().contains("c.toml") && e.message.contains("execution.checkpointing.mode") && e.message.contains("AT_LEAST_ONCE"),
            "{e}"
        );
    }

    #[test]
    fn bad_config_points_at_the_key_and_names_the_file_once() {
        let text = "name = \"x\"\n[config.execution.checkpointing]\ninterval = \"1s\"\nmode = \"TWICE\"\n";
        let e = Scenario::parse(text, "c.toml").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert_eq!(e.to_string().matches("c.toml").count(), 1, "{e}");
        let text = "name = \"x\"\n[config.ckptlab.delays]\n\"source[1]->counter[9]\" = \"50ms\"\n";
        let e = Scenario::parse(text, "d.toml").unwrap_err();
        assert!(e.line == 3 && e.message.contains("matches no channel"), "{e}");
    }

    #[test]
    fn a_missing_partition_points_at_its_line_and_says_which_exist() {
        let text = "name = \"x\"\n\n[[steps]]\nproduce = [\"a\"]\npartition = 7\n";
        let s = Scenario::parse(text, "p.toml").unwrap();
        let e = s.check(&ConfigLayers::builtin().build().unwrap()).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("partitions 0 and 1"), "{e}");
    }

    #[test]
    fn an_unreadable_file_has_no_line_zero() {
        let e = Scenario::load(std::path::Path::new("/nonexistent/x.toml")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/x.toml: cannot read"), "{e}");
    }

    #[test]
    fn a_channel_delay_may_change_while_the_job_runs() {
        let text = "name = \"x\"\n[[steps]]\nset = { \"ckptlab.delays.source[1]->counter[*]\" = \"300ms\" }\n";
        assert!(Scenario::parse(text, "s.toml").is_ok());
    }

    #[test]
    fn a_compare_scenario_names_sides_by_mode_and_rejects_a_side_it_does_not_run() {
        let text = "name = \"x\"\n[compare]\nmodes = [\"EXACTLY_ONCE\", \"at-least-once\"]\n[[steps]]\nexpect = { side = \"right\", overcounted = \"> 0\" }\n";
        let s = Scenario::parse(text, "c.toml").unwrap();
        assert_eq!(s.compare.as_deref(), Some(&[crate::compare::SideMode::ExactlyOnce, crate::compare::SideMode::AtLeastOnce][..]));
        assert!(matches!(&s.steps[0].action, Action::Expect { side: Some(m), .. } if m == "AT_LEAST_ONCE"));
        let bad = text.replace("\"right\"", "\"off\"");
        let e = Scenario::parse(&bad, "c.toml").unwrap_err();
        assert!(e.line == 4 && e.message.contains("EXACTLY_ONCE, AT_LEAST_ONCE"), "{e}");
        let e = Scenario::parse("name = \"x\"\n[[steps]]\nexpect = { side = \"off\", lost = 0 }\n", "c.toml").unwrap_err();
        assert!(e.line == 2 && e.message.contains("[compare]"), "{e}");
        let e = Scenario::parse("name = \"x\"\n[compare]\nmodes = [\"off\"]\n", "c.toml").unwrap_err();
        assert!(e.line >= 2 && e.message.contains("two or three"), "{e}");
    }

    #[test]
    fn toml_syntax_error_names_line() {
        let e = Scenario::parse("name = \"x\"\n[[steps]]\nproduce = [\"a\"\n", "s.toml").unwrap_err();
        assert!(e.line >= 3, "{e}");
    }

    /// Catches: an allowed list read from an enum that drifts from the file's names or order (the
    /// error messages name them as they did when they were lists kept beside the enums).
    #[test]
    fn allowed_steps_figures_and_conditions_keep_their_names_and_order() {
        let steps = "produce, generate, kill, start, checkpoint, savepoint, stop-with-savepoint, set, wait, await, expect, resubmit, switch-backend, stop-generators";
        assert_eq!(StepKind::VARIANTS.join(", "), steps);
        assert_eq!(
            FIGURES.join(", "),
            "produced, expected, state, lost, overcounted, repeated_output, in_flight, restarts, checkpoints_completed, checkpoints_failed, last_checkpoint_ms, last_alignment_ms, last_persisted_bytes"
        );
        let per_key: Vec<&str> = Figure::iter().filter(|f| f.per_key()).map(Figure::name).collect();
        assert_eq!(per_key, ["expected", "state", "lost", "overcounted"]);
        assert_eq!(AwaitCondition::VARIANTS.join(", "), "checkpoint-completed, running, caught-up, failed, finished");
        let e = Scenario::parse("name = \"x\"\n[[steps]]\nexpect = { key = \"a\", restarts = 0 }\n", "f.toml").unwrap_err();
        assert!(e.message.ends_with("allowed: expected, state, lost, overcounted"), "{e}");
    }

    /// Catches: a refusal the engine names one way and the step that gave the command listens for
    /// another (a refused kill would then pass its step silently).
    #[test]
    fn a_refusal_names_the_command_a_step_listens_for() {
        for (action, command) in [
            (Action::Kill("tm-1".into()), Refusable::Kill),
            (Action::Start(None), Refusable::Start),
            (Action::Resubmit, Refusable::Resubmit),
            (Action::SwitchBackend("fs".into()), Refusable::Backend),
            (Action::Checkpoint, Refusable::Checkpoint),
        ] {
            let name: &str = command.into();
            assert_eq!(action.command_keys(), vec![Refused::of_key(name.to_string())], "{name}");
        }
        let key = "execution.checkpointing.interval";
        assert_eq!(Refused::of_key(key.into()), Refused::Option(key.into()));
        assert_eq!(Refused::of_key("kill".into()).to_string(), "kill");
    }
}
