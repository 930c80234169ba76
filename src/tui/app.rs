//! The workbench's state and `update`: an [`Action`] changes the state and may queue requests for
//! the engine, which the event loop carries out. Nothing here draws or touches the engine, so every
//! key can be tested as key -> action -> state.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crossterm::event::{KeyEvent, KeyModifiers};
use strum::{EnumCount, IntoEnumIterator};

use super::action::Action;
use super::keymap::{Context, Keymap};
use super::panes::{spec, Scroll};
use super::theme::Theme;
use crate::cluster::view::{ChannelView, ClusterView};
use crate::cluster::Command;
use crate::config::{Alignment, CheckpointingMode, OffsetReset, SeedBackend};
use crate::connectors::generator::GeneratorSpec;
use crate::duration::format_duration;
use crate::events::{Event, Stamped};
use crate::state::SavepointFormat;
use crate::types::TaskId;

/// Checkpoint intervals `+` / `-` step through.
pub const INTERVALS: &[Duration] = &[
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
];
/// Hop delays `[` / `]` step through (speed).
pub const SPEEDS: &[Duration] = &[
    Duration::ZERO,
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
];
/// Generator rates (records/s) `G` cycles through.
pub const RATES: &[u64] = &[2, 10, 50, 200, 1000, 5000];
/// Keys the generator cycles through.
pub const GENERATOR_KEYS: &[&str] = &["x", "y", "z"];
/// The channel the slow-channel key slows: source[1]'s output to every counter, so each counter
/// gets barrier n from source[0] first and, under AT_LEAST_ONCE, goes on counting source[0]'s
/// records until the late barrier arrives: those records are in the snapshot and are replayed.
pub const SLOW_CHANNEL: &str = "source[1]->counter[*]";
/// Extra latencies the slow-channel key cycles through.
pub const SLOW_DELAYS: &[Duration] = &[Duration::ZERO, Duration::from_millis(300), Duration::from_secs(1)];
/// Buffer timeouts the buffer key cycles through (Flink's default first; 0 flushes every record).
pub const BUFFER_TIMEOUTS: &[Duration] = &[Duration::from_millis(100), Duration::from_millis(10), Duration::from_millis(1), Duration::ZERO];
/// The workbench's checkpoint interval when nothing sets one: the seed's `checkpointInterval = 1000`
/// (Flink itself has no default: checkpointing is off until an interval is set).
pub const WORKBENCH_INTERVAL: Duration = crate::config::INTERVAL_WHEN_OFF;
const LOG_KEEP: usize = 500;
/// The longest record the input line takes by typing (the count is shown; a paste may be longer).
pub const INPUT_MAX: usize = 200;
/// Lines a page key scrolls.
const PAGE: u16 = 10;
/// How long a press's asked-for value stands in for the view's before the view is believed
/// (the engine applies a change within milliseconds; a refused one is forgotten at once).
const WANT_TTL: Duration = Duration::from_secs(3);
/// Records one paste may produce.
pub const PASTE_MAX_RECORDS: usize = 10_000;

/// The panes, as lessons name them too (one enum: a pane a lesson highlights is one drawn).
pub use crate::lesson::Pane;

/// What the event loop must do for the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Produce(String),
    Engine(Command),
    StartGenerator(GeneratorSpec),
    StopGenerator,
    Pause(bool),
    /// A fresh cluster with the settings in force.
    Reset,
    /// A fresh cluster with the shipped scenario N's `[config]`, then its steps played live.
    PlayScenario(usize),
    /// The lesson goes on: the current step done by the lesson (an `await-user` step), or the next.
    LessonNext,
    /// Close the lesson; the cluster stays as it is.
    LessonLeave,
    /// Why a key is overcounted or lost, record by record (the auditor's explanation, computed
    /// off the loop; it arrives through [`App::explained`]).
    Explain(String),
}

/// The mode `m` goes to: EXACTLY_ONCE aligned -> EXACTLY_ONCE unaligned -> AT_LEAST_ONCE -> off -> ...
fn next_mode(mode: CheckpointingMode) -> CheckpointingMode {
    match mode {
        CheckpointingMode::ExactlyOnce(Alignment::Aligned) => CheckpointingMode::ExactlyOnce(Alignment::Unaligned),
        CheckpointingMode::ExactlyOnce(Alignment::Unaligned) => CheckpointingMode::AtLeastOnce,
        CheckpointingMode::AtLeastOnce => CheckpointingMode::Off,
        CheckpointingMode::Off => CheckpointingMode::ExactlyOnce(Alignment::Aligned),
    }
}

/// The backend `b` goes to, in the seed's order: memory -> fs -> rocksdb -> memory.
fn next_backend(b: SeedBackend) -> SeedBackend {
    SeedBackend::iter().cycle().skip_while(|s| *s != b).nth(1).unwrap_or(b)
}

/// A value a key press asked for and the engine may not show yet: the next press applies to it,
/// not to the last drawn picture (`- - -` steps three times, `m m` twice).
#[derive(Debug, Clone)]
struct Want<T> {
    value: T,
    at: Instant,
}

/// The asked-for value while it stands, else what the view shows (and the want is dropped once
/// the view agrees or it is too old).
fn current<T: Clone + PartialEq>(want: &mut Option<Want<T>>, seen: T) -> T {
    match want {
        Some(w) if w.value != seen && w.at.elapsed() < WANT_TTL => w.value.clone(),
        _ => {
            *want = None;
            seen
        }
    }
}

