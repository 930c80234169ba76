//! The invariants of DESIGN.md ("Ground truth and verdict") under randomized failure schedules:
//! - exactly-once never loses and never overcounts once caught up;
//! - at-least-once never loses, overcounts only records applied after the restored checkpoint's
//!   offsets, and not at all with one input channel per task or without a restart;
//! - checkpoints off with `latest` loses what was produced while the job was down;
//! - every restore used the latest completed checkpoint, and nothing is ever lost *by* a restore
//!   (only by a (re)start that had no checkpoint: the offset reset, as Flink's Kafka source).
//!
//! Schedules vary what a user can vary: parallelism 1-4, storage (jobmanager, filesystem), the
//! restart strategy (fixed-delay, exponential-delay, none with a resubmit), the sink (print,
//! transactional, with kills between a checkpoint's completion and its notification), mode
//! changes mid-run, checkpoint failures (timeouts, the jobmanager storage cap), backend
//! switches, num-retained > 1 and several kills in a row.
//!
//! Each case runs under tokio's paused clock (a subset also on two worker threads, as the binary
//! runs). A failing case prints its schedule and proptest's seed (it also saves it under
//! proptest-regressions/), so it replays.

use crate::common;

use std::collections::HashMap;

use proptest::prelude::*;

use ckptlab::cluster::view::JobStatus;
use ckptlab::cluster::{Command, Engine};
use ckptlab::connectors::generator::GeneratorSpec;
use ckptlab::events::{Event, Stamped};
use ckptlab::scenario::AwaitCondition;

