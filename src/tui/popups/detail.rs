//! Enter on a key in the state pane: the key whole and its figures, exact.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::app::App;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(key) = &app.detail else { return };
    let t = &app.theme;
    let mut lines = vec![Line::styled(format!("key {key:?}"), t.title)];
    match app.view.verdict.as_ref().and_then(|v| v.keys.get(key)) {
        Some(k) => {
            lines.push(Line::raw(format!("counter subtask {}", k.subtask)));
            lines.push(Line::raw(format!("state     {}", k.state)));
            lines.push(Line::raw(format!("expected  {}", k.expected)));
            lines.push(Line::styled(format!("lost      {}", k.lost), if k.lost > 0 { t.bad } else { t.text }));
            lines.push(Line::styled(format!("overcounted {}", k.overcounted), if k.overcounted > 0 { t.bad } else { t.text }));
            lines.push(Line::raw(""));
            // The auditor's record-by-record account: partition@offsets and their cause.
            match &app.explanation {
                Some(why) => {
                    lines.extend(why.iter().map(|l| Line::styled(l.clone(), if k.lost + k.overcounted > 0 { t.warn } else { t.dim })))
                }
                None => lines.push(Line::styled("asking the auditor which records …", t.dim)),
            }
        }
        None => lines.push(Line::styled("no longer in the state pane", t.dim)),
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("any key closes", t.dim));
    let width = area.width.min(90);
    // Wrapped lines take more rows than lines: room for that, within the screen.
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(width.saturating_sub(2).max(1) as usize).max(1)).sum();
    let [popup] = Layout::vertical([Constraint::Length((rows as u16 + 2).min(area.height))]).flex(Flex::Center).areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(width)]).flex(Flex::Center).areas(popup);
    frame.render_widget(Clear, popup);
    let block = Block::bordered().title(Line::styled(" Key ", t.title)).border_style(t.key);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }).block(block), popup);
}
