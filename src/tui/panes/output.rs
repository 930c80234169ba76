//! The sink's output. The print sink's lines as the seed prints them (`2017-03-17T08:21:51.249:
//! (a,1)`); a line printed again after a recovery is marked `↻` (the print sink is not
//! exactly-once even when state is).
//!
//! The Kafka sink (`job.sink = kafka`) writes to an output topic, which the pane shows as the two
//! consumers a user would run on it: `isolation.level = read_committed` and `read_uncommitted`,
//! side by side where the pane is wide, one at a time where it is narrow (`r` switches).
//! Uncommitted lines appear at once (`…` while their transaction is open, `✗` once it is
//! aborted); committed lines appear when the checkpoint completes, and the title says how far
//! the committed output trails, as measured by the readers.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::connectors::kafka_sink::readers::{LineMark, ReaderLine, ReadersView};
use crate::connectors::transactions::IsolationLevel;
use crate::tui::app::{App, Pane};
use crate::tui::render::{fit, ms_text, pane_block};

/// The narrowest inside of the pane that holds both readers side by side.
const SIDE_BY_SIDE: u16 = 60;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    match &app.view.output_readers {
        Some(readers) => render_readers(app, readers, frame, area),
        None => render_print(app, frame, area),
    }
}

fn render_print(app: &App, frame: &mut Frame, area: Rect) {
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

/// The title's note: how far committed output trails (the exactly-once sink's latency is the
/// checkpoint interval), as the readers measured it on the newest commit.
fn lag_note(r: &ReadersView) -> Option<String> {
    r.lag_ms.map(|ms| format!("committed {} behind", ms_text(ms)))
}

fn render_readers(app: &App, r: &ReadersView, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let extra = lag_note(r).map(|n| Line::from(Span::styled(n, t.dim)));
    let block = pane_block(app, Pane::Output, "Output topic", extra);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width >= SIDE_BY_SIDE {
        let [left, gap, right] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
        render_reader(app, r, IsolationLevel::ReadCommitted, false, frame, left);
        frame.render_widget(Paragraph::new(vec![Line::styled("│", t.dim); gap.height as usize]), gap);
        render_reader(app, r, IsolationLevel::ReadUncommitted, false, frame, right);
    } else {
        render_reader(app, r, app.output_reader, true, frame, inner);
    }
}

/// One reader's column: a heading (its isolation level and counts), then its newest lines.
fn render_reader(app: &App, r: &ReadersView, level: IsolationLevel, switchable: bool, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let width = area.width as usize;
    let (lines, heading) = match level {
        IsolationLevel::ReadCommitted => (&r.committed, format!("read_committed {}", r.committed_total)),
        IsolationLevel::ReadUncommitted => {
            let mut h = format!("read_uncommitted {}", r.uncommitted_total);
            if r.open > 0 {
                h.push_str(&format!(" · {} open", r.open));
            }
            if r.aborted > 0 {
                h.push_str(&format!(" · {} ✗aborted", r.aborted));
            }
            (&r.uncommitted, h)
        }
    };
    let mut head = vec![Span::styled(heading.clone(), t.title)];
    if switchable {
        let key = app.keymap.bindings.iter().find(|b| b.action == crate::tui::action::Action::SwitchReader).map(|b| b.key.label());
        if let Some(key) = key {
            let other = match level {
                IsolationLevel::ReadCommitted => "uncommitted",
                IsolationLevel::ReadUncommitted => "committed",
            };
            let hint = format!("  {key}: {other}");
            if heading.chars().count() + hint.chars().count() <= width {
                head.push(Span::styled(hint, t.dim));
            }
        }
    }
    let mut out = vec![Line::from(head)];
    let height = area.height.saturating_sub(1) as usize;
    if lines.is_empty() {
        let empty = match level {
            IsolationLevel::ReadCommitted => "lines appear when their checkpoint completes",
            IsolationLevel::ReadUncommitted => "lines appear as the sink writes them",
        };
        out.push(Line::styled(fit(empty, width), t.dim));
    } else {
        let back = (app.scroll_of(Pane::Output) as usize).min(lines.len().saturating_sub(1));
        let end = lines.len() - back;
        let start = end.saturating_sub(height);
        out.extend(lines[start..end].iter().map(|l| reader_line(app, l, width)));
    }
    frame.render_widget(Paragraph::new(out), area);
}

fn reader_line<'a>(app: &App, l: &ReaderLine, width: usize) -> Line<'a> {
    let t = &app.theme;
    let text = fit(&l.text, width.saturating_sub(2));
    match l.mark {
        LineMark::Visible => Line::from(vec![Span::raw("  "), Span::raw(text)]),
        LineMark::Open => Line::from(vec![Span::styled("… ", t.dim), Span::styled(text, t.dim)]),
        LineMark::Aborted => Line::from(vec![Span::styled("✗ ", t.bad), Span::styled(text, t.bad)]),
        LineMark::Repeat => Line::from(vec![Span::styled("↻ ", t.warn), Span::styled(text, t.warn)]),
    }
}
