//! A scenario playing in the workbench (`--scenario FILE`, or `o`): its steps with their notes,
//! what has run so far, and the result at the end.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::duration::format_duration;
use crate::scenario::{Action, Step};
use crate::tui::app::{App, Pane};
use crate::tui::render::pane_block;

/// One step as a line of the step list.
pub fn step_text(step: &Step) -> String {
    let what = match &step.action {
        Action::Produce { values, partition } => match partition {
            Some(p) => format!("produce {} to p{p}", values.join(" ")),
            None => format!("produce {}", values.join(" ")),
        },
        Action::Generate(spec) => {
            format!("generate {}/s for {}", spec.rate, spec.duration.map(format_duration).unwrap_or_else(|| "ever".into()))
        }
        Action::Kill(tm) => format!("kill {tm}"),
        Action::KillBeforeCommit(tm) => format!("kill {tm} before the commit"),
        Action::Hang(tm) => format!("hang {tm}"),
        Action::Start(Some(tm)) => format!("start {tm}"),
        Action::Start(None) => "start a new TM".into(),
        Action::Checkpoint => "checkpoint now".into(),
        Action::Set(pairs) => pairs.iter().map(|(k, v)| format!("set {k} = {v}")).collect::<Vec<_>>().join(", "),
        Action::Wait(d) => format!("wait {}", format_duration(*d)),
        Action::Await { condition, .. } => format!("await {}", condition.name()),
        Action::Expect { key, checks, .. } => {
            let c = checks.iter().map(|(f, cmp)| format!("{f} {cmp}")).collect::<Vec<_>>().join(", ");
            match key {
                Some(k) => format!("expect {k}: {c}"),
                None => format!("expect {c}"),
            }
        }
        Action::Resubmit => "resubmit".into(),
        Action::SwitchBackend(b) => format!("switch the backend to {b}"),
        Action::StopGenerators => "stop the generators".into(),
        Action::Savepoint { stop: false, format } => format!("savepoint ({})", format.name()),
        Action::Savepoint { stop: true, format } => format!("stop with savepoint ({})", format.name()),
    };
    match &step.note {
        Some(n) => format!("{what}  # {n}"),
        None => what,
    }
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(s) = &app.scenario else { return };
    let t = &app.theme;
    let status = match &s.result {
        None => Span::styled(
            format!("{} ({}/{} steps)", s.name, s.narrated.iter().filter(|l| l.starts_with('[')).count(), s.steps.len()),
            t.dim,
        ),
        Some((true, _)) => Span::styled(format!("{}: PASSED, every expect held", s.name), t.ok),
        Some((false, _)) => Span::styled(format!("{}: FAILED", s.name), t.bad),
    };
    let block = pane_block(app, Pane::Events, "Scenario", Some(Line::from(status)));
    let mut lines: Vec<Line> = Vec::new();
    if !s.description.is_empty() {
        lines.push(Line::styled(s.description.lines().next().unwrap_or_default().to_string(), t.dim));
    }
    // What ran (newest last), then the failures, else the steps still to come.
    let shown = area.height.saturating_sub(2) as usize;
    let ran: Vec<&String> = s.narrated.iter().collect();
    let start = ran.len().saturating_sub(shown.saturating_sub(2).max(1));
    for l in &ran[start..] {
        lines.push(Line::raw(l.to_string()));
    }
    match &s.result {
        Some((_, failures)) => {
            for f in failures {
                lines.push(Line::styled(format!("FAILED {f}"), t.bad));
            }
        }
        None => {
            let done = s.narrated.iter().filter(|l| l.starts_with('[')).count();
            for step in s.steps.iter().skip(done) {
                lines.push(Line::styled(format!("  next: {step}"), t.dim));
            }
        }
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(block), area);
}
