//! `ckptlab compare`: two or three clusters on one topic side by side in the terminal; and the
//! per-side configuration layers that `ckptlab run` on a `[compare]` scenario shares.

use std::io::IsTerminal;
use std::process::ExitCode;

use ckptlab::compare::{Lineup, SideMode};
use ckptlab::config::ConfigLayers;
use ckptlab::events::EventBus;
use ckptlab::scenario::Scenario;

use super::{layers_of, CliError, Global, LayerArgs};

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The sides' modes, comma-separated: EXACTLY_ONCE, AT_LEAST_ONCE, UNALIGNED, off.
    #[arg(long, value_delimiter = ',', value_name = "a,b[,c]", default_value = "EXACTLY_ONCE,AT_LEAST_ONCE,off")]
    modes: Vec<String>,
}

/// One set of layers per compared side: the command line's (plain `--set` for every side), the
/// scenario's `[config]`, the side's mode, then its own `--set left.KEY=VALUE`.
pub fn sides(args: &LayerArgs, scenario: Option<&Scenario>, modes: &[SideMode]) -> Result<Vec<(SideMode, ConfigLayers)>, CliError> {
    // Every side would restore the same snapshot, and under CLAIM one side may delete it while
    // another still reads it.
    if args.restore.is_some() {
        return Err(CliError::RestoreInComparison);
    }
    let (common, per_side) = ckptlab::compare::split_sets(&args.set, modes.len())?;
    let names = ckptlab::compare::side_names(modes.len());
    let base = LayerArgs { set: common, ..args.clone() };
    let mut sides = Vec::new();
    for ((mode, sets), name) in modes.iter().zip(per_side).zip(names) {
        let mut layers = layers_of(&base, scenario)?;
        mode.apply(&mut layers)?;
        let on_side = CliError::on_side(*name);
        for s in &sets {
            layers.set(s, &format!("--set {name}.")).map_err(|e| on_side(e.into()))?;
        }
        let cfg = layers.build().map_err(|e| on_side(e.into()))?;
        if let Some(s) = scenario {
            s.check(&cfg).map_err(|e| on_side(e.into()))?;
        }
        sides.push((*mode, layers));
    }
    Ok(sides)
}

/// Each side has its own event bus; `--events` writes one run's.
pub fn warn_no_events(cli: &Global) {
    if cli.events.is_some() {
        eprintln!("ckptlab: --events is not written for a comparison (each side has its own events)");
    }
}

/// `ckptlab compare`: the clusters side by side in the terminal.
pub async fn exec(cli: &Global, args: &CompareArgs) -> ExitCode {
    let modes = &args.modes;
    if !(std::io::stdout().is_terminal() && std::io::stdin().is_terminal()) {
        eprintln!("ckptlab compare needs a terminal; headless, run a scenario with [compare] modes = [...]: ckptlab run assets/scenarios/compare-modes.toml");
        return ExitCode::from(2);
    }
    let modes = match ckptlab::compare::parse_modes(modes) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ckptlab: --modes: {e}");
            return ExitCode::from(2);
        }
    };
    let sides = match sides(&LayerArgs::of(cli, true), None, &modes) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    warn_no_events(cli);
    let lineup = match Lineup::start(sides, || EventBus::new(tokio::time::Instant::now())) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    match ckptlab::tui::compare::run(lineup).await {
        Ok(ckptlab::tui::Quit::Signal(n)) => ExitCode::from(128 + n),
        Ok(ckptlab::tui::Quit::User) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckptlab: {e:#}");
            ExitCode::from(2)
        }
    }
}