fn want<T>(value: T) -> Option<Want<T>> {
    Some(Want { value, at: Instant::now() })
}

#[derive(Debug, Default)]
struct Wants {
    mode: Option<Want<CheckpointingMode>>,
    interval: Option<Want<Option<u64>>>,
    hop: Option<Want<u64>>,
    backend: Option<Want<SeedBackend>>,
    slow: Option<Want<u64>>,
    buffer: Option<Want<Option<u64>>>,
    /// Task managers a press killed or started, by name: alive or not.
    tms: HashMap<String, Want<bool>>,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub t_ms: u64,
    pub text: String,
    pub kind: LogKind,
    /// About checkpoints (the events pane's checkpoints filter).
    pub checkpoint: bool,
}

/// What the events pane shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventsFilter {
    #[default]
    All,
    Failures,
    Checkpoints,
}

impl EventsFilter {
    pub fn label(self) -> &'static str {
        match self {
            EventsFilter::All => "all",
            EventsFilter::Failures => "failures",
            EventsFilter::Checkpoints => "checkpoints",
        }
    }

    pub fn shows(self, l: &LogLine) -> bool {
        match self {
            EventsFilter::All => true,
            EventsFilter::Failures => l.kind == LogKind::Bad,
            EventsFilter::Checkpoints => l.checkpoint,
        }
    }
}

/// Consecutive completed checkpoints, shown as one line ("checkpoints 20-60 completed, 52 ms avg").
#[derive(Debug, Clone)]
struct CheckpointRun {
    first: u64,
    last: u64,
    count: u64,
    total_ms: u64,
    /// `log_pushed` when its line was written: the line is still the newest when equal.
    line_id: u64,
}

/// A scenario playing in the workbench: its steps, what has run, and the result at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioPlay {
    pub name: String,
    pub file: String,
    pub description: String,
    /// One line per step (with its note), as the file has them.
    pub steps: Vec<String>,
    /// What the run narrated so far (steps as they ran, expect results).
    pub narrated: Vec<String>,
    /// Set when the run ended: passed, and the failures.
    pub result: Option<(bool, Vec<String>)>,
}

/// A lesson open in the workbench ([`crate::lesson`]): what the learner reads, and where the
/// lesson is. The lesson's driver (in the frontend) does the steps; this is what it reported.
#[derive(Debug, Clone, PartialEq)]
pub struct LessonPlay {
    pub name: String,
    pub title: String,
    pub steps: Vec<LessonStepView>,
    /// The step the lesson is at.
    pub current: usize,
    /// The step shown (`p` looks back; `n` comes forward again).
    pub viewing: usize,
    pub phase: LessonPhase,
    /// What happened in each step (the driver's narration, expect results).
    pub lines: Vec<Vec<String>>,
    /// What did not hold in each step (expects, an await the engine did not answer).
    pub failures: Vec<Vec<String>>,
    /// The learner's answer to each step's prediction.
    pub answers: Vec<Option<usize>>,
    pub finished: bool,
    /// Why the last `n` did not go on (shown in the pane: the events pane may be out of sight).
    pub notice: Option<String>,
}

/// A lesson step as the pane shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LessonStepView {
    pub say: String,
    pub todo: Option<String>,
    pub highlight: Vec<Pane>,
    pub predict: Option<crate::lesson::Prediction>,
    /// What the step waits for (an `await-user` step).
    pub waits_for: Option<String>,
    /// The step's action, in words.
    pub does: Option<String>,
}

/// Where the current step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LessonPhase {
    /// The lesson is doing the step (a wait, an await, an expect, or `n` on an `await-user` step).
    Doing,
    /// Waiting for the learner to do it (or press n).
    AwaitingUser,
    /// Text or a prediction to read: n goes on.
    Reading,
    /// Done: whether what the step expected held.
    Done { passed: bool },
}

/// What the lesson's driver reports.
#[derive(Debug, Clone, PartialEq)]
pub enum LessonMsg {
    Entered(usize, LessonPhase),
    Line(usize, String),
    /// Something the step expected did not hold.
    Failure(usize, String),
    Done(usize, bool),
    Finished,
}

impl LessonPlay {
    pub fn new(lesson: &crate::lesson::Lesson) -> LessonPlay {
        let steps: Vec<LessonStepView> = lesson
            .steps
            .iter()
            .map(|s| LessonStepView {
                say: s.say.clone(),
                todo: s.todo.clone(),
                highlight: s.highlight.clone(),
                predict: s.predict.clone(),
                waits_for: s.await_user.as_ref().map(|w| w.describe()),
                does: s.action.as_ref().map(super::panes::scenario::step_text),
            })
            .collect();
        let n = steps.len();
        LessonPlay {
            name: lesson.name.clone(),
            title: lesson.title.clone(),
            steps,
            current: 0,
            viewing: 0,
            phase: LessonPhase::Doing,
            lines: vec![Vec::new(); n],
            failures: vec![Vec::new(); n],
            answers: vec![None; n],
            finished: false,
            notice: None,
        }
    }

    /// The current step asks a prediction the learner has not answered yet.
    pub fn unanswered(&self) -> Option<usize> {
        let p = self.steps.get(self.current)?.predict.as_ref()?;
        self.answers[self.current].is_none().then_some(p.choices.len())
    }

