//! `ckptlab bench`: throughput per checkpointing mode, recovery time, and the `--state`,
//! `--source`, `--audit` and `--memory` comparisons (the measuring is in the library's `bench`).

use std::process::ExitCode;

use ckptlab::bench::BenchArgs;

use super::{base_layers, Global};

pub async fn exec(cli: &Global, args: &BenchArgs) -> ExitCode {
    match ckptlab::bench::run(base_layers(cli, None), args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckptlab bench: {e}");
            ExitCode::from(2)
        }
    }
}
