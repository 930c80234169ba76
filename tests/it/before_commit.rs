//! `kill = "tm-N"` with `when = "before-commit"`: the fault placed where it hurts a two-phase
//! commit (Jepsen's nemesis). The kill must come after a checkpoint completed and before the
//! killed task manager's sink committed that checkpoint's transaction; the restore must commit
//! the restored transaction again, and exactly-once read_committed output stays exact.

use ckptlab::cluster::Engine;
use ckptlab::config::ConfigLayers;
use ckptlab::events::{Event, EventBus, Stamped};
use ckptlab::scenario::{self, Scenario};

const SCENARIO: &str = r#"
name = "kafka sink: a kill between a checkpoint's completion and its commit"
[config.execution.checkpointing]
interval = "500ms"
[config.job]
sink = "kafka"
[config.sink]
delivery-guarantee = "exactly-once"
transactional-id-prefix = "nemesis"
[config.sink.properties]
"transaction.timeout.ms" = 600000
[config.heartbeat]
timeout = "2s"
[config.restart-strategy]
type = "fixed-delay"
fixed-delay.delay = "200ms"
[[steps]]
generate = { rate = 200, duration = "3s", keys = ["a", "b", "c"] }
[[steps]]
await = "checkpoint-completed"
[[steps]]
wait = "300ms"
[[steps]]
kill = "tm-1"
when = "before-commit"
[[steps]]
wait = "1s"
[[steps]]
start = "tm-1"
[[steps]]
await = "caught-up"
timeout = "20s"
[[steps]]
await = "checkpoint-completed"
[[steps]]
expect = { lost = 0, overcounted = 0, committed_output_gaps = 0, committed_repeated_output = 0 }
"#;

fn run(text: &str) -> (scenario::RunReport, Vec<Stamped>) {
    let s = Scenario::parse(text, "before-commit.toml").unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut l = ConfigLayers::builtin();
        s.apply_config(&mut l).unwrap();
        let engine = Engine::start(l, EventBus::new(tokio::time::Instant::now())).expect("engine starts");
        let mut events = engine.events().subscribe();
        let report = scenario::run(&s, &engine, |_| {}).await;
        engine.shutdown().await;
        let mut all = Vec::new();
        while let Ok(e) = events.try_recv() {
            all.push(e);
        }
        (report, all)
    })
}

/// Catches: a before-commit kill that comes after the sink committed (a hook that kills after
/// the notification, or a player that kills on the completion event: the sink's commit wins
/// that race), one that kills before the checkpoint completed, a restore that does not commit
/// the restored transaction again (its lines would be gaps at read_committed), and a restore
/// that commits it twice.
#[test]
fn a_kill_before_the_commit_leaves_the_transaction_to_the_restore_and_the_output_exact() {
    let (report, events) = run(SCENARIO);
    assert!(report.passed, "{:?}", report.failures);
    let kill = events
        .iter()
        .position(|e| matches!(&e.event, Event::TaskManagerKilled { tm, .. } if tm == "tm-1"))
        .expect("tm-1 was killed");
    let completed = events[..kill]
        .iter()
        .rev()
        .find_map(|e| match e.event {
            Event::CheckpointCompleted { checkpoint, .. } => Some(checkpoint),
            _ => None,
        })
        .expect("a checkpoint completed before the kill");
    let commits_of = |range: &[Stamped]| {
        range.iter().filter(|e| matches!(e.event, Event::TransactionCommitted { checkpoint, .. } if checkpoint == completed)).count()
    };
    assert_eq!(commits_of(&events[..kill]), 0, "checkpoint {completed}'s transaction was committed before the kill: the kill came after the commit");
    assert_eq!(commits_of(&events[kill..]), 1, "the restore commits checkpoint {completed}'s transaction, once");
    assert!(
        events[kill..].iter().any(|e| matches!(e.event, Event::StateRestored { .. })),
        "the job restored after the kill"
    );
}

/// A before-commit kill with checkpointing off is refused (the step fails, it does not hang).
#[test]
fn a_before_commit_kill_without_checkpointing_is_refused() {
    let text = "name = \"off\"\n[config.execution.checkpointing]\ninterval = \"off\"\n[[steps]]\nkill = \"tm-1\"\nwhen = \"before-commit\"\n";
    let (report, _) = run(text);
    assert!(!report.passed);
    assert!(report.failures.iter().any(|f| f.message.contains("checkpointing is off")), "{:?}", report.failures);
}

/// `when` takes two words; anything else names them.
#[test]
fn a_kill_moment_that_is_not_one_is_refused_with_the_allowed_words() {
    let e = Scenario::parse("name = \"x\"\n[[steps]]\nkill = \"tm-1\"\nwhen = \"later\"\n", "x.toml").unwrap_err().to_string();
    assert!(e.contains("x.toml") && e.contains("\"now\"") && e.contains("\"before-commit\""), "{e}");
}

/// The committed output's lag against the checkpoint interval (issue 23's figure), as the
/// output pane's readers measure it: `cargo test --release --test it
/// before_commit::committed_lag_figures -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints figures"]
fn committed_lag_figures() {
    use ckptlab::config::parse_loose_value;
    use ckptlab::connectors::generator::GeneratorSpec;
    use std::time::Duration;
    for (interval, secs) in [("1s", 12u64), ("5s", 30)] {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let (newest, mean, samples) = rt.block_on(async {
            let mut l = ConfigLayers::builtin();
            for (k, v) in [
                ("execution.checkpointing.interval", interval),
                ("execution.checkpointing.mode", "EXACTLY_ONCE"),
                ("job.sink", "kafka"),
                ("sink.delivery-guarantee", "exactly-once"),
                ("sink.transactional-id-prefix", "lag"),
                ("sink.properties.transaction.timeout.ms", "600000"),
                ("ckptlab.hop-delay", "0ms"),
            ] {
                l.set_value(k, parse_loose_value(v), "figure").unwrap();
            }
            let engine = Engine::start(l, EventBus::new(tokio::time::Instant::now())).expect("engine starts");
            let _g = engine.generate(GeneratorSpec { rate: 200, duration: Some(Duration::from_secs(secs)), keys: vec!["a".into(), "b".into()], partition: None });
            let mut newest = Vec::new();
            let mut last_mean = None;
            let end = tokio::time::Instant::now() + Duration::from_secs(secs);
            let mut seen_commits = 0;
            while tokio::time::Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Some(r) = engine.view(false).output_readers else { continue };
                if r.committed_total > seen_commits {
                    seen_commits = r.committed_total;
                    newest.extend(r.lag_ms);
                }
                last_mean = r.mean_lag_ms;
            }
            engine.shutdown().await;
            (newest, last_mean, seen_commits)
        });
        let mut sorted = newest.clone();
        sorted.sort();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
        println!(
            "interval {interval}: newest commit's lag median {median} ms (min {:?}, max {:?}, {} commits seen), mean line lag {:?} ms, {samples} lines committed",
            sorted.first(),
            sorted.last(),
            sorted.len(),
            mean
        );
    }
}
