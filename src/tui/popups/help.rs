//! The help overlay (`?`): every key from the keymap table, by mode, the symbols and the
//! overcount recipe; two columns, and pages (space) when it does not fit. Any other key closes it.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use crate::tui::action::Action;
use crate::tui::app::App;
use crate::tui::keymap::Context;

const KEY_COLUMN: usize = 9;
/// A help column's width.
const COLUMN: u16 = 40;

/// What the screen's symbols mean (the graph's legend line says it shorter).
pub const SYMBOLS: &[(&str, &str)] = &[
    ("•", "a record on a channel"),
    ("‖7", "barrier of checkpoint 7"),
    ("⏸", "blocked by alignment"),
    ("≈7", "aligning for checkpoint 7"),
    ("○", "task not running"),
    ("⇶", "backpressure: sender waits"),
    ("↻", "a line printed again"),
    ("⧗", "produced while job down"),
    ("✓ ✗", "verdict ok / wrong"),
];

/// The key sequence that shows at-least-once counting twice (README's "Teaching" section).
pub const OVERCOUNT_RECIPE: &[&str] = &[
    " m m  AT_LEAST_ONCE",
    " d    slow channel src1→counters",
    " g    generator on",
    " (2 checkpoints complete) k  s",
    " → State: ✗ overcounted",
];

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let command = section(app, Context::Command, "Command mode");
    let mut rest = vec![
        Line::styled("Kill a TM, produce while it is down,", t.dim),
        Line::styled("start it again, read the verdict.", t.dim),
        Line::raw(""),
    ];
    if app.lesson.is_some() {
        rest.extend(section(app, Context::Lesson, "Lesson (1-9 answer a prediction)"));
        rest.push(Line::raw(""));
    }
    rest.extend(section(app, Context::Input, "Input mode"));
    rest.push(Line::raw(""));
    rest.extend(section(app, Context::Any, "Anywhere"));
    let mut more = vec![Line::styled("Symbols", t.title)];
    for (sym, what) in SYMBOLS {
        more.push(Line::from(vec![Span::styled(format!(" {sym:<KEY_COLUMN$}"), t.key), Span::raw(*what)]));
    }
    more.push(Line::raw(""));
    more.push(Line::styled("An overcount from the keys:", t.title));
    for l in OVERCOUNT_RECIPE {
        more.push(Line::styled(*l, t.dim));
    }
    more.push(Line::raw(""));
    more.push(Line::styled("Rebind in conf/keys.toml:", t.dim));
    more.push(Line::styled("[command] kill = \"x\"", t.dim));
    let column_width = COLUMN;
    let inner_height = area.height.saturating_sub(2) as usize;
    let two_columns = area.width >= 80;
    // Pages of (left, right) columns: everything at once when it fits, else keys first, then
    // the symbols and the recipe (space turns the page).
    let mut right_all = rest.clone();
    right_all.push(Line::raw(""));
    right_all.extend(more.clone());
    let pages: Vec<(Vec<Line>, Vec<Line>)> = if two_columns && command.len().max(right_all.len()) <= inner_height {
        vec![(command, right_all)]
    } else {
        // Columns of the inner height, each section where it fits (a section taller than a
        // column goes on in the next), two columns a page on a wide screen: no line is cut off.
        let columns = flow(vec![command, rest, more], inner_height.max(1));
        if two_columns {
            let mut it = columns.into_iter();
            let mut pages = Vec::new();
            while let Some(left) = it.next() {
                pages.push((left, it.next().unwrap_or_default()));
            }
            pages
        } else {
            columns.into_iter().map(|c| (c, Vec::new())).collect()
        }
    };
    let page = app.help_page % pages.len();
    let (left, right) = pages[page].clone();
    let one_column = right.is_empty();
    let body = left.len().max(right.len());
    let (width, height) =
        if one_column { (column_width + 2, body as u16 + 2) } else { ((2 * column_width + 3).min(area.width), body as u16 + 2) };
    let [popup] = Layout::vertical([Constraint::Length(height.min(area.height))]).flex(Flex::Center).areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(width.min(area.width))]).flex(Flex::Center).areas(popup);
    frame.render_widget(Clear, popup);
    let title = if pages.len() > 1 {
        format!(" Help {}/{} (space: next page, any other key closes) ", page + 1, pages.len())
    } else {
        " Help (any key closes) ".to_string()
    };
    let block = Block::bordered().title(Line::styled(title, t.title)).border_style(t.key);
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    if one_column {
        frame.render_widget(Paragraph::new(left), inner);
    } else {
        let [l, r] = Layout::horizontal([Constraint::Length(column_width), Constraint::Min(0)]).spacing(1).areas(inner);
        frame.render_widget(Paragraph::new(left), l);
        frame.render_widget(Paragraph::new(right), r);
    }
}

