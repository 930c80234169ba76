//! The compare screen (`ckptlab compare`) as a person sees it: keys -> requests for every cluster,
//! and the screen drawn into TestBackend at 80x24 and 160x48, compared with insta snapshots.
//! The pictures come from a real (paused-clock) engine, with what the screen shows made exact.

use crate::common;

use crate::common::{press, screen};

use std::collections::BTreeMap;

use crossterm::event::KeyCode;

use ckptlab::audit::{KeyVerdict, Verdict};
use ckptlab::cluster::coordinator::{CheckpointCounts, CheckpointStats, CheckpointStatus};
use ckptlab::cluster::view::{ClusterView, JobStatus};
use ckptlab::cluster::{Command, Engine};
use ckptlab::compare::SideMode;
use ckptlab::config::{BackendKind, CheckpointMode, StorageKind};
use ckptlab::events::EventBus;
use ckptlab::scenario::AwaitCondition;
use ckptlab::tui::compare::app::{CompareApp, CompareRequest, SideView};
use ckptlab::tui::keymap::Keymap;
use ckptlab::tui::theme::Theme;

/// A running job's picture, with every figure the screen draws set by hand.
fn base_view() -> ClusterView {
    let mut v = common::paused(async {
        let engine = Engine::start(common::layers(&[]), EventBus::new(tokio::time::Instant::now())).expect("engine starts");
        common::until(&engine, AwaitCondition::Running, 10).await;
        let v = engine.view(false);
        engine.shutdown().await;
        v
    });
    v.time_ms = 9_000;
    v.job_id = "0".repeat(32);
    v.backend = (BackendKind::HashMap, StorageKind::JobManager);
    v.pending_checkpoints.clear();
    v.output.clear();
    for (i, p) in v.partitions.iter_mut().enumerate() {
        p.end = 200 + i as u64;
        p.position = p.end;
    }
    v
}

fn ckpt(id: u64, status: CheckpointStatus, align: u64) -> CheckpointStats {
    CheckpointStats {
        id,
        status,
        mode: CheckpointMode::ExactlyOnce,
        trigger_ms: id * 500,
        duration_ms: 20 + align,
        start_delay_ms: 0,
        alignment_ms: align,
        checkpointed_size: 96,
        full_size: 96,
        offsets: vec![(0, id * 40), (1, id * 40)],
        failure: (status == CheckpointStatus::Failed).then(|| "task failure: tm-2 was killed".to_string()),
        failure_reason: None,
        persisted_size: 0,
        sync_ms: 1,
        async_ms: 3,
        unaligned: false,
        subtasks: Vec::new(),
    }
}

fn verdict(figures: &[(&str, u64, u64, u64, u64)]) -> Verdict {
    let mut keys = BTreeMap::new();
    let mut v = Verdict { consistent: true, audited: true, ..Verdict::default() };
    for (k, expected, state, lost, over) in figures {
        keys.insert(
            k.to_string(),
            KeyVerdict { expected: *expected, state: *state, lost: *lost, overcounted: *over, ..KeyVerdict::default() },
        );
        v.expected += expected;
        v.state += state;
        v.lost += lost;
        v.overcounted += over;
    }
    v.produced = v.expected;
    v.keys = keys;
    v
}

/// After tm-2 was killed in every cluster and started again: every side restarted once.
fn side(mode: SideMode, name: &'static str, base: &ClusterView) -> SideView {
    let mut v = base.clone();
    v.restarts = 1;
    v.status = JobStatus::Running;
    let (label, interval) = match mode {
        SideMode::Off => ("checkpointing off", None),
        m => (if m == SideMode::AtLeastOnce { "AT_LEAST_ONCE every 500ms" } else { "EXACTLY_ONCE every 500ms" }, Some(500)),
    };
    v.checkpointing = label.into();
    v.interval_ms = interval;
    v.mode = mode.mode();
    if interval.is_some() {
        let align = if mode == SideMode::ExactlyOnce { 48 } else { 0 };
        v.checkpoint_history = vec![
            ckpt(1, CheckpointStatus::Completed, align),
            ckpt(2, CheckpointStatus::Completed, align),
            ckpt(3, CheckpointStatus::Failed, 0),
            ckpt(4, CheckpointStatus::Completed, align),
        ];
        v.checkpoint_counts = CheckpointCounts { triggered: 4, completed: 3, failed: 1, restored: 1 };
    } else {
        v.checkpoint_history.clear();
        v.checkpoint_counts = CheckpointCounts::default();
    }
    v.verdict = Some(match mode {
        SideMode::AtLeastOnce => verdict(&[("w", 100, 100, 0, 0), ("x", 100, 105, 0, 5), ("y", 100, 100, 0, 0), ("z", 101, 104, 0, 3)]),
        SideMode::Off => verdict(&[("w", 100, 61, 39, 0), ("x", 100, 58, 42, 0), ("y", 100, 60, 40, 0), ("z", 101, 60, 41, 0)]),
        _ => verdict(&[("w", 100, 100, 0, 0), ("x", 100, 100, 0, 0), ("y", 100, 100, 0, 0), ("z", 101, 101, 0, 0)]),
    });
    SideView { name, label: mode.name().to_string(), mode, view: v }
}

fn two_sides() -> CompareApp {
    let base = base_view();
    let sides = vec![side(SideMode::ExactlyOnce, "left", &base), side(SideMode::AtLeastOnce, "right", &base)];
    CompareApp::new(sides, Keymap::default(), Theme::color())
}

fn three_sides() -> CompareApp {
    let base = base_view();
    let sides =
        vec![side(SideMode::ExactlyOnce, "left", &base), side(SideMode::AtLeastOnce, "middle", &base), side(SideMode::Off, "right", &base)];
    CompareApp::new(sides, Keymap::default(), Theme::color())
}

