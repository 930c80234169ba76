//! Failures at awkward moments: during a checkpoint, during alignment, twice in a row; how a
//! killed task manager is detected (its peers at once, the JobManager after failed heartbeat RPCs;
//! a hung one is in tests/it/failure_detection.rs);
//! waiting for slots; and the storage and restore failures that must fail a checkpoint or the
//! job visibly instead of crashing or silently using other state.

use crate::common;

use std::time::Duration;

use ckptlab::cluster::view::{DetectionView, JobStatus};
use ckptlab::cluster::heartbeat::Detection;
use ckptlab::cluster::{Command, Engine};
use ckptlab::connectors::generator::GeneratorSpec;
use ckptlab::events::{Event, Stamped};
use ckptlab::scenario::AwaitCondition;

const BASE: &[(&str, &str)] = &[
    ("execution.checkpointing.mode", "EXACTLY_ONCE"),
    ("heartbeat.timeout", "1s"),
    ("restart-strategy.type", "fixed-delay"),
    ("restart-strategy.fixed-delay.attempts", "100"),
    ("restart-strategy.fixed-delay.delay", "200ms"),
    ("ckptlab.hop-delay", "10ms"),
];

fn start_with(extra: &[(&str, &str)]) -> (Engine, tokio::sync::mpsc::UnboundedReceiver<Stamped>) {
    let mut pairs: Vec<(&str, &str)> = BASE.to_vec();
    pairs.extend_from_slice(extra);
    common::start_with_events(&pairs)
}

fn stream(engine: &Engine, secs: u64) {
    engine.generate(GeneratorSpec {
        rate: 300,
        duration: Some(Duration::from_secs(secs)),
        keys: vec!["a".into(), "b".into(), "c".into()],
        partition: None,
    });
}

async fn wait_for(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Stamped>, pred: impl Fn(&Event) -> bool) -> Event {
    let mut seen = common::events_until(rx, 120, pred)
        .await
        .unwrap_or_else(|seen| panic!("event arrived: none within 120 s; saw: {:#?}", common::described(&seen)));
    seen.pop().expect("the matching event").event
}

async fn restart_all_and_judge(engine: Engine) -> ckptlab::audit::Verdict {
    for tm in ["tm-1", "tm-2"] {
        engine.command(Command::StartTaskManager(Some(tm.into())));
    }
    common::sleep_ms(1500).await;
    common::until(&engine, AwaitCondition::CaughtUp, 300).await;
    let v = engine.verdict();
    engine.shutdown().await;
    v
}

fn assert_exact(v: &ckptlab::audit::Verdict) {
    assert!(v.consistent, "{v:?}");
    assert_eq!((v.lost, v.overcounted), (0, 0), "{v:?}");
    assert_eq!(v.state, v.produced, "{v:?}");
}

#[test]
fn exactly_once_recovers_from_a_kill_during_a_checkpoint() {
    common::paused(async {
        // Slow channels into the counters keep the checkpoint open long enough to strike inside it.
        let (engine, mut rx) = start_with(&[("execution.checkpointing.interval", "1s"), ("ckptlab.delays.source[*]->counter[*]", "400ms")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        stream(&engine, 4);
        wait_for(&mut rx, |e| matches!(e, Event::CheckpointCompleted { .. })).await;
        let id = match wait_for(&mut rx, |e| matches!(e, Event::CheckpointTriggered { .. })).await {
            Event::CheckpointTriggered { checkpoint, .. } => checkpoint,
            _ => unreachable!(),
        };
        common::sleep_ms(100).await;
        assert!(engine.view(false).pending_checkpoints.iter().any(|p| p.id == id), "checkpoint {id} still in progress");
        engine.command(Command::KillTaskManager("tm-2".into()));
        let reason = match wait_for(&mut rx, |e| matches!(e, Event::CheckpointFailed { checkpoint, .. } if *checkpoint == id)).await {
            Event::CheckpointFailed { reason, .. } => reason,
            _ => unreachable!(),
        };
        assert!(reason.contains("tm-2"), "{reason}");
        assert_exact(&restart_all_and_judge(engine).await);
    });
}

#[test]
fn exactly_once_recovers_from_a_kill_during_alignment() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[("execution.checkpointing.interval", "1s"), ("ckptlab.delays.source[1]->counter[*]", "500ms")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        stream(&engine, 5);
        wait_for(&mut rx, |e| matches!(e, Event::CheckpointCompleted { .. })).await;
        wait_for(&mut rx, |e| matches!(e, Event::AlignmentStarted { task, .. } if task.starts_with("counter"))).await;
        common::sleep_ms(100).await;
        let view = engine.view(false);
        assert!(view.channels.iter().any(|c| c.blocked && c.buffered > 0), "a channel is blocked with records held");
        assert!(view.pending_checkpoints.iter().any(|p| !p.aligning.is_empty()));
        engine.command(Command::KillTaskManager("tm-1".into()));
        assert_exact(&restart_all_and_judge(engine).await);
    });
}

#[test]
fn exactly_once_recovers_from_two_kills_in_a_row() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[("execution.checkpointing.interval", "300ms")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        stream(&engine, 6);
        wait_for(&mut rx, |e| matches!(e, Event::CheckpointCompleted { .. })).await;
        engine.command(Command::KillTaskManager("tm-1".into()));
        common::sleep_ms(50).await;
        engine.command(Command::KillTaskManager("tm-2".into()));
        common::sleep_ms(1500).await;
        // Flink's default scheduler: RUNNING again once the restart ran, its tasks SCHEDULED for
        // the slots of both TMs (DefaultScheduler.java:409-413).
        let v = engine.view(false);
        assert_eq!((v.status, v.missing_slots, v.all_tasks_running), (JobStatus::Running, 2, false));
        engine.command(Command::StartTaskManager(Some("tm-1".into())));
        engine.command(Command::StartTaskManager(Some("tm-2".into())));
        common::until(&engine, AwaitCondition::Running, 30).await;
        // Again, right after the restart, before a new checkpoint.
        engine.command(Command::KillTaskManager("tm-2".into()));
        common::sleep_ms(300).await;
        engine.command(Command::StartTaskManager(Some("tm-2".into())));
        assert_exact(&restart_all_and_judge(engine).await);
    });
}

