//! Checkpoint storage as slow and unreliable as an object store (`ckptlab.storage.*`): its latency
//! shows in the asynchronous phase, its IO failures fail checkpoints and count toward
//! `tolerable-failed-checkpoints` as Flink's CheckpointFailureManager counts them, a live `set`
//! makes it fail for a while and recover, and incremental RocksDB checkpoints, uploading fewer
//! files, pay less for it.

use crate::common;

use ckptlab::cluster::coordinator::{CheckpointStats, CheckpointStatus};
use ckptlab::cluster::view::JobStatus;
use ckptlab::cluster::{Command, Engine};
use ckptlab::events::EventBus;
use ckptlab::scenario::AwaitCondition;

fn engine(dir: &std::path::Path, extra: &[(&str, &str)]) -> Engine {
    let mut pairs: Vec<(&str, &str)> = vec![("job.parallelism", "2"), ("taskmanager.count", "2")];
    pairs.extend_from_slice(extra);
    common::start_on_files(dir, &pairs, EventBus::new(tokio::time::Instant::now()))
}

fn counters(c: &CheckpointStats) -> Vec<u64> {
    c.subtasks.iter().filter(|s| s.task.starts_with("counter")).map(|s| s.async_ms).collect()
}

/// Catches: storage latency that is not paid in the asynchronous part (or is paid on the task,
/// in the synchronous part), or a change that does not reach the running job.
#[test]
fn storage_latency_shows_in_the_async_phase_and_changes_live() {
    let dir = common::scratch_dir();
    common::paused(async {
        let engine = engine(dir.path(), &[("state.backend.type", "hashmap"), ("ckptlab.storage.latency", "300ms")]);
        common::until(&engine, AwaitCondition::Running, 60).await;
        for i in 0..50 {
            engine.produce(&format!("k{i}"), None).unwrap();
        }
        common::until(&engine, AwaitCondition::CaughtUp, 60).await;
        common::checkpoint(&engine, 1).await;
        let slow = engine.view(false).checkpoint_history.last().cloned().expect("checkpoint 1");
        assert!(counters(&slow).iter().all(|a| *a >= 300), "each counter's upload took the latency: {:#?}", slow.subtasks);
        assert!(slow.sync_ms < 300, "the synchronous part does not pay it: {slow:#?}");
        assert!(slow.async_ms >= 300 && slow.duration_ms >= 300);
        engine.command(Command::Set { key: "ckptlab.storage.latency".into(), value: "0ms".into() });
        common::sleep_ms(10).await;
        common::checkpoint(&engine, 2).await;
        let fast = engine.view(false).checkpoint_history.last().cloned().expect("checkpoint 2");
        assert!(counters(&fast).iter().all(|a| *a < 50), "back to a fast disk: {:#?}", fast.subtasks);
        engine.shutdown().await;
    })
}

