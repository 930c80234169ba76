//! The terminal workbench: the live cluster on one screen.
//!
//! key -> [`Action`](action::Action) -> [`App::update`](app::App::update) -> [`render`](render::render),
//! one render function per pane. The engine runs on the runtime's worker threads; this module only
//! reads its view and events and sends it commands ([`frontend`] owns the terminal and the loop).
//! Where each pane goes is [`layout`]'s plan; what is drawn lives in [`panes`] (the tiles and the
//! strips around them) and [`popups`] (drawn over them); [`compare`] is the second screen (`ckptlab compare`), its loop, state and drawing.

pub mod action;
pub mod app;
pub mod compare;
pub mod frontend;
pub mod keymap;
pub mod layout;
pub mod panes;
pub mod popups;
pub mod render;
pub mod terminal;
pub mod theme;

pub use frontend::{run, Opening, Quit};

/// The shipped scenarios the workbench plays (`o` picks one, `--scenario` opens any file or a
/// shipped name), embedded so the workbench finds them from any working directory.
pub use crate::shipped::WORKBENCH as SCENARIOS;
