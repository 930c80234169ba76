//! The job graph: task managers (alive / killed / lost) with the subtasks they host, then every
//! channel between subtasks with what is in flight on it: records (•) and barriers (‖n) moving,
//! in queue order (an unaligned barrier overtaking them), a channel blocked by alignment with the
//! records waiting in it (⏸), backpressure (⇶).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::cluster::view::{ChannelView, DetectionView, TaskManagerView, TmProcess};
use crate::types::TaskId;
use crate::tui::app::{App, Pane};
use crate::tui::render::{ms_text, pane_block};

/// Records drawn as dots before the rest is a number.
const MAX_DOTS: i64 = 8;

/// The symbols, as the legend under the graph explains them (as many as fit; help has them all).
pub const LEGEND: &[&str] = &["• record", "‖7 barrier", "⏸ blocked", "≈7 aligning", "○ task down", "⇶ backpressure"];

/// The legend line for `width` columns: whole items only.
fn legend(width: usize) -> String {
    let mut out = String::new();
    for item in LEGEND {
        if out.chars().count() + 2 + item.chars().count() > width {
            break;
        }
        out.push_str("  ");
        out.push_str(item);
    }
    out
}

/// Lines the pane would like, with the legend.
pub fn lines_wanted(app: &App) -> usize {
    lines_needed(app) + 1
}

/// Task managers with their own line: those hosting tasks, dead ones and the selected one; the
/// other idle ones share one line, so many TMs never push the channels out of sight.
fn tm_rows(app: &App) -> (Vec<usize>, Vec<usize>) {
    let idle: Vec<usize> = app
        .view
        .task_managers
        .iter()
        .enumerate()
        .filter(|(i, t)| t.alive && t.tasks.is_empty() && *i != app.selected_tm)
        .map(|(i, _)| i)
        .collect();
    if idle.len() < 2 {
        return ((0..app.view.task_managers.len()).collect(), Vec::new());
    }
    ((0..app.view.task_managers.len()).filter(|i| !idle.contains(i)).collect(), idle)
}

/// Inner lines the pane would like: one per TM (idle ones share one), one per channel.
pub fn lines_needed(app: &App) -> usize {
    let (own, idle) = tm_rows(app);
    own.len() + usize::from(!idle.is_empty()) + app.view.channels.len().max(1)
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let inner_width = area.width.saturating_sub(2) as usize;
    let long_names = inner_width >= 56;
    let (own, idle) = tm_rows(app);
    let mut lines: Vec<Line> = own.iter().map(|&i| tm_line(app, i, &app.view.task_managers[i], long_names)).collect();
    if !idle.is_empty() {
        let names: Vec<&str> = idle.iter().map(|&i| app.view.task_managers[i].name.as_str()).collect();
        let text = format!("  ● {} idle: {}", idle.len(), names.join(" "));
        lines.push(Line::styled(crate::tui::render::fit(&text, inner_width), app.theme.dim));
    }
    let name_width = app.view.channels.iter().map(|c| channel_name(c, long_names).chars().count()).max().unwrap_or(0);
    let mut channels: Vec<&ChannelView> = app.view.channels.iter().collect();
    // Data flows source -> counter -> sink: TaskId orders its variants so.
    channels.sort_by_key(|c| (c.from, c.to));
    lines.extend(channels.into_iter().map(|c| channel_line(app, c, long_names, name_width)));
    if app.view.channels.is_empty() {
        lines.push(Line::styled(" no tasks deployed: the job is not running", app.theme.dim));
    }
    // The legend under the graph, where there is room for it.
    let inner_height = area.height.saturating_sub(2) as usize;
    if lines.len() < inner_height && app.scroll_of(Pane::Graph) == 0 {
        lines.push(Line::styled(legend(inner_width), app.theme.dim));
    }
    let in_flight: i64 = app.view.channels.iter().map(|c| c.in_flight).sum();
    let flush = match app.view.buffer_timeout_ms {
        Some(0) => "flush each record".to_string(),
        Some(ms) => format!("flush {}", ms_text(ms)),
        None => "flush when full".to_string(),
    };
    let long = format!("{in_flight} on the wire · {flush}");
    let title = if long.chars().count() + 16 <= area.width as usize { long } else { format!("{in_flight} on the wire") };
    let extra = Line::from(Span::styled(title, app.theme.dim));
    let block = pane_block(app, Pane::Graph, "Job graph", Some(extra));
    frame.render_widget(Paragraph::new(lines).block(block).scroll((app.scroll_of(Pane::Graph), 0)), area);
}

