//! Comparison: two or three clusters in one process reading the **same** topic, each under its own
//! checkpointing mode. Records go to the topic once; a kill, a start, a checkpoint or a channel
//! delay go to every cluster at the same moment, so the verdicts differ only by the mode: at-least-
//! once's overcount shows beside exactly-once's exact count, from the very same records and the
//! very same failure.
//!
//! `ckptlab compare` opens it in the terminal; a scenario with `[compare] modes = [...]` plays every
//! step on each side ([`ComparePlayer`]) and `expect = { side = "AT_LEAST_ONCE", .. }` judges one.
//! Sides are named by position for `--set left.KEY=VALUE` ([`side_names`]) and by mode in scenarios.
//!
//! Or the sides run one mode and differ in one setting ([`Sides::Vary`], `--vary job.sink=print,
//! transactional,kafka` or `[compare] vary = "job.sink"`, `values = [...]`): the same job with
//! three sinks or three delivery guarantees, each side named by its value.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoStaticStr, VariantNames};
use tokio::task::JoinHandle;

use crate::audit::Verdict;
use crate::cluster::{Engine, EngineError};
use crate::config::{Alignment, CheckpointingMode, ConfigError, ConfigLayers};
use crate::connectors::Topic;
use crate::events::EventBus;
use crate::scenario::{Action, AwaitCondition, Flow, Player, RunReport, Scenario, Step};

/// The sides `ckptlab compare` shows without `--modes`.
pub const DEFAULT_MODES: [SideMode; 3] = [SideMode::ExactlyOnce, SideMode::AtLeastOnce, SideMode::Off];
/// The interval a checkpointing side takes when the settings it starts from have checkpointing
/// off (the workbench's, the seed's `checkpointInterval = 1000`).
pub use crate::config::INTERVAL_WHEN_OFF;

/// How often, and how long apart, shutting down waits for a compared engine to be no longer shared.
const SHUTDOWN_TRIES: usize = 50;
const SHUTDOWN_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// How one side checkpoints, named as scenarios and `--modes` spell it (the serde and strum
/// names are the same words).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, EnumString, IntoStaticStr, VariantNames, EnumIter,
)]
#[strum(ascii_case_insensitive)]
pub enum SideMode {
    /// Aligned exactly-once.
    #[serde(rename = "EXACTLY_ONCE")]
    #[strum(serialize = "EXACTLY_ONCE")]
    ExactlyOnce,
    #[serde(rename = "AT_LEAST_ONCE")]
    #[strum(serialize = "AT_LEAST_ONCE")]
    AtLeastOnce,
    /// Exactly-once with unaligned checkpoints.
    #[serde(rename = "UNALIGNED")]
    #[strum(serialize = "UNALIGNED")]
    Unaligned,
    /// Checkpointing disabled (`execution.checkpointing.interval` = off).
    #[serde(rename = "off")]
    #[strum(serialize = "off")]
    Off,
}

impl SideMode {
    /// `EXACTLY_ONCE`, `AT_LEAST_ONCE`, `UNALIGNED`, `off`, as scenarios and `--modes` spell them.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Case does not matter; `-` may stand for `_` (`exactly-once`).
    pub fn parse(text: &str) -> Result<SideMode, CompareError> {
        text.trim().replace('-', "_").parse().map_err(|_| CompareError::UnknownMode(text.to_string()))
    }

    /// The checkpointing this side runs.
    pub fn mode(self) -> CheckpointingMode {
        match self {
            SideMode::ExactlyOnce => CheckpointingMode::ExactlyOnce(Alignment::Aligned),
            SideMode::AtLeastOnce => CheckpointingMode::AtLeastOnce,
            SideMode::Unaligned => CheckpointingMode::ExactlyOnce(Alignment::Unaligned),
            SideMode::Off => CheckpointingMode::Off,
        }
    }

    /// Puts the mode's settings on top of `layers` (after the scenario and the common `--set`,
    /// before the side's own `--set`).
    pub fn apply(self, layers: &mut ConfigLayers) -> Result<(), ConfigError> {
        self.mode().apply(layers, &format!("compare side {}", self.name()))
    }
}

