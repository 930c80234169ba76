//! `ckptlab bench`: throughput per checkpointing mode, as ratios against checkpointing off in the
//! same invocation, and recovery time.

use clap::Args;

use crate::config::ConfigLayers;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Records pre-filled into the topic for each throughput run.
    #[arg(long, default_value_t = 2_000_000)]
    pub records: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
}

pub async fn run(_layers: Result<ConfigLayers, String>, _args: &BenchArgs) -> Result<(), String> {
    Err("not yet".into())
}
