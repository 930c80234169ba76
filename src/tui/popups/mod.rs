//! What [`super::render`] draws over the panes: the help overlay, a key's detail, a checkpoint's
//! anatomy and the scenario picker. Each draws nothing unless its state in [`super::app::App`] is set.

pub mod anatomy;
pub mod detail;
pub mod help;
pub mod picker;
