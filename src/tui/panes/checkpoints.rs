//! Checkpoints, as Flink's Checkpoints tab: counts, the one in progress (acks, who is aligning),
//! and the history of completed and failed ones, newest first. `delay` is the checkpoint's start
//! delay (Flink's `start_delay`, the largest of its subtasks': trigger to barrier arrival); a
//! failed checkpoint whose barrier never reached some subtask shows `>` the time it waited.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use crate::cluster::coordinator::{CheckpointStats, CheckpointStatus};
use crate::duration::format_size;
use crate::tui::app::{App, Pane};
use crate::tui::render::{ms_text, pane_block};

/// Width from which the history shows trigger time, offsets and the failure reason in columns.
const WIDE: u16 = 70;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let v = &app.view;
    let c = v.checkpoint_counts;
    let wide = area.width >= WIDE;
    let counts = if wide {
        format!("{} triggered · {} completed · {} failed · {} restored", c.triggered, c.completed, c.failed, c.restored)
    } else {
        format!("completed {} · failed {} · restored {}", c.completed, c.failed, c.restored)
    };
    let counts = Line::from(Span::styled(counts, t.dim));
    let block = pane_block(app, Pane::Checkpoints, "Checkpoints", None);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [counts_area, pending_area, table_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(pending_lines(app)), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(counts), counts_area);
    frame.render_widget(Paragraph::new(pending(app, wide)), pending_area);

    let header: Vec<&str> = if wide {
        vec!["id", "status", "at", "took", "delay", "align", "size", "offsets / reason"]
    } else {
        vec!["id", "status", "took", "delay", "align", "size"]
    };
    let widths: Vec<Constraint> = if wide {
        vec![
            Constraint::Length(4),
            Constraint::Length(11),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Min(10),
        ]
    } else {
        vec![
            Constraint::Length(3),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Min(6),
        ]
    };
    let focused = app.focus == Pane::Checkpoints;
    // Focused, the top row is the selected one: Enter opens its anatomy.
    let rows = v.checkpoint_history.iter().rev().skip(app.scroll_of(Pane::Checkpoints) as usize).enumerate().map(|(i, s)| {
        let row = history_row(app, s, wide);
        if focused && i == 0 {
            row.style(t.selected)
        } else {
            row
        }
    });
    let table = Table::new(rows, widths).header(Row::new(header).style(t.title)).column_spacing(1);
    frame.render_widget(table, table_area);
}

fn pending_lines(app: &App) -> u16 {
    app.view.pending_checkpoints.len().clamp(1, 2) as u16
}

fn pending(app: &App, wide: bool) -> Vec<Line<'static>> {
    let t = &app.theme;
    if app.view.pending_checkpoints.is_empty() {
        let why = match (app.view.interval_ms, wide) {
            (None, true) => "checkpointing off (m turns it on; c triggers one)",
            (None, false) => "checkpointing off (m: on)",
            (Some(_), true) => "none in progress (c triggers one now)",
            (Some(_), false) => "none in progress (c: now)",
        };
        return vec![Line::styled(why, t.dim)];
    }
    app.view
        .pending_checkpoints
        .iter()
        .take(2)
        .map(|p| {
            let mut spans = vec![
                Span::styled(format!("‖{} ", p.id), t.barrier),
                Span::raw(format!("acks {}/{} · {}", p.acks, p.total, ms_text(p.elapsed_ms))),
            ];
            if !p.aligning.is_empty() {
                spans.push(Span::styled(format!(" · aligning {}", p.aligning.join(", ")), t.warn));
            } else if !p.persisting.is_empty() {
                spans.push(Span::styled(format!(" · persisting in-flight records at {}", p.persisting.join(", ")), t.barrier));
            } else if !p.missing.is_empty() {
                spans.push(Span::styled(format!(" · waiting for {}", p.missing.join(", ")), t.dim));
            }
            Line::from(spans)
        })
        .collect()
}

fn history_row(app: &App, s: &CheckpointStats, wide: bool) -> Row<'static> {
    let t = &app.theme;
    let failed = s.status == CheckpointStatus::Failed;
    let status = match (s.status, wide) {
        (CheckpointStatus::Completed, true) => Span::styled("✓ COMPLETED", t.ok),
        (CheckpointStatus::Completed, false) => Span::styled("✓ done", t.ok),
        (CheckpointStatus::Failed, true) => Span::styled("✗ FAILED", t.bad),
        (CheckpointStatus::Failed, false) => Span::styled("✗ fail", t.bad),
        (CheckpointStatus::InProgress, _) => Span::styled("… running", t.dim),
    };
    let size = if s.checkpointed_size != s.full_size && s.full_size > 0 {
        format!("{}/{}", format_size(s.checkpointed_size), format_size(s.full_size))
    } else {
        format_size(s.full_size)
    };
    let reason = s.failure.clone().unwrap_or_default();
    let mut offsets = s.offsets.iter().map(|(p, o)| format!("p{p}@{o}")).collect::<Vec<_>>().join(" ");
    if s.unaligned {
        // Flink's "Persisted Data": the in-flight records the barriers overtook, by the senders
        // (output channel state) and by the receivers (input channel state).
        let out = s.output_size().min(s.persisted_size);
        offsets = format!(
            "unaligned, persisted {} (out {} · in {}) · {offsets}",
            format_size(s.persisted_size),
            format_size(out),
            format_size(s.persisted_size - out)
        );
    }
    let size = if s.persisted_size > 0 && !wide { format!("{size}+{}", format_size(s.persisted_size)) } else { size };
    let mut cells = vec![Cell::from(s.id.to_string()), Cell::from(Line::from(status))];
    if wide {
        cells.push(Cell::from(format!("{:.1}s", s.trigger_ms as f64 / 1000.0)));
    }
    cells.push(Cell::from(ms_text(s.duration_ms)));
    cells.push(match s.barrier_still_waiting_ms() {
        Some(waited) => Cell::from(Span::styled(format!(">{}", ms_text(waited)), t.bad)),
        None => Cell::from(ms_text(s.start_delay_ms)),
    });
    cells.push(Cell::from(ms_text(s.alignment_ms)));
    if wide {
        cells.push(Cell::from(if failed { String::new() } else { size }));
        cells.push(if failed { Cell::from(Span::styled(reason, t.bad)) } else { Cell::from(offsets) });
    } else {
        cells.push(if failed { Cell::from(Span::styled(reason, t.bad)) } else { Cell::from(size) });
    }
    Row::new(cells)
}
