//! The step vocabulary: what each `[[steps]]` table may say, parsed into an [`Action`].

use super::*;

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
            StepKind::Generate
            | StepKind::Kill
            | StepKind::Hang
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
        StepKind::Hang => {
            let name = v.as_str().ok_or("`hang` names a task manager, as in hang = \"tm-1\"")?;
            taskmanager::parse_name(name).map_err(|e| format!("hang: {e}"))?;
            Action::Hang(name.to_string())
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
