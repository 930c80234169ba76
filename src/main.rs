//! The `ckptlab` command line: `ckptlab` (the TUI workbench), `ckptlab tour` (the seed's
//! experiments headless), `ckptlab run SCENARIO`, `ckptlab bench`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ckptlab::cluster::Engine;
use ckptlab::compare::{CompareReport, Lineup, SideMode};
use ckptlab::config::{kafka_shorthand, ConfigLayers};
use ckptlab::events::{EventBus, Stamped};
use ckptlab::scenario::{self, RunReport, Scenario};

#[derive(Parser)]
#[command(
    name = "ckptlab",
    version,
    about = "A workbench for stream-processing checkpoints: a Flink-style mini cluster in one process, judged against a ground truth.",
    after_help = "Examples:\n  ckptlab                                   the workbench: type records, kill a TM (k), start it (s), read the verdict\n  ckptlab --kafka localhost:9092            the seed's setup: read input-topic from a broker (kafka-console-producer feeds it)\n  ckptlab --kafka mock                      the same through librdkafka's in-process mock cluster\n  ckptlab --set execution.checkpointing.interval=1s --backend fs\n  ckptlab lesson                            guided lessons (predict, then see it against the truth); ckptlab lesson NAME opens one\n  ckptlab tour                              the seed tutorial's experiments headless, one after another\n  ckptlab run assets/scenarios/seed-exactly-once.toml\n  ckptlab run my.toml --json --set execution.checkpointing.mode=AT_LEAST_ONCE\n  ckptlab bench --records 2000000\n  ckptlab compare --modes EXACTLY_ONCE,AT_LEAST_ONCE --set right.ckptlab.hop-delay=5ms\n  ckptlab flink run assets/scenarios/seed-exactly-once.toml   the same scenario on real Apache Flink, verdicts side by side"
)]
struct Cli {
    /// A configuration file layered over conf/ckptlab.toml.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one option by its dotted Flink name (repeatable), e.g. execution.checkpointing.interval=1s.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The seed's state backends: memory (hashmap + jobmanager), fs (hashmap + filesystem), rocksdb (rocksdb + filesystem).
    #[arg(long, global = true, value_name = "memory|fs|rocksdb")]
    backend: Option<String>,
    /// Read from Kafka instead of the embedded topic: a broker list (the seed's localhost:9092), or
    /// `mock` for librdkafka's in-process mock cluster.
    #[arg(long, global = true, value_name = "host:port|mock")]
    kafka: Option<String>,
    /// The topic to read and produce to (default input-topic, as the seed).
    #[arg(long, global = true, value_name = "NAME")]
    topic: Option<String>,
    /// Write every engine event as a JSON line to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Start the job from a retained checkpoint or a savepoint (execution.state-recovery.path), at any parallelism.
    #[arg(long, global = true, value_name = "PATH")]
    restore: Option<PathBuf>,
    /// The workbench: open a scenario file and play its steps live (its [config] applies; `o` in
    /// the workbench picks one of assets/scenarios).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario headless and print the verdict (exit 0: every expect held, 1: one failed, 2: bad file).
    Run {
        /// The scenario file (see assets/scenarios/).
        file: PathBuf,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Do not narrate the steps.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Measure throughput per checkpointing mode and recovery time.
    Bench(ckptlab::bench::BenchArgs),
    /// Run the seed tutorial's experiments headless, one after another, with their verdicts.
    Tour,
    /// Show what is inside a retained checkpoint or a savepoint (offsets, key groups, entries, sizes).
    Inspect(ckptlab::inspect::InspectArgs),
    /// Guided lessons in the workbench: without NAME, the list; with it, the lesson (n next or
    /// do it, p previous, 1-9 answer, L leave it and keep the cluster).
    Lesson {
        /// A shipped lesson's name (see `ckptlab lesson`) or a lesson file.
        name: Option<String>,
        /// Play it headless: every step done by the lesson, every prediction answered right,
        /// every expectation checked (exit 0: all held, 1: one did not, 2: bad lesson).
        #[arg(long)]
        auto: bool,
        /// With --auto: print one JSON object instead of the narration.
        #[arg(long)]
        json: bool,
    },
    /// Two or three clusters on the same topic, side by side: a key kills the same task manager in
    /// every one, typed records go to the shared topic, the verdicts stand in adjacent columns.
    /// `--set left.KEY=VALUE` (left, middle, right) sets an option on one side only.
    Compare {
        /// The sides' modes, comma-separated: EXACTLY_ONCE, AT_LEAST_ONCE, UNALIGNED, off.
        #[arg(long, value_delimiter = ',', value_name = "a,b[,c]", default_value = "EXACTLY_ONCE,AT_LEAST_ONCE,off")]
        modes: Vec<String>,
    },
    /// The same experiment on real Apache Flink (a MiniCluster in a JVM): both verdicts side by side, or a Flink job to export.
    #[command(subcommand)]
    Flink(FlinkCmd),
}

#[derive(Subcommand)]
enum FlinkCmd {
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

/// Writes to stdout; when stdout is closed (`ckptlab tour | head -3`) the process ends at once,
/// quietly, with 141 (128 + SIGPIPE, what a shell reports for a Unix tool the broken pipe ended)
/// instead of panicking; not 0, since the run did not finish its checks.
fn emit(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        std::process::exit(EXIT_BROKEN_PIPE);
    }
}

const EXIT_BROKEN_PIPE: i32 = 141;

macro_rules! outln {
    () => { emit(format_args!("\n")) };
    ($($t:tt)*) => { emit(format_args!("{}\n", format_args!($($t)*))) };
}

macro_rules! out {
    ($($t:tt)*) => { emit(format_args!($($t)*)) };
}

/// Distinct checkpoint failure reasons `ckptlab run` prints under its table.
const FAILURE_REASONS_SHOWN: usize = 3;

/// The scenarios the default run walks through: the seed tutorial's three experiments, then the
/// one built to make at-least-once count twice.
const TOUR: &[(&str, &str)] = &[
    ("assets/scenarios/seed-checkpoints-disabled.toml", include_str!("../assets/scenarios/seed-checkpoints-disabled.toml")),
    ("assets/scenarios/seed-exactly-once.toml", include_str!("../assets/scenarios/seed-exactly-once.toml")),
    ("assets/scenarios/seed-at-least-once.toml", include_str!("../assets/scenarios/seed-at-least-once.toml")),
    ("assets/scenarios/at-least-once-overcounts.toml", include_str!("../assets/scenarios/at-least-once-overcounts.toml")),
];

fn main() -> ExitCode {
    let launched = std::time::Instant::now();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ckptlab: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Some(Cmd::Run { ref file, json, quiet }) => {
                let scenario = match Scenario::load(file) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("ckptlab: {e}");
                        return ExitCode::from(2);
                    }
                };
                if let Some(modes) = scenario.compare.clone() {
                    return match run_compared(&cli, &scenario, &modes, json, quiet).await {
                        Ok(report) => ExitCode::from(if report.passed { 0 } else { 1 }),
                        Err(e) => {
                            eprintln!("ckptlab: {e}");
                            ExitCode::from(2)
                        }
                    };
                }
                match run_one(&cli, &scenario, json, quiet).await {
                    Ok(report) => ExitCode::from(if report.passed { 0 } else { 1 }),
                    Err(e) => {
                        eprintln!("ckptlab: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            Some(Cmd::Bench(ref args)) => match ckptlab::bench::run(base_layers(&cli, None), args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ckptlab bench: {e}");
                    ExitCode::from(2)
                }
            },
            Some(Cmd::Tour) => tour(&cli).await,
            Some(Cmd::Inspect(ref args)) => ckptlab::inspect::main(args),
            Some(Cmd::Lesson { ref name, auto, json }) => lesson(&cli, name.as_deref(), auto, json, launched).await,
            Some(Cmd::Flink(ref command)) => flink(&cli, command).await,
            Some(Cmd::Compare { ref modes }) => compare(&cli, modes).await,
            None if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() => workbench(&cli, launched).await,
            None if cli.scenario.is_some() => {
                eprintln!("ckptlab: --scenario opens the workbench, which needs a terminal; headless: ckptlab run FILE");
                ExitCode::from(2)
            }
            None => {
                outln!("ckptlab: not on a terminal, so no workbench: running the headless tour instead (`ckptlab tour`).\n");
                tour(&cli).await
            }
        }
    })
}

