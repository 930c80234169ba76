//! The terminal workbench: the live cluster on one screen.
//!
//! key -> [`Action`](action::Action) -> [`App::update`](app::App::update) -> [`render`](render::render),
//! one render function per pane. The engine runs on the runtime's worker threads; this module only
//! reads its view and events and sends it commands ([`frontend`] owns the terminal and the loop).
//! What is drawn lives in [`panes`] (the tiles and the strips around them) and [`popups`] (drawn over
//! them); [`compare`] is the second screen (`ckptlab compare`), its loop, state and drawing.

pub mod action;
pub mod app;
pub mod compare;
pub mod frontend;
pub mod keymap;
pub mod panes;
pub mod popups;
pub mod render;
pub mod terminal;
pub mod theme;

pub use frontend::{run, Opening, Quit};

/// The shipped scenarios (`o` picks one, `--scenario` opens any file), embedded so the workbench
/// finds them from any working directory.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("assets/scenarios/seed-checkpoints-disabled.toml", include_str!("../../assets/scenarios/seed-checkpoints-disabled.toml")),
    ("assets/scenarios/seed-exactly-once.toml", include_str!("../../assets/scenarios/seed-exactly-once.toml")),
    ("assets/scenarios/seed-at-least-once.toml", include_str!("../../assets/scenarios/seed-at-least-once.toml")),
    ("assets/scenarios/at-least-once-overcounts.toml", include_str!("../../assets/scenarios/at-least-once-overcounts.toml")),
    ("assets/scenarios/exactly-once-slow-channel.toml", include_str!("../../assets/scenarios/exactly-once-slow-channel.toml")),
    ("assets/scenarios/unaligned-under-backpressure.toml", include_str!("../../assets/scenarios/unaligned-under-backpressure.toml")),
    ("assets/scenarios/checkpoint-expired.toml", include_str!("../../assets/scenarios/checkpoint-expired.toml")),
    ("assets/scenarios/rocksdb-incremental.toml", include_str!("../../assets/scenarios/rocksdb-incremental.toml")),
];
