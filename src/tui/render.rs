//! The whole screen: the layout, then one render function per pane. Everything is drawn from
//! [`App`] alone, so a snapshot of the state is a snapshot of the screen.
//!
//! ```text
//! status line
//! ┌ job graph ───────────┐┌ checkpoints ───────┐
//! │                      ││                    │
//! └──────────────────────┘└ output ────────────┘
//! ┌ state ───────────────┐│                    │
//! │                      │└ events ────────────┘
//! └──────────────────────┘│                    │
//! ┌ input ──────────────────────────────────────┐
//! footer
//! ```

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Pane};
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
    let status_height = panes::status_line::height(app, area.width as usize);
    let [status, banner_area, body, input, foot] = Layout::vertical([
        Constraint::Length(status_height),
        Constraint::Length(panes::banner::height(app, area.width)),
        Constraint::Min(0),
        Constraint::Length(panes::input::HEIGHT),
        Constraint::Length(1),
    ])
    .areas(area);
    // A lesson: a band across the bottom of the panes, full width.
    let tall = area.height >= panes::lesson::TALL;
    let (body, band) = if app.lesson.is_some() {
        let rows = if tall { panes::lesson::BAND_HEIGHT_TALL } else { panes::lesson::BAND_HEIGHT };
        let [body, band] = Layout::vertical([Constraint::Min(0), Constraint::Length(rows)]).areas(body);
        (body, Some(band))
    } else {
        (body, None)
    };
    panes::status_line::render(app, frame, status);
    panes::banner::render(app, frame, banner_area);
    // The graph's lines need about 40 columns at 80; wider screens give the left side more.
    let left_share = if area.width >= 120 { 55 } else { 50 };
    let [left, right] = Layout::horizontal([Constraint::Percentage(left_share), Constraint::Percentage(100 - left_share)]).areas(body);
    // The graph takes the lines it needs (two per TM at most, one per channel), the state the rest.
    let graph_lines = panes::graph::lines_wanted(app) as u16 + 2;
    let graph_height = graph_lines.min(left.height.saturating_mul(3) / 5).max(6);
    let short_lesson = band.is_some() && !tall;
    // A short screen under a lesson's band has no room for two panes a column: the pane the step
    // points at gets its whole column, so "select an overcounted key" has key rows to select
    // and "see the graph" every channel (issue 25 §7). Two marked panes in a column keep the split.
    let marked = |pane| short_lesson && panes::lesson::highlights(app, pane);
    match (marked(Pane::Graph), marked(Pane::State)) {
        (true, false) => panes::graph::render(app, frame, left),
        (false, true) => panes::state::render(app, frame, left),
        _ => {
            let [graph, state] = Layout::vertical([Constraint::Length(graph_height), Constraint::Min(0)]).areas(left);
            panes::graph::render(app, frame, graph);
            panes::state::render(app, frame, state);
        }
    }
    if let (Some(band), false) = (band, tall) {
        // Too short for three panes on the right: the events give way (the lesson says what
        // happens) unless the step points at them; then they take the output's place.
        let events = marked(Pane::Events);
        let lower = |frame: &mut Frame, area: Rect| match events {
            true => panes::events::render(app, frame, area),
            false => panes::output::render(app, frame, area),
        };
        match (marked(Pane::Checkpoints), marked(Pane::Output) || marked(Pane::Events)) {
            (true, false) => panes::checkpoints::render(app, frame, right),
            (false, true) => lower(frame, right),
            _ => {
                let [checkpoints, output] = Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(right);
                panes::checkpoints::render(app, frame, checkpoints);
                lower(frame, output);
            }
        }
        panes::lesson::render(app, frame, band);
    } else if app.scenario.is_some() {
        // A scenario playing takes the events' place (its narration is the better log then).
        let [checkpoints, output, scenario] =
            Layout::vertical([Constraint::Percentage(34), Constraint::Percentage(30), Constraint::Percentage(36)]).areas(right);
        panes::checkpoints::render(app, frame, checkpoints);
        panes::output::render(app, frame, output);
        panes::scenario::render(app, frame, scenario);
    } else {
        let [checkpoints, output, events] =
            Layout::vertical([Constraint::Percentage(38), Constraint::Percentage(34), Constraint::Percentage(28)]).areas(right);
        panes::checkpoints::render(app, frame, checkpoints);
        panes::output::render(app, frame, output);
        panes::events::render(app, frame, events);
    }
    if let (Some(band), true) = (band, tall) {
        panes::lesson::render(app, frame, band);
    }
    panes::input::render(app, frame, input);
    panes::footer::render(app, frame, foot);
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