/// Catches: a storage failure that does not fail the checkpoint (or fails it without a reason a
/// person can read), a failure counter that ignores IO failures (Flink counts
/// CHECKPOINT_ASYNC_EXCEPTION and FINALIZE_CHECKPOINT_FAILURE: CheckpointFailureManager.java
/// :222-257), and storage that does not recover once the failure rate is set back to 0.
#[test]
fn storage_failures_fail_checkpoints_and_count_toward_the_tolerable_limit() {
    let dir = common::scratch_dir();
    common::paused(async {
        let engine = engine(
            dir.path(),
            &[
                ("state.backend.type", "hashmap"),
                ("execution.checkpointing.interval", "200ms"),
                ("execution.checkpointing.tolerable-failed-checkpoints", "2"),
                ("ckptlab.storage.failure-rate", "1.0"),
            ],
        );
        common::until(&engine, AwaitCondition::Running, 60).await;
        for i in 0..20 {
            engine.produce(&format!("k{i}"), None).unwrap();
        }
        // Three counted failures in a row exceed 2: the job fails over.
        let mut v = engine.view(false);
        for _ in 0..600 {
            v = engine.view(false);
            if v.restarts > 0 {
                break;
            }
            common::sleep_ms(10).await;
        }
        assert!(v.restarts > 0, "three storage failures exceed tolerable 2: {:#?}", v.checkpoint_history);
        let failed: Vec<&CheckpointStats> = v.checkpoint_history.iter().filter(|c| c.status == CheckpointStatus::Failed).collect();
        assert!(failed.len() >= 3, "{failed:#?}");
        for c in &failed[..3] {
            let why = c.failure.as_deref().unwrap_or_default();
            assert!(why.contains("checkpoint storage") && why.contains("IO error"), "a reason a person reads: {why}");
            assert!(
                matches!(c.failure_reason.as_deref(), Some("CHECKPOINT_ASYNC_EXCEPTION" | "FINALIZE_CHECKPOINT_FAILURE")),
                "{:?}",
                c.failure_reason
            );
        }
        assert!(v.failure.as_deref().is_some_and(|f| f.contains("tolerable")), "the failover says why: {:?}", v.failure);
        // The storage recovers: checkpoints complete again, and the count is exact.
        engine.command(Command::Set { key: "ckptlab.storage.failure-rate".into(), value: "0".into() });
        common::until(&engine, AwaitCondition::Running, 60).await;
        common::until(&engine, AwaitCondition::CheckpointCompleted, 60).await;
        common::until(&engine, AwaitCondition::CaughtUp, 60).await;
        let v = engine.view(true);
        assert_eq!(v.status, JobStatus::Running);
        let verdict = v.verdict.expect("audited");
        assert_eq!((verdict.lost, verdict.overcounted), (0, 0), "{verdict:#?}");
        engine.shutdown().await;
    })
}

/// Four rocksdb checkpoints, new keys before each, on storage with 100 ms per request and 10
/// requests per second: the asynchronous parts and the bytes written of the last three (the
/// first is full either way), summed, and the last one's full size.
fn rocksdb_on_slow_storage(incremental: bool) -> (u64, u64, u64) {
    let dir = common::scratch_dir();
    common::paused(async {
        let inc = if incremental { "true" } else { "false" };
        let engine = engine(
            dir.path(),
            &[
                ("state.backend.type", "rocksdb"),
                ("execution.checkpointing.incremental", inc),
                ("ckptlab.storage.latency", "100ms"),
                ("ckptlab.storage.requests-per-second", "10"),
            ],
        );
        common::until(&engine, AwaitCondition::Running, 60).await;
        for round in 0..4 {
            for i in 0..200 {
                engine.produce(&format!("r{round}-k{i}"), None).unwrap();
            }
            common::until(&engine, AwaitCondition::CaughtUp, 60).await;
            common::checkpoint(&engine, round + 1).await;
        }
        let history = engine.view(false).checkpoint_history;
        engine.shutdown().await;
        let later = &history[1..];
        let last = history.last().expect("checkpoints");
        (later.iter().map(|c| c.async_ms).sum(), later.iter().map(|c| c.checkpointed_size).sum(), last.full_size)
    })
}

/// Catches: incremental checkpoints that upload every file again (or a storage cost that does
/// not depend on how many files go), so that they would not pay off on slow storage.
#[test]
fn incremental_rocksdb_checkpoints_upload_less_and_finish_sooner_on_slow_storage() {
    let (full_async, full_written, _) = rocksdb_on_slow_storage(false);
    let (inc_async, inc_written, inc_full) = rocksdb_on_slow_storage(true);
    assert!(inc_written < 3 * inc_full, "incremental checkpoints write their deltas: {inc_written} in three, each of {inc_full}");
    assert!(inc_written < full_written, "{inc_written} vs {full_written}");
    assert!(inc_async < full_async, "fewer uploads, less waiting: incremental {inc_async} ms vs full {full_async} ms");
}
