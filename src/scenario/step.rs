//! The step vocabulary: what each `[[steps]]` table may say, parsed into an [`Action`].

use super::*;
use crate::config::SeedBackend;
use crate::state::SavepointFormat;

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

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Produce {
        values: Vec<String>,
        partition: Option<u32>,
    },
    Generate(GeneratorSpec),
    /// Kill a task manager's process: its peers fail at once, the JobManager finds it after
    /// `heartbeat.rpc-failure-threshold` failed heartbeat RPCs.
    Kill(String),
    /// `kill = "tm-N"` with `when = "before-commit"`: waits until a checkpoint completes and kills
    /// the task manager before its tasks hear of it, so its sink dies holding a pre-committed,
    /// uncommitted transaction the checkpoint keeps (Jepsen's nemesis: the fault where it hurts).
    KillBeforeCommit(String),
    /// A task manager stops answering, its connections open: only `heartbeat.timeout` finds it.
    Hang(String),
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
    /// Switch the state backend by the seed's name (memory, fs, rocksdb), as `b` does: a
    /// stop-with-savepoint in canonical format, then the job submitted again on the new backend
    /// from it.
    SwitchBackend(SeedBackend),
    /// Take a savepoint and wait for it (`stop`: stop-with-savepoint, the job ends FINISHED), in
    /// `format` (`format = "canonical" | "native"`, Flink's `--type`; canonical by default).
    Savepoint {
        stop: bool,
        format: SavepointFormat,
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

/// Why a `[[steps]]` table is not a step (the file and line are added by [`ScenarioError`]).
/// The text is the message a scenario or lesson author reads.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// A value of the wrong shape; the text says what the key takes.
    #[error("{0}")]
    Malformed(&'static str),
    #[error("a step needs one action; this one has {}; allowed: {}", keys_text(.keys), StepKind::VARIANTS.join(", "))]
    NoAction { keys: Vec<String> },
    #[error("a step has one action, this one has {}", .actions.join(", "))]
    ManyActions { actions: Vec<&'static str> },
    #[error("unknown key `{key}` in a `{action}` step; allowed beside it: {}", beside_text(.allowed))]
    UnknownKey { key: String, action: &'static str, allowed: &'static [&'static str] },
    #[error("{action}: {source}")]
    TaskManager { action: &'static str, source: taskmanager::NotATaskManager },
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("`{key}` cannot change while the job runs (it applies when the cluster starts): put it in [config], or pass --set {key}=...")]
    NotAtRuntime { key: String },
    #[error("unknown await condition `{name}`; allowed: {}", AwaitCondition::VARIANTS.join(", "))]
    UnknownAwait { name: String },
    #[error("unknown figure `{figure}` in expect; allowed: {}", .allowed.join(", "))]
    UnknownFigure { figure: String, allowed: Vec<&'static str> },
    #[error("`{text}` is not a comparison (examples: 0, \"> 0\", \">= 2\", \"!= 0\")")]
    NotAComparison { text: String },
    #[error("{value} is not a comparison (examples: 0, \"> 0\", \">= 2\")")]
    ComparisonType { value: toml::Value },
    #[error("expect names side `{side}`, but only a comparison has sides: add [compare] modes = [\"EXACTLY_ONCE\", \"AT_LEAST_ONCE\"]")]
    SideWithoutCompare { side: String },
    #[error("expect side `{side}` is not one of the compared sides; allowed: {}", .allowed.join(", "))]
    UnknownSide { side: String, allowed: Vec<String> },
    #[error("`{what}`: {source}")]
    Duration { what: &'static str, source: crate::duration::DurationError },
    #[error("`{what}`: {ms} ms is longer than the longest allowed duration, 30d")]
    DurationTooLong { what: &'static str, ms: i64 },
    #[error("`{what}` takes a duration such as \"500ms\"")]
    NotADuration { what: &'static str },
    #[error("unknown key `{key}` in generate; allowed: {}", GENERATE_KEYS.join(", "))]
    UnknownGenerateKey { key: String },
    #[error("`generate` needs rate = records per second, from 1 to {MAX_GENERATOR_RATE}")]
    GenerateRate,
    #[error("`partition` must be a partition number, from 0 to {}", MAX_PARTITIONS - 1)]
    Partition,
    /// `format` beside `savepoint` / `stop-with-savepoint` names no savepoint format.
    #[error("`format = {value}` is not a savepoint format; allowed: {}", SavepointFormat::VARIANTS.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", "))]
    SavepointFormat { value: String },
    /// `switch-backend` names none of the seed's backends.
    #[error("`switch-backend` names the seed's backend: {}", one_of(SeedBackend::VARIANTS))]
    NotABackend,
}

/// "a, b or c".
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl StepError {
    /// Whether the error is about the keys a step table may have (no action, an unknown key):
    /// a lesson then adds its own keys to the list.
    pub fn is_about_step_keys(&self) -> bool {
        matches!(self, StepError::NoAction { .. } | StepError::UnknownKey { .. })
    }
}

fn keys_text(keys: &[String]) -> String {
    if keys.is_empty() {
        "none".to_string()
    } else {
        keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
    }
}

fn beside_text(modifiers: &[&str]) -> String {
    if modifiers.is_empty() {
        "note".to_string()
    } else {
        format!("{}, note", modifiers.join(", "))
    }
}

/// What `when` beside `kill` takes.
const KILL_WHEN: &str = "`when` beside `kill` takes \"now\" (the default) or \"before-commit\" (when the next checkpoint completes, before the task manager's sink is notified)";

/// The keys a `generate = { .. }` table may have.
const GENERATE_KEYS: &[&str] = &["rate", "duration", "keys", "partition"];

/// A step's action, by its key in the file (`produce = [..]`, `stop-with-savepoint = true`). A
/// new step is a variant here: the compiler then points at [`parse_step`]'s match (and at
/// [`Action`]'s, once the step has its action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumString, IntoStaticStr, VariantNames)]
#[strum(serialize_all = "kebab-case")]
pub(super) enum StepKind {
    Produce,
    Generate,
    Kill,
    Hang,
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
            StepKind::Kill => &["when"],
            StepKind::Savepoint | StepKind::StopWithSavepoint => &["format"],
            StepKind::Generate
            | StepKind::Hang
            | StepKind::Start
            | StepKind::Checkpoint
            | StepKind::Set
            | StepKind::Wait
            | StepKind::Expect
            | StepKind::Resubmit
            | StepKind::SwitchBackend
            | StepKind::StopGenerators => &[],
        }
    }
}

pub fn parse_step(t: &toml::Table, _line: usize) -> Result<Step, StepError> {
    let actions: Vec<StepKind> = t.keys().filter_map(|k| k.parse().ok()).collect();
    let note = match t.get("note") {
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(StepError::Malformed("`note` must be a string")),
        None => None,
    };
    let kind = match actions.as_slice() {
        [one] => *one,
        [] => {
            let keys: Vec<String> = t.keys().filter(|k| k.as_str() != "note").cloned().collect();
            return Err(StepError::NoAction { keys });
        }
        many => {
            return Err(StepError::ManyActions { actions: many.iter().map(|k| <&str>::from(*k)).collect() });
        }
    };
    let action_name: &'static str = kind.into();
    let modifiers = kind.modifiers();
    for k in t.keys() {
        if k != action_name && k != "note" && !modifiers.contains(&k.as_str()) {
            return Err(StepError::UnknownKey { key: k.clone(), action: action_name, allowed: modifiers });
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
                        x.as_str().map(str::to_string).ok_or(StepError::Malformed("`produce` takes strings, as in produce = [\"a\", \"b\"]"))
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(StepError::Malformed("`produce` takes a list of strings, as in produce = [\"a\", \"b\"]")),
            };
            Action::Produce { values, partition }
        }
        StepKind::Generate => Action::Generate(parse_generate(v)?),
        StepKind::Kill => {
            let name = v.as_str().ok_or(StepError::Malformed("`kill` names a task manager, as in kill = \"tm-1\""))?;
            taskmanager::parse_name(name).map_err(|source| StepError::TaskManager { action: "kill", source })?;
            match t.get("when").map(|w| w.as_str()) {
                None | Some(Some("now")) => Action::Kill(name.to_string()),
                Some(Some("before-commit")) => Action::KillBeforeCommit(name.to_string()),
                Some(_) => return Err(StepError::Malformed(KILL_WHEN)),
            }
        }
        StepKind::Hang => {
            let name = v.as_str().ok_or(StepError::Malformed("`hang` names a task manager, as in hang = \"tm-1\""))?;
            taskmanager::parse_name(name).map_err(|source| StepError::TaskManager { action: "hang", source })?;
            Action::Hang(name.to_string())
        }
        StepKind::Start => match v {
            toml::Value::String(s) => {
                taskmanager::parse_name(s).map_err(|source| StepError::TaskManager { action: "start", source })?;
                Action::Start(Some(s.clone()))
            }
            toml::Value::Boolean(true) => Action::Start(None),
            _ => return Err(StepError::Malformed("`start` names a task manager (start = \"tm-1\") or is true for a new one")),
        },
        StepKind::Checkpoint => match v {
            toml::Value::Boolean(true) => Action::Checkpoint,
            _ => return Err(StepError::Malformed("write `checkpoint = true` to trigger a checkpoint now")),
        },
        StepKind::Savepoint => match v {
            toml::Value::Boolean(true) => Action::Savepoint { stop: false, format: savepoint_format(t.get("format"))? },
            _ => return Err(StepError::Malformed("write `savepoint = true` to take a savepoint now (into execution.checkpointing.savepoint-dir)")),
        },
        StepKind::StopWithSavepoint => match v {
            toml::Value::Boolean(true) => Action::Savepoint { stop: true, format: savepoint_format(t.get("format"))? },
            _ => return Err(StepError::Malformed("write `stop-with-savepoint = true` to take a savepoint and stop the job")),
        },
        StepKind::StopGenerators => match v {
            toml::Value::Boolean(true) => Action::StopGenerators,
            _ => return Err(StepError::Malformed("write `stop-generators = true` to stop the generators the run started")),
        },
        StepKind::SwitchBackend => match v.as_str().map(str::parse) {
            Some(Ok(b)) => Action::SwitchBackend(b),
            Some(Err(_)) | None => return Err(StepError::NotABackend),
        },
        StepKind::Resubmit => match v {
            toml::Value::Boolean(true) => Action::Resubmit,
            _ => return Err(StepError::Malformed("write `resubmit = true` to submit a FAILED job again, or a job stopped with a savepoint from it")),
        },
        StepKind::Set => {
            let table = v
                .as_table()
                .ok_or(StepError::Malformed("`set` takes a table, as in set = { \"execution.checkpointing.mode\" = \"AT_LEAST_ONCE\" }"))?;
            let mut pairs = Vec::new();
            let mut probe = ConfigLayers::builtin();
            for (k, val) in table {
                probe.set_value(k, val.clone(), "set")?;
                if !changes_at_runtime(k) {
                    return Err(StepError::NotAtRuntime { key: k.clone() });
                }
                let text = match val {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                pairs.push((k.clone(), text));
            }
            probe.build()?;
            Action::Set(pairs)
        }
        StepKind::Wait => Action::Wait(duration_value(v, "wait")?),
        StepKind::Await => {
            let name = v.as_str().ok_or(StepError::Malformed("`await` takes a condition name"))?;
            let condition: AwaitCondition = name.parse().map_err(|_| StepError::UnknownAwait { name: name.to_string() })?;
            let timeout = match t.get("timeout") {
                Some(x) => duration_value(x, "timeout")?,
                None => DEFAULT_AWAIT_TIMEOUT,
            };
            Action::Await { condition, timeout }
        }
        StepKind::Expect => {
            let table = v.as_table().ok_or(StepError::Malformed("`expect` takes a table, as in expect = { lost = 0, overcounted = \"> 0\" }"))?;
            let key = match table.get("key") {
                Some(toml::Value::String(k)) => Some(k.clone()),
                Some(_) => return Err(StepError::Malformed("`key` in expect must be a string")),
                None => None,
            };
            let side = match table.get("side") {
                Some(toml::Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(StepError::Malformed("`side` in expect must be a mode's name, as in side = \"AT_LEAST_ONCE\"")),
                None => None,
            };
            let mut checks = Vec::new();
            for (figure, val) in table.iter().filter(|(k, _)| k.as_str() != "key" && k.as_str() != "side") {
                let known = figure.parse::<Figure>().ok().filter(|f| key.is_none() || f.per_key());
                let Some(known) = known else {
                    let allowed: Vec<&str> = Figure::iter().filter(|f| key.is_none() || f.per_key()).map(Figure::name).collect();
                    return Err(StepError::UnknownFigure { figure: figure.clone(), allowed });
                };
                checks.push((known, Comparison::parse(val)?));
            }
            if checks.is_empty() {
                return Err(StepError::Malformed("`expect` needs at least one figure, as in expect = { lost = 0 }"));
            }
            Action::Expect { key, checks, side }
        }
    };
    Ok(Step { line: _line, partition_line: _line, action, note })
}

fn duration_value(v: &toml::Value, what: &'static str) -> Result<Duration, StepError> {
    match v {
        toml::Value::String(s) => parse_duration(s).map_err(|source| StepError::Duration { what, source }),
        toml::Value::Integer(ms) if *ms >= 0 && (*ms as u128) <= MAX_DURATION.as_millis() => Ok(Duration::from_millis(*ms as u64)),
        toml::Value::Integer(ms) if *ms >= 0 => Err(StepError::DurationTooLong { what, ms: *ms }),
        _ => Err(StepError::NotADuration { what }),
    }
}

fn parse_generate(v: &toml::Value) -> Result<GeneratorSpec, StepError> {
    let t = v
        .as_table()
        .ok_or(StepError::Malformed("`generate` takes a table, as in generate = { rate = 200, duration = \"2s\", keys = [\"x\", \"y\"] }"))?;
    for k in t.keys() {
        if !GENERATE_KEYS.contains(&k.as_str()) {
            return Err(StepError::UnknownGenerateKey { key: k.clone() });
        }
    }
    let rate = match t.get("rate") {
        Some(toml::Value::Integer(r)) if (1..=MAX_GENERATOR_RATE as i64).contains(r) => *r as u64,
        _ => return Err(StepError::GenerateRate),
    };
    let duration = match t.get("duration") {
        Some(d) => Some(duration_value(d, "duration")?),
        None => return Err(StepError::Malformed("`generate` needs a duration, as in duration = \"2s\"")),
    };
    let keys = match t.get("keys") {
        Some(toml::Value::Array(a)) => {
            a.iter().map(|x| x.as_str().map(str::to_string).ok_or(StepError::Malformed("`keys` are strings"))).collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => return Err(StepError::Malformed("`keys` is a list of strings")),
        None => vec!["x".into(), "y".into()],
    };
    let partition = partition_value(t.get("partition"))?;
    Ok(GeneratorSpec { rate, duration, keys, partition })
}

/// A savepoint step's `format` (canonical when it has none, as Flink's default).
fn savepoint_format(v: Option<&toml::Value>) -> Result<SavepointFormat, StepError> {
    match v {
        None => Ok(SavepointFormat::default()),
        Some(toml::Value::String(s)) => s.parse().map_err(|_| StepError::SavepointFormat { value: format!("\"{s}\"") }),
        Some(other) => Err(StepError::SavepointFormat { value: other.to_string() }),
    }
}

fn partition_value(v: Option<&toml::Value>) -> Result<Option<u32>, StepError> {
    match v {
        Some(toml::Value::Integer(p)) if (0..MAX_PARTITIONS as i64).contains(p) => Ok(Some(*p as u32)),
        Some(_) => Err(StepError::Partition),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(text: &str) -> Result<Step, StepError> {
        parse_step(&text.parse::<toml::Table>().expect("toml"), 1)
    }

    /// Catches: a `switch-backend` list kept beside [`SeedBackend`] (a backend added there but
    /// refused here), or a message that no longer names every backend.
    #[test]
    fn switch_backend_takes_each_seed_backend_by_its_name() {
        for seed in <SeedBackend as strum::IntoEnumIterator>::iter() {
            let s = step(&format!("switch-backend = \"{seed}\"")).expect("a seed backend");
            assert_eq!(s.action, Action::SwitchBackend(seed));
        }
        let e = step("switch-backend = \"nvram\"").unwrap_err();
        assert_eq!(e.to_string(), "`switch-backend` names the seed's backend: memory, fs or rocksdb");
        assert!(matches!(step("switch-backend = true"), Err(StepError::NotABackend)));
    }
}
