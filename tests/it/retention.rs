//! `source.embedded.retention = checkpointed`: the embedded topic frees what no source, retained
//! checkpoint or verdict needs, and the verdict stays exact through failures.

use crate::common;

use std::time::Duration;

use ckptlab::cluster::Command;
use ckptlab::connectors::generator::GeneratorSpec;
use ckptlab::scenario::AwaitCondition;

fn exact_after_kills(mode: &str) {
    common::threaded(async {
        let engine = common::start(&[
            ("execution.checkpointing.mode", mode),
            ("execution.checkpointing.interval", "100ms"),
            ("source.embedded.retention", "checkpointed"),
            ("source.auto-offset-reset", "earliest"),
            ("heartbeat.timeout", "500ms"),
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.attempts", "100"),
            ("restart-strategy.fixed-delay.delay", "100ms"),
            ("ckptlab.hop-delay", "0ms"),
        ]);
        engine.generate(GeneratorSpec {
            rate: 4000,
            duration: Some(Duration::from_secs(3)),
            keys: (0..50).map(|i| format!("k{i}")).collect(),
            partition: None,
        });
        for _ in 0..2 {
            common::sleep_ms(900).await;
            engine.command(Command::KillTaskManager("tm-1".into()));
            common::sleep_ms(300).await;
            engine.command(Command::StartTaskManager(Some("tm-1".into())));
        }
        common::until(&engine, AwaitCondition::CaughtUp, 120).await;
        // One more checkpoint after the last record, so that retention has something to free.
        common::sleep_ms(400).await;
        let view = engine.view(true);
        let v = view.verdict.expect("verdict");
        assert!(v.consistent, "{v:?}");
        assert_eq!(v.expected, v.produced, "{v:?}");
        assert_eq!(v.lost, 0, "{v:?}");
        if mode == "EXACTLY_ONCE" {
            assert_eq!(v.overcounted, 0, "{v:?}");
        }
        assert_eq!(v.state + v.lost, v.expected + v.overcounted);
        let freed: u64 = view.partitions.iter().map(|p| p.log_start).sum();
        let end: u64 = view.partitions.iter().map(|p| p.end).sum();
        assert!(freed > end / 2, "retention freed {freed} of {end} records");
        engine.shutdown().await;
    });
}

#[test]
fn exactly_once_stays_exact_while_the_topic_is_freed() {
    exact_after_kills("EXACTLY_ONCE");
}

#[test]
fn at_least_once_loses_nothing_while_the_topic_is_freed() {
    exact_after_kills("AT_LEAST_ONCE");
}

/// The default keeps every record: `earliest` after a restart from nothing replays them all.
#[test]
fn unbounded_keeps_every_record() {
    common::threaded(async {
        let engine = common::start(&[("execution.checkpointing.interval", "100ms"), ("ckptlab.hop-delay", "0ms")]);
        engine.generate(GeneratorSpec { rate: 2000, duration: Some(Duration::from_secs(1)), keys: vec!["a".into()], partition: None });
        common::until(&engine, AwaitCondition::CaughtUp, 60).await;
        common::sleep_ms(300).await;
        let view = engine.view(false);
        assert!(view.partitions.iter().all(|p| p.log_start == 0), "{:?}", view.partitions);
        engine.shutdown().await;
    });
}

/// The auditor keeps what the model says and no more, however many checkpoints complete: per
/// counter subtask and partition one range of applied offsets (an exact run), in the live shadow
/// and in each shadow a checkpoint may still need (the retained one, one pending); subsumed
/// checkpoints' copies are dropped. A copy kept per checkpoint (30 of them here) would count 30
/// times as many ranges.
#[test]
fn the_auditor_keeps_shadows_for_retained_checkpoints_only() {
    common::threaded(async {
        let engine = common::start(&[
            ("execution.checkpointing.mode", "EXACTLY_ONCE"),
            ("execution.checkpointing.interval", "50ms"),
            ("execution.checkpointing.num-retained", "1"),
            ("source.embedded.retention", "checkpointed"),
            ("job.parallelism", "2"),
            ("ckptlab.hop-delay", "0ms"),
        ]);
        engine.generate(GeneratorSpec {
            rate: 20_000,
            duration: Some(Duration::from_secs(2)),
            keys: (0..100).map(|i| format!("k{i}")).collect(),
            partition: None,
        });
        common::until(&engine, AwaitCondition::CaughtUp, 120).await;
        // Enough checkpoints after the last record that a copy per checkpoint would show.
        let at_end = engine.view(false).checkpoint_counts.completed;
        for _ in 0..1200 {
            if engine.view(false).checkpoint_counts.completed >= at_end.max(30) + 3 {
                break;
            }
            common::sleep_ms(50).await;
        }
        let view = engine.view(true);
        let v = view.verdict.expect("verdict");
        assert_eq!((v.expected, v.state, v.lost, v.overcounted), (v.produced, v.produced, 0, 0), "{v:?}");
        assert!(view.checkpoint_counts.completed >= 30, "{} checkpoints", view.checkpoint_counts.completed);
        let (parallelism, partitions) = (2, view.partitions.len());
        // Live, retained, pending: one range per subtask and partition each; output: one per partition.
        let bound = 3 * parallelism * partitions + partitions;
        let footprint = engine.auditor_footprint();
        assert!(footprint <= bound, "{footprint} ranges kept after {} checkpoints (bound {bound})", view.checkpoint_counts.completed);
        engine.shutdown().await;
    });
}
