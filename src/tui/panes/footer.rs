//! The footer: the most useful keys where the focus is, from the keymap table. Help and quit are
//! always kept; other hints are left out, in order, when the line is full.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::action::Action;
use crate::tui::app::{App, Pane};
use crate::tui::keymap::{short, tiny};
use crate::tui::render::{hint_spans, spans_width};

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    frame.render_widget(Paragraph::new(line(app, area.width as usize)), area);
}

pub fn line(app: &App, width: usize) -> Line<'static> {
    let full = hints_line(app, width, false);
    if full.1 {
        return full.0;
    }
    // Not every hint fits: the one-word labels (80 columns keep the generator and 1-9 that way).
    hints_line(app, width, true).0
}

/// The footer line, and whether every hint fitted.
fn hints_line(app: &App, width: usize, tiny_labels: bool) -> (Line<'static>, bool) {
    let mut hints = app.keymap.footer(app.context());
    if app.lesson.is_some() && !app.input_mode() {
        // The lesson's keys first: they are what a learner needs next.
        let mut lesson = app.keymap.footer(crate::tui::keymap::Context::Lesson);
        lesson.extend(hints);
        hints = lesson;
    }
    if tiny_labels {
        for (key, what) in hints.iter_mut() {
            if let Some(b) = app.keymap.bindings.iter().find(|b| b.key.label() == *key) {
                *what = tiny(b.action);
            }
        }
    }
    if !app.input_mode() {
        if crate::tui::panes::spec(app.focus).scroll_hint {
            hints.insert(0, ("↑↓".into(), "scroll"));
        }
        if app.focus == Pane::Checkpoints {
            hints.insert(1, ("Enter".into(), "details"));
        }
        if app.view.task_managers.len() > 1 {
            hints.push(("1-9".into(), if tiny_labels { "TM" } else { "select TM" }));
        }
    }
    // The experiment's knobs (slow channel, buffer timeout) give way first: help and the status
    // line show them.
    let late = [short(Action::SlowChannel), short(Action::BufferTimeout), tiny(Action::SlowChannel), tiny(Action::BufferTimeout)];
    let (mut hints, knobs): (Vec<_>, Vec<_>) = hints.into_iter().partition(|(_, what)| !late.contains(what));
    hints.extend(knobs);
    let keep = [short(Action::Help), short(Action::Quit)];
    let (kept, rest): (Vec<_>, Vec<_>) = hints.into_iter().partition(|(_, what)| keep.contains(what));
    let mut spans: Vec<Span<'static>> = Vec::new();
    if !app.input_mode() {
        if let Some(tm) = app.view.task_managers.get(app.selected_tm) {
            spans.push(Span::styled(format!("[{}]", tm.name), app.theme.selected));
        }
    }
    let tail = hint_spans(app, &kept);
    let budget = width.saturating_sub(spans_width(&spans) + spans_width(&tail));
    let mut used = 0;
    let mut all = true;
    for hint in rest {
        let s = hint_spans(app, std::slice::from_ref(&hint));
        let w = spans_width(&s);
        if used + w > budget {
            all = false;
            continue;
        }
        used += w;
        spans.extend(s);
    }
    spans.extend(tail);
    (Line::from(spans), all)
}
