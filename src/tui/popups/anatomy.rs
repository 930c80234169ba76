//! Enter on a row of the checkpoints pane: a checkpoint's anatomy, as the Flink Web UI's checkpoint
//! details and Arroyo's timeline show it. One time axis from the trigger to the last ack, one bar
//! per subtask split into waiting for the barrier (its start delay), alignment, sync and async
//! parts; then each subtask's figures (start delay, alignment, sizes, offsets) and why the
//! checkpoint failed if it did. Under a slow channel the alignment part is the long one; under
//! backpressure the start delay. A failed checkpoint's subtasks that never acknowledged are drawn
//! as far as they got (start delay, alignment or upload so far) and named with what they waited
//! for: the records still queued ahead of the barrier, or the upload.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use crate::cluster::coordinator::{CheckpointStats, CheckpointStatus, SubtaskCheckpointStats, Unacknowledged};
use crate::duration::format_size;
use crate::tui::app::App;
use crate::tui::render::ms_text;
use crate::tui::theme::Theme;

/// The subtask name column.
const NAME: usize = 11;
/// The widest the popup gets.
const MAX_WIDTH: u16 = 110;

/// The parts of a bar: symbol, what it is. Symbols differ too, so the bar reads without colour.
const WAITING: (&str, &str) = ("·", "waiting for the barrier");
const ALIGNMENT: (&str, &str) = ("▒", "alignment");
const SYNC: (&str, &str) = ("▓", "sync");
const ASYNC: (&str, &str) = ("█", "async");
/// Where the ack reached the coordinator.
const ACK: (&str, &str) = ("▏", "ack");
/// Where a subtask that never acknowledged was when the checkpoint failed.
const FAILED_AT: &str = "✗";

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(id) = app.anatomy else { return };
    let t = &app.theme;
    let width = area.width.min(MAX_WIDTH);
    let lines = match app.view.checkpoint_history.iter().find(|c| c.id == id) {
        Some(stats) => lines(stats, t, width.saturating_sub(2)),
        None => vec![Line::styled(format!("checkpoint {id} is no longer in the history"), t.dim)],
    };
    let mut lines = lines;
    lines.push(Line::styled("any key closes", t.dim));
    let [popup] = Layout::vertical([Constraint::Length((lines.len() as u16 + 2).min(area.height))]).flex(Flex::Center).areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(width)]).flex(Flex::Center).areas(popup);
    frame.render_widget(Clear, popup);
    let block = Block::bordered().title(Line::styled(format!(" Checkpoint {id} "), t.title)).border_style(t.key);
    frame.render_widget(Paragraph::new(lines).block(block), popup);
}

