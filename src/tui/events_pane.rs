//! The event log: the engine's last events in words, newest at the bottom, each wrapped to the
//! pane's width (nothing is cut); checkpoints completing one after another share a line; `f`
//! filters (all, failures, checkpoints).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::app::{App, EventsFilter, LogKind, Pane};
use super::render::pane_block;

/// Columns before the text: `  5.9s ! `.
const PREFIX: usize = 9;

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
        for (i, chunk) in wrap(&l.text, width.saturating_sub(PREFIX).max(8)).into_iter().enumerate() {
            let lead = if i == 0 {
                vec![Span::styled(format!("{:>5.1}s ", l.t_ms as f64 / 1000.0), t.dim), Span::styled(format!("{mark} "), style)]
            } else {
                vec![Span::raw(" ".repeat(PREFIX))]
            };
            entry.push(Line::from([lead, vec![Span::styled(chunk, text_style)]].concat()));
        }
        for line in entry.into_iter().rev() {
            lines.push(line);
        }
        if lines.len() >= height {
            break;
        }
    }
    lines.reverse();
    let skip = lines.len().saturating_sub(height);
    let lines: Vec<Line> = lines.into_iter().skip(skip).collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
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