/// What sets the compared sides apart: their checkpointing modes (`--modes`, `[compare] modes`),
/// or one setting's values under one mode (`--vary KEY=a,b[,c]`, `[compare] vary` and `values`):
/// the same job with three sinks or three delivery guarantees side by side.
#[derive(Debug, Clone, PartialEq)]
pub enum Sides {
    Modes(Vec<SideMode>),
    Vary { mode: SideMode, key: String, values: Vec<String> },
}

impl Sides {
    /// Parses `KEY=a,b[,c]`: two or three distinct values of one setting, each a valid value of
    /// it (checked now, so that a typo is told before anything runs), under `mode`.
    pub fn vary(mode: SideMode, assignment: &str) -> Result<Sides, CompareError> {
        let Some((key, values)) = assignment.split_once('=') else {
            return Err(CompareError::VaryShape(assignment.to_string()));
        };
        Sides::vary_values(mode, key.trim(), values.split(',').map(|v| v.trim().to_string()).collect())
    }

    /// Two or three distinct values of the setting `key`, each valid for it, under `mode`.
    pub fn vary_values(mode: SideMode, key: &str, values: Vec<String>) -> Result<Sides, CompareError> {
        let key = key.to_string();
        if !(2..=MAX_SIDES).contains(&values.len()) {
            return Err(CompareError::SideCount(values.len()));
        }
        let mut seen = BTreeSet::new();
        for v in &values {
            if !seen.insert(v.as_str()) {
                return Err(CompareError::DuplicateValue { key, value: v.clone() });
            }
            let mut probe = ConfigLayers::builtin();
            probe
                .set(&format!("{key}={v}"), "--vary")
                .and_then(|()| probe.build().map(|_| ()))
                .map_err(|source| CompareError::Config { side: v.clone(), source })?;
        }
        Ok(Sides::Vary { mode, key, values })
    }

