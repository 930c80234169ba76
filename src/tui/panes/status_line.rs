//! The title/status line: job and status (with what the user can do about it), the countdown
//! while a killed or hung TM is not noticed yet (which detection runs: failed heartbeat RPCs for a
//! kill, the heartbeat timeout for a hang), paused, then mode, interval, backend, speed and the
//! generator. One line when it fits, else two: the job's state first, the settings below.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::cluster::view::{DetectionView, JobStatus, TaskManagerView, TmProcess};
use crate::config::{backend_label, CheckpointingMode, SeedBackend};
use crate::duration::format_duration;
use crate::tui::app::{App, Pane};
use super::lesson;
use crate::tui::render::{ms_text, spans_width};

type Part = Vec<Span<'static>>;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    frame.render_widget(Paragraph::new(lines(app, area.width as usize)), area);
}

/// How many lines the status needs at this width (1 or 2).
pub fn height(app: &App, width: usize) -> u16 {
    lines(app, width).len() as u16
}

pub fn lines(app: &App, width: usize) -> Vec<Line<'static>> {
    let (job, settings) = parts(app, width);
    let all: Vec<Part> = job.iter().chain(settings.iter()).cloned().collect();
    if width_of(&all) <= width {
        return vec![join(app, all, width)];
    }
    vec![join(app, job, width), join(app, settings, width)]
}

/// A silent TM's countdown, naming the detection that runs; the short form where the long one
/// does not fit in `room` columns.
fn countdown(tm: &TaskManagerView, ms: u64, room: usize) -> String {
    let (name, lost_in) = (&tm.name, ms_text(ms));
    let (long, short) = match tm.detection {
        Some(DetectionView::RpcFailures { failed, threshold, .. }) => (
            format!("♥ {name} killed: heartbeat RPCs failed {failed}/{threshold}, lost in {lost_in}"),
            format!("♥ {name} RPCs failed {failed}/{threshold}, lost in {lost_in}"),
        ),
        Some(DetectionView::HeartbeatTimeout { timeout_ms }) => {
            let what = if tm.process == TmProcess::Hung { "hangs" } else { "killed" };
            (
                format!("♥ {name} {what}: heartbeat timeout {}, lost in {lost_in}", ms_text(timeout_ms)),
                format!("♥ {name} {what}: timeout in {lost_in}"),
            )
        }
        // A view without the detection (an older one read back): only the countdown.
        None => (format!("♥ {name} silent: lost in {lost_in}"), format!("♥ {name} lost in {lost_in}")),
    };
    if long.chars().count() <= room {
        long
    } else {
        short
    }
}

fn width_of(parts: &[Part]) -> usize {
    parts.iter().map(|p| spans_width(p)).sum::<usize>() + 3 * parts.len().saturating_sub(1)
}

/// Parts joined by ` · `; a part that does not fit is left out (later, smaller ones may still fit).
fn join(app: &App, parts: Vec<Part>, width: usize) -> Line<'static> {
    let mut out: Vec<Span<'static>> = Vec::new();
    for part in parts {
        let sep = if out.is_empty() { 0 } else { 3 };
        if spans_width(&out) + sep + spans_width(&part) > width {
            continue;
        }
        if sep > 0 {
            out.push(Span::styled(" · ", app.theme.dim));
        }
        out.extend(part);
    }
    Line::from(out)
}

