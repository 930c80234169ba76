//! `ckptlab inspect PATH`: what is inside a retained checkpoint or a savepoint, as tables or one
//! JSON object (the reading is in the library's `inspect`).

use std::process::ExitCode;

use ckptlab::inspect::InspectArgs;

/// Exit 0, or 2 with the reason.
pub fn exec(args: &InspectArgs) -> ExitCode {
    ckptlab::inspect::main(args)
}