    pub fn on_msg(&mut self, msg: LessonMsg) {
        if matches!(msg, LessonMsg::Entered(..) | LessonMsg::Done(..)) {
            self.notice = None;
        }
        match msg {
            LessonMsg::Entered(i, phase) => {
                if self.viewing == self.current {
                    self.viewing = i;
                }
                self.current = i;
                self.phase = phase;
            }
            LessonMsg::Line(i, l) => {
                if let Some(lines) = self.lines.get_mut(i) {
                    lines.push(l);
                }
            }
            LessonMsg::Failure(i, l) => {
                if let Some(failures) = self.failures.get_mut(i) {
                    failures.push(l);
                }
            }
            LessonMsg::Done(i, passed) => {
                if i == self.current {
                    self.phase = LessonPhase::Done { passed };
                }
            }
            LessonMsg::Finished => self.finished = true,
        }
    }
}

/// A record typed into the input pane.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedRecord {
    pub value: String,
    pub partition: u32,
    pub offset: u64,
    /// Produced while some task of the job was not running.
    pub while_down: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Info,
    Good,
    Bad,
}

pub struct App {
    pub view: ClusterView,
    pub focus: Pane,
    focus_before_input: Pane,
    pub input: String,
    pub selected_tm: usize,
    pub scroll: [u16; Pane::COUNT],
    pub help: bool,
    /// The help overlay's page (space turns it).
    pub help_page: usize,
    pub generator_on: bool,
    pub rate_index: usize,
    pub log: VecDeque<LogLine>,
    pub typed: VecDeque<TypedRecord>,
    pub requests: Vec<Request>,
    pub quit: bool,
    pub keymap: Keymap,
    pub theme: Theme,
    last_interval: Duration,
    wants: Wants,
    /// The slow channel's extra latency last seen (the view has no channels while the job is down).
    slow_ms: u64,
    pub events_filter: EventsFilter,
    /// The reader of the Kafka sink's output topic the output pane shows where it is too narrow
    /// for both (`r` switches).
    pub output_reader: crate::connectors::transactions::IsolationLevel,
    ckpt_run: Option<CheckpointRun>,
    /// The checkpoint whose trigger line was logged last, and `log_pushed` then: its completion
    /// takes that line's place while it is still the newest.
    trigger_line: Option<(u64, u64)>,
    log_pushed: u64,
    /// `log_pushed` when the "a typed record is at most ..." notice was written: while equal it is
    /// still the newest line, and a further key press does not write it again.
    input_full_notice: Option<u64>,
    /// Shown above the panes until the next completed checkpoint: a restart found no checkpoint.
    pub banner: Option<String>,
    /// The key whose detail is open (Enter in the state pane).
    pub detail: Option<String>,
    /// The checkpoint whose anatomy is open (Enter in the checkpoints pane).
    pub anatomy: Option<u64>,
    /// The auditor's explanation of the open key, once it arrived.
    pub explanation: Option<Vec<String>>,
    /// The scenario picker (`o`): the selected entry of [`super::SCENARIOS`].
    pub picker: Option<usize>,
    pub scenario: Option<ScenarioPlay>,
    pub lesson: Option<LessonPlay>,
}

impl App {
    pub fn new(view: ClusterView, keymap: Keymap, theme: Theme, generator_rate: u64) -> Self {
        let last_interval = view.interval_ms.map(Duration::from_millis).unwrap_or(WORKBENCH_INTERVAL);
        let slow_ms = slow_of(&view).unwrap_or(0);
        let rate_index = RATES.iter().position(|r| *r >= generator_rate).unwrap_or(RATES.len() - 1);
        App {
            view,
            focus: Pane::Graph,
            focus_before_input: Pane::Graph,
            input: String::new(),
            selected_tm: 0,
            scroll: [0; Pane::COUNT],
            help: false,
            help_page: 0,
            generator_on: false,
            rate_index,
            log: VecDeque::new(),
            typed: VecDeque::new(),
            requests: Vec::new(),
            quit: false,
            keymap,
            theme,
            last_interval,
            wants: Wants::default(),
            slow_ms,
            events_filter: EventsFilter::All,
            output_reader: crate::connectors::transactions::IsolationLevel::ReadCommitted,
            ckpt_run: None,
            trigger_line: None,
            log_pushed: 0,
            input_full_notice: None,
            banner: None,
            detail: None,
            anatomy: None,
            explanation: None,
            picker: None,
            scenario: None,
            lesson: None,
        }
    }

    pub fn input_mode(&self) -> bool {
        self.focus == Pane::Input
    }

    pub fn context(&self) -> Context {
        if self.input_mode() {
            Context::Input
        } else {
            Context::Command
        }
    }

