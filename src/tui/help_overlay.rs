//! The help overlay (`?`): every key from the keymap table, by mode, the symbols and the
//! overcount recipe; two columns, and pages (space) when it does not fit. Any other key closes it.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::action::Action;
use super::app::App;
use super::keymap::Context;

const KEY_COLUMN: usize = 9;

/// What the screen's symbols mean (the graph's legend line says it shorter).
pub const SYMBOLS: &[(&str, &str)] = &[
    ("•", "a record on a channel"),
    ("‖7", "barrier of checkpoint 7"),
    ("⏸", "channel blocked by alignment"),
    ("≈7", "task aligning for checkpoint 7"),
    ("○", "task not running"),
    ("⇶", "backpressure: sender waits"),
    ("↻", "a line printed again"),
    ("⧗", "produced while the job was down"),
    ("✓ ✗", "verdict ok / lost or overcounted"),
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
    let column_width = 40u16;
    let inner_height = area.height.saturating_sub(2) as usize;
    let two_columns = area.width >= 2 * column_width + 3;
    // Pages of (left, right) columns: everything at once when it fits, else keys first, then
    // the symbols and the recipe (space turns the page).
    let mut right_all = rest.clone();
    right_all.push(Line::raw(""));
    right_all.extend(more.clone());
    let pages: Vec<(Vec<Line>, Vec<Line>)> = if two_columns && command.len().max(right_all.len()) <= inner_height {
        vec![(command, right_all)]
    } else if two_columns {
        vec![(command, rest), (more, Vec::new())]
    } else {
        vec![(command, Vec::new()), (rest, Vec::new()), (more, Vec::new())]
    };
    let page = app.help_page % pages.len();
    let (left, right) = pages[page].clone();
    let one_column = right.is_empty();
    let body = left.len().max(right.len());
    let (width, height) = if one_column { (column_width + 2, body as u16 + 2) } else { (2 * column_width + 3, body as u16 + 2) };
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

/// A title, then one line per action of the context with all its keys.
fn section(app: &App, context: Context, title: &'static str) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = vec![Line::styled(title, t.title)];
    let mut seen: Vec<Action> = Vec::new();
    let entry = |keys: String, what: &'static str| Line::from(vec![Span::styled(format!(" {keys:<KEY_COLUMN$}"), t.key), Span::raw(what)]);
    // Actions that are one idea share a line: `+ -  interval up / down`.
    const GROUPS: &[(&[Action], &str)] = &[
        (&[Action::IntervalUp, Action::IntervalDown], "interval up / down"),
        (&[Action::Slower, Action::Faster], "slower / faster (hop delay)"),
        (&[Action::FocusNext, Action::FocusPrev], "next / previous pane"),
        (&[Action::ScrollUp, Action::ScrollDown], "scroll the focused pane"),
        (&[Action::PageUp, Action::PageDown, Action::Home, Action::End], "page up / down, start, end"),
    ];
    for b in app.keymap.bindings.iter().filter(|b| b.context == context) {
        if seen.contains(&b.action) {
            continue;
        }
        let group = GROUPS.iter().find(|(g, _)| g.contains(&b.action));
        let actions: Vec<Action> = group.map_or_else(|| vec![b.action], |(g, _)| g.to_vec());
        seen.extend(actions.iter().copied());
        let keys: Vec<String> = app
            .keymap
            .bindings
            .iter()
            .filter(|o| o.context == context && actions.contains(&o.action))
            .map(|o| o.key.label())
            .collect();
        lines.push(entry(keys.join(" "), group.map_or(b.help, |(_, what)| what)));
        if context == Context::Command && b.action == Action::Kill {
            lines.push(entry("1-9".into(), "select task manager N"));
        }
    }
    if context == Context::Input {
        lines.push(entry("a-z …".into(), "type the record"));
    }
    lines
}
