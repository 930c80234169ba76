//! Flink's checkpoint start delay (`checkpointStartDelayNanos`, the web UI's Start Delay): the
//! time from a checkpoint's trigger until its barrier reached a subtask, stamped when the first
//! barrier arrives (CheckpointBarrierHandler.java:168-169). It grows under backpressure, where an
//! aligned barrier waits behind every record queued ahead of it; and an expired checkpoint's
//! subtasks that never acknowledged say where they were: still waiting for the barrier (with the
//! records ahead of it), aligning, or uploading.

use crate::common;

use ckptlab::cluster::coordinator::{CheckpointStats, CheckpointStatus, SubtaskCheckpointStats, Unacknowledged};
use ckptlab::cluster::{Command, Engine};
use ckptlab::events::EventBus;
use ckptlab::scenario::AwaitCondition;

/// Two counters on two task managers, small channels (so queues fill and backpressure the
/// sources), checkpoints on request, uploads taking `latency` each.
fn engine(dir: &std::path::Path, extra: &[(&str, &str)]) -> Engine {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("job.parallelism", "2"),
        ("taskmanager.count", "2"),
        ("state.backend.type", "hashmap"),
        ("ckptlab.channel-capacity", "8"),
        ("ckptlab.buffer-records", "4"),
        ("execution.checkpointing.tolerable-failed-checkpoints", "10"),
    ];
    pairs.extend_from_slice(extra);
    common::start_on_files(dir, &pairs, EventBus::new(tokio::time::Instant::now()))
}

fn subtask<'a>(c: &'a CheckpointStats, name: &str) -> &'a SubtaskCheckpointStats {
    c.subtasks.iter().find(|s| s.task == name).unwrap_or_else(|| panic!("{name} in {c:#?}"))
}

async fn last_completed(engine: &Engine, completed: u64) -> CheckpointStats {
    common::checkpoint(engine, completed).await;
    engine.view(false).checkpoint_history.iter().rev().find(|c| c.status == CheckpointStatus::Completed).cloned().expect("completed")
}

/// Catches: a start delay stamped at the ack (or at the snapshot) instead of the barrier's
/// arrival (it would then hold the 200 ms upload and the alignment), a start delay that does not
/// grow when the barrier waits behind a backlog, and a checkpoint figure that is not the largest
/// of its subtasks'.
#[test]
fn the_start_delay_grows_under_backpressure_and_is_stamped_at_the_barrier() {
    let dir = common::scratch_dir();
    common::paused(async {
        let engine = engine(dir.path(), &[("ckptlab.record-cost.counter[*]", "5ms"), ("ckptlab.storage.latency", "200ms")]);
        common::until(&engine, AwaitCondition::Running, 60).await;
        // Quiet: the barrier meets no queue.
        let quiet = last_completed(&engine, 1).await;
        // A backlog: the channels into the counters fill, the barrier queues behind them.
        for i in 0..2_000 {
            engine.produce(&format!("k{}", i % 16), None).unwrap();
        }
        common::sleep_ms(100).await;
        let loaded = last_completed(&engine, 2).await;
        for c in [&quiet, &loaded] {
            for s in &c.subtasks {
                let ack = s.ack_ms.expect("completed: every subtask acked");
                let delay = s.start_delay_ms.expect("every ack carries its start delay");
                assert!(delay + s.alignment_ms + s.sync_ms + s.async_ms <= ack + 2, "the barrier came before the snapshot and the ack: {s:?}");
            }
            assert_eq!(c.start_delay_ms, c.subtasks.iter().filter_map(|s| s.start_delay_ms).max().unwrap(), "{c:#?}");
        }
        for name in ["counter[0]", "counter[1]"] {
            let (q, l) = (subtask(&quiet, name), subtask(&loaded, name));
            assert!(q.start_delay_ms < Some(20), "quiet: the barrier is there at once: {q:?}");
            assert!(l.start_delay_ms > Some(100), "loaded: it waited behind the records queued ahead of it: {l:?}");
            assert!(l.async_ms >= 200, "the upload is not part of the start delay: {l:?}");
        }
        engine.shutdown().await;
    })
}

/// Catches: an expired checkpoint whose anatomy shows `0 ms` for the subtasks that never
/// acknowledged instead of where each was: the slow counter still waiting for its barrier behind
/// queued records, the sink aligning (the fast counter's barrier came) for as long as it waited.
#[test]
fn an_expired_checkpoint_lists_the_never_acked_subtasks_and_where_each_waited() {
    let dir = common::scratch_dir();
    common::paused(async {
        let engine = engine(dir.path(), &[("ckptlab.record-cost.counter[1]", "20ms"), ("execution.checkpointing.timeout", "500ms")]);
        common::until(&engine, AwaitCondition::Running, 60).await;
        // "a" and "d" are counter[1]'s keys, "b" and "c" counter[0]'s (Flink's key groups).
        for i in 0..1_000 {
            engine.produce(["a", "b", "c", "d"][i % 4], None).unwrap();
        }
        common::sleep_ms(100).await;
        engine.command(Command::TriggerCheckpoint);
        let mut failed = None;
        for _ in 0..300 {
            failed = engine.view(false).checkpoint_history.iter().find(|c| c.status == CheckpointStatus::Failed).cloned();
            if failed.is_some() {
                break;
            }
            common::sleep_ms(10).await;
        }
        let c = failed.expect("the checkpoint expired");
        assert_eq!(c.failure_reason.as_deref(), Some("CHECKPOINT_EXPIRED"));
        let slow = subtask(&c, "counter[1]");
        assert_eq!(slow.ack_ms, None);
        match slow.unacknowledged {
            Some(Unacknowledged::WaitingForBarrier { waited_ms, records_ahead, .. }) => {
                assert!(waited_ms >= 500, "it waited the whole timeout: {slow:?}");
                assert!(records_ahead > 0, "records were queued ahead of its barrier: {slow:?}");
            }
            other => panic!("counter[1] was still waiting for its barrier: {other:?}"),
        }
        let sink = subtask(&c, "sink[0]");
        assert_eq!(sink.ack_ms, None);
        match sink.unacknowledged {
            Some(Unacknowledged::Aligning { .. }) | Some(Unacknowledged::WaitingForBarrier { .. }) => {}
            other => panic!("the sink waited for counter[1]'s barrier: {other:?}"),
        }
        if let Some(Unacknowledged::Aligning { .. }) = sink.unacknowledged {
            assert!(sink.alignment_ms > 0 && sink.start_delay_ms.is_some(), "aligning so far, since its first barrier: {sink:?}");
        }
        assert!(subtask(&c, "counter[0]").ack_ms.is_some(), "the fast counter acknowledged");
        assert!(c.barrier_still_waiting_ms().is_some_and(|w| w >= 500), "{c:#?}");
        engine.shutdown().await;
    })
}