#[derive(Debug, Clone)]
enum Op {
    Produce(Vec<u8>),
    Wait(u64),
    Kill(usize),
    /// Kills the task manager of counter[i] as soon as it has every barrier of a checkpoint:
    /// after its snapshot's synchronous part, while the asynchronous write runs (or, unaligned
    /// or timed out, while it captures overtaken records).
    KillDuringSnapshotWrite(usize),
    /// Kills a task manager the moment the next checkpoint completes: the JobManager has told the
    /// tasks, but a committing sink may not have committed yet (its restore must recommit).
    KillOnCompletion(usize),
    /// Every task manager, one after the other.
    KillAll,
    Start(usize),
    Checkpoint,
    /// A steady stream in the background: failures then strike records in flight.
    Generate {
        rate: u64,
        ms: u64,
    },
    /// Switches between the property's two modes (from the next checkpoint on).
    FlipMode(bool),
    /// A new checkpoint timeout: short ones make checkpoints expire (CHECKPOINT_EXPIRED).
    Timeout(u64),
    /// Switches the state backend (memory, fs, rocksdb): a restart from the latest checkpoint.
    SwitchBackend(&'static str),
    /// Resubmits the job if it FAILED (restart strategy `none`); refused otherwise.
    Resubmit,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Restart {
    FixedDelay,
    ExponentialDelay,
    /// The job fails at the first failure; the schedule (and the end of the run) resubmits it.
    None,
}

#[derive(Debug, Clone)]
struct Schedule {
    parallelism: usize,
    partitions: u32,
    interval_ms: u64,
    hop_delay_ms: u64,
    buffer_timeout_ms: u64,
    slow_channel: Option<(usize, usize, u64)>,
    /// A slow counter subtask (`ckptlab.record-cost`): queues build up in front of it, which
    /// aligned barriers wait behind and unaligned ones overtake.
    slow_counter: Option<(usize, u64)>,
    max_concurrent: usize,
    earliest: bool,
    /// Heap state: snapshots to the JobManager (false) or to files (true).
    filesystem: bool,
    restart: Restart,
    transactional: bool,
    num_retained: usize,
    /// `tolerable-failed-checkpoints` 0 (Flink's default: the first counted failure fails the
    /// job) or a number never reached.
    tolerate: bool,
    /// A jobmanager storage cap small enough that some snapshots exceed it.
    tiny_cap: bool,
    ops: Vec<Op>,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec(0u8..6, 1..25).prop_map(Op::Produce),
        6 => (0u64..1500).prop_map(Op::Wait),
        4 => (0usize..4).prop_map(Op::Kill),
        2 => (0usize..4).prop_map(Op::KillDuringSnapshotWrite),
        2 => (0usize..4).prop_map(Op::KillOnCompletion),
        1 => Just(Op::KillAll),
        4 => (0usize..4).prop_map(Op::Start),
        2 => Just(Op::Checkpoint),
        4 => (50u64..800, 100u64..2000).prop_map(|(rate, ms)| Op::Generate { rate, ms }),
        1 => any::<bool>().prop_map(Op::FlipMode),
        1 => prop::sample::select(vec![30u64, 150, 600_000]).prop_map(Op::Timeout),
        1 => prop::sample::select(vec!["memory", "fs", "rocksdb"]).prop_map(Op::SwitchBackend),
        1 => Just(Op::Resubmit),
    ]
}

fn schedule() -> impl Strategy<Value = Schedule> {
    let timing = (
        1usize..=4,
        1u32..=3,
        prop::sample::select(vec![50u64, 200, 1000]),
        prop::sample::select(vec![0u64, 5, 20]),
        prop::sample::select(vec![0u64, 1, 100]),
        prop::option::of((0usize..4, 0usize..4, 1u64..300)),
        prop::option::of((0usize..4, 1u64..15)),
        1usize..=2,
        any::<bool>(),
    );
    let setup = (
        any::<bool>(),
        prop::sample::select(vec![Restart::FixedDelay, Restart::FixedDelay, Restart::ExponentialDelay, Restart::None]),
        any::<bool>(),
        1usize..=3,
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::collection::vec(op(), 3..14),
    );
    (timing, setup).prop_map(
        |(
            (parallelism, partitions, interval_ms, hop_delay_ms, buffer_timeout_ms, slow, slow_counter, max_concurrent, earliest),
            (filesystem, restart, transactional, num_retained, tolerate, tiny_cap, ops),
        )| Schedule {
            parallelism,
            partitions,
            interval_ms,
            hop_delay_ms,
            buffer_timeout_ms,
            slow_channel: slow.map(|(s, c, d)| (s % parallelism, c % parallelism, d)),
            slow_counter: slow_counter.map(|(c, ms)| (c % parallelism, ms)),
            max_concurrent,
            earliest,
            filesystem,
            restart,
            transactional,
            num_retained,
            tolerate,
            tiny_cap,
            ops,
        },
    )
}

/// The schedules of the first ckptlab: one storage, a restart strategy that always restarts, the
/// print sink, none of the newer ops. The property with checkpoints off keeps to them (a backend
/// switch or a resubmit without checkpoints restarts from nothing by design).
fn basic(mut s: Schedule) -> Schedule {
    s.ops.retain(|o| !matches!(o, Op::FlipMode(_) | Op::Timeout(_) | Op::SwitchBackend(_) | Op::Resubmit | Op::KillOnCompletion(_)));
    s.restart = Restart::FixedDelay;
    s.transactional = false;
    s.tiny_cap = false;
    s
}

/// What the events of a run say about its restores.
#[derive(Debug, Default)]
struct Trace {
    /// For each restart: the checkpoint it restored (`None`: none) and the latest completed
    /// checkpoint of the job at that moment.
    restores: Vec<(Option<u64>, Option<u64>)>,
    /// An upper bound on overcounting: for each restore of a checkpoint, the records produced by
    /// then at or after the checkpoint's offsets (only those can have been applied before the
    /// failure and be replayed after it).
    replayable: u64,
}

fn trace(events: &[Stamped]) -> Trace {
    let mut t = Trace::default();
    let mut latest: Option<u64> = None;
    let mut end: HashMap<u32, u64> = HashMap::new();
    let mut submitted = 0;
    // A backend switch resubmits the job from its canonical stop-with-savepoint.
    let mut from_savepoint: Option<u64> = None;
    for e in events {
        match &e.event {
            Event::RecordProduced { partition, offset, .. } => {
                let n = end.entry(*partition).or_default();
                *n = (*n).max(offset + 1);
            }
            Event::CheckpointCompleted { checkpoint, .. } => latest = latest.max(Some(*checkpoint)),
            // A resubmitted job is a new job: none of the old one's checkpoints.
            Event::BackendSwitched { checkpoint: Some(id), .. } => from_savepoint = Some(*id),
            Event::JobSubmitted { .. } => {
                submitted += 1;
                if submitted > 1 {
                    latest = from_savepoint.take();
                }
            }
            Event::StateRestored { checkpoint, offsets, .. } => {
                t.restores.push((*checkpoint, latest));
                if checkpoint.is_some() {
                    t.replayable += offsets.iter().map(|(p, o)| end.get(p).copied().unwrap_or(0).saturating_sub(*o)).sum::<u64>();
                }
            }
            _ => {}
        }
    }
    t
}

/// What a run ended with.
struct Outcome {
    verdict: ckptlab::audit::Verdict,
    /// Records produced while not every task was running.
    while_down: u64,
    restarts: u64,
    trace: Trace,
    /// The run ended with a checkpoint completed after everything was caught up (so a
    /// transactional sink committed every line).
    final_checkpoint: bool,
}

impl Outcome {
    /// A restart found no completed checkpoint and started from empty state.
    fn restored_from_nothing(&self) -> bool {
        self.trace.restores.iter().any(|(c, _)| c.is_none())
    }
}

/// Where keyed state lives: the invariants must hold whatever the backend.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    /// hashmap, snapshots to the JobManager or to files (the seed's Memory/FsStateBackend)
    Heap,
    /// rocksdb + filesystem, full snapshots
    RocksFull,
    /// rocksdb + filesystem, incremental snapshots (shared SST files)
    RocksIncremental,
}

