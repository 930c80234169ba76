//! The workbench's state and `update`: an [`Action`] changes the state and may queue requests for
//! the engine, which the event loop carries out. Nothing here draws or touches the engine, so every
//! key can be tested as key -> action -> state.

use std::collections::VecDeque;
use std::time::Duration;

use crossterm::event::{KeyEvent, KeyModifiers};

use super::action::Action;
use super::keymap::{Context, Keymap};
use super::theme::Theme;
use crate::cluster::view::ClusterView;
use crate::cluster::Command;
use crate::connectors::generator::GeneratorSpec;
use crate::duration::format_duration;
use crate::events::{Event, Stamped};

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
const LOG_KEEP: usize = 500;
const INPUT_MAX: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Graph,
    State,
    Checkpoints,
    Output,
    Events,
    Input,
}

impl Pane {
    const CYCLE: [Pane; 5] = [Pane::Graph, Pane::State, Pane::Checkpoints, Pane::Output, Pane::Events];

    fn index(self) -> usize {
        match self {
            Pane::Graph => 0,
            Pane::State => 1,
            Pane::Checkpoints => 2,
            Pane::Output => 3,
            Pane::Events => 4,
            Pane::Input => 5,
        }
    }
}

/// What the event loop must do for the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Produce(String),
    Engine(Command),
    StartGenerator(GeneratorSpec),
    StopGenerator,
    Pause(bool),
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
    pub scroll: [u16; 6],
    pub help: bool,
    pub generator_on: bool,
    pub rate_index: usize,
    pub log: VecDeque<(u64, String, LogKind)>,
    pub typed: VecDeque<TypedRecord>,
    pub requests: Vec<Request>,
    pub quit: bool,
    pub keymap: Keymap,
    pub theme: Theme,
    last_interval: Duration,
}

