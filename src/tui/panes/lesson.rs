//! The lesson pane: the step's text, what to do, the prediction and its reveal, and what the
//! step did: a band across the bottom of the panes, full width (the events pane stays on a tall
//! screen; at 80x24 the right column keeps checkpoints and output).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::app::{App, LessonPhase, Pane};

/// Rows of the band across the bottom of the panes, on a short screen and on a tall one.
pub const BAND_HEIGHT: u16 = 9;
pub const BAND_HEIGHT_TALL: u16 = 13;
/// From this height on the events pane stays beside the lesson.
pub const TALL: u16 = 40;

/// Whether the step shown highlights a pane (its border is drawn in the accent then; the status
/// line gets the marker).
pub fn highlights(app: &App, pane: Pane) -> bool {
    let Some(l) = &app.lesson else { return false };
    l.steps.get(l.viewing).is_some_and(|s| s.highlight.contains(&pane))
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(l) = &app.lesson else { return };
    let t = &app.theme;
    let i = l.viewing.min(l.steps.len().saturating_sub(1));
    let Some(step) = l.steps.get(i) else { return };
    let title = Line::from(vec![
        Span::raw(" "),
        Span::styled(format!("Lesson: {}", l.title), t.focused_title),
        Span::styled(format!("  step {}/{} ", i + 1, l.steps.len()), t.dim),
    ]);
    let block = Block::bordered().title(title).border_style(t.focused_title);
    let inner = block.inner(area);
    frame.render_widget(block, area);

    // The bottom: what to do now, the prediction, what happened. The top: the text.
    let mut bottom: Vec<Line> = Vec::new();
    let current = i == l.current;
    let answer = l.answers.get(i).copied().flatten();
    if let Some(p) = &step.predict {
        match answer {
            None => {
                let ask = match p.choices.len() {
                    2 => "Predict (press 1 or 2): ".to_string(),
                    n => format!("Predict (press 1 to {n}): "),
                };
                bottom.push(Line::styled(format!("{ask}{}", p.question), t.title));
                for (n, c) in p.choices.iter().enumerate() {
                    bottom.push(Line::from(vec![Span::styled(format!("   {} ", n + 1), t.key), Span::raw(c.clone())]));
                }
            }
            // The reveal keeps what the learner chose and the right answer in sight, then why.
            Some(a) if a == p.answer => {
                bottom.push(Line::styled(format!("✓ You said {}: {}. Right.", a + 1, p.choices[a]), t.ok));
                bottom.push(Line::raw(p.explain.clone()));
            }
            Some(a) => {
                bottom.push(Line::from(vec![
                    Span::styled(format!("✗ You said {}. ", a + 1), t.bad),
                    Span::styled(format!("Not quite: it is {}: {}.", p.answer + 1, p.choices[p.answer]), t.warn),
                ]));
                bottom.push(Line::raw(p.explain.clone()));
            }
        }
    }
    if let Some(todo) = &step.todo {
        if current && l.phase == LessonPhase::AwaitingUser {
            bottom.push(Line::from(vec![Span::styled("▶ your turn: ", t.warn), Span::raw(todo.clone())]));
        } else if !matches!(l.phase, LessonPhase::Done { .. }) || !current {
            bottom.push(Line::styled(format!("  {todo}"), t.dim));
        }
    }
    for line in l.lines.get(i).into_iter().flatten() {
        bottom.push(Line::styled(format!("  {line}"), t.dim));
    }
    for failure in l.failures.get(i).into_iter().flatten() {
        bottom.push(Line::styled(format!("  {failure}"), t.bad));
    }
    if let (Some(n), true) = (&l.notice, current) {
        bottom.push(Line::styled(n.clone(), t.warn));
    }
    let status = status_line(app, i);
    if status.width() > 0 {
        bottom.push(status);
    }

    // The text keeps at least two rows, until a prediction is answered (the reveal needs them);
    // what to do now wins the rest.
    let wanted = wrapped_rows(&bottom, inner.width);
    let text_rows = if step.predict.is_some() && answer.is_some() { 0 } else { 2 };
    let bottom_rows = wanted.min(inner.height.saturating_sub(text_rows));
    let [top, low] = Layout::vertical([Constraint::Min(0), Constraint::Length(bottom_rows)]).areas(inner);
    let say: Vec<Line> = step.say.lines().map(|s| Line::raw(s.to_string())).collect();
    frame.render_widget(Paragraph::new(join_paragraphs(say)).wrap(Wrap { trim: true }), top);
    // Overflowing: the newest lines (the status) stay in sight.
    let skip = wanted.saturating_sub(bottom_rows);
    frame.render_widget(Paragraph::new(bottom).wrap(Wrap { trim: false }).scroll((skip, 0)), low);
}

/// The step's text is written in short lines in its file: one paragraph on screen.
fn join_paragraphs(lines: Vec<Line<'static>>) -> Vec<Line<'static>> {
    let text: Vec<String> = lines.iter().map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect::<String>()).collect();
    vec![Line::raw(text.join(" ").split_whitespace().collect::<Vec<_>>().join(" "))]
}

/// Rows the lines take when word-wrapped at `width` (as `Wrap` does: whole words, greedily), so
/// that the newest line is never scrolled out of sight.
fn wrapped_rows(lines: &[Line], width: u16) -> u16 {
    let w = width.max(1) as usize;
    let mut rows = 0u16;
    for l in lines {
        let text: String = l.spans.iter().map(|s| s.content.as_ref()).collect();
        let mut used = 0usize;
        let mut n = 1u16;
        for word in text.split(' ') {
            let len = Span::raw(word).width();
            if used == 0 {
                used = len;
            } else if used + 1 + len <= w {
                used += 1 + len;
            } else {
                n += 1;
                used = len;
            }
            while used > w {
                n += 1;
                used -= w;
            }
        }
        rows = rows.saturating_add(n);
    }
    rows
}

fn status_line(app: &App, i: usize) -> Line<'static> {
    let t = &app.theme;
    let Some(l) = &app.lesson else { return Line::raw("") };
    let step = &l.steps[i];
    if i < l.current {
        return Line::styled("(an earlier step: n comes forward)", t.dim);
    }
    if l.finished {
        return Line::styled("The lesson is over: L leaves it (the cluster stays); ckptlab lesson lists the others.", t.ok);
    }
    match l.phase {
        LessonPhase::Doing => Line::styled(format!("… the lesson is doing it: {}", step.does.clone().unwrap_or_default()), t.warn),
        LessonPhase::AwaitingUser => Line::from(vec![
            Span::styled("waiting for ", t.dim),
            Span::raw(step.waits_for.clone().unwrap_or_default()),
            Span::styled("  (n: the lesson does it)", t.dim),
        ]),
        LessonPhase::Reading if step.predict.is_some() && l.answers[i].is_none() => Line::raw(""),
        LessonPhase::Reading => Line::styled("n: next step   p: back   L: leave", t.key),
        LessonPhase::Done { passed: true } => Line::styled("✓ done   n: next step", t.ok),
        LessonPhase::Done { passed: false } => {
            Line::styled("✗ the engine did not do what this step expected (see above)   n: next step", t.bad)
        }
    }
}
