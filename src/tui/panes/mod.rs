//! The panes [`super::render`] lays out, one render function each, plus the strips around them
//! (banner, status line, footer). Each reads only [`super::app::App`].
//!
//! What the workbench decides per pane (how it is drawn, whether Tab stops at it, how it
//! scrolls, what the footer offers there) is one [`Spec`] per [`Pane`], from [`spec`]'s exhaustive
//! match: a new pane is its file here, one arm there, and its place in [`super::layout`].

pub mod banner;
pub mod checkpoints;
pub mod events;
pub mod footer;
pub mod graph;
pub mod input;
pub mod lesson;
pub mod output;
pub mod scenario;
pub mod state;
pub mod status_line;

use ratatui::layout::Rect;
use ratatui::Frame;

use super::app::{App, Pane};

/// How a pane moves under the arrow and page keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scroll {
    /// Not at all (the status line, the input line).
    Fixed,
    /// A table: rows down from the top (in the state pane the top row is the selected key).
    Rows,
    /// A log: lines back from the newest.
    Log,
}

/// What the workbench knows of one pane, besides its place on the screen.
#[derive(Clone, Copy)]
pub struct Spec {
    /// Draws the pane into its area.
    pub render: fn(&App, &mut Frame, Rect),
    /// Tab and Shift-Tab stop at it.
    pub tab_stop: bool,
    pub scroll: Scroll,
    /// The rows or lines it can scroll through.
    pub length: fn(&App) -> usize,
    /// The footer offers `↑↓ scroll` while it has the focus.
    pub scroll_hint: bool,
}

/// Every pane's [`Spec`]: a new [`Pane`] is one more arm here.
pub fn spec(pane: Pane) -> Spec {
    match pane {
        // The graph scrolls when many TMs and channels overflow it; the footer has never offered
        // it `↑↓` (its room goes to the cluster's keys).
        Pane::Graph => Spec { render: graph::render, tab_stop: true, scroll: Scroll::Rows, length: graph::lines_needed, scroll_hint: false },
        Pane::State => Spec {
            render: state::render,
            tab_stop: true,
            scroll: Scroll::Rows,
            length: |app| app.view.verdict.as_ref().map_or(0, |v| v.keys.len()),
            scroll_hint: true,
        },
        Pane::Checkpoints => Spec {
            render: checkpoints::render,
            tab_stop: true,
            scroll: Scroll::Rows,
            length: |app| app.view.checkpoint_history.len(),
            scroll_hint: true,
        },
        Pane::Output => {
            Spec { render: output::render, tab_stop: true, scroll: Scroll::Log, length: |app| app.view.output.len(), scroll_hint: true }
        }
        Pane::Events => {
            Spec { render: events::render, tab_stop: true, scroll: Scroll::Log, length: |app| app.visible_log().count(), scroll_hint: true }
        }
        // The input line has its own key (`i`), the status line takes no focus.
        Pane::Input => Spec { render: input::render, tab_stop: false, scroll: Scroll::Fixed, length: |_| 0, scroll_hint: false },
        Pane::Status => Spec { render: status_line::render, tab_stop: false, scroll: Scroll::Fixed, length: |_| 0, scroll_hint: false },
    }
}