/// The job is RUNNING once every task of the attempt reported running: at most one `JobRunning`
/// per attempt, the first and after the restart alike.
#[test]
fn the_job_reports_running_once_per_attempt_when_every_task_runs() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[("execution.checkpointing.interval", "1s")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.produce("a", None).unwrap();
        common::until(&engine, AwaitCondition::CheckpointCompleted, 10).await;
        engine.command(Command::KillTaskManager("tm-1".into()));
        common::sleep_ms(100).await;
        engine.command(Command::StartTaskManager(Some("tm-1".into())));
        common::sleep_ms(1500).await;
        common::until(&engine, AwaitCondition::CaughtUp, 30).await;
        let mut running = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let Event::JobRunning { attempt } = e.event {
                running.push(attempt);
            }
        }
        let last = *running.last().expect("the job ran");
        assert!(last >= 2, "the kill restarted the job: {running:?}");
        // (An attempt deployed to the dead TM's slots fails before it runs: it has none.)
        assert!(running.windows(2).all(|w| w[0] < w[1]) && running[0] == 1, "at most one JobRunning per attempt, in order: {running:?}");
        engine.shutdown().await;
    });
}

/// As Flink's default scheduler (DefaultScheduler.java:404-413): the failover turns the job
/// RESTARTING, the restart turns it RUNNING again before any slot is found, and its tasks wait
/// SCHEDULED; the periodic trigger keeps running and is refused NOT_ALL_REQUIRED_TASKS_RUNNING.
///
/// Catches: the Adaptive Scheduler's WAITING_FOR_RESOURCES (or RESTARTING) shown while tasks
/// wait; a trigger that silently stops while no task is deployed.
#[test]
fn killing_a_task_manager_leaves_the_job_waiting_for_a_slot() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[("execution.checkpointing.interval", "1s")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::KillTaskManager("tm-1".into()));
        // Declared lost at the second failed heartbeat RPC, 100 to 200 ms after the kill.
        common::sleep_ms(50).await;
        let v = engine.view(false);
        let tm = v.task_managers.iter().find(|t| t.name == "tm-1").unwrap();
        assert!(!tm.alive && tm.heartbeat_timeout_in_ms.is_some_and(|ms| ms > 0 && ms <= 1000), "countdown shown: {tm:?}");
        wait_for(&mut rx, |e| matches!(e, Event::TasksWaitingForSlots { missing_slots: 1 })).await;
        let v = engine.view(false);
        assert_eq!((v.status, v.missing_slots, v.all_tasks_running), (JobStatus::Running, 1, false));
        // The next periodic trigger (an interval after the restart) finds no task running.
        let refused = wait_for(&mut rx, |e| matches!(e, Event::CheckpointTriggerRefused { .. } | Event::CheckpointTriggered { .. })).await;
        assert!(
            matches!(&refused, Event::CheckpointTriggerRefused { reason } if reason.contains("NOT_ALL_REQUIRED_TASKS_RUNNING") && reason.contains("source[0]")),
            "{refused:?}"
        );
        engine.command(Command::StartTaskManager(None));
        wait_for(&mut rx, |e| matches!(e, Event::TaskManagerStarted { tm, .. } if tm == "tm-3")).await;
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.shutdown().await;
    });
}

#[test]
fn restart_strategy_none_fails_the_job_and_resubmit_starts_it_again() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[("execution.checkpointing.interval", "off"), ("restart-strategy.type", "default")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::KillTaskManager("tm-2".into()));
        common::until(&engine, AwaitCondition::Failed, 10).await;
        let reason = match wait_for(&mut rx, |e| matches!(e, Event::JobFailed { .. })).await {
            Event::JobFailed { reason } => reason,
            _ => unreachable!(),
        };
        assert!(reason.contains("restart-strategy none"), "{reason}");
        engine.command(Command::StartTaskManager(Some("tm-2".into())));
        engine.command(Command::Resubmit);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.shutdown().await;
    });
}

