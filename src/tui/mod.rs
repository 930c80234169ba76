//! The terminal workbench: the live cluster on one screen.
//!
//! key -> [`Action`](action::Action) -> [`App::update`](app::App::update) -> [`render`](render::render),
//! one render function per pane. The engine runs on the runtime's worker threads; this module only
//! reads its view and events and sends it commands ([`frontend`] owns the terminal and the loop).

pub mod action;
pub mod app;
pub mod checkpoints_pane;
pub mod events_pane;
pub mod footer;
pub mod frontend;
pub mod graph_pane;
pub mod help_overlay;
pub mod input_pane;
pub mod keymap;
pub mod output_pane;
pub mod render;
pub mod state_pane;
pub mod status_line;
pub mod theme;

pub use frontend::run;
