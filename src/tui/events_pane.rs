//! The event log: the engine's last events in words, newest at the bottom.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::app::{App, LogKind, Pane};
use super::render::pane_block;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let block = pane_block(app, Pane::Events, "Events", None);
    let height = area.height.saturating_sub(2) as usize;
    let back = (app.scroll_of(Pane::Events) as usize).min(app.log.len().saturating_sub(1));
    let end = app.log.len() - back;
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = app
        .log
        .range(start..end)
        .map(|(t_ms, text, kind)| {
            let (mark, style) = match kind {
                LogKind::Good => ("✓", t.ok),
                LogKind::Bad => ("!", t.bad),
                LogKind::Info => ("·", t.dim),
            };
            Line::from(vec![
                Span::styled(format!("{:>5.1}s ", *t_ms as f64 / 1000.0), t.dim),
                Span::styled(format!("{mark} "), style),
                Span::styled(text.clone(), if *kind == LogKind::Bad { style } else { t.text }),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
