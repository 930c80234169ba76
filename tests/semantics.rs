//! The invariants of DESIGN.md ("Ground truth and verdict") under randomized failure schedules:
//! - exactly-once never loses and never overcounts once caught up;
//! - at-least-once never loses;
//! - checkpoints off with `latest` loses what was produced while the job was down.
//!
//! Each case runs under tokio's paused clock. A failing case prints its schedule and proptest's
//! seed (it also saves it under proptest-regressions/), so it replays.

mod common;

use proptest::prelude::*;

use ckptlab::cluster::{Command, Engine};
use ckptlab::connectors::generator::GeneratorSpec;
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
    Start(usize),
    Checkpoint,
    /// A steady stream in the background: failures then strike records in flight.
    Generate {
        rate: u64,
        ms: u64,
    },
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
    ops: Vec<Op>,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(0u8..6, 1..25).prop_map(Op::Produce),
        3 => (0u64..1500).prop_map(Op::Wait),
        2 => (0usize..3).prop_map(Op::Kill),
        1 => (0usize..3).prop_map(Op::KillDuringSnapshotWrite),
        2 => (0usize..3).prop_map(Op::Start),
        1 => Just(Op::Checkpoint),
        2 => (50u64..800, 100u64..2000).prop_map(|(rate, ms)| Op::Generate { rate, ms }),
    ]
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        1usize..=3,
        1u32..=3,
        prop::sample::select(vec![50u64, 200, 1000]),
        prop::sample::select(vec![0u64, 5, 20]),
        prop::sample::select(vec![0u64, 1, 100]),
        prop::option::of((0usize..3, 0usize..3, 1u64..300)),
        prop::option::of((0usize..3, 1u64..15)),
        1usize..=2,
        any::<bool>(),
        prop::collection::vec(op(), 3..14),
    )
        .prop_map(|(parallelism, partitions, interval_ms, hop_delay_ms, buffer_timeout_ms, slow, slow_counter, max_concurrent, earliest, ops)| {
            Schedule {
                parallelism,
                partitions,
                interval_ms,
                hop_delay_ms,
                buffer_timeout_ms,
                slow_channel: slow.map(|(s, c, d)| (s % parallelism, c % parallelism, d)),
                slow_counter: slow_counter.map(|(c, ms)| (c % parallelism, ms)),
                max_concurrent,
                earliest,
                ops,
            }
        })
}

/// What a run ended with.
struct Outcome {
    verdict: ckptlab::audit::Verdict,
    /// Records produced while not every task was running.
    while_down: u64,
    restarts: u64,
    /// A restart found no completed checkpoint and started from empty state.
    restored_from_nothing: bool,
}

/// Where keyed state lives: the invariants must hold whatever the backend.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    /// hashmap + jobmanager storage (the seed's MemoryStateBackend)
    Heap,
    /// rocksdb + filesystem, full snapshots
    RocksFull,
    /// rocksdb + filesystem, incremental snapshots (shared SST files)
    RocksIncremental,
}

/// Runs a schedule to the end: every task manager started again, then caught up.
fn run(mode: Option<&str>, s: &Schedule, backend: Backend) -> Outcome {
    run_with(mode, &[], s, backend)
}

/// Exactly-once, unaligned from the start.
const UNALIGNED: &[(&str, &str)] = &[("execution.checkpointing.unaligned.enabled", "true")];
/// Exactly-once, aligned first and unaligned after 30 ms of alignment.
const ALIGNED_TIMEOUT: &[(&str, &str)] =
    &[("execution.checkpointing.unaligned.enabled", "true"), ("execution.checkpointing.aligned-checkpoint-timeout", "30ms")];

fn run_with(mode: Option<&str>, extra: &[(&str, &str)], s: &Schedule, backend: Backend) -> Outcome {
    run_on(Runtime::Paused, mode, extra, s, backend)
}

/// Where a case runs: under tokio's paused clock (fast, one thread), or on two worker threads in
/// real time, as the binary runs (tasks really run in parallel; slower, so fewer cases).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Runtime {
    Paused,
    TwoWorkers,
}

