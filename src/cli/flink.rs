//! `ckptlab flink run|export`: the same scenario on real Apache Flink (a MiniCluster in a JVM)
//! with both verdicts side by side, or a self-contained Flink job written out.

use std::path::PathBuf;
use std::process::ExitCode;

use ckptlab::scenario::Scenario;

use super::{base_layers, out, outln, Global};

#[derive(clap::Subcommand)]
pub enum FlinkCmd {
    /// Run a scenario on ckptlab and on Flink over the same records; both verdicts side by side (exit 0: every expect held on both).
    Run {
        file: PathBuf,
        /// Print one JSON object (both reports) instead of the tables.
        #[arg(long)]
        json: bool,
        /// Do not narrate the steps.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Write a self-contained Flink job for the scenario (Java sources, job.properties, run.sh, README) to run on a real cluster.
    Export {
        file: PathBuf,
        /// The directory to write.
        #[arg(short = 'o', long = "out", value_name = "DIR")]
        out: PathBuf,
        /// Where the job reads the partition files (default: DIR/log).
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
    },
}

/// `ckptlab flink run|export`.
pub async fn exec(cli: &Global, command: &FlinkCmd) -> ExitCode {
    let (FlinkCmd::Run { file, .. } | FlinkCmd::Export { file, .. }) = command;
    let scenario = match Scenario::load(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    let layers = match base_layers(cli, Some(&scenario)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        FlinkCmd::Export { out, log_dir, .. } => {
            let cfg = match layers.build() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ckptlab: {e}");
                    return ExitCode::from(2);
                }
            };
            let out = std::path::absolute(out).unwrap_or_else(|_| out.clone());
            let log_dir = log_dir.clone().unwrap_or_else(|| out.join("log"));
            match ckptlab::flink::export::write(&scenario, &cfg, &out, &log_dir) {
                Ok(files) => {
                    outln!("wrote the Flink job for {} into {} ({} files): ./run.sh with FLINK_HOME set builds and submits it; README.md says what it is", scenario.name, out.display(), files.len());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ckptlab flink export: {e}");
                    ExitCode::from(2)
                }
            }
        }
        FlinkCmd::Run { json, quiet, .. } => {
            let narrate_on = !json && !quiet;
            if narrate_on {
                outln!("== {} ({}) on ckptlab and on Apache Flink", scenario.name, scenario.file);
            }
            let mut narrate = |line: String| {
                if narrate_on {
                    outln!("{line}");
                } else if line.contains("first use only") {
                    // The first-use install takes a while: say why, even with --json or --quiet.
                    eprintln!("{line}");
                }
            };
            let report = match ckptlab::flink::bridge::run(&scenario, layers, &mut narrate).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("ckptlab flink: {e}");
                    return ExitCode::from(2);
                }
            };
            if *json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => outln!("{text}"),
                    Err(e) => {
                        eprintln!("ckptlab flink: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print_flink_report(&report);
            }
            ExitCode::from(if report.passed { 0 } else { 1 })
        }
    }
}

fn print_flink_report(r: &ckptlab::flink::bridge::BridgeReport) {
    use ckptlab::flink::verdict;
    let (c, f) = (&r.ckptlab, &r.flink);
    outln!();
    out!("{}", verdict::side_by_side(&c.verdict, &f.verdict, f.caught_up));
    outln!();
    out!("{}", r.comparison.table());
    outln!("{}", r.comparison.headline());
    outln!("rule: {}", r.comparison.rule);
    outln!(
        "Flink {}: {} sink lines, job {} at the end; both sides' figures count from ckptlab's start (the Flink job ran before it)",
        f.flink_version, f.output_lines, f.status
    );
    for n in &r.notes {
        outln!("note: {n}");
    }
    for m in &f.not_measured {
        outln!("not judged on Flink (not measured there): {m}");
    }
    let t = &r.timings;
    outln!(
        "time: {:.1}s in all; Flink: {}compile {:.1}s, JVM to job running {:.1}s, awaits beyond ckptlab {:.1}s, stop {:.1}s; ckptlab steps {:.1}s",
        t.total_ms as f64 / 1000.0,
        t.install_ms.map(|m| format!("install {:.1}s, ", m as f64 / 1000.0)).unwrap_or_default(),
        t.compile_ms as f64 / 1000.0,
        t.flink_start_ms as f64 / 1000.0,
        t.flink_extra_wait_ms as f64 / 1000.0,
        t.flink_stop_ms as f64 / 1000.0,
        t.ckptlab_steps_ms as f64 / 1000.0
    );
    outln!("run directory (partition files, job.properties, flink.log): {}", r.run_dir);
    for x in &c.failures {
        outln!("FAILED on ckptlab: {x}");
    }
    for x in &f.failures {
        outln!("FAILED on Flink: {x}");
    }
    if r.passed {
        outln!("PASSED: every expect held on both engines");
    }
}