/// What a property runs: checkpointing mode (None: off), options on top, and the two settings
/// `FlipMode` switches between.
#[derive(Clone, Copy)]
struct Mode {
    mode: Option<&'static str>,
    extra: &'static [(&'static str, &'static str)],
    flip: [&'static [(&'static str, &'static str)]; 2],
}

/// Exactly-once, aligned; flips to unaligned and back.
const EXACTLY_ONCE: Mode = Mode { mode: Some("EXACTLY_ONCE"), extra: &[], flip: [ALIGNED, UNALIGNED] };
/// Exactly-once, unaligned from the start; flips to aligned and back.
const EXACTLY_ONCE_UNALIGNED: Mode = Mode { mode: Some("EXACTLY_ONCE"), extra: UNALIGNED, flip: [UNALIGNED, ALIGNED] };
/// Exactly-once, aligned first and unaligned after 30 ms of alignment; flips to aligned.
const EXACTLY_ONCE_ALIGNED_TIMEOUT: Mode = Mode { mode: Some("EXACTLY_ONCE"), extra: ALIGNED_TIMEOUT, flip: [ALIGNED_TIMEOUT, ALIGNED] };
/// At-least-once; flips to exactly-once and back (at-least-once's invariants hold for both).
const AT_LEAST_ONCE: Mode = Mode { mode: Some("AT_LEAST_ONCE"), extra: &[], flip: [ALO, EO] };
const OFF: Mode = Mode { mode: None, extra: &[], flip: [&[], &[]] };

const ALIGNED: &[(&str, &str)] = &[("execution.checkpointing.unaligned.enabled", "false")];
const UNALIGNED: &[(&str, &str)] =
    &[("execution.checkpointing.unaligned.enabled", "true"), ("execution.checkpointing.aligned-checkpoint-timeout", "0ms")];
const ALIGNED_TIMEOUT: &[(&str, &str)] =
    &[("execution.checkpointing.unaligned.enabled", "true"), ("execution.checkpointing.aligned-checkpoint-timeout", "30ms")];
const ALO: &[(&str, &str)] = &[("execution.checkpointing.mode", "AT_LEAST_ONCE")];
const EO: &[(&str, &str)] = &[("execution.checkpointing.mode", "EXACTLY_ONCE")];

/// Runs a schedule to the end: every task manager started again, the job resubmitted if it
/// failed, then caught up.
fn run(mode: Mode, s: &Schedule, backend: Backend) -> Outcome {
    run_on(Runtime::Paused, mode, s, backend)
}

/// Where a case runs: under tokio's paused clock (fast, one thread), or on two worker threads in
/// real time, as the binary runs (tasks really run in parallel; slower, so fewer cases).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Runtime {
    Paused,
    TwoWorkers,
}