fn run_on(runtime: Runtime, mode: Option<&str>, extra: &[(&str, &str)], s: &Schedule, backend: Backend) -> Outcome {
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
        let mut pairs: Vec<(&str, &str)> = vec![
            ("job.parallelism", &p),
            ("taskmanager.count", &p),
            ("source.partitions", &parts),
            ("execution.checkpointing.interval", mode.map_or("off", |_| interval.as_str())),
            ("execution.checkpointing.mode", mode.unwrap_or("EXACTLY_ONCE")),
            ("execution.checkpointing.max-concurrent-checkpoints", &mc),
            ("execution.buffer-timeout.interval", &bt),
            ("ckptlab.hop-delay", &hop),
            ("heartbeat.timeout", "500ms"),
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.attempts", "100000"),
            ("restart-strategy.fixed-delay.delay", "100ms"),
            ("source.auto-offset-reset", if s.earliest { "earliest" } else { "latest" }),
        ];
        if backend != Backend::Heap {
            pairs.extend([
                ("state.backend.type", "rocksdb"),
                ("execution.checkpointing.storage", "filesystem"),
                ("execution.checkpointing.dir", chk.as_str()),
                ("taskmanager.tmp-dirs", tmp.as_str()),
                ("execution.checkpointing.incremental", if backend == Backend::RocksIncremental { "true" } else { "false" }),
            ]);
        }
        pairs.extend_from_slice(extra);
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
        let mut barriers = bus.subscribe();
        let engine = Engine::start(common::layers(&pairs), bus).expect("engine starts");
        common::until(&engine, AwaitCondition::Running, 60).await;
        let mut while_down = 0;
        let tm = |i: usize| format!("tm-{}", i % s.parallelism + 1);
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
                Op::KillDuringSnapshotWrite(i) => {
                    let counter = format!("counter[{}]", i % s.parallelism);
                    if all_barriers_at(&mut barriers, &counter, s.parallelism).await.is_some() {
                        let host = engine.view(false).tasks.into_iter().find(|t| t.name == counter).map(|t| t.tm);
                        if let Some(host) = host {
                            // The write takes at least 1 ms of model time, which cannot pass
                            // before the JobManager has handled this command.
                            engine.command(Command::KillTaskManager(host));
                        }
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
            }
            // Let the command take effect before the next one reads the job's state.
            tokio::task::yield_now().await;
        }
        for i in 0..s.parallelism {
            engine.command(Command::StartTaskManager(Some(tm(i))));
        }
        settle(&engine).await;
        let verdict = engine.verdict();
        let restarts = engine.view(false).restarts;
        engine.shutdown().await;
        let mut restored_from_nothing = false;
        while let Ok(e) = events.try_recv() {
            if let ckptlab::events::Event::StateRestored { checkpoint: None, .. } = e.event {
                restored_from_nothing = true;
            }
        }
        Outcome { verdict, while_down, restarts, restored_from_nothing }
    })
}

