//! The keymap: the one table that key handling, the footer hints and the help overlay all read.
//! Defaults below; `conf/keys.toml` rebinds by action name (`kill = "x"`, `checkpoint = "F7"`).

use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use strum::IntoEnumIterator;

use super::action::Action;

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Command mode (the default focus).
    Command,
    /// Typing a record.
    Input,
    /// A lesson is open (checked before command mode).
    Lesson,
    /// Everywhere.
    Any,
    /// The compare screen (`ckptlab compare`): a key acts on every cluster at once.
    Compare,
}

/// Why a key's text (`"Ctrl-c"`, `"F5"`) is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("`{text}`: Ctrl- takes one letter")]
    CtrlTakesOneLetter { text: String },
    #[error("`{text}` is not a key; examples: k, K, F5, Ctrl-c, Enter, Esc, Tab, Shift-Tab, Up, Space")]
    NotAKey { text: String },
}

/// Where in a keys file something is: its origin (`conf/keys.toml`) and the line, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub origin: String,
    pub line: Option<usize>,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.origin),
            None => write!(f, "{}", self.origin),
        }
    }
}

/// Why `conf/keys.toml` was not applied; each names the file and line, the table and the action.
#[derive(Debug, thiserror::Error)]
pub enum KeymapError {
    #[error("{path}: {source}")]
    Read { path: &'static str, source: std::io::Error },
    #[error("{at}: {message}")]
    Syntax { at: At, message: String },
    #[error("{at}: unknown table [{table}]; allowed: [command], [input], [lesson], [any], [compare]")]
    UnknownTable { at: At, table: String },
    #[error("{at}: [{table}] must be a table")]
    NotATable { at: At, table: String },
    #[error("{at}: [{table}] {name}: unknown action; allowed: {}", action_names().join(", "))]
    UnknownAction { at: At, table: String, name: String },
    #[error("{at}: [{table}] {name} must be a key string such as \"x\"")]
    NotAKeyString { at: At, table: String, name: String },
    #[error("{at}: [{table}] {name}: {key}")]
    BadKey { at: At, table: String, name: String, key: KeyError },
    /// Two actions on one key where both apply (`kill = "s"` would hide start).
    #[error(
        "{at}: [{table}] {name} = \"{key}\": that key also does {} ({}); give one of them another key",
        action_name(*.other),
        context_name(*.other_context)
    )]
    Clash { at: At, table: String, name: String, key: String, other: Action, other_context: Context },
}

/// A key with its modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub const fn plain(code: KeyCode) -> Self {
        Key { code, mods: KeyModifiers::NONE }
    }

    pub const fn ch(c: char) -> Self {
        Key::plain(KeyCode::Char(c))
    }

    pub const fn ctrl(c: char) -> Self {
        Key { code: KeyCode::Char(c), mods: KeyModifiers::CONTROL }
    }

    /// Parses `"k"`, `"K"`, `"F5"`, `"Ctrl-c"`, `"Enter"`, `"Esc"`, `"Tab"`, `"Shift-Tab"`, `"Up"`, `"Space"`.
    pub fn parse(text: &str) -> Result<Key, KeyError> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("Ctrl-").or_else(|| t.strip_prefix("ctrl-")) {
            let mut chars = rest.chars();
            return match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(Key::ctrl(c.to_ascii_lowercase())),
                _ => Err(KeyError::CtrlTakesOneLetter { text: text.to_string() }),
            };
        }
        let code = match t {
            "Enter" => KeyCode::Enter,
            "Esc" => KeyCode::Esc,
            "Tab" => KeyCode::Tab,
            "Shift-Tab" | "BackTab" => KeyCode::BackTab,
            "Up" => KeyCode::Up,
            "Down" => KeyCode::Down,
            "Left" => KeyCode::Left,
            "Right" => KeyCode::Right,
            "Space" | " " => KeyCode::Char(' '),
            "Backspace" => KeyCode::Backspace,
            "PageUp" => KeyCode::PageUp,
            "PageDown" => KeyCode::PageDown,
            "Home" => KeyCode::Home,
            "End" => KeyCode::End,
            f if f.len() >= 2 && f.starts_with('F') && f[1..].parse::<u8>().is_ok() => KeyCode::F(f[1..].parse().unwrap_or(1)),
            one if one.chars().count() == 1 => KeyCode::Char(one.chars().next().unwrap_or(' ')),
            _ => return Err(KeyError::NotAKey { text: text.to_string() }),
        };
        Ok(Key::plain(code))
    }

    /// How the footer and help show it.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::F(n) => format!("F{n}"),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Backspace => "Bksp".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            other => format!("{other:?}"),
        };
        if self.mods.contains(KeyModifiers::CONTROL) {
            format!("^{}", base.to_uppercase())
        } else {
            base
        }
    }

    fn matches(&self, ev: &KeyEvent) -> bool {
        let mods = ev.modifiers - KeyModifiers::SHIFT;
        let own = self.mods - KeyModifiers::SHIFT;
        let code_eq = match (self.code, ev.code) {
            (KeyCode::Char(a), KeyCode::Char(b)) => a == b || (own.contains(KeyModifiers::CONTROL) && a.eq_ignore_ascii_case(&b)),
            (a, b) => a == b,
        };
        code_eq && mods == own
    }
}

