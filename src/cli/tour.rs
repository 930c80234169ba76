//! `ckptlab tour`: the seed tutorial's experiments headless, one after another (also what a bare
//! `ckptlab` runs when it is not on a terminal).

use std::process::ExitCode;

use ckptlab::scenario::Scenario;

use super::{outln, Global};


pub async fn exec(cli: &Global) -> ExitCode {
    outln!("ckptlab: the seed tutorial's experiments, headless (each kills a task manager, produces while it is down, starts it again).");
    outln!("Run one on its own with `ckptlab run <file>`; `ckptlab --help` lists the commands.\n");
    let mut all = true;
    for name in ckptlab::shipped::TOUR {
        let Some((file, text)) = ckptlab::shipped::find(name) else { continue };
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