    pub fn len(&self) -> usize {
        match self {
            Sides::Modes(m) => m.len(),
            Sides::Vary { values, .. } => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The checkpointing side `i` runs.
    pub fn mode(&self, i: usize) -> SideMode {
        match self {
            Sides::Modes(m) => m[i],
            Sides::Vary { mode, .. } => *mode,
        }
    }

    /// What side `i` is called on screen, in narration and by an expect's `side`: its mode, or
    /// the value it gives the varied setting.
    pub fn label(&self, i: usize) -> String {
        match self {
            Sides::Modes(m) => m[i].name().to_string(),
            Sides::Vary { values, .. } => values[i].clone(),
        }
    }

    pub fn labels(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.label(i)).collect()
    }

    /// Puts side `i`'s settings on top of `layers`: the mode, then the varied setting's value.
    pub fn apply(&self, i: usize, layers: &mut ConfigLayers) -> Result<(), ConfigError> {
        let mode = self.mode(i);
        mode.apply(layers)?;
        if let Sides::Vary { key, values, .. } = self {
            layers.set(&format!("{key}={}", values[i]), &format!("compare side {}", values[i]))?;
        }
        Ok(())
    }

    /// An expect's `side` as a side's label: a label (any case, `-` for `_` in a mode) or a
    /// position (`left`, `middle`, `right`).
    pub fn resolve(&self, side: &str) -> Option<String> {
        let labels = self.labels();
        let by_position = side_names(self.len()).iter().position(|n| n.eq_ignore_ascii_case(side)).map(|i| labels[i].clone());
        let by_label = match self {
            Sides::Modes(m) => SideMode::parse(side).ok().filter(|x| m.contains(x)).map(|x| x.name().to_string()),
            Sides::Vary { values, .. } => values.iter().find(|v| v.eq_ignore_ascii_case(side)).cloned(),
        };
        by_label.or(by_position)
    }

    /// The sides' plans on `base`: side `i` gets [`Sides::apply`] on a copy.
    pub fn plan(&self, base: &ConfigLayers) -> Result<Vec<SidePlan>, CompareError> {
        let names = side_names(self.len());
        (0..self.len())
            .map(|i| {
                let mut layers = base.clone();
                self.apply(i, &mut layers).map_err(|source| CompareError::Config { side: names[i].to_string(), source })?;
                Ok(SidePlan { label: self.label(i), mode: self.mode(i), layers })
            })
            .collect()
    }
}

/// One side before it starts: what it is called, how it checkpoints, its settings.
#[derive(Debug, Clone)]
pub struct SidePlan {
    pub label: String,
    pub mode: SideMode,
    pub layers: ConfigLayers,
}

/// Why a comparison cannot be set up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    #[error("unknown mode `{0}`; allowed: {allowed}", allowed = SideMode::VARIANTS.join(", "))]
    UnknownMode(String),
    #[error("a comparison has two or three sides, not {0}")]
    SideCount(usize),
    #[error("mode {0} is named twice; each side runs a different mode (to compare one mode with different settings, --vary KEY=a,b[,c])")]
    Duplicate(&'static str),
    #[error("--vary {0}: KEY=a,b[,c] (for example --vary job.sink=print,transactional,kafka)")]
    VaryShape(String),
    #[error("--vary {key}: the value {value} is named twice; each side has its own")]
    DuplicateValue { key: String, value: String },
    #[error("--vary runs every side in one mode, and --modes names {0}: name one mode, or drop --vary")]
    VaryWithModes(usize),
    #[error("{0}")]
    Shape(&'static str),
    #[error("two sides are called {0}; each side needs its own name")]
    DuplicateLabel(String),
    #[error("--set {assignment}: `{prefix}.` names no side here; the sides are {sides}")]
    NoSuchSide { assignment: String, prefix: String, sides: String },
    #[error("side {side}: {message}")]
    Side { side: String, message: String },
    #[error("side {side}: {source}")]
    Config { side: String, source: ConfigError },
    #[error("side {side}: source.partitions = {got}, but the shared topic has {want} partitions")]
    Partitions { side: String, got: u32, want: u32 },
}

/// `--modes` and `--vary` together: without `--vary`, two or three distinct modes
/// ([`DEFAULT_MODES`] when none are named); with it, at most one mode (aligned exactly-once when
/// none is named), which every side runs.
pub fn sides_of<S: AsRef<str>>(modes: Option<&[S]>, vary: Option<&str>) -> Result<Sides, CompareError> {
    match (vary, modes) {
        (None, None) => Ok(Sides::Modes(DEFAULT_MODES.to_vec())),
        (None, Some(m)) => Ok(Sides::Modes(parse_modes(m)?)),
        (Some(v), None) => Sides::vary(SideMode::ExactlyOnce, v),
        (Some(v), Some([one])) => Sides::vary(SideMode::parse(one.as_ref())?, v),
        (Some(_), Some(m)) => Err(CompareError::VaryWithModes(m.len())),
    }
}

/// Parses `--modes a,b[,c]` (or a scenario's list): two or three distinct modes.
pub fn parse_modes<S: AsRef<str>>(names: &[S]) -> Result<Vec<SideMode>, CompareError> {
    let modes = names.iter().map(|n| SideMode::parse(n.as_ref())).collect::<Result<Vec<_>, _>>()?;
    check_modes(&modes)?;
    Ok(modes)
}

fn check_modes(modes: &[SideMode]) -> Result<(), CompareError> {
    if !(2..=MAX_SIDES).contains(&modes.len()) {
        return Err(CompareError::SideCount(modes.len()));
    }
    let mut seen = BTreeSet::new();
    for m in modes {
        if !seen.insert(*m) {
            return Err(CompareError::Duplicate(m.name()));
        }
    }
    Ok(())
}

/// How many sides a comparison has at most. A side more needs a name in [`ALL_SIDE_NAMES`] and
/// an arm in [`side_names`]: both fail to compile until it has them.
pub const MAX_SIDES: usize = 3;

/// The sides' names by position, as `--set left.KEY=VALUE` takes them: two sides are left and
/// right, three have a middle.
pub fn side_names(count: usize) -> &'static [&'static str] {
    const MORE_THAN_MAX: usize = MAX_SIDES + 1;
    match count {
        MAX_SIDES => &ALL_SIDE_NAMES,
        // Other counts than two never pass `check_modes`; they are named as two.
        ..=2 | MORE_THAN_MAX.. => &["left", "right"],
    }
}

/// Every name a side prefix can have, so `--set middle.x=1` on two sides is an error rather than
/// an unknown option.
const ALL_SIDE_NAMES: [&str; MAX_SIDES] = ["left", "middle", "right"];

/// Compared sides read one topic on one broker; sides whose Kafka sinks name the same output
/// topic would write one topic with one transactional-id prefix and fence each other, as two
/// jobs would on a real broker. Each such side writes its own: `<output-topic>-<side>`, and
/// `<prefix>-<side>` for its transactional ids. Sides that already name distinct topics keep them.
fn own_output_topics(sides: Vec<SidePlan>, names: &[&str]) -> Result<Vec<SidePlan>, (usize, ConfigError)> {
    let mut sinks = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        let cfg = side.layers.build().map_err(|e| (i, e))?;
        sinks.push((cfg.job.sink == crate::config::SinkKind::Kafka).then_some(cfg.job.kafka_sink));
    }
    let shared = |topic: &str| sinks.iter().flatten().filter(|k| k.output_topic == topic).count() > 1;
    let mut out = Vec::new();
    for (i, mut side) in sides.into_iter().enumerate() {
        let layers = &mut side.layers;
        if let Some(k) = &sinks[i] {
            if shared(&k.output_topic) {
                let origin = format!("compare: side {}'s own output topic", names[i]);
                layers.set(&format!("sink.output-topic={}-{}", k.output_topic, names[i]), &origin).map_err(|e| (i, e))?;
                if let Some(p) = &k.transactional_id_prefix {
                    layers.set(&format!("sink.transactional-id-prefix={p}-{}", names[i]), &origin).map_err(|e| (i, e))?;
                }
            }
        }
        out.push(side);
    }
    Ok(out)
}

