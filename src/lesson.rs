//! Guided lessons: a scenario told step by step to a newcomer, who does each step (or lets the
//! lesson do it), predicts what will happen, then sees it against the ground truth.
//!
//! A lesson is data (`assets/lessons/*.toml`): the scenario step vocabulary plus
//!
//! - `say`: what is going on, in Flink's words (every step has one);
//! - `todo`: what the learner should do ("press k to kill tm-1");
//! - `await-user = { event = "task_manager_killed", tm = "tm-1", count = 1 }`: the step waits
//!   until the engine reports that event (its fields filtered by the other keys), so doing it by
//!   hand and letting the lesson do it (`n`: the step's action) are seen alike (a string matches
//!   the event's field or its first word: `to = "rocksdb"` matches "rocksdb + filesystem");
//! - `highlight = ["state", "output"]`: the panes that matter for the step;
//! - `predict = { question, choices, answer, explain }`: asked before the reveal; `answer` is the
//!   1-based number of the right choice.
//!
//! A step with an action and no `await-user` is done by the lesson when the step begins (a
//! `wait`, an `await`, an `expect` that checks the engine did what the text says). `--auto` plays
//! a lesson headless, doing every step itself and answering every prediction right, and fails when
//! an `expect` or an `await-user` does not hold: CI runs every shipped lesson that way, so the text
//! cannot drift from what the engine does.

use std::time::Duration;

use serde::Serialize;
use strum::{EnumCount, EnumIter, EnumString, IntoStaticStr, VariantNames};
use tokio::time::Instant;

use crate::cluster::Engine;
use crate::events::{Event, Stamped};
use crate::scenario::{self, Action, Flow, Player, Scenario, ScenarioError, Step, StepError};

/// The shipped lessons, in teaching order (embedded, so `ckptlab lesson` works from any directory).
pub const SHIPPED: &[(&str, &str)] = &[
    ("checkpoints-disabled", include_str!("../assets/lessons/checkpoints-disabled.toml")),
    ("exactly-once", include_str!("../assets/lessons/exactly-once.toml")),
    ("at-least-once-one-channel", include_str!("../assets/lessons/at-least-once-one-channel.toml")),
    ("at-least-once-overcounts", include_str!("../assets/lessons/at-least-once-overcounts.toml")),
    ("alignment-and-unaligned", include_str!("../assets/lessons/alignment-and-unaligned.toml")),
    ("expiring-checkpoints", include_str!("../assets/lessons/expiring-checkpoints.toml")),
    ("state-is-not-output", include_str!("../assets/lessons/state-is-not-output.toml")),
    ("state-backends", include_str!("../assets/lessons/state-backends.toml")),
    ("failure-and-restart", include_str!("../assets/lessons/failure-and-restart.toml")),
    ("exactly-once-to-the-end", include_str!("../assets/lessons/exactly-once-to-the-end.toml")),
];

/// How long an `await-user` step waits for its event after the lesson did the step itself.
const AWAIT_AFTER_DOING: Duration = Duration::from_secs(15);

/// The workbench's panes, by the names a lesson's `highlight` uses; the workbench focuses,
/// scrolls and marks them by this same enum (`tui::app::Pane`), so a name a lesson accepts is a
/// pane the screen knows: `tui::panes::spec` and `tui::layout`'s `place` match on it (a new variant
/// is one arm in each), and the layout's tests check every pane is drawn or left out with a reason.
/// `Status` is the status line (the job's state and the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, EnumString, IntoStaticStr, VariantNames, EnumCount, EnumIter)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Pane {
    Graph,
    State,
    Checkpoints,
    Output,
    Events,
    Input,
    Status,
}

/// An event the step waits for: its kind (the `event` name of `--events` JSON lines) and fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMatch {
    pub event: String,
    pub fields: Vec<(String, serde_json::Value)>,
    /// How many such events (a step that asks for three typed records).
    pub count: usize,
}

impl EventMatch {
    pub fn matches(&self, event: &Event) -> bool {
        let Ok(serde_json::Value::Object(obj)) = serde_json::to_value(event) else { return false };
        obj.get("event").and_then(|e| e.as_str()) == Some(self.event.as_str())
            && self.fields.iter().all(|(k, want)| obj.get(k).is_some_and(|got| same(got, want)))
    }

