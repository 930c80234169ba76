//! The RocksDB backend on the real engine: incremental checkpoints upload a small delta and share
//! SST files by reference count (checked on disk), a killed TM's local directory is gone and the
//! restore rebuilds it, the result matches the heap backend on the same schedule, a damaged
//! latest checkpoint is retried (never replaced by an older one) until the job fails with
//! RocksDB's message, and the backend can be switched while the job runs.

use crate::common;

use crate::common::{checkpoint, referenced, retained, shared_on_disk};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ckptlab::cluster::{Command, Engine};
use ckptlab::events::{Event, EventBus, Stamped};
use ckptlab::scenario::{await_condition, AwaitCondition};
use ckptlab::state::storage::CheckpointMetadata;
use ckptlab::state::StateHandle;

/// A RocksDB engine with its checkpoint directory and TM directories in `dir`.
fn rocks(dir: &Path, incremental: bool, extra: &[(&str, &str)]) -> Engine {
    rocks_on(dir, incremental, extra, EventBus::new(tokio::time::Instant::now()))
}

/// The same, publishing on `bus` (subscribe first to see every event).
fn rocks_on(dir: &Path, incremental: bool, extra: &[(&str, &str)], bus: EventBus) -> Engine {
    let inc = incremental.to_string();
    let mut pairs: Vec<(&str, &str)> = vec![("state.backend.type", "rocksdb"), ("execution.checkpointing.incremental", &inc)];
    pairs.extend_from_slice(extra);
    common::start_on_files(dir, &pairs, bus)
}

async fn caught_up(engine: &Engine) {
    common::until(engine, AwaitCondition::CaughtUp, 600).await;
}

/// Which checkpoint each restart restored (`None`: none, empty state), in order.
fn restores(events: &mut tokio::sync::mpsc::UnboundedReceiver<Stamped>) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::StateRestored { checkpoint, .. } = e.event {
            out.push(checkpoint);
        }
    }
    out
}

fn job_dir(dir: &Path, engine: &Engine) -> PathBuf {
    dir.join("checkpoints").join(engine.job_id())
}

#[test]
fn an_incremental_checkpoint_after_a_few_changes_uploads_a_small_delta() {
    let dir = common::scratch_dir();
    common::paused(async {
        let engine = rocks(dir.path(), true, &[]);
        for i in 0..100_000 {
            engine.produce(&format!("key-{i:06}"), None).unwrap();
        }
        caught_up(&engine).await;
        checkpoint(&engine, 1).await;
        for i in 0..10 {
            engine.produce(&format!("key-{:06}", i * 7919), None).unwrap();
        }
        caught_up(&engine).await;
        checkpoint(&engine, 2).await;
        let h = engine.view(false).checkpoint_history;
        let (first, second) = (&h[h.len() - 2], &h[h.len() - 1]);
        assert_eq!(first.checkpointed_size, first.full_size, "the first checkpoint uploads everything: {first:?}");
        assert!(first.full_size > 500_000, "100,000 keys take real space: {first:?}");
        assert!(
            second.checkpointed_size * 20 < second.full_size,
            "10 changed keys out of 100,000: the delta ({}) is under 5% of the full size ({})",
            second.checkpointed_size,
            second.full_size
        );
        let v = engine.verdict();
        assert_eq!((v.lost, v.overcounted, v.state), (0, 0, 100_010));
        engine.shutdown().await;
    });
}

#[test]
fn dropping_retained_checkpoints_deletes_only_unreferenced_shared_files() {
    let dir = common::scratch_dir();
    common::paused(async {
        let engine = rocks(dir.path(), true, &[("execution.checkpointing.num-retained", "2")]);
        let job = job_dir(dir.path(), &engine);
        let mut reused = false;
        let mut deleted = 0;
        let mut previous: BTreeSet<PathBuf> = BTreeSet::new();
        for round in 0..6u64 {
            for i in 0..2_000 {
                engine.produce(&format!("r{round}-{i}"), None).unwrap();
            }
            caught_up(&engine).await;
            checkpoint(&engine, round + 1).await;
            let metas = retained(&job);
            assert_eq!(metas.len(), (round as usize + 1).min(2), "num-retained = 2");
            let refs = referenced(&metas);
            let disk = shared_on_disk(&job);
            assert_eq!(disk, refs, "round {round}: shared/ holds exactly the files retained checkpoints reference");
            let newest: BTreeSet<PathBuf> = referenced(&metas[metas.len() - 1..]);
            reused |= newest.intersection(&previous).next().is_some();
            deleted += previous.difference(&disk).count();
            previous = disk;
        }
        assert!(reused, "later checkpoints referenced SST files uploaded by earlier ones");
        assert!(deleted > 0, "files only dropped checkpoints referenced were deleted");
        engine.shutdown().await;
    });
}

