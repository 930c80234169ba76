//! A banner above the panes for what must not hide in an event line: a restart that found no
//! completed checkpoint (state empty, sources at latest: records lost, as in Flink).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::app::App;

/// Lines the banner takes at this width (0 when there is none).
pub fn height(app: &App, width: u16) -> u16 {
    match text(app) {
        Some(t) => (t.chars().count() as u16).div_ceil(width.max(1)).clamp(1, 3),
        None => 0,
    }
}

fn text(app: &App) -> Option<String> {
    let banner = app.banner.as_ref()?;
    let lost = app.view.verdict.as_ref().map(|v| v.lost).unwrap_or(0);
    Some(format!("⚠ {banner} Lost so far: {lost}. (Cleared when a checkpoint completes.)"))
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    if let Some(t) = text(app) {
        let line = Line::from(Span::styled(t, app.theme.bad));
        frame.render_widget(Paragraph::new(line).wrap(Wrap { trim: true }), area);
    }
}
