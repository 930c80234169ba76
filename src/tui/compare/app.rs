//! The compare screen's state (`ckptlab compare`): each side's latest picture, the record being
//! typed, the selected task manager. key -> [`Action`] -> [`CompareApp::update`], which only queues
//! [`CompareRequest`]s: the loop in [`crate::tui::compare`] carries them out on every cluster at once.

use std::time::Duration;

use crossterm::event::{KeyEvent, KeyModifiers};

use crate::cluster::view::{ClusterView, JobStatus};
use crate::cluster::Command;
use crate::compare::{key_rows, KeyRow, SideMode};
use crate::connectors::generator::GeneratorSpec;
use crate::duration::format_duration;
use crate::tui::action::Action;
use crate::tui::app::{GENERATOR_KEYS, INPUT_MAX, SLOW_CHANNEL, SLOW_DELAYS};
use crate::tui::keymap::{Context, Keymap};
use crate::tui::theme::Theme;

/// Records per second of the compare screen's generator (the workbench's default rate).
pub const COMPARE_RATE: u64 = 50;

/// What a row of the verdict table stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// One key's figures.
    Key,
    /// Every key's, summed.
    Total,
}

/// One cluster as the screen shows it.
#[derive(Debug, Clone)]
pub struct SideView {
    /// `left`, `middle`, `right`.
    pub name: &'static str,
    /// Its mode, or the value of the varied setting (`--vary`): the heading.
    pub label: String,
    pub mode: SideMode,
    pub view: ClusterView,
}

/// What an update asks of the clusters.
#[derive(Debug, Clone, PartialEq)]
pub enum CompareRequest {
    /// A record to the shared topic (once: every cluster reads it).
    Produce(String),
    /// The same command to every cluster.
    Every(Command),
    /// A command to one cluster (its index in the lineup).
    Side(usize, Command),
    StartGenerator(GeneratorSpec),
    StopGenerator,
}

#[derive(Debug)]
pub struct CompareApp {
    pub sides: Vec<SideView>,
    pub keymap: Keymap,
    pub theme: Theme,
    /// The record being typed (`Some`: input mode).
    pub input: Option<String>,
    /// The task manager `k` and `s` act on, 1-based (the same in every cluster).
    pub selected_tm: u8,
    pub generator_on: bool,
    pub slow: Duration,
    pub help: bool,
    pub quit: bool,
    /// The last thing the screen has to say (what a key did, or why it did nothing).
    pub message: String,
    pub requests: Vec<CompareRequest>,
}

impl CompareApp {
    /// The sides run one mode and differ in a setting (`--vary`): the screen then shows what
    /// each side's output reader sees, since that is where such sides differ.
    pub fn varied(&self) -> bool {
        self.sides.iter().any(|s| s.label != s.mode.name())
    }

    pub fn new(sides: Vec<SideView>, keymap: Keymap, theme: Theme) -> Self {
        CompareApp {
            sides,
            keymap,
            theme,
            input: None,
            selected_tm: 1,
            generator_on: false,
            slow: Duration::ZERO,
            help: false,
            quit: false,
            message: "k kills tm-1 in every cluster, s starts it, i types a record to the shared topic".into(),
            requests: Vec::new(),
        }
    }

    pub fn context(&self) -> Context {
        if self.input.is_some() {
            Context::Input
        } else {
            Context::Compare
        }
    }

    /// A key press -> the action it means here; printable keys type in input mode.
    pub fn on_key(&self, ev: &KeyEvent) -> Option<Action> {
        if self.help {
            let quits = [Context::Compare, Context::Any].iter().any(|c| self.keymap.lookup(ev, *c) == Some(Action::Quit));
            return Some(if quits { Action::Quit } else { Action::CloseHelp });
        }
        if let Some(a) = self.keymap.lookup(ev, self.context()) {
            return Some(a);
        }
        match (self.input.is_some(), ev.code) {
            (true, crossterm::event::KeyCode::Char(c)) if !ev.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => {
                Some(Action::Char(c))
            }
            _ => None,
        }
    }

    /// A fresh picture of side `i`.
    pub fn refresh(&mut self, i: usize, view: ClusterView) {
        if let Some(s) = self.sides.get_mut(i) {
            s.view = view;
        }
    }

