//! The panes [`super::render`] lays out, one render function each, plus the strips around them
//! (banner, status line, footer). Each reads only [`super::app::App`].

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