#[test]
fn filesystem_storage_writes_flinks_layout_and_keeps_num_retained() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    common::paused(async {
        let (engine, mut rx) = start_with(&[
            ("execution.checkpointing.interval", "200ms"),
            ("execution.checkpointing.storage", "filesystem"),
            ("execution.checkpointing.dir", &format!("file://{d}")),
            ("execution.checkpointing.num-retained", "2"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        for v in ["a", "b", "c"] {
            engine.produce(v, None).unwrap();
        }
        for _ in 0..4 {
            wait_for(&mut rx, |e| matches!(e, Event::CheckpointCompleted { .. })).await;
        }
        let job_dir = dir.path().join(engine.job_id());
        let mut chks: Vec<String> = std::fs::read_dir(&job_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("chk-"))
            .collect();
        chks.sort();
        assert_eq!(chks.len(), 2, "num-retained = 2: {chks:?}");
        assert!(job_dir.join("shared").is_dir() && job_dir.join("taskowned").is_dir());
        for c in chks {
            let chk = job_dir.join(&c);
            assert!(chk.join("_metadata").is_file() && chk.join("counter-0").is_file() && chk.join("counter-1").is_file(), "{c}");
            let meta = ckptlab::state::storage::CheckpointStorage::read_metadata(&chk).unwrap();
            assert_eq!(meta.keyed.len(), 2);
            assert_eq!(meta.offsets.iter().map(|(_, o)| o).sum::<u64>(), 3);
        }
        // The job ends (cancelled) with NO_EXTERNALIZED_CHECKPOINTS, Flink's default: its
        // checkpoints are discarded with it.
        engine.shutdown().await;
        assert!(!job_dir.exists(), "the job's checkpoint directory is deleted when the job ends");
    });
}

#[test]
fn unwritable_checkpoint_dir_fails_checkpoints_visibly_without_crashing() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let bad = file.path().join("sub").display().to_string();
    common::paused(async {
        let (engine, mut rx) = start_with(&[
            ("execution.checkpointing.interval", "200ms"),
            ("execution.checkpointing.storage", "filesystem"),
            ("execution.checkpointing.dir", &bad),
            ("execution.checkpointing.tolerable-failed-checkpoints", "1000"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        let reason = match wait_for(&mut rx, |e| matches!(e, Event::CheckpointFailed { .. })).await {
            Event::CheckpointFailed { reason, .. } => reason,
            _ => unreachable!(),
        };
        assert!(reason.contains("cannot write") && reason.contains("sub"), "{reason}");
        engine.produce("a", None).unwrap();
        common::until(&engine, AwaitCondition::CaughtUp, 10).await;
        assert_eq!(engine.status(), JobStatus::Running);
        assert!(engine.view(false).checkpoint_history.iter().any(|c| c.failure.is_some()));
        engine.shutdown().await;
    });
}

#[test]
fn jobmanager_storage_cap_fails_the_checkpoint_and_then_the_job_when_intolerable() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[("execution.checkpointing.interval", "200ms"), ("ckptlab.jobmanager-max-state-size", "40b")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        for i in 0..20 {
            engine.produce(&format!("key-{i}"), None).unwrap();
        }
        let reason = match wait_for(&mut rx, |e| matches!(e, Event::CheckpointFailed { .. })).await {
            Event::CheckpointFailed { reason, .. } => reason,
            _ => unreachable!(),
        };
        assert!(reason.contains("exceeds jobmanager storage's maximum"), "{reason}");
        // tolerable-failed-checkpoints = 0 (Flink's default): the job fails over.
        let failing = wait_for(&mut rx, |e| matches!(e, Event::JobFailing { .. })).await;
        assert!(matches!(failing, Event::JobFailing { reason } if reason.contains("tolerable")));
        engine.shutdown().await;
    });
}

/// The size of counter[0]'s snapshot of checkpoint 1 on a one-subtask job that counted `keys`,
/// and whether checkpoint 1 completed, under a jobmanager storage cap of `cap`.
fn snapshot_under_cap(cap: &str, keys: usize) -> (Option<u64>, Result<(), String>) {
    common::paused(async {
        let (engine, mut rx) = start_with(&[
            ("execution.checkpointing.interval", "1h"),
            ("job.parallelism", "1"),
            ("taskmanager.count", "1"),
            ("ckptlab.jobmanager-max-state-size", cap),
            ("execution.checkpointing.tolerable-failed-checkpoints", "10"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        for i in 0..keys {
            engine.produce(&format!("key-{i}"), None).unwrap();
        }
        common::until(&engine, AwaitCondition::CaughtUp, 10).await;
        engine.command(Command::TriggerCheckpoint);
        let mut size = None;
        let outcome = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match rx.recv().await.expect("events").event {
                    Event::SnapshotTaken { task, bytes, checkpoint: 1, .. } if task == "counter[0]" => size = Some(bytes),
                    Event::CheckpointCompleted { checkpoint: 1, .. } => return Ok(()),
                    Event::CheckpointFailed { checkpoint: 1, reason } => return Err(reason),
                    _ => {}
                }
            }
        })
        .await
        .expect("checkpoint 1 ends");
        engine.shutdown().await;
        (size, outcome)
    })
}

/// MemoryStateBackend's cap, as Flink checks it (`size > maxSize` fails): a snapshot of exactly
/// the cap is accepted, one byte over is refused with the sizes named.
#[test]
fn the_jobmanager_cap_accepts_a_snapshot_of_exactly_its_size_and_refuses_one_byte_more() {
    let (size, outcome) = snapshot_under_cap("5mb", 30);
    assert_eq!(outcome, Ok(()));
    let size = size.expect("counter[0] snapshotted");
    assert!(size > 100, "{size}");
    let (_, at_cap) = snapshot_under_cap(&format!("{size}b"), 30);
    assert_eq!(at_cap, Ok(()), "a snapshot of exactly the cap ({size} bytes) fits");
    let (_, over) = snapshot_under_cap(&format!("{}b", size - 1), 30);
    let reason = over.expect_err("one byte over the cap fails the checkpoint");
    assert!(reason.contains("exceeds jobmanager storage's maximum") && reason.contains(&size.to_string()), "{reason}");
}

/// `_metadata` is written atomically: under a temporary name, synced, then renamed, so that a
/// checkpoint directory is whole or is not a checkpoint. With the temporary name taken (a
/// directory stands there) the write fails, the checkpoint fails at finalisation, and no
/// `_metadata` appears; a direct write of `_metadata` would complete it.
#[test]
fn metadata_is_written_under_a_temporary_name_so_a_failed_write_leaves_no_checkpoint() {
    let dir = common::scratch_dir();
    let d = dir.path().display().to_string();
    common::paused(async {
        let (engine, mut rx) = start_with(&[
            ("execution.checkpointing.interval", "1h"),
            ("execution.checkpointing.storage", "filesystem"),
            ("execution.checkpointing.dir", &d),
            ("execution.checkpointing.tolerable-failed-checkpoints", "10"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.produce("a", None).unwrap();
        common::until(&engine, AwaitCondition::CaughtUp, 10).await;
        engine.command(Command::TriggerCheckpoint);
        wait_for(&mut rx, |e| matches!(e, Event::CheckpointCompleted { checkpoint: 1, .. })).await;
        let job = dir.path().join(engine.job_id());
        std::fs::create_dir_all(job.join("chk-2").join("_metadata.inprogress").join("x")).unwrap();
        engine.produce("b", None).unwrap();
        engine.command(Command::TriggerCheckpoint);
        let reason = match wait_for(&mut rx, |e| {
            matches!(e, Event::CheckpointFailed { checkpoint: 2, .. } | Event::CheckpointCompleted { checkpoint: 2, .. })
        })
        .await
        {
            Event::CheckpointFailed { reason, .. } => reason,
            other => panic!("checkpoint 2 must fail when its _metadata cannot be written: {other:?}"),
        };
        assert!(reason.contains("_metadata"), "{reason}");
        assert!(!job.join("chk-2").join("_metadata").exists(), "no _metadata for a failed checkpoint");
        assert_eq!(common::retained(&job).iter().map(|m| m.checkpoint).collect::<Vec<_>>(), vec![1]);
        engine.shutdown().await;
    });
}

/// Flink retries the latest completed checkpoint through the restart strategy and never falls
/// back to an older one or to empty state (FLINK-22502): once the strategy is exhausted the job is
/// FAILED with the restore error as its cause. (This replaces the fallback the test used to lock in.)
#[test]
fn a_corrupt_latest_checkpoint_is_retried_then_fails_the_job_with_the_restore_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    common::paused(async {
        let (engine, mut rx) = start_with(&[
            ("execution.checkpointing.interval", "300ms"),
            ("execution.checkpointing.storage", "filesystem"),
            ("execution.checkpointing.dir", &d),
            ("execution.checkpointing.num-retained", "2"),
            ("restart-strategy.fixed-delay.attempts", "3"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        for v in ["a", "b", "c", "d"] {
            engine.produce(v, None).unwrap();
        }
        let mut last = 0;
        for _ in 0..3 {
            if let Event::CheckpointCompleted { checkpoint, .. } =
                wait_for(&mut rx, |e| matches!(e, Event::CheckpointCompleted { .. })).await
            {
                last = checkpoint;
            }
        }
        // Stop checkpointing so `last` stays the newest, then damage it.
        engine.command(Command::Set { key: "execution.checkpointing.interval".into(), value: "off".into() });
        common::sleep_ms(50).await;
        let job = dir.path().join(engine.job_id());
        let chk = job.join(format!("chk-{last}"));
        for f in ["counter-0", "counter-1"] {
            std::fs::write(chk.join(f), b"ckptlab-heap 1\n0000000000000000\n{garbage").unwrap();
        }
        // A new tm-2 at once, so that every restart reaches the restore.
        engine.command(Command::KillTaskManager("tm-2".into()));
        engine.command(Command::StartTaskManager(Some("tm-2".into())));
        let mut restored = Vec::new();
        let mut restore_failures = 0;
        let failed = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match rx.recv().await.expect("events").event {
                    Event::StateRestored { checkpoint, .. } => restored.push(checkpoint),
                    Event::JobFailing { reason } if reason.contains(&format!("could not restore checkpoint {last}")) => {
                        restore_failures += 1
                    }
                    Event::JobFailed { reason } => return reason,
                    _ => {}
                }
            }
        })
        .await
        .expect("the job fails");
        assert!(
            failed.contains(&format!("could not restore checkpoint {last}")) && failed.contains("corrupt") && failed.contains("exhausted"),
            "FAILED with the restore error as its cause: {failed}"
        );
        assert_eq!(engine.status(), JobStatus::Failed);
        assert_eq!(engine.view(false).failure.as_deref(), Some(failed.as_str()));
        assert!(chk.join("_metadata").is_file(), "the damaged checkpoint is still there, not replaced");
        engine.shutdown().await;
        // The kill used one attempt; each of the other two restores the same, latest checkpoint
        // and fails; the third restore failure finds the strategy exhausted.
        assert_eq!(restored, vec![Some(last); 3], "always the latest, never {} nor empty state", last - 1);
        assert_eq!(restore_failures, 3);
    });
}

/// A kill is seen at once by the killed TM's peers (their connections break) and the job fails
/// over without waiting. Every RPC to the dead TM fails at once (RecipientUnreachableException):
/// its tasks' cancellation ends at once, so the restart runs a restart delay after each failure
/// (max(delay, cancellation), DefaultScheduler.java:359-395); each restart is deployed to the dead
/// TM's slot, still offered, and that deployment fails at once too. The JobManager declares the TM
/// lost at the `heartbeat.rpc-failure-threshold`-th failed heartbeat RPC, in
/// ((threshold - 1) x interval, threshold x interval] after the kill, never at `heartbeat.timeout`;
/// from then on the job waits for a slot.
///
/// Catches: a kill found at the heartbeat timeout (the old 25 s here); deployments or
/// cancellations that wait for pekko.ask.timeout (the old 10 s); a restart at cancellation + delay.
#[test]
fn a_killed_tm_is_lost_after_threshold_failed_heartbeats_and_restarts_run_a_delay_after_each_failure() {
    const INTERVAL_MS: u64 = 1_000;
    const THRESHOLD: u64 = 2;
    const TIMEOUT_MS: u64 = 25_000;
    const DELAY_MS: u64 = 200; // BASE's fixed-delay
    const UNREACHABLE_RPC_MS: u64 = 1; // a deployment to a dead TM fails this long after it is sent
    common::paused(async {
        let (engine, mut rx) = start_with(&[
            ("execution.checkpointing.interval", "1s"),
            ("heartbeat.interval", "1s"),
            ("heartbeat.rpc-failure-threshold", "2"),
            ("heartbeat.timeout", "25s"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::KillTaskManager("tm-1".into()));
        let mut seen = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            loop {
                let e = rx.recv().await.expect("events");
                let done = matches!(e.event, Event::TasksWaitingForSlots { .. });
                seen.push(e);
                if done {
                    break;
                }
            }
        })
        .await
        .expect("the job ends up waiting for a slot");
        let at = |pred: &dyn Fn(&Event) -> bool| seen.iter().find(|e| pred(&e.event)).map(|e| e.t_ms);
        let killed = at(&|e| matches!(e, Event::TaskManagerKilled { tm, .. } if tm == "tm-1")).expect("killed");
        let failing: Vec<(u64, String)> = seen
            .iter()
            .filter_map(|e| match &e.event {
                Event::JobFailing { reason } => Some((e.t_ms, reason.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(failing[0].0, killed, "at once, not after a detection: {failing:?}");
        assert!(failing[0].1.contains("connection to TaskManager tm-1 lost"), "{}", failing[0].1);
        let (lost_at, after_ms, detection) = seen
            .iter()
            .find_map(|e| match &e.event {
                Event::TaskManagerLost { tm, after_ms, detection } if tm == "tm-1" => Some((e.t_ms, *after_ms, *detection)),
                _ => None,
            })
            .expect("the JobManager declares tm-1 lost");
        assert_eq!(detection, Detection::RpcFailures { threshold: THRESHOLD as u32 });
        assert_eq!(lost_at - killed, after_ms);
        assert!(
            ((THRESHOLD - 1) * INTERVAL_MS < after_ms) && (after_ms <= THRESHOLD * INTERVAL_MS),
            "lost {after_ms} ms after the kill: in ((threshold - 1) x interval, threshold x interval]"
        );
        assert!(after_ms < TIMEOUT_MS);
        // Every later failure is a deployment to the dead TM's slot, sent one restart delay after
        // the failure before it and failing one unreachable RPC (1 ms) later, never in the
        // restart's own instant (that would merge into the failover that scheduled it), and only
        // until the TM is declared lost.
        let deploys = &failing[1..];
        assert!(!deploys.is_empty(), "a restart before the detection is deployed to the dead slot: {failing:?}");
        for (i, (t, reason)) in deploys.iter().enumerate() {
            assert!(reason.contains("deploying") && reason.contains("tm-1") && reason.contains("RecipientUnreachableException"), "{reason}");
            assert_eq!(*t, killed + (DELAY_MS + UNREACHABLE_RPC_MS) * (i as u64 + 1), "failure {} one restart delay and one RPC after the one before: {failing:?}", i + 1);
            assert!(*t <= lost_at, "no deployment to it once it is lost: {failing:?}");
        }
        let waiting = at(&|e| matches!(e, Event::TasksWaitingForSlots { .. })).expect("waiting");
        assert!(waiting >= lost_at && waiting <= lost_at + DELAY_MS, "the next restart finds its slot gone: {waiting} vs {lost_at}");
        engine.command(Command::StartTaskManager(Some("tm-1".into())));
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.shutdown().await;
    });
}

/// A TM started under the name of one that died is a new process: the JobManager still declares
/// the old one lost at its heartbeat timeout, not when the new one registers.
#[test]
fn starting_a_tm_does_not_detect_its_dead_predecessor() {
    common::paused(async {
        // Detection after 2 failed heartbeats 500 ms apart: in (500, 1000] ms after the kill.
        let (engine, mut rx) = start_with(&[("execution.checkpointing.interval", "500ms"), ("heartbeat.interval", "500ms")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        stream(&engine, 1);
        wait_for(&mut rx, |e| matches!(e, Event::CheckpointCompleted { .. })).await;
        engine.command(Command::KillTaskManager("tm-1".into()));
        engine.command(Command::StartTaskManager(Some("tm-1".into())));
        common::sleep_ms(300).await;
        let v = engine.view(false);
        let rows: Vec<_> = v.task_managers.iter().filter(|t| t.name == "tm-1").collect();
        assert_eq!(rows.len(), 2, "the old incarnation (dead, not yet detected) and the new one: {rows:?}");
        assert!(rows.iter().any(|t| !t.alive && t.heartbeat_timeout_in_ms.is_some_and(|ms| ms > 0 && ms <= 700)), "{rows:?}");
        assert!(
            rows.iter().any(|t| matches!(t.detection, Some(DetectionView::RpcFailures { threshold: 2, .. }))),
            "the countdown names the failed-RPC detection: {rows:?}"
        );
        assert!(rows.iter().any(|t| t.alive));
        let lost = match wait_for(&mut rx, |e| matches!(e, Event::TaskManagerLost { tm, .. } if tm == "tm-1")).await {
            Event::TaskManagerLost { after_ms, .. } => after_ms,
            _ => unreachable!(),
        };
        assert!(lost > 500 && lost <= 1000, "detected by 2 failed heartbeat RPCs, not when the new one started: {lost} ms");
        common::sleep_ms(10).await;
        assert_eq!(engine.view(false).task_managers.iter().filter(|t| t.name == "tm-1").count(), 1, "the lost one is gone from the view");
        common::until(&engine, AwaitCondition::CaughtUp, 30).await;
        assert_exact(&engine.verdict());
        engine.shutdown().await;
    });
}

/// Waiting for slots ends after `slot.request.timeout` with a failure that uses a restart attempt.
#[test]
fn waiting_for_slots_fails_after_slot_request_timeout_and_uses_a_restart_attempt() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[
            ("execution.checkpointing.interval", "1s"),
            ("heartbeat.timeout", "100ms"),
            ("slot.request.timeout", "2s"),
            ("restart-strategy.fixed-delay.attempts", "2"),
            ("restart-strategy.fixed-delay.delay", "100ms"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::KillTaskManager("tm-1".into()));
        wait_for(&mut rx, |e| matches!(e, Event::TasksWaitingForSlots { .. })).await;
        let waiting_at = engine.view(false).time_ms;
        let timeout = wait_for(&mut rx, |e| matches!(e, Event::JobFailing { .. })).await;
        assert!(matches!(&timeout, Event::JobFailing { reason } if reason.contains("slot.request.timeout = 2s")), "{timeout:?}");
        let after = engine.view(false).time_ms - waiting_at;
        assert!((2000..2100).contains(&after), "after slot.request.timeout: {after} ms");
        // The kill used attempt 1, this timeout attempt 2; the next one exhausts the strategy.
        let failed = match wait_for(&mut rx, |e| matches!(e, Event::JobFailed { .. })).await {
            Event::JobFailed { reason } => reason,
            _ => unreachable!(),
        };
        assert!(failed.contains("slot.request.timeout") && failed.contains("exhausted its 2 attempt"), "{failed}");
        engine.shutdown().await;
    });
}

/// A checkpoint directory that cannot be written (a full disk, here a file where a directory
/// should be): an await that times out says why, the job's failover cause quoting the OS error
/// of the failed checkpoints, in the run's last lines (it said only "timed out" before).
#[test]
fn an_await_that_times_out_says_why_the_checkpoints_failed() {
    let dir = tempfile::tempdir().unwrap();
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, b"a file").unwrap();
    let blocked_text = blocked.display().to_string();
    common::paused(async {
        let (engine, _rx) = start_with(&[
            ("execution.checkpointing.storage", "filesystem"),
            ("execution.checkpointing.dir", blocked_text.as_str()),
            ("execution.checkpointing.interval", "100ms"),
        ]);
        let s = ckptlab::scenario::Scenario::parse(
            "name = \"full\"\n[[steps]]\nproduce = [\"a\"]\n[[steps]]\nawait = \"checkpoint-completed\"\ntimeout = \"2s\"\n",
            "full.toml",
        )
        .unwrap();
        let report = ckptlab::scenario::run(&s, &engine, |_| {}).await;
        engine.shutdown().await;
        let line = report.failures.iter().find(|f| f.contains("await checkpoint-completed timed out")).expect("the await timed out");
        assert!(line.contains("Not a directory (os error 20)") && line.contains(&blocked_text), "the OS error and the path: {line}");
        assert!(line.contains("failed"), "{line}");
    });
}

/// Stop-with-savepoint as Flink 2 does it: each source stops emitting and then takes the
/// savepoint (SourceOperatorStreamTask.java:198-212), so nothing is read after its barrier; and
/// the job is FINISHED only when every task has handled the savepoint's notification, so the
/// transactional sink has committed everything up to it.
///
/// Catches: sources that go on reading after the barrier (the old 100 ms grace before the job
/// was cancelled: positions past the savepoint's offsets); a job ended before its sink committed.
#[test]
fn stop_with_savepoint_stops_the_sources_at_its_barrier_and_finishes_once_the_sink_committed() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[("execution.checkpointing.interval", "500ms"), ("job.sink", "transactional")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        stream(&engine, 30);
        common::sleep_ms(1_200).await;
        engine.command(Command::TriggerSavepoint { stop: true, format: ckptlab::state::SavepointFormat::Canonical });
        let path = match wait_for(&mut rx, |e| matches!(e, Event::SavepointCompleted { .. })).await {
            Event::SavepointCompleted { path, .. } => path,
            e => unreachable!("{e:?}"),
        };
        wait_for(&mut rx, |e| matches!(e, Event::JobFinished { .. })).await;
        // The generator goes on producing; nothing reads it any more.
        common::sleep_ms(500).await;
        let v = engine.view(false);
        engine.shutdown().await;
        assert_eq!(v.status, JobStatus::Finished);
        let path = std::path::Path::new(&path);
        let meta = ckptlab::state::storage::CheckpointStorage::read_metadata(path).expect("the savepoint's _metadata");
        let mut offsets = meta.offsets.clone();
        offsets.sort();
        let positions: Vec<(u32, u64)> = v.partitions.iter().map(|p| (p.partition, p.position)).collect();
        assert_eq!(positions, offsets, "the sources read nothing after the savepoint's barrier: {:?}", v.partitions);
        assert!(v.partitions.iter().all(|p| p.end > p.position), "records came after the savepoint: {:?}", v.partitions);
        // What the sink committed last for each key is the savepoint's count of it.
        let inspection = ckptlab::inspect::inspect(path, usize::MAX).expect("inspect the savepoint");
        let state: std::collections::BTreeMap<String, u64> = inspection.subtasks.iter().flat_map(|t| t.first.clone()).collect();
        let mut committed = std::collections::BTreeMap::new();
        for line in &v.output {
            // "TIME: (key,count)"
            let pair = line.text.split_once(": (").map(|(_, p)| p).expect("a timestamped line");
            let (key, count) = pair.trim_end_matches(')').rsplit_once(',').expect("(key,count)");
            committed.insert(key.to_string(), count.parse::<u64>().expect("a count"));
        }
        assert!(state.values().sum::<u64>() > 0, "the savepoint holds counts: {state:?}");
        assert_eq!(committed, state, "committed output = the savepoint's state");
    });
}

/// A job FINISHED by a stop-with-savepoint is submitted again from that savepoint, as `flink
/// run -s PATH` after `flink stop`: it goes on from the savepoint's offsets with its counts, the
/// sink writes each record once, and the verdict stays whole (the auditor goes on from the
/// savepoint's shadow).
///
/// Catches: a FINISHED job that `resubmit` refuses, or starts from nothing (counts lost: state <
/// produced); a resubmission that reads from the start again (overcounted); one that names no
/// savepoint in its event.
#[test]
fn a_job_stopped_with_a_savepoint_is_resubmitted_from_it_and_judged_whole() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[("execution.checkpointing.interval", "500ms"), ("job.sink", "transactional")]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        stream(&engine, 4);
        common::sleep_ms(1_200).await;
        engine.command(Command::TriggerSavepoint { stop: true, format: ckptlab::state::SavepointFormat::Canonical });
        let (savepoint, path) = match wait_for(&mut rx, |e| matches!(e, Event::SavepointCompleted { .. })).await {
            Event::SavepointCompleted { checkpoint, path, .. } => (checkpoint, path),
            e => unreachable!("{e:?}"),
        };
        wait_for(&mut rx, |e| matches!(e, Event::JobFinished { .. })).await;
        common::sleep_ms(300).await;
        assert_eq!(engine.view(false).status, JobStatus::Finished);
        engine.command(Command::Resubmit);
        let restored = wait_for(&mut rx, |e| matches!(e, Event::RestoredFromSnapshot { .. })).await;
        match &restored {
            Event::RestoredFromSnapshot { path: p, checkpoint, kind, .. } => {
                assert_eq!((p.as_str(), *checkpoint, kind.as_str()), (path.as_str(), savepoint, "savepoint"), "{restored:?}");
            }
            e => unreachable!("{e:?}"),
        }
        common::until(&engine, AwaitCondition::Running, 30).await;
        common::sleep_ms(5_000).await;
        common::until(&engine, AwaitCondition::CaughtUp, 60).await;
        let v = engine.verdict();
        let view = engine.view(false);
        engine.shutdown().await;
        assert_eq!(view.status, JobStatus::Running);
        assert!(v.produced > 1_000, "records came before and after the stop: {v:?}");
        assert_exact(&v);
        assert_eq!(v.repeated_output, 0, "the sink wrote each record once across the stop: {v:?}");
    });
}

/// Waits for the events up to (and with) the first that `last` matches, and returns them all.
async fn events_until(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Stamped>, last: impl Fn(&Event) -> bool) -> Vec<Event> {
    match common::events_until(rx, 120, last).await {
        Ok(seen) => seen.into_iter().map(|e| e.event).collect(),
        Err(seen) => panic!("no such event within 120 s; saw: {:#?}", common::described(&seen)),
    }
}

/// The checkpoints triggered among `events`.
fn triggered(events: &[Event]) -> Vec<u64> {
    events.iter().filter_map(|e| if let Event::CheckpointTriggered { checkpoint, .. } = e { Some(*checkpoint) } else { None }).collect()
}

/// Savepoints and the periodic scheduler, as Flink 2.3: a periodic checkpoint never takes a
/// place a savepoint holds (savepoints are forced past `max-concurrent-checkpoints`, periodic
/// checkpoints wait: CheckpointRequestDecider), and a stop-with-savepoint stops the scheduler
/// first (SchedulerBase.java:1099), so no checkpoint runs beside it. The case that found it: an
/// unaligned checkpoint triggered while the (always aligned) savepoint ran overtook its barrier,
/// the counter took the savepoint's barrier for a stale one, and the savepoint (a backend
/// switch's) waited for its timeout with the sources stopped.
///
/// Catches: a periodic trigger that fires at the time it was scheduled for although a savepoint
/// took the place meanwhile; a stop-with-savepoint beside which checkpoints go on.
#[test]
fn no_checkpoint_is_triggered_beside_a_savepoint_in_its_place_nor_beside_a_stop_with_savepoint() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[
            ("job.parallelism", "1"),
            ("taskmanager.count", "1"),
            ("ckptlab.hop-delay", "0ms"),
            ("execution.checkpointing.interval", "50ms"),
            ("execution.checkpointing.unaligned.enabled", "true"),
            ("execution.checkpointing.aligned-checkpoint-timeout", "0ms"),
            // A queue the aligned savepoint barrier waits behind for longer than an interval.
            ("ckptlab.buffer-records", "4"),
            ("ckptlab.record-cost.counter[0]", "5ms"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.generate(GeneratorSpec { rate: 491, duration: Some(Duration::from_secs(3)), keys: vec!["g0".into(), "g1".into()], partition: None });
        // A plain savepoint first, while the next periodic trigger is already scheduled.
        wait_for(&mut rx, |e| matches!(e, Event::CheckpointCompleted { .. })).await;
        engine.command(Command::TriggerSavepoint { stop: false, format: ckptlab::state::SavepointFormat::Canonical });
        let during = events_until(&mut rx, |e| matches!(e, Event::SavepointCompleted { .. } | Event::SavepointFailed { .. })).await;
        assert!(matches!(during.last(), Some(Event::SavepointCompleted { .. })), "{during:#?}");
        assert_eq!(triggered(&during), Vec::<u64>::new(), "a checkpoint took the savepoint's place (max-concurrent 1)");
        // Then the stop, again with a periodic trigger due.
        wait_for(&mut rx, |e| matches!(e, Event::CheckpointCompleted { .. })).await;
        engine.command(Command::TriggerSavepoint { stop: true, format: ckptlab::state::SavepointFormat::Canonical });
        let stopping = events_until(&mut rx, |e| matches!(e, Event::JobFinished { .. } | Event::SavepointFailed { .. } | Event::JobFailing { .. })).await;
        let status = engine.view(false).status;
        engine.shutdown().await;
        assert!(matches!(stopping.last(), Some(Event::JobFinished { .. })), "{:#?}", stopping.iter().map(Event::describe).collect::<Vec<_>>());
        assert_eq!(triggered(&stopping), Vec::<u64>::new(), "a checkpoint ran beside the stop-with-savepoint");
        assert_eq!(status, JobStatus::Finished);
    });
}

/// A stop-with-savepoint that expires fails the job over, as Flink 2.3 does: the JobManager
/// starts its checkpoint scheduler again (StopWithSavepointTerminationHandlerImpl.java:191-193)
/// and sends the abort to the tasks, and a source, stopped for good by the savepoint, fails on it
/// ("Stop-with-savepoint failed.", StreamTask.java:1575-1576); the restart restores the latest
/// checkpoint, and the result stays exact. The screen says so in the savepoint's failure.
///
/// Catches: an engine that resumes the stopped sources in place (the job then never restarts),
/// one that leaves them stopped (it never catches up), and one that counts the savepoint's
/// expiry toward the tolerable failures (tolerable 0 here: the job would fail over for that).
#[test]
fn an_expired_stop_with_savepoint_fails_the_job_over_to_its_latest_checkpoint() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[
            ("execution.checkpointing.interval", "200ms"),
            ("execution.checkpointing.timeout", "1s"),
            ("ckptlab.buffer-records", "4"),
            ("ckptlab.record-cost.counter[0]", "200ms"),
            ("ckptlab.record-cost.counter[1]", "200ms"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        for i in 0..10 {
            engine.produce(&format!("k{i}"), None).unwrap();
        }
        common::until(&engine, AwaitCondition::CaughtUp, 60).await;
        while rx.try_recv().is_ok() {}
        wait_for(&mut rx, |e| matches!(e, Event::CheckpointCompleted { .. })).await;
        // A queue in front of the counters that the savepoint's aligned barrier waits behind
        // for longer than the timeout (the network buffers hold a dozen records a counter, at
        // 200 ms each).
        for i in 0..200 {
            engine.produce(&format!("k{}", i % 10), None).unwrap();
        }
        common::sleep_ms(100).await;
        engine.command(Command::TriggerSavepoint { stop: true, format: ckptlab::state::SavepointFormat::Canonical });
        let events = events_until(&mut rx, |e| matches!(e, Event::JobRestarting { .. } | Event::JobFinished { .. } | Event::JobFailed { .. })).await;
        let text: Vec<String> = events.iter().map(Event::describe).collect();
        let id = events.iter().find_map(|e| if let Event::SavepointTriggered { checkpoint, .. } = e { Some(*checkpoint) } else { None });
        let failed = events.iter().position(|e| matches!(e, Event::SavepointFailed { .. })).unwrap_or_else(|| panic!("{text:#?}"));
        let Event::SavepointFailed { checkpoint, reason } = &events[failed] else { unreachable!() };
        assert_eq!(Some(*checkpoint), id);
        assert!(reason.contains("expired") && reason.contains("fails over"), "{reason}");
        assert_eq!(triggered(&events[..failed]), Vec::<u64>::new(), "no checkpoint beside the stop-with-savepoint: {text:#?}");
        assert!(
            events[failed..].iter().any(|e| matches!(e, Event::JobFailing { reason } if reason.contains("Stop-with-savepoint failed."))),
            "{text:#?}"
        );
        assert!(matches!(events.last(), Some(Event::JobRestarting { .. })), "{text:#?}");
        engine.command(Command::Set { key: "execution.checkpointing.timeout".into(), value: "10min".into() });
        common::until(&engine, AwaitCondition::CaughtUp, 300).await;
        let v = engine.verdict();
        let status = engine.view(false).status;
        engine.shutdown().await;
        assert_eq!(status, JobStatus::Running);
        assert_exact(&v);
    });
}

