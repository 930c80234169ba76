//! Why a subcommand could not run (exit 2): a bad option, file or scenario, an engine that did
//! not start. Each reads as the library's own error does (file, line, key, allowed values); this
//! type only says which, so that nothing is flattened to a string on the way up.

use std::path::PathBuf;

use ckptlab::cluster::EngineError;
use ckptlab::compare::CompareError;
use ckptlab::config::ConfigError;
use ckptlab::inspect::InspectError;
use ckptlab::scenario::ScenarioError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Compare(#[from] CompareError),
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// `--backend NAME` is not one of the seed's backends (the message lists them).
    #[error("{0}")]
    Backend(String),
    /// The `--events` file could not be created.
    #[error("--events {}: {source}", path.display())]
    EventsFile { path: PathBuf, source: std::io::Error },
    /// The `--report` page could not be written.
    #[error("--report {}: {source}", path.display())]
    ReportFile { path: PathBuf, source: std::io::Error },
    /// A comparison's sides each start empty: no `--restore`.
    #[error("--restore is not taken by a comparison: each side starts empty from the shared topic")]
    RestoreInComparison,
    /// What went wrong on one side of a comparison (`--set right.KEY=...`).
    #[error("side {side}: {source}")]
    Side { side: &'static str, source: Box<CliError> },
    /// `--json` could not be written.
    #[error("cannot write the JSON report: {0}")]
    Json(#[from] serde_json::Error),
}

impl CliError {
    /// This error, on the side named `side` of a comparison.
    pub fn on_side(side: &'static str) -> impl Fn(CliError) -> CliError {
        move |e| CliError::Side { side, source: Box::new(e) }
    }
}
