//! `ckptlab compare`: two or three clusters on one topic side by side in the terminal; and the
//! per-side configuration layers that `ckptlab run` on a `[compare]` scenario shares.

use std::io::IsTerminal;
use std::process::ExitCode;

use ckptlab::compare::{Lineup, SidePlan, Sides};
use ckptlab::events::EventBus;
use ckptlab::scenario::Scenario;

use super::{layers_of, CliError, Global, LayerArgs};

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The sides' modes, comma-separated: EXACTLY_ONCE, AT_LEAST_ONCE, UNALIGNED, off
    /// [default: EXACTLY_ONCE,AT_LEAST_ONCE,off]. With --vary: the one mode every side runs
    /// [default: EXACTLY_ONCE].
    #[arg(long, value_delimiter = ',', value_name = "a,b[,c]")]
    modes: Option<Vec<String>>,
    /// Sides that run one mode and differ in one setting, each named by its value: the same job
    /// with three sinks (job.sink=print,transactional,kafka) or three delivery guarantees
    /// (sink.delivery-guarantee=none,at-least-once,exactly-once with job.sink=kafka).
    #[arg(long, value_name = "KEY=a,b[,c]")]
    vary: Option<String>,
}

/// One set of layers per compared side: the command line's (plain `--set` for every side), the
/// scenario's `[config]`, the side's mode (and varied setting), then its own `--set left.KEY=VALUE`.
pub fn sides(args: &LayerArgs, scenario: Option<&Scenario>, compared: &Sides) -> Result<Vec<SidePlan>, CliError> {
    // Every side would restore the same snapshot, and under CLAIM one side may delete it while
    // another still reads it.
    if args.restore.is_some() {
        return Err(CliError::RestoreInComparison);
    }
    let (common, per_side) = ckptlab::compare::split_sets(&args.set, compared.len())?;
    let names = ckptlab::compare::side_names(compared.len());
    let base = LayerArgs { set: common, ..args.clone() };
    let mut sides = Vec::new();
    for (i, (sets, name)) in per_side.into_iter().zip(names).enumerate() {
        let mut layers = layers_of(&base, scenario)?;
        let on_side = CliError::on_side(*name);
        compared.apply(i, &mut layers).map_err(|e| on_side(e.into()))?;
        for s in &sets {
            layers.set(s, &format!("--set {name}.")).map_err(|e| on_side(e.into()))?;
        }
        let cfg = layers.build().map_err(|e| on_side(e.into()))?;
        if let Some(s) = scenario {
            s.check(&cfg).map_err(|e| on_side(e.into()))?;
        }
        sides.push(SidePlan { label: compared.label(i), mode: compared.mode(i), layers });
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
    let compared = match ckptlab::compare::sides_of(args.modes.as_deref(), args.vary.as_deref()) {
        Ok(m) => m,
        Err(e) => {
            let flag = if args.vary.is_some() { "--vary" } else { "--modes" };
            eprintln!("ckptlab: {flag}: {e}");
            return ExitCode::from(2);
        }
    };
    if !(std::io::stdout().is_terminal() && std::io::stdin().is_terminal()) {
        eprintln!("ckptlab compare needs a terminal; headless, run a scenario with [compare] modes = [...] or vary = KEY: ckptlab run compare-modes (or compare-sinks, compare-delivery-guarantees)");
        return ExitCode::from(2);
    }
    let sides = match sides(&LayerArgs::of(cli, true), None, &compared) {
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