fn run_on(runtime: Runtime, m: Mode, s: &Schedule, backend: Backend) -> Outcome {
    let dir = common::scratch_dir();
    let chk = dir.path().join("checkpoints").display().to_string();
    let tmp = dir.path().join("tm").display().to_string();
    let block_on = |f| match runtime {
        Runtime::Paused => common::paused(f),
        Runtime::TwoWorkers => common::threaded(f),
    };
    block_on(async {
        let p = s.parallelism.to_string();
        let parts = s.partitions.to_string();
        let interval = format!("{}ms", s.interval_ms);
        let hop = format!("{}ms", s.hop_delay_ms);
        let bt = format!("{}ms", s.buffer_timeout_ms);
        let mc = s.max_concurrent.to_string();
        let retained = s.num_retained.to_string();
        let mut pairs: Vec<(&str, &str)> = vec![
            ("job.parallelism", &p),
            ("taskmanager.count", &p),
            ("source.partitions", &parts),
            ("execution.checkpointing.interval", m.mode.map_or("off", |_| interval.as_str())),
            ("execution.checkpointing.mode", m.mode.unwrap_or("EXACTLY_ONCE")),
            ("execution.checkpointing.max-concurrent-checkpoints", &mc),
            ("execution.checkpointing.num-retained", &retained),
            ("execution.checkpointing.tolerable-failed-checkpoints", if s.tolerate { "1000000" } else { "0" }),
            ("execution.checkpointing.dir", chk.as_str()),
            ("taskmanager.tmp-dirs", tmp.as_str()),
            ("execution.buffer-timeout.interval", &bt),
            ("ckptlab.hop-delay", &hop),
            ("heartbeat.timeout", "500ms"),
            ("source.auto-offset-reset", if s.earliest { "earliest" } else { "latest" }),
            ("job.sink", if s.transactional { "transactional" } else { "print" }),
        ];
        match s.restart {
            Restart::FixedDelay => pairs.extend([
                ("restart-strategy.type", "fixed-delay"),
                ("restart-strategy.fixed-delay.attempts", "100000"),
                ("restart-strategy.fixed-delay.delay", "100ms"),
            ]),
            Restart::ExponentialDelay => pairs.extend([
                ("restart-strategy.type", "exponential-delay"),
                ("restart-strategy.exponential-delay.initial-backoff", "50ms"),
                ("restart-strategy.exponential-delay.max-backoff", "800ms"),
                // No jitter: a failing case replays exactly.
                ("restart-strategy.exponential-delay.jitter-factor", "0"),
            ]),
            Restart::None => pairs.push(("restart-strategy.type", "none")),
        }
        match backend {
            Backend::Heap if s.filesystem => pairs.push(("execution.checkpointing.storage", "filesystem")),
            Backend::Heap => {
                if s.tiny_cap {
                    pairs.push(("ckptlab.jobmanager-max-state-size", "120b"));
                }
            }
            Backend::RocksFull | Backend::RocksIncremental => pairs.extend([
                ("state.backend.type", "rocksdb"),
                ("execution.checkpointing.storage", "filesystem"),
                ("execution.checkpointing.incremental", if backend == Backend::RocksIncremental { "true" } else { "false" }),
            ]),
        }
        pairs.extend_from_slice(m.extra);
        let cost_key;
        let cost_val;
        if let Some((counter, ms)) = s.slow_counter {
            cost_key = format!("ckptlab.record-cost.counter[{counter}]");
            cost_val = format!("{ms}ms");
            pairs.push((&cost_key, &cost_val));
        }
        let slow_key;
        let slow_val;
        if let Some((from, to, ms)) = s.slow_channel {
            slow_key = format!("ckptlab.delays.source[{from}]->counter[{to}]");
            slow_val = format!("{ms}ms");
            pairs.push((&slow_key, &slow_val));
        }
        let bus = ckptlab::events::EventBus::new(tokio::time::Instant::now());
        let mut events = bus.subscribe();
        let mut watch = bus.subscribe();
        let engine = Engine::start(common::layers(&pairs), bus).expect("engine starts");
        common::until(&engine, AwaitCondition::Running, 60).await;
        let mut while_down = 0;
        let tm = |i: usize| format!("tm-{}", i % s.parallelism + 1);
        let set = |settings: &[(&str, &str)]| {
            for (k, v) in settings {
                engine.command(Command::Set { key: (*k).into(), value: (*v).into() });
            }
        };
        for op in &s.ops {
            match op {
                Op::Produce(keys) => {
                    let down = !engine.all_tasks_running();
                    for k in keys {
                        engine.produce(&format!("k{k}"), None).unwrap();
                    }
                    if down {
                        while_down += keys.len() as u64;
                    }
                }
                Op::Wait(ms) => common::sleep_ms(*ms).await,
                Op::Kill(i) => engine.command(Command::KillTaskManager(tm(*i))),
                Op::KillAll => {
                    for i in 0..s.parallelism {
                        engine.command(Command::KillTaskManager(tm(i)));
                        tokio::task::yield_now().await;
                    }
                }
                Op::KillDuringSnapshotWrite(i) => {
                    let counter = format!("counter[{}]", i % s.parallelism);
                    if all_barriers_at(&mut watch, &counter, s.parallelism).await.is_some() {
                        let host = engine.view(false).tasks.into_iter().find(|t| t.name == counter).map(|t| t.tm);
                        if let Some(host) = host {
                            // The write takes at least 1 ms of model time, which cannot pass
                            // before the JobManager has handled this command.
                            engine.command(Command::KillTaskManager(host));
                        }
                    }
                }
                Op::KillOnCompletion(i) => {
                    if next_completion(&mut watch).await.is_some() {
                        engine.command(Command::KillTaskManager(tm(*i)));
                    }
                }
                Op::Start(i) => engine.command(Command::StartTaskManager(Some(tm(*i)))),
                Op::Checkpoint => engine.command(Command::TriggerCheckpoint),
                Op::Generate { rate, ms } => {
                    engine.generate(GeneratorSpec {
                        rate: *rate,
                        duration: Some(std::time::Duration::from_millis(*ms)),
                        keys: vec!["g0".into(), "g1".into(), "g2".into()],
                        partition: None,
                    });
                }
                Op::FlipMode(b) => {
                    if m.mode.is_some() {
                        set(m.flip[usize::from(*b)]);
                    }
                }
                Op::Timeout(ms) => set(&[("execution.checkpointing.timeout", &format!("{ms}ms"))]),
                Op::SwitchBackend(to) => engine.command(Command::SwitchBackend(to.parse().expect("a seed backend"))),
                Op::Resubmit => engine.command(Command::Resubmit),
            }
            // Let the command take effect before the next one reads the job's state.
            tokio::task::yield_now().await;
        }
        // The end: checkpoint failures no longer fail the job (a jobmanager cap that every
        // snapshot now exceeds would restart it forever), every task manager back, a failed job
        // resubmitted.
        set(&[("execution.checkpointing.timeout", "10min"), ("execution.checkpointing.tolerable-failed-checkpoints", "1000000")]);
        for i in 0..s.parallelism {
            engine.command(Command::StartTaskManager(Some(tm(i))));
        }
        settle(&engine).await;
        let final_checkpoint = m.mode.is_some() && final_checkpoint(&engine, &mut watch, s.transactional).await;
        let verdict = engine.verdict();
        let restarts = engine.view(false).restarts;
        engine.shutdown().await;
        let mut all = Vec::new();
        while let Ok(e) = events.try_recv() {
            all.push(e);
        }
        Outcome { verdict, while_down, restarts, trace: trace(&all), final_checkpoint }
    })
}

