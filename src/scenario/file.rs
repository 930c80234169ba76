//! A scenario file: reading and checking it (the steps, `[config]`, `[compare]`), with errors
//! that name the file and the line.

use super::*;
use crate::compare::CompareError;

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
    /// `[compare] modes = [...]`, or `[compare] vary = KEY`, `values = [...]` (and `mode`): every
    /// step runs on one cluster per side (see [`crate::compare`]).
    pub compare: Option<crate::compare::Sides>,
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
    modes: Option<Vec<String>>,
    /// With `vary`: the one mode every side runs (EXACTLY_ONCE when not given).
    mode: Option<String>,
    vary: Option<String>,
    values: Option<Vec<String>>,
}

impl RawCompare {
    fn sides(&self) -> Result<crate::compare::Sides, CompareError> {
        use crate::compare::{SideMode, Sides};
        match (&self.vary, &self.values, &self.modes) {
            (None, None, Some(modes)) if self.mode.is_none() => crate::compare::parse_modes(modes).map(Sides::Modes),
            (None, None, _) => Err(CompareError::Shape("takes `modes = [...]`, or `vary = \"KEY\"` with `values = [...]` (and `mode`)")),
            (Some(_), None, _) | (None, Some(_), _) => {
                Err(CompareError::Shape("`vary` and `values` go together: vary = \"job.sink\", values = [\"print\", \"kafka\"]"))
            }
            (Some(_), Some(_), Some(_)) => Err(CompareError::Shape("takes `modes` or `vary`, not both (with `vary`, `mode` names the one mode)")),
            (Some(key), Some(values), None) => {
                let mode = self.mode.as_deref().map(SideMode::parse).transpose()?.unwrap_or(SideMode::ExactlyOnce);
                Sides::vary_values(mode, key, values.clone())
            }
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
            Some(c) => Some(c.get_ref().sides().map_err(|e| ScenarioError {
                file: file.to_string(),
                line: line_of(text, c.span().start),
                message: format!("[compare]: {e}"),
            })?),
            None => None,
        };
        let mut steps = Vec::new();
        let doc = toml_edit::ImDocument::parse(text).ok();
        let tables = doc.as_ref().map(|d| step_tables(d.as_table())).unwrap_or_default();
        for (i, spanned) in raw.steps.iter().enumerate() {
            let line = line_of(text, spanned.span().start);
            let table = tables.get(i).copied();
            let err = |e: StepError| ScenarioError { file: file.to_string(), line, message: e.to_string() };
            // A bad `format` is told at its own line.
            let format_err = |e: StepError| match e {
                StepError::SavepointFormat { .. } => ScenarioError { file: file.to_string(), line: table.and_then(|t| key_line(text, t, "format")).unwrap_or(line), message: e.to_string() },
                other => err(other),
            };
            let mut step = parse_step(spanned.get_ref(), line).map_err(format_err)?;
            step.partition_line = table.and_then(|t| partition_line(text, t)).unwrap_or(line);
            if let Action::Expect { side: Some(side), .. } = &mut step.action {
                *side = compared_side(side, compare.as_ref()).map_err(err)?;
            }
            steps.push(step);
        }
        if let Some(cfg) = &raw.config {
            // Validate keys now so a typo is reported with the file before anything runs, at the
            // line of the bad key (the file named once).
            let located = |e: ConfigError| ScenarioError {
                file: file.to_string(),
                line: e.key().and_then(|k| line_of_key(text, &format!("config.{k}"))).unwrap_or_else(|| doc.as_ref().and_then(|d| config_line(text, d.as_table())).unwrap_or(0)),
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

/// An expect's `side`, as the side's label: a mode of `[compare] modes` or a value of its
/// `values` (any case), or a side's position (`left`, `middle`, `right`).
fn compared_side(side: &str, sides: Option<&crate::compare::Sides>) -> Result<String, StepError> {
    let Some(sides) = sides else {
        return Err(StepError::SideWithoutCompare { side: side.to_string() });
    };
    sides.resolve(side).ok_or_else(|| StepError::UnknownSide { side: side.to_string(), allowed: sides.labels() })
}

/// The tables of `steps`, in order (`[[steps]]`, or inline tables in `steps = [...]`), as the
/// TOML parser read them, with the spans of their keys.
fn step_tables(doc: &toml_edit::Table) -> Vec<&dyn toml_edit::TableLike> {
    match doc.get("steps") {
        Some(toml_edit::Item::ArrayOfTables(a)) => a.iter().map(|t| t as &dyn toml_edit::TableLike).collect(),
        Some(toml_edit::Item::Value(toml_edit::Value::Array(a))) => a.iter().filter_map(|v| v.as_inline_table()).map(|t| t as &dyn toml_edit::TableLike).collect(),
        _ => Vec::new(),
    }
}

/// The line where `table` assigns `key` itself, from the parser's span (a key in a string or a
/// comment is none).
fn key_line(text: &str, table: &dyn toml_edit::TableLike, key: &str) -> Option<usize> {
    let (k, item) = table.get_key_value(key)?;
    k.span().or_else(|| item.span()).map(|s| line_of(text, s.start))
}

/// The line of the `[config]` table's header (none for `config = { .. }` inline).
fn config_line(text: &str, doc: &toml_edit::Table) -> Option<usize> {
    match doc.get("config")? {
        toml_edit::Item::Table(_) => key_line(text, doc, "config"),
        _ => None,
    }
}

/// The line of a step's `partition`: its own key, or the one inside `generate` (inline,
/// `generate = { .. }`, or dotted, `generate.partition = ..`; not a `[steps.generate]` table's).
fn partition_line(text: &str, step: &dyn toml_edit::TableLike) -> Option<usize> {
    key_line(text, step, "partition").or_else(|| {
        let generate: &dyn toml_edit::TableLike = match step.get("generate")? {
            toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => t,
            toml_edit::Item::Table(t) if t.is_dotted() => t,
            _ => return None,
        };
        key_line(text, generate, "partition")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steps_partition_line_is_its_own_key_or_its_generates() {
        let text = "name = \"x\"\n\
            [[steps]]\nproduce = [\"a\"]\n# partition = 9\npartition = 1\n\
            [[steps]]\ngenerate = { rate = 10, duration = \"1s\", partition = 1 }\n\
            [[steps]]\ngenerate.rate = 10\ngenerate.duration = \"1s\"\ngenerate.partition = 1\n\
            [[steps]]\nproduce = [\"b\"]\n";
        let s = Scenario::parse(text, "p.toml").unwrap();
        assert_eq!(s.steps.iter().map(|s| s.partition_line).collect::<Vec<_>>(), [5, 7, 11, 12]);
        let inline = "name = \"x\"\nsteps = [\n  { produce = [\"a\"] },\n  { produce = [\"b\"], partition = 1 },\n]\n";
        let s = Scenario::parse(inline, "i.toml").unwrap();
        assert_eq!(s.steps.iter().map(|s| s.partition_line).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn a_bad_savepoint_format_is_told_at_its_own_line() {
        let text = "name = \"x\"\n[[steps]]\nsavepoint = true\nformat = \"zip\"\n";
        assert_eq!(Scenario::parse(text, "f.toml").unwrap_err().line, 4);
    }

    #[test]
    fn the_config_line_is_its_tables_header_even_when_only_a_sub_table_has_one() {
        for (text, line) in [("name = \"x\"\n[config]\nx = 1\n", Some(2)), ("name = \"x\"\n\n[config.job]\nx = 1\n", Some(3)), ("config = { x = 1 }\n", None)] {
            let doc = toml_edit::ImDocument::parse(text).unwrap();
            assert_eq!(config_line(text, doc.as_table()), line, "{text}");
        }
    }
}
