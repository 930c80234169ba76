//! The two ways the JobManager finds a task manager gone, as Flink 2.3 finds them: a killed one by
//! failed heartbeat RPCs (`heartbeat.rpc-failure-threshold` x `heartbeat.interval`), a hung one
//! only by `heartbeat.timeout`; and when the restart runs: at max(failure + restart delay, the
//! failed attempt's cancellation). Every bound is stated from the options and read off the
//! events' timestamps under tokio's paused clock: nothing here depends on wall-clock speed.

use crate::common;

use std::time::Duration;

use ckptlab::cluster::heartbeat::Detection;
use ckptlab::cluster::view::{DetectionView, TmProcess};
use ckptlab::cluster::{Command, Engine};
use ckptlab::events::{Event, Stamped};
use ckptlab::scenario::AwaitCondition;
use tokio::sync::mpsc::UnboundedReceiver;

const INTERVAL_MS: u64 = 1_000;
const THRESHOLD: u64 = 2;
const TIMEOUT_MS: u64 = 5_000;
const DELAY_MS: u64 = 200;

fn start(extra: &[(&str, &str)]) -> (Engine, UnboundedReceiver<Stamped>) {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("execution.checkpointing.interval", "1s"),
        ("heartbeat.interval", "1s"),
        ("heartbeat.rpc-failure-threshold", "2"),
        ("heartbeat.timeout", "5s"),
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "100"),
        ("restart-strategy.fixed-delay.delay", "200ms"),
        ("ckptlab.hop-delay", "10ms"),
    ];
    pairs.extend_from_slice(extra);
    common::start_with_events(&pairs)
}

/// Events until one matches `done` (included), at most `secs` of engine time.
async fn collect_until(rx: &mut UnboundedReceiver<Stamped>, secs: u64, done: impl Fn(&Event) -> bool) -> Vec<Stamped> {
    common::events_until(rx, secs, done)
        .await
        .unwrap_or_else(|seen| panic!("no matching event within {secs} s: {:#?}", common::described(&seen)))
}

fn time_of(seen: &[Stamped], pred: impl Fn(&Event) -> bool) -> Option<u64> {
    seen.iter().find(|e| pred(&e.event)).map(|e| e.t_ms)
}

fn lost(seen: &[Stamped], name: &str) -> (u64, u64, Detection) {
    seen.iter()
        .find_map(|e| match &e.event {
            Event::TaskManagerLost { tm, after_ms, detection } if tm == name => Some((e.t_ms, *after_ms, *detection)),
            _ => None,
        })
        .expect("declared lost")
}

/// Catches: an engine that waits for the heartbeat timeout to find a kill (lost at 5 s here), or
/// that finds it at once.
#[test]
fn a_killed_tm_is_lost_after_threshold_failed_heartbeat_rpcs_never_at_the_heartbeat_timeout() {
    common::paused(async {
        let (engine, mut rx) = start(&[]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::KillTaskManager("tm-2".into()));
        let seen = collect_until(&mut rx, 30, |e| matches!(e, Event::TaskManagerLost { .. })).await;
        let killed = time_of(&seen, |e| matches!(e, Event::TaskManagerKilled { tm, .. } if tm == "tm-2")).expect("killed");
        let (at, after_ms, detection) = lost(&seen, "tm-2");
        assert_eq!(detection, Detection::RpcFailures { threshold: THRESHOLD as u32 });
        assert_eq!(at - killed, after_ms);
        assert!((THRESHOLD - 1) * INTERVAL_MS < after_ms && after_ms <= THRESHOLD * INTERVAL_MS, "{after_ms} ms");
        assert!(after_ms < TIMEOUT_MS, "never at heartbeat.timeout");
        engine.shutdown().await;
    });
}