    /// The verdict rows, per key and TOTAL, every side in adjacent cells.
    pub fn rows(&self) -> Vec<KeyRow> {
        let empty = crate::audit::Verdict::default();
        let verdicts: Vec<&crate::audit::Verdict> = self.sides.iter().map(|s| s.view.verdict.as_ref().unwrap_or(&empty)).collect();
        key_rows(&verdicts)
    }

    /// [`Self::rows`], each with what it stands for: the keys', then the totals' ([`key_rows`]
    /// puts them last), so the screen tells them apart without reading the key's name.
    pub fn typed_rows(&self) -> Vec<(RowKind, KeyRow)> {
        let rows = self.rows();
        let last = rows.len().saturating_sub(1);
        rows.into_iter().enumerate().map(|(i, r)| (if i == last { RowKind::Total } else { RowKind::Key }, r)).collect()
    }

    fn tm_name(&self) -> String {
        crate::cluster::taskmanager::name(usize::from(self.selected_tm))
    }

    pub fn update(&mut self, action: Action) {
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.help = true,
            Action::CloseHelp | Action::ClosePopup => self.help = false,
            Action::FocusInput => self.input = Some(String::new()),
            Action::ExitInput => self.input = None,
            Action::Char(c) => {
                if let Some(text) = self.input.as_mut().filter(|t| t.chars().count() < INPUT_MAX) {
                    text.push(c);
                }
            }
            Action::Backspace => {
                if let Some(text) = self.input.as_mut() {
                    text.pop();
                }
            }
            Action::Submit => {
                let Some(text) = self.input.as_mut() else { return };
                let record = std::mem::take(text);
                if record.trim().is_empty() {
                    self.message = "an empty record is not produced; Esc leaves input mode".into();
                } else {
                    self.message = format!("produced {record:?} to the shared topic: every cluster reads it");
                    self.requests.push(CompareRequest::Produce(record));
                }
            }
            Action::SelectTm(n) => {
                self.selected_tm = n;
                self.message = format!("{} selected: k kills it in every cluster, s starts it", self.tm_name());
            }
            Action::Kill => {
                let name = self.tm_name();
                self.message = format!("killed {name} in every cluster at once");
                self.requests.push(CompareRequest::Every(Command::KillTaskManager(name)));
            }
            Action::Start => {
                let name = self.tm_name();
                self.message = format!("started {name} in every cluster");
                self.requests.push(CompareRequest::Every(Command::StartTaskManager(Some(name))));
            }
            Action::Resubmit => {
                // Only a FAILED job can be resubmitted (the workbench's R); the others run on.
                let failed: Vec<usize> = (0..self.sides.len()).filter(|&i| self.sides[i].view.status == JobStatus::Failed).collect();
                if failed.is_empty() {
                    self.message = "no cluster's job is FAILED: R resubmits a FAILED one".into();
                    return;
                }
                let names: Vec<&str> = failed.iter().map(|&i| self.sides[i].label.as_str()).collect();
                self.message = format!("resubmitted the FAILED job of {}: a new job, empty state (sources from the committed offsets, else auto-offset-reset)", names.join(", "));
                self.requests.extend(failed.into_iter().map(|i| CompareRequest::Side(i, Command::Resubmit)));
            }
            Action::Checkpoint => {
                self.message = "checkpoint triggered in every cluster that checkpoints".into();
                self.requests.push(CompareRequest::Every(Command::TriggerCheckpoint));
            }
            Action::ToggleGenerator => {
                self.generator_on = !self.generator_on;
                if self.generator_on {
                    let keys = GENERATOR_KEYS.iter().map(|k| k.to_string()).collect();
                    self.requests.push(CompareRequest::StartGenerator(GeneratorSpec {
                        rate: COMPARE_RATE,
                        duration: None,
                        keys,
                        partition: None,
                    }));
                    self.message = format!("generator on: {COMPARE_RATE} records/s to the shared topic");
                } else {
                    self.requests.push(CompareRequest::StopGenerator);
                    self.message = "generator off".into();
                }
            }
            Action::SlowChannel => {
                self.slow = SLOW_DELAYS.iter().find(|d| **d > self.slow).copied().unwrap_or(Duration::ZERO);
                self.message = format!("{SLOW_CHANNEL} delayed by {} in every cluster", format_duration(self.slow));
                self.requests.push(CompareRequest::Every(Command::Set {
                    key: format!("ckptlab.delays.{SLOW_CHANNEL}"),
                    value: format_duration(self.slow),
                }));
            }
            _ => {}
        }
    }
}
