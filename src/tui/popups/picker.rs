//! `o`: pick one of the shipped scenarios; Enter plays it on a fresh cluster.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use crate::tui::app::App;
use crate::tui::SCENARIOS;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(selected) = app.picker else { return };
    let t = &app.theme;
    let mut lines = vec![Line::styled("Play a scenario on a fresh cluster (its [config] applies):", t.dim), Line::raw("")];
    for (i, (file, _)) in SCENARIOS.iter().enumerate() {
        let name = file.rsplit('/').next().unwrap_or(file);
        let mark = if i == selected { "▶ " } else { "  " };
        let style = if i == selected { t.selected } else { t.text };
        lines.push(Line::from(vec![Span::raw(mark), Span::styled(name.to_string(), style)]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("↑ ↓ choose · Enter plays · any other key closes", t.dim));
    let [popup] = Layout::vertical([Constraint::Length((lines.len() as u16 + 2).min(area.height))]).flex(Flex::Center).areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(area.width.min(64))]).flex(Flex::Center).areas(popup);
    frame.render_widget(Clear, popup);
    let block = Block::bordered().title(Line::styled(" Scenarios ", t.title)).border_style(t.key);
    frame.render_widget(Paragraph::new(lines).block(block), popup);
}