impl App {
    pub fn new(view: ClusterView, keymap: Keymap, theme: Theme, generator_rate: u64) -> Self {
        let last_interval = view.interval_ms.map(Duration::from_millis).unwrap_or(Duration::from_secs(5));
        let rate_index = RATES.iter().position(|r| *r >= generator_rate).unwrap_or(RATES.len() - 1);
        App {
            view,
            focus: Pane::Graph,
            focus_before_input: Pane::Graph,
            input: String::new(),
            selected_tm: 0,
            scroll: [0; 6],
            help: false,
            generator_on: false,
            rate_index,
            log: VecDeque::new(),
            typed: VecDeque::new(),
            requests: Vec::new(),
            quit: false,
            keymap,
            theme,
            last_interval,
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
        if self.help {
            // Any key closes help; a quit key still quits.
            let quits = [Context::Command, Context::Any].iter().any(|c| self.keymap.lookup(ev, *c) == Some(Action::Quit));
            return Some(if quits { Action::Quit } else { Action::CloseHelp });
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
    pub fn on_event(&mut self, e: &Stamped) {
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
            | Event::TaskManagerLost { .. }
            | Event::JobFailing { .. }
            | Event::JobFailed { .. }
            | Event::CheckpointFailed { .. }
            | Event::ConfigRejected { .. }
            | Event::CheckpointTriggerRefused { .. }
            | Event::TopicStatus { message: Some(_) } => LogKind::Bad,
            _ => LogKind::Info,
        };
        self.log(e.t_ms, e.event.describe(), kind);
    }

    pub fn log(&mut self, t_ms: u64, text: String, kind: LogKind) {
        if self.log.len() >= LOG_KEEP {
            self.log.pop_front();
        }
        self.log.push_back((t_ms, text, kind));
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

    fn selected_tm_name(&self) -> Option<(String, bool)> {
        self.view.task_managers.get(self.selected_tm).map(|t| (t.name.clone(), t.alive))
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
                Some((name, true)) => self.requests.push(Request::Engine(Command::KillTaskManager(name))),
                Some((name, false)) => self.notice(format!("{name} is already down; s starts it, 1-9 select another")),
                None => self.notice("no task manager to kill".into()),
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
                    Some((name, false)) => Some(name),
                    _ => None,
                };
                self.requests.push(Request::Engine(Command::StartTaskManager(name)));
            }
            Action::Checkpoint => self.requests.push(Request::Engine(Command::TriggerCheckpoint)),
            Action::Savepoint => self.requests.push(Request::Engine(Command::TriggerSavepoint { stop: false })),
            Action::StopWithSavepoint => self.requests.push(Request::Engine(Command::TriggerSavepoint { stop: true })),
            // EXACTLY_ONCE aligned -> EXACTLY_ONCE unaligned -> AT_LEAST_ONCE -> off -> ...
            Action::CycleMode => match (self.view.interval_ms.is_some(), self.view.mode.as_str(), self.view.unaligned) {
                (true, "EXACTLY_ONCE", false) => self.set("execution.checkpointing.unaligned.enabled", "true".into()),
                (true, "EXACTLY_ONCE", true) => {
                    // Unaligned is exactly-once only: switch it off first.
                    self.set("execution.checkpointing.unaligned.enabled", "false".into());
                    self.set("execution.checkpointing.mode", "AT_LEAST_ONCE".into());
                }
                (true, _, _) => self.set("execution.checkpointing.interval", "off".into()),
                (false, _, _) => {
                    self.set("execution.checkpointing.unaligned.enabled", "false".into());
                    self.set("execution.checkpointing.mode", "EXACTLY_ONCE".into());
                    self.set("execution.checkpointing.interval", format_duration(self.last_interval));
                }
            },
            Action::CycleBackend => {
                // The seed's three, in its order; the view's label names the current one.
                let next = if self.view.backend.contains("MemoryStateBackend") {
                    "fs"
                } else if self.view.backend.contains("FsStateBackend") {
                    "rocksdb"
                } else {
                    "memory"
                };
                self.requests.push(Request::Engine(Command::SwitchBackend(next.into())));
            }
            Action::IntervalUp | Action::IntervalDown => {
                let Some(ms) = self.view.interval_ms else {
                    return self.notice("checkpointing is off: m turns it on".into());
                };
                let cur = Duration::from_millis(ms);
                let next = if action == Action::IntervalUp {
                    INTERVALS.iter().find(|i| **i > cur).copied()
                } else {
                    INTERVALS.iter().rev().find(|i| **i < cur).copied()
                };
                match next {
                    Some(i) => self.set("execution.checkpointing.interval", format_duration(i)),
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
                let cur = Duration::from_millis(self.view.hop_delay_ms);
                let next = if action == Action::Slower {
                    SPEEDS.iter().find(|s| **s > cur).copied()
                } else {
                    SPEEDS.iter().rev().find(|s| **s < cur).copied()
                };
                if let Some(s) = next {
                    self.set("ckptlab.hop-delay", format_duration(s));
                }
            }
            Action::Pause => self.requests.push(Request::Pause(!self.view.paused)),
            Action::Resubmit => self.requests.push(Request::Engine(Command::Resubmit)),
            Action::FocusNext | Action::FocusPrev => {
                let i = Pane::CYCLE.iter().position(|p| *p == self.focus).unwrap_or(0);
                let n = Pane::CYCLE.len();
                self.focus = Pane::CYCLE[if action == Action::FocusNext { (i + 1) % n } else { (i + n - 1) % n }];
            }
            Action::ScrollUp | Action::ScrollDown => {
                // Logs (output, events) count lines back from the newest; tables rows down from the top.
                let log_like = matches!(self.focus, Pane::Output | Pane::Events);
                let back = (action == Action::ScrollUp) == log_like;
                let s = &mut self.scroll[self.focus.index()];
                *s = if back { s.saturating_add(1) } else { s.saturating_sub(1) };
            }
            Action::Help => self.help = true,
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

    /// Scroll offset of a pane: lines back from the newest for logs, rows from the top for tables.
    pub fn scroll_of(&self, pane: Pane) -> u16 {
        self.scroll[pane.index()]
    }
}
