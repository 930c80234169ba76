//! Checkpoint coordination as a user sets it: timeout, min pause, manual triggers, mode changes
//! while running, and what the print and transactional sinks show after a recovery.

mod common;

use ckptlab::cluster::{Command, Engine};
use ckptlab::events::{Event, EventBus, Stamped};
use ckptlab::scenario::AwaitCondition;
use tokio::sync::mpsc::UnboundedReceiver;

fn start(pairs: &[(&str, &str)]) -> (Engine, UnboundedReceiver<Stamped>) {
    let bus = EventBus::new(tokio::time::Instant::now());
    let rx = bus.subscribe();
    (Engine::start(common::layers(pairs), bus).expect("engine starts"), rx)
}

fn drain(rx: &mut UnboundedReceiver<Stamped>) -> Vec<Stamped> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

#[test]
fn a_checkpoint_that_takes_longer_than_the_timeout_expires_without_failing_the_job() {
    common::paused(async {
        let (engine, mut rx) = start(&[
            ("execution.checkpointing.interval", "1s"),
            ("execution.checkpointing.timeout", "300ms"),
            ("execution.checkpointing.tolerable-failed-checkpoints", "10"),
            ("ckptlab.delays.counter[*]->sink[*]", "1s"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        common::sleep_ms(1500).await;
        let events = drain(&mut rx);
        let failed = events.iter().find_map(|e| match &e.event {
            Event::CheckpointFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        });
        assert!(failed.as_deref().is_some_and(|r| r.contains("expired") && r.contains("300ms")), "{failed:?}");
        assert!(engine.all_tasks_running());
        engine.shutdown().await;
    });
}

#[test]
fn min_pause_spaces_checkpoints_apart() {
    common::paused(async {
        let (engine, mut rx) = start(&[("execution.checkpointing.interval", "100ms"), ("execution.checkpointing.min-pause", "500ms")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        common::sleep_ms(3000).await;
        let done: Vec<u64> =
            drain(&mut rx).iter().filter(|e| matches!(e.event, Event::CheckpointCompleted { .. })).map(|e| e.t_ms).collect();
        let triggers: Vec<u64> =
            engine.view(false).checkpoint_history.iter().map(|c| c.trigger_ms).collect::<Vec<_>>().into_iter().skip(1).collect();
        assert!(done.len() >= 3 && done.len() <= 7, "{done:?}");
        for (t, d) in triggers.iter().zip(&done) {
            assert!(*t >= d + 500, "trigger {t} less than 500 ms after completion {d}");
        }
        engine.shutdown().await;
    });
}

#[test]
fn manual_trigger_is_refused_with_a_reason_when_checkpointing_is_off() {
    common::paused(async {
        let (engine, mut rx) = start(&[("execution.checkpointing.interval", "off")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::TriggerCheckpoint);
        common::sleep_ms(10).await;
        let refused = drain(&mut rx).into_iter().find_map(|e| match e.event {
            Event::CheckpointTriggerRefused { reason } => Some(reason),
            _ => None,
        });
        assert!(refused.is_some_and(|r| r.contains("checkpointing is off")));
        engine.command(Command::Set { key: "execution.checkpointing.interval".into(), value: "1s".into() });
        engine.command(Command::TriggerCheckpoint);
        common::until(&engine, AwaitCondition::CheckpointCompleted, 10).await;
        engine.shutdown().await;
    });
}

#[test]
fn a_mode_change_takes_effect_from_the_next_checkpoint() {
    common::paused(async {
        let (engine, mut rx) = start(&[("execution.checkpointing.interval", "500ms"), ("execution.checkpointing.mode", "EXACTLY_ONCE")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        common::sleep_ms(700).await;
        engine.command(Command::Set { key: "execution.checkpointing.mode".into(), value: "AT_LEAST_ONCE".into() });
        common::sleep_ms(600).await;
        let modes: Vec<String> = drain(&mut rx)
            .into_iter()
            .filter_map(|e| match e.event {
                Event::CheckpointTriggered { mode, .. } => Some(mode),
                Event::ConfigChanged { value, .. } => Some(format!("set {value}")),
                _ => None,
            })
            .collect();
        assert_eq!(modes, vec!["EXACTLY_ONCE", "set AT_LEAST_ONCE", "AT_LEAST_ONCE"]);
        assert_eq!(engine.view(false).mode, "AT_LEAST_ONCE");
        // Options fixed at start are refused with the way to change them.
        engine.command(Command::Set { key: "job.parallelism".into(), value: "4".into() });
        common::sleep_ms(10).await;
        let rejected = drain(&mut rx).into_iter().find_map(|e| match e.event {
            Event::ConfigRejected { reason, .. } => Some(reason),
            _ => None,
        });
        assert!(rejected.is_some_and(|r| r.contains("--set job.parallelism=4")));
        engine.shutdown().await;
    });
}

/// Records processed after the last checkpoint and before the kill are replayed: the print sink
/// prints them again (marked as repeats); the transactional sink never showed them, so nothing
/// repeats, and its lines appear only when their checkpoint completes.
fn replay_after_checkpoint(sink: &str) -> (ckptlab::audit::Verdict, Vec<ckptlab::cluster::task::OutputLine>, bool) {
    common::paused(async {
        let (engine, mut rx) = start(&[
            ("execution.checkpointing.interval", "1s"),
            ("job.sink", sink),
            ("heartbeat.timeout", "500ms"),
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.delay", "100ms"),
            ("ckptlab.hop-delay", "5ms"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.produce("a", None).unwrap();
        common::until(&engine, AwaitCondition::CheckpointCompleted, 10).await;
        for v in ["b", "c", "d"] {
            engine.produce(v, None).unwrap();
        }
        common::sleep_ms(100).await;
        let visible_before_commit = !engine.view(false).output.is_empty() && engine.view(false).output.len() >= 4;
        engine.command(Command::KillTaskManager("tm-1".into()));
        engine.command(Command::KillTaskManager("tm-2".into()));
        common::sleep_ms(600).await;
        engine.command(Command::StartTaskManager(Some("tm-1".into())));
        engine.command(Command::StartTaskManager(Some("tm-2".into())));
        common::until(&engine, AwaitCondition::CaughtUp, 30).await;
        common::until(&engine, AwaitCondition::CheckpointCompleted, 10).await;
        let _ = drain(&mut rx);
        let v = engine.verdict();
        let out = engine.view(false).output;
        engine.shutdown().await;
        (v, out, visible_before_commit)
    })
}

#[test]
fn print_sink_repeats_replayed_lines_under_exactly_once() {
    let (v, out, visible_at_once) = replay_after_checkpoint("print");
    assert_eq!((v.lost, v.overcounted), (0, 0), "state is exactly-once: {v:?}");
    assert!(visible_at_once, "print writes at once");
    assert!(v.repeated_output >= 3, "b c d printed again: {v:?}");
    assert_eq!(out.iter().filter(|l| l.repeat).count() as u64, v.repeated_output);
}

#[test]
fn transactional_sink_shows_each_line_once_and_only_after_its_checkpoint() {
    let (v, out, visible_at_once) = replay_after_checkpoint("transactional");
    assert_eq!((v.lost, v.overcounted), (0, 0), "{v:?}");
    assert!(!visible_at_once, "lines wait for their checkpoint");
    assert_eq!(v.repeated_output, 0, "{out:?}");
    let mut values: Vec<String> = out.iter().map(|l| l.text.rsplit(": ").next().unwrap().to_string()).collect();
    values.sort();
    assert_eq!(values, vec!["(a,1)", "(b,1)", "(c,1)", "(d,1)"]);
}

#[test]
fn pause_holds_records_and_barriers_where_they_are() {
    common::paused(async {
        let (engine, _rx) = start(&[("execution.checkpointing.interval", "off"), ("ckptlab.hop-delay", "100ms")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.produce("a", None).unwrap();
        common::sleep_ms(50).await;
        engine.set_paused(true);
        engine.produce("b", None).unwrap();
        common::sleep_ms(2000).await;
        let v = engine.view(true);
        assert!(v.paused);
        assert_eq!(v.verdict.as_ref().unwrap().state, 0, "nothing delivered while paused");
        assert!(v.channels.iter().map(|c| c.in_flight).sum::<i64>() >= 1, "a is held in flight");
        engine.set_paused(false);
        common::until(&engine, AwaitCondition::CaughtUp, 10).await;
        assert_eq!(engine.verdict().state, 2);
        engine.shutdown().await;
    });
}