fn tm_line<'a>(app: &App, index: usize, tm: &'a TaskManagerView, long_names: bool) -> Line<'a> {
    let t = &app.theme;
    let selected = index == app.selected_tm;
    let mut spans = vec![Span::raw(if selected { "▶" } else { " " })];
    let name_style = if selected { t.selected } else { t.title };
    if tm.alive {
        spans.push(Span::styled("● ", t.ok));
        spans.push(Span::styled(tm.name.clone(), name_style));
    } else {
        // A symbol per state, never the colour alone: ✗ killed, ◌ hung.
        let (symbol, what) = if tm.process == TmProcess::Hung { ("◌ ", "hung") } else { ("✗ ", "killed") };
        spans.push(Span::styled(symbol, t.bad));
        spans.push(Span::styled(tm.name.clone(), name_style));
        let how = match tm.detection {
            Some(DetectionView::RpcFailures { failed, threshold, .. }) => format!(", RPCs failed {failed}/{threshold}"),
            Some(DetectionView::HeartbeatTimeout { .. }) => ", heartbeat timeout".to_string(),
            None => String::new(),
        };
        let state = match tm.heartbeat_timeout_in_ms {
            Some(ms) => format!(" {what}{how}, lost in {}", ms_text(ms)),
            None if tm.lost && tm.process == TmProcess::Hung => " hung, lost".to_string(),
            None => format!(" {what}"),
        };
        spans.push(Span::styled(state, t.bad));
    }
    if tm.tasks.is_empty() {
        spans.push(Span::styled(if tm.alive { "  free slot" } else { "" }, t.dim));
    }
    // A dead TM's tasks are gone; on narrow screens its line keeps only the countdown.
    let tasks: &[TaskId] = if tm.alive || long_names { &tm.tasks } else { &[] };
    for &task in tasks {
        let view = app.view.tasks.iter().find(|v| v.task == task);
        let running = view.is_some_and(|v| v.running) && tm.alive;
        spans.push(Span::raw(" "));
        let name = if long_names { task.to_string() } else { short_task(task) };
        spans.push(Span::styled(name, if running { t.text } else { t.dim }));
        match view.and_then(|v| v.aligning) {
            Some(id) if running => spans.push(Span::styled(format!("≈{id}"), t.barrier)),
            _ if !running => spans.push(Span::styled("○", t.dim)),
            _ => {}
        }
    }
    Line::from(spans)
}

fn channel_name(c: &ChannelView, long: bool) -> String {
    if long {
        format!("{}→{}", c.from, c.to)
    } else {
        format!("{}→{}", short_task(c.from), short_task(c.to))
    }
}

/// `source[1]` -> `src1`, `counter[0]` -> `cnt0`.
fn short_task(task: TaskId) -> String {
    match task {
        TaskId::Source(i) => format!("src{i}"),
        TaskId::Counter(i) => format!("cnt{i}"),
        TaskId::Sink => "sink0".to_string(),
    }
}

fn channel_line<'a>(app: &App, c: &ChannelView, long: bool, name_width: usize) -> Line<'a> {
    let t = &app.theme;
    let mut spans = vec![Span::raw(format!(" {:<name_width$} ", channel_name(c, long)))];
    // The queue in order: records ahead of each barrier, the barrier, the rest. An unaligned
    // barrier on the priority lane is drawn first, with how many records it overtook.
    let dots = |spans: &mut Vec<Span<'a>>, n: i64| {
        if n > 0 {
            spans.push(Span::styled("•".repeat(n.min(MAX_DOTS) as usize), t.record));
        }
        if n > MAX_DOTS {
            spans.push(Span::styled(format!("+{}", n - MAX_DOTS), t.record));
        }
    };
    let mut remaining = c.in_flight;
    let mut drawn = 0;
    for b in &c.barriers {
        if b.overtook > 0 {
            spans.push(Span::styled(format!("‖{} overtook {}", b.checkpoint, b.overtook), t.barrier));
            continue;
        }
        let ahead = (b.records_ahead as i64 - drawn).clamp(0, remaining);
        dots(&mut spans, ahead);
        drawn += ahead;
        remaining -= ahead;
        spans.push(Span::styled(format!("‖{}", b.checkpoint), t.barrier));
    }
    dots(&mut spans, remaining);
    if c.in_flight == 0 && c.barriers.is_empty() {
        spans.push(Span::styled("·", t.dim));
    }
    if c.blocked {
        spans.push(Span::styled(format!(" ⏸ blocked, {} waiting", c.buffered), t.warn));
    }
    if c.backpressured {
        spans.push(Span::styled(" ⇶ backpressure", t.bad));
    }
    // The view's delay is the channel's extra latency (`ckptlab.delays`, the slow-channel key).
    if c.delay_ms > 0 {
        spans.push(Span::styled(format!(" slow +{}", ms_text(c.delay_ms)), t.warn));
    }
    Line::from(spans)
}
