//! The `ckptlab` subcommands, one file each (as cargo's `src/bin/cargo/commands/*.rs`): the
//! subcommand's arguments, its `exec()` and its printer. What several share lives here: the
//! global options and the configuration layers they build, `--events`, and stdout that ends
//! quietly on a closed pipe.

use std::io::Write;
use std::path::PathBuf;

use ckptlab::config::{kafka_shorthand, ConfigError, ConfigLayers};
use ckptlab::events::{EventBus, Stamped};
use ckptlab::scenario::Scenario;

pub mod bench;
pub mod compare;
mod error;
pub mod flink;
pub mod inspect;
pub mod lesson;
pub mod run;
pub mod tour;
pub mod workbench;

pub use error::CliError;

/// The options every subcommand takes (`global = true`).
#[derive(clap::Args)]
pub struct Global {
    /// A configuration file layered over conf/ckptlab.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one option by its dotted Flink name (repeatable), e.g. execution.checkpointing.interval=1s.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The seed's state backends: memory (hashmap + jobmanager), fs (hashmap + filesystem), rocksdb (rocksdb + filesystem).
    #[arg(long, global = true, value_name = "memory|fs|rocksdb")]
    pub backend: Option<String>,
    /// Read from Kafka instead of the embedded topic: a broker list (the seed's localhost:9092), or
    /// `mock` for librdkafka's in-process mock cluster.
    #[arg(long, global = true, value_name = "host:port|mock")]
    pub kafka: Option<String>,
    /// The topic to read and produce to (default input-topic, as the seed).
    #[arg(long, global = true, value_name = "NAME")]
    pub topic: Option<String>,
    /// Write every engine event as a JSON line to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Start the job from a retained checkpoint or a savepoint (execution.state-recovery.path), at any parallelism.
    #[arg(long, global = true, value_name = "PATH")]
    pub restore: Option<PathBuf>,
}

/// Writes to stdout; when stdout is closed (`ckptlab tour | head -3`) the process ends at once,
/// quietly, with 141 (128 + SIGPIPE, what a shell reports for a Unix tool the broken pipe ended)
/// instead of panicking; not 0, since the run did not finish its checks.
pub fn emit(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        std::process::exit(EXIT_BROKEN_PIPE);
    }
}

const EXIT_BROKEN_PIPE: i32 = 141;

macro_rules! outln {
    () => { $crate::cli::emit(format_args!("\n")) };
    ($($t:tt)*) => { $crate::cli::emit(format_args!("{}\n", format_args!($($t)*))) };
}

macro_rules! out {
    ($($t:tt)*) => { $crate::cli::emit(format_args!($($t)*)) };
}

pub(crate) use {out, outln};

/// What the command line says about the configuration, kept apart from `Global` so the workbench
/// can build layers again for a scenario it opens.
#[derive(Clone)]
pub struct LayerArgs {
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
    pub fn of(cli: &Global, workbench: bool) -> Self {
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
/// A `./conf/ckptlab.toml` that sets another interval than the shipped one, `--config`, a
/// scenario or `--set` still decides; the checkout's own copy of the shipped file (README's
/// `cargo run --release` runs in the checkout) does not, so the default is one wherever it runs.
fn workbench_default(layers: &mut ConfigLayers) -> Result<(), ConfigError> {
    const KEY: &str = "execution.checkpointing.interval";
    if layers.raw(KEY) != ConfigLayers::builtin().raw(KEY) {
        return Ok(());
    }
    let interval = ckptlab::duration::format_duration(ckptlab::tui::app::WORKBENCH_INTERVAL);
    layers.set_value(
        "execution.checkpointing.interval",
        toml::Value::String(interval),
        "the workbench's default (the seed's checkpointInterval = 1000)",
    )
}

/// Layers: conf/ckptlab.toml < --config < the scenario's [config] < --set / --backend.
pub fn base_layers(cli: &Global, scenario: Option<&Scenario>) -> Result<ConfigLayers, CliError> {
    layers_of(&LayerArgs::of(cli, false), scenario)
}

pub fn layers_of(cli: &LayerArgs, scenario: Option<&Scenario>) -> Result<ConfigLayers, CliError> {
    let mut layers = ConfigLayers::with_defaults()?;
    if cli.workbench {
        workbench_default(&mut layers)?;
    }
    if let Some(path) = &cli.config {
        layers.merge_file(path)?;
    }
    if let Some(s) = scenario {
        s.apply_config(&mut layers)?;
    }
    for s in &cli.set {
        layers.set(s, "--set")?;
    }
    if let Some(b) = &cli.backend {
        layers.set_backend(b, "--backend").map_err(|e| CliError::Backend(e.to_string()))?;
    }
    if let Some(servers) = &cli.kafka {
        for (k, v) in kafka_shorthand(servers) {
            layers.set_value(k, toml::Value::String(v), "--kafka")?;
        }
    }
    if let Some(path) = &cli.restore {
        let text = path.to_string_lossy().into_owned();
        layers.set_value("execution.state-recovery.path", toml::Value::String(text), "--restore")?;
    }
    if let Some(topic) = &cli.topic {
        layers.set_value("source.topic", toml::Value::String(topic.clone()), "--topic")?;
    }
    layers.build()?;
    Ok(layers)
}

/// `--events FILE`: writes events as JSON lines until finished, then drains what is left.
pub struct EventsFile {
    done: tokio::sync::oneshot::Sender<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl EventsFile {
    /// Starts writing when `--events` was given (subscribe before the engine starts).
    pub fn start(cli: &Global, bus: &EventBus) -> Result<Option<EventsFile>, CliError> {
        cli.events.as_ref().map(|path| spawn_event_writer(path, bus)).transpose()
    }

    /// Writes what is left and closes the file.
    pub async fn finish(self) {
        let _ = self.done.send(());
        let _ = self.writer.await;
    }
}

fn spawn_event_writer(path: &PathBuf, bus: &EventBus) -> Result<EventsFile, CliError> {
    let file = std::fs::File::create(path).map_err(|source| CliError::EventsFile { path: path.clone(), source })?;
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