/// What the command line says about the configuration, kept apart from `Cli` so the workbench
/// can build layers again for a scenario it opens.
#[derive(Clone)]
struct LayerArgs {
    config: Option<PathBuf>,
    set: Vec<String>,
    backend: Option<String>,
    kafka: Option<String>,
    topic: Option<String>,
    restore: Option<PathBuf>,
    /// The workbench's own default interval applies (see `workbench_default`).
    workbench: bool,
}

impl LayerArgs {
    fn of(cli: &Cli, workbench: bool) -> Self {
        LayerArgs {
            config: cli.config.clone(),
            set: cli.set.clone(),
            backend: cli.backend.clone(),
            kafka: cli.kafka.clone(),
            topic: cli.topic.clone(),
            restore: cli.restore.clone(),
            workbench,
        }
    }
}

/// The workbench checkpoints every second unless told otherwise, as the seed's
/// `checkpointInterval = 1000`: Flink itself has no default interval (checkpointing is off until
/// one is set) and conf/ckptlab.toml keeps 5 s for `run`; at 5 s the README's one-minute
/// experiment often kills the TM before the first checkpoint, and exactly-once then loses records.
/// A `./conf/ckptlab.toml` of the user's, `--config`, a scenario or `--set` still decides.
fn workbench_default(layers: &mut ConfigLayers) -> Result<(), String> {
    if std::path::Path::new("conf/ckptlab.toml").is_file() {
        return Ok(());
    }
    let interval = ckptlab::duration::format_duration(ckptlab::tui::app::WORKBENCH_INTERVAL);
    layers
        .set_value(
            "execution.checkpointing.interval",
            toml::Value::String(interval),
            "the workbench's default (the seed's checkpointInterval = 1000)",
        )
        .map_err(|e| e.to_string())
}

