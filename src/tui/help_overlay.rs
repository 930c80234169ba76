//! The help overlay (`?`): every key from the keymap table, by mode; two columns when one does
//! not fit the height. Any key closes it.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::action::Action;
use super::app::App;
use super::keymap::Context;

const KEY_COLUMN: usize = 9;

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
    rest.push(Line::raw(""));
    rest.push(Line::styled("Rebind in conf/keys.toml:", t.dim));
    rest.push(Line::styled("[command] kill = \"x\"", t.dim));
    rest.push(Line::styled("Any key closes this.", t.dim));
    let one_column = command.len() + rest.len() + 1 + 2 <= area.height as usize;
    let column_width = 40u16;
    let (width, height) = if one_column {
        (column_width + 2, (command.len() + rest.len() + 1 + 2) as u16)
    } else {
        (2 * column_width + 1, (command.len().max(rest.len()) + 2) as u16)
    };
    let [popup] = Layout::vertical([Constraint::Length(height.min(area.height))]).flex(Flex::Center).areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(width.min(area.width))]).flex(Flex::Center).areas(popup);
    frame.render_widget(Clear, popup);
    let block = Block::bordered().title(Line::styled(" Help (any key closes) ", t.title)).border_style(t.key);
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    if one_column {
        let mut lines = command;
        lines.push(Line::raw(""));
        lines.extend(rest);
        frame.render_widget(Paragraph::new(lines), inner);
    } else {
        let [left, right] = Layout::horizontal([Constraint::Length(column_width), Constraint::Min(0)]).spacing(1).areas(inner);
        frame.render_widget(Paragraph::new(command), left);
        frame.render_widget(Paragraph::new(rest), right);
    }
}

/// A title, then one line per action of the context with all its keys.
fn section(app: &App, context: Context, title: &'static str) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = vec![Line::styled(title, t.title)];
    let mut seen: Vec<Action> = Vec::new();
    let entry = |keys: String, what: &'static str| Line::from(vec![Span::styled(format!(" {keys:<KEY_COLUMN$}"), t.key), Span::raw(what)]);
    for b in app.keymap.bindings.iter().filter(|b| b.context == context) {
        if seen.contains(&b.action) {
            continue;
        }
        seen.push(b.action);
        let keys: Vec<String> =
            app.keymap.bindings.iter().filter(|o| o.context == context && o.action == b.action).map(|o| o.key.label()).collect();
        lines.push(entry(keys.join(" "), b.help));
        if context == Context::Command && b.action == Action::Kill {
            lines.push(entry("1-9".into(), "select task manager N"));
        }
    }
    if context == Context::Input {
        lines.push(entry("a-z …".into(), "type the record"));
    }
    lines
}