/// The popup's lines for a checkpoint, `width` columns wide.
pub fn lines(s: &CheckpointStats, t: &Theme, width: u16) -> Vec<Line<'static>> {
    let width = width as usize;
    let (status, style) = match s.status {
        CheckpointStatus::Completed => ("✓ COMPLETED", t.ok),
        CheckpointStatus::Failed => ("✗ FAILED", t.bad),
        CheckpointStatus::InProgress => ("… IN PROGRESS", t.warn),
    };
    let kind = if s.unaligned { "unaligned" } else { "aligned" };
    let mut out = vec![
        Line::from(vec![
            Span::styled(status, style),
            Span::raw(format!("  {} {kind} · triggered at {:.1}s", s.mode.flink_name(), s.trigger_ms as f64 / 1000.0)),
        ]),
        Line::raw(format!(
            "took {} · start delay {} · alignment {}{}",
            ms_text(s.duration_ms),
            s.barrier_still_waiting_ms().map_or_else(|| ms_text(s.start_delay_ms), |w| format!("> {}", ms_text(w))),
            ms_text(s.alignment_ms),
            if s.status == CheckpointStatus::Completed { format!(" · size {}", format_size(s.full_size)) } else { String::new() }
        )),
    ];
    if let Some(reason) = &s.failure {
        out.extend(wrap(&format!("why it failed: {reason}"), width).into_iter().map(|l| Line::styled(l, t.bad)));
    }
    if s.subtasks.is_empty() {
        out.push(Line::styled("no per-subtask figures (recorded by ckptlab from this version on)", t.dim));
        return out;
    }
    // The axis runs from the trigger to the last ack (or the failure, if later).
    let span_ms = s.subtasks.iter().filter_map(|st| st.ack_ms).max().unwrap_or(0).max(s.duration_ms).max(1);
    let ack_w = 8;
    let bar_w = width.saturating_sub(NAME + ack_w + 2).max(10);
    out.push(Line::raw(""));
    out.push(Line::from(vec![
        Span::styled(format!("{:<NAME$} ", "subtask"), t.title),
        Span::styled(axis(span_ms, bar_w), t.dim),
        Span::styled(format!(" {:>w$}", "ack", w = ack_w), t.title),
    ]));
    for st in &s.subtasks {
        let mut spans = vec![Span::raw(format!("{:<NAME$} ", st.task))];
        spans.extend(bar(st, span_ms, bar_w, t));
        let ack = st.ack_ms.map_or("no ack".to_string(), ms_text);
        spans.push(Span::styled(format!(" {ack:>w$}", w = ack_w), if st.ack_ms.is_none() { t.bad } else { t.text }));
        out.push(Line::from(spans));
    }
    let mut legend = vec![Span::raw(format!("{:<NAME$} ", ""))];
    for ((sym, what), style) in [(WAITING, t.dim), (ALIGNMENT, t.warn), (SYNC, t.barrier), (ASYNC, t.record), (ACK, t.text)] {
        legend.push(Span::styled(sym, style));
        legend.push(Span::raw(format!(" {what}  ")));
    }
    if s.status == CheckpointStatus::Failed {
        legend.push(Span::styled(FAILED_AT, t.bad));
        legend.push(Span::raw(" failed"));
    }
    out.push(Line::from(legend));
    out.push(Line::raw(""));
    out.push(Line::styled(
        format!("{:<NAME$} {:>7} {:>7} {:>7} {:>7} {:>7}  {}", "subtask", "delay", "align", "sync", "async", "ack", "state"),
        t.title,
    ));
    for st in &s.subtasks {
        let ms = |v: Option<u64>| v.map_or("-".to_string(), ms_text);
        // What the subtask put in the checkpoint: a source its offsets, a counter its state.
        let mut state = if st.offsets.is_empty() {
            if st.checkpointed_size > 0 {
                format_size(st.checkpointed_size)
            } else {
                "-".into()
            }
        } else {
            st.offsets.iter().map(|(p, o)| format!("p{p}@{o}")).collect::<Vec<_>>().join(" ")
        };
        if st.persisted_size > 0 {
            // Which end persisted it: a sender its output queues, a receiver what it received.
            let out = st.output_size.min(st.persisted_size);
            let input = st.persisted_size - out;
            let ends = match (out > 0, input > 0) {
                (true, true) => format!("out {}, in {}", format_size(out), format_size(input)),
                (true, false) => "output".into(),
                _ => "input".into(),
            };
            state.push_str(&format!(" + {} in flight ({ends})", format_size(st.persisted_size)));
        }
        if st.unaligned {
            state.push_str(" (unaligned)");
        }
        let delay = match st.unacknowledged {
            Some(Unacknowledged::WaitingForBarrier { waited_ms, .. }) => format!(">{}", ms_text(waited_ms)),
            _ => ms(st.barrier_ms()),
        };
        let async_ms = match st.unacknowledged {
            Some(Unacknowledged::Writing { async_ms }) => async_ms,
            _ => st.async_ms,
        };
        let text = format!(
            "{:<NAME$} {:>7} {:>7} {:>7} {:>7} {:>7}  {state}",
            st.task,
            delay,
            ms_text(st.alignment_ms),
            ms_text(st.sync_ms),
            ms_text(async_ms),
            ms(st.ack_ms),
        );
        out.push(Line::styled(text, if st.ack_ms.is_none() { t.bad } else { t.text }));
    }
    let never: Vec<&SubtaskCheckpointStats> = s.subtasks.iter().filter(|st| st.ack_ms.is_none()).collect();
    if s.status == CheckpointStatus::Failed && !never.is_empty() {
        for st in never {
            for l in wrap(&format!("{FAILED_AT} {}: {}", st.task, unacknowledged_text(st)), width) {
                out.push(Line::styled(l, t.bad));
            }
        }
    }
    out
}

/// What a subtask that never acknowledged was doing when its checkpoint failed.
fn unacknowledged_text(st: &SubtaskCheckpointStats) -> String {
    let records = |n: u64| if n == 1 { "1 record".to_string() } else { format!("{n} records") };
    match st.unacknowledged {
        None => "not running (nothing known of it)".into(),
        Some(Unacknowledged::WaitingForBarrier { waited_ms, records_ahead, channels_without_barrier }) => {
            let mut text = format!("no barrier after {}; {} queued ahead of it", ms_text(waited_ms), records(records_ahead));
            if channels_without_barrier > 0 {
                text.push_str(&format!(" ({channels_without_barrier} input(s) without it yet upstream)"));
            }
            text
        }
        Some(Unacknowledged::Aligning { records_ahead, blocked_records }) => format!(
            "aligning {}; {} ahead of the barrier, {} blocked",
            ms_text(st.alignment_ms),
            records(records_ahead),
            records(blocked_records)
        ),
        Some(Unacknowledged::Writing { async_ms }) => format!("snapshot taken, upload running {}", ms_text(async_ms)),
    }
}