/// With the detection by failed RPCs switched off (-1), as in Flink only the timeout is left.
#[test]
fn with_rpc_failure_detection_off_a_kill_waits_for_the_heartbeat_timeout() {
    common::paused(async {
        let (engine, mut rx) = start(&[("heartbeat.rpc-failure-threshold", "-1")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::KillTaskManager("tm-2".into()));
        let seen = collect_until(&mut rx, 30, |e| matches!(e, Event::TaskManagerLost { .. })).await;
        let (_, after_ms, detection) = lost(&seen, "tm-2");
        assert_eq!(detection, Detection::HeartbeatTimeout);
        assert!(TIMEOUT_MS - INTERVAL_MS < after_ms && after_ms <= TIMEOUT_MS, "{after_ms} ms");
        engine.shutdown().await;
    });
}

/// A hung TM keeps its connections: no peer fails, nothing is found until the heartbeat timeout
/// after its last answer, then the job fails over; its slot is gone, so the restart waits.
///
/// Catches: an engine that finds a hang by failed RPCs (lost after 1-2 s here), or that treats a
/// hang as a kill (the job failing over at once).
#[test]
fn a_hung_tm_is_lost_only_at_the_heartbeat_timeout_and_its_peers_do_not_fail() {
    common::paused(async {
        let (engine, mut rx) = start(&[]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::HangTaskManager("tm-2".into()));
        common::sleep_ms(2 * THRESHOLD * INTERVAL_MS).await;
        let v = engine.view(false);
        let tm = v.task_managers.iter().find(|t| t.name == "tm-2").expect("tm-2");
        assert_eq!(tm.process, TmProcess::Hung);
        assert!(matches!(tm.detection, Some(DetectionView::HeartbeatTimeout { timeout_ms: TIMEOUT_MS })), "{tm:?}");
        let seen = collect_until(&mut rx, 30, |e| matches!(e, Event::TasksWaitingForSlots { .. })).await;
        let hung = time_of(&seen, |e| matches!(e, Event::TaskManagerHung { tm, .. } if tm == "tm-2")).expect("hung");
        let (at, after_ms, detection) = lost(&seen, "tm-2");
        assert_eq!(detection, Detection::HeartbeatTimeout);
        assert_eq!(at - hung, after_ms);
        assert!(TIMEOUT_MS - INTERVAL_MS < after_ms && after_ms <= TIMEOUT_MS, "{after_ms} ms: the timeout runs from its last answer");
        let failing = time_of(&seen, |e| matches!(e, Event::JobFailing { .. })).expect("the job fails over");
        assert_eq!(failing, at, "only when it is declared lost: {:#?}", seen.iter().map(|e| e.event.describe()).collect::<Vec<_>>());
        let reason = seen.iter().find_map(|e| match &e.event {
            Event::JobFailing { reason } => Some(reason.clone()),
            _ => None,
        });
        assert!(reason.as_deref().is_some_and(|r| r.contains("Heartbeat of TaskManager tm-2 timed out")), "{reason:?}");
        // Its tasks are cancelled with its loss: the restart runs one delay later and finds one slot.
        let waiting = time_of(&seen, |e| matches!(e, Event::TasksWaitingForSlots { .. })).expect("waiting");
        assert_eq!(waiting, at + DELAY_MS);
        engine.shutdown().await;
    });
}

/// A failover while a TM hangs (here: its frozen tasks let a checkpoint expire, and
/// tolerable-failed-checkpoints is 0) cannot restart before the hung TM's tasks are cancelled:
/// cancellation calls to it are never answered, so the restart runs when the JobManager declares it
/// lost, not one restart delay after the failure.
///
/// Catches: a restart at failure + delay (it would deploy to the hung TM's slot), or at
/// cancellation + delay (one delay after the loss).
#[test]
fn a_restart_waits_for_the_cancellation_of_a_hung_tms_tasks() {
    common::paused(async {
        let (engine, mut rx) = start(&[("execution.checkpointing.timeout", "1500ms")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::HangTaskManager("tm-2".into()));
        let seen = collect_until(&mut rx, 30, |e| matches!(e, Event::TasksWaitingForSlots { .. })).await;
        let failing = time_of(&seen, |e| matches!(e, Event::JobFailing { reason } if reason.contains("tolerable"))).expect("the expiry fails the job");
        let (lost_at, _, detection) = lost(&seen, "tm-2");
        assert_eq!(detection, Detection::HeartbeatTimeout);
        assert!(failing + DELAY_MS < lost_at, "the failover comes first: {failing} vs {lost_at}");
        let waiting = time_of(&seen, |e| matches!(e, Event::TasksWaitingForSlots { .. })).expect("waiting");
        assert_eq!(waiting, lost_at, "max(failure + delay, cancellation) = the cancellation, at the loss");
        // The event announces that moment, as the status line's countdown does (issue 25 §7: the
        // event said the strategy's delay while the status counted down the cancellation).
        // Catches: `wait_ms` = the strategy's delay.
        let (at, delay_ms, wait_ms, text) = seen
            .iter()
            .find_map(|e| match &e.event {
                Event::JobRestarting { delay_ms, wait_ms, .. } => Some((e.t_ms, *delay_ms, *wait_ms, e.event.describe())),
                _ => None,
            })
            .expect("a restart is scheduled");
        assert_eq!((delay_ms, at + wait_ms), (DELAY_MS, lost_at), "{text}");
        assert!(text.contains(&format!("restarting in {wait_ms} ms")) && text.contains("cancellation"), "{text}");
        assert!(
            !seen.iter().any(|e| matches!(&e.event, Event::JobFailing { reason } if reason.contains("deploying"))),
            "no restart deployed to the hung TM"
        );
        engine.shutdown().await;
    });
}

/// A hung process can still be killed (its connections close then: the peers fail at once, and
/// the failed RPCs start counting); it cannot be started again while it runs.
#[test]
fn a_hung_tm_can_be_killed_but_not_started_and_a_kill_then_counts_failed_rpcs() {
    common::paused(async {
        let (engine, mut rx) = start(&[]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::HangTaskManager("tm-2".into()));
        engine.command(Command::StartTaskManager(Some("tm-2".into())));
        engine.command(Command::HangTaskManager("tm-2".into()));
        engine.command(Command::KillTaskManager("tm-2".into()));
        let seen = collect_until(&mut rx, 30, |e| matches!(e, Event::TaskManagerLost { .. })).await;
        let refused: Vec<(String, String)> = seen
            .iter()
            .filter_map(|e| match &e.event {
                Event::ConfigRejected { key, reason } => Some((key.clone(), reason.clone())),
                _ => None,
            })
            .collect();
        assert!(refused.iter().any(|(k, r)| k == "start" && r.contains("hangs")), "{refused:?}");
        assert!(refused.iter().any(|(k, r)| k == "hang" && r.contains("hangs already")), "{refused:?}");
        let killed = time_of(&seen, |e| matches!(e, Event::TaskManagerKilled { tm, .. } if tm == "tm-2")).expect("killed");
        assert_eq!(time_of(&seen, |e| matches!(e, Event::JobFailing { .. })), Some(killed), "its peers fail at once");
        let (at, _, detection) = lost(&seen, "tm-2");
        assert_eq!(detection, Detection::RpcFailures { threshold: THRESHOLD as u32 });
        assert!(at - killed <= THRESHOLD * INTERVAL_MS);
        engine.shutdown().await;
    });
}

/// Flink refuses a heartbeat timeout below the interval and a threshold of 0
/// (HeartbeatServicesImpl.java:45-55); so does ckptlab, naming the key.
#[test]
fn heartbeat_options_are_checked_as_flink_checks_them() {
    for (pairs, key) in [
        (&[("heartbeat.interval", "2s"), ("heartbeat.timeout", "1s")][..], "heartbeat.timeout"),
        (&[("heartbeat.rpc-failure-threshold", "0")][..], "heartbeat.rpc-failure-threshold"),
        (&[("heartbeat.interval", "0ms")][..], "heartbeat.interval"),
    ] {
        let e = common::layers(pairs).build().expect_err("refused").to_string();
        assert!(e.contains(key), "{e}");
    }
    let flink = common::layers(&[]).build().expect("defaults");
    assert_eq!(flink.heartbeat_rpc_failure_threshold, Some(2), "Flink's default");
}

/// Runs a paused-clock test on its own thread and fails it when it has not ended after `secs` of
/// real time: a model whose clock stops (events at one instant, forever) never reaches its own
/// timeouts, so only a real-time watchdog can tell. The bound is minutes above the test's real
/// cost (a few milliseconds), not a timing assertion.
fn within_real_secs(secs: u64, test: impl FnOnce() + Send + 'static) {
    let (done, ended) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        test();
        let _ = done.send(());
    });
    match ended.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => handle.join().expect("test thread"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(handle.join().expect_err("panicked")),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("the model's clock stopped: no end after {secs} s of real time"),
    }
}