/// A stop-with-savepoint that a task declines (its snapshot cannot be written) fails the job
/// over at once: Flink 2.3's CheckpointFailureManager fails the job for a synchronous
/// savepoint's task-level failure (CheckpointFailureManager.java:187-189), whatever the
/// tolerable failures. The restart restores the latest checkpoint and the result stays exact.
///
/// Catches: an engine that lets the job run on after the decline, or counts it as a tolerable
/// checkpoint failure.
#[test]
fn a_stop_with_savepoint_a_task_declines_fails_the_job_over_at_once() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[
            ("execution.checkpointing.interval", "200ms"),
            ("execution.checkpointing.tolerable-failed-checkpoints", "100"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        for i in 0..20 {
            engine.produce(&format!("k{i}"), None).unwrap();
        }
        wait_for(&mut rx, |e| matches!(e, Event::CheckpointCompleted { .. })).await;
        engine.command(Command::TriggerSavepoint { stop: true, format: ckptlab::state::SavepointFormat::Canonical });
        let path = match wait_for(&mut rx, |e| matches!(e, Event::SavepointTriggered { .. })).await {
            Event::SavepointTriggered { path, .. } => std::path::PathBuf::from(path),
            e => unreachable!("{e:?}"),
        };
        // The barrier is still on its way (10 ms a hop): the counters' writes will fail.
        std::fs::remove_dir_all(&path).unwrap();
        std::fs::write(&path, b"not a directory").unwrap();
        let events = events_until(&mut rx, |e| matches!(e, Event::JobRestarting { .. } | Event::JobFinished { .. } | Event::JobFailed { .. })).await;
        let text: Vec<String> = events.iter().map(Event::describe).collect();
        assert!(events.iter().any(|e| matches!(e, Event::SavepointFailed { reason, .. } if reason.contains("declines"))), "{text:#?}");
        assert!(
            events.iter().any(|e| matches!(e, Event::JobFailing { reason } if reason.contains("declined by a task"))),
            "{text:#?}"
        );
        assert!(matches!(events.last(), Some(Event::JobRestarting { .. })), "{text:#?}");
        for i in 0..20 {
            engine.produce(&format!("k{i}"), None).unwrap();
        }
        common::until(&engine, AwaitCondition::CaughtUp, 300).await;
        let v = engine.verdict();
        engine.shutdown().await;
        let _ = std::fs::remove_file(&path);
        assert_exact(&v);
    });
}

