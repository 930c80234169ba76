//! `ckptlab lesson [NAME] [--auto]`: the list of lessons, one in the workbench, or one played
//! headless with every prediction answered right and every expectation checked.

use std::io::IsTerminal;
use std::process::ExitCode;

use ckptlab::cluster::Engine;
use ckptlab::events::EventBus;

use ckptlab::table::{Column, TextTable};

use super::{base_layers, outln, EventsFile, Global};

/// The lesson list's name column.
const NAME_WIDTH: usize = 28;

#[derive(clap::Args)]
pub struct LessonArgs {
    /// A shipped lesson's name (see `ckptlab lesson`) or a lesson file.
    name: Option<String>,
    /// Play it headless: every step done by the lesson, every prediction answered right,
    /// every expectation checked (exit 0: all held, 1: one did not, 2: bad lesson).
    #[arg(long)]
    auto: bool,
    /// With --auto: print one JSON object instead of the narration.
    #[arg(long)]
    json: bool,
}

/// `ckptlab lesson [NAME] [--auto]`.
pub async fn exec(cli: &Global, args: &LessonArgs, launched: std::time::Instant) -> ExitCode {
    let (name, auto, json) = (args.name.as_deref(), args.auto, args.json);
    let Some(name) = name else {
        outln!("Lessons (ckptlab lesson NAME opens one in the workbench; --auto plays it headless):\n");
        // Each lesson on two lines: its name and figures, then its summary under the title.
        let heading = TextTable::new(vec![Column::left().min(NAME_WIDTH), Column::left().gap(" "), Column::left(), Column::left()]).indent("  ");
        let under = TextTable::new(vec![Column::left().min(NAME_WIDTH), Column::left().gap(" ")]).indent("  ");
        for (n, text) in ckptlab::lesson::SHIPPED {
            match ckptlab::lesson::Lesson::parse(text, n) {
                Ok(l) => {
                    let figures = [n.to_string(), format!("{:>2} min", l.minutes), format!("{:>2} steps", l.steps.len()), l.title.clone()];
                    outln!("{}\n{}", heading.line(&figures, ""), under.line(&["", l.summary.as_str()], ""));
                }
                Err(e) => outln!("{}", under.line(&[n.to_string(), format!("(broken: {e})")], "")),
            }
        }
        return ExitCode::SUCCESS;
    };
    let lesson = match ckptlab::lesson::Lesson::find(name) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    if !auto {
        if !(std::io::stdout().is_terminal() && std::io::stdin().is_terminal()) {
            eprintln!("ckptlab: a lesson opens the workbench, which needs a terminal; headless: ckptlab lesson {name} --auto");
            return ExitCode::from(2);
        }
        return super::workbench::with(cli, launched, ckptlab::tui::Opening::Lesson(Box::new(lesson))).await;
    }
    let layers = match base_layers(cli, Some(&lesson.scenario))
        .and_then(|l| Ok(lesson.scenario.check(&l.build()?).map(|()| l)?))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    let bus = EventBus::new(tokio::time::Instant::now());
    let events_file = match EventsFile::start(cli, &bus) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    let engine = match Engine::start(layers, bus) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    if !json {
        outln!("== lesson {}: {} ({} min, {} steps)", lesson.name, lesson.title, lesson.minutes, lesson.steps.len());
    }
    let report = ckptlab::lesson::play_auto(&lesson, &engine, |line| {
        if !json {
            outln!("{line}");
        }
    })
    .await;
    engine.shutdown().await;
    if let Some(f) = events_file {
        f.finish().await;
    }
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => outln!("{s}"),
            Err(e) => eprintln!("ckptlab: {e}"),
        }
    } else if report.passed {
        outln!("PASSED: lesson {} did what its text says ({:.1}s)", report.lesson, report.duration_ms as f64 / 1000.0);
    } else {
        for f in &report.failures {
            outln!("FAILED {f}");
        }
    }
    ExitCode::from(if report.passed { 0 } else { 1 })
}