/// Packs sections into columns of `height` lines: a section goes below the one before (after a
/// blank line) where it fits whole, else it starts a new column; one taller than a column is cut
/// into as many columns as it needs.
fn flow(sections: Vec<Vec<Line<'static>>>, height: usize) -> Vec<Vec<Line<'static>>> {
    let mut columns: Vec<Vec<Line<'static>>> = Vec::new();
    for section in sections.into_iter().filter(|s| !s.is_empty()) {
        let fits_below = columns.last().is_some_and(|c| c.len() + 1 + section.len() <= height);
        if fits_below {
            let column = columns.last_mut().expect("checked");
            column.push(Line::raw(""));
            column.extend(section);
            continue;
        }
        for chunk in section.chunks(height) {
            columns.push(chunk.to_vec());
        }
    }
    columns
}

/// A title, then one line per action of the context with all its keys.
fn section(app: &App, context: Context, title: &'static str) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = vec![Line::styled(title, t.title)];
    let mut seen: Vec<Action> = Vec::new();
    let entry = |keys: String, what: &'static str| {
        Line::from(vec![Span::styled(format!(" {keys:<w$} ", w = KEY_COLUMN - 1), t.key), Span::raw(what)])
    };
    // Actions that are one idea share a line: `+ -  interval up / down`.
    const GROUPS: &[(&[Action], &str)] = &[
        (&[Action::IntervalUp, Action::IntervalDown], "interval up / down"),
        (&[Action::Slower, Action::Faster], "slower / faster (hop delay)"),
        (&[Action::FocusNext, Action::FocusPrev], "next / previous pane"),
        (&[Action::ScrollUp, Action::ScrollDown], "scroll the focused pane"),
        (&[Action::PageUp, Action::PageDown, Action::Home, Action::End], "page, start, end"),
        (&[Action::ToggleGenerator, Action::CycleRate], "generator on / off, its rate"),
        (&[Action::Help, Action::Quit], "help, quit"),
    ];
    for b in app.keymap.bindings.iter().filter(|b| b.context == context) {
        if seen.contains(&b.action) {
            continue;
        }
        // A group's line where more than one of its actions has a key here (`^C` alone is quit).
        let group = GROUPS.iter().find(|(g, _)| {
            g.contains(&b.action)
                && g.iter().filter(|a| app.keymap.bindings.iter().any(|o| o.context == context && o.action == **a)).count() > 1
        });
        let actions: Vec<Action> = group.map_or_else(|| vec![b.action], |(g, _)| g.to_vec());
        seen.extend(actions.iter().copied());
        let mut keys: Vec<String> =
            app.keymap.bindings.iter().filter(|o| o.context == context && actions.contains(&o.action)).map(|o| o.key.label()).collect();
        if context == Context::Command && b.action == Action::Kill {
            keys.push("1-9".into());
        }
        let keys = keys.join(" ");
        let what = group.map_or(b.help, |(_, what)| what);
        if keys.chars().count() >= KEY_COLUMN && keys.chars().count() + what.chars().count() + 2 <= COLUMN as usize {
            lines.push(Line::from(vec![Span::styled(format!(" {keys} "), t.key), Span::raw(what)]));
        } else if keys.chars().count() >= KEY_COLUMN {
            // Many keys: they take their own line, what they do goes below.
            lines.push(Line::from(Span::styled(format!(" {keys}"), t.key)));
            lines.push(entry(String::new(), what));
        } else {
            lines.push(entry(keys, what));
        }
    }
    if context == Context::Input {
        lines.push(entry("a-z …".into(), "type the record"));
    }
    lines
}