/// (the job's state, the settings), each a list of parts, most important first.
fn parts(app: &App, width: usize) -> (Vec<Part>, Vec<Part>) {
    let v = &app.view;
    let t = &app.theme;
    let status: Part = match v.status {
        JobStatus::Running if v.all_tasks_running => vec![Span::styled("● RUNNING", t.ok)],
        // The default scheduler's restart: RUNNING again, its tasks SCHEDULED until slots come.
        JobStatus::Running if v.missing_slots > 0 => {
            let slots = if v.missing_slots == 1 { "slot" } else { "slots" };
            vec![Span::styled("◌ RUNNING", t.bad), Span::raw(format!(" (tasks SCHEDULED: {} {slots} missing, s starts a TM)", v.missing_slots))]
        }
        JobStatus::Running => vec![Span::styled("◐ RUNNING", t.warn), Span::raw(" (a task is down)")],
        JobStatus::Created => vec![Span::styled("○ CREATED", t.dim)],
        JobStatus::Restarting => {
            let when = v.restart_in_ms.map(|ms| format!(" in {}", ms_text(ms))).unwrap_or_default();
            vec![Span::styled(format!("↻ RESTARTING{when}"), t.warn)]
        }
        JobStatus::Failed => vec![Span::styled("✗ FAILED", t.bad), Span::raw(" (R resubmits)")],
        JobStatus::Finished => vec![Span::styled("■ FINISHED", t.dim), Span::raw(" (stopped with a savepoint: R resubmits from it)")],
    };
    // A lesson step that points at the status line marks it as it marks a pane (★, never colour alone).
    let marker = lesson::highlights(app, Pane::Status).then(|| Span::styled("★ ", t.warn));
    let mut job: Vec<Part> = vec![[marker.into_iter().collect(), vec![Span::styled(format!("{} ", v.job_name), t.title)], status].concat()];
    // Why the job is down (a restore that cannot read its state names the file), cut to fit.
    if let (JobStatus::Restarting | JobStatus::Failed, Some(cause)) = (v.status, &v.failure) {
        let room = width.saturating_sub(spans_width(&job[0]) + 3).max(1);
        let text: String =
            if cause.chars().count() > room { cause.chars().take(room - 1).chain(std::iter::once('…')).collect() } else { cause.clone() };
        job.push(vec![Span::styled(text, t.bad)]);
    }
    for tm in &v.task_managers {
        if let Some(ms) = tm.heartbeat_timeout_in_ms {
            let room = width.saturating_sub(spans_width(&job[0]) + 3);
            job.push(vec![Span::styled(countdown(tm, ms, room), t.bad)]);
        }
    }
    if v.paused {
        job.push(vec![Span::styled("⏸ PAUSED (space resumes)", t.warn)]);
    }
    if v.topic_status.is_some() {
        job.push(vec![Span::styled("✗ TOPIC UNAVAILABLE (see input pane)", t.bad)]);
    }
    let mode = match (v.mode, v.interval_ms) {
        (CheckpointingMode::Off, _) | (_, None) => CheckpointingMode::Off.label().to_string(),
        (mode, Some(ms)) => format!("{} every {}", mode.label(), format_duration(std::time::Duration::from_millis(ms))),
    };
    // Most important first: a part that does not fit is left out, so the generator and the
    // experiment's knobs (slow channel, buffer timeout) come before the backend and the speed.
    let mut settings: Vec<Part> = vec![vec![Span::styled(mode, t.title)]];
    if app.generator_on {
        settings.push(vec![Span::styled(format!("gen {}/s", app.rate()), t.record)]);
    }
    let slow = crate::tui::app::slow_channel(&app.view).map_or(0, |c| c.delay_ms);
    if slow > 0 {
        settings.push(vec![Span::styled(format!("slow src1→cnt* +{}", ms_text(slow)), t.warn)]);
    }
    let buffer = match v.buffer_timeout_ms {
        Some(ms) => format!("buffer {}", format_duration(std::time::Duration::from_millis(ms))),
        None => "buffer off".to_string(),
    };
    settings.push(vec![Span::raw(buffer)]);
    // The seed's name on narrow screens; Flink 2's two options beside it on wide ones.
    let backend = if width >= 140 { backend_label(v.backend) } else { SeedBackend::of(v.backend).class_name().to_string() };
    settings.push(vec![Span::raw(backend)]);
    let speed = if v.hop_delay_ms == 0 { "speed max".to_string() } else { format!("hop {} ms", v.hop_delay_ms) };
    settings.push(vec![Span::raw(speed)]);
    (job, settings)
}