/// Under exponential-delay, each restart before the kill is found deploys onto the dead TM and
/// fails, one tick of Flink's millisecond clock later (the unreachable recipient's answer), so
/// it is a new attempt with a longer backoff (ExponentialDelayRestartBackoffTimeStrategy.java:112:
/// only a failure at or before the scheduled restart merges into it), until the loss.
/// Catches: a deployment that fails in the very instant of its restart: merged into the failover
/// that scheduled it, backoff 0, restart and failure repeat at one instant and the kill is never
/// detected (the semantics properties hung on it).
#[test]
fn restarts_onto_a_killed_tm_back_off_until_it_is_found_lost() {
    within_real_secs(120, || {
        common::paused(async {
            let (engine, mut rx) = start(&[
                ("restart-strategy.type", "exponential-delay"),
                ("restart-strategy.exponential-delay.initial-backoff", "50ms"),
                ("restart-strategy.exponential-delay.max-backoff", "800ms"),
                ("restart-strategy.exponential-delay.backoff-multiplier", "2"),
                ("restart-strategy.exponential-delay.jitter-factor", "0"),
            ]);
            common::until(&engine, AwaitCondition::Running, 10).await;
            engine.command(Command::KillTaskManager("tm-2".into()));
            let seen = collect_until(&mut rx, 30, |e| matches!(e, Event::TaskManagerLost { .. })).await;
            let (lost_at, _, _) = lost(&seen, "tm-2");
            let restarts: Vec<(u64, u64)> = seen
                .iter()
                .filter_map(|e| match &e.event {
                    Event::JobRestarting { delay_ms, .. } => Some((e.t_ms, *delay_ms)),
                    _ => None,
                })
                .collect();
            let unreachable: Vec<u64> = seen
                .iter()
                .filter(|e| matches!(&e.event, Event::JobFailing { reason } if reason.contains("RecipientUnreachableException")))
                .map(|e| e.t_ms)
                .collect();
            assert!(!unreachable.is_empty(), "a restart before the loss deployed onto the dead TM: {restarts:?}");
            // Every backoff is a new attempt: 50, 100, 200, 400, 800 ms (max-backoff), never 0.
            for (i, (_, delay)) in restarts.iter().enumerate() {
                assert_eq!(*delay, (50u64 << i.min(4)), "restart {i}'s backoff: {restarts:?}");
            }
            // Each deployment failure comes after the restart whose deployment it ends.
            for w in restarts.windows(2) {
                let (at, delay) = w[0];
                assert!(w[1].0 > at + delay, "the next failure after the restart at {} ms: {restarts:?}", at + delay);
            }
            assert!(lost_at <= time_of(&seen, |e| matches!(e, Event::TaskManagerKilled { .. })).expect("killed") + THRESHOLD * INTERVAL_MS);
            engine.shutdown().await;
        })
    });
}