/// One binding.
#[derive(Debug, Clone)]
pub struct Binding {
    pub key: Key,
    pub action: Action,
    pub context: Context,
    pub help: &'static str,
    /// Shown in the footer of its context.
    pub footer: bool,
}

#[derive(Debug, Clone)]
pub struct Keymap {
    pub bindings: Vec<Binding>,
}

const fn b(key: Key, action: Action, context: Context, help: &'static str, footer: bool) -> Binding {
    Binding { key, action, context, help, footer }
}

impl Default for Keymap {
    fn default() -> Self {
        use Action::*;
        use Context::*;
        Keymap {
            bindings: vec![
                b(Key::ch('n'), LessonNext, Lesson, "lesson: next / do it for me", true),
                b(Key::ch('p'), LessonPrev, Lesson, "lesson: look back a step", true),
                b(Key::ch('L'), LessonLeave, Lesson, "leave lesson (cluster stays)", true),
                b(Key::ch('i'), FocusInput, Command, "type a record", true),
                b(Key::ch('/'), FocusInput, Command, "type a record", false),
                b(Key::ch('k'), Kill, Command, "kill TM; 1-9 select TM N", true),
                b(Key::ch('h'), Hang, Command, "hang TM (no answer, links up)", false),
                b(Key::ch('C'), KillBeforeCommit, Command, "kill TM before its commit", false),
                b(Key::ch('s'), Start, Command, "start selected TM (or a new)", true),
                b(Key::ch('c'), Checkpoint, Command, "checkpoint now", true),
                b(Key::ch('S'), Savepoint, Command, "savepoint now, canonical", false),
                b(Key::ch('N'), NativeSavepoint, Command, "savepoint now, native", false),
                b(Key::ch('m'), CycleMode, Command, "mode aligned/unaligned/ALO/off", true),
                b(Key::ch('b'), CycleBackend, Command, "backend: savepoint, resubmit", false),
                b(Key::ch('+'), IntervalUp, Command, "interval up", false),
                b(Key::ch('-'), IntervalDown, Command, "interval down", false),
                b(Key::ch('g'), ToggleGenerator, Command, "generator on / off", true),
                b(Key::ch('G'), CycleRate, Command, "generator rate", false),
                b(Key::ch('['), Slower, Command, "slower (hop delay up)", false),
                b(Key::ch(']'), Faster, Command, "faster (hop delay down)", false),
                b(Key::ch(' '), Pause, Command, "pause / resume the data", false),
                b(Key::ch('R'), Resubmit, Command, "resubmit a FAILED/stopped job", false),
                b(Key::ch('d'), SlowChannel, Command, "slow channel: 0 / 300ms / 1s", true),
                b(Key::ch('t'), BufferTimeout, Command, "buffer timeout 100/10/1/0ms", true),
                b(Key::ch('X'), Reset, Command, "reset: a fresh cluster", false),
                b(Key::ch('o'), OpenScenario, Command, "play a scenario", false),
                b(Key::plain(KeyCode::Enter), Open, Command, "open the selected key", false),
                b(Key::ch('f'), EventsFilter, Command, "events filter", false),
                b(Key::ch('r'), SwitchReader, Command, "output reader's isolation", false),
                b(Key::plain(KeyCode::PageUp), PageUp, Command, "scroll a page up", false),
                b(Key::plain(KeyCode::PageDown), PageDown, Command, "scroll a page down", false),
                b(Key::plain(KeyCode::Home), Home, Command, "scroll to the start", false),
                b(Key::plain(KeyCode::End), End, Command, "scroll to the end", false),
                b(Key::plain(KeyCode::Tab), FocusNext, Command, "next pane", false),
                b(Key::plain(KeyCode::BackTab), FocusPrev, Command, "previous pane", false),
                b(Key::plain(KeyCode::Up), ScrollUp, Command, "scroll up", false),
                b(Key::plain(KeyCode::Down), ScrollDown, Command, "scroll down", false),
                b(Key::ch('K'), ScrollUp, Command, "scroll up", false),
                b(Key::ch('j'), ScrollDown, Command, "scroll down", false),
                b(Key::ch('?'), Help, Command, "help", true),
                b(Key::ch('q'), Quit, Command, "quit", true),
                b(Key::plain(KeyCode::Enter), Submit, Input, "produce it to the topic", true),
                b(Key::plain(KeyCode::Esc), ExitInput, Input, "back to command mode", true),
                b(Key::plain(KeyCode::Backspace), Backspace, Input, "delete a character", false),
                b(Key::plain(KeyCode::F(5)), Kill, Any, "kill the selected TM", true),
                b(Key::plain(KeyCode::F(6)), Start, Any, "start a task manager", true),
                b(Key::plain(KeyCode::F(7)), Checkpoint, Any, "checkpoint now", true),
                b(Key::ctrl('c'), Quit, Any, "quit", false),
                b(Key::ch('i'), FocusInput, Compare, "type a record (to the shared topic)", true),
                b(Key::ch('k'), Kill, Compare, "kill TM N in every cluster; 1-9 select N", true),
                b(Key::ch('s'), Start, Compare, "start TM N in every cluster", true),
                b(Key::ch('c'), Checkpoint, Compare, "checkpoint every cluster now", false),
                b(Key::ch('R'), Resubmit, Compare, "resubmit each cluster's FAILED job", false),
                b(Key::ch('g'), ToggleGenerator, Compare, "generator on / off (shared topic)", true),
                b(Key::ch('d'), SlowChannel, Compare, "slow channel in every cluster: 0 / 300ms / 1s", true),
                b(Key::ch('?'), Help, Compare, "help", true),
                b(Key::ch('q'), Quit, Compare, "quit", true),
            ],
        }
    }
}