fn tm_dirs(root: &Path, tm: &str) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path().join(tm)).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}

/// `auto.offset.reset = latest`: an empty database plus a replay of the topic cannot pass for a
/// restore here; only the checkpoint's state and offsets give 5.
#[test]
fn killing_a_task_manager_deletes_its_local_directory_and_the_restore_rebuilds_it() {
    let dir = common::scratch_dir();
    let tm_root = dir.path().join("tm");
    common::paused(async {
        let bus = EventBus::new(tokio::time::Instant::now());
        let mut events = bus.subscribe();
        let engine = rocks_on(dir.path(), false, &[("source.auto-offset-reset", "latest")], bus);
        common::until(&engine, AwaitCondition::Running, 10).await;
        for k in ["a", "b", "c", "d"] {
            engine.produce(k, None).unwrap();
        }
        caught_up(&engine).await;
        checkpoint(&engine, 1).await;
        assert_eq!(tm_dirs(&tm_root, "tm-1").len(), 1, "tm-1 has a local directory with its RocksDB");
        engine.command(Command::KillTaskManager("tm-1".into()));
        common::sleep_ms(50).await;
        assert!(tm_dirs(&tm_root, "tm-1").is_empty(), "the dead TM's disk is gone");
        engine.produce("e", None).unwrap();
        engine.command(Command::StartTaskManager(Some("tm-1".into())));
        caught_up(&engine).await;
        assert_eq!(tm_dirs(&tm_root, "tm-1").len(), 1, "rebuilt from the checkpoint");
        let v = engine.verdict();
        assert_eq!((v.lost, v.overcounted, v.state), (0, 0, 5));
        let restored = restores(&mut events);
        assert!(!restored.is_empty() && restored.iter().all(|c| *c == Some(1)), "every restart restored checkpoint 1: {restored:?}");
        engine.shutdown().await;
    });
    assert!(std::fs::read_dir(&tm_root).map(|mut rd| rd.next().is_none()).unwrap_or(true), "shutdown removes every TM directory");
}

/// The same schedule on the heap backend and on RocksDB (full and incremental): every key's
/// count after a kill and a restore is the same, and right. With `latest`, so that only a restore
/// of the round's checkpoint (state and offsets) gets there: an empty start skips the topic.
#[test]
fn kill_and_restore_give_every_key_the_heap_backends_count() {
    let run = |backend: &str| {
        let dir = common::scratch_dir();
        common::paused(async {
            let bus = EventBus::new(tokio::time::Instant::now());
            let mut events = bus.subscribe();
            let engine = match backend {
                "hashmap" => Engine::start(
                    common::layers(&[
                        ("execution.checkpointing.interval", "1h"),
                        ("execution.checkpointing.storage", "filesystem"),
                        ("execution.checkpointing.dir", &dir.path().display().to_string()),
                        ("ckptlab.hop-delay", "0ms"),
                        ("heartbeat.timeout", "500ms"),
                        ("restart-strategy.type", "fixed-delay"),
                        ("restart-strategy.fixed-delay.attempts", "100"),
                        ("restart-strategy.fixed-delay.delay", "100ms"),
                        ("source.auto-offset-reset", "latest"),
                    ]),
                    bus,
                )
                .expect("engine starts"),
                other => rocks_on(dir.path(), other == "incremental", &[("source.auto-offset-reset", "latest")], bus),
            };
            common::until(&engine, AwaitCondition::Running, 10).await;
            let mut produced = 0;
            for round in 0..3u64 {
                for i in 0..500u64 {
                    engine.produce(&format!("k{}", (i * (round + 3)) % 97), None).unwrap();
                }
                caught_up(&engine).await;
                checkpoint(&engine, round + 1).await;
                for i in 0..50u64 {
                    engine.produce(&format!("k{}", i % 13), None).unwrap();
                }
                engine.command(Command::KillTaskManager(format!("tm-{}", round % 2 + 1)));
                common::sleep_ms(100).await;
                engine.produce("while-down", None).unwrap();
                engine.command(Command::StartTaskManager(Some(format!("tm-{}", round % 2 + 1))));
                caught_up(&engine).await;
                produced += 551;
                let restored = restores(&mut events);
                assert!(
                    !restored.is_empty() && restored.iter().all(|c| *c == Some(round + 1)),
                    "{backend} round {round}: every restart restored checkpoint {}: {restored:?}",
                    round + 1
                );
            }
            let v = engine.verdict();
            assert_eq!(v.state, produced, "{backend}: {v:?}");
            engine.shutdown().await;
            v
        })
    };
    let heap = run("hashmap");
    assert_eq!((heap.lost, heap.overcounted), (0, 0));
    for backend in ["full", "incremental"] {
        let v = run(backend);
        assert_eq!((v.lost, v.overcounted), (0, 0), "rocksdb {backend}");
        let counts = |v: &ckptlab::audit::Verdict| v.keys.iter().map(|(k, kv)| (k.clone(), kv.state)).collect::<Vec<_>>();
        assert_eq!(counts(&v), counts(&heap), "rocksdb {backend}: every key's count equals the heap backend's");
    }
}