/// Splits `--set` assignments into those for every side and those for one (`left.KEY=VALUE`).
pub fn split_sets(sets: &[String], count: usize) -> Result<(Vec<String>, Vec<Vec<String>>), CompareError> {
    let names = side_names(count);
    let mut common = Vec::new();
    let mut per_side = vec![Vec::new(); names.len()];
    for s in sets {
        let Some((prefix, rest)) = s.split_once('.') else {
            common.push(s.clone());
            continue;
        };
        match names.iter().position(|n| *n == prefix) {
            Some(i) => per_side[i].push(rest.to_string()),
            None if ALL_SIDE_NAMES.contains(&prefix) => {
                return Err(CompareError::NoSuchSide { assignment: s.clone(), prefix: prefix.into(), sides: names.join(", ") })
            }
            None => common.push(s.clone()),
        }
    }
    Ok((common, per_side))
}

/// One cluster of a comparison.
pub struct Side {
    /// `left`, `middle`, `right`.
    pub name: &'static str,
    /// What it is called on screen: its mode, or the value of the varied setting ([`Sides`]).
    pub label: String,
    pub mode: SideMode,
    pub engine: Arc<Engine>,
}

/// The clusters of a comparison, on one topic.
pub struct Lineup {
    pub sides: Vec<Side>,
}

impl Lineup {
    /// Starts one cluster per plan; the first creates the topic (embedded, file log or Kafka, as
    /// its settings say), the others read the same one. Each side reports on its own bus.
    pub fn start(sides: Vec<SidePlan>, bus: impl Fn() -> EventBus) -> Result<Lineup, CompareError> {
        if !(2..=MAX_SIDES).contains(&sides.len()) {
            return Err(CompareError::SideCount(sides.len()));
        }
        let labels: Vec<String> = sides.iter().map(|s| s.label.clone()).collect();
        let mut seen = BTreeSet::new();
        for l in &labels {
            if !seen.insert(l.as_str()) {
                return Err(CompareError::DuplicateLabel(l.clone()));
            }
        }
        let names = side_names(sides.len());
        let fail = |i: usize, e: EngineError| CompareError::Side { side: format!("{} ({})", names[i], labels[i]), message: e.to_string() };
        let sides = own_output_topics(sides, names).map_err(|(i, e)| fail(i, e.into()))?;
        let mut started: Vec<Side> = Vec::new();
        let mut topic: Option<Arc<dyn Topic>> = None;
        for (i, SidePlan { label, mode, layers }) in sides.into_iter().enumerate() {
            let engine = match &topic {
                None => Engine::start(layers, bus()).map_err(|e| fail(i, e))?,
                Some(t) => {
                    let cfg = layers.build().map_err(|e| fail(i, e.into()))?;
                    if cfg.source.partitions != t.partitions() {
                        return Err(CompareError::Partitions {
                            side: names[i].to_string(),
                            got: cfg.source.partitions,
                            want: t.partitions(),
                        });
                    }
                    Engine::start_with_topic(layers, cfg, bus(), Some(t.clone())).map_err(|e| fail(i, e))?
                }
            };
            topic.get_or_insert_with(|| engine.topic());
            started.push(Side { name: names[i], label, mode, engine: Arc::new(engine) });
        }
        Ok(Lineup { sides: started })
    }