impl Keymap {
    /// The action for a key press in a context (`Any` bindings apply everywhere).
    pub fn lookup(&self, ev: &KeyEvent, context: Context) -> Option<Action> {
        if let (Context::Command | Context::Compare, KeyCode::Char(d @ '1'..='9')) = (context, ev.code) {
            if ev.modifiers - KeyModifiers::SHIFT == KeyModifiers::NONE && !self.bindings.iter().any(|b| b.key.matches(ev)) {
                return Some(Action::SelectTm(d as u8 - b'0'));
            }
        }
        self.bindings.iter().find(|b| (b.context == context || b.context == Context::Any) && b.key.matches(ev)).map(|b| b.action)
    }

    /// Footer hints for a context: (key, what it does).
    pub fn footer(&self, context: Context) -> Vec<(String, &'static str)> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for b in self.bindings.iter().filter(|b| b.footer && (b.context == context || b.context == Context::Any)) {
            if matches!(context, Context::Command | Context::Lesson | Context::Compare) && b.context == Context::Any {
                continue; // F-keys are for input mode; command mode has one-letter keys
            }
            if !seen.contains(&b.action) {
                seen.push(b.action);
                out.push((b.key.label(), short(b.action)));
            }
        }
        out
    }

    /// Applies `conf/keys.toml`-style text: `[command]`, `[input]`, `[any]` tables of
    /// `action-name = "key"`.
    pub fn apply(&mut self, text: &str, origin: &str) -> Result<(), KeymapError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| KeymapError::Syntax {
            at: At { origin: origin.to_string(), line: e.span().map(|span| crate::config::line_of(text, span.start)) },
            message: e.message().trim_end().to_string(),
        })?;
        let at = |key: &str| At { origin: origin.to_string(), line: crate::config::line_of_key(text, key) };
        let mut rebound = Vec::new();
        for (section, entries) in &table {
            let context = match section.as_str() {
                "command" => Context::Command,
                "input" => Context::Input,
                "lesson" => Context::Lesson,
                "any" => Context::Any,
                "compare" => Context::Compare,
                other => return Err(KeymapError::UnknownTable { at: at(other), table: other.to_string() }),
            };
            let entries = entries.as_table().ok_or_else(|| KeymapError::NotATable { at: at(section), table: section.clone() })?;
            for (name, key) in entries {
                let here = at(&format!("{section}.{name}"));
                let entry = || (here.clone(), section.clone(), name.clone());
                let action: Action = toml::Value::String(name.clone()).try_into().map_err(|_| {
                    let (at, table, name) = entry();
                    KeymapError::UnknownAction { at, table, name }
                })?;
                let key_text = key.as_str().ok_or_else(|| {
                    let (at, table, name) = entry();
                    KeymapError::NotAKeyString { at, table, name }
                })?;
                let key = Key::parse(key_text).map_err(|key| {
                    let (at, table, name) = entry();
                    KeymapError::BadKey { at, table, name, key }
                })?;
                let existing = self.bindings.iter().position(|b| b.action == action && b.context == context);
                match existing {
                    Some(i) => self.bindings[i].key = key,
                    None => self.bindings.push(Binding { key, action, context, help: short(action), footer: false }),
                }
                rebound.push((action, context, key, entry(), key_text.to_string()));
            }
        }
        // One key, one action where both apply (`kill = "s"` would hide start), checked once
        // every rebinding is in, so moving start away and kill onto its key is fine.
        for (action, context, key, (at, table, name), key_text) in rebound {
            let clash = self.bindings.iter().find(|b| {
                b.action != action && b.key == key && (b.context == context || b.context == Context::Any || context == Context::Any)
            });
            if let Some(other) = clash {
                return Err(KeymapError::Clash { at, table, name, key: key_text, other: other.action, other_context: other.context });
            }
        }
        Ok(())
    }

    /// Defaults plus `conf/keys.toml` from the working directory, if present.
    pub fn load() -> Result<Keymap, KeymapError> {
        let mut k = Keymap::default();
        let path = Path::new("conf/keys.toml");
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|source| KeymapError::Read { path: "conf/keys.toml", source })?;
            k.apply(&text, "conf/keys.toml")?;
        }
        Ok(k)
    }
}

