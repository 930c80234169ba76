//! The asynchronous snapshot phase (Flink's sync / async split): the task goes on processing
//! records while its snapshot is written, a task killed during the write leaves no checkpoint
//! that could be restored (nor files that nothing deletes), and the figures in the checkpoint
//! history are the two parts' own durations.

use crate::common;

use crate::common::{referenced, retained, shared_on_disk};

use std::path::Path;
use std::time::Duration;

use ckptlab::cluster::{Command, Engine};
use ckptlab::events::{Event, EventBus, Stamped};
use ckptlab::scenario::AwaitCondition;
use tokio::sync::mpsc::UnboundedReceiver;

/// An engine with filesystem checkpoint storage in `dir` (so a snapshot is files), two counters
/// on two task managers, and checkpoints only when the test triggers them.
fn engine(dir: &Path, backend: &[(&str, &str)], bus: EventBus) -> Engine {
    let mut extra: Vec<(&str, &str)> = vec![("job.parallelism", "2"), ("taskmanager.count", "2")];
    extra.extend_from_slice(backend);
    common::start_on_files(dir, &extra, bus)
}

const HEAP: &[(&str, &str)] = &[("state.backend.type", "hashmap")];
const ROCKS_INCREMENTAL: &[(&str, &str)] = &[("state.backend.type", "rocksdb"), ("execution.checkpointing.incremental", "true")];

/// The next event `pick` takes, within 60 s of model time.
async fn next<T>(events: &mut UnboundedReceiver<Stamped>, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let e = events.recv().await.expect("events");
            if let Some(t) = pick(&e.event) {
                return t;
            }
        }
    })
    .await
    .expect("the awaited event came")
}

/// Waits until `task` got a barrier of `checkpoint` on each of its `inputs` channels: its
/// snapshot's synchronous part ran, and its write started.
async fn all_barriers(events: &mut UnboundedReceiver<Stamped>, task: &str, checkpoint: u64, inputs: usize) {
    let mut n = 0;
    next(events, |e| match e {
        Event::BarrierReceived { checkpoint: c, task: t, .. } if *c == checkpoint && t == task => {
            n += 1;
            (n == inputs).then_some(())
        }
        _ => None,
    })
    .await;
}

/// A task manager killed after its counter's synchronous part and before its write was
/// acknowledged: checkpoint 2 fails, nothing of it stays in storage (the discard on the
/// blocking threads is waited for in real time), the job restores checkpoint 1 and ends exact.
fn kill_during_the_write(backend: &[(&str, &str)]) {
    let dir = common::scratch_dir();
    common::paused(async {
        let bus = EventBus::new(tokio::time::Instant::now());
        let mut events = bus.subscribe();
        let engine = engine(dir.path(), backend, bus);
        common::until(&engine, AwaitCondition::Running, 60).await;
        for i in 0..20_000 {
            engine.produce(&format!("k{i}"), None).unwrap();
        }
        common::until(&engine, AwaitCondition::CaughtUp, 600).await;
        common::checkpoint(&engine, 1).await;
        for i in 0..20_000 {
            engine.produce(&format!("n{i}"), None).unwrap();
        }
        common::until(&engine, AwaitCondition::CaughtUp, 600).await;
        engine.command(Command::TriggerCheckpoint);
        all_barriers(&mut events, "counter[0]", 2, 2).await;
        let host = engine.view(false).tasks.into_iter().find(|t| t.name == "counter[0]").expect("counter[0] deployed").tm;
        engine.command(Command::KillTaskManager(host.clone()));
        let mut written_before_the_kill = false;
        next(&mut events, |e| match e {
            Event::SnapshotTaken { checkpoint: 2, task, .. } if task == "counter[0]" => {
                written_before_the_kill = true;
                None
            }
            Event::CheckpointFailed { checkpoint: 2, .. } => Some(()),
            Event::CheckpointCompleted { checkpoint: 2, .. } => panic!("checkpoint 2 completed without counter[0]'s write"),
            _ => None,
        })
        .await;
        assert!(!written_before_the_kill, "the kill landed after counter[0]'s write had finished");
        engine.command(Command::StartTaskManager(Some(host)));
        common::sleep_ms(1000).await;
        common::until(&engine, AwaitCondition::CaughtUp, 600).await;
        // Discards run on blocking threads, in real time: give them up to 10 s (a loaded CI
        // machine once needed more than the 300 ms this waited before).
        let job = dir.path().join("checkpoints").join(engine.job_id());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while job.join("chk-2").exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!job.join("chk-2").exists(), "nothing of the failed checkpoint 2 stays");
        let metas = retained(&job);
        assert_eq!(metas.iter().map(|m| m.checkpoint).collect::<Vec<_>>(), vec![1], "only checkpoint 1 can be restored");
        assert_eq!(shared_on_disk(&job), referenced(&metas), "shared/ holds only what checkpoint 1 references");
        let v = engine.verdict();
        assert!(v.consistent, "{v:?}");
        assert_eq!((v.lost, v.overcounted, v.state), (0, 0, 40_000), "{}", v.summary());
        engine.shutdown().await;
    });
}