/// Waits (up to 3 s of model time) until `task` got `inputs` barriers of one checkpoint, and
/// returns the checkpoint; earlier events are skipped.
async fn all_barriers_at(events: &mut tokio::sync::mpsc::UnboundedReceiver<Stamped>, task: &str, inputs: usize) -> Option<u64> {
    while events.try_recv().is_ok() {}
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut seen = HashMap::<u64, usize>::new();
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv()).await.ok()??;
        if let Event::BarrierReceived { checkpoint, task: t, .. } = e.event {
            if t == task {
                let n = seen.entry(checkpoint).or_default();
                *n += 1;
                if *n >= inputs {
                    return Some(checkpoint);
                }
            }
        }
    }
}

/// Waits (up to 3 s of model time) for the next completed checkpoint.
async fn next_completion(events: &mut tokio::sync::mpsc::UnboundedReceiver<Stamped>) -> Option<u64> {
    while events.try_recv().is_ok() {}
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv()).await.ok()??;
        if let Event::CheckpointCompleted { checkpoint, .. } = e.event {
            return Some(checkpoint);
        }
    }
}

/// Model time under the paused clock; real time on worker threads, where a minute is plenty.
fn limit() -> std::time::Duration {
    let paused = tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread;
    std::time::Duration::from_secs(if paused { 600 } else { 60 })
}

/// Waits until caught up, resubmitting a job that failed, and fails the case with the job's
/// picture if it never is.
async fn settle(engine: &Engine) {
    for _ in 0..20 {
        // Starting a task manager that was killed but not yet noticed triggers a failover after
        // the last command: wait for the restart to finish before judging.
        common::sleep_ms(1000).await;
        if engine.status() == JobStatus::Failed {
            engine.command(Command::Resubmit);
            continue;
        }
        if ckptlab::scenario::await_condition(engine, AwaitCondition::CaughtUp, limit()).await {
            return;
        }
        if engine.status() != JobStatus::Failed {
            break;
        }
    }
    panic!("never caught up: {:#?}", engine.view(false));
}

/// Once caught up: one more checkpoint, so that a transactional sink commits every line. With
/// a transactional sink it waits for that commit too: the notification reaches the sink after
/// the completion, and on worker threads the verdict could otherwise be read in between.
async fn final_checkpoint(engine: &Engine, events: &mut tokio::sync::mpsc::UnboundedReceiver<Stamped>, transactional: bool) -> bool {
    while events.try_recv().is_ok() {}
    engine.command(Command::TriggerCheckpoint);
    // Every checkpoint triggered from now on covers every record (caught up, nothing produced).
    let wait = async {
        let mut triggered = None;
        let mut completed = None;
        loop {
            match events.recv().await.map(|e| e.event) {
                Some(Event::CheckpointTriggered { checkpoint, .. }) if triggered.is_none() => triggered = Some(checkpoint),
                Some(Event::CheckpointCompleted { checkpoint, .. })
                    if completed.is_none() && triggered.is_some_and(|t| checkpoint >= t) =>
                {
                    if !transactional {
                        return true;
                    }
                    completed = Some(checkpoint);
                }
                Some(Event::TransactionCommitted { checkpoint, .. }) if completed.is_some_and(|c| checkpoint >= c) => return true,
                // A failure before it completed: no last checkpoint to judge the output by.
                Some(Event::JobFailing { .. }) if completed.is_none() => return false,
                Some(Event::CheckpointFailed { checkpoint, .. }) if completed.is_none() && triggered.is_some_and(|t| checkpoint >= t) => {
                    return false
                }
                Some(_) => {}
                None => return false,
            }
        }
    };
    tokio::time::timeout(limit(), wait).await.unwrap_or(false)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(200)
}