/// Waits (up to 3 s of model time) until `task` got `inputs` barriers of one checkpoint, and
/// returns the checkpoint; earlier events are skipped.
async fn all_barriers_at(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<ckptlab::events::Stamped>,
    task: &str,
    inputs: usize,
) -> Option<u64> {
    while events.try_recv().is_ok() {}
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut seen = std::collections::HashMap::<u64, usize>::new();
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv()).await.ok()??;
        if let ckptlab::events::Event::BarrierReceived { checkpoint, task: t, .. } = e.event {
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

/// Waits until caught up, failing the case with the job's picture if it never is.
async fn settle(engine: &Engine) {
    // Starting a task manager that was killed but not yet noticed triggers a failover after the
    // last command: wait for the restart to finish before judging.
    common::sleep_ms(1000).await;
    // Model time under the paused clock; real time on worker threads, where a minute is plenty.
    let limit = if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread { 600 } else { 60 };
    if !ckptlab::scenario::await_condition(engine, AwaitCondition::CaughtUp, std::time::Duration::from_secs(limit)).await {
        panic!("never caught up: {:#?}", engine.view(false));
    }
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

fn check_exactly_once(s: &Schedule, o: &Outcome) -> Result<(), TestCaseError> {
    let v = &o.verdict;
    prop_assert!(v.consistent, "operator state and auditor disagree: {v:?}");
    prop_assert_eq!(v.overcounted, 0, "{:?}", v);
    prop_assert_eq!(v.state + v.lost, v.expected, "{:?}", v);
    prop_assert_eq!(v.expected, v.produced);
    if s.earliest || !o.restored_from_nothing {
        prop_assert_eq!(v.lost, 0, "{:?}", v);
    }
    Ok(())
}

fn check_at_least_once(s: &Schedule, o: &Outcome) -> Result<(), TestCaseError> {
    let v = &o.verdict;
    prop_assert!(v.consistent, "operator state and auditor disagree: {v:?}");
    prop_assert_eq!(v.state + v.lost, v.expected + v.overcounted);
    prop_assert_eq!(v.expected, v.produced);
    if s.earliest || !o.restored_from_nothing {
        prop_assert_eq!(v.lost, 0, "{:?}", v);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Exactly-once protects from the first completed checkpoint on: a failure before it restarts
    /// from empty state, and with `latest` the sources skip what came meanwhile (as Flink's Kafka
    /// source does). With `earliest`, or once a checkpoint exists, nothing is lost.
    #[test]
    fn exactly_once_never_loses_nor_overcounts(s in schedule()) {
        check_exactly_once(&s, &run(Some("EXACTLY_ONCE"), &s, Backend::Heap))?;
    }

    /// Unaligned checkpoints: barriers overtake queued records, which are persisted and replayed
    /// on restore; the result must be as exact as aligned.
    #[test]
    fn unaligned_never_loses_nor_overcounts(s in schedule()) {
        check_exactly_once(&s, &run_with(Some("EXACTLY_ONCE"), UNALIGNED, &s, Backend::Heap))?;
    }

    /// Aligned until the alignment timeout, then unaligned for the late channels.
    #[test]
    fn aligned_with_timeout_never_loses_nor_overcounts(s in schedule()) {
        check_exactly_once(&s, &run_with(Some("EXACTLY_ONCE"), ALIGNED_TIMEOUT, &s, Backend::Heap))?;
    }

    #[test]
    fn at_least_once_never_loses(s in schedule()) {
        check_at_least_once(&s, &run(Some("AT_LEAST_ONCE"), &s, Backend::Heap))?;
    }

    #[test]
    fn checkpoints_off_with_latest_loses_what_was_produced_while_down(s in schedule()) {
        let s = Schedule { earliest: false, ..s };
        let o = run(None, &s, Backend::Heap);
        let v = &o.verdict;
        prop_assert!(v.consistent, "operator state and auditor disagree: {v:?}");
        prop_assert_eq!(v.overcounted, 0, "nothing is replayed without checkpoints: {:?}", v);
        prop_assert_eq!(v.state + v.lost, v.expected, "{:?}", v);
        prop_assert!(v.lost >= o.while_down, "lost {} < produced while down {}", v.lost, o.while_down);
        if o.restarts == 0 {
            prop_assert_eq!(v.lost, 0);
        }
    }
}

/// Real-time cases take seconds each: a handful per run (THREADED_PROPTEST_CASES for more).
fn threaded_cases() -> u32 {
    std::env::var("THREADED_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(20)
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
    s.slow_counter = s.slow_counter.map(|(c, ms)| (c, ms.min(2)));
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: threaded_cases(), max_shrink_iters: 8, ..ProptestConfig::default() })]

    /// On two worker threads the subtasks really run in parallel: races the paused clock cannot
    /// show (a barrier and a record on two threads at once) have their chance here. Real time:
    /// a documented extra, not CI (`cargo test --release --test semantics -- --ignored`); one CI
    /// run saw it take over three minutes for 6 cases, which is under investigation.
    #[test]
    #[ignore = "real time on two worker threads: run with --ignored (THREADED_PROPTEST_CASES sets the count)"]
    fn exactly_once_and_unaligned_hold_on_two_worker_threads(s in schedule(), unaligned in any::<bool>()) {
        let s = short(s);
        let extra = if unaligned { UNALIGNED } else { &[] };
        check_exactly_once(&s, &run_on(Runtime::TwoWorkers, Some("EXACTLY_ONCE"), extra, &s, Backend::Heap))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: rocksdb_cases(), ..ProptestConfig::default() })]

    /// The same invariants with the state in RocksDB, full or incremental snapshots.
    #[test]
    fn exactly_once_never_loses_nor_overcounts_with_rocksdb(s in schedule(), incremental in any::<bool>()) {
        check_exactly_once(&s, &run(Some("EXACTLY_ONCE"), &s, rocks(incremental)))?;
    }

    #[test]
    fn unaligned_never_loses_nor_overcounts_with_rocksdb(s in schedule(), incremental in any::<bool>()) {
        check_exactly_once(&s, &run_with(Some("EXACTLY_ONCE"), UNALIGNED, &s, rocks(incremental)))?;
    }

    #[test]
    fn aligned_with_timeout_never_loses_nor_overcounts_with_rocksdb(s in schedule(), incremental in any::<bool>()) {
        check_exactly_once(&s, &run_with(Some("EXACTLY_ONCE"), ALIGNED_TIMEOUT, &s, rocks(incremental)))?;
    }

    #[test]
    fn at_least_once_never_loses_with_rocksdb(s in schedule(), incremental in any::<bool>()) {
        check_at_least_once(&s, &run(Some("AT_LEAST_ONCE"), &s, rocks(incremental)))?;
    }
}
