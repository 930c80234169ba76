//! `ckptlab flink run|export`: the same scenario on real Apache Flink (a MiniCluster in a JVM)
//! with both verdicts side by side, or a self-contained Flink job written out.

use std::path::PathBuf;
use std::process::ExitCode;

use ckptlab::flink::bridge::Narration;
use ckptlab::flink::install::InstallProgress;
use ckptlab::table::{Column, TextTable};

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
        /// Run the Flink side on ckptlab's local cluster of processes (a JobManager and TaskManager JVMs: kill is SIGKILL, hang SIGSTOP) instead of a MiniCluster; the running one `flink cluster start` left, else one started for the run and stopped at its end.
        #[arg(long, value_name = "local")]
        cluster: Option<ClusterTarget>,
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
    /// A local Flink standalone session cluster of processes (a JobManager JVM and TaskManager JVMs on 127.0.0.1), as start-cluster.sh makes one.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

/// `--cluster`'s one value.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ClusterTarget {
    /// ckptlab's local session cluster (`ckptlab flink cluster`).
    Local,
}

#[derive(clap::Subcommand)]
pub enum ClusterCmd {
    /// Start a session cluster: one JobManager, N TaskManagers, each its own JVM and log, from a config.yaml in ckptlab's private directory.
    Start {
        /// TaskManager processes.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
        taskmanagers: u16,
        /// Slots per TaskManager (taskmanager.numberOfTaskSlots).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
        slots: u16,
    },
    /// The JobManager's REST address and each TaskManager's pid, state and resource id (from REST /taskmanagers).
    Status {
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Stop every process of the cluster (also one a dead ckptlab left): SIGTERM, SIGKILL after 10 s.
    Stop,
}

/// `ckptlab flink run|export|cluster`.
pub async fn exec(cli: &Global, command: &FlinkCmd) -> ExitCode {
    let file = match command {
        FlinkCmd::Run { file, .. } | FlinkCmd::Export { file, .. } => file,
        FlinkCmd::Cluster(c) => return cluster(c),
    };
    let scenario = match ckptlab::shipped::load(file) {
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
        FlinkCmd::Cluster(_) => ExitCode::SUCCESS,
        FlinkCmd::Run { json, quiet, cluster, .. } => {
            let target = match cluster {
                Some(ClusterTarget::Local) => ckptlab::flink::bridge::Target::Local,
                None => ckptlab::flink::bridge::Target::MiniCluster,
            };
            if target == ckptlab::flink::bridge::Target::Local {
                stop_cluster_on_signal();
            }
            let narrate_on = !json && !quiet;
            if narrate_on {
                outln!("== {} ({}) on ckptlab and on Apache Flink", scenario.name, scenario.file);
            }
            let mut narrate = |said: Narration| match said {
                Narration::Line(line) if narrate_on => outln!("{line}"),
                Narration::Install(p) if narrate_on => outln!("{p}"),
                // The first-use install takes a while: say why, even with --json or --quiet.
                Narration::Install(p @ InstallProgress::Installing { .. }) => eprintln!("{p}"),
                Narration::Line(_) | Narration::Install(InstallProgress::Installed { .. }) => {}
            };
            let report = match ckptlab::flink::bridge::run(&scenario, layers, target, &mut narrate).await {
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
    if let Some(cl) = &f.cluster {
        outln!();
        out!("{}", ckptlab::flink::timeline::table(&r.timeline));
        let tms: Vec<String> = cl.taskmanagers.iter().map(|(n, p)| format!("{n} pid {p}")).collect();
        outln!(
            "local cluster: REST {}, JobManager pid {}, {}; killed pids {:?}, alive at the end {:?}{}",
            cl.rest,
            cl.jobmanager_pid,
            tms.join(", "),
            cl.killed,
            cl.alive_at_end,
            if cl.owned { " (started for this run, stopped at its end)" } else { " (left running: `ckptlab flink cluster stop` ends it)" }
        );
        if let Some(ms) = t.cluster_start_ms {
            outln!("cluster start: {:.1}s (JVMs to every TaskManager registered)", ms as f64 / 1000.0);
        }
    }
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

/// `ckptlab flink cluster start|status|stop`.
fn cluster(command: &ClusterCmd) -> ExitCode {
    use ckptlab::flink::cluster::{ClusterSpec, LocalCluster, Starter};
    match command {
        ClusterCmd::Start { taskmanagers, slots } => {
            let spec = ClusterSpec { starter: Starter::ClusterStart, taskmanagers: *taskmanagers as usize, slots: *slots as usize, options: Vec::new() };
            match LocalCluster::start(&spec, &mut |line| outln!("{line}")) {
                Ok(c) => {
                    outln!("`ckptlab flink cluster status` lists the processes; `ckptlab flink cluster stop` ends them (logs in {})", c.dir.join("log").display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ckptlab flink cluster start: {e}");
                    ExitCode::from(2)
                }
            }
        }
        ClusterCmd::Status { json } => match LocalCluster::find() {
            Ok(Some(c)) if c.any_alive() => {
                print_status(&c, *json);
                ExitCode::SUCCESS
            }
            Ok(_) => {
                eprintln!("ckptlab flink cluster status: {}", ckptlab::flink::cluster::ClusterError::NotRunning);
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("ckptlab flink cluster status: {e}");
                ExitCode::from(2)
            }
        },
        ClusterCmd::Stop => match LocalCluster::find() {
            Ok(Some(c)) => {
                let left = left_behind(&c.file);
                let stopped = c.stop(&mut |line| outln!("{line}"));
                outln!("stopped {} process(es){left}", stopped.len());
                ExitCode::SUCCESS
            }
            Ok(None) => {
                outln!("no local Flink cluster is recorded: nothing to stop");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ckptlab flink cluster stop: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn print_status(c: &ckptlab::flink::cluster::LocalCluster, json: bool) {
    let tms = c.status();
    let jm = c.jobmanager_state();
    if json {
        let v = serde_json::json!({
            "rest": c.rest_url(),
            "dir": c.dir,
            "flink_version": c.file.flink_version,
            "started_by": c.file.started_by,
            "jobmanager": { "pid": c.file.jobmanager.pid, "state": jm, "log": c.file.jobmanager.log },
            "taskmanagers": tms,
        });
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    let left = left_behind(&c.file);
    let by = if c.file.started_for.is_empty() { "ckptlab" } else { c.file.started_for.as_str() };
    outln!("Flink {} session cluster, REST {} (started by {by}, pid {}{left}; {})", c.file.flink_version, c.rest_url(), c.file.started_by, c.dir.display());
    // Fixed widths, a row at a time: a long cell pushes its own row only, as the table always did.
    let table = TextTable::new(vec![
        Column::left().min(12),
        Column::right().min(8).gap(" "),
        Column::left().min(8),
        Column::left().min(36),
        Column::right().min(5),
        Column::left(),
    ]);
    outln!("{}", table.line(&["process", "pid", "state", "resource id", "slots", "log"], ""));
    let jm_row = ["jobmanager".to_string(), c.file.jobmanager.pid.to_string(), state_word(jm).into(), "-".into(), "-".into(), c.file.jobmanager.log.display().to_string()];
    outln!("{}", table.line(&jm_row, ""));
    for t in &tms {
        let slots = match (t.free_slots, t.slots) {
            (Some(f), Some(s)) => format!("{f}/{s}"),
            _ => "-".into(),
        };
        let row = [
            t.name.clone(),
            t.pid.to_string(),
            state_word(t.state).into(),
            t.resource_id.clone().unwrap_or_else(|| "(not registered)".into()),
            slots,
            t.log.display().to_string(),
        ];
        outln!("{}", table.line(&row, ""));
    }
    outln!("(slots: free/total)");
}

/// ", left by a dead `ckptlab flink run`" when the run that owned the cluster is gone (a
/// `cluster start` ends at once by design: its cluster is nobody's leftover).
fn left_behind(f: &ckptlab::flink::cluster::ClusterFile) -> String {
    if f.started_by_run() && !ckptlab::workdir::process_alive(f.started_by) {
        ", left behind: that ckptlab is gone".to_string()
    } else {
        String::new()
    }
}

fn state_word(s: ckptlab::flink::cluster::ProcState) -> &'static str {
    use ckptlab::flink::cluster::ProcState;
    match s {
        ProcState::Running => "running",
        ProcState::Stopped => "stopped",
        ProcState::Gone => "gone",
    }
}

/// Ctrl-C, SIGTERM or SIGHUP (the terminal closed) during `flink run --cluster local`: the cluster
/// this run started is stopped before ckptlab exits (its JVMs are in their own process group, so
/// the terminal's signal reaches ckptlab only); a cluster `flink cluster start` left keeps running,
/// with any TaskManager the run hung resumed. The normal paths (the end, an error, a panic) stop it
/// through the bridge's guard.
fn stop_cluster_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async {
        let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else { return };
        let name = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        };
        let stopped = tokio::task::spawn_blocking(|| {
            match ckptlab::flink::cluster::LocalCluster::find() {
                Ok(Some(c)) if c.file.started_by == std::process::id() && c.file.started_by_run() => c.stop(&mut |_| {}),
                Ok(Some(c)) => {
                    c.resume_all();
                    Vec::new()
                }
                _ => Vec::new(),
            }
        })
        .await
        .unwrap_or_default();
        eprintln!("ckptlab flink: {name}: stopped the run's local cluster (pids {stopped:?})");
        std::process::exit(130);
    });
}