#[test]
fn one_key_kills_and_starts_the_same_task_manager_in_every_cluster() {
    let mut app = two_sides();
    press(&mut app, KeyCode::Char('2'));
    press(&mut app, KeyCode::Char('k'));
    press(&mut app, KeyCode::Char('s'));
    assert_eq!(
        app.requests,
        vec![
            CompareRequest::Every(Command::KillTaskManager("tm-2".into())),
            CompareRequest::Every(Command::StartTaskManager(Some("tm-2".into())))
        ]
    );
}

#[test]
fn a_typed_record_goes_once_to_the_shared_topic_and_the_slow_channel_to_every_cluster() {
    let mut app = two_sides();
    press(&mut app, KeyCode::Char('i'));
    for c in "k1".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    assert_eq!(app.input.as_deref(), Some("k1"), "k types in input mode, it kills nothing");
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('d'));
    assert_eq!(app.requests[0], CompareRequest::Produce("k1".into()));
    assert!(
        matches!(&app.requests[1], CompareRequest::Every(Command::Set { key, value }) if key == "ckptlab.delays.source[1]->counter[*]" && value == "300ms"),
        "{:?}",
        app.requests
    );
    assert!(app.requests.len() == 2 && app.input.is_none());
}

#[test]
fn the_differing_keys_are_marked() {
    let app = two_sides();
    let rows = app.rows();
    let marked: Vec<&str> = rows.iter().filter(|r| r.differs()).map(|r| r.key.as_str()).collect();
    assert_eq!(marked, ["x", "z", "TOTAL"]);
}

#[test]
fn compare_screen_80x24_after_a_kill() {
    let app = two_sides();
    let s = screen(&app, 80, 24);
    assert!(s.contains("EXACTLY_ONCE") && s.contains("AT_LEAST_ONCE") && s.contains("≠"), "{s}");
    insta::assert_snapshot!("compare_80x24", s);
}

#[test]
fn compare_screen_80x24_three_sides() {
    insta::assert_snapshot!("compare_three_80x24", screen(&three_sides(), 80, 24));
}

#[test]
fn compare_screen_160x48_three_sides() {
    insta::assert_snapshot!("compare_160x48", screen(&three_sides(), 160, 48));
}

/// Issue 23, `--vary job.sink=print,kafka`: one mode on both sides, each headed by its sink, and a
/// line per side with what its output reader sees (the Kafka sink's two readers; print's lines and
/// repeats). Catches headings by the shared mode, and a screen that hides where such sides differ.
#[test]
fn compare_screen_80x24_varied_sinks_show_each_sides_output() {
    let base = base_view();
    let mut print = side(SideMode::ExactlyOnce, "left", &base);
    print.label = "print".into();
    if let Some(v) = print.view.verdict.as_mut() {
        v.output_lines = 412;
        v.repeated_output = 11;
    }
    let mut kafka = side(SideMode::ExactlyOnce, "right", &base);
    kafka.label = "kafka".into();
    kafka.view.output_readers = Some(ckptlab::connectors::kafka_sink::readers::ReadersView {
        topic: "output-topic".into(),
        committed_total: 380,
        uncommitted_total: 412,
        aborted: 11,
        open: 21,
        ..Default::default()
    });
    let app = CompareApp::new(vec![print, kafka], Keymap::default(), Theme::color());
    assert!(app.varied());
    let s = screen(&app, 80, 24);
    assert!(s.contains("out: 412 lines, 11 repeated"), "{s}");
    assert!(s.contains("out output-topic: committed 380, uncommitted 412 (11 aborted, 21 open)"), "{s}");
    assert!(!s.contains("EXACTLY_ONCE  RUNNING"), "headed by sink, not by the mode both run: {s}");
    insta::assert_snapshot!("compare_varied_80x24", s);
    assert!(!two_sides().varied(), "sides by mode show no output line");
}

#[test]
fn compare_help_lists_the_compare_keys() {
    let mut app = two_sides();
    press(&mut app, KeyCode::Char('?'));
    let s = screen(&app, 80, 24);
    assert!(s.contains("kill TM N in every cluster") && s.contains("produce it to the topic"), "{s}");
    press(&mut app, KeyCode::Char('x'));
    assert!(!app.help && !app.quit);
}

#[test]
fn a_terminal_smaller_than_80x24_is_told_so() {
    let s = screen(&two_sides(), 60, 20);
    assert!(s.contains("needs 80x24") && s.contains("60x20"), "{s}");
}

/// Issue 25 §7: the `off` side goes FAILED on the first kill (restart strategy none) and had no
/// key to resubmit it. R resubmits each FAILED side and only those; the side says so.
/// Catches: R sent to every side (the running ones refuse it with a warning), or no R at all.
#[test]
fn r_resubmits_the_failed_sides_only() {
    let mut app = three_sides();
    press(&mut app, KeyCode::Char('R'));
    assert!(app.requests.is_empty() && app.message.contains("no cluster's job is FAILED"), "{}", app.message);
    app.sides[2].view.status = JobStatus::Failed;
    let s = screen(&app, 80, 24);
    assert!(s.contains("FAILED (R resubmits)"), "{s}");
    // Its verdict says FAILED too, not a bare `ok`/`lost` as for a side that runs on.
    assert!(screen(&app, 160, 48).contains("off FAILED"), "{}", screen(&app, 160, 48));
    press(&mut app, KeyCode::Char('R'));
    assert_eq!(app.requests, vec![CompareRequest::Side(2, Command::Resubmit)]);
    assert!(app.message.contains("resubmitted the FAILED job of off"), "{}", app.message);
    press(&mut app, KeyCode::Char('?'));
    assert!(screen(&app, 80, 24).contains("resubmit each cluster's FAILED job"));
}
