//! `ckptlab bench`: the default job at full speed over a pre-filled topic, with a discarding sink
//! and the auditor off, reporting records/s per checkpointing mode as ratios against
//! checkpointing off in the same invocation (these machines are noisy), and recovery time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{Command, Engine, EngineError};
use crate::config::{parse_loose_value, ConfigError, ConfigLayers};
use crate::connectors::{EmbeddedTopic, Topic, TopicError};
use crate::events::{Event, EventBus};
use crate::flink::bench::{FlinkBench, FlinkBenchError, FlinkRun, Preparing};
use crate::types::TaskId;
use crate::workdir::WorkDirError;

/// Why a benchmark stopped: the engine's own errors as they are, or a measurement that could not
/// be taken (the job did not get where it starts, or it did not end, within its deadline).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error(transparent)]
    WorkDir(#[from] WorkDirError),
    #[error("the job did not start")]
    NotStarted,
    #[error("the job did not catch up within 10 minutes")]
    NotCaughtUp,
    #[error("the job did not recover in time")]
    NotRecovered,
    #[error("no checkpoint completed within 60s")]
    NoCheckpoint,
    #[error("a checkpoint did not complete within 10 minutes")]
    CheckpointTimedOut,
    #[error("checkpoint failed: {0}")]
    CheckpointFailed(String),
    #[error("no checkpoint statistics")]
    NoCheckpointStats,
    #[error("no barrier reached counter[0]")]
    NoBarrier,
    #[error("counter[0]'s snapshot was not written within 10 minutes")]
    SnapshotTimedOut,
    /// The write outlasted the records queued to keep the counter busy during it.
    #[error("the backlog of {0} records ran out before the write ended: raise it")]
    BacklogRanOut(u64),
    #[error("the mirror did not receive the records within 10 minutes")]
    MirrorBehind,
    #[error("no output line within 30 s")]
    NoOutputLine,
    #[error("the audited run had no verdict")]
    NoVerdict,
    /// `--memory` runs itself as a child process: its path could not be found.
    #[error(transparent)]
    CurrentExe(std::io::Error),
    #[error("running {exe}: {error}")]
    Child { exe: String, error: std::io::Error },
    #[error("the {records}-record run failed ({status})")]
    ChildFailed { records: u64, status: std::process::ExitStatus },
    #[error("the {records}-record run printed {line:?}: {error}")]
    ChildOutput { records: u64, line: String, error: serde_json::Error },
    /// `--flink`: Java or Flink missing (with how to get them), or a Flink run that failed.
    #[error(transparent)]
    Flink(#[from] FlinkBenchError),
    #[error("a Flink run's thread ended: {0}")]
    FlinkThread(#[from] tokio::task::JoinError),
}

/// What a benchmark measures and how much (`ckptlab bench`'s flags become these in
/// src/cli/bench.rs).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub measure: Measure,
    /// Records pre-filled into the topic for each throughput run (None: scaled so that a run of
    /// checkpointing off lasts `seconds`, from the warm-up run's rate on this machine).
    pub records: Option<u64>,
    /// How long each throughput run should last when `records` is not given.
    pub seconds: f64,
    /// Distinct keys.
    pub keys: u64,
    /// Rounds: every mode runs once per round, in an order rotated from round to round.
    pub rounds: u32,
    /// Keys of [`Measure::Verdict`].
    pub verdict_keys: u64,
    /// Records per throughput run of [`Measure::State`].
    pub state_records: u64,
    /// Records per throughput run of [`Measure::Source`] and [`Measure::Sinks`].
    pub source_records: u64,
    /// The long run of [`Measure::Memory`].
    pub memory_records: u64,
}

/// Which benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Throughput per checkpointing mode, with and without the auditor, and recovery time
    /// (`audit_only`: the auditor's table alone, without recovery).
    Modes { audit_only: bool },
    /// The verdict's cost: the first verdict, the next one, a whole per-key table.
    Verdict,
    /// State backends: throughput, checkpoint duration and size, restore time.
    State,
    /// Sources: the embedded topic against Kafka on librdkafka's mock cluster.
    Source,
    /// Sinks: print and Kafka per delivery guarantee.
    Sinks,
    /// The auditor's memory and cost over long runs, each run in a process of its own.
    Memory,
    /// One run of [`Measure::Memory`] of this many records, in this process.
    MemoryChild(u64),
    /// The same job on Apache Flink's MiniCluster, alternating with ckptlab's runs.
    Flink,
}

/// The backends `--state` compares: (label, option pairs).
const STATE_BACKENDS: &[(&str, &[(&str, &str)])] = &[
    ("fs (hashmap)", &[("state.backend.type", "hashmap"), ("execution.checkpointing.storage", "filesystem")]),
    (
        "rocksdb full",
        &[
            ("state.backend.type", "rocksdb"),
            ("execution.checkpointing.storage", "filesystem"),
            ("execution.checkpointing.incremental", "false"),
        ],
    ),
    (
        "rocksdb incremental",
        &[
            ("state.backend.type", "rocksdb"),
            ("execution.checkpointing.storage", "filesystem"),
            ("execution.checkpointing.incremental", "true"),
        ],
    ),
];

/// One backend at one state size: two checkpoints (the second after 1% of the keys changed) and
/// a restore.
#[derive(Debug, Clone, Serialize)]
pub struct StateResult {
    pub backend: String,
    pub keys: u64,
    pub first_ms: u64,
    pub first_size: u64,
    pub second_ms: u64,
    pub second_delta: u64,
    pub second_full: u64,
    pub restore_ms: f64,
}

/// Records per second through one counter holding 1,000,000 keys, before a checkpoint and while
/// its asynchronous part writes them (Flink's async snapshot: processing must not stop).
#[derive(Debug, Clone, Serialize)]
pub struct WriteOverlapResult {
    pub backend: String,
    pub keys: u64,
    pub sync_ms: u64,
    pub async_ms: u64,
    pub bytes: u64,
    pub records_per_s_before: f64,
    pub records_per_s_during_write: f64,
    /// Records the counter processed between its synchronous part and the end of the write.
    pub records_during_write: u64,
}

/// The median and the spread of one figure over the rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// Of the given values (0s when there are none); the median of an even count is the mean of
    /// the middle two.
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Spread { median, min: v[0], max: v[n - 1] }
    }
}

/// One throughput run: one mode, auditor on or off, in one round.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub mode: String,
    pub audited: bool,
    pub round: u32,
    /// Its place in the round's order (0: first).
    pub order: usize,
    pub seconds: f64,
    pub records_per_s: f64,
    pub checkpoints_completed: u64,
    pub mean_checkpoint_ms: f64,
    /// The 1-minute load average when the run started (the machine is shared).
    pub load: Option<f64>,
    /// Audited runs: the verdict at the end, and how long computing it took.
    pub verdict: Option<String>,
    pub verdict_ms: Option<f64>,
}

/// One measured mode over every round.
#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    pub mode: String,
    /// Auditor off.
    pub records_per_s: Spread,
    /// Median against the median of checkpointing off (auditor off), from the same rounds.
    pub ratio_to_off: f64,
    /// The same mode with the auditor on (the ground truth).
    pub audited_records_per_s: Spread,
    /// Median audited against median unaudited of this mode.
    pub audited_ratio: f64,
    /// The audited runs' verdicts (one when they all agree) and the verdict's time.
    pub verdict: String,
    pub verdict_ms: Spread,
    pub seconds: Spread,
    pub checkpoints_completed: Spread,
    pub mean_checkpoint_ms: Spread,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub records: u64,
    pub keys: u64,
    pub parallelism: usize,
    pub rounds: u32,
    /// The warm-up run (checkpointing off, auditor off, not counted): its records/s, from which
    /// `records` was scaled unless given.
    pub warmup_records_per_s: f64,
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
    pub modes: Vec<ModeResult>,
    /// Every run, in the order run.
    pub runs: Vec<RunResult>,
    pub recovery_ms: f64,
    pub recovery_note: String,
    pub peak_rss_mb: Option<f64>,
}

/// `--verdict`: what a verdict costs at many keys.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictCost {
    pub keys: u64,
    pub records: u64,
    /// The first verdict after the job caught up (every key changed since the last one).
    pub first_ms: f64,
    /// The verdict again with nothing changed, and after `changed` keys changed: what the view
    /// pays per frame (medians of `samples`).
    pub unchanged_ms: Spread,
    pub changed: u64,
    pub changed_ms: Spread,
    /// A whole per-key table (`Auditor::verdict`, every row as a string-keyed map).
    pub full_table_ms: Spread,
    pub samples: usize,
    pub verdict: String,
}

/// One produce -> output line latency of `--source`.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub hop_delay: &'static str,
    pub source: &'static str,
    pub median_ms: f64,
}

