//! The `ckptlab` command line: `ckptlab` (the TUI workbench), `ckptlab tour` (the seed's
//! experiments headless), `ckptlab run SCENARIO`, `ckptlab bench` ... This file holds the
//! top-level parser and the dispatch only; each subcommand (its arguments, `exec()` and
//! printer) is a file of `cli/`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "ckptlab",
    version,
    about = "A workbench for stream-processing checkpoints: a Flink-style mini cluster in one process, judged against a ground truth.",
    after_help = "Examples:\n  ckptlab                                   the workbench: type records, kill a TM (k), start it (s), read the verdict\n  ckptlab --kafka localhost:9092            the seed's setup: read input-topic from a broker (kafka-console-producer feeds it)\n  ckptlab --kafka mock                      the same through librdkafka's in-process mock cluster\n  ckptlab --set execution.checkpointing.interval=1s --backend fs\n  ckptlab lesson                            guided lessons (predict, then see it against the truth); ckptlab lesson NAME opens one\n  ckptlab tour                              the seed tutorial's experiments headless, one after another\n  ckptlab run seed-exactly-once              a shipped scenario by its name (or any file: ckptlab run my.toml)\n  ckptlab run my.toml --json --set execution.checkpointing.mode=AT_LEAST_ONCE\n  ckptlab bench --records 2000000\n  ckptlab compare --modes EXACTLY_ONCE,AT_LEAST_ONCE --set right.ckptlab.hop-delay=5ms\n  ckptlab flink run assets/scenarios/seed-exactly-once.toml   the same scenario on real Apache Flink, verdicts side by side\n\nDocs: docs/workbench.md (the workbench), docs/configuration.md (every option); README.md lists every page"
)]
struct Cli {
    #[command(flatten)]
    global: cli::Global,
    /// The workbench: open a scenario file (or a shipped scenario's name) and play its steps live
    /// (its [config] applies; `o` in the workbench picks one of assets/scenarios).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario headless and print the verdict (exit 0: every expect held, 1: one failed, 2: bad file).
    #[command(after_help = "Docs: docs/scenarios.md")]
    Run(cli::run::RunArgs),
    /// Measure throughput per checkpointing mode and recovery time.
    #[command(after_help = "Docs: docs/performance.md")]
    Bench(cli::bench::BenchArgs),
    /// Run the seed tutorial's experiments headless, one after another, with their verdicts.
    #[command(after_help = "Docs: docs/compare.md")]
    Tour,
    /// Show what is inside a retained checkpoint or a savepoint (offsets, key groups, entries, sizes).
    #[command(after_help = "Docs: docs/retention.md")]
    Inspect(cli::inspect::InspectArgs),
    /// Guided lessons in the workbench: without NAME, the list; with it, the lesson (n next or
    /// do it, p previous, 1-9 answer, L leave it and keep the cluster).
    #[command(after_help = "Docs: docs/lessons.md")]
    Lesson(cli::lesson::LessonArgs),
    /// Two or three clusters on the same topic, side by side: a key kills the same task manager in
    /// every one, typed records go to the shared topic, the verdicts stand in adjacent columns.
    /// `--set left.KEY=VALUE` (left, middle, right) sets an option on one side only.
    #[command(after_help = "Docs: docs/compare.md")]
    Compare(cli::compare::CompareArgs),
    /// The same experiment on real Apache Flink (a MiniCluster in a JVM): both verdicts side by side, or a Flink job to export.
    #[command(subcommand, after_help = "Docs: docs/flink.md")]
    Flink(cli::flink::FlinkCmd),
}

/// One malloc arena for the whole process (glibc), unless `MALLOC_ARENA_MAX` says otherwise.
///
/// glibc gives threads arenas of their own, up to 8 per core, created as threads come: the
/// runtime's workers, and the threads `block_in_place` starts when the JobManager writes a
/// checkpoint. Each arena keeps what was freed in it, and a task's buffers are freed in whichever
/// arena its thread uses, so the process's RSS crept up with the run's length while the heap's peak
/// stayed flat (issue 24, `ckptlab bench --memory-child`, heaptrack: 31.6 MB heap peak at 8 M
/// records, 32.0 MB at 32 M; RSS 48.9-49.3 MB at 8 M, 50.4-53.7 MB at 32 M, 54.4 MB at 100 M). With
/// one arena: 46.8 MB at 8 M, 47.1-47.7 MB at 32 M, 48.8 MB at 100 M, at the same records/s (each
/// thread's cache of small blocks spares the arena's lock most calls).
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any thread is started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

fn main() -> ExitCode {
    let launched = std::time::Instant::now();
    one_malloc_arena();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ckptlab: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let global = &cli.global;
    runtime.block_on(async move {
        match &cli.command {
            Some(Cmd::Run(args)) => cli::run::exec(global, args).await,
            Some(Cmd::Bench(args)) => cli::bench::exec(global, args).await,
            Some(Cmd::Tour) => cli::tour::exec(global).await,
            Some(Cmd::Inspect(args)) => cli::inspect::exec(args),
            Some(Cmd::Lesson(args)) => cli::lesson::exec(global, args, launched).await,
            Some(Cmd::Flink(command)) => cli::flink::exec(global, command).await,
            Some(Cmd::Compare(args)) => cli::compare::exec(global, args).await,
            None if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() => {
                cli::workbench::exec(global, cli.scenario.as_deref(), launched).await
            }
            None if cli.scenario.is_some() => {
                eprintln!("ckptlab: --scenario opens the workbench, which needs a terminal; headless: ckptlab run FILE");
                ExitCode::from(2)
            }
            None => {
                cli::outln!("ckptlab: not on a terminal, so no workbench: running the headless tour instead (`ckptlab tour`).\n");
                cli::tour::exec(global).await
            }
        }
    })
}