/// Layers: conf/ckptlab.toml < --config < the scenario's [config] < --set / --backend.
fn base_layers(cli: &Cli, scenario: Option<&Scenario>) -> Result<ConfigLayers, String> {
    layers_of(&LayerArgs::of(cli, false), scenario)
}

fn layers_of(cli: &LayerArgs, scenario: Option<&Scenario>) -> Result<ConfigLayers, String> {
    let mut layers = ConfigLayers::with_defaults().map_err(|e| e.to_string())?;
    if cli.workbench {
        workbench_default(&mut layers)?;
    }
    if let Some(path) = &cli.config {
        layers.merge_file(path).map_err(|e| e.to_string())?;
    }
    if let Some(s) = scenario {
        s.apply_config(&mut layers).map_err(|e| e.to_string())?;
    }
    for s in &cli.set {
        layers.set(s, "--set").map_err(|e| e.to_string())?;
    }
    if let Some(b) = &cli.backend {
        layers.set_backend(b, "--backend")?;
    }
    if let Some(servers) = &cli.kafka {
        for (k, v) in kafka_shorthand(servers) {
            layers.set_value(k, toml::Value::String(v), "--kafka").map_err(|e| e.to_string())?;
        }
    }
    if let Some(path) = &cli.restore {
        let text = path.to_string_lossy().into_owned();
        layers.set_value("execution.state-recovery.path", toml::Value::String(text), "--restore").map_err(|e| e.to_string())?;
    }
    if let Some(topic) = &cli.topic {
        layers.set_value("source.topic", toml::Value::String(topic.clone()), "--topic").map_err(|e| e.to_string())?;
    }
    layers.build().map_err(|e| e.to_string())?;
    Ok(layers)
}