/// `text` in lines of at most `width` columns, broken between words.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().map_or(0, |l| l.chars().count());
        if last > 0 && last + 1 + word.chars().count() > width {
            lines.push(String::new());
        }
        if let Some(l) = lines.last_mut() {
            if !l.is_empty() {
                l.push(' ');
            }
            l.push_str(word);
        }
    }
    lines
}

/// `0ms ······ 206ms ······ 412ms` across the bar's width.
fn axis(span_ms: u64, width: usize) -> String {
    let start = ms_text(0);
    let mid = ms_text(span_ms / 2);
    let end = ms_text(span_ms);
    let mut line = vec![' '; width];
    let mut put = |at: usize, text: &str| {
        for (i, c) in text.chars().enumerate() {
            if let Some(slot) = line.get_mut(at + i) {
                *slot = c;
            }
        }
    };
    put(0, &start);
    put((width / 2).saturating_sub(mid.chars().count() / 2), &mid);
    put(width.saturating_sub(end.chars().count()), &end);
    line.into_iter().collect()
}

/// A subtask's bar: the parts in order, each at least one column when it took any time, on an
/// axis of `span_ms` over `width` columns; a subtask that never acked is a dim line to the end.
fn bar(st: &SubtaskCheckpointStats, span_ms: u64, width: usize, t: &Theme) -> Vec<Span<'static>> {
    let col = |ms: u64| ((ms as f64 * width as f64 / span_ms as f64).round() as usize).min(width);
    let parts: [(u64, (&str, &str), Style); 4] = match (st.ack_ms, st.unacknowledged) {
        (None, None) => return vec![Span::styled("?".repeat(width), t.bad)],
        // Never acknowledged: as far as it got, then where the checkpoint failed.
        (None, Some(u)) => {
            let (waited, alignment, sync, upload) = match u {
                Unacknowledged::WaitingForBarrier { waited_ms, .. } => (waited_ms, 0, 0, 0),
                Unacknowledged::Aligning { .. } => (st.start_delay_ms.unwrap_or(0), st.alignment_ms, 0, 0),
                Unacknowledged::Writing { async_ms } => (st.start_delay_ms.unwrap_or(0), st.alignment_ms, st.sync_ms, async_ms),
            };
            let parts = [(waited, WAITING, t.dim), (alignment, ALIGNMENT, t.warn), (sync, SYNC, t.barrier), (upload, ASYNC, t.record)];
            let mut spans = Vec::new();
            let used = draw_parts(&parts, &col, width, &mut spans);
            let used = if used >= width && used > 0 {
                // The failure is the bar's last column.
                spans.pop().map_or(0, |last| {
                    let n = last.content.chars().count();
                    if n > 1 {
                        spans.push(Span::styled(last.content.chars().take(n - 1).collect::<String>(), last.style));
                    }
                    used - 1
                })
            } else {
                used
            };
            spans.push(Span::styled(FAILED_AT, t.bad));
            spans.push(Span::raw(" ".repeat(width.saturating_sub(used + 1))));
            return spans;
        }
        (Some(_), _) => [
            (st.barrier_ms().unwrap_or(0), WAITING, t.dim),
            (st.alignment_ms, ALIGNMENT, t.warn),
            (st.sync_ms, SYNC, t.barrier),
            (st.async_ms, ASYNC, t.record),
        ],
    };
    let mut spans = Vec::new();
    let mut used = draw_parts(&parts, &col, width, &mut spans);
    // The ack: a tick where the bar ends.
    if used < width {
        spans.push(Span::styled(ACK.0, t.text));
        used += 1;
    }
    spans.push(Span::raw(" ".repeat(width - used)));
    spans
}

/// Draws the parts in order, each at least one column when it took any time; returns the
/// columns used.
fn draw_parts(parts: &[(u64, (&str, &str), Style); 4], col: &dyn Fn(u64) -> usize, width: usize, spans: &mut Vec<Span<'static>>) -> usize {
    let mut used = 0;
    let mut at_ms = 0;
    for &(ms, (sym, _), style) in parts {
        at_ms += ms;
        let end = col(at_ms).max(if ms > 0 { used + 1 } else { used }).min(width);
        if end > used {
            spans.push(Span::styled(sym.repeat(end - used), style));
            used = end;
        }
    }
    used
}