    /// One cluster per side of a `[compare]` scenario, each on `base` with the scenario's
    /// `[config]` and then the side's own settings applied (as tests and embedders build a lineup;
    /// `ckptlab run` layers `--set` between the two, so it builds the sides itself).
    pub fn for_scenario(scenario: &Scenario, base: &ConfigLayers, sides: &Sides, bus: impl Fn() -> EventBus) -> Result<Lineup, CompareError> {
        let mut layers = base.clone();
        scenario.apply_config(&mut layers).map_err(|source| CompareError::Config { side: "every side".to_string(), source })?;
        Lineup::start(sides.plan(&layers)?, bus)
    }

    /// The shared topic (records typed or generated go here once).
    pub fn topic(&self) -> Arc<dyn Topic> {
        self.sides[0].engine.topic()
    }

    /// Sends the same command to every cluster.
    pub fn command(&self, c: crate::cluster::Command) {
        for s in &self.sides {
            s.engine.command(c.clone());
        }
    }

    /// Stops every cluster.
    pub async fn shutdown(self) {
        for s in self.sides {
            let mut engine = s.engine;
            // A picture being taken on a blocking thread may hold the engine a moment longer.
            for _ in 0..SHUTDOWN_TRIES {
                match Arc::try_unwrap(engine) {
                    Ok(e) => {
                        e.shutdown().await;
                        break;
                    }
                    Err(shared) => {
                        engine = shared;
                        tokio::time::sleep(SHUTDOWN_RETRY).await;
                    }
                }
            }
        }
    }
}

/// One key's figures on every side, as the compare screen and `ckptlab run` show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRow {
    pub key: String,
    /// Per side: (expected, state, lost, overcounted).
    pub cells: Vec<KeyCell>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCell {
    pub expected: u64,
    pub state: u64,
    pub lost: u64,
    pub overcounted: u64,
}

impl KeyRow {
    /// The sides disagree on this key's state (the difference a learner should see).
    pub fn differs(&self) -> bool {
        self.cells.windows(2).any(|w| w[0].state != w[1].state || w[0].lost != w[1].lost || w[0].overcounted != w[1].overcounted)
    }
}

/// Per key (every key any side knows, sorted), then a TOTAL row.
pub fn key_rows(verdicts: &[&Verdict]) -> Vec<KeyRow> {
    let keys: BTreeSet<&String> = verdicts.iter().flat_map(|v| v.keys.keys()).collect();
    let mut rows: Vec<KeyRow> = keys
        .into_iter()
        .map(|k| KeyRow {
            key: k.clone(),
            cells: verdicts
                .iter()
                .map(|v| {
                    let kv = v.keys.get(k).cloned().unwrap_or_default();
                    KeyCell { expected: kv.expected, state: kv.state, lost: kv.lost, overcounted: kv.overcounted }
                })
                .collect(),
        })
        .collect();
    rows.push(KeyRow {
        key: "TOTAL".into(),
        cells: verdicts
            .iter()
            .map(|v| KeyCell { expected: v.expected, state: v.state, lost: v.lost, overcounted: v.overcounted })
            .collect(),
    });
    rows
}

/// The side-by-side verdict table `ckptlab run` prints for a comparison; `*` marks a row where
/// the sides differ.
pub fn side_by_side_table(labels: &[&str], verdicts: &[&Verdict]) -> String {
    use crate::table::{Column, TextTable};
    let rows = key_rows(verdicts);
    // A side's column holds "state lost over" (17 wide) under its label.
    let mut columns = vec![Column::left().min(3), Column::right().min(8)];
    columns.extend(labels.iter().map(|_| Column::left().min(17).gap(" | ")));
    let mut t = TextTable::new(columns);
    let cells = |c: &KeyCell| format!("{:>5} {:>5} {:>5}", c.state, c.lost, c.overcounted);
    t.row(["key", "expected"].into_iter().chain(labels.iter().copied()));
    t.row(["".to_string(), "".to_string()].into_iter().chain(labels.iter().map(|_| format!("{:>5} {:>5} {:>5}", "state", "lost", "over"))));
    t.rule();
    for (i, r) in rows.iter().enumerate() {
        if i + 1 == rows.len() {
            t.rule();
        }
        let expected = r.cells.first().map_or(0, |c| c.expected);
        let row = [r.key.clone(), expected.to_string()].into_iter().chain(r.cells.iter().map(cells));
        t.row_marked(row, if r.differs() { "  *" } else { "" });
    }
    t.render()
}