/// A measurement as it is taken, for the command line to print at once (a benchmark runs for
/// minutes): the `...Start` ones open a table, the others are its rows.
#[derive(Debug, Clone)]
pub enum Progress {
    /// `--sinks`: what is about to run.
    SinksStart { records: u64, mock_records: u64, keys: u64, rounds: u32 },
    /// `--sinks`: one run.
    SinkRun { round: u32, source: &'static str, sink: &'static str, records_per_s: f64 },
    /// `--sinks`: one sink on one source, over the rounds.
    Sink(SinkThroughput),
    ModesStart {
        records: u64,
        keys: u64,
        parallelism: usize,
        rounds: u32,
        warmup_records_per_s: f64,
        scaled: bool,
        seconds: f64,
        load: Option<[f64; 3]>,
    },
    /// One run as it ends.
    Run(RunResult),
    /// Every round is done: one mode's row of the table.
    Mode(ModeResult),
    StateStart {
        records: u64,
        keys: u64,
        rounds: u32,
    },
    StateThroughput {
        backend: &'static str,
        records_per_s: f64,
        ratio_to_fs: f64,
        seconds: f64,
        checkpoints_completed: u64,
        mean_checkpoint_ms: f64,
    },
    StateSizeStart {
        keys: u64,
    },
    StateSize(StateResult),
    WriteOverlapStart {
        keys: u64,
    },
    WriteOverlap(WriteOverlapResult),
    SourceStart {
        records: u64,
        keys: u64,
        rounds: u32,
    },
    SourceThroughput {
        source: &'static str,
        records_per_s: f64,
        ratio_to_embedded: f64,
        seconds: f64,
        fill_seconds: f64,
    },
    SourceLatency(Latency),
    MemoryRunStart {
        records: u64,
        keys: u64,
    },
    MemoryRun(MemoryResult),
    /// `--flink`: finding Java and Flink (the first use installs Flink's jars), compiling.
    FlinkPreparing(Preparing),
    /// `--flink`: what is about to run.
    FlinkStart(FlinkStart),
    /// `--flink`: one Flink run as it ends (ckptlab's come as [`Progress::Run`]).
    FlinkRun(FlinkRunResult),
    /// `--flink`: every round is done: one mode's row.
    FlinkRow(FlinkRow),
}

/// What a benchmark came to, one variant per kind of run.
#[derive(Debug, Clone)]
pub enum Report {
    /// The default: every mode, then recovery.
    Modes(BenchReport),
    /// `--audit`: the modes only.
    Audit(BenchReport),
    /// `--verdict`: the verdict's cost.
    Verdict(VerdictCost),
    /// `--state`: throughput per backend, checkpoints at two state sizes, the asynchronous write.
    State { throughput: Vec<(String, f64)>, state: Vec<StateResult>, during_async_write: Vec<WriteOverlapResult>, peak_rss_mb: Option<f64> },
    /// `--source`: the embedded topic against Kafka's mock cluster.
    Source { records: u64, embedded_records_per_s: f64, kafka_mock_records_per_s: f64, latency: Vec<Latency> },
    /// `--sinks`: records/s per sink and source.
    Sinks { records: u64, rows: Vec<SinkThroughput> },
    /// `--memory`: the short run and the long one.
    Memory(Vec<MemoryResult>),
    /// `--memory-child`: one run, for the parent process to read.
    MemoryChild(MemoryResult),
    /// `--flink`: ckptlab against Flink per mode.
    Flink(FlinkReport),
}

const INTERVAL: &str = "execution.checkpointing.interval";
const MODE: &str = "execution.checkpointing.mode";
const UNALIGNED: &str = "execution.checkpointing.unaligned.enabled";
const ALIGNED_TIMEOUT: &str = "execution.checkpointing.aligned-checkpoint-timeout";

/// The five modes (off, aligned, unaligned, aligned with a timeout, at-least-once), each with the
/// options that make it; the first is the baseline the ratios are taken against.
pub const MODES: &[(&str, &[(&str, &str)])] = &[
    ("off", &[(INTERVAL, "off")]),
    ("EXACTLY_ONCE aligned 1s", &[(INTERVAL, "1s"), (MODE, "EXACTLY_ONCE")]),
    ("EXACTLY_ONCE aligned 100ms", &[(INTERVAL, "100ms"), (MODE, "EXACTLY_ONCE")]),
    ("EXACTLY_ONCE unaligned 100ms", &[(INTERVAL, "100ms"), (MODE, "EXACTLY_ONCE"), (UNALIGNED, "true")]),
    ("EXACTLY_ONCE timeout 10ms", &[(INTERVAL, "100ms"), (MODE, "EXACTLY_ONCE"), (UNALIGNED, "true"), (ALIGNED_TIMEOUT, "10ms")]),
    ("AT_LEAST_ONCE 1s", &[(INTERVAL, "1s"), (MODE, "AT_LEAST_ONCE")]),
    ("AT_LEAST_ONCE 100ms", &[(INTERVAL, "100ms"), (MODE, "AT_LEAST_ONCE")]),
];

fn bench_layers(base: &ConfigLayers, pairs: &[(&str, &str)]) -> Result<ConfigLayers, BenchError> {
    let mut l = base.clone();
    let fixed = [
        ("ckptlab.hop-delay", "0ms"),
        ("job.sink", "discard"),
        ("source.auto-offset-reset", "earliest"),
        // Buffers fill long before this at full speed; it only shortens the flush of the last,
        // partly filled buffers, which would otherwise add up to 2 x 100 ms to every run.
        ("execution.buffer-timeout.interval", "1ms"),
    ];
    // The auditor is off unless a run asks for it (`pairs` come last and win).
    for (k, v) in [("ckptlab.audit", "false")].iter().chain(fixed.iter()).chain(pairs) {
        l.set_value(k, parse_loose_value(v), "bench")?;
    }
    l.build()?;
    Ok(l)
}

fn filled_topic(layers: &ConfigLayers, records: u64, keys: u64, bus: &EventBus) -> Result<Arc<EmbeddedTopic>, BenchError> {
    let cfg = layers.build()?;
    let topic = EmbeddedTopic::new(&cfg.source.topic, cfg.source.partitions, bus.clone());
    let mut next = key_stream(keys);
    topic.fill((0..records).map(|_| next()));
    Ok(topic)
}

async fn throughput(base: &ConfigLayers, topic: &Arc<EmbeddedTopic>, interval: &str, mode: &str) -> Result<(f64, u64, f64), BenchError> {
    throughput_with(base, topic, &[(INTERVAL, interval), (MODE, mode)]).await
}

/// Seconds to read the whole topic, checkpoints completed, their mean duration in ms.
async fn throughput_with(base: &ConfigLayers, topic: &Arc<EmbeddedTopic>, pairs: &[(&str, &str)]) -> Result<(f64, u64, f64), BenchError> {
    let (secs, completed, mean, _) = throughput_judged(base, topic, pairs).await?;
    Ok((secs, completed, mean))
}

/// As [`throughput_with`], plus the verdict at the end and the ms it took (auditor on).
async fn throughput_judged(
    base: &ConfigLayers,
    topic: &Arc<EmbeddedTopic>,
    pairs: &[(&str, &str)],
) -> Result<(f64, u64, f64, Option<(crate::audit::Verdict, f64)>), BenchError> {
    let layers = bench_layers(base, pairs)?;
    let bus = EventBus::new(tokio::time::Instant::now());
    let topic = topic.clone();
    let cfg = layers.build()?;
    let audit = cfg.lab.audit;
    let start = Instant::now();
    let engine = Engine::start_with_topic(layers, cfg, bus, Some(topic as Arc<dyn Topic>))?;
    while !engine.caught_up() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let view = engine.view(false);
    let completed: Vec<_> = view.checkpoint_history.iter().filter(|c| c.failure.is_none()).collect();
    let mean =
        if completed.is_empty() { 0.0 } else { completed.iter().map(|c| c.duration_ms as f64).sum::<f64>() / completed.len() as f64 };
    let judged = if audit {
        let t = Instant::now();
        let v = engine.verdict();
        Some((v, t.elapsed().as_secs_f64() * 1000.0))
    } else {
        None
    };
    engine.shutdown().await;
    Ok((secs, view.checkpoint_counts.completed, mean, judged))
}

/// Kill -> running, from the job failing (its peers see the connection break at once) to every
/// task running again from the restored checkpoint; includes the wait for the dead TM's tasks to
/// be cancelled (the heartbeat timeout, 200 ms here).
async fn recovery(base: &ConfigLayers, args: &BenchOptions) -> Result<f64, BenchError> {
    let layers = bench_layers(
        base,
        &[
            ("execution.checkpointing.interval", "200ms"),
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.delay", "0ms"),
            ("heartbeat.timeout", "200ms"),
        ],
    )?;
    let bus = EventBus::new(tokio::time::Instant::now());
    let mut rx = bus.subscribe();
    let topic = filled_topic(&layers, args.keys * 10, args.keys, &bus)?;
    let cfg = layers.build()?;
    let engine = Engine::start_with_topic(layers, cfg, bus, Some(topic))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait for a checkpoint holding every key, so the restore carries real state.
    while !engine.caught_up() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        match next_event(&mut rx, deadline).await {
            Some(Event::CheckpointCompleted { .. }) => break,
            Some(_) => {}
            None => return Err(BenchError::NoCheckpoint),
        }
    }
    let ms = kill_and_time_recovery(&engine, &mut rx, deadline).await?;
    engine.shutdown().await;
    Ok(ms)
}