    /// Says it in words, for the lesson pane ("waiting for: task_manager_killed tm=tm-1").
    pub fn describe(&self) -> String {
        let mut s = self.event.replace('_', " ");
        for (k, v) in &self.fields {
            s.push_str(&format!(" {k}={}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())));
        }
        if self.count > 1 {
            s.push_str(&format!(" (x{})", self.count));
        }
        s
    }
}

/// A number in a lesson file matches a number in an event whatever its JSON type; a string
/// matches the field or its first word (`to = "rocksdb"` matches "rocksdb + filesystem ...").
fn same(got: &serde_json::Value, want: &serde_json::Value) -> bool {
    match (got, want) {
        (serde_json::Value::String(g), serde_json::Value::String(w)) => g == w || g.split_whitespace().next() == Some(w.as_str()),
        _ => match (got.as_f64(), want.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => got == want,
        },
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub question: String,
    pub choices: Vec<String>,
    /// Index (0-based) of the right choice.
    pub answer: usize,
    pub explain: String,
}

#[derive(Debug, Clone)]
pub struct LessonStep {
    pub line: usize,
    pub say: String,
    pub todo: Option<String>,
    pub highlight: Vec<Pane>,
    /// What the lesson does: at once, or on `n` when the step awaits the user.
    pub action: Option<Step>,
    pub await_user: Option<EventMatch>,
    pub predict: Option<Prediction>,
}

#[derive(Debug, Clone)]
pub struct Lesson {
    pub name: String,
    pub title: String,
    pub summary: String,
    pub minutes: u32,
    pub steps: Vec<LessonStep>,
    /// Its `[config]` and actions as a scenario: the cluster is set up, and checked, as for one.
    pub scenario: Scenario,
}

const LESSON_KEYS: &[&str] = &["say", "todo", "highlight", "await-user", "predict", "note"];

impl Lesson {
    /// A shipped lesson by name, or a lesson file by path.
    pub fn find(name_or_path: &str) -> Result<Lesson, ScenarioError> {
        if let Some((name, text)) = SHIPPED.iter().find(|(n, _)| *n == name_or_path) {
            return Lesson::parse(text, &format!("assets/lessons/{name}.toml"));
        }
        let path = std::path::Path::new(name_or_path);
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
                file: name_or_path.into(),
                line: 0,
                message: format!("cannot read: {e}"),
            })?;
            return Lesson::parse(&text, name_or_path);
        }
        Err(ScenarioError {
            file: name_or_path.into(),
            line: 0,
            message: format!("no such lesson; the lessons are: {}", SHIPPED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")),
        })
    }

    /// Parses a lesson; errors name the file and line, as a scenario's do.
    pub fn parse(text: &str, file: &str) -> Result<Lesson, ScenarioError> {
        let err = |line: usize, message: String| ScenarioError { file: file.to_string(), line, message };
        let mut doc: toml::Table = toml::from_str(text)
            .map_err(|e: toml::de::Error| err(e.span().map_or(0, |s| crate::config::line_of(text, s.start)), e.message().to_string()))?;
        let title = take_str(&mut doc, "title").ok_or_else(|| err(1, "a lesson needs `title = \"...\"`".into()))?;
        let summary = take_str(&mut doc, "summary").unwrap_or_default();
        let minutes = match doc.remove("minutes") {
            Some(toml::Value::Integer(m)) if (1..=60).contains(&m) => m as u32,
            None => 5,
            Some(_) => {
                return Err(err(
                    crate::config::line_of_key(text, "minutes").unwrap_or(1),
                    "`minutes` must be a whole number from 1 to 60".into(),
                ))
            }
        };
        let raw_steps = doc.remove("steps");
        // The rest (`name`, `description`, `[config]`) is a scenario's header; the steps' actions
        // become its steps, so `check` sees every `kill` against the cluster it runs on.
        let mut header = doc.clone();
        header.entry("name").or_insert_with(|| toml::Value::String(title.clone()));
        let base = Scenario::parse(&toml::to_string(&header).map_err(|e| err(1, e.to_string()))?, file).map_err(|mut e| {
            e.line = crate::config::line_of_key(text, "config").unwrap_or(e.line);
            e
        })?;
        let step_lines = step_lines(text);
        let Some(toml::Value::Array(raw_steps)) = raw_steps else {
            return Err(err(1, "a lesson needs steps: [[steps]] tables with `say = \"...\"`".into()));
        };
        let mut steps = Vec::new();
        for (i, raw) in raw_steps.into_iter().enumerate() {
            let line = step_lines.get(i).copied().unwrap_or(0);
            let toml::Value::Table(mut t) = raw else { return Err(err(line, "a step must be a table".into())) };
            let say = take_str(&mut t, "say")
                .ok_or_else(|| err(line, "every lesson step needs `say = \"...\"` (what is going on, for the learner)".into()))?;
            let todo = take_str(&mut t, "todo");
            let highlight = match t.remove("highlight") {
                None => Vec::new(),
                Some(toml::Value::Array(a)) => {
                    let mut out = Vec::new();
                    for v in a {
                        match v.as_str().map(str::parse::<Pane>) {
                            Some(Ok(p)) => out.push(p),
                            _ => return Err(err(line, format!("`highlight` names panes: {}", Pane::VARIANTS.join(", ")))),
                        }
                    }
                    out
                }
                Some(_) => return Err(err(line, format!("`highlight` is a list of panes: {}", Pane::VARIANTS.join(", ")))),
            };
            let await_user = match t.remove("await-user") {
                None => None,
                Some(v) => Some(parse_event_match(v).map_err(|m| err(line, format!("`await-user`: {m}")))?),
            };
            let predict = match t.remove("predict") {
                None => None,
                Some(v) => Some(parse_prediction(v).map_err(|m| err(line, format!("`predict`: {m}")))?),
            };
            let action = if t.keys().any(|k| k != "note") {
                let mut step = scenario::parse_step(&t, line).map_err(|m| err(line, with_lesson_keys(m)))?;
                step.line = line;
                step.partition_line = line;
                Some(step)
            } else {
                None
            };
            if await_user.is_some() && action.is_none() {
                return Err(err(
                    line,
                    "a step with `await-user` also names the action `n` does for the learner (e.g. `kill = \"tm-1\"`)".into(),
                ));
            }
            if predict.is_some() && (action.is_some() || await_user.is_some()) {
                return Err(err(line, "a `predict` step asks only: put the action that reveals the answer in the next step".into()));
            }
            steps.push(LessonStep { line, say, todo, highlight, action, await_user, predict });
        }
        let mut scenario = base;
        scenario.steps = steps.iter().filter_map(|s| s.action.clone()).collect();
        let name = std::path::Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or(file).to_string();
        Ok(Lesson { name, title, summary, minutes, steps, scenario })
    }
}

/// The line of each `[[steps]]` header, in order.
fn step_lines(text: &str) -> Vec<usize> {
    text.lines().enumerate().filter(|(_, l)| l.trim() == "[[steps]]").map(|(i, _)| i + 1).collect()
}

/// A step's error, with the lesson's own keys added when it lists the keys a step may have.
fn with_lesson_keys(e: StepError) -> String {
    if e.is_about_step_keys() {
        format!("{e} (and, in a lesson: {})", LESSON_KEYS.join(", "))
    } else {
        e.to_string()
    }
}

fn take_str(t: &mut toml::Table, key: &str) -> Option<String> {
    match t.remove(key) {
        Some(toml::Value::String(s)) => Some(s.trim().to_string()),
        Some(other) => {
            t.insert(key.to_string(), other);
            None
        }
        None => None,
    }
}

/// Why an `await-user` table is not an event to wait for (the lesson's file and line are added
/// by [`Lesson::parse`]).
#[derive(Debug, thiserror::Error)]
enum AwaitUserError {
    #[error("a table: {{ event = \"task_manager_killed\", tm = \"tm-1\" }}")]
    NotATable,
    #[error("needs `event = \"...\"`, an event name of --events (task_manager_killed, checkpoint_completed, record_produced, ...)")]
    NoEvent,
    #[error("`{event}` is not an engine event; allowed: {}", .allowed.join(", "))]
    UnknownEvent { event: String, allowed: &'static [&'static str] },
    #[error("`count` is a number from 1")]
    Count,
    #[error(transparent)]
    Field(#[from] serde_json::Error),
}

fn parse_event_match(v: toml::Value) -> Result<EventMatch, AwaitUserError> {
    let toml::Value::Table(mut t) = v else { return Err(AwaitUserError::NotATable) };
    let event = take_str(&mut t, "event").ok_or(AwaitUserError::NoEvent)?;
    let event = event.replace('-', "_");
    // An unknown kind would wait forever: a kind is known when serde reads it back (fields aside).
    if let Err(EventProbe::UnknownKind(allowed)) = probe_event_kind(&event) {
        return Err(AwaitUserError::UnknownEvent { event, allowed });
    }
    let count = match t.remove("count") {
        None => 1,
        Some(toml::Value::Integer(n)) if n >= 1 => n as usize,
        Some(_) => return Err(AwaitUserError::Count),
    };
    let mut fields = Vec::new();
    for (k, v) in t {
        let json = serde_json::to_value(&v)?;
        fields.push((k, json));
    }
    Ok(EventMatch { event, fields, count })
}

/// Why serde did not read `{ event = KIND }` back as an [`Event`]: the kind is unknown (with the
/// kinds serde knows), or something else (a field is missing: the kind itself is known).
#[derive(Debug)]
enum EventProbe {
    UnknownKind(&'static [&'static str]),
    Other,
}