/// One side's outcome in a compared run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SideReport {
    /// `left`, `middle`, `right`.
    pub side: String,
    /// What the side is called: its mode, or the value of the varied setting.
    #[serde(default)]
    pub label: String,
    pub mode: SideMode,
    pub report: RunReport,
    /// The Kafka sink's output topic judged at both isolation levels (a side with another sink
    /// has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<crate::connectors::kafka_sink::verdict::OutputVerdict>,
}

/// The outcome of a compared scenario, as `ckptlab run --json` prints it: every side.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompareReport {
    pub scenario: String,
    pub description: String,
    /// Every side's expects held.
    pub passed: bool,
    pub sides: Vec<SideReport>,
}

/// Plays a scenario's steps on every side of a lineup: records once to the shared topic, every
/// other step on each cluster at the same moment (those that wait, concurrently).
pub struct ComparePlayer {
    players: Vec<Player>,
    /// Generators run on the shared topic; an `await caught-up` first waits for them, since a
    /// side that did not start one would otherwise look caught up while records still arrive.
    generators: Vec<JoinHandle<()>>,
}

impl ComparePlayer {
    /// Waits for every side's job to run.
    pub async fn start(lineup: &Lineup, narrate: &mut impl FnMut(String)) -> ComparePlayer {
        let started = futures::future::join_all(lineup.sides.iter().map(|s| async move {
            let mut lines = Vec::new();
            let player = Player::start(&s.engine, &mut |l| lines.push(l)).await;
            (player, lines)
        }))
        .await;
        let mut players = Vec::new();
        for ((player, lines), side) in started.into_iter().zip(&lineup.sides) {
            for l in lines {
                narrate(format!("{}: {l}", side.label));
            }
            players.push(player);
        }
        ComparePlayer { players, generators: Vec::new() }
    }

    /// Plays one step; an `expect` with a `side` is judged on that side only.
    pub async fn play(&mut self, lineup: &Lineup, step: &Step, narrate: &mut impl FnMut(String)) -> Flow {
        let on: Vec<usize> = match &step.action {
            // The topic is shared: a record goes to it once.
            Action::Produce { .. } => vec![0],
            Action::Generate(spec) => {
                if let Some(note) = &step.note {
                    narrate(format!("  # {note}"));
                }
                narrate(format!("generate {} records/s over {} into the shared topic", spec.rate, spec.keys.join(",")));
                self.generators.push(lineup.sides[0].engine.generate(spec.clone()));
                return Flow::Continue;
            }
            Action::Expect { side: Some(side), .. } => lineup.sides.iter().position(|s| s.label == *side).into_iter().collect(),
            // Every other step goes to every side.
            Action::Expect { side: None, .. }
            | Action::Kill(_)
            | Action::KillBeforeCommit(_)
            | Action::Hang(_)
            | Action::Start(_)
            | Action::Checkpoint
            | Action::Set(_)
            | Action::Wait(_)
            | Action::Await { .. }
            | Action::Resubmit
            | Action::StopGenerators
            | Action::SwitchBackend(_)
            | Action::Savepoint { .. } => (0..lineup.sides.len()).collect(),
        };
        if let Action::Await { condition: AwaitCondition::CaughtUp, timeout } = &step.action {
            let deadline = tokio::time::Instant::now() + *timeout;
            for g in &mut self.generators {
                let _ = tokio::time::timeout_at(deadline, g).await;
            }
            self.generators.retain(|g| !g.is_finished());
        }
        let per_side = matches!(step.action, Action::Expect { .. });
        let plays = self.players.iter_mut().enumerate().filter(|(i, _)| on.contains(i)).map(|(i, p)| {
            let engine = &lineup.sides[i].engine;
            async move {
                let mut lines = Vec::new();
                let flow = p.play(engine, step, &mut |l| lines.push(l)).await;
                (i, flow, lines)
            }
        });
        let results = futures::future::join_all(plays).await;
        let first: Vec<String> = results.first().map(|r| r.2.clone()).unwrap_or_default();
        let mut flow = Flow::Continue;
        for (i, f, lines) in results {
            if f == Flow::Stop {
                flow = Flow::Stop;
            }
            for l in lines {
                // A step every side narrates alike (kill, wait) is told once.
                if per_side || i != on[0] && !first.contains(&l) {
                    narrate(format!("{}: {l}", lineup.sides[i].label));
                } else if i == on[0] {
                    narrate(l);
                }
            }
        }
        flow
    }