#[test]
fn a_kill_during_the_async_write_leaves_no_checkpoint_and_stays_exact_with_heap_state() {
    kill_during_the_write(HEAP);
}

#[test]
fn a_kill_during_the_async_write_leaves_no_checkpoint_and_stays_exact_with_incremental_rocksdb() {
    kill_during_the_write(ROCKS_INCREMENTAL);
}

/// Between the synchronous part (every barrier in) and the end of the write, counter[0] goes on
/// processing records: its output channel sends more, and its checkpoint holds only what came
/// before the barrier (the auditor checks that when the job restores it).
#[test]
fn records_are_processed_while_the_snapshot_is_written() {
    let dir = common::scratch_dir();
    common::paused(async {
        let bus = EventBus::new(tokio::time::Instant::now());
        let mut events = bus.subscribe();
        // Storage at 200 ms per MB: the write lasts well over a hundred milliseconds of model time,
        // so that a synchronous part that held it could not hide under the few milliseconds a
        // loaded machine's copy of the state takes (the paused clock moves on while it copies).
        let mut slow = HEAP.to_vec();
        slow.push(("ckptlab.storage.latency-per-mb", "200ms"));
        let engine = engine(dir.path(), &slow, bus);
        common::until(&engine, AwaitCondition::Running, 60).await;
        // Enough state for a write of several simulated milliseconds (1 ms per 64 KB, at least).
        for i in 0..100_000 {
            engine.produce(&format!("key-{i:06}"), None).unwrap();
        }
        common::until(&engine, AwaitCondition::CaughtUp, 600).await;
        engine.generate(ckptlab::connectors::generator::GeneratorSpec {
            rate: 20_000,
            duration: Some(Duration::from_secs(2)),
            // Two keys on each counter under Flink's key groups (g0, g1 -> counter[1]; g4, g6 -> counter[0]).
            keys: vec!["g0".into(), "g4".into(), "g1".into(), "g6".into()],
            partition: None,
        });
        common::sleep_ms(200).await;
        let sent = |engine: &Engine| {
            engine.view(false).channels.iter().find(|c| c.from == ckptlab::types::TaskId::Counter(0)).map(|c| c.records_sent).expect("counter[0] -> sink")
        };
        engine.command(Command::TriggerCheckpoint);
        all_barriers(&mut events, "counter[0]", 1, 2).await;
        let at_sync = sent(&engine);
        let (bytes, sync_ms, async_ms) = next(&mut events, |e| match e {
            Event::SnapshotTaken { checkpoint: 1, task, bytes, sync_ms, async_ms } if task == "counter[0]" => {
                Some((*bytes, *sync_ms, *async_ms))
            }
            _ => None,
        })
        .await;
        let at_write_end = sent(&engine);
        assert!(bytes > 64 * 1024, "a write of several milliseconds: {bytes} B");
        // The write's simulated latency (1 ms per 64 KB) belongs to the asynchronous part: a task
        // that wrote in its synchronous part (blocked on the upload) would show it in sync_ms.
        let write_ms = (bytes * 200 / (1 << 20)).max(bytes / (64 * 1024));
        assert!(sync_ms < write_ms, "sync {sync_ms} ms holds none of the {write_ms} ms write (async {async_ms} ms)");
        assert!(at_write_end > at_sync, "counter[0] processed records during its write: {at_sync} -> {at_write_end}");
        common::checkpoint(&engine, 1).await;
        // The checkpoint restores to exactly what came before its barrier.
        let host = engine.view(false).tasks.into_iter().find(|t| t.name == "counter[0]").expect("deployed").tm;
        engine.command(Command::KillTaskManager(host.clone()));
        common::sleep_ms(100).await;
        engine.command(Command::StartTaskManager(Some(host)));
        common::sleep_ms(3000).await;
        common::until(&engine, AwaitCondition::CaughtUp, 600).await;
        let v = engine.verdict();
        assert!(v.consistent, "{v:?}");
        assert_eq!((v.lost, v.overcounted), (0, 0), "{}", v.summary());
        engine.shutdown().await;
    });
}
