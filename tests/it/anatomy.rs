//! A checkpoint's anatomy: the coordinator records per-subtask figures from the acks (an aligned
//! checkpoint under a slow channel shows its alignment on the counters), `ckptlab run --json`
//! carries them, and Enter on the checkpoints pane draws them (insta snapshots).

use crate::common;

use crate::common::press;

use crossterm::event::KeyCode;

use ckptlab::cluster::coordinator::{CheckpointStats, CheckpointStatus, SubtaskCheckpointStats, Unacknowledged};
use ckptlab::cluster::view::ClusterView;
use ckptlab::cluster::Engine;
use ckptlab::config::CheckpointMode;
use ckptlab::events::EventBus;
use ckptlab::scenario::AwaitCondition;
use ckptlab::tui::app::{App, Pane};
use ckptlab::tui::keymap::Keymap;
use ckptlab::tui::theme::Theme;
use ckptlab::tui::popups;

/// Runs a job whose source[1] reaches the counters `slow` late, until two checkpoints completed.
fn run_slow_channel(slow: &str) -> ClusterView {
    common::paused(async {
        let layers = common::layers(&[
            ("execution.checkpointing.interval", "500ms"),
            ("execution.checkpointing.mode", "EXACTLY_ONCE"),
            ("ckptlab.hop-delay", "0ms"),
            ("ckptlab.delays.source[1]->counter[*]", slow),
        ]);
        let engine = Engine::start(layers, EventBus::new(tokio::time::Instant::now())).expect("engine starts");
        common::until(&engine, AwaitCondition::Running, 10).await;
        for i in 0..40 {
            engine.produce(&format!("k{}", i % 4), None).expect("produce");
        }
        common::until(&engine, AwaitCondition::CheckpointCompleted, 10).await;
        common::until(&engine, AwaitCondition::CheckpointCompleted, 10).await;
        let v = engine.view(false);
        engine.shutdown().await;
        v
    })
}

#[test]
fn an_aligned_checkpoint_under_a_slow_channel_records_alignment_on_the_counters() {
    let v = run_slow_channel("300ms");
    let c = v.checkpoint_history.iter().rev().find(|c| c.status == CheckpointStatus::Completed).expect("a completed checkpoint");
    let names: Vec<&str> = c.subtasks.iter().map(|s| s.task.as_str()).collect();
    assert_eq!(names, ["source[0]", "source[1]", "counter[0]", "counter[1]", "sink[0]"], "the job graph's order");
    for s in &c.subtasks {
        let ack = s.ack_ms.expect("a completed checkpoint has every ack");
        assert!(ack <= c.duration_ms, "{s:?} acked after completion at {}", c.duration_ms);
        assert!(s.barrier_ms().is_some_and(|b| b <= ack), "{s:?}");
    }
    let source = |i: usize| &c.subtasks[i];
    let counter = |i: usize| &c.subtasks[2 + i];
    for i in 0..2 {
        assert_eq!(source(i).alignment_ms, 0, "a source has no inputs to align");
        assert!(!source(i).offsets.is_empty(), "a source's part is its offsets");
        assert!(counter(i).alignment_ms > 0, "counter[{i}] waited for source[1]'s late barrier: {:?}", counter(i));
        // The counter acks only once the late barrier came and its snapshot was taken.
        assert!(counter(i).ack_ms >= source(i).ack_ms, "{:?} before {:?}", counter(i), source(i));
        assert!(counter(i).ack_ms.unwrap() >= counter(i).alignment_ms);
    }
    // Alignment dominates: the counters spent longer aligning than snapshotting.
    assert!(c.subtasks.iter().all(|s| s.sync_ms + s.async_ms <= counter(0).alignment_ms.max(counter(1).alignment_ms)), "{:#?}", c.subtasks);
    assert_eq!(c.alignment_ms, counter(0).alignment_ms.max(counter(1).alignment_ms), "the checkpoint's alignment is its slowest subtask's");
    // The offsets the sources acked are the checkpoint's.
    let mut offsets: Vec<(u32, u64)> = c.subtasks.iter().flat_map(|s| s.offsets.clone()).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, c.offsets);
}

#[test]
fn history_written_before_per_subtask_figures_still_loads() {
    let v = run_slow_channel("0ms");
    let mut json = serde_json::to_value(&v.checkpoint_history[0]).unwrap();
    json.as_object_mut().unwrap().remove("subtasks");
    let old: CheckpointStats = serde_json::from_value(json).expect("old JSON loads");
    assert!(old.subtasks.is_empty());
}

