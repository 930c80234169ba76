//! `ckptlab tour`: the seed tutorial's experiments headless, one after another (also what a bare
//! `ckptlab` runs when it is not on a terminal).

use std::process::ExitCode;

use ckptlab::scenario::Scenario;

use super::{outln, Global};

/// The scenarios the default run walks through: the seed tutorial's three experiments, then the
/// one built to make at-least-once count twice.
const TOUR: &[(&str, &str)] = &[
    ("assets/scenarios/seed-checkpoints-disabled.toml", include_str!("../../assets/scenarios/seed-checkpoints-disabled.toml")),
    ("assets/scenarios/seed-exactly-once.toml", include_str!("../../assets/scenarios/seed-exactly-once.toml")),
    ("assets/scenarios/seed-at-least-once.toml", include_str!("../../assets/scenarios/seed-at-least-once.toml")),
    ("assets/scenarios/at-least-once-overcounts.toml", include_str!("../../assets/scenarios/at-least-once-overcounts.toml")),
];

pub async fn exec(cli: &Global) -> ExitCode {
    outln!("ckptlab: the seed tutorial's experiments, headless (each kills a task manager, produces while it is down, starts it again).");
    outln!("Run one on its own with `ckptlab run <file>`; `ckptlab --help` lists the commands.\n");
    let mut all = true;
    for (file, text) in TOUR {
        let scenario = match Scenario::parse(text, file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ckptlab: {e}");
                return ExitCode::from(2);
            }
        };
        match super::run::run_one(cli, &scenario, false, false).await {
            Ok(r) => all &= r.passed,
            Err(e) => {
                eprintln!("ckptlab: {e}");
                return ExitCode::from(2);
            }
        }
        outln!();
    }
    ExitCode::from(if all { 0 } else { 1 })
}
