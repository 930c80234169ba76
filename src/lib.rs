//! ckptlab: a Flink-style mini cluster in one process, for checkpoint experiments, with a
//! ground-truth auditor that tells exactly what was lost or counted twice.
//!
//! The engine (`cluster`, `state`, `connectors`, `audit`, `events`, `config`, `scenario`) knows
//! nothing of the terminal; the TUI, the headless runner and the benchmarks all use [`cluster::Engine`].
//! [`types`] is the vocabulary at the bottom (records, checkpoint options, task ids) that every
//! layer may import; it imports nothing of the crate.

pub mod audit;
pub mod bench;
pub mod cluster;
pub mod compare;
pub mod config;
pub mod connectors;
pub mod duration;
pub mod events;
pub mod flink;
pub mod inspect;
pub mod keygroup;
pub mod lesson;
pub mod report;
pub mod scenario;
pub mod shipped;
pub mod state;
pub mod table;
pub mod tui;
pub mod types;
pub mod workdir;
