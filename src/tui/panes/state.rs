//! State and verdict: per key, the counter operator's live value, what it should be (expected:
//! the records the sources passed for it) and the verdict (ok / lost N / overcounted N), with the
//! totals. Numbers are never cut: the columns are as wide as their longest figure, and when the
//! pane is narrow the verdict takes its compact form (`✗ +3` overcounted, `✗ -2` lost) and the
//! subtask column goes; Enter on a key opens it whole.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use crate::audit::{caught_up, summary};
use crate::cluster::view::JobStatus;
use crate::tui::app::{App, Pane};
use crate::tui::render::pane_block;
use crate::tui::theme::Theme;

/// The key column's width bounds; a longer key is shown as its start … its end.
const KEY_MIN: usize = 5; // "TOTAL"
const KEY_MAX: usize = 24;
/// A long key is cut to no less than this before verdicts go compact.
const KEY_SHRUNK: usize = 12;
/// The expected column's header where the column is narrower than the word.
const EXPECTED_SHORT: &str = "expect";

/// Column widths for one pane width: (key, sub (0: left out), state, expected, compact verdict).
struct Columns {
    key: usize,
    sub: usize,
    number: usize,
    compact: bool,
    /// Columns left for the verdict, its mark included.
    verdict: usize,
}

fn columns(inner_width: usize, key_len: usize, number_len: usize, verdict_len: usize, compact_len: usize) -> Columns {
    let key = key_len.clamp(KEY_MIN, KEY_MAX);
    // The whole header word where it fits, else its short form.
    for number in [number_len.max("expected".len()), number_len.max(EXPECTED_SHORT.len())] {
        let full = |key: usize, sub: usize| key + sub + 2 * number + verdict_len + if sub > 0 { 4 } else { 3 };
        let verdict = |key: usize, sub: usize| inner_width.saturating_sub(key + sub + 2 * number + if sub > 0 { 4 } else { 3 });
        if full(key, 3) <= inner_width {
            return Columns { key, sub: 3, number, compact: false, verdict: verdict(key, 3) };
        }
        if full(key, 0) <= inner_width {
            return Columns { key, sub: 0, number, compact: false, verdict: verdict(key, 0) };
        }
    }
    let number = number_len.max(EXPECTED_SHORT.len());
    let verdict = |key: usize| inner_width.saturating_sub(key + 2 * number + 3);
    // A long key gives way before the verdict does.
    let room = inner_width.saturating_sub(2 * number + verdict_len + 3);
    if room >= KEY_SHRUNK.min(key) {
        let key = room.min(key);
        return Columns { key, sub: 0, number, compact: false, verdict: verdict(key) };
    }
    // Compact verdicts; the key gives up what it must, never below KEY_MIN.
    let compact_verdict = compact_len;
    let key = inner_width.saturating_sub(2 * number + compact_verdict + 3).clamp(KEY_MIN, key);
    Columns { key, sub: 0, number, compact: true, verdict: verdict(key) }
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(v) = &app.view.verdict else {
        let block = pane_block(app, Pane::State, "State", None);
        let text = Paragraph::new(Line::styled("the auditor is off (ckptlab.audit = false): no ground truth", t.dim)).block(block);
        return frame.render_widget(text, area);
    };
    // "in flight" is the graph's word for records on the wire; here: consumed, not yet in state.
    // FAILED is terminal (no restart will come): what it never processed is said, never "ok".
    let progress = if app.view.status == JobStatus::Failed && v.never_processed() > 0 {
        Span::styled(format!("FAILED: {} records never processed", v.never_processed()), t.bad)
    } else if !app.view.all_tasks_running {
        Span::styled("job down: frozen", t.warn)
    } else if v.in_flight > 0 {
        Span::styled(format!("{} not applied yet", v.in_flight), t.dim)
    } else if caught_up(app.view.caught_up, Some(v)) {
        Span::styled("caught up", t.ok)
    } else {
        Span::styled("catching up", t.dim)
    };
    let block = pane_block(app, Pane::State, "State", Some(Line::from(progress)));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if v.keys.is_empty() {
        let hint = Paragraph::new(vec![Line::styled("no records yet", t.dim), Line::styled("i types one; g starts a generator", t.dim)]);
        return frame.render_widget(hint, inner);
    }
    let [table_area, total_area] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    let key_len = v.keys.keys().map(|k| k.chars().count()).max().unwrap_or(0).max("TOTAL".len());
    let digits = |n: u64| n.to_string().len();
    let number_len =
        v.keys.values().map(|k| digits(k.state).max(digits(k.expected))).chain([digits(v.state), digits(v.expected)]).max().unwrap_or(1);
    let verdict_len = v
        .keys
        .values()
        .map(|k| verdict_text(k.lost, k.overcounted, true, false).chars().count())
        .chain([verdict_text(v.lost, v.overcounted, v.consistent, false).chars().count()])
        .max()
        .unwrap_or(4)
        .max("verdict".len() - 2)
        + 2;
    let compact_len = v
        .keys
        .values()
        .map(|k| verdict_text(k.lost, k.overcounted, true, true).chars().count())
        .chain([verdict_text(v.lost, v.overcounted, v.consistent, true).chars().count()])
        .max()
        .unwrap_or(2)
        + 2;
    let c = columns(inner.width as usize, key_len, number_len, verdict_len, compact_len);
    let mut widths = vec![Constraint::Length(c.key as u16)];
    if c.sub > 0 {
        widths.push(Constraint::Length(c.sub as u16));
    }
    widths.extend([Constraint::Length(c.number as u16), Constraint::Length(c.number as u16), Constraint::Min(4)]);
    // Numbers are right-aligned, so are their headers.
    let right = |h: &'static str| Cell::from(Line::from(h).right_aligned());
    let mut header = vec![Cell::from("key")];
    if c.sub > 0 {
        header.push(Cell::from("sub"));
    }
    header.extend([right("state"), right(if c.number >= "expected".len() { "expected" } else { EXPECTED_SHORT }), Cell::from("verdict")]);
    let header = Row::new(header).style(t.title);
    let rows =
        v.keys.iter().map(|(key, k)| row(t, &c, key, Some(k.subtask), k.state, k.expected, (k.lost, k.overcounted, true), Style::new()));
    let focused = app.focus == Pane::State;
    let mut state = TableState::default().with_selected(focused.then_some(app.scroll_of(Pane::State) as usize));
    if !focused {
        *state.offset_mut() = 0;
    }
    let table = Table::new(rows, widths.clone()).header(header).column_spacing(1).row_highlight_style(t.selected);
    frame.render_stateful_widget(table, table_area, &mut state);
    let total = row(t, &c, "TOTAL", None, v.state, v.expected, (v.lost, v.overcounted, v.consistent), t.title);
    frame.render_widget(Table::new([total], widths).column_spacing(1), total_area);
}