// ---------------------------------------------------------------- the popup

fn subtask(task: &str, ack: Option<u64>, align: u64, sync: u64, asy: u64, size: u64, offsets: &[(u32, u64)]) -> SubtaskCheckpointStats {
    SubtaskCheckpointStats {
        task: task.into(),
        ack_ms: ack,
        // What is left before the alignment: when the barrier came.
        start_delay_ms: ack.map(|a| a.saturating_sub(align + sync + asy)),
        alignment_ms: align,
        sync_ms: sync,
        async_ms: asy,
        checkpointed_size: size,
        persisted_size: 0,
        output_size: 0,
        unaligned: false,
        offsets: offsets.to_vec(),
        unacknowledged: None,
    }
}

/// Checkpoint 6 under a 300 ms slow channel: the counters align for ~300 ms.
fn aligned() -> CheckpointStats {
    CheckpointStats {
        id: 6,
        status: CheckpointStatus::Completed,
        mode: CheckpointMode::ExactlyOnce,
        trigger_ms: 3_000,
        duration_ms: 342,
        start_delay_ms: 22,
        alignment_ms: 301,
        checkpointed_size: 412,
        full_size: 412,
        offsets: vec![(0, 120), (1, 98)],
        failure: None,
        failure_reason: None,
        persisted_size: 0,
        sync_ms: 2,
        async_ms: 14,
        unaligned: false,
        subtasks: vec![
            subtask("source[0]", Some(1), 0, 0, 0, 0, &[(0, 120)]),
            subtask("source[1]", Some(1), 0, 0, 0, 0, &[(1, 98)]),
            subtask("counter[0]", Some(318), 301, 2, 14, 206, &[]),
            subtask("counter[1]", Some(316), 299, 1, 13, 206, &[]),
            subtask("sink[0]", Some(342), 20, 0, 0, 0, &[]),
        ],
    }
}

/// Checkpoint 7 expired: counter[1] (slow, backpressured) never got its barrier, 340 records
/// ahead of it; sink[0] got counter[0]'s and was aligning.
fn failed() -> CheckpointStats {
    let mut c = aligned();
    c.id = 7;
    c.status = CheckpointStatus::Failed;
    c.trigger_ms = 3_500;
    c.duration_ms = 1_000;
    c.full_size = 0;
    c.checkpointed_size = 0;
    c.failure = Some("checkpoint expired before completing (execution.checkpointing.timeout = 1s)".into());
    c.subtasks[3] = subtask("counter[1]", None, 0, 0, 0, 0, &[]);
    c.subtasks[3].unacknowledged =
        Some(Unacknowledged::WaitingForBarrier { waited_ms: 1_000, records_ahead: 340, channels_without_barrier: 0 });
    c.subtasks[4] = subtask("sink[0]", None, 0, 0, 0, 0, &[]);
    c.subtasks[4].start_delay_ms = Some(230);
    c.subtasks[4].alignment_ms = 770;
    c.subtasks[4].unacknowledged = Some(Unacknowledged::Aligning { records_ahead: 12, blocked_records: 31 });
    c.alignment_ms = 770;
    c.start_delay_ms = 230;
    c
}

fn app_with(history: Vec<CheckpointStats>) -> App {
    let mut v = run_slow_channel("0ms");
    // Only what is drawn from the engine's picture, made deterministic.
    v.time_ms = 4_000;
    v.job_id = "0".repeat(32);
    v.checkpoint_counts.completed = 1;
    v.checkpoint_counts.failed = 1;
    v.checkpoint_counts.triggered = 2;
    v.checkpoint_history = history;
    v.pending_checkpoints.clear();
    v.channels.iter_mut().for_each(|c| {
        c.in_flight = 0;
        c.barriers.clear();
        c.records_sent = 0;
    });
    v.partitions.iter_mut().for_each(|p| {
        p.end = 0;
        p.position = 0;
    });
    v.output.clear();
    v.verdict = None;
    App::new(v, Keymap::default(), Theme::color(), 10)
}

fn popup(app: &App, width: u16, height: u16) -> String {
    common::pane(width, height, |f, area| popups::anatomy::render(app, f, area))
}

