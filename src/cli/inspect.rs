//! `ckptlab inspect PATH`: what is inside a retained checkpoint or a savepoint, as tables or one
//! JSON object (the reading and the text are the library's `inspect`; this file prints them).

use std::path::PathBuf;
use std::process::ExitCode;

use ckptlab::inspect::{inspect, render, DEFAULT_ENTRIES};

use super::{out, outln, CliError};

/// `ckptlab inspect`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// A checkpoint directory (chk-<n>), a savepoint directory, its `_metadata`, or a job
    /// directory (its newest complete checkpoint).
    pub path: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Entries (key -> count) shown per subtask, in key order; 0 shows only the totals.
    #[arg(long, default_value_t = DEFAULT_ENTRIES)]
    pub entries: usize,
}

/// Exit 0, or 2 with the reason.
pub fn exec(args: &InspectArgs) -> ExitCode {
    let printed = inspect(&args.path, args.entries).map_err(CliError::from).and_then(|i| {
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&i)?);
        } else {
            out!("{}", render(&i));
        }
        Ok(())
    });
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckptlab inspect: {e}");
            ExitCode::from(2)
        }
    }
}
