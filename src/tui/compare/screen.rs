//! The compare screen: each cluster's status and checkpoint line, then the verdict per key with
//! every side in adjacent columns and the cells where the sides differ marked. Drawn only from
//! [`CompareApp`]; at 80 columns the sides are stacked two lines each, from 120 they stand in
//! columns with their recent checkpoints.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table};
use ratatui::Frame;

use super::app::{CompareApp, RowKind, SideView};
use crate::cluster::coordinator::CheckpointStatus;
use crate::cluster::view::JobStatus;
use crate::compare::KeyCell;
use crate::duration::format_size;
use crate::tui::action::Action;
use crate::tui::keymap::{short, tiny, Context};
use crate::tui::render::{MIN_HEIGHT, MIN_WIDTH};

/// From this width the sides stand in columns.
const WIDE: u16 = 120;
/// Recent checkpoints a side's column lists at most when wide.
const HISTORY_ROWS: usize = 14;
/// Wide, each side's column also says its verdict for the key in words (`overcounted 5`).
const VERDICT_WORDS: u16 = 20;
/// Columns of a side's three figures (`state  lost  over`).
const SIDE_FIGURES: u16 = 17;
/// Marks a row whose sides differ (besides the highlight, for NO_COLOR).
const DIFFERS: &str = "≠";

pub fn render(app: &CompareApp, frame: &mut Frame) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!("ckptlab compare needs {MIN_WIDTH}x{MIN_HEIGHT}; this terminal is {}x{} (q quits)", area.width, area.height);
        return frame.render_widget(Paragraph::new(text).wrap(ratatui::widgets::Wrap { trim: true }), area);
    }
    let wide = area.width >= WIDE;
    let lines_per_side = if app.varied() { 3 } else { 2 };
    let sides_height = if wide { (6 + HISTORY_ROWS as u16).min(area.height * 2 / 5) } else { app.sides.len() as u16 * lines_per_side + 2 };
    let [title, sides, verdict, input, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(sides_height),
        Constraint::Min(4),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_title(app, frame, title);
    if wide {
        let columns = Layout::horizontal(vec![Constraint::Fill(1); app.sides.len()]).split(sides);
        for (side, rect) in app.sides.iter().zip(columns.iter()) {
            render_side_column(app, side, frame, *rect);
        }
    } else {
        render_side_lines(app, frame, sides);
    }
    render_verdict(app, frame, verdict);
    render_input(app, frame, input);
    render_footer(app, frame, footer);
    if app.help {
        render_help(app, frame, area);
    }
}