/// RocksDB cases do real disk I/O (a DB opened per subtask and attempt); as many as the heap's
/// unless ROCKSDB_PROPTEST_CASES says otherwise.
fn rocksdb_cases() -> u32 {
    std::env::var("ROCKSDB_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(cases())
}

fn rocks(incremental: bool) -> Backend {
    if incremental {
        Backend::RocksIncremental
    } else {
        Backend::RocksFull
    }
}

/// What holds in every mode with checkpoints: each restore used the latest completed checkpoint,
/// and no record is lost by a restore (only by a start without a checkpoint, and with `earliest`
/// not even then).
fn check_restores_and_loss(s: &Schedule, o: &Outcome) -> Result<(), TestCaseError> {
    let v = &o.verdict;
    prop_assert!(v.audited && v.consistent, "operator state and auditor disagree: {v:?}");
    for (restored, latest) in &o.trace.restores {
        prop_assert_eq!(
            restored,
            latest,
            "a restart restored {:?} while {:?} was the latest completed checkpoint: {:?}",
            restored,
            latest,
            o.trace
        );
    }
    prop_assert_eq!(v.lost, v.lost_no_checkpoint + v.lost_by_restore, "{:?}", v);
    prop_assert_eq!(v.lost_by_restore, 0, "records lost although a checkpoint was restored: {:?}", v);
    for (key, kv) in &v.keys {
        prop_assert_eq!(kv.lost_by_restore, 0, "key {}: {:?}", key, kv);
    }
    if s.earliest || !o.restored_from_nothing() {
        prop_assert_eq!(v.lost, 0, "{:?}", v);
    }
    prop_assert_eq!(v.expected, v.produced);
    Ok(())
}

/// Output: the print sink prints every record it counted (repeats allowed, no gaps); the
/// transactional sink, once a last checkpoint committed, shows every line, and under
/// exactly-once each exactly once.
fn check_output(s: &Schedule, o: &Outcome, exactly_once: bool) -> Result<(), TestCaseError> {
    let v = &o.verdict;
    if !s.transactional {
        prop_assert_eq!(v.output_gaps, 0, "records counted without a printed line: {:?}", v);
    } else if o.final_checkpoint {
        prop_assert_eq!(v.output_gaps, 0, "a committed record without its line: {:?}", v);
        // A start from nothing (before the first checkpoint, or a resubmitted job) replays with
        // `earliest` what an earlier attempt may have committed: Flink repeats those lines too.
        if exactly_once && !o.restored_from_nothing() {
            prop_assert_eq!(v.repeated_output, 0, "a transactional line twice under exactly-once: {:?}", v);
        }
    }
    Ok(())
}

fn check_exactly_once(s: &Schedule, o: &Outcome) -> Result<(), TestCaseError> {
    let v = &o.verdict;
    check_restores_and_loss(s, o)?;
    prop_assert_eq!(v.overcounted, 0, "{:?}", v);
    prop_assert_eq!(v.state + v.lost, v.expected, "{:?}", v);
    check_output(s, o, true)
}

fn check_at_least_once(s: &Schedule, o: &Outcome) -> Result<(), TestCaseError> {
    let v = &o.verdict;
    check_restores_and_loss(s, o)?;
    // An identity once consistent; the bounds below are what at-least-once promises.
    prop_assert_eq!(v.state + v.lost, v.expected + v.overcounted, "{:?}", v);
    prop_assert!(
        v.overcounted <= o.trace.replayable,
        "overcounted {} > {} records applied after a restored checkpoint's offsets: {:?}",
        v.overcounted,
        o.trace.replayable,
        o.trace
    );
    if s.parallelism == 1 {
        prop_assert_eq!(v.overcounted, 0, "one input channel per task: nothing overtakes a barrier: {:?}", v);
    }
    if o.trace.restores.is_empty() {
        prop_assert_eq!(v.overcounted, 0, "no restart, nothing replayed: {:?}", v);
    }
    check_output(s, o, false)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Exactly-once protects from the first completed checkpoint on: a failure before it restarts
    /// from empty state, and with `latest` the sources skip what came meanwhile (as Flink's Kafka
    /// source does). With `earliest`, or once a checkpoint exists, nothing is lost.
    #[test]
    fn exactly_once_never_loses_nor_overcounts(s in schedule()) {
        check_exactly_once(&s, &run(EXACTLY_ONCE, &s, Backend::Heap))?;
    }

    /// Unaligned checkpoints: barriers overtake queued records, which are persisted and replayed
    /// on restore; the result must be as exact as aligned.
    #[test]
    fn unaligned_never_loses_nor_overcounts(s in schedule()) {
        check_exactly_once(&s, &run(EXACTLY_ONCE_UNALIGNED, &s, Backend::Heap))?;
    }

    /// Aligned until the alignment timeout, then unaligned for the late channels.
    #[test]
    fn aligned_with_timeout_never_loses_nor_overcounts(s in schedule()) {
        check_exactly_once(&s, &run(EXACTLY_ONCE_ALIGNED_TIMEOUT, &s, Backend::Heap))?;
    }

    #[test]
    fn at_least_once_never_loses_and_overcounts_only_replayed_records(s in schedule()) {
        check_at_least_once(&s, &run(AT_LEAST_ONCE, &s, Backend::Heap))?;
    }

    #[test]
    fn checkpoints_off_with_latest_loses_what_was_produced_while_down(s in schedule()) {
        let s = Schedule { earliest: false, ..basic(s) };
        let o = run(OFF, &s, Backend::Heap);
        let v = &o.verdict;
        prop_assert!(v.audited && v.consistent, "operator state and auditor disagree: {v:?}");
        prop_assert_eq!(v.overcounted, 0, "nothing is replayed without checkpoints: {:?}", v);
        prop_assert_eq!(v.state + v.lost, v.expected, "{:?}", v);
        prop_assert!(v.lost >= o.while_down, "lost {} < produced while down {}", v.lost, o.while_down);
        prop_assert_eq!(v.lost_by_restore, 0, "there is no checkpoint to lose anything by: {:?}", v);
        prop_assert!(o.trace.restores.iter().all(|(c, _)| c.is_none()), "{:?}", o.trace);
        if o.restarts == 0 {
            prop_assert_eq!(v.lost, 0);
        }
    }
}

/// Real-time cases take seconds each: 10 per CI run (about 40 s for both properties on 2 cores;
/// 80 passed with no stall), `THREADED_PROPTEST_CASES=N` for more.
fn threaded_cases() -> u32 {
    std::env::var("THREADED_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(10)
}

/// Schedules short enough for real time: waits and generators scaled down.
fn short(mut s: Schedule) -> Schedule {
    for op in &mut s.ops {
        match op {
            Op::Wait(ms) => *ms /= 10,
            Op::Generate { ms, .. } => *ms /= 4,
            _ => {}
        }
    }
    s.ops.truncate(8);
    s.slow_counter = s.slow_counter.map(|(c, ms)| (c, ms.min(2)));
    s
}

/// Runs `test` on `cases` cases of `strategy`, failing with the minimal case as `proptest!` does.
/// The macro lets `PROPTEST_CASES` override every block's own count (proptest 1.12,
/// sugar.rs:160 calls `contextualize_config` on it): CI's 200 ran the real-time properties
/// below 200 times instead of 10, nine minutes each. Here the count given is the count run.
fn property<S>(name: &'static str, cases: u32, max_shrink_iters: Option<u32>, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let mut config = proptest::test_runner::contextualize_config(ProptestConfig::default());
    config.cases = cases;
    if let Some(iters) = max_shrink_iters {
        config.max_shrink_iters = iters;
    }
    config.source_file = Some(file!());
    config.test_name = Some(name);
    let mut runner = proptest::test_runner::TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}\n{runner}");
    }
}

