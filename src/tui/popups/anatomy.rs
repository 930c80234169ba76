//! Enter on a row of the checkpoints pane: a checkpoint's anatomy, as the Flink Web UI's checkpoint
//! details and Arroyo's timeline show it. One time axis from the trigger to the last ack, one bar
//! per subtask split into waiting for the barrier, alignment, sync and async parts; then each
//! subtask's figures (ack, alignment, sizes, offsets) and why the checkpoint failed if it did.
//! Under a slow channel the alignment part is the long one.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use crate::cluster::coordinator::{CheckpointStats, CheckpointStatus, SubtaskCheckpointStats};
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
            "took {} · alignment {} (the slowest subtask's){}",
            ms_text(s.duration_ms),
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
    out.push(Line::from(legend));
    out.push(Line::raw(""));
    out.push(Line::styled(
        format!("{:<NAME$} {:>7} {:>7} {:>7} {:>7} {:>7}  {}", "subtask", "barrier", "align", "sync", "async", "ack", "state"),
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
        let text = format!(
            "{:<NAME$} {:>7} {:>7} {:>7} {:>7} {:>7}  {state}",
            st.task,
            ms(st.barrier_ms()),
            ms_text(st.alignment_ms),
            ms_text(st.sync_ms),
            ms_text(st.async_ms),
            ms(st.ack_ms),
        );
        out.push(Line::styled(text, if st.ack_ms.is_none() { t.bad } else { t.text }));
    }
    out
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
    if st.ack_ms.is_none() {
        return vec![Span::styled("?".repeat(width), t.bad)];
    }
    let col = |ms: u64| ((ms as f64 * width as f64 / span_ms as f64).round() as usize).min(width);
    let barrier = st.barrier_ms().unwrap_or(0);
    let parts: [(u64, (&str, &str), Style); 4] =
        [(barrier, WAITING, t.dim), (st.alignment_ms, ALIGNMENT, t.warn), (st.sync_ms, SYNC, t.barrier), (st.async_ms, ASYNC, t.record)];
    let mut spans = Vec::new();
    let mut used = 0;
    let mut at_ms = 0;
    for (ms, (sym, _), style) in parts {
        at_ms += ms;
        let end = col(at_ms).max(if ms > 0 { used + 1 } else { used }).min(width);
        if end > used {
            spans.push(Span::styled(sym.repeat(end - used), style));
            used = end;
        }
    }
    // The ack: a tick where the bar ends.
    if used < width {
        spans.push(Span::styled(ACK.0, t.text));
        used += 1;
    }
    spans.push(Span::raw(" ".repeat(width - used)));
    spans
}