    /// Reports every side.
    pub async fn finish(self, lineup: &Lineup, scenario: &Scenario, narrate: &mut impl FnMut(String)) -> CompareReport {
        for g in self.generators {
            g.abort();
        }
        let finished = futures::future::join_all(self.players.into_iter().zip(&lineup.sides).map(|(p, s)| async move {
            let mut lines = Vec::new();
            let report = p.finish(&s.engine, scenario, &mut |l| lines.push(l)).await;
            (report, lines)
        }))
        .await;
        let mut sides = Vec::new();
        for ((report, lines), side) in finished.into_iter().zip(&lineup.sides) {
            for l in lines {
                narrate(format!("{}: {l}", side.label));
            }
            // The output topic is read before the side's broker goes (at shutdown).
            let output = match crate::connectors::kafka_sink::verdict::of_engine(&side.engine, &report.verdict) {
                Some(Ok(o)) => Some(o),
                Some(Err(e)) => {
                    narrate(format!("{}: WARNING the output topic could not be read: {e}", side.label));
                    None
                }
                None => None,
            };
            sides.push(SideReport { side: side.name.to_string(), label: side.label.clone(), mode: side.mode, report, output });
        }
        CompareReport {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            passed: sides.iter().all(|s| s.report.passed),
            sides,
        }
    }
}

