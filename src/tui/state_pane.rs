//! State and verdict: per key, the counter operator's live value, the ground truth (records the
//! sources passed for it) and the verdict (ok / lost N / overcounted N), with the totals.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::app::{App, Pane};
use super::render::pane_block;
use super::theme::Theme;
use crate::audit::summary;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(v) = &app.view.verdict else {
        let block = pane_block(app, Pane::State, "State", None);
        let text = Paragraph::new(Line::styled("the auditor is off (ckptlab.audit = false): no ground truth", t.dim)).block(block);
        return frame.render_widget(text, area);
    };
    let progress = if !app.view.all_tasks_running {
        Span::styled("job down: frozen", t.warn)
    } else if v.in_flight > 0 {
        Span::styled(format!("{} in flight", v.in_flight), t.dim)
    } else if app.view.caught_up {
        Span::styled("caught up", t.ok)
    } else {
        Span::styled("catching up", t.dim)
    };
    let block = pane_block(app, Pane::State, "State", Some(Line::from(progress)));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if v.keys.is_empty() {
        let hint = Paragraph::new(vec![Line::styled("no records yet", t.dim), Line::styled("i types one; g starts a generator", t.dim)]);
        return frame.render_widget(hint, inner);
    }
    let [table_area, total_area] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    // The key column is as wide as the longest key (within bounds); the verdict takes the rest.
    let key_width = v.keys.keys().map(|k| k.chars().count()).max().unwrap_or(0).clamp(5, 24) as u16;
    let widths = [Constraint::Length(key_width), Constraint::Length(3), Constraint::Length(5), Constraint::Length(5), Constraint::Min(8)];
    let header = Row::new(["key", "sub", "state", "truth", "verdict"]).style(t.title);
    let rows = v
        .keys
        .iter()
        .skip(app.scroll_of(Pane::State) as usize)
        .map(|(key, k)| row(t, key, Some(k.subtask), k.state, k.expected, (k.lost, k.overcounted, true), Style::new()));
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), table_area);
    let total = row(t, "TOTAL", None, v.state, v.expected, (v.lost, v.overcounted, v.consistent), t.title);
    frame.render_widget(Table::new([total], widths).column_spacing(1), total_area);
}

/// One row; the verdict carries a symbol as well as a colour. `(lost, overcounted, consistent)`:
/// an inconsistent verdict (the auditor and the state disagree) is never shown as ok.
fn row<'a>(t: &Theme, key: &str, subtask: Option<usize>, state: u64, truth: u64, figures: (u64, u64, bool), style: Style) -> Row<'a> {
    let (lost, over, consistent) = figures;
    let verdict = if consistent { summary(lost, over) } else { "inconsistent".into() };
    let (mark, vstyle) = match (lost, over, consistent) {
        (0, 0, true) => ("✓ ", t.ok),
        _ => ("✗ ", t.bad),
    };
    Row::new(vec![
        Cell::from(key.to_string()),
        Cell::from(subtask.map(|s| s.to_string()).unwrap_or_default()),
        Cell::from(Line::from(state.to_string()).right_aligned()),
        Cell::from(Line::from(truth.to_string()).right_aligned()),
        Cell::from(Line::from(vec![Span::styled(mark, vstyle), Span::styled(verdict, vstyle)])),
    ])
    .style(style)
}