impl std::fmt::Display for EventProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for EventProbe {}

impl serde::de::Error for EventProbe {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        EventProbe::Other
    }

    // The event tag is read as a variant name: serde says it is unknown here, typed, with the
    // list of the kinds it knows (not in a message to be searched).
    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        EventProbe::UnknownKind(expected)
    }
}

/// Reads `{ "event": kind }` as an [`Event`] through a deserializer whose error is typed.
fn probe_event_kind(kind: &str) -> Result<(), EventProbe> {
    use serde::de::value::MapDeserializer;
    use serde::Deserialize as _;
    let probe = MapDeserializer::<_, EventProbe>::new(std::iter::once(("event", kind)));
    Event::deserialize(probe).map(|_| ())
}

/// Why a `predict` table is not a question with choices.
#[derive(Debug, thiserror::Error)]
enum PredictionError {
    #[error("a table: {{ question, choices, answer, explain }}")]
    NotATable,
    #[error("needs `question`")]
    NoQuestion,
    #[error("needs `explain` (why the right answer is right)")]
    NoExplanation,
    #[error("choices are strings")]
    ChoiceNotAString,
    #[error("needs `choices = [\"0\", \"1\", \"2\"]`")]
    NoChoices,
    #[error("2 to 9 choices (the learner answers with 1-9)")]
    ChoiceCount,
    #[error("`answer` is the number of the right choice, 1 to {choices}")]
    Answer { choices: usize },
    #[error("unknown key `{0}`; allowed: question, choices, answer, explain")]
    UnknownKey(String),
}