/// `--events FILE`: writes events as JSON lines until finished, then drains what is left.
struct EventsFile {
    done: tokio::sync::oneshot::Sender<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl EventsFile {
    /// Starts writing when `--events` was given (subscribe before the engine starts).
    fn start(cli: &Cli, bus: &EventBus) -> Result<Option<EventsFile>, String> {
        cli.events.as_ref().map(|path| spawn_event_writer(path, bus)).transpose()
    }

    /// Writes what is left and closes the file.
    async fn finish(self) {
        let _ = self.done.send(());
        let _ = self.writer.await;
    }
}

fn spawn_event_writer(path: &PathBuf, bus: &EventBus) -> Result<EventsFile, String> {
    let file = std::fs::File::create(path).map_err(|e| format!("--events {}: {e}", path.display()))?;
    let mut rx = bus.subscribe();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut w = std::io::BufWriter::new(file);
        let write = |e: &Stamped, w: &mut std::io::BufWriter<std::fs::File>| {
            if let Ok(line) = serde_json::to_string(e) {
                let _ = writeln!(w, "{line}");
            }
        };
        loop {
            tokio::select! {
                e = rx.recv() => match e {
                    Some(e) => write(&e, &mut w),
                    None => break,
                },
                _ = &mut done_rx => {
                    while let Ok(e) = rx.try_recv() {
                        write(&e, &mut w);
                    }
                    break;
                }
            }
        }
        let _ = w.flush();
    });
    Ok(EventsFile { done: done_tx, writer: handle })
}

