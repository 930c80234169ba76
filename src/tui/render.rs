//! The whole screen: the [`layout`](super::layout)'s plan, then one render function per pane.
//! Everything is drawn from [`App`] alone, so a snapshot of the state is a snapshot of the screen.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Pane};
use super::layout::{self, Slot};
use super::{panes, popups};

/// The smallest terminal every pane stays readable in.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return render_too_small(app, frame, area);
    }
    for (slot, rect) in layout::plan(&layout::Shape::of(app, area)).drawn {
        match slot {
            Slot::Pane(pane) => (panes::spec(pane).render)(app, frame, rect),
            Slot::Banner => panes::banner::render(app, frame, rect),
            Slot::Scenario => panes::scenario::render(app, frame, rect),
            Slot::Lesson => panes::lesson::render(app, frame, rect),
            Slot::Footer => panes::footer::render(app, frame, rect),
        }
    }
    if app.help {
        popups::help::render(app, frame, area);
    }
    popups::detail::render(app, frame, area);
    popups::anatomy::render(app, frame, area);
    popups::picker::render(app, frame, area);
}

fn render_too_small(app: &App, frame: &mut Frame, area: Rect) {
    let text = vec![
        Line::styled("ckptlab", app.theme.title),
        Line::raw(""),
        Line::raw(format!("The terminal is {}x{}; ckptlab needs at least {MIN_WIDTH}x{MIN_HEIGHT}.", area.width, area.height)),
        Line::raw("Enlarge the window (the screen comes back at once), or press q to quit."),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

/// A pane's frame: its title, a marker and the accent when focused (never colour alone).
pub fn pane_block<'a>(app: &App, pane: Pane, title: &'a str, extra: Option<Line<'a>>) -> Block<'a> {
    let focused = app.focus == pane;
    let highlighted = panes::lesson::highlights(app, pane);
    let mut spans = vec![
        Span::raw(if focused {
            "▸ "
        } else if highlighted {
            "★ "
        } else {
            " "
        }),
        Span::styled(title, if focused { app.theme.focused_title } else { app.theme.title }),
        Span::raw(" "),
    ];
    if let Some(extra) = extra {
        spans.extend(extra.spans);
        spans.push(Span::raw(" "));
    }
    let block = Block::bordered().title(Line::from(spans));
    if focused {
        block.border_style(app.theme.focused_title)
    } else if highlighted {
        // The lesson points here (a marker too, never colour alone).
        block.border_style(app.theme.warn)
    } else {
        block.border_style(app.theme.dim)
    }
}

/// Milliseconds as the panes show them: `850 ms`, `3.2 s`, `2 min 5 s`.
pub fn ms_text(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A line that fits `width` columns, cut with `…` when it does not.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// A span list's width in columns.
pub fn spans_width(spans: &[Span]) -> usize {
    spans.iter().map(|s| s.width()).sum()
}

/// Key label + description pairs as footer/hint spans.
pub fn hint_spans(app: &App, hints: &[(String, &'static str)]) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    for (key, what) in hints {
        spans.push(Span::styled(format!(" {key}"), app.theme.key));
        spans.push(Span::styled(format!(" {what} "), Style::new()));
    }
    spans
}