/// Runs a compared scenario on a started lineup. `narrate` hears a line per step.
pub async fn run(scenario: &Scenario, lineup: &Lineup, mut narrate: impl FnMut(String)) -> CompareReport {
    let mut player = ComparePlayer::start(lineup, &mut narrate).await;
    for step in &scenario.steps {
        if player.play(lineup, step, &mut narrate).await == Flow::Stop {
            break;
        }
    }
    player.finish(lineup, scenario, &mut narrate).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_in_any_case_and_need_two_or_three_distinct() {
        assert_eq!(parse_modes(&["exactly-once", "AT_LEAST_ONCE", "OFF"]).unwrap(), DEFAULT_MODES.to_vec());
        assert_eq!(parse_modes(&["EXACTLY_ONCE"]), Err(CompareError::SideCount(1)));
        assert_eq!(parse_modes(&["off", "off"]), Err(CompareError::Duplicate("off")));
        assert!(matches!(parse_modes(&["twice", "off"]), Err(CompareError::UnknownMode(m)) if m == "twice"));
    }

    #[test]
    fn sets_split_by_side_prefix_and_a_side_that_is_not_there_is_named() {
        let sets: Vec<String> =
            ["ckptlab.hop-delay=2ms", "left.state.backend=rocksdb", "right.ckptlab.hop-delay=5ms"].map(String::from).to_vec();
        let (common, per) = split_sets(&sets, 2).unwrap();
        assert_eq!(common, ["ckptlab.hop-delay=2ms"]);
        assert_eq!(per, vec![vec!["state.backend=rocksdb".to_string()], vec!["ckptlab.hop-delay=5ms".to_string()]]);
        let e = split_sets(&["middle.x=1".to_string()], 2).unwrap_err();
        assert!(e.to_string().contains("left, right"), "{e}");
    }

    #[test]
    fn an_unknown_mode_lists_every_side_mode() {
        let e = parse_modes(&["twice", "off"]).unwrap_err().to_string();
        assert!(e.ends_with("allowed: EXACTLY_ONCE, AT_LEAST_ONCE, UNALIGNED, off"), "{e}");
    }

    #[test]
    fn every_side_mode_runs_the_checkpointing_it_names() {
        use strum::IntoEnumIterator;
        for side in SideMode::iter() {
            let mut layers = ConfigLayers::builtin();
            side.apply(&mut layers).unwrap();
            assert_eq!(CheckpointingMode::of(&layers.build().unwrap().checkpointing), side.mode(), "{side:?}");
        }
    }

    #[test]
    fn off_disables_checkpointing_and_a_checkpointing_side_gets_an_interval() {
        let mut layers = ConfigLayers::builtin();
        SideMode::Off.apply(&mut layers).unwrap();
        assert_eq!(layers.build().unwrap().checkpointing.interval, None);
        SideMode::AtLeastOnce.apply(&mut layers).unwrap();
        let cfg = layers.build().unwrap();
        assert_eq!(cfg.checkpointing.mode, crate::config::CheckpointMode::AtLeastOnce);
        assert!(cfg.checkpointing.interval.is_some());
    }

    /// Catches: a vary that does not set the value on its side, sides named by position rather
    /// than value, a duplicate value let through, a bad value found only when the side starts.
    #[test]
    fn vary_runs_one_mode_and_names_each_side_by_its_value() {
        let sides = sides_of::<&str>(None, Some("job.sink=print, transactional,kafka")).unwrap();
        assert_eq!(sides.labels(), ["print", "transactional", "kafka"]);
        let plans = sides.plan(&ConfigLayers::builtin()).unwrap();
        let sinks: Vec<crate::config::SinkKind> = plans.iter().map(|p| p.layers.build().unwrap().job.sink).collect();
        use crate::config::SinkKind::*;
        assert_eq!(sinks, [Print, Transactional, Kafka]);
        for p in &plans {
            assert_eq!(p.mode, SideMode::ExactlyOnce);
            assert_eq!(CheckpointingMode::of(&p.layers.build().unwrap().checkpointing), SideMode::ExactlyOnce.mode());
        }
        assert_eq!(sides.resolve("KAFKA").as_deref(), Some("kafka"));
        assert_eq!(sides.resolve("middle").as_deref(), Some("transactional"));
        assert_eq!(sides.resolve("EXACTLY_ONCE"), None, "a side is named by its value, not by the mode all sides share");
        let one = sides_of(Some(&["AT_LEAST_ONCE"]), Some("sink.delivery-guarantee=none,exactly-once")).unwrap();
        assert_eq!(one.mode(1), SideMode::AtLeastOnce);
    }

    #[test]
    fn a_bad_vary_is_told_before_anything_runs() {
        assert_eq!(sides_of::<&str>(None, Some("job.sink=print,print")), Err(CompareError::DuplicateValue { key: "job.sink".into(), value: "print".into() }));
        assert_eq!(sides_of::<&str>(None, Some("job.sink=print")), Err(CompareError::SideCount(1)));
        assert!(matches!(sides_of::<&str>(None, Some("job.sink")), Err(CompareError::VaryShape(_))));
        assert_eq!(sides_of(Some(&["EXACTLY_ONCE", "off"]), Some("job.sink=print,kafka")), Err(CompareError::VaryWithModes(2)));
        let e = sides_of::<&str>(None, Some("job.sink=print,printer")).unwrap_err().to_string();
        assert!(e.contains("printer") && e.contains("job.sink") && e.contains("transactional"), "names the value, the key and the allowed values: {e}");
        let e = sides_of::<&str>(None, Some("job.sinks=print,kafka")).unwrap_err().to_string();
        assert!(e.contains("job.sinks"), "{e}");
    }

    #[test]
    fn rows_mark_the_keys_where_sides_differ() {
        let mut a = Verdict::default();
        let mut b = Verdict::default();
        a.keys.insert("x".into(), crate::audit::KeyVerdict { expected: 3, state: 3, ..Default::default() });
        b.keys.insert("x".into(), crate::audit::KeyVerdict { expected: 3, state: 5, overcounted: 2, ..Default::default() });
        a.keys.insert("y".into(), crate::audit::KeyVerdict { expected: 1, state: 1, ..Default::default() });
        b.keys.insert("y".into(), crate::audit::KeyVerdict { expected: 1, state: 1, ..Default::default() });
        let rows = key_rows(&[&a, &b]);
        assert_eq!(rows.iter().map(|r| (r.key.as_str(), r.differs())).collect::<Vec<_>>(), [("x", true), ("y", false), ("TOTAL", false)]);
        let table = side_by_side_table(&["EXACTLY_ONCE", "AT_LEAST_ONCE"], &[&a, &b]);
        assert!(table.lines().any(|l| l.starts_with("x ") && l.ends_with('*')), "{table}");
    }
}