async fn run_one(cli: &Cli, scenario: &Scenario, json: bool, quiet: bool) -> Result<RunReport, String> {
    let layers = base_layers(cli, Some(scenario))?;
    scenario.check(&layers.build().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let bus = EventBus::new(tokio::time::Instant::now());
    let events_file = EventsFile::start(cli, &bus)?;
    let engine = Engine::start(layers, bus).map_err(|e| e.to_string())?;
    let cfg = engine.config();
    if !json && !quiet {
        outln!("== {} ({})", scenario.name, scenario.file);
        for line in scenario.description.lines() {
            outln!("   {line}");
        }
        outln!(
            "   {} | {} | restart-strategy {} | heartbeat timeout {}",
            cfg.checkpointing_label(),
            cfg.backend_label(),
            ckptlab::cluster::restart::strategy_name(cfg.restart.effective(cfg.checkpointing.interval.is_some())),
            ckptlab::duration::format_duration(cfg.heartbeat_timeout)
        );
        let view = engine.view(false);
        if view.source != "embedded" {
            outln!("   source: {}", view.source);
        }
        if let Some(problem) = &view.topic_status {
            outln!("   WARNING {problem}");
        }
    }
    let narrate_on = !json && !quiet;
    let report = scenario::run(scenario, &engine, |line| {
        if narrate_on {
            outln!("{line}");
        }
    })
    .await;
    // What is wrong with the topic at the end (a broker that came back empty ...) closes the report.
    let topic_status = engine.view(false).topic_status;
    engine.shutdown().await;
    if let Some(f) = events_file {
        f.finish().await;
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        if let Some(problem) = &topic_status {
            eprintln!("WARNING {problem}");
        }
    } else {
        print_report(&report);
        if let Some(problem) = &topic_status {
            outln!("WARNING {problem}");
        }
    }
    Ok(report)
}

fn print_report(r: &RunReport) {
    outln!();
    out!("{}", scenario::report_table(r));
    outln!(
        "produced {}  repeated output lines {}  checkpoints: {} completed, {} failed, {} restored  restarts {}  job {}",
        r.verdict.produced,
        r.verdict.repeated_output,
        r.checkpoints.completed,
        r.checkpoints.failed,
        r.checkpoints.restored,
        r.restarts,
        r.status
    );
    if let Some(last) = r.checkpoints.history.iter().rev().find(|c| c.failure.is_none()) {
        let size = if last.checkpointed_size == last.full_size {
            ckptlab::duration::format_size(last.full_size)
        } else {
            format!(
                "{} uploaded of {} (incremental)",
                ckptlab::duration::format_size(last.checkpointed_size),
                ckptlab::duration::format_size(last.full_size)
            )
        };
        let persisted = if last.unaligned {
            format!(", {} in-flight persisted", ckptlab::duration::format_size(last.persisted_size))
        } else {
            String::new()
        };
        outln!(
            "last checkpoint: {} in {} ms (alignment {} ms, sync {} ms, async {} ms), {size}{persisted}",
            last.id,
            last.duration_ms,
            last.alignment_ms,
            last.sync_ms,
            last.async_ms
        );
    }
    // Why checkpoints failed: the last few distinct reasons, newest last.
    let mut reasons: Vec<(u64, &str)> = Vec::new();
    for c in r.checkpoints.history.iter().rev() {
        if let Some(reason) = c.failure.as_deref() {
            if !reasons.iter().any(|(_, seen)| *seen == reason) {
                reasons.push((c.id, reason));
            }
        }
        if reasons.len() == FAILURE_REASONS_SHOWN {
            break;
        }
    }
    for (id, reason) in reasons.into_iter().rev() {
        outln!("checkpoint {id} failed: {reason}");
    }
    if r.passed {
        outln!("PASSED: every expect held ({:.1}s)", r.duration_ms as f64 / 1000.0);
    } else {
        for f in &r.failures {
            outln!("FAILED {f}");
        }
    }
}

/// `ckptlab lesson [NAME] [--auto]`.
async fn lesson(cli: &Cli, name: Option<&str>, auto: bool, json: bool, launched: std::time::Instant) -> ExitCode {
    let Some(name) = name else {
        outln!("Lessons (ckptlab lesson NAME opens one in the workbench; --auto plays it headless):\n");
        for (n, text) in ckptlab::lesson::SHIPPED {
            match ckptlab::lesson::Lesson::parse(text, n) {
                Ok(l) => outln!("  {n:<28} {:>2} min  {:>2} steps  {}\n  {:<28} {}", l.minutes, l.steps.len(), l.title, "", l.summary),
                Err(e) => outln!("  {n:<28} (broken: {e})"),
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
        return workbench_with(cli, launched, ckptlab::tui::Opening::Lesson(Box::new(lesson))).await;
    }
    let layers = match base_layers(cli, Some(&lesson.scenario))
        .and_then(|l| lesson.scenario.check(&l.build().map_err(|e| e.to_string())?).map(|()| l).map_err(|e| e.to_string()))
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

/// The TUI. Logs go to a file (never to the screen): $CKPTLAB_LOG or ckptlab.log in the private
/// directory (`<temp>/ckptlab-<uid>`, or $CKPTLAB_HOME).
async fn workbench(cli: &Cli, launched: std::time::Instant) -> ExitCode {
    match cli.scenario.as_deref().map(Scenario::load).transpose() {
        Ok(Some(s)) => workbench_with(cli, launched, ckptlab::tui::Opening::Scenario(s)).await,
        Ok(None) => workbench_with(cli, launched, ckptlab::tui::Opening::Nothing).await,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            ExitCode::from(2)
        }
    }
}

/// The workbench, opening a scenario or a lesson (or nothing) at once.
async fn workbench_with(cli: &Cli, launched: std::time::Instant, opening: ckptlab::tui::Opening) -> ExitCode {
    let args = LayerArgs::of(cli, true);
    let scenario = opening.scenario();
    // The workbench plays on one cluster; a comparison needs one per mode.
    if let Some(s) = scenario.filter(|s| s.compare.is_some()) {
        eprintln!("ckptlab: {} compares modes ([compare]): run it with `ckptlab run {}`", s.file, s.file);
        return ExitCode::from(2);
    }
    // Every error a bad file or option can cause is reported here, before the screen is taken.
    if let Err(e) = layers_of(&args, scenario).and_then(|l| {
        let cfg = l.build().map_err(|e| e.to_string())?;
        scenario.map_or(Ok(()), |s| s.check(&cfg).map_err(|e| e.to_string()))
    }) {
        eprintln!("ckptlab: {e}");
        return ExitCode::from(2);
    }
    // The log never follows a symlink and is private to the user (0600, in the 0700 directory).
    let log_path = match std::env::var_os("CKPTLAB_LOG") {
        Some(p) => Ok(PathBuf::from(p)),
        None => ckptlab::workdir::prepare_home().map(|home| home.join("ckptlab.log")),
    };
    match log_path.and_then(|p| ckptlab::workdir::open_log(&p)) {
        Ok(file) => {
            let _ = tracing_subscriber::fmt().with_writer(std::sync::Mutex::new(file)).with_ansi(false).try_init();
        }
        Err(e) => eprintln!("ckptlab: no log file ({e}); going on without one"),
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "workbench starting");
    let bus = EventBus::new(tokio::time::Instant::now());
    let events_file = match EventsFile::start(cli, &bus) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    let layers_for: ckptlab::tui::frontend::LayersFor = Box::new(move |s| layers_of(&args, s));
    let result = ckptlab::tui::run(layers_for, bus, launched, opening).await;
    if let Some(f) = events_file {
        f.finish().await;
    }
    match result {
        // As a process a signal ended: 128 + its number (SIGTERM 143, SIGHUP 129).
        Ok(ckptlab::tui::Quit::Signal(n)) => ExitCode::from(128 + n),
        Ok(ckptlab::tui::Quit::User) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ckptlab: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// One set of layers per compared side: the command line's (plain `--set` for every side), the
/// scenario's `[config]`, the side's mode, then its own `--set left.KEY=VALUE`.
fn compare_sides(args: &LayerArgs, scenario: Option<&Scenario>, modes: &[SideMode]) -> Result<Vec<(SideMode, ConfigLayers)>, String> {
    // Every side would restore the same snapshot, and under CLAIM one side may delete it while
    // another still reads it.
    if args.restore.is_some() {
        return Err("--restore is not taken by a comparison: each side starts empty from the shared topic".into());
    }
    let (common, per_side) = ckptlab::compare::split_sets(&args.set, modes.len()).map_err(|e| e.to_string())?;
    let names = ckptlab::compare::side_names(modes.len());
    let base = LayerArgs { set: common, ..args.clone() };
    let mut sides = Vec::new();
    for ((mode, sets), name) in modes.iter().zip(per_side).zip(names) {
        let mut layers = layers_of(&base, scenario)?;
        mode.apply(&mut layers).map_err(|e| e.to_string())?;
        for s in &sets {
            layers.set(s, &format!("--set {name}.")).map_err(|e| format!("side {name}: {e}"))?;
        }
        let cfg = layers.build().map_err(|e| format!("side {name}: {e}"))?;
        if let Some(s) = scenario {
            s.check(&cfg).map_err(|e| format!("side {name}: {e}"))?;
        }
        sides.push((*mode, layers));
    }
    Ok(sides)
}

/// `ckptlab run` on a scenario with `[compare]`: every step on each side, verdicts side by side.
async fn run_compared(cli: &Cli, scenario: &Scenario, modes: &[SideMode], json: bool, quiet: bool) -> Result<CompareReport, String> {
    let sides = compare_sides(&LayerArgs::of(cli, false), Some(scenario), modes)?;
    warn_no_events(cli);
    let lineup = Lineup::start(sides, || EventBus::new(tokio::time::Instant::now())).map_err(|e| e.to_string())?;
    let narrate_on = !json && !quiet;
    if narrate_on {
        outln!("== {} ({}), compared", scenario.name, scenario.file);
        for line in scenario.description.lines() {
            outln!("   {line}");
        }
        for side in &lineup.sides {
            let cfg = side.engine.config();
            outln!("   {:<6} {:<13} {} | {}", side.name, side.mode.name(), cfg.checkpointing_label(), cfg.backend_label());
        }
    }
    let report = ckptlab::compare::run(scenario, &lineup, |line| {
        if narrate_on {
            outln!("{line}");
        }
    })
    .await;
    lineup.shutdown().await;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        print_compared(&report);
    }
    Ok(report)
}

fn print_compared(r: &CompareReport) {
    outln!();
    let labels: Vec<&str> = r.sides.iter().map(|s| s.mode.name()).collect();
    let verdicts: Vec<&ckptlab::audit::Verdict> = r.sides.iter().map(|s| &s.report.verdict).collect();
    out!("{}", ckptlab::compare::side_by_side_table(&labels, &verdicts));
    outln!("(* the sides differ)");
    for s in &r.sides {
        let p = &s.report;
        outln!(
            "{:<13} {:<15} checkpoints: {} completed, {} failed  restarts {}  job {}",
            s.mode.name(),
            p.verdict.summary(),
            p.checkpoints.completed,
            p.checkpoints.failed,
            p.restarts,
            p.status
        );
    }
    for s in &r.sides {
        for f in &s.report.failures {
            outln!("FAILED {}: {f}", s.mode.name());
        }
    }
    if r.passed {
        let ms = r.sides.iter().map(|s| s.report.duration_ms).max().unwrap_or(0);
        outln!("PASSED: every expect held on every side ({:.1}s)", ms as f64 / 1000.0);
    }
}

/// Each side has its own event bus; `--events` writes one run's.
fn warn_no_events(cli: &Cli) {
    if cli.events.is_some() {
        eprintln!("ckptlab: --events is not written for a comparison (each side has its own events)");
    }
}

/// `ckptlab compare`: the clusters side by side in the terminal.
async fn compare(cli: &Cli, modes: &[String]) -> ExitCode {
    if !(std::io::stdout().is_terminal() && std::io::stdin().is_terminal()) {
        eprintln!("ckptlab compare needs a terminal; headless, run a scenario with [compare] modes = [...]: ckptlab run assets/scenarios/compare-modes.toml");
        return ExitCode::from(2);
    }
    let sides = match ckptlab::compare::parse_modes(modes)
        .map_err(|e| format!("--modes: {e}"))
        .and_then(|modes| compare_sides(&LayerArgs::of(cli, true), None, &modes))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    warn_no_events(cli);
    let lineup = match Lineup::start(sides, || EventBus::new(tokio::time::Instant::now())) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    match ckptlab::tui::compare::run(lineup).await {
        Ok(ckptlab::tui::Quit::Signal(n)) => ExitCode::from(128 + n),
        Ok(ckptlab::tui::Quit::User) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckptlab: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn tour(cli: &Cli) -> ExitCode {
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
        match run_one(cli, &scenario, false, false).await {
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

/// `ckptlab flink run|export`.
async fn flink(cli: &Cli, command: &FlinkCmd) -> ExitCode {
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
    out!("{}", verdict::side_by_side(&c.verdict, &f.verdict));
    outln!("{}", r.agreement.describe(&c.verdict, &f.verdict));
    outln!(
        "ckptlab: {} checkpoints completed, {} restarts, job {}   Flink {}: {} checkpoints completed ({} failed), {} restarts, job {}, {} sink lines",
        c.checkpoints.completed,
        c.restarts,
        c.status,
        f.flink_version,
        f.checkpoints_completed,
        f.checkpoints_failed,
        f.restarts,
        f.status,
        f.output_lines
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