/// On two worker threads the subtasks really run in parallel: races the paused clock cannot
/// show (a barrier and a record on two threads at once) have their chance here. Real time, so
/// a few cases per run.
#[test]
fn exactly_once_and_unaligned_hold_on_two_worker_threads() {
    property("exactly_once_and_unaligned_hold_on_two_worker_threads", threaded_cases(), Some(8), (schedule(), any::<bool>()), |(s, unaligned)| {
        let s = short(s);
        let mode = if unaligned { EXACTLY_ONCE_UNALIGNED } else { EXACTLY_ONCE };
        check_exactly_once(&s, &run_on(Runtime::TwoWorkers, mode, &s, Backend::Heap))
    });
}

#[test]
fn at_least_once_holds_on_two_worker_threads() {
    property("at_least_once_holds_on_two_worker_threads", threaded_cases(), Some(8), schedule(), |s| {
        let s = short(s);
        check_at_least_once(&s, &run_on(Runtime::TwoWorkers, AT_LEAST_ONCE, &s, Backend::Heap))
    });
}

/// The same invariants with the state in RocksDB, full or incremental snapshots.
fn with_rocksdb(name: &'static str, mode: Mode, check: fn(&Schedule, &Outcome) -> Result<(), TestCaseError>) {
    property(name, rocksdb_cases(), None, (schedule(), any::<bool>()), |(s, incremental)| check(&s, &run(mode, &s, rocks(incremental))));
}

#[test]
fn exactly_once_never_loses_nor_overcounts_with_rocksdb() {
    with_rocksdb("exactly_once_never_loses_nor_overcounts_with_rocksdb", EXACTLY_ONCE, check_exactly_once);
}

#[test]
fn unaligned_never_loses_nor_overcounts_with_rocksdb() {
    with_rocksdb("unaligned_never_loses_nor_overcounts_with_rocksdb", EXACTLY_ONCE_UNALIGNED, check_exactly_once);
}

#[test]
fn aligned_with_timeout_never_loses_nor_overcounts_with_rocksdb() {
    with_rocksdb("aligned_with_timeout_never_loses_nor_overcounts_with_rocksdb", EXACTLY_ONCE_ALIGNED_TIMEOUT, check_exactly_once);
}

#[test]
fn at_least_once_never_loses_with_rocksdb() {
    with_rocksdb("at_least_once_never_loses_with_rocksdb", AT_LEAST_ONCE, check_at_least_once);
}

/// The first case `unaligned_never_loses_nor_overcounts_with_rocksdb` generated once backend
/// switches became a stop-with-savepoint plus a resubmission, shrunk, kept as a fixed schedule
/// so it cannot hide behind the generator: the test's last settings (a 10 min timeout, a
/// tolerable-failed-checkpoints never reached) are sent while the switch's savepoint runs, and
/// the resubmitted job used the configuration captured when the switch was asked for (30 ms
/// timeout, 0 tolerated), so every resubmission failed on its first expired checkpoint and the
/// job never caught up.
#[test]
fn a_setting_sent_during_a_backend_switch_holds_for_the_resubmitted_job() {
    let s = Schedule {
        parallelism: 1,
        partitions: 1,
        interval_ms: 50,
        hop_delay_ms: 0,
        buffer_timeout_ms: 0,
        slow_channel: Some((0, 0, 29)),
        slow_counter: None,
        max_concurrent: 2,
        earliest: true,
        filesystem: false,
        restart: Restart::None,
        transactional: true,
        num_retained: 2,
        tolerate: false,
        tiny_cap: false,
        ops: vec![
            Op::Timeout(30),
            Op::Produce(vec![3, 3, 3, 1, 1, 3, 2, 3, 1, 1, 0, 0, 3, 1, 2, 0]),
            Op::Produce(vec![0, 3, 1, 5, 5, 0, 1, 3, 2, 4, 3, 4, 0, 5, 3, 0, 4]),
            Op::SwitchBackend("fs"),
            Op::Produce(vec![0, 2, 5, 2, 4, 3, 5, 1, 3, 3, 0, 5, 1, 2, 1, 0, 4, 2]),
        ],
    };
    if let Err(e) = check_exactly_once(&s, &run(EXACTLY_ONCE_UNALIGNED, &s, rocks(false))) {
        panic!("{e}");
    }
}