fn render_title(app: &CompareApp, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let v = &app.sides[0].view;
    let topic = v.partitions.len();
    let produced: u64 = v.partitions.iter().map(|p| p.end).sum();
    let line = Line::from(vec![
        Span::styled("ckptlab compare", t.title),
        Span::raw(format!(": {} clusters, one topic ({topic} partitions, {produced} records)  ", app.sides.len())),
        Span::styled(format!("TM: {}", crate::cluster::taskmanager::name(usize::from(app.selected_tm))), t.key),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

fn status_style(app: &CompareApp, status: JobStatus) -> Style {
    match status {
        JobStatus::Running => app.theme.ok,
        JobStatus::Failed => app.theme.bad,
        _ => app.theme.warn,
    }
}

/// `RUNNING  tm-1 ● tm-2 ✗  restarts 1`
fn status_spans(app: &CompareApp, s: &SideView) -> Vec<Span<'static>> {
    let t = &app.theme;
    let v = &s.view;
    let mut spans = vec![Span::styled(v.status.label().to_string(), status_style(app, v.status)), Span::raw("  ")];
    if v.status == JobStatus::Failed {
        spans.insert(1, Span::raw(" (R resubmits)"));
    }
    for tm in &v.task_managers {
        let (sym, style) = if tm.alive { ("●", t.ok) } else { ("✗", t.bad) };
        spans.push(Span::raw(format!("{} ", tm.name)));
        spans.push(Span::styled(format!("{sym} "), style));
    }
    spans.push(Span::raw(format!(" restarts {}", v.restarts)));
    spans
}

/// The checkpoint line: counts, then the one in flight or the newest.
fn checkpoint_text(s: &SideView) -> (String, bool) {
    let v = &s.view;
    if v.interval_ms.is_none() {
        return ("checkpointing off: a restart starts from nothing".into(), false);
    }
    let c = v.checkpoint_counts;
    let counts = format!("ckpts {} done {} failed", c.completed, c.failed);
    if let Some(p) = v.pending_checkpoints.last() {
        let aligning = if p.aligning.is_empty() { String::new() } else { format!(", aligning {}", p.aligning.join(" ")) };
        return (format!("{counts} | #{} {}/{} acks {} ms{aligning}", p.id, p.acks, p.total, p.elapsed_ms), false);
    }
    match v.checkpoint_history.last() {
        Some(h) if h.status == CheckpointStatus::Failed => (format!("{counts} | #{} FAILED", h.id), true),
        Some(h) => (format!("{counts} | #{} {} ms, align {} ms, {}", h.id, h.duration_ms, h.alignment_ms, format_size(h.full_size)), false),
        None => (counts, false),
    }
}

/// What the side's output reader sees (shown when the sides differ by a setting, `--vary`): the
/// Kafka sink's two readers, or another sink's lines and repeats from the verdict.
fn output_text(s: &SideView) -> String {
    match &s.view.output_readers {
        Some(r) => format!(
            "out {}: committed {}, uncommitted {} ({} aborted, {} open)",
            r.topic, r.committed_total, r.uncommitted_total, r.aborted, r.open
        ),
        None => {
            let (lines, repeated) = s.view.verdict.as_ref().map_or((0, 0), |v| (v.output_lines, v.repeated_output));
            format!("out: {lines} lines, {repeated} repeated")
        }
    }
}

/// Narrow: two lines per side (three with `--vary`: the output), the label first.
fn render_side_lines(app: &CompareApp, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let label_w = app.sides.iter().map(|s| s.label.len()).max().unwrap_or(5) + 1;
    let mut lines = Vec::new();
    for s in &app.sides {
        let mut first = vec![Span::styled(format!("{:<label_w$}", s.label), t.title)];
        first.extend(status_spans(app, s));
        lines.push(Line::from(first));
        let (text, failed) = checkpoint_text(s);
        lines.push(Line::from(vec![Span::raw(" ".repeat(label_w)), Span::styled(text, if failed { t.bad } else { t.dim })]));
        if app.varied() {
            lines.push(Line::from(vec![Span::raw(" ".repeat(label_w)), Span::styled(output_text(s), t.text)]));
        }
    }
    let block = Block::bordered().title(Span::styled(" clusters (same records, same kills) ", t.title));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// Wide: a column per side with its status, checkpoint line and recent checkpoints.
fn render_side_column(app: &CompareApp, s: &SideView, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let v = &s.view;
    let mut lines = vec![Line::from(status_spans(app, s))];
    lines.push(Line::styled(format!("{} | {}", v.checkpointing, crate::config::backend_label(v.backend)), t.dim));
    let (text, failed) = checkpoint_text(s);
    lines.push(Line::styled(text, if failed { t.bad } else { t.text }));
    if app.varied() {
        lines.push(Line::styled(output_text(s), t.text));
    }
    lines.push(Line::styled(" id  status      ms  align  size", t.dim));
    let room = (area.height as usize).saturating_sub(6).min(HISTORY_ROWS);
    for h in v.checkpoint_history.iter().rev().take(room) {
        let (status, style) = match h.status {
            CheckpointStatus::Completed => ("✓ done", t.ok),
            CheckpointStatus::Failed => ("✗ FAILED", t.bad),
            CheckpointStatus::InProgress => ("… running", t.warn),
        };
        lines.push(Line::from(vec![
            Span::raw(format!("{:>3}  ", h.id)),
            Span::styled(format!("{status:<9}"), style),
            Span::raw(format!("{:>5} {:>6}  {}", h.duration_ms, h.alignment_ms, format_size(h.full_size))),
        ]));
    }
    let title = Line::from(vec![Span::styled(format!(" {} ", s.label), t.title), Span::styled(format!("({}) ", s.name), t.dim)]);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), area);
}

fn render_verdict(app: &CompareApp, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    // A side is one column of three figures, under its mode's name.
    let wide = area.width >= WIDE;
    let side_w = |s: &SideView| (s.label.len() as u16).max(SIDE_FIGURES) + if wide { VERDICT_WORDS } else { 0 };
    let mut names = vec![Cell::from("key"), Cell::from("expect")];
    let mut figures = vec![Cell::from(""), Cell::from("")];
    let mut widths = vec![Constraint::Length(8), Constraint::Length(6)];
    for s in &app.sides {
        names.push(Cell::from(Span::styled(s.label.as_str(), t.title)));
        figures.push(Cell::from(format!("{:>5} {:>5} {:>5}{}", "state", "lost", "over", if wide { "  verdict" } else { "" })));
        widths.push(Constraint::Length(side_w(s)));
    }
    widths.push(Constraint::Length(1));
    // The figure names are the first row, under the sides' names in the header.
    let mut body = vec![Row::new(figures).style(t.dim)];
    for (kind, r) in app.typed_rows() {
        let key_style = match kind {
            RowKind::Key => t.text,
            RowKind::Total => t.title,
        };
        let mut cells = vec![
            Cell::from(Span::styled(r.key.clone(), key_style)),
            Cell::from(format!("{:>6}", r.cells.first().map_or(0, |c| c.expected))),
        ];
        for c in &r.cells {
            // A figure is highlighted where another side has a different one; lost or
            // overcounted records are wrong whatever the other sides say.
            let odd = |f: fn(&KeyCell) -> u64| r.cells.iter().any(|o| f(o) != f(c));
            let style = |wrong: bool, odd: bool| match (wrong, odd) {
                (true, _) => t.bad,
                (false, true) => t.warn,
                _ => t.text,
            };
            let mut figures = vec![
                Span::styled(format!("{:>5}", c.state), style(false, odd(|k| k.state))),
                Span::styled(format!(" {:>5}", c.lost), style(c.lost > 0, odd(|k| k.lost))),
                Span::styled(format!(" {:>5}", c.overcounted), style(c.overcounted > 0, odd(|k| k.overcounted))),
            ];
            if wide {
                let wrong = c.lost + c.overcounted > 0;
                let words = crate::audit::summary(c.lost, c.overcounted);
                figures.push(Span::styled(format!("  {}{words}", if wrong { "✗ " } else { "✓ " }), if wrong { t.bad } else { t.ok }));
            }
            cells.push(Cell::from(Line::from(figures)));
        }
        cells.push(Cell::from(Span::styled(if r.differs() { DIFFERS } else { " " }, t.warn)));
        body.push(Row::new(cells));
    }
    let verdicts: Vec<String> =
        app.sides
            .iter()
            .map(|s| {
                // A FAILED side that will not restart: its `ok` would hide the records it never
                // processed (issue 24 §4: `off` read "ok" while 468 below the others).
                let words = match (&s.view.verdict, s.view.status) {
                    (None, _) => "…".into(),
                    (Some(v), JobStatus::Failed) => v.failed_summary(),
                    (Some(v), _) => v.summary(),
                };
                format!("{} {words}", s.label)
            })
            .collect();
    let title = Line::from(vec![Span::styled(" verdict per key ", t.title), Span::raw(verdicts.join(" | ") + " ")]);
    let table = Table::new(body, widths).header(Row::new(names).style(t.title)).block(Block::bordered().title(title)).column_spacing(2);
    frame.render_widget(table, area);
}

fn render_input(app: &CompareApp, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let line = match &app.input {
        Some(text) => Line::from(vec![Span::styled("record> ", t.key), Span::raw(text.clone()), Span::styled("▏", t.key)]),
        None => Line::styled(app.message.clone(), t.dim),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn render_footer(app: &CompareApp, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let context = app.context();
    let mut hints: Vec<(String, &'static str)> = app
        .keymap
        .bindings
        .iter()
        .filter(|b| b.footer && b.context == context)
        .map(|b| (b.key.label(), if context == Context::Compare { tiny(b.action) } else { short(b.action) }))
        .collect();
    if context == Context::Compare {
        hints.insert(2, ("1-9".into(), "TM"));
    }
    // Help and quit are always shown: the others give way from the end when the line is full.
    let keep = [short(Action::Help), short(Action::Quit)];
    let width = |h: &(String, &str)| h.0.chars().count() + h.1.chars().count() + 3;
    let kept: usize = hints.iter().filter(|h| keep.contains(&h.1)).map(width).sum();
    let mut used = kept;
    let mut spans = Vec::new();
    for h in &hints {
        let w = width(h);
        if !keep.contains(&h.1) {
            if used + w > area.width as usize {
                continue;
            }
            used += w;
        }
        spans.push(Span::styled(format!(" {}", h.0), t.key));
        spans.push(Span::raw(format!(" {} ", h.1)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_help(app: &CompareApp, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let mut lines = vec![Line::styled("One key, every cluster at once", t.title)];
    for context in [Context::Compare, Context::Input] {
        lines.push(Line::raw(""));
        lines.push(Line::styled(if context == Context::Input { "Typing a record" } else { "Keys" }, t.title));
        for b in app.keymap.bindings.iter().filter(|b| b.context == context) {
            lines.push(Line::from(vec![Span::styled(format!(" {:<7}", b.key.label()), t.key), Span::raw(b.help)]));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(format!("{DIFFERS} marks a key whose figures differ between the sides;"), t.dim));
    lines.push(Line::styled("a differing figure is highlighted, a wrong one in red.", t.dim));
    lines.push(Line::styled("Any key closes this.", t.dim));
    let height = (lines.len() as u16 + 2).min(area.height);
    let [popup] = Layout::vertical([Constraint::Length(height)]).flex(Flex::Center).areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(58.min(area.width))]).flex(Flex::Center).areas(popup);
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(Span::styled(" help ", t.title))), popup);
}
