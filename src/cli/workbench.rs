//! `ckptlab` with no subcommand: the TUI workbench, opening nothing, a scenario (`--scenario`)
//! or a lesson (`ckptlab lesson NAME`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ckptlab::events::EventBus;

use super::{layers_of, CliError, EventsFile, Global, LayerArgs};

/// The TUI. Logs go to a file (never to the screen): $CKPTLAB_LOG or ckptlab.log in the private
/// directory (`<temp>/ckptlab-<uid>`, or $CKPTLAB_HOME).
pub async fn exec(cli: &Global, scenario: Option<&Path>, launched: std::time::Instant) -> ExitCode {
    match scenario.map(ckptlab::shipped::load).transpose() {
        Ok(Some(s)) => with(cli, launched, ckptlab::tui::Opening::Scenario(s)).await,
        Ok(None) => with(cli, launched, ckptlab::tui::Opening::Nothing).await,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            ExitCode::from(2)
        }
    }
}

/// The workbench, opening a scenario or a lesson (or nothing) at once.
pub async fn with(cli: &Global, launched: std::time::Instant, opening: ckptlab::tui::Opening) -> ExitCode {
    let args = LayerArgs::of(cli, true);
    let scenario = opening.scenario();
    // The workbench plays on one cluster; a comparison needs one per mode.
    if let Some(s) = scenario.filter(|s| s.compare.is_some()) {
        eprintln!("ckptlab: {} compares modes ([compare]): run it with `ckptlab run {}`", s.file, s.file);
        return ExitCode::from(2);
    }
    // Every error a bad file or option can cause is reported here, before the screen is taken.
    if let Err(e) = layers_of(&args, scenario).and_then(|l| {
        let cfg = l.build()?;
        scenario.map_or(Ok(()), |s| s.check(&cfg).map_err(CliError::from))
    }) {
        eprintln!("ckptlab: {e}");
        return ExitCode::from(2);
    }
    // The log never follows a symlink and is private to the user (0600, in the 0700 directory).
    let log_path = match std::env::var_os("CKPTLAB_LOG") {
        Some(p) => Ok(PathBuf::from(p)),
        None => ckptlab::workdir::prepare_home().map(|home| home.join("ckptlab.log")),
    };
    match log_path.and_then(|p| ckptlab::workdir::open_log(&p)) {
        Ok(file) => {
            let _ = tracing_subscriber::fmt().with_writer(std::sync::Mutex::new(file)).with_ansi(false).try_init();
        }
        Err(e) => eprintln!("ckptlab: no log file ({e}); going on without one"),
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "workbench starting");
    let bus = EventBus::new(tokio::time::Instant::now());
    let events_file = match EventsFile::start(cli, &bus) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    let layers_for: ckptlab::tui::frontend::LayersFor = Box::new(move |s| layers_of(&args, s).map_err(Into::into));
    let result = ckptlab::tui::run(layers_for, bus, launched, opening).await;
    if let Some(f) = events_file {
        f.finish().await;
    }
    match result {
        // As a process a signal ended: 128 + its number (SIGTERM 143, SIGHUP 129).
        Ok(ckptlab::tui::Quit::Signal(n)) => ExitCode::from(128 + n),
        Ok(ckptlab::tui::Quit::User) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ckptlab: {e:#}");
            ExitCode::from(2)
        }
    }
}