fn parse_prediction(v: toml::Value) -> Result<Prediction, PredictionError> {
    let toml::Value::Table(mut t) = v else { return Err(PredictionError::NotATable) };
    let question = take_str(&mut t, "question").ok_or(PredictionError::NoQuestion)?;
    let explain = take_str(&mut t, "explain").ok_or(PredictionError::NoExplanation)?;
    let choices: Vec<String> = match t.remove("choices") {
        Some(toml::Value::Array(a)) => {
            a.into_iter().map(|c| c.as_str().map(str::to_string).ok_or(PredictionError::ChoiceNotAString)).collect::<Result<_, _>>()?
        }
        _ => return Err(PredictionError::NoChoices),
    };
    if !(2..=9).contains(&choices.len()) {
        return Err(PredictionError::ChoiceCount);
    }
    let answer = match t.remove("answer") {
        Some(toml::Value::Integer(n)) if n >= 1 && (n as usize) <= choices.len() => n as usize - 1,
        _ => return Err(PredictionError::Answer { choices: choices.len() }),
    };
    if let Some(k) = t.keys().next() {
        return Err(PredictionError::UnknownKey(k.clone()));
    }
    Ok(Prediction { question, choices, answer, explain })
}

/// How a step ended, as the lesson pane and `--auto` report it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepOutcome {
    pub step: usize,
    pub passed: bool,
    /// What the step did, in words (the narration).
    pub lines: Vec<String>,
    /// What did not hold, each with its line (`line 52: expected ...`): kept apart from the
    /// narration, so nothing downstream tells them by their words.
    pub failures: Vec<String>,
}

