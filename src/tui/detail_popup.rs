//! Enter on a key in the state pane: the key whole and its figures, exact.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::app::App;

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
            if k.overcounted > 0 {
                lines.push(Line::styled(
                    "records applied again after a restore: they were in the checkpoint's state and after its offsets (at-least-once lets records that overtook a barrier into the snapshot)",
                    t.dim,
                ));
            }
            if k.lost > 0 {
                lines.push(Line::styled(
                    "records passed by the sources whose effect is gone: skipped by auto.offset.reset = latest, or forgotten by a restart from an older checkpoint or from nothing",
                    t.dim,
                ));
            }
        }
        None => lines.push(Line::styled("no longer in the state pane", t.dim)),
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("any key closes", t.dim));
    let width = area.width.min(70);
    let [popup] = Layout::vertical([Constraint::Length((lines.len() as u16 + 6).min(area.height))]).flex(Flex::Center).areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(width)]).flex(Flex::Center).areas(popup);
    frame.render_widget(Clear, popup);
    let block = Block::bordered().title(Line::styled(" Key ", t.title)).border_style(t.key);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }).block(block), popup);
}
