//! The event log: the engine's last events in words, newest at the bottom, each wrapped to the
//! pane's width (nothing is cut); checkpoints completing one after another share a line; `f`
//! filters (all, failures, checkpoints).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::app::{App, EventsFilter, LogKind, Pane};
use crate::tui::render::pane_block;

/// Columns before the text: `  5.9s ! `.
const PREFIX: usize = 9;
/// Columns before a continuation line.
const INDENT: usize = 4;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let extra = (app.events_filter != EventsFilter::All)
        .then(|| Line::from(Span::styled(format!("{} only (f: next filter)", app.events_filter.label()), t.warn)));
    let block = pane_block(app, Pane::Events, "Events", extra);
    let height = area.height.saturating_sub(2) as usize;
    let width = area.width.saturating_sub(2) as usize;
    let visible: Vec<_> = app.visible_log().collect();
    let back = (app.scroll_of(Pane::Events) as usize).min(visible.len().saturating_sub(1));
    let end = visible.len() - back;
    // From the newest shown entry back, until the pane is full.
    let mut lines: Vec<Line> = Vec::new();
    for l in visible[..end].iter().rev() {
        let (mark, style) = match l.kind {
            LogKind::Good => ("✓", t.ok),
            LogKind::Bad => ("!", t.bad),
            LogKind::Info => ("·", t.dim),
        };
        let text_style = if l.kind == LogKind::Bad { style } else { t.text };
        let mut entry: Vec<Line> = Vec::new();
        for (i, chunk) in
            wrap_hanging(&l.text, width.saturating_sub(PREFIX).max(8), width.saturating_sub(INDENT).max(8)).into_iter().enumerate()
        {
            let lead = if i == 0 {
                vec![Span::styled(format!("{:>5.1}s ", l.t_ms as f64 / 1000.0), t.dim), Span::styled(format!("{mark} "), style)]
            } else {
                vec![Span::raw(" ".repeat(INDENT))]
            };
            entry.push(Line::from([lead, vec![Span::styled(chunk, text_style)]].concat()));
        }
        // Whole entries only, except a newest one taller than the pane (its start shows).
        if !lines.is_empty() && lines.len() + entry.len() > height {
            break;
        }
        for line in entry.into_iter().rev() {
            lines.push(line);
        }
        if lines.len() >= height {
            break;
        }
    }
    lines.reverse();
    lines.truncate(height.max(1));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The first line `first` columns wide, the rest `rest` wide.
fn wrap_hanging(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut lines = wrap(text, first);
    if lines.len() > 1 && text.starts_with(lines[0].as_str()) {
        let head = lines.remove(0);
        let tail = text[head.len()..].trim_start();
        lines = std::iter::once(head).chain(wrap(tail, rest)).collect();
    }
    lines
}

/// Splits text into lines of at most `width` columns, at spaces where it can.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        loop {
            let used = line.chars().count();
            let sep = usize::from(used > 0);
            if used + sep + word.chars().count() <= width {
                if sep == 1 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if used > 0 {
                out.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than the line: cut it.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            out.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}