    /// A key press -> the action it means here (the keymap decides; in input mode printable keys type).
    pub fn on_key(&self, ev: &KeyEvent) -> Option<Action> {
        use crossterm::event::KeyCode;
        if self.picker.is_some() {
            return Some(match ev.code {
                KeyCode::Up | KeyCode::Char('K') => Action::PickPrev,
                KeyCode::Down | KeyCode::Char('j') => Action::PickNext,
                KeyCode::Enter => Action::Open,
                KeyCode::Char('c') if ev.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
                _ => Action::ClosePopup,
            });
        }
        if self.detail.is_some() || self.anatomy.is_some() {
            let quits = self.keymap.lookup(ev, Context::Any) == Some(Action::Quit);
            return Some(if quits { Action::Quit } else { Action::ClosePopup });
        }
        if self.help {
            // Any key closes help; a quit key still quits.
            let quits = [Context::Command, Context::Any].iter().any(|c| self.keymap.lookup(ev, *c) == Some(Action::Quit));
            let turns = matches!(ev.code, KeyCode::Char(' ') | KeyCode::PageDown | KeyCode::Right);
            return Some(if quits {
                Action::Quit
            } else if turns {
                Action::Help
            } else {
                Action::CloseHelp
            });
        }
        if let (Some(lesson), false) = (&self.lesson, self.input_mode()) {
            if let (Some(choices), KeyCode::Char(d @ '1'..='9')) = (lesson.unanswered(), ev.code) {
                if ((d as u8 - b'0') as usize) <= choices {
                    return Some(Action::LessonAnswer(d as u8 - b'0'));
                }
            }
            if let Some(a) = self.keymap.lookup(ev, Context::Lesson) {
                return Some(a);
            }
        }
        if let Some(a) = self.keymap.lookup(ev, self.context()) {
            return Some(a);
        }
        if self.input_mode() {
            if let crossterm::event::KeyCode::Char(c) = ev.code {
                if !ev.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) {
                    return Some(Action::Char(c));
                }
            }
        }
        None
    }

    /// A fresh picture of the cluster.
    pub fn refresh(&mut self, view: ClusterView) {
        self.view = view;
        if let Some(ms) = slow_of(&self.view) {
            self.slow_ms = ms;
        }
        if self.selected_tm >= self.view.task_managers.len() {
            self.selected_tm = self.view.task_managers.len().saturating_sub(1);
        }
        // A typed record stops being "waiting" once its source passed it.
        let positions: Vec<u64> = self.view.partitions.iter().map(|p| p.position).collect();
        for t in self.typed.iter_mut() {
            if positions.get(t.partition as usize).is_some_and(|p| *p > t.offset) {
                t.while_down = false;
            }
        }
        if let Some(i) = self.view.interval_ms {
            self.last_interval = Duration::from_millis(i);
        }
    }

    /// Engine events worth a line in the log (per-record and per-channel ones are left out).
    /// Checkpoints completing one after another share one line, so short intervals do not flood.
    pub fn on_event(&mut self, e: &Stamped) {
        match &e.event {
            Event::CheckpointCompleted { checkpoint, duration_ms, .. } => {
                self.banner = None;
                return self.checkpoint_completed(e.t_ms, *checkpoint, *duration_ms);
            }
            Event::CheckpointTriggered { .. } if self.ckpt_run.as_ref().is_some_and(|r| r.line_id == self.log_pushed) => {
                // A run of completions is going on: the next completion says it all.
                return;
            }
            Event::ConfigRejected { .. } => {
                // The engine refused a change: the next press starts from what it shows.
                self.wants = Wants::default();
            }
            Event::StateRestored { checkpoint: None, offset_reset: Some(OffsetReset::Latest), .. } => {
                self.banner = Some(
                    "no checkpoint had completed: state starts empty and the sources start at latest (auto.offset.reset), so the records produced while the job was down are lost. Flink does the same."
                        .into(),
                );
            }
            _ => {}
        }
        let kind = match &e.event {
            Event::RecordProduced { .. }
            | Event::SinkEmitted { .. }
            | Event::BarrierReceived { .. }
            | Event::SnapshotTaken { .. }
            | Event::BarrierInjected { .. }
            | Event::AlignmentStarted { .. }
            | Event::AlignmentFinished { .. } => return,
            Event::CheckpointCompleted { .. } | Event::JobRunning { .. } | Event::TaskManagerStarted { .. } => LogKind::Good,
            Event::BackendSwitched { checkpoint: None, .. } => LogKind::Bad,
            Event::TaskManagerKilled { .. }
            | Event::TaskManagerHung { .. }
            | Event::TaskManagerLost { .. }
            | Event::JobFailing { .. }
            | Event::JobFailed { .. }
            | Event::CheckpointFailed { .. }
            | Event::SavepointFailed { .. }
            | Event::StopWithSavepointInterrupted { .. }
            | Event::ConfigRejected { .. }
            | Event::CheckpointTriggerRefused { .. }
            | Event::TopicStatus { message: Some(_) } => LogKind::Bad,
            _ => LogKind::Info,
        };
        let checkpoint = matches!(
            &e.event,
            Event::CheckpointTriggered { .. }
                | Event::CheckpointFailed { .. }
                | Event::CheckpointTriggerQueued { .. }
                | Event::CheckpointTriggerRefused { .. }
                | Event::StateRestored { .. }
        );
        self.push_log(LogLine { t_ms: e.t_ms, text: e.event.describe(), kind, checkpoint });
        if let Event::CheckpointTriggered { checkpoint, .. } = &e.event {
            self.trigger_line = Some((*checkpoint, self.log_pushed));
        }
    }

    fn checkpoint_completed(&mut self, t_ms: u64, id: u64, duration_ms: u64) {
        let newest = self.log_pushed;
        match self.ckpt_run.as_mut() {
            Some(run) if run.line_id == newest => {
                run.last = id;
                run.count += 1;
                run.total_ms += duration_ms;
                let text = format!("checkpoints {}-{} completed, {} ms avg", run.first, run.last, run.total_ms / run.count);
                if let Some(line) = self.log.back_mut() {
                    line.t_ms = t_ms;
                    line.text = text;
                }
            }
            _ => {
                // The trigger line of this checkpoint, if it is the newest, becomes the completion.
                if self.trigger_line == Some((id, newest)) {
                    self.log.pop_back();
                }
                let text = format!("checkpoint {id} completed in {duration_ms} ms");
                self.push_log(LogLine { t_ms, text, kind: LogKind::Good, checkpoint: true });
                self.ckpt_run = Some(CheckpointRun { first: id, last: id, count: 1, total_ms: duration_ms, line_id: self.log_pushed });
            }
        }
    }

    pub fn log(&mut self, t_ms: u64, text: String, kind: LogKind) {
        self.push_log(LogLine { t_ms, text, kind, checkpoint: false });
    }

    fn push_log(&mut self, line: LogLine) {
        if self.log.len() >= LOG_KEEP {
            self.log.pop_front();
        }
        self.log.push_back(line);
        self.log_pushed += 1;
    }

    /// The log lines the events filter lets through, oldest first.
    pub fn visible_log(&self) -> impl Iterator<Item = &LogLine> {
        self.log.iter().filter(|l| self.events_filter.shows(l))
    }

    /// A pasted block (bracketed paste): in input mode every non-empty line is a record.
    pub fn paste(&mut self, text: &str) {
        if !self.input_mode() {
            return self.notice("press i first: a paste in input mode makes each line a record".into());
        }
        // Terminals (and tmux) paste line ends as carriage returns: either ends a record.
        let lines: Vec<&str> = text.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()).collect();
        if lines.len() > PASTE_MAX_RECORDS {
            self.notice(format!("pasted {} lines: the first {PASTE_MAX_RECORDS} are produced", lines.len()));
        }
        let n = lines.len().min(PASTE_MAX_RECORDS);
        for l in &lines[..n] {
            self.requests.push(Request::Produce(l.to_string()));
        }
        let t = self.view.time_ms;
        self.log(t, format!("pasted {n} record(s), one per line"), LogKind::Info);
    }

    /// The engine was replaced by a fresh cluster.
    pub fn reset(&mut self, view: ClusterView, why: &str) {
        self.typed.clear();
        self.wants = Wants::default();
        self.banner = None;
        self.detail = None;
        self.anatomy = None;
        self.generator_on = false;
        self.scroll = [0; Pane::COUNT];
        self.selected_tm = 0;
        self.ckpt_run = None;
        self.refresh(view);
        let t = self.view.time_ms;
        self.log(t, why.to_string(), LogKind::Info);
    }

    /// The auditor's explanation of `key` arrived (kept only if that key is still open).
    pub fn explained(&mut self, key: &str, lines: Vec<String>) {
        if self.detail.as_deref() == Some(key) {
            self.explanation = Some(lines);
        }
    }

    /// A line the playing scenario narrated.
    pub fn scenario_line(&mut self, line: String) {
        if let Some(s) = self.scenario.as_mut() {
            s.narrated.push(line);
        }
    }

    /// The loop produced a typed record.
    pub fn produced(&mut self, value: String, partition: u32, offset: u64) {
        let while_down = !self.view.all_tasks_running;
        if self.typed.len() >= LOG_KEEP {
            self.typed.pop_front();
        }
        self.typed.push_back(TypedRecord { value, partition, offset, while_down });
    }

    /// Typed records produced while the job was down and not consumed yet.
    pub fn waiting(&self) -> impl Iterator<Item = &TypedRecord> {
        self.typed.iter().filter(|t| t.while_down)
    }

    /// The selected task manager and whether it is alive, as the last press left it.
    fn selected_tm_name(&mut self) -> Option<(String, bool)> {
        let (name, seen) = self.view.task_managers.get(self.selected_tm).map(|t| (t.name.clone(), t.alive))?;
        let mut w = self.wants.tms.remove(&name);
        let alive = current(&mut w, seen);
        if let Some(w) = w {
            self.wants.tms.insert(name.clone(), w);
        }
        Some((name, alive))
    }

    /// Whether the selected task manager hangs (its process runs: k can still kill it).
    fn selected_hangs(&self) -> bool {
        self.view.task_managers.get(self.selected_tm).is_some_and(|t| t.process == crate::cluster::view::TmProcess::Hung && !t.lost)
    }

    /// The mode, interval, speed, backend, slow channel and buffer timeout the last press asked
    /// for (or the view's, when no press is pending).
    pub fn mode_now(&mut self) -> CheckpointingMode {
        let seen = self.view.mode;
        current(&mut self.wants.mode, seen)
    }

    fn interval_now(&mut self) -> Option<u64> {
        let seen = self.view.interval_ms;
        current(&mut self.wants.interval, seen)
    }

    fn hop_now(&mut self) -> u64 {
        let seen = self.view.hop_delay_ms;
        current(&mut self.wants.hop, seen)
    }

    fn backend_now(&mut self) -> SeedBackend {
        let seen = SeedBackend::of(self.view.backend);
        current(&mut self.wants.backend, seen)
    }

    /// The slow channel's extra latency in ms, as asked for.
    pub fn slow_now(&mut self) -> u64 {
        let seen = self.slow_ms;
        current(&mut self.wants.slow, seen)
    }

    fn buffer_now(&mut self) -> Option<u64> {
        let seen = self.view.buffer_timeout_ms;
        current(&mut self.wants.buffer, seen)
    }

    /// `n` in a lesson: forward through steps looked back at, else the lesson goes on (a
    /// prediction must be answered first; a step the lesson is doing finishes first).
    fn lesson_next(&mut self) {
        let Some(l) = self.lesson.as_mut() else { return };
        if l.viewing < l.current {
            l.viewing += 1;
            return;
        }
        let why_not = if l.finished {
            Some("the lesson is over: L leaves it (the cluster stays)".to_string())
        } else if let Some(n) = l.unanswered() {
            Some(format!("predict first: press 1 to {n}"))
        } else if l.phase == LessonPhase::Doing {
            Some("the lesson is doing this step; n goes on when it is done".to_string())
        } else {
            None
        };
        l.notice = why_not.clone();
        match why_not {
            Some(text) => self.notice(text),
            None => self.requests.push(Request::LessonNext),
        }
    }

    fn notice(&mut self, text: String) {
        let t = self.view.time_ms;
        self.log(t, text, LogKind::Bad);
    }

    fn set(&mut self, key: &str, value: String) {
        self.requests.push(Request::Engine(Command::Set { key: key.into(), value }));
    }

    /// Whether something moves on screen (then the loop ticks; otherwise it sleeps).
    pub fn animating(&self) -> bool {
        let v = &self.view;
        v.channels.iter().any(|c| c.in_flight > 0 || !c.barriers.is_empty() || c.buffered > 0)
            || !v.pending_checkpoints.is_empty()
            || v.task_managers.iter().any(|t| t.heartbeat_timeout_in_ms.is_some())
            || v.restart_in_ms.is_some()
            || self.generator_on
            || v.generators_running > 0
    }

    pub fn update(&mut self, action: Action) {
        match action {
            Action::FocusInput => {
                if !self.input_mode() {
                    self.focus_before_input = self.focus;
                }
                self.focus = Pane::Input;
            }
            Action::ExitInput => self.focus = self.focus_before_input,
            Action::Char(c) => {
                if self.input.chars().count() < INPUT_MAX {
                    self.input.push(c);
                } else if self.input_full_notice != Some(self.log_pushed) {
                    self.notice(format!("a typed record is at most {INPUT_MAX} characters (a paste may be longer): Enter produces it"));
                    self.input_full_notice = Some(self.log_pushed);
                }
            }
            Action::Backspace => {
                self.input.pop();
            }
            Action::Submit => {
                let value = self.input.trim().to_string();
                if value.is_empty() {
                    self.notice("type a record first, then Enter".into());
                } else {
                    self.requests.push(Request::Produce(value));
                    self.input.clear();
                }
            }
            Action::Kill => match self.selected_tm_name() {
                Some((name, true)) => {
                    self.wants.tms.insert(name.clone(), Want { value: false, at: Instant::now() });
                    self.requests.push(Request::Engine(Command::KillTaskManager(name)))
                }
                // A hung process can still be killed: its connections close then.
                Some((name, false)) if self.selected_hangs() => {
                    self.requests.push(Request::Engine(Command::KillTaskManager(name)))
                }
                Some((name, false)) => self.notice(format!("{name} is already down; s starts it, 1-9 select another")),
                None => self.notice("no task manager to kill".into()),
            },
            Action::KillBeforeCommit => match self.selected_tm_name() {
                Some((_, true)) if self.view.interval_ms.is_none() => {
                    self.notice("kill before commit waits for a checkpoint, and checkpointing is off: m sets a mode".into())
                }
                Some((name, true)) => {
                    let t = self.view.time_ms;
                    self.log(
                        t,
                        format!("{name} dies when the next checkpoint completes, before its sink hears of it (its pre-committed transaction stays uncommitted)"),
                        LogKind::Info,
                    );
                    self.requests.push(Request::Engine(Command::KillBeforeCommit(name)))
                }
                Some((name, false)) => self.notice(format!("{name} is already down; s starts it, 1-9 select another")),
                None => self.notice("no task manager to kill".into()),
            },
            Action::Hang => match self.selected_tm_name() {
                Some((name, true)) => {
                    self.wants.tms.insert(name.clone(), Want { value: false, at: Instant::now() });
                    self.requests.push(Request::Engine(Command::HangTaskManager(name)))
                }
                Some((name, false)) => self.notice(format!("{name} is already down; k kills it, s starts it, 1-9 select another")),
                None => self.notice("no task manager to hang".into()),
            },
            Action::SelectTm(n) => {
                let i = usize::from(n).saturating_sub(1);
                if i < self.view.task_managers.len() {
                    self.selected_tm = i;
                } else {
                    self.notice(format!("there is no tm-{n}; s starts a new task manager"));
                }
            }
            Action::Start => {
                let name = match self.selected_tm_name() {
                    Some((name, false)) => {
                        self.wants.tms.insert(name.clone(), Want { value: true, at: Instant::now() });
                        Some(name)
                    }
                    _ => None,
                };
                self.requests.push(Request::Engine(Command::StartTaskManager(name)));
            }
            Action::Checkpoint => self.requests.push(Request::Engine(Command::TriggerCheckpoint)),
            // Flink's default savepoint format (SavepointFormatType.DEFAULT = CANONICAL, :43).
            Action::Savepoint => {
                self.requests.push(Request::Engine(Command::TriggerSavepoint { stop: false, format: SavepointFormat::Canonical }))
            }
            Action::NativeSavepoint => {
                self.requests.push(Request::Engine(Command::TriggerSavepoint { stop: false, format: SavepointFormat::Native }))
            }
            Action::StopWithSavepoint => {
                self.requests.push(Request::Engine(Command::TriggerSavepoint { stop: true, format: SavepointFormat::Canonical }))
            }
            Action::CycleMode => {
                let now = self.mode_now();
                let next = next_mode(now);
                // Only what changes, in an order the engine accepts step by step.
                for (key, value) in next.changes_from(now, self.last_interval) {
                    self.set(key, value);
                }
                if next == CheckpointingMode::Off {
                    self.wants.interval = want(None);
                } else if now == CheckpointingMode::Off {
                    self.wants.interval = want(Some(self.last_interval.as_millis() as u64));
                }
                self.wants.mode = want(next);
            }
            Action::CycleBackend => {
                let next = next_backend(self.backend_now());
                self.wants.backend = want(next);
                self.requests.push(Request::Engine(Command::SwitchBackend(next)));
            }
            Action::IntervalUp | Action::IntervalDown => {
                let Some(ms) = self.interval_now() else {
                    return self.notice("checkpointing is off: m turns it on".into());
                };
                let cur = Duration::from_millis(ms);
                let next = if action == Action::IntervalUp {
                    INTERVALS.iter().find(|i| **i > cur).copied()
                } else {
                    INTERVALS.iter().rev().find(|i| **i < cur).copied()
                };
                match next {
                    Some(i) => {
                        self.wants.interval = want(Some(i.as_millis() as u64));
                        self.last_interval = i;
                        self.set("execution.checkpointing.interval", format_duration(i));
                    }
                    None => self.notice(format!("interval stays at {}", format_duration(cur))),
                }
            }
            Action::ToggleGenerator => {
                self.generator_on = !self.generator_on;
                self.requests.push(if self.generator_on { Request::StartGenerator(self.generator_spec()) } else { Request::StopGenerator });
            }
            Action::CycleRate => {
                self.rate_index = (self.rate_index + 1) % RATES.len();
                if self.generator_on {
                    self.requests.push(Request::StopGenerator);
                    self.requests.push(Request::StartGenerator(self.generator_spec()));
                }
            }
            Action::Slower | Action::Faster => {
                let cur = Duration::from_millis(self.hop_now());
                let next = if action == Action::Slower {
                    SPEEDS.iter().find(|s| **s > cur).copied()
                } else {
                    SPEEDS.iter().rev().find(|s| **s < cur).copied()
                };
                if let Some(s) = next {
                    self.wants.hop = want(s.as_millis() as u64);
                    self.set("ckptlab.hop-delay", format_duration(s));
                }
            }
            Action::SlowChannel => {
                if !self.view.channels.iter().any(|c| c.from == TaskId::Source(1)) && self.view.all_tasks_running {
                    return self.notice(
                        "no source[1]: with one source subtask each counter has one input channel, and at-least-once equals exactly-once"
                            .into(),
                    );
                }
                let cur = Duration::from_millis(self.slow_now());
                let next = SLOW_DELAYS.iter().find(|d| **d > cur).copied().unwrap_or(Duration::ZERO);
                self.wants.slow = want(next.as_millis() as u64);
                self.set(&format!("ckptlab.delays.{SLOW_CHANNEL}"), format_duration(next));
            }
            Action::BufferTimeout => {
                let cur = self.buffer_now().map(Duration::from_millis);
                let next = match cur.and_then(|c| BUFFER_TIMEOUTS.iter().position(|b| *b == c)) {
                    Some(i) => BUFFER_TIMEOUTS[(i + 1) % BUFFER_TIMEOUTS.len()],
                    None => BUFFER_TIMEOUTS[0],
                };
                self.wants.buffer = want(Some(next.as_millis() as u64));
                if cur.is_none() {
                    self.set("execution.buffer-timeout.enabled", "true".into());
                }
                self.set("execution.buffer-timeout.interval", format_duration(next));
            }
            Action::Reset => {
                self.generator_on = false;
                self.requests.push(Request::Reset);
            }
            Action::OpenScenario => self.picker = Some(0),
            Action::PickPrev => {
                if let Some(p) = self.picker.as_mut() {
                    *p = p.saturating_sub(1);
                }
            }
            Action::PickNext => {
                if let Some(p) = self.picker.as_mut() {
                    *p = (*p + 1).min(super::SCENARIOS.len().saturating_sub(1));
                }
            }
            Action::LessonNext => self.lesson_next(),
            Action::LessonPrev => {
                if let Some(l) = self.lesson.as_mut() {
                    l.viewing = l.viewing.saturating_sub(1);
                }
            }
            Action::LessonAnswer(d) => {
                if let Some(l) = self.lesson.as_mut() {
                    if l.unanswered().is_some() {
                        let i = l.current;
                        l.answers[i] = Some(d as usize - 1);
                        l.notice = None;
                    }
                }
            }
            Action::LessonLeave => {
                if let Some(l) = self.lesson.take() {
                    self.requests.push(Request::LessonLeave);
                    let t = self.view.time_ms;
                    self.log(t, format!("left the lesson {}; the cluster stays as it is", l.name), LogKind::Info);
                }
            }
            Action::Open => {
                if let Some(i) = self.picker.take() {
                    self.generator_on = false;
                    self.requests.push(Request::PlayScenario(i));
                } else if self.focus == Pane::State {
                    let row = self.scroll_of(Pane::State) as usize;
                    self.detail = self.view.verdict.as_ref().and_then(|v| v.keys.keys().nth(row).cloned());
                    self.explanation = None;
                    match self.detail.clone() {
                        Some(key) => self.requests.push(Request::Explain(key)),
                        None => self.notice("no key to open: the state pane is empty".into()),
                    }
                } else if self.focus == Pane::Checkpoints {
                    // The pane lists the newest first; its top row is the selected one.
                    let row = self.scroll_of(Pane::Checkpoints) as usize;
                    self.anatomy = self.view.checkpoint_history.iter().rev().nth(row).map(|c| c.id);
                    if self.anatomy.is_none() {
                        self.notice("no checkpoint to open yet: the history is empty".into());
                    }
                }
            }
            Action::ClosePopup => {
                self.picker = None;
                self.detail = None;
                self.anatomy = None;
                self.explanation = None;
            }
            Action::EventsFilter => {
                self.events_filter = match self.events_filter {
                    EventsFilter::All => EventsFilter::Failures,
                    EventsFilter::Failures => EventsFilter::Checkpoints,
                    EventsFilter::Checkpoints => EventsFilter::All,
                };
                self.scroll[Pane::Events as usize] = 0;
            }
            Action::SwitchReader => {
                use crate::connectors::transactions::IsolationLevel;
                if self.view.output_readers.is_none() {
                    self.notice("r switches the output topic's readers: only the Kafka sink has them (job.sink = kafka)".into());
                } else {
                    self.output_reader = match self.output_reader {
                        IsolationLevel::ReadCommitted => IsolationLevel::ReadUncommitted,
                        IsolationLevel::ReadUncommitted => IsolationLevel::ReadCommitted,
                    };
                    self.scroll[Pane::Output as usize] = 0;
                }
            }
            Action::Pause => self.requests.push(Request::Pause(!self.view.paused)),
            Action::Resubmit => self.requests.push(Request::Engine(Command::Resubmit)),
            Action::FocusNext | Action::FocusPrev => {
                // Tab and Shift-Tab go round the panes that are tab stops (the input line has `i`).
                let cycle: Vec<Pane> = Pane::iter().filter(|p| spec(*p).tab_stop).collect();
                let i = cycle.iter().position(|p| *p == self.focus).unwrap_or(0);
                let n = cycle.len();
                self.focus = cycle[if action == Action::FocusNext { (i + 1) % n } else { (i + n - 1) % n }];
            }
            Action::ScrollUp | Action::ScrollDown | Action::PageUp | Action::PageDown | Action::Home | Action::End => {
                // Logs (output, events) count lines back from the newest; tables rows down from
                // the top. Bounded at both ends: a pane never scrolls past its content.
                let log_like = spec(self.focus).scroll == Scroll::Log;
                let max = self.scroll_max(self.focus);
                let up = matches!(action, Action::ScrollUp | Action::PageUp | Action::Home);
                let step = match action {
                    Action::ScrollUp | Action::ScrollDown => 1,
                    Action::PageUp | Action::PageDown => PAGE,
                    _ => u16::MAX,
                };
                let back = up == log_like;
                let s = &mut self.scroll[self.focus as usize];
                *s = if back { s.saturating_add(step).min(max) } else { s.saturating_sub(step).min(max) };
            }
            Action::Help => {
                // `?` opens at the first page; space on an open help turns it.
                self.help_page = if self.help { self.help_page + 1 } else { 0 };
                self.help = true;
            }
            Action::CloseHelp => self.help = false,
            Action::Quit => self.quit = true,
        }
    }

    pub fn rate(&self) -> u64 {
        RATES[self.rate_index]
    }

    fn generator_spec(&self) -> GeneratorSpec {
        GeneratorSpec { rate: self.rate(), duration: None, keys: GENERATOR_KEYS.iter().map(|k| k.to_string()).collect(), partition: None }
    }

    /// Scroll offset of a pane: lines back from the newest for logs, rows from the top for tables
    /// (in the state pane: the selected key's row). Never past the content, even if it shrank.
    pub fn scroll_of(&self, pane: Pane) -> u16 {
        self.scroll[pane as usize].min(self.scroll_max(pane))
    }

    /// The farthest a pane can scroll: its last line or row.
    fn scroll_max(&self, pane: Pane) -> u16 {
        let rows = (spec(pane).length)(self);
        rows.saturating_sub(1).min(u16::MAX as usize) as u16
    }
}

/// One of the channels [`SLOW_CHANNEL`] slows (source[1] -> counter[0]), named as the engine
/// names tasks ([`TaskId`]'s display).
pub fn slow_channel(v: &ClusterView) -> Option<&ChannelView> {
    v.channels.iter().find(|c| c.from == TaskId::Source(1) && c.to == TaskId::Counter(0))
}

/// The slow channel's extra latency in the view (`None` while no such channel is deployed).
fn slow_of(v: &ClusterView) -> Option<u64> {
    slow_channel(v).map(|c| c.delay_ms)
}