/// Overwrites bytes in the middle of every SST file of a checkpoint (same size: only RocksDB's
/// block checksums can tell).
fn damage_ssts(meta: &CheckpointMetadata) -> usize {
    let mut n = 0;
    for h in &meta.keyed {
        if let StateHandle::RocksDb { files, .. } = h {
            for f in files.iter().filter(|f| f.name.ends_with(".sst")) {
                let mut bytes = std::fs::read(&f.path).unwrap();
                let mid = bytes.len() / 3;
                for b in &mut bytes[mid..mid + 64] {
                    *b ^= 0xa5;
                }
                std::fs::write(&f.path, bytes).unwrap();
                n += 1;
            }
        }
    }
    n
}

/// A damaged latest checkpoint is never silently replaced by the older one still retained (Flink
/// removed that tolerance, FLINK-22502): each restart restores it again, and when the restart
/// strategy is exhausted the job is FAILED naming the damaged file (its checksum recorded at upload fails before RocksDB reads it). (This replaces the
/// fallback the test used to lock in.)
#[test]
fn a_damaged_latest_checkpoint_is_retried_never_replaced_and_fails_the_job_naming_the_damaged_file() {
    let dir = common::scratch_dir();
    common::paused(async {
        let bus = EventBus::new(tokio::time::Instant::now());
        let mut events = bus.subscribe();
        let engine = rocks_on(
            dir.path(),
            false,
            &[("execution.checkpointing.num-retained", "2"), ("restart-strategy.fixed-delay.attempts", "2")],
            bus,
        );
        for i in 0..3_000 {
            engine.produce(&format!("k{}", i % 300), None).unwrap();
        }
        caught_up(&engine).await;
        checkpoint(&engine, 1).await;
        for i in 0..3_000 {
            engine.produce(&format!("k{}", i % 300), None).unwrap();
        }
        caught_up(&engine).await;
        checkpoint(&engine, 2).await;
        let job = job_dir(dir.path(), &engine);
        let metas = retained(&job);
        assert_eq!(metas.iter().map(|m| m.checkpoint).collect::<Vec<_>>(), vec![1, 2]);
        assert!(damage_ssts(&metas[1]) > 0);
        engine.command(Command::KillTaskManager("tm-1".into()));
        engine.command(Command::StartTaskManager(Some("tm-1".into())));
        assert!(await_condition(&engine, AwaitCondition::Failed, Duration::from_secs(60)).await, "the job fails");
        let mut seen: Vec<Stamped> = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        let describe = || seen.iter().map(|e| e.event.describe()).collect::<Vec<_>>();
        let failed = seen
            .iter()
            .find_map(|e| match &e.event {
                Event::JobFailed { reason } => Some(reason.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no JobFailed: {:#?}", describe()));
        // The checksum recorded at upload catches the damage before RocksDB reads the file.
        let damaged: Vec<String> = metas[1]
            .keyed
            .iter()
            .flat_map(|h| match h {
                StateHandle::RocksDb { files, .. } => {
                    files.iter().filter(|f| f.name.ends_with(".sst")).map(|f| f.path.display().to_string()).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        assert!(
            failed.contains("could not restore checkpoint 2")
                && failed.contains("is corrupt: checksum mismatch")
                && damaged.iter().any(|p| failed.contains(&format!("{p} is corrupt"))),
            "FAILED naming the damaged file as the cause: {failed}"
        );
        let restored: Vec<Option<u64>> = seen
            .iter()
            .filter_map(|e| match &e.event {
                Event::StateRestored { checkpoint, .. } => Some(*checkpoint),
                _ => None,
            })
            .collect();
        assert!(!restored.is_empty() && restored.iter().all(|c| *c == Some(2)), "only checkpoint 2, never 1 nor empty: {restored:?}");
        // Nothing was deleted or replaced: both checkpoints are still there for the user to choose.
        assert_eq!(retained(&job).iter().map(|m| m.checkpoint).collect::<Vec<_>>(), vec![1, 2]);
        engine.shutdown().await;
    });
}

/// A snapshot that acknowledges after its checkpoint expired is nobody's: its exclusive files and
/// the shared files it uploaded that no retained checkpoint references are deleted (as Flink
/// discards late acks' state); the retained checkpoint's files stay.
#[test]
fn a_snapshot_acknowledged_after_its_checkpoint_expired_leaves_no_files() {
    let dir = common::scratch_dir();
    common::paused(async {
        let bus = EventBus::new(tokio::time::Instant::now());
        let mut events = bus.subscribe();
        let engine = rocks_on(
            dir.path(),
            true,
            &[("ckptlab.delays.source[*]->counter[*]", "1s"), ("execution.checkpointing.tolerable-failed-checkpoints", "10")],
            bus,
        );
        for i in 0..2_000 {
            engine.produce(&format!("k{i}"), None).unwrap();
        }
        caught_up(&engine).await;
        checkpoint(&engine, 1).await;
        for i in 0..2_000 {
            engine.produce(&format!("n{i}"), None).unwrap();
        }
        caught_up(&engine).await;
        engine.command(Command::Set { key: "execution.checkpointing.timeout".into(), value: "300ms".into() });
        engine.command(Command::TriggerCheckpoint);
        let mut discarded = Vec::new();
        let mut expired = false;
        tokio::time::timeout(Duration::from_secs(30), async {
            while discarded.len() < 2 {
                match events.recv().await.expect("events").event {
                    Event::CheckpointAckDiscarded { checkpoint: 2, task } => discarded.push(task),
                    Event::CheckpointFailed { checkpoint: 2, reason } => expired = reason.contains("expired"),
                    _ => {}
                }
            }
        })
        .await
        .expect("both counters' late acks are discarded");
        assert!(expired, "checkpoint 2 expired before the counters acknowledged");
        discarded.sort();
        assert_eq!(discarded, vec!["counter[0]", "counter[1]"]);
        let job = job_dir(dir.path(), &engine);
        assert!(!job.join("chk-2").exists(), "the late snapshot's exclusive files are gone");
        let metas = retained(&job);
        assert_eq!(metas.iter().map(|m| m.checkpoint).collect::<Vec<_>>(), vec![1]);
        assert_eq!(shared_on_disk(&job), referenced(&metas), "shared/ holds only what checkpoint 1 references");
        engine.shutdown().await;
    });
}

#[test]
fn an_unusable_tm_directory_is_refused_at_start_naming_the_option() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let under_a_file = file.path().join("tm").display().to_string();
    let layers = common::layers(&[
        ("state.backend.type", "rocksdb"),
        ("execution.checkpointing.storage", "filesystem"),
        ("taskmanager.tmp-dirs", &under_a_file),
    ]);
    let e = common::paused(async { Engine::start(layers, EventBus::new(tokio::time::Instant::now())).err().expect("refused").to_string() });
    assert!(e.contains("taskmanager.tmp-dirs"), "{e}");
}

#[test]
fn rocksdb_with_jobmanager_storage_is_a_config_error_with_the_fix() {
    let e = common::layers(&[("state.backend.type", "rocksdb")]).build().unwrap_err().to_string();
    assert!(e.contains("state.backend.type") && e.contains("filesystem"), "{e}");
}

// Catches a backend switch that restores a checkpoint into the other backend (Flink refuses
// that): each switch is a stop-with-savepoint in canonical format, the job FINISHED, and a new
// submission on the next backend restoring that savepoint, with every count exact.
#[test]
fn switching_the_backend_is_a_canonical_stop_with_savepoint_and_a_resubmit() {
    let dir = common::scratch_dir();
    common::paused(async {
        let bus = EventBus::new(tokio::time::Instant::now());
        let mut events = bus.subscribe();
        let chk = dir.path().join("checkpoints").display().to_string();
        let sp = dir.path().join("savepoints").display().to_string();
        let tmp = dir.path().join("tm").display().to_string();
        let engine = Engine::start(
            common::layers(&[
                ("execution.checkpointing.dir", &chk),
                ("execution.checkpointing.savepoint-dir", &sp),
                ("taskmanager.tmp-dirs", &tmp),
                ("execution.checkpointing.interval", "1h"),
                ("ckptlab.hop-delay", "0ms"),
                // A start without the savepoint would skip the topic: only the savepoint gives the counts.
                ("source.auto-offset-reset", "latest"),
            ]),
            bus,
        )
        .unwrap();
        common::until(&engine, AwaitCondition::Running, 10).await;
        let mut expected = 0;
        // memory -> rocksdb -> fs -> memory: heap -> RocksDB -> heap -> heap, always through the canonical format.
        for to in ["rocksdb", "fs", "memory"] {
            for i in 0..200 {
                engine.produce(&format!("k{}", i % 17), None).unwrap();
            }
            expected += 200;
            caught_up(&engine).await;
            engine.command(Command::SwitchBackend(to.parse().expect("a seed backend")));
            common::sleep_ms(300).await;
            assert!(await_condition(&engine, AwaitCondition::Running, Duration::from_secs(10)).await, "running again on {to}");
            caught_up(&engine).await;
            assert!(engine.config().backend_label().to_lowercase().contains(if to == "memory" { "jobmanager" } else { to }));
            let v = engine.verdict();
            assert_eq!((v.lost, v.overcounted, v.state), (0, 0, expected), "after switching to {to}");
        }
        let (mut stops, mut finished, mut switched, mut restored, mut paths) = (Vec::new(), 0, Vec::new(), Vec::new(), Vec::new());
        while let Ok(e) = events.try_recv() {
            match e.event {
                Event::SavepointTriggered { checkpoint, stop: true, .. } => stops.push(checkpoint),
                Event::SavepointCompleted { path, .. } => paths.push(path),
                Event::JobFinished { .. } => finished += 1,
                Event::BackendSwitched { checkpoint, note, to, .. } => {
                    assert!(note.starts_with(&format!("stop-with-savepoint (canonical) -> resubmit on {to} from savepoint ")), "{note}");
                    switched.push(checkpoint)
                }
                Event::StateRestored { checkpoint, .. } => restored.push(checkpoint),
                _ => {}
            }
        }
        assert_eq!(finished, 3, "each switch stops the job (FINISHED) before the new submission");
        assert_eq!(switched, stops.iter().copied().map(Some).collect::<Vec<_>>(), "each switch resubmits from its own stop-with-savepoint");
        assert_eq!(restored, switched, "each new submission restores the savepoint it names");
        for p in &paths {
            let m = ckptlab::state::storage::CheckpointStorage::read_metadata(Path::new(p)).unwrap();
            assert_eq!(m.format, Some(ckptlab::state::SavepointFormat::Canonical), "{p}");
            assert!(m.keyed.iter().all(|h| matches!(h, StateHandle::Canonical { .. })), "{p}: {:?}", m.keyed);
        }
        engine.shutdown().await;
    });
}

// Catches a switch that restarts a job with nothing to stop: a FAILED job has no savepoint to
// take, so the next submission runs on the new backend from empty state, and says so.
#[test]
fn switching_the_backend_of_a_failed_job_applies_to_its_next_submission() {
    common::paused(async {
        let bus = EventBus::new(tokio::time::Instant::now());
        let mut events = bus.subscribe();
        let engine = Engine::start(
            common::layers(&[("execution.checkpointing.interval", "off"), ("taskmanager.count", "1"), ("job.parallelism", "1")]),
            bus,
        )
        .unwrap();
        common::until(&engine, AwaitCondition::Running, 10).await;
        engine.command(Command::KillTaskManager("tm-1".into()));
        assert!(await_condition(&engine, AwaitCondition::Failed, Duration::from_secs(60)).await, "no restart strategy without checkpointing");
        engine.command(Command::SwitchBackend("fs".parse().expect("a seed backend")));
        common::sleep_ms(50).await;
        let mut note = None;
        while let Ok(e) = events.try_recv() {
            if let Event::BackendSwitched { checkpoint: None, note: n, .. } = e.event {
                note = Some(n);
            }
        }
        assert!(note.as_deref().is_some_and(|n| n.contains("FAILED") && n.contains("empty state")), "{note:?}");
        assert!(engine.config().backend_label().to_lowercase().contains("filesystem"), "{}", engine.config().backend_label());
        engine.shutdown().await;
    });
}