/// `ok`, `lost N`, `overcounted N`; compact: `ok`, `-N`, `+N`, `-N +M`.
fn verdict_text(lost: u64, over: u64, consistent: bool, compact: bool) -> String {
    if !consistent {
        return if compact { "?!".into() } else { "inconsistent".into() };
    }
    if !compact {
        return summary(lost, over);
    }
    match (lost, over) {
        (0, 0) => "ok".into(),
        (l, 0) => format!("-{l}"),
        (0, o) => format!("+{o}"),
        (l, o) => format!("-{l} +{o}"),
    }
}

/// A key that fits `width` columns: whole, or its start … its end (two long keys that differ at
/// the end stay distinguishable; Enter shows it whole).
pub fn fit_key(key: &str, width: usize) -> String {
    let n = key.chars().count();
    if n <= width {
        return key.to_string();
    }
    let tail = width.saturating_sub(1) / 2;
    let head = width.saturating_sub(1 + tail);
    let start: String = key.chars().take(head).collect();
    let end: String = key.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// One row; the verdict carries a symbol as well as a colour. `(lost, overcounted, consistent)`:
/// an inconsistent verdict (the auditor and the state disagree) is never shown as ok.
fn row<'a>(
    t: &Theme,
    c: &Columns,
    key: &str,
    subtask: Option<usize>,
    state: u64,
    expected: u64,
    figures: (u64, u64, bool),
    style: Style,
) -> Row<'a> {
    let (lost, over, consistent) = figures;
    let mut verdict = verdict_text(lost, over, consistent, c.compact);
    if verdict.chars().count() + 2 > c.verdict {
        // Not even the compact figure fits: words, never a cut number (Enter shows the figures).
        verdict = match (lost, over, consistent) {
            (_, _, false) => "?!".into(),
            (0, 0, _) => "ok".into(),
            (_, 0, _) => "lost".into(),
            (0, _, _) => "over".into(),
            _ => "both".into(),
        };
    }
    let (mark, vstyle) = match (lost, over, consistent) {
        (0, 0, true) => ("✓ ", t.ok),
        _ => ("✗ ", t.bad),
    };
    let mut cells = vec![Cell::from(fit_key(key, c.key))];
    if c.sub > 0 {
        cells.push(Cell::from(subtask.map(|s| s.to_string()).unwrap_or_default()));
    }
    cells.extend([
        Cell::from(Line::from(state.to_string()).right_aligned()),
        Cell::from(Line::from(expected.to_string()).right_aligned()),
        Cell::from(Line::from(vec![Span::styled(mark, vstyle), Span::styled(verdict, vstyle)])),
    ]);
    Row::new(cells).style(style)
}