/// A job submitted again starts its count of consecutive failed checkpoints at 0, as Flink's new
/// ExecutionGraph has a new CheckpointFailureManager: with one failure tolerated, an expiry
/// before the job FAILED and one after its resubmission do not add up to a failover.
///
/// Catches: a coordinator that carries the failed job's count into the new job.
#[test]
fn a_resubmitted_job_counts_failed_checkpoints_from_zero() {
    common::paused(async {
        let (engine, mut rx) = start_with(&[
            ("execution.checkpointing.interval", "1h"),
            ("execution.checkpointing.timeout", "50ms"),
            ("execution.checkpointing.tolerable-failed-checkpoints", "1"),
            ("restart-strategy.type", "none"),
            ("ckptlab.delays.source[0]->counter[0]", "500ms"),
        ]);
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::TriggerCheckpoint);
        wait_for(&mut rx, |e| matches!(e, Event::CheckpointFailed { .. })).await;
        engine.command(Command::KillTaskManager("tm-1".into()));
        wait_for(&mut rx, |e| matches!(e, Event::JobFailed { .. })).await;
        engine.command(Command::StartTaskManager(Some("tm-1".into())));
        engine.command(Command::Resubmit);
        common::until(&engine, AwaitCondition::Running, 30).await;
        engine.command(Command::TriggerCheckpoint);
        let events = events_until(&mut rx, |e| matches!(e, Event::CheckpointFailed { .. })).await;
        common::sleep_ms(1_000).await;
        let status = engine.view(false).status;
        let restarts = engine.view(false).restarts;
        engine.shutdown().await;
        assert!(events.iter().all(|e| !matches!(e, Event::JobFailing { .. })), "{events:#?}");
        assert_eq!(status, JobStatus::Running, "the new job's first failed checkpoint is tolerated (restarts {restarts})");
    });
}