#[test]
fn enter_on_the_checkpoints_pane_opens_the_selected_row_and_any_key_closes_it() {
    let mut app = app_with(vec![aligned(), failed()]);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.anatomy, None, "Enter on the graph pane opens nothing");
    while app.focus != Pane::Checkpoints {
        press(&mut app, KeyCode::Tab);
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.anatomy, Some(7), "the top row is the newest");
    press(&mut app, KeyCode::Char('x'));
    assert_eq!(app.anatomy, None);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.anatomy, Some(6), "down selects the next older one");
    assert!(common::screen(&app, 100, 30).contains("Checkpoint 6"), "the workbench draws the popup");
}

#[test]
fn anatomy_of_an_aligned_checkpoint_under_a_slow_channel() {
    let mut app = app_with(vec![aligned()]);
    app.anatomy = Some(6);
    insta::assert_snapshot!("anatomy_aligned_80x24", popup(&app, 80, 24));
    insta::assert_snapshot!("anatomy_aligned_110x30", popup(&app, 110, 30));
}

#[test]
fn anatomy_of_a_failed_checkpoint_names_the_reason_and_the_missing_ack() {
    let mut app = app_with(vec![aligned(), failed()]);
    app.anatomy = Some(7);
    let s = popup(&app, 80, 24);
    assert!(s.contains("why it failed: checkpoint expired") && s.contains("no ack"), "{s}");
    insta::assert_snapshot!("anatomy_failed_80x24", s);
    let s = popup(&app, 160, 48);
    for said in ["counter[1]: no barrier after 1.0 s; 340 records queued ahead of it", "sink[0]: aligning 770 ms", "start delay > 1.0 s"] {
        assert!(s.contains(said), "{said}: {s}");
    }
    insta::assert_snapshot!("anatomy_failed_160x48", s);
}

/// The checkpoints pane's start delay column: the largest of a checkpoint's subtasks', and `>`
/// the time waited when a barrier never came.
#[test]
fn the_checkpoints_pane_shows_each_checkpoints_start_delay() {
    let app = app_with(vec![aligned(), failed()]);
    // The workbench as a person sees it: the pane among the others.
    let narrow = common::screen(&app, 80, 24);
    let wide = common::screen(&app, 160, 48);
    for s in [&narrow, &wide] {
        assert!(s.contains("delay") && s.contains("22 ms") && s.contains(">1.0 s"), "{s}");
    }
    insta::assert_snapshot!("checkpoints_pane_start_delay_80x24", narrow);
    insta::assert_snapshot!("checkpoints_pane_start_delay_160x48", wide);
}

/// Checkpoint 8, unaligned under backpressure: the sources persisted what their barriers
/// overtook in their output queues, counter[1] what it had received.
fn unaligned() -> CheckpointStats {
    let mut c = aligned();
    c.id = 8;
    c.alignment_ms = 0;
    c.duration_ms = 5;
    c.unaligned = true;
    c.persisted_size = 3_000 + 200;
    for s in &mut c.subtasks {
        s.alignment_ms = 0;
        s.unaligned = true;
        match s.task.as_str() {
            "source[0]" => (s.persisted_size, s.output_size) = (2_000, 2_000),
            "source[1]" => (s.persisted_size, s.output_size) = (1_000, 1_000),
            "counter[1]" => s.persisted_size = 200,
            _ => {}
        }
    }
    c
}

/// Sources persist channel state now, as senders: the popup says which end persisted each
/// subtask's part, and the pane splits the checkpoint's persisted data into output and input.
/// Catches: a view that sums output and input into one figure, or puts a sender's bytes on the
/// receiver.
#[test]
fn an_unaligned_checkpoint_shows_output_and_input_channel_state_per_subtask() {
    let mut app = app_with(vec![unaligned()]);
    app.anatomy = Some(8);
    let screen = popup(&app, 110, 30);
    // The table row, below the subtask's bar.
    let line = |task: &str| screen.lines().filter(|l| l.contains(task)).last().unwrap_or_default().to_string();
    assert!(line("source[0]").contains("+ 2.0 KB in flight (output)"), "{screen}");
    assert!(line("counter[1]").contains("+ 200 B in flight (input)"), "{screen}");
    assert!(!line("counter[0]").contains("in flight"), "{screen}");
    app.anatomy = None;
    let pane = common::pane(160, 12, |f, area| ckptlab::tui::panes::checkpoints::render(&app, f, area));
    assert!(pane.contains("persisted 3.1 KB (out 2.9 KB · in 200 B)"), "{pane}");
}