/// Kills tm-2 and starts it again at once; returns the milliseconds from the JobManager noticing
/// the failure to every task running again from the restored checkpoint.
async fn kill_and_time_recovery(
    engine: &Engine,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<crate::events::Stamped>,
    deadline: Instant,
) -> Result<f64, BenchError> {
    engine.command(Command::KillTaskManager("tm-2".into()));
    engine.command(Command::StartTaskManager(Some("tm-2".into())));
    let mut lost_at = None;
    loop {
        match next_event(rx, deadline).await {
            Some(Event::JobFailing { .. }) => lost_at = Some(Instant::now()),
            Some(Event::JobRunning { attempt }) if attempt > 1 => break,
            Some(_) => {}
            None => return Err(BenchError::NotRecovered),
        }
    }
    Ok(lost_at.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0))
}

async fn next_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<crate::events::Stamped>, deadline: Instant) -> Option<Event> {
    tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), rx.recv()).await.ok().flatten().map(|e| e.event)
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn with_pairs(base: &ConfigLayers, pairs: &[(&str, &str)]) -> Result<ConfigLayers, BenchError> {
    let mut l = base.clone();
    for (k, v) in pairs {
        l.set_value(k, parse_loose_value(v), "bench")?;
    }
    Ok(l)
}

/// Waits for the job to catch up, or fails after 10 minutes.
async fn wait_caught_up(engine: &Engine) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !engine.caught_up() {
        if Instant::now() > deadline {
            return Err(BenchError::NotCaughtUp);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Triggers a checkpoint and returns its statistics once it completed.
async fn checkpoint_now(engine: &Engine) -> Result<crate::cluster::coordinator::CheckpointStats, BenchError> {
    let before = engine.view(false).checkpoint_counts;
    engine.command(Command::TriggerCheckpoint);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let v = engine.view(false);
        if v.checkpoint_counts.completed > before.completed {
            return v.checkpoint_history.last().cloned().ok_or(BenchError::NoCheckpointStats);
        }
        if v.checkpoint_counts.failed > before.failed {
            let why = v.checkpoint_history.last().and_then(|c| c.failure.clone()).unwrap_or_default();
            return Err(BenchError::CheckpointFailed(why));
        }
        if Instant::now() > deadline {
            return Err(BenchError::CheckpointTimedOut);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Fills state with `keys` keys, checkpoints, changes 1% of them, checkpoints again, then kills a
/// task manager and measures the restore (failure noticed -> every task running).
async fn state_run(
    base: &ConfigLayers,
    label: &str,
    pairs: &[(&str, &str)],
    keys: u64,
    dir: &std::path::Path,
) -> Result<StateResult, BenchError> {
    let chk = dir.join("checkpoints").display().to_string();
    let tmp = dir.join("tm").display().to_string();
    let layers = bench_layers(
        &with_pairs(base, pairs)?,
        &[
            ("execution.checkpointing.interval", "1h"),
            ("execution.checkpointing.dir", &chk),
            ("taskmanager.tmp-dirs", &tmp),
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.delay", "0ms"),
            ("heartbeat.timeout", "100ms"),
        ],
    )?;
    let bus = EventBus::new(tokio::time::Instant::now());
    let mut rx = bus.subscribe();
    let cfg = layers.build()?;
    let topic = EmbeddedTopic::new(&cfg.source.topic, cfg.source.partitions, bus.clone());
    topic.fill((0..keys).map(|k| Arc::from(format!("key-{k:07}").as_str())));
    let engine = Engine::start_with_topic(layers, cfg, bus, Some(topic.clone()))?;
    wait_caught_up(&engine).await?;
    let first = checkpoint_now(&engine).await?;
    let step = 100;
    for k in (0..keys).step_by(step) {
        topic.produce(&format!("key-{k:07}"), None)?;
    }
    wait_caught_up(&engine).await?;
    let second = checkpoint_now(&engine).await?;
    while rx.try_recv().is_ok() {}
    let restore_ms = kill_and_time_recovery(&engine, &mut rx, Instant::now() + Duration::from_secs(600)).await?;
    engine.shutdown().await;
    Ok(StateResult {
        backend: label.into(),
        keys,
        first_ms: first.duration_ms,
        first_size: first.full_size,
        second_ms: second.duration_ms,
        second_delta: second.checkpointed_size,
        second_full: second.full_size,
        restore_ms,
    })
}

/// Keys the async-write measurement holds in its one counter.
const WRITE_OVERLAP_KEYS: u64 = 1_000_000;
/// Records queued behind the state so the counter has work during the whole write.
const WRITE_OVERLAP_BACKLOG: u64 = 6_000_000;
/// The one counter the async-write measurement watches (parallelism 1).
const WRITE_OVERLAP_TASK: TaskId = TaskId::Counter(0);

/// Fills one counter with [`WRITE_OVERLAP_KEYS`] keys, queues a backlog, and measures records/s
/// out of the counter over half a second before a checkpoint and between the end of its
/// synchronous part (its barrier in, plus the reported sync time) and the end of its
/// asynchronous write (`SnapshotTaken`).
async fn write_overlap_run(
    base: &ConfigLayers,
    label: &str,
    pairs: &[(&str, &str)],
    dir: &std::path::Path,
) -> Result<WriteOverlapResult, BenchError> {
    let chk = dir.join("checkpoints").display().to_string();
    let tmp = dir.join("tm").display().to_string();
    let layers = bench_layers(
        &with_pairs(base, pairs)?,
        &[
            ("job.parallelism", "1"),
            ("taskmanager.count", "1"),
            ("execution.checkpointing.interval", "1h"),
            ("execution.checkpointing.dir", &chk),
            ("taskmanager.tmp-dirs", &tmp),
        ],
    )?;
    let bus = EventBus::new(tokio::time::Instant::now());
    let mut rx = bus.subscribe();
    let cfg = layers.build()?;
    let topic = EmbeddedTopic::new(&cfg.source.topic, cfg.source.partitions, bus.clone());
    let name = |k: u64| Arc::from(format!("key-{k:07}").as_str());
    topic.fill((0..WRITE_OVERLAP_KEYS).map(name));
    let engine = Engine::start_with_topic(layers, cfg, bus, Some(topic.clone()))?;
    wait_caught_up(&engine).await?;
    topic.fill((0..WRITE_OVERLAP_BACKLOG).map(|i| name(i % WRITE_OVERLAP_KEYS)));
    let sent = |engine: &Engine| engine.view(false).channels.iter().filter(|c| c.from == WRITE_OVERLAP_TASK).map(|c| c.records_sent).sum::<u64>();
    let measured = |task: &str| task.parse::<TaskId>() == Ok(WRITE_OVERLAP_TASK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (r0, t0) = (sent(&engine), Instant::now());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (r1, t1) = (sent(&engine), Instant::now());
    let before = (r1 - r0) as f64 / (t1 - t0).as_secs_f64();
    while rx.try_recv().is_ok() {}
    engine.command(Command::TriggerCheckpoint);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut at_sync = None;
    let (bytes, sync_ms, async_ms, r3, t3) = loop {
        match next_event(&mut rx, deadline).await {
            Some(Event::BarrierReceived { task, .. }) if measured(&task) && at_sync.is_none() => {
                at_sync = Some((sent(&engine), Instant::now()))
            }
            Some(Event::SnapshotTaken { task, bytes, sync_ms, async_ms, .. }) if measured(&task) => {
                break (bytes, sync_ms, async_ms, sent(&engine), Instant::now());
            }
            Some(_) => {}
            None => return Err(BenchError::SnapshotTimedOut),
        }
    };
    let caught_up = engine.caught_up();
    engine.shutdown().await;
    let (r2, t2) = at_sync.ok_or(BenchError::NoBarrier)?;
    if caught_up {
        return Err(BenchError::BacklogRanOut(WRITE_OVERLAP_BACKLOG));
    }
    Ok(WriteOverlapResult {
        backend: label.into(),
        keys: WRITE_OVERLAP_KEYS,
        sync_ms,
        async_ms,
        bytes,
        records_per_s_before: before,
        // The window opens at the barrier, before the synchronous part, during which the task
        // processes nothing: it is taken out.
        records_per_s_during_write: (r3 - r2) as f64 / (t3 - t2).saturating_sub(Duration::from_millis(sync_ms)).as_secs_f64().max(1e-3),
        records_during_write: r3 - r2,
    })
}

/// `ckptlab bench --state`: backends side by side.
async fn run_state(base: &ConfigLayers, args: &BenchOptions, progress: &mut dyn FnMut(Progress)) -> Result<Report, BenchError> {
    let home = crate::workdir::prepare_home()?;
    let dir = home.join(format!("bench-{}", std::process::id()));
    let result = run_state_in(base, args, &dir, progress).await;
    let _ = crate::workdir::remove_tree_under(&home, &dir);
    result
}

async fn run_state_in(
    base: &ConfigLayers,
    args: &BenchOptions,
    dir: &std::path::Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, BenchError> {
    progress(Progress::StateStart { records: args.state_records, keys: args.keys, rounds: args.rounds });
    let chk = dir.join("throughput").display().to_string();
    let tmp = dir.join("tm").display().to_string();
    let topic = filled_topic(&bench_layers(base, &[])?, args.state_records, args.keys, &EventBus::new(tokio::time::Instant::now()))?;
    let mut rates = Vec::new();
    for (label, pairs) in STATE_BACKENDS {
        let layers = with_pairs(base, pairs)?;
        let layers = with_pairs(&layers, &[("execution.checkpointing.dir", &chk), ("taskmanager.tmp-dirs", &tmp)])?;
        let mut best: Option<(f64, u64, f64)> = None;
        for _ in 0..args.rounds.max(1) {
            let r = throughput(&layers, &topic, "1s", "EXACTLY_ONCE").await?;
            if best.is_none_or(|b| r.0 < b.0) {
                best = Some(r);
            }
        }
        let (secs, completed, mean) = best.expect("at least one round");
        let rate = args.state_records as f64 / secs;
        let base_rate = rates.first().map_or(rate, |(_, r): &(String, f64)| *r);
        progress(Progress::StateThroughput {
            backend: *label,
            records_per_s: rate,
            ratio_to_fs: rate / base_rate,
            seconds: secs,
            checkpoints_completed: completed,
            mean_checkpoint_ms: mean,
        });
        rates.push((label.to_string(), rate));
    }
    drop(topic);
    let mut results = Vec::new();
    for keys in [10_000u64, 1_000_000] {
        progress(Progress::StateSizeStart { keys });
        for (label, pairs) in STATE_BACKENDS {
            let r = state_run(base, label, pairs, keys, &dir.join(format!("state-{keys}"))).await?;
            progress(Progress::StateSize(r.clone()));
            results.push(r);
        }
    }
    progress(Progress::WriteOverlapStart { keys: WRITE_OVERLAP_KEYS });
    let mut overlaps = Vec::new();
    for (label, pairs) in STATE_BACKENDS.iter().take(2) {
        let r = write_overlap_run(base, label, pairs, &dir.join("overlap")).await?;
        progress(Progress::WriteOverlap(r.clone()));
        overlaps.push(r);
    }
    Ok(Report::State { throughput: rates, state: results, during_async_write: overlaps, peak_rss_mb: peak_rss_mb() })
}

/// Records librdkafka's mock cluster keeps per partition (older ones are deleted).
const MOCK_PARTITION_KEEPS: u64 = 90_000;

/// A topic of `records` records over `keys` keys: embedded, or in librdkafka's mock cluster.
fn source_topic(layers: &ConfigLayers, kafka: bool, records: u64, keys: u64) -> Result<Arc<dyn Topic>, BenchError> {
    if !kafka {
        return Ok(filled_topic(layers, records, keys, &EventBus::new(tokio::time::Instant::now()))? as Arc<dyn Topic>);
    }
    let cfg = layers.build()?;
    let settings = crate::connectors::kafka::KafkaSettings {
        bootstrap: crate::connectors::kafka::MOCK.into(),
        topic: cfg.source.topic.clone(),
        group: "ckptlab-bench".into(),
        partitions: cfg.source.partitions,
        offset_reset: crate::config::OffsetReset::Earliest,
    };
    let topic = crate::connectors::kafka::KafkaTopic::connect(settings, EventBus::new(tokio::time::Instant::now()))?;
    let names: Vec<String> = (0..keys.max(1)).map(|k| format!("key-{k}")).collect();
    let mut produced = 0u64;
    while produced < records {
        let n = (records - produced).min(20_000);
        let batch: Vec<&str> = (produced..produced + n).map(|i| names[(i % names.len() as u64) as usize].as_str()).collect();
        produced += topic.produce_many(&batch, None)? as u64;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while !topic.in_sync() {
        if Instant::now() > deadline {
            return Err(BenchError::MirrorBehind);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(topic)
}

/// Median milliseconds from a produce call to the print sink's line for that record.
async fn latency(layers: ConfigLayers, kafka: bool, samples: usize) -> Result<f64, BenchError> {
    let mut layers = layers;
    if kafka {
        layers = with_pairs(&layers, &[("source.kind", "kafka"), ("source.bootstrap-servers", "mock")])?;
    }
    let bus = EventBus::new(tokio::time::Instant::now());
    let mut rx = bus.subscribe();
    let engine = Engine::start(layers, bus)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !engine.all_tasks_running() {
        if Instant::now() > deadline {
            return Err(BenchError::NotStarted);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut times = Vec::new();
    for i in 0..samples {
        while rx.try_recv().is_ok() {}
        let t0 = Instant::now();
        let (p, o) = engine.produce(&format!("lat-{i}"), None)?;
        loop {
            match next_event(&mut rx, Instant::now() + Duration::from_secs(30)).await {
                Some(Event::SinkEmitted { partition, offset, .. }) if partition == p && offset == o => break,
                Some(_) => {}
                None => return Err(BenchError::NoOutputLine),
            }
        }
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.shutdown().await;
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

/// `ckptlab bench --source`: the embedded topic against Kafka (librdkafka's mock cluster).
async fn run_source(base: &ConfigLayers, args: &BenchOptions, progress: &mut dyn FnMut(Progress)) -> Result<Report, BenchError> {
    let partitions = bench_layers(base, &[])?.build()?.source.partitions as u64;
    let records = args.source_records.min(MOCK_PARTITION_KEEPS * partitions);
    progress(Progress::SourceStart { records, keys: args.keys, rounds: args.rounds });
    let mut rates = Vec::new();
    for (label, kafka) in [("embedded", false), ("kafka mock cluster", true)] {
        let t = Instant::now();
        let topic = source_topic(&bench_layers(base, &[])?, kafka, records, args.keys)?;
        let fill_s = t.elapsed().as_secs_f64();
        let mut secs = f64::MAX;
        for _ in 0..args.rounds.max(1) {
            let layers = bench_layers(base, &[("execution.checkpointing.interval", "1s")])?;
            let cfg = layers.build()?;
            let start = Instant::now();
            let engine = Engine::start_with_topic(layers, cfg, EventBus::new(tokio::time::Instant::now()), Some(topic.clone()))?;
            wait_caught_up(&engine).await?;
            secs = secs.min(start.elapsed().as_secs_f64());
            engine.shutdown().await;
        }
        let rate = records as f64 / secs;
        let ratio = rate / rates.first().copied().unwrap_or(rate);
        progress(Progress::SourceThroughput {
            source: label,
            records_per_s: rate,
            ratio_to_embedded: ratio,
            seconds: secs,
            fill_seconds: fill_s,
        });
        rates.push(rate);
    }
    let mut lat = Vec::new();
    for hop in ["0ms", "200ms"] {
        for (label, kafka) in [("embedded", false), ("kafka mock cluster", true)] {
            let layers = with_pairs(base, &[("ckptlab.hop-delay", hop), ("execution.buffer-timeout.interval", "100ms")])?;
            let ms = latency(layers, kafka, 50).await?;
            let l = Latency { hop_delay: hop, source: label, median_ms: ms };
            progress(Progress::SourceLatency(l));
            lat.push(l);
        }
    }
    Ok(Report::Source { records, embedded_records_per_s: rates[0], kafka_mock_records_per_s: rates[1], latency: lat })
}

/// The sinks `--sinks` compares: (label, option pairs).
const SINKS: &[(&str, &[(&str, &str)])] = &[
    ("print", &[("job.sink", "print")]),
    ("kafka none", &[("job.sink", "kafka"), ("sink.delivery-guarantee", "none")]),
    ("kafka at-least-once", &[("job.sink", "kafka"), ("sink.delivery-guarantee", "at-least-once")]),
    (
        "kafka exactly-once",
        &[
            ("job.sink", "kafka"),
            ("sink.delivery-guarantee", "exactly-once"),
            ("sink.transactional-id-prefix", "bench"),
            ("sink.properties.transaction.timeout.ms", "600000"),
        ],
    ),
];

/// One sink on one source, over the rounds of `--sinks`.
#[derive(Debug, Clone, Serialize)]
pub struct SinkThroughput {
    pub source: &'static str,
    pub sink: &'static str,
    pub records: u64,
    /// Until the job caught up (every record in the state, every line handed to the sink).
    pub median_records_per_s: f64,
    pub min_records_per_s: f64,
    pub max_records_per_s: f64,
    /// The median against the print sink's on the same source.
    pub ratio_to_print: f64,
}

/// `--sinks`: every sink of [`SINKS`] through the whole job, per source, in rounds whose order
/// is rotated (a sink is not always first on a cold cache or last on a hot machine).
async fn run_sinks(base: &ConfigLayers, args: &BenchOptions, progress: &mut dyn FnMut(Progress)) -> Result<Report, BenchError> {
    let partitions = bench_layers(base, &[])?.build()?.source.partitions as u64;
    // The embedded topic takes every record asked for; the mock cluster keeps only so many.
    let mock_records = args.source_records.min(MOCK_PARTITION_KEEPS * partitions);
    let rounds = args.rounds.max(1);
    progress(Progress::SinksStart { records: args.source_records, mock_records, keys: args.keys, rounds });
    let mut rows = Vec::new();
    let mut run = 0;
    for (source, kafka) in [("embedded", false), ("kafka mock cluster", true)] {
        let records = if kafka { mock_records } else { args.source_records };
        let topic = source_topic(&bench_layers(base, &[])?, kafka, records, args.keys)?;
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); SINKS.len()];
        for round in 0..rounds {
            for k in 0..SINKS.len() {
                let i = (k + round as usize) % SINKS.len();
                let (sink, pairs) = SINKS[i];
                // Each run its own transactional ids and output topic: a fresh start with an
                // earlier run's prefix would probe (and abort) every id that run used, and its
                // reader would count the earlier run's lines.
                run += 1;
                let prefix = format!("bench-{run}");
                let topic_name = format!("bench-output-{run}");
                let mut all: Vec<(&str, &str)> = vec![("execution.checkpointing.interval", "1s"), ("execution.checkpointing.mode", "EXACTLY_ONCE")];
                all.extend_from_slice(pairs);
                all.push(("sink.output-topic", &topic_name));
                if pairs.iter().any(|(k, _)| *k == "sink.transactional-id-prefix") {
                    all.push(("sink.transactional-id-prefix", &prefix));
                }
                let layers = bench_layers(base, &all)?;
                let cfg = layers.build()?;
                let start = Instant::now();
                let engine = Engine::start_with_topic(layers, cfg, EventBus::new(tokio::time::Instant::now()), Some(topic.clone()))?;
                wait_caught_up(&engine).await?;
                let rate = records as f64 / start.elapsed().as_secs_f64();
                engine.shutdown().await;
                progress(Progress::SinkRun { round, source, sink, records_per_s: rate });
                rates[i].push(rate);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let print = median(&mut rates[0].clone());
        for (i, (sink, _)) in SINKS.iter().enumerate() {
            let m = median(&mut rates[i]);
            let row = SinkThroughput {
                source,
                sink,
                records,
                median_records_per_s: m,
                min_records_per_s: rates[i][0],
                max_records_per_s: rates[i][rates[i].len() - 1],
                ratio_to_print: m / print,
            };
            progress(Progress::Sink(row.clone()));
            rows.push(row);
        }
    }
    Ok(Report::Sinks { records: args.source_records, rows })
}

/// Runs the benchmark: `progress` hears each measurement as it is taken (a run lasts minutes),
/// the report is what it all came to. The command line prints both (`src/cli/bench.rs`).
pub async fn run(base: ConfigLayers, args: &BenchOptions, progress: &mut dyn FnMut(Progress)) -> Result<Report, BenchError> {
    let audit_only = match args.measure {
        Measure::Modes { audit_only } => audit_only,
        Measure::State => return run_state(&base, args, progress).await,
        Measure::Source => return run_source(&base, args, progress).await,
        Measure::Sinks => return run_sinks(&base, args, progress).await,
        Measure::MemoryChild(records) => return memory_child(&base, args, records).await.map(Report::MemoryChild),
        Measure::Memory => return run_memory(args, progress),
        Measure::Verdict => return verdict_cost(&base, args).await.map(Report::Verdict),
        Measure::Flink => return run_flink(&base, args, progress).await.map(Report::Flink),
    };
    let parallelism = base.build()?.job.parallelism;
    let load_before = load_average();
    let (report_records, warmup_rate, topic) = warmed_topic(&base, args).await?;
    progress(Progress::ModesStart {
        records: report_records,
        keys: args.keys,
        parallelism,
        rounds: args.rounds.max(1),
        warmup_records_per_s: warmup_rate,
        scaled: args.records.is_none(),
        seconds: args.seconds,
        load: load_before,
    });
    let runs = rounds(&base, &topic, report_records, args.rounds.max(1), progress).await?;
    drop(topic);
    let modes = mode_rows(&runs);
    for m in &modes {
        progress(Progress::Mode(m.clone()));
    }
    let mut report = BenchReport {
        records: report_records,
        keys: args.keys,
        parallelism,
        rounds: args.rounds.max(1),
        warmup_records_per_s: warmup_rate,
        load_before,
        load_after: load_average(),
        modes,
        runs,
        recovery_ms: 0.0,
        recovery_note: String::new(),
        peak_rss_mb: peak_rss_mb(),
    };
    if audit_only {
        return Ok(Report::Audit(report));
    }
    report.recovery_ms = recovery(&base, args).await?;
    report.recovery_note = "kill -> every task running from the restored checkpoint: peers fail at once, the restart waits for the dead TM's tasks to be cancelled (heartbeat.timeout 200ms here), restart delay 0".into();
    report.peak_rss_mb = peak_rss_mb();
    Ok(Report::Modes(report))
}

/// Records of the warm-up run when --records is not given: enough to measure a rate, few enough
/// to fill fast.
const WARMUP_RECORDS: u64 = 2_000_000;
/// The most records a scaled run reads (the topic holds 4 bytes per record: 1.6 GB at most).
const MAX_SCALED_RECORDS: u64 = 400_000_000;

/// The topic every run reads, after one warm-up run (checkpointing off, auditor off: not
/// counted) that warms caches and allocator and measures this machine's rate; without
/// `--records`, the topic is then extended to `rate x --seconds` records.
async fn warmed_topic(base: &ConfigLayers, args: &BenchOptions) -> Result<(u64, f64, Arc<EmbeddedTopic>), BenchError> {
    let layers = bench_layers(base, &[])?;
    let first = args.records.unwrap_or(WARMUP_RECORDS);
    let bus = EventBus::new(tokio::time::Instant::now());
    let topic = filled_topic(&layers, first, args.keys, &bus)?;
    let (secs, _, _) = throughput_with(base, &topic, MODES[0].1).await?;
    let rate = first as f64 / secs.max(1e-9);
    if args.records.is_some() {
        return Ok((first, rate, topic));
    }
    let target = ((rate * args.seconds.max(0.1)) as u64).clamp(first, MAX_SCALED_RECORDS);
    extend_topic(&topic, first, target, args.keys);
    Ok((target, rate, topic))
}

/// The keys of record `i` (xorshift, fixed seed), as [`filled_topic`] writes them.
fn key_stream(keys: u64) -> impl FnMut() -> Arc<str> {
    let names: Vec<Arc<str>> = (0..keys.max(1)).map(|k| Arc::from(format!("key-{k}").as_str())).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        names[(x % names.len() as u64) as usize].clone()
    }
}

/// Appends records `from..to` of the same key stream to a topic filled with the first `from`.
fn extend_topic(topic: &EmbeddedTopic, from: u64, to: u64, keys: u64) {
    let mut next = key_stream(keys);
    for _ in 0..from {
        next();
    }
    topic.fill((from..to).map(|_| next()));
}

/// Every (mode, auditor on/off) pair once per round; round r starts `r x runs / rounds` places
/// further into the list, so that each pair is early, middle and late once over three rounds
/// and drift on a shared machine hits every mode alike. A mode's two runs stay side by side.
async fn rounds(
    base: &ConfigLayers,
    topic: &Arc<EmbeddedTopic>,
    records: u64,
    rounds: u32,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<RunResult>, BenchError> {
    let pairs: Vec<(usize, bool)> = (0..MODES.len()).flat_map(|m| [(m, false), (m, true)]).collect();
    let mut runs = Vec::new();
    for round in 0..rounds {
        let shift = (round as usize * pairs.len()) / rounds as usize;
        for order in 0..pairs.len() {
            let (m, audited) = pairs[(order + shift) % pairs.len()];
            let (label, options) = MODES[m];
            let r = ckptlab_run(base, topic, records, label, options, audited, (round, order)).await?;
            progress(Progress::Run(r.clone()));
            runs.push(r);
        }
    }
    Ok(runs)
}

/// One ckptlab run of a mode over the whole topic, the auditor on or off; `at` is (round, place
/// in the round's order).
async fn ckptlab_run(
    base: &ConfigLayers,
    topic: &Arc<EmbeddedTopic>,
    records: u64,
    label: &str,
    options: &[(&str, &str)],
    audited: bool,
    (round, order): (u32, usize),
) -> Result<RunResult, BenchError> {
    let mut options: Vec<(&str, &str)> = options.to_vec();
    if audited {
        options.push(("ckptlab.audit", "true"));
    }
    let load = load_average().map(|l| l[0]);
    let (secs, completed, mean, judged) = throughput_judged(base, topic, &options).await?;
    if audited && judged.is_none() {
        return Err(BenchError::NoVerdict);
    }
    Ok(RunResult {
        mode: label.to_string(),
        audited,
        round,
        order,
        seconds: secs,
        records_per_s: records as f64 / secs.max(1e-9),
        checkpoints_completed: completed,
        mean_checkpoint_ms: mean,
        load,
        verdict: judged.as_ref().map(|(v, _)| v.summary()),
        verdict_ms: judged.map(|(_, ms)| ms),
    })
}

/// One row per mode: medians and spreads of its runs, ratios of medians.
pub fn mode_rows(runs: &[RunResult]) -> Vec<ModeResult> {
    let of = |mode: &str, audited: bool| -> Vec<&RunResult> { runs.iter().filter(|r| r.mode == mode && r.audited == audited).collect() };
    let rate = |rs: &[&RunResult]| Spread::of(&rs.iter().map(|r| r.records_per_s).collect::<Vec<_>>());
    let off = rate(&of(MODES[0].0, false)).median;
    MODES
        .iter()
        .map(|(label, _)| {
            let plain = of(label, false);
            let audited = of(label, true);
            let (p, a) = (rate(&plain), rate(&audited));
            let mut verdicts: Vec<String> = audited.iter().filter_map(|r| r.verdict.clone()).collect();
            verdicts.dedup();
            let f = |rs: &[&RunResult], g: fn(&RunResult) -> f64| Spread::of(&rs.iter().map(|r| g(r)).collect::<Vec<_>>());
            ModeResult {
                mode: label.to_string(),
                records_per_s: p,
                ratio_to_off: if off > 0.0 { p.median / off } else { 0.0 },
                audited_records_per_s: a,
                audited_ratio: if p.median > 0.0 { a.median / p.median } else { 0.0 },
                verdict: verdicts.join(" / "),
                verdict_ms: f(&audited, |r| r.verdict_ms.unwrap_or(f64::NAN)),
                seconds: f(&plain, |r| r.seconds),
                checkpoints_completed: f(&plain, |r| r.checkpoints_completed as f64),
                mean_checkpoint_ms: f(&plain, |r| r.mean_checkpoint_ms),
            }
        })
        .collect()
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// `--verdict`: the default job over many keys with the auditor on; once caught up, the verdict
/// is timed first (every key changed), again unchanged, and after a few keys changed.
async fn verdict_cost(base: &ConfigLayers, args: &BenchOptions) -> Result<VerdictCost, BenchError> {
    let keys = args.verdict_keys.max(1);
    // Every key several times over, in the same pseudo-random order as the throughput runs.
    let records = keys * 10;
    let layers = bench_layers(base, &[(INTERVAL, "1s"), ("ckptlab.audit", "true")])?;
    let bus = EventBus::new(tokio::time::Instant::now());
    let topic = filled_topic(&layers, records, keys, &bus)?;
    let cfg = layers.build()?;
    let engine = Engine::start_with_topic(layers, cfg, bus, Some(topic.clone() as Arc<dyn Topic>))?;
    wait_caught_up(&engine).await?;
    let time = |engine: &Engine| {
        let t = Instant::now();
        let v = engine.verdict_totals();
        (v, t.elapsed().as_secs_f64() * 1000.0)
    };
    let (first, first_ms) = time(&engine);
    const SAMPLES: usize = 15;
    const CHANGED: u64 = 100;
    let mut unchanged = Vec::new();
    let mut changed = Vec::new();
    let mut full = Vec::new();
    for i in 0..SAMPLES {
        unchanged.push(time(&engine).1);
        for k in 0..CHANGED {
            engine.produce(&format!("key-{}", (i as u64 * CHANGED + k) * 7919 % keys), None)?;
        }
        wait_caught_up(&engine).await?;
        changed.push(time(&engine).1);
        if i % 5 == 0 {
            let t = Instant::now();
            let _ = engine.verdict();
            full.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    engine.shutdown().await;
    Ok(VerdictCost {
        keys,
        records,
        first_ms,
        unchanged_ms: Spread::of(&unchanged),
        changed: CHANGED,
        changed_ms: Spread::of(&changed),
        full_table_ms: Spread::of(&full),
        samples: SAMPLES,
        verdict: format!("{} (expected {}, state {})", first.summary(), first.expected, first.state),
    })
}

/// One long run of `--memory`, in this process, as JSON on stdout.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MemoryResult {
    pub records: u64,
    pub keys: u64,
    pub seconds: f64,
    pub records_per_s: f64,
    pub peak_rss_mb: f64,
    pub checkpoints: u64,
    /// Median checkpoint duration over the first and the last tenth of the run's checkpoints.
    pub early_checkpoint_ms: f64,
    pub late_checkpoint_ms: f64,
    pub verdict: String,
    pub verdict_ms: f64,
    /// The auditor's record (ranges) and the topic's bytes at the end.
    pub auditor_ranges: usize,
    pub topic_bytes: usize,
    /// The most records the topic held at once (sampled as the producer goes): the backlog between
    /// releases, which the peak RSS follows (4 bytes a record).
    #[serde(default)]
    pub peak_held_records: u64,
}

/// The most records `--memory` lets the topic hold: its producer waits while the topic holds more
/// (until a checkpoint's retention frees them). Paced by what the topic holds, not by how far the
/// sources are behind (as before issue 24): the topic holds what the sources are behind plus what
/// they read since the last completed checkpoint was triggered, so a run paced only by the sources
/// held as much as the longest gap between two completions let it (5-7.6 M records, 20-30 MB, more
/// the longer the run: a maximum of more gaps), and its peak RSS measured that gap, not what grows
/// with records. A 4 M cap is reached in every run, at ~3 M records/s and 1 s checkpoints the
/// sources rarely wait, and the run's peak RSS compares with another's.
const MEMORY_HELD_RECORDS: u64 = 4_000_000;

/// Produces `records` records while the job runs (the topic never holding more than
/// [`MEMORY_HELD_RECORDS`], as a producer paced by the job's retention), EXACTLY_ONCE 1s, auditor
/// on (unless `CKPTLAB_BENCH_AUDIT=false`), retention checkpointed.
async fn memory_child(base: &ConfigLayers, args: &BenchOptions, records: u64) -> Result<MemoryResult, BenchError> {
    let layers = bench_layers(
        base,
        &[
            (INTERVAL, "1s"),
            (MODE, "EXACTLY_ONCE"),
            ("ckptlab.audit", if std::env::var("CKPTLAB_BENCH_AUDIT").as_deref() == Ok("false") { "false" } else { "true" }),
            ("source.embedded.retention", "checkpointed"),
        ],
    )?;
    let cfg = layers.build()?;
    let bus = EventBus::new(tokio::time::Instant::now());
    let topic = EmbeddedTopic::new(&cfg.source.topic, cfg.source.partitions, bus.clone());
    let names: Vec<Arc<str>> = (0..args.keys.max(1)).map(|k| Arc::from(format!("key-{k}").as_str())).collect();
    let start = Instant::now();
    let engine = Engine::start_with_topic(layers, cfg, bus, Some(topic.clone() as Arc<dyn Topic>))?;
    let mut produced = 0u64;
    let mut peak_held = 0u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let chunk = 100_000u64;
    // Checkpoint durations as they complete (the view keeps only the recent ones).
    let mut durations: BTreeMap<u64, u64> = BTreeMap::new();
    let mut record = |view: &crate::cluster::view::ClusterView| {
        for c in view.checkpoint_history.iter().filter(|c| c.failure.is_none()) {
            durations.insert(c.id, c.duration_ms);
        }
    };
    while produced < records {
        record(&engine.view(false));
        let held = topic.held();
        peak_held = peak_held.max(held);
        let n = chunk.min(records - produced);
        if held + n > MEMORY_HELD_RECORDS {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        // Without a per-record event (as the benchmark's pre-fill): the producer is not measured.
        topic.fill((0..n).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            names[(x % names.len() as u64) as usize].clone()
        }));
        produced += n;
        peak_held = peak_held.max(held + n);
        tokio::task::yield_now().await;
    }
    while !engine.caught_up() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    // A checkpoint after the last record: retention frees the tail too.
    let _ = checkpoint_now(&engine).await;
    let t = Instant::now();
    let v = engine.verdict();
    let verdict_ms = t.elapsed().as_secs_f64() * 1000.0;
    let view = engine.view(false);
    record(&view);
    let durations: Vec<u64> = durations.into_values().collect();
    let tenth = (durations.len() / 10).max(1);
    let median = |d: &mut [u64]| -> f64 {
        if d.is_empty() {
            return 0.0;
        }
        d.sort_unstable();
        d[d.len() / 2] as f64
    };
    let n = durations.len();
    let early = median(&mut durations[..tenth.min(n)].to_vec());
    let late = median(&mut durations[n.saturating_sub(tenth)..].to_vec());
    let result = MemoryResult {
        records,
        keys: args.keys,
        seconds,
        records_per_s: records as f64 / seconds,
        peak_rss_mb: peak_rss_mb().unwrap_or(0.0),
        checkpoints: view.checkpoint_counts.completed,
        early_checkpoint_ms: early,
        late_checkpoint_ms: late,
        verdict: format!("{} (expected {}, state {})", v.summary(), v.expected, v.state),
        verdict_ms,
        auditor_ranges: engine.auditor_footprint(),
        topic_bytes: topic.footprint(),
        peak_held_records: peak_held,
    };
    engine.shutdown().await;
    Ok(result)
}

/// `--memory`: the short and the long run, each in a fresh process (peak RSS is per process).
fn run_memory(args: &BenchOptions, progress: &mut dyn FnMut(Progress)) -> Result<Report, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::CurrentExe)?;
    let mut results = Vec::new();
    for records in [10_000_000u64.min(args.memory_records), args.memory_records] {
        progress(Progress::MemoryRunStart { records, keys: args.keys });
        let out = std::process::Command::new(&exe)
            .args(["bench", "--keys", &args.keys.to_string(), "--memory-child", &records.to_string()])
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|error| BenchError::Child { exe: exe.display().to_string(), error })?;
        if !out.status.success() {
            return Err(BenchError::ChildFailed { records, status: out.status });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or("");
        let r: MemoryResult =
            serde_json::from_str(line).map_err(|error| BenchError::ChildOutput { records, line: line.to_string(), error })?;
        progress(Progress::MemoryRun(r.clone()));
        results.push(r);
    }
    Ok(Report::Memory(results))
}

/// One mode of `--flink`: the same options on both engines (ckptlab reads Flink's keys), the
/// target ckptlab with the auditor on should reach against Flink (issue 24), and whether it is
/// a RocksDB mode (fewer records, checkpoints to a directory of the run's own).
#[derive(Debug, Clone, Copy)]
pub struct FlinkMode {
    pub label: &'static str,
    pub options: &'static [(&'static str, &'static str)],
    pub rocksdb: bool,
    /// ckptlab (auditor on) / Flink, medians, at least this.
    pub target: Option<f64>,
}

const ROCKSDB: (&str, &str) = ("state.backend.type", "rocksdb");
const FS_STORAGE: (&str, &str) = ("execution.checkpointing.storage", "filesystem");
const INCREMENTAL: &str = "execution.checkpointing.incremental";

/// `--flink`'s modes, in the order of the table; the first is the baseline.
pub const FLINK_MODES: &[FlinkMode] = &[
    FlinkMode { label: "no checkpoints", options: &[], rocksdb: false, target: None },
    FlinkMode { label: "EXACTLY_ONCE aligned 1s", options: &[(INTERVAL, "1s"), (MODE, "EXACTLY_ONCE")], rocksdb: false, target: Some(3.0) },
    FlinkMode { label: "AT_LEAST_ONCE 1s", options: &[(INTERVAL, "1s"), (MODE, "AT_LEAST_ONCE")], rocksdb: false, target: Some(3.0) },
    FlinkMode {
        label: "EXACTLY_ONCE unaligned 1s",
        options: &[(INTERVAL, "1s"), (MODE, "EXACTLY_ONCE"), (UNALIGNED, "true")],
        rocksdb: false,
        target: Some(2.0),
    },
    FlinkMode {
        label: "RocksDB full, EO 1s",
        options: &[(INTERVAL, "1s"), (MODE, "EXACTLY_ONCE"), ROCKSDB, FS_STORAGE, (INCREMENTAL, "false")],
        rocksdb: true,
        target: Some(2.0),
    },
    FlinkMode {
        label: "RocksDB incremental, EO 1s",
        options: &[(INTERVAL, "1s"), (MODE, "EXACTLY_ONCE"), ROCKSDB, FS_STORAGE, (INCREMENTAL, "true")],
        rocksdb: true,
        target: Some(2.0),
    },
];

impl FlinkMode {
    /// ckptlab's options: the mode's, checkpointing off unless it sets an interval (ckptlab's
    /// default configuration may checkpoint; Flink's does not), RocksDB's directories in `dir`.
    fn ckptlab_options(&self, dir: &std::path::Path) -> Vec<(String, String)> {
        let mut o: Vec<(String, String)> = self.options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if !self.options.iter().any(|(k, _)| *k == INTERVAL) {
            o.push((INTERVAL.into(), "off".into()));
        }
        if self.rocksdb {
            o.push(("execution.checkpointing.dir".into(), dir.join("ckptlab-checkpoints").display().to_string()));
            o.push(("taskmanager.tmp-dirs".into(), dir.join("ckptlab-tm").display().to_string()));
        }
        o
    }

    /// Flink's options: the mode's (no interval: no checkpoints, Flink's default), RocksDB's
    /// checkpoints and working directory in `dir`.
    fn flink_options(&self, dir: &std::path::Path) -> Vec<(String, String)> {
        let mut o: Vec<(String, String)> = self.options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if self.rocksdb {
            o.push(("execution.checkpointing.dir".into(), format!("file://{}", dir.join("flink-checkpoints").display())));
            o.push(("io.tmp.dirs".into(), dir.join("flink-tmp").display().to_string()));
        }
        o
    }
}

/// Which engine a `--flink` run is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Flink,
    Ckptlab { audited: bool },
}

/// `--flink`'s runs in one round: a mode's Flink run and its ckptlab runs (auditor off, on)
/// side by side, the list rotated by `shift` places (as [`rounds`]).
fn flink_order(round: u32, rounds: u32) -> Vec<(usize, Side)> {
    let pairs: Vec<(usize, Side)> = (0..FLINK_MODES.len())
        .flat_map(|m| [(m, Side::Flink), (m, Side::Ckptlab { audited: false }), (m, Side::Ckptlab { audited: true })])
        .collect();
    let shift = (round as usize * pairs.len()) / rounds.max(1) as usize;
    (0..pairs.len()).map(|i| pairs[(i + shift) % pairs.len()]).collect()
}

/// What `--flink` is about to run.
#[derive(Debug, Clone, Serialize)]
pub struct FlinkStart {
    pub records: u64,
    pub rocksdb_records: u64,
    pub flink_warmup_records: u64,
    pub keys: u64,
    pub parallelism: usize,
    pub rounds: u32,
    pub warmup_records_per_s: f64,
    pub scaled: bool,
    pub seconds: f64,
    pub load: Option<[f64; 3]>,
    pub flink_version: String,
    pub flink_origin: String,
}

/// One Flink run of `--flink`.
#[derive(Debug, Clone, Serialize)]
pub struct FlinkRunResult {
    pub mode: String,
    pub round: u32,
    /// Its place in the round's order (0: first), among Flink's and ckptlab's runs.
    pub order: usize,
    /// The 1-minute load average when the run started.
    pub load: Option<f64>,
    #[serde(flatten)]
    pub run: FlinkRun,
}

/// One mode of `--flink` over every round: Flink's records/s and ckptlab's, medians and spreads.
#[derive(Debug, Clone, Serialize)]
pub struct FlinkRow {
    pub mode: String,
    pub records: u64,
    pub flink: Spread,
    pub ckptlab_off: Spread,
    pub ckptlab_on: Spread,
    /// Medians: ckptlab (auditor off, on) over Flink.
    pub off_over_flink: f64,
    pub on_over_flink: f64,
    pub target: Option<f64>,
    /// `on_over_flink >= target`.
    pub met: Option<bool>,
    /// The audited runs' verdicts (one when they all agree).
    pub verdict: String,
    pub flink_checkpoints: Spread,
    pub ckptlab_checkpoints: Spread,
}

/// `--flink`'s report: the rows, and every run of both engines.
#[derive(Debug, Clone, Serialize)]
pub struct FlinkReport {
    #[serde(flatten)]
    pub start: FlinkStart,
    /// What each engine's records/s is measured over.
    pub measured: String,
    pub load_after: Option<[f64; 3]>,
    pub rows: Vec<FlinkRow>,
    /// ckptlab's runs, in the order run.
    pub runs: Vec<RunResult>,
    pub flink_runs: Vec<FlinkRunResult>,
}

/// How each engine's records/s is measured (said in the output and the JSON).
pub const FLINK_MEASURED: &str = "Flink: records / (first record at a sink subtask -> the last sink subtask's end of input), inside the JVM, after an unmeasured warm-up job in the same JVM (a MiniCluster starts per job: JVM start, warm-up, submission and the final checkpoint are reported apart); ckptlab: records / (engine start -> caught up), after one warm-up run";

/// One row per mode of [`FLINK_MODES`]: medians and spreads of its runs, ratios of medians.
pub fn flink_rows(runs: &[RunResult], flink_runs: &[FlinkRunResult]) -> Vec<FlinkRow> {
    FLINK_MODES
        .iter()
        .map(|m| {
            let ck = |audited: bool| runs.iter().filter(|r| r.mode == m.label && r.audited == audited).collect::<Vec<_>>();
            let (off, on) = (ck(false), ck(true));
            let fl: Vec<&FlinkRunResult> = flink_runs.iter().filter(|r| r.mode == m.label).collect();
            let rate = |rs: &[&RunResult]| Spread::of(&rs.iter().map(|r| r.records_per_s).collect::<Vec<_>>());
            let flink = Spread::of(&fl.iter().map(|r| r.run.records_per_s).collect::<Vec<_>>());
            let (off_rate, on_rate) = (rate(&off), rate(&on));
            let over = |x: f64| if flink.median > 0.0 { x / flink.median } else { 0.0 };
            let on_over_flink = over(on_rate.median);
            let mut verdicts: Vec<String> = on.iter().filter_map(|r| r.verdict.clone()).collect();
            verdicts.dedup();
            FlinkRow {
                mode: m.label.to_string(),
                records: fl.first().map(|r| r.run.records).unwrap_or(0),
                flink,
                ckptlab_off: off_rate,
                ckptlab_on: on_rate,
                off_over_flink: over(off_rate.median),
                on_over_flink,
                target: m.target,
                met: m.target.map(|t| on_over_flink >= t),
                verdict: verdicts.join(" / "),
                flink_checkpoints: Spread::of(&fl.iter().map(|r| r.run.last_checkpoint as f64).collect::<Vec<_>>()),
                ckptlab_checkpoints: Spread::of(&off.iter().map(|r| r.checkpoints_completed as f64).collect::<Vec<_>>()),
            }
        })
        .collect()
}

/// Records of Flink's warm-up job in each JVM: a tenth of the run, at least 100,000 (the JIT
/// and the state backend warm), at most 2,000,000 (a MiniCluster starts for it anyway).
fn flink_warmup(records: u64) -> u64 {
    (records / 10).clamp(100_000, 2_000_000).min(records)
}

/// `ckptlab bench --flink`: Flink first (a missing Java is refused before anything runs), then
/// ckptlab's warm-up, then the rounds.
async fn run_flink(base: &ConfigLayers, args: &BenchOptions, progress: &mut dyn FnMut(Progress)) -> Result<FlinkReport, BenchError> {
    // Blocking (an install takes minutes): nothing else runs yet.
    let flink = FlinkBench::prepare(&mut |p| progress(Progress::FlinkPreparing(p)))?;
    let home = crate::workdir::prepare_home()?;
    let dir = home.join(format!("bench-flink-{}", std::process::id()));
    let result = run_flink_in(base, args, &flink, &dir, progress).await;
    // A failed Flink run's output stays for its error message to point at.
    if result.is_ok() {
        let _ = crate::workdir::remove_tree_under(&home, &dir);
    }
    result
}

async fn run_flink_in(
    base: &ConfigLayers,
    args: &BenchOptions,
    flink: &FlinkBench,
    dir: &std::path::Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<FlinkReport, BenchError> {
    let parallelism = base.build()?.job.parallelism;
    let load_before = load_average();
    let rounds = args.rounds.max(1);
    let (records, warmup_rate, topic) = warmed_topic(base, args).await?;
    let rocksdb_records = records.min(args.state_records);
    let rocks_topic = filled_topic(&bench_layers(base, &[])?, rocksdb_records, args.keys, &EventBus::new(tokio::time::Instant::now()))?;
    let start = FlinkStart {
        records,
        rocksdb_records,
        flink_warmup_records: flink_warmup(records),
        keys: args.keys,
        parallelism,
        rounds,
        warmup_records_per_s: warmup_rate,
        scaled: args.records.is_none(),
        seconds: args.seconds,
        load: load_before,
        flink_version: flink.version().to_string(),
        flink_origin: flink.origin().to_string(),
    };
    progress(Progress::FlinkStart(start.clone()));
    let mut runs = Vec::new();
    let mut flink_runs = Vec::new();
    for round in 0..rounds {
        for (order, (m, side)) in flink_order(round, rounds).into_iter().enumerate() {
            let mode = FLINK_MODES[m];
            let (n, topic) = if mode.rocksdb { (rocksdb_records, &rocks_topic) } else { (records, &topic) };
            let run_dir = dir.join(format!("run-{round}-{order}"));
            match side {
                Side::Flink => {
                    let load = load_average().map(|l| l[0]);
                    let (f, d, opts) = (flink.clone(), run_dir.clone(), mode.flink_options(&run_dir));
                    let (keys, warmup) = (args.keys, flink_warmup(n));
                    let run = tokio::task::spawn_blocking(move || f.run(&d, n, keys, parallelism, warmup, &opts)).await??;
                    let r = FlinkRunResult { mode: mode.label.to_string(), round, order, load, run };
                    progress(Progress::FlinkRun(r.clone()));
                    flink_runs.push(r);
                }
                Side::Ckptlab { audited } => {
                    let owned = mode.ckptlab_options(&run_dir);
                    let options: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let r = ckptlab_run(base, topic, n, mode.label, &options, audited, (round, order)).await?;
                    progress(Progress::Run(r.clone()));
                    runs.push(r);
                }
            }
            if run_dir.exists() {
                crate::workdir::remove_tree_under(dir, &run_dir)?;
            }
        }
    }
    let rows = flink_rows(&runs, &flink_runs);
    for r in &rows {
        progress(Progress::FlinkRow(r.clone()));
    }
    Ok(FlinkReport { start, measured: FLINK_MEASURED.into(), load_after: load_average(), rows, runs, flink_runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ck(mode: &str, audited: bool, records_per_s: f64) -> RunResult {
        RunResult {
            mode: mode.into(),
            audited,
            round: 0,
            order: 0,
            seconds: 1.0,
            records_per_s,
            checkpoints_completed: 2,
            mean_checkpoint_ms: 1.0,
            load: None,
            verdict: audited.then(|| "ok".to_string()),
            verdict_ms: None,
        }
    }

    fn fl(mode: &str, records_per_s: f64) -> FlinkRunResult {
        let run = FlinkRun {
            records: 10,
            keys: 1,
            parallelism: 2,
            processing_s: 1.0,
            records_per_s,
            submit_to_first_record_s: 0.0,
            submit_to_end_s: 0.0,
            net_runtime_ms: 0,
            jvm_start_to_submit_s: 0.0,
            warmup_records: 0,
            warmup_s: 0.0,
            last_checkpoint: 3,
            jvm_s: 0.0,
        };
        FlinkRunResult { mode: mode.into(), round: 0, order: 0, load: None, run }
    }

    #[test]
    fn a_flink_row_is_the_ratio_of_medians_and_says_whether_the_target_is_met() {
        let eo = FLINK_MODES[1].label;
        let runs = [ck(eo, false, 10.0), ck(eo, false, 12.0), ck(eo, false, 50.0), ck(eo, true, 6.0), ck(eo, true, 9.0), ck(eo, true, 7.0)];
        // Another mode's runs must not leak into this row.
        let flink = [fl(eo, 3.0), fl(eo, 2.0), fl(eo, 100.0), fl(FLINK_MODES[0].label, 1.0)];
        let rows = flink_rows(&runs, &flink);
        assert_eq!(rows.len(), FLINK_MODES.len());
        let r = &rows[1];
        assert_eq!(r.flink, Spread { median: 3.0, min: 2.0, max: 100.0 });
        assert_eq!(r.ckptlab_on, Spread { median: 7.0, min: 6.0, max: 9.0 });
        assert_eq!((r.off_over_flink, r.on_over_flink), (4.0, 7.0 / 3.0));
        assert_eq!((r.target, r.met), (Some(3.0), Some(false)));
        assert_eq!(r.verdict, "ok");
        // No target on the baseline; a mode without runs has no ratio.
        assert_eq!((rows[0].target, rows[0].met), (None, None));
        assert_eq!(rows[2].on_over_flink, 0.0);
    }

    #[test]
    fn every_flink_mode_runs_on_both_engines_once_per_round_side_by_side_and_rotated() {
        let n = FLINK_MODES.len() * 3;
        for rounds in 1..=4 {
            let mut firsts = Vec::new();
            for round in 0..rounds {
                let order = flink_order(round, rounds);
                assert_eq!(order.len(), n);
                for m in 0..FLINK_MODES.len() {
                    for side in [Side::Flink, Side::Ckptlab { audited: false }, Side::Ckptlab { audited: true }] {
                        assert_eq!(order.iter().filter(|p| **p == (m, side)).count(), 1, "round {round} of {rounds}");
                    }
                }
                firsts.push(order[0]);
            }
            firsts.dedup();
            assert_eq!(firsts.len(), rounds as usize, "each round starts elsewhere: {firsts:?}");
        }
    }

    #[test]
    fn flink_runs_without_an_interval_do_not_checkpoint_and_ckptlab_is_told_so() {
        let d = std::path::Path::new("/x");
        let off = FLINK_MODES[0];
        assert!(off.flink_options(d).is_empty(), "Flink checkpoints only with an interval");
        assert_eq!(off.ckptlab_options(d), [(INTERVAL.to_string(), "off".to_string())]);
        let rocks = FLINK_MODES.iter().find(|m| m.rocksdb).expect("a RocksDB mode");
        let f = rocks.flink_options(d);
        assert!(f.contains(&("execution.checkpointing.dir".into(), "file:///x/flink-checkpoints".into())), "{f:?}");
        assert!(rocks.ckptlab_options(d).iter().all(|(k, v)| k != INTERVAL || v == "1s"));
    }

    #[test]
    fn flink_warms_up_on_a_tenth_within_bounds() {
        assert_eq!(flink_warmup(20_000_000), 2_000_000);
        assert_eq!(flink_warmup(5_000_000), 500_000);
        assert_eq!(flink_warmup(300_000), 100_000);
        assert_eq!(flink_warmup(50_000), 50_000);
    }
}
