//! Colours: the 16 named ANSI colours on the terminal's own background, chosen to read on dark and
//! light terminals; a monochrome variant when NO_COLOR is set. Meaning never rests on colour
//! alone: every state also has a symbol or a word.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Theme {
    pub title: Style,
    pub focused_title: Style,
    pub text: Style,
    pub dim: Style,
    pub ok: Style,
    pub bad: Style,
    pub warn: Style,
    pub barrier: Style,
    pub record: Style,
    pub selected: Style,
    pub key: Style,
}

impl Theme {
    pub fn color() -> Theme {
        Theme {
            title: Style::new().add_modifier(Modifier::BOLD),
            focused_title: Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            text: Style::new(),
            dim: Style::new().add_modifier(Modifier::DIM),
            ok: Style::new().fg(Color::Green),
            bad: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            warn: Style::new().fg(Color::Yellow),
            barrier: Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD),
            record: Style::new().fg(Color::Blue),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            key: Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        }
    }

    /// NO_COLOR: bold, reverse and underline only.
    pub fn mono() -> Theme {
        let plain = Style::new();
        Theme {
            title: plain.add_modifier(Modifier::BOLD),
            focused_title: plain.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            text: plain,
            dim: plain,
            ok: plain,
            bad: plain.add_modifier(Modifier::BOLD),
            warn: plain.add_modifier(Modifier::UNDERLINED),
            barrier: plain.add_modifier(Modifier::BOLD),
            record: plain,
            selected: plain.add_modifier(Modifier::REVERSED),
            key: plain.add_modifier(Modifier::BOLD),
        }
    }

    /// The theme the environment asks for.
    pub fn from_env() -> Theme {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            Theme::mono()
        } else {
            Theme::color()
        }
    }
}
