//! The sink's output as the seed prints it (`2017-03-17T08:21:51.249: (a,1)`); a line printed
//! again after a recovery is marked `↻` (the print sink is not exactly-once even when state is).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::app::{App, Pane};
use crate::tui::render::pane_block;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let out = &app.view.output;
    let repeats = out.iter().filter(|l| l.repeat).count();
    // Repeats under EXACTLY_ONCE are the print sink's doing (it writes at once and cannot take a
    // line back), not the state's: say so where they show.
    let exactly_once = matches!(app.view.mode, crate::config::CheckpointingMode::ExactlyOnce(_));
    let extra = (repeats > 0).then(|| {
        let text = if exactly_once && area.width >= 62 {
            format!("↻ {repeats} repeated by the print sink; the state is exact")
        } else {
            format!("↻ {repeats} repeated")
        };
        Line::from(Span::styled(text, t.warn))
    });
    let block = pane_block(app, Pane::Output, "Output", extra);
    let height = area.height.saturating_sub(2) as usize;
    if out.is_empty() {
        let p = Paragraph::new(Line::styled("the print sink's lines appear here", t.dim)).block(block);
        return frame.render_widget(p, area);
    }
    let back = (app.scroll_of(Pane::Output) as usize).min(out.len().saturating_sub(1));
    let end = out.len() - back;
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = out[start..end]
        .iter()
        .map(|l| {
            if l.repeat {
                Line::from(vec![Span::styled("↻ ", t.warn), Span::styled(l.text.clone(), t.warn)])
            } else {
                Line::from(vec![Span::raw("  "), Span::raw(l.text.clone())])
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