/// Waits until `want` has been seen `count` times on `events`, or the deadline.
pub async fn await_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Stamped>,
    want: &EventMatch,
    seen: &mut usize,
    deadline: Option<Instant>,
) -> Option<Event> {
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, events.recv()).await {
                Ok(e) => e,
                Err(_) => return None,
            },
            None => events.recv().await,
        };
        let e = next?;
        if want.matches(&e.event) {
            *seen += 1;
            if *seen >= want.count {
                return Some(e.event);
            }
        }
    }
}

/// Does a step the way the lesson does it (`n`, or `--auto`): plays its action and, for an
/// `await-user` step, waits for the event the learner's own doing would have caused.
pub async fn do_step(
    engine: &Engine,
    player: &mut Player,
    step: &LessonStep,
    events: Option<&mut tokio::sync::mpsc::UnboundedReceiver<Stamped>>,
    seen: &mut usize,
) -> StepOutcome {
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let failures_before = player.failures().len();
    let mut passed = true;
    if let Some(action) = &step.action {
        // Records the learner already typed for this step are not produced again.
        let mut action = action.clone();
        if let Action::Produce { values, .. } = &mut action.action {
            values.drain(..(*seen).min(values.len()));
        }
        if player.play(engine, &action, &mut |l| lines.push(l.trim().to_string())).await == Flow::Stop {
            passed = false;
        }
    }
    if let (Some(want), Some(events)) = (&step.await_user, events) {
        if *seen < want.count && await_event(events, want, seen, Some(Instant::now() + AWAIT_AFTER_DOING)).await.is_none() {
            passed = false;
            failures.push(format!(
                "line {}: the lesson did the step but the engine did not report `{}` within {}s: the lesson's await-user does not match what the engine does",
                step.line,
                want.describe(),
                AWAIT_AFTER_DOING.as_secs()
            ));
        }
    }
    player.drain();
    let new_failures = &player.failures()[failures_before..];
    if !new_failures.is_empty() {
        passed = false;
        failures.extend(new_failures.iter().map(ToString::to_string));
    }
    StepOutcome { step: step.line, passed, lines, failures }
}

/// What `ckptlab lesson NAME --auto` reports.
#[derive(Debug, Clone, Serialize)]
pub struct AutoReport {
    pub lesson: String,
    pub passed: bool,
    pub steps: usize,
    pub failures: Vec<String>,
    pub duration_ms: u64,
}

/// Plays a lesson headless: every step done by the lesson, every prediction answered right, every
/// expectation checked. `narrate` hears the text and what happened.
pub async fn play_auto(lesson: &Lesson, engine: &Engine, mut narrate: impl FnMut(String)) -> AutoReport {
    let started = Instant::now();
    let mut player = Player::start(engine, &mut narrate).await;
    let mut failures: Vec<String> = player.failures().iter().map(ToString::to_string).collect();
    let total = lesson.steps.len();
    for (i, step) in lesson.steps.iter().enumerate() {
        narrate(format!("── step {}/{} (line {})", i + 1, total, step.line));
        for l in step.say.lines() {
            narrate(format!("   {l}"));
        }
        if let Some(p) = &step.predict {
            narrate(format!("   predict: {}", p.question));
            for (n, c) in p.choices.iter().enumerate() {
                narrate(format!("     {}. {c}{}", n + 1, if n == p.answer { "   <- the lesson's answer" } else { "" }));
            }
            narrate(format!("   why: {}", p.explain));
            continue;
        }
        if let Some(todo) = &step.todo {
            narrate(format!("   to do: {todo} (done by the lesson)"));
        }
        // Subscribe before doing it, so the event the action causes is not missed.
        let mut events = step.await_user.as_ref().map(|_| engine.events().subscribe());
        let mut seen = 0;
        let outcome = do_step(engine, &mut player, step, events.as_mut(), &mut seen).await;
        for l in outcome.lines.iter().chain(&outcome.failures) {
            narrate(format!("   > {l}"));
        }
        if !outcome.passed {
            failures.extend(outcome.failures.iter().cloned());
            if failures.is_empty() {
                failures.push(format!("line {}: the step failed", step.line));
            }
        }
        if matches!(step.action.as_ref().map(|a| &a.action), Some(Action::Await { .. })) && !outcome.passed {
            break;
        }
    }
    failures.sort();
    failures.dedup();
    AutoReport {
        lesson: lesson.name.clone(),
        passed: failures.is_empty(),
        steps: total,
        failures,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}