/// The case `unaligned_never_loses_nor_overcounts_with_rocksdb` shrank to (1 of 3 runs failed),
/// kept as fixed schedules. The switch's stop-with-savepoint is triggered 5 ms after RUNNING,
/// its aligned barrier behind the 21 records just produced, at 2 ms each (42 ms), and the first
/// periodic checkpoint was due at 50 ms: when the queue took a little longer (the bursts, disk
/// I/O) the engine triggered that unaligned checkpoint beside the savepoint although
/// max-concurrent is 1 and a stop-with-savepoint stops the scheduler (SchedulerBase.java:1099).
/// Its barrier overtook the savepoint's, the counter then took the savepoint's barrier for a
/// stale one, and the savepoint waited 10 min for its timeout with the sources stopped: RUNNING,
/// never caught up. At 3 ms a record the overlap is certain; both must catch up exactly.
#[test]
fn a_backend_switch_under_backpressure_leaves_a_job_that_catches_up() {
    for cost in [2, 3] {
        let s = Schedule {
            parallelism: 1,
            partitions: 1,
            interval_ms: 50,
            hop_delay_ms: 0,
            buffer_timeout_ms: 0,
            slow_channel: None,
            slow_counter: Some((0, cost)),
            max_concurrent: 1,
            earliest: false,
            filesystem: false,
            restart: Restart::FixedDelay,
            transactional: false,
            num_retained: 1,
            tolerate: false,
            tiny_cap: false,
            ops: vec![
                Op::Generate { rate: 69, ms: 1725 },
                Op::Generate { rate: 491, ms: 1510 },
                Op::Produce(vec![0; 7]),
                Op::Produce(vec![0; 14]),
                Op::SwitchBackend("memory"),
                Op::Wait(45),
            ],
        };
        if let Err(e) = check_exactly_once(&s, &run(EXACTLY_ONCE_UNALIGNED, &s, rocks(false))) {
            panic!("record cost {cost} ms: {e}");
        }
    }
}

/// The case the semantics properties (aligned-with-timeout, unaligned, at-least-once; heap and
/// RocksDB) shrank to after efd7b9b: a checkpoint triggered by hand beside a backend switch's
/// stop-with-savepoint, aligned (`FlipMode(true)`), snapshots written to files. The checkpoint
/// completed while the older savepoint was still pending, and the auditor dropped the
/// savepoint's snapshot parts as if the checkpoint had subsumed it; the resubmitted job restored
/// the savepoint, the auditor a shadow of nothing: "operator state and auditor disagree", every
/// record `lost_by_restore`. A checkpoint never subsumes a savepoint
/// (PendingCheckpoint.canBeSubsumed), and Flink triggers a manual checkpoint while the periodic
/// scheduler is stopped (CheckpointCoordinator.preCheckGlobalState refuses periodic ones only).
#[test]
fn a_checkpoint_triggered_beside_a_backend_switch_leaves_a_consistent_restore() {
    let mut failures = Vec::new();
    for (name, mode) in [
        ("aligned-timeout", EXACTLY_ONCE_ALIGNED_TIMEOUT),
        ("unaligned", EXACTLY_ONCE_UNALIGNED),
        ("at-least-once", AT_LEAST_ONCE),
        ("exactly-once", EXACTLY_ONCE),
    ] {
        for backend in [Backend::Heap, Backend::RocksFull] {
            for restart in [Restart::FixedDelay, Restart::None] {
                let s = Schedule {
                    parallelism: 1,
                    partitions: 1,
                    interval_ms: 50,
                    hop_delay_ms: 0,
                    buffer_timeout_ms: 0,
                    slow_channel: None,
                    slow_counter: None,
                    max_concurrent: 2,
                    earliest: false,
                    filesystem: true,
                    restart,
                    transactional: false,
                    num_retained: 1,
                    tolerate: false,
                    tiny_cap: false,
                    ops: vec![Op::FlipMode(true), Op::Produce(vec![0]), Op::SwitchBackend("memory"), Op::Checkpoint],
                };
                let o = run(mode, &s, backend);
                let checked = if mode.mode == AT_LEAST_ONCE.mode { check_at_least_once(&s, &o) } else { check_exactly_once(&s, &o) };
                if let Err(e) = checked {
                    failures.push(format!("{name}, {backend:?}, {restart:?}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