/// Rebindable action names, as `conf/keys.toml` spells them (the actions strum iterates).
pub fn action_names() -> Vec<String> {
    Action::iter().map(action_name).collect()
}

/// An action's name as `conf/keys.toml` spells it.
pub fn action_name(a: Action) -> String {
    toml::Value::try_from(a).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| short(a).to_string())
}

fn context_name(c: Context) -> &'static str {
    match c {
        Context::Command => "[command]",
        Context::Input => "[input]",
        Context::Lesson => "[lesson]",
        Context::Any => "[any]",
        Context::Compare => "[compare]",
    }
}

/// The footer's word for an action where the full hints do not fit (80 columns).
pub fn tiny(a: Action) -> &'static str {
    match a {
        Action::Kill => "kill",
        Action::Start => "start",
        Action::Checkpoint => "ckpt",
        Action::ToggleGenerator => "gen",
        Action::SlowChannel => "slow",
        Action::BufferTimeout => "buf",
        Action::SelectTm(_) => "TM",
        Action::LessonNext => "next",
        Action::LessonLeave => "leave",
        other => short(other),
    }
}

/// The footer's one or two words for an action.
pub fn short(a: Action) -> &'static str {
    match a {
        Action::FocusInput => "type",
        Action::LessonNext => "next/do it",
        Action::LessonPrev => "back",
        Action::LessonAnswer(_) => "answer",
        Action::LessonLeave => "leave lesson",
        Action::Kill => "kill TM",
        Action::Hang => "hang TM",
        Action::KillBeforeCommit => "kill before commit",
        Action::Start => "start TM",
        Action::Checkpoint => "checkpoint",
        Action::Savepoint => "savepoint",
        Action::NativeSavepoint => "native savepoint",
        Action::StopWithSavepoint => "stop with savepoint",
        Action::CycleMode => "mode",
        Action::CycleBackend => "backend",
        Action::IntervalUp => "interval+",
        Action::IntervalDown => "interval-",
        Action::ToggleGenerator => "generator",
        Action::CycleRate => "rate",
        Action::Slower => "slower",
        Action::Faster => "faster",
        Action::Pause => "pause",
        Action::Resubmit => "resubmit",
        Action::SlowChannel => "slow chan",
        Action::BufferTimeout => "buffer",
        Action::Reset => "reset",
        Action::OpenScenario => "scenario",
        Action::Open => "open",
        Action::EventsFilter => "filter",
        Action::SwitchReader => "reader",
        Action::PageUp => "page up",
        Action::PageDown => "page down",
        Action::Home => "start",
        Action::End => "end",
        Action::ClosePopup => "close",
        Action::PickPrev => "previous",
        Action::PickNext => "next",
        Action::FocusNext => "next pane",
        Action::FocusPrev => "prev pane",
        Action::ScrollUp => "scroll up",
        Action::ScrollDown => "scroll down",
        Action::Help => "help",
        Action::Quit => "quit",
        Action::Submit => "produce",
        Action::ExitInput => "back",
        Action::Backspace => "delete",
        Action::SelectTm(_) => "select TM",
        Action::Char(_) => "type",
        Action::CloseHelp => "close",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn default_keys_map_to_actions_by_context() {
        let k = Keymap::default();
        assert_eq!(k.lookup(&press(KeyCode::Char('k')), Context::Command), Some(Action::Kill));
        assert_eq!(k.lookup(&press(KeyCode::Char('k')), Context::Input), None);
        assert_eq!(k.lookup(&press(KeyCode::F(5)), Context::Input), Some(Action::Kill));
        assert_eq!(k.lookup(&press(KeyCode::Char('2')), Context::Command), Some(Action::SelectTm(2)));
        assert_eq!(k.lookup(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL), Context::Input), Some(Action::Quit));
        assert_eq!(k.lookup(&KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT), Context::Command), Some(Action::CycleRate));
    }

    #[test]
    fn keys_toml_rebinds_and_reports_bad_names() {
        let mut k = Keymap::default();
        k.apply("[command]\nkill = \"x\"\n", "keys.toml").unwrap();
        assert_eq!(k.lookup(&press(KeyCode::Char('x')), Context::Command), Some(Action::Kill));
        assert_eq!(k.lookup(&press(KeyCode::Char('k')), Context::Command), None);
        let e = k.apply("[command]\nexplode = \"x\"\n", "keys.toml").unwrap_err().to_string();
        assert!(e.contains("keys.toml") && e.contains("unknown action") && e.contains("kill"), "{e}");
        let e = k.apply("[command]\nkill = \"Hyper-x\"\n", "keys.toml").unwrap_err().to_string();
        assert!(e.contains("not a key"), "{e}");
    }

    #[test]
    fn two_actions_on_one_key_are_refused_with_both_names() {
        let e = Keymap::default().apply("[command]\n\nkill = \"s\"\n", "conf/keys.toml").unwrap_err().to_string();
        assert!(e.starts_with("conf/keys.toml:3:") && e.contains("kill") && e.contains("start"), "{e}");
        // An [any] key shadows the same key in command mode too.
        let e = Keymap::default().apply("[any]\ncheckpoint = \"k\"\n", "keys.toml").unwrap_err().to_string();
        assert!(e.contains("checkpoint") && e.contains("kill"), "{e}");
        // Moving an action off a key and another onto it is fine.
        Keymap::default().apply("[command]\nstart = \"Z\"\nkill = \"s\"\n", "keys.toml").unwrap();
        let mut k = Keymap::default();
        k.apply("[command]\nkill = \"x\"\nstart = \"k\"\n", "keys.toml").unwrap();
        assert_eq!(k.lookup(&press(KeyCode::Char('k')), Context::Command), Some(Action::Start));
    }

    #[test]
    fn every_bindable_action_has_a_keys_toml_name_that_reads_back() {
        let names = action_names();
        assert_eq!(names.len(), Action::iter().count());
        for (a, name) in Action::iter().zip(&names) {
            let back: Action = toml::Value::String(name.clone()).try_into().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(back, a);
        }
        assert_eq!(names.first().map(String::as_str), Some("lesson-next"));
        assert!(names.contains(&"stop-with-savepoint".to_string()) && !names.contains(&"backspace".to_string()));
    }

    #[test]
    fn a_syntax_error_in_keys_toml_names_its_line() {
        let e = Keymap::default().apply("[command]\nkill = \"x\"\nstart = \n", "conf/keys.toml").unwrap_err().to_string();
        assert!(e.starts_with("conf/keys.toml:3:"), "{e}");
    }
}
