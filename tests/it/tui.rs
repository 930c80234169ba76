//! The workbench as a person sees it: key -> action -> state (update tests), and the screen drawn
//! into ratatui's TestBackend, compared with committed insta snapshots, at 80x24 and 160x48, from
//! hand-built (so deterministic) cluster views; plus a real engine run drawn at the end.

use crate::common;

use crate::common::{pane, press, press_mod, screen};

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use ckptlab::connectors::kafka_sink::readers::{LineMark, ReaderLine, ReadersView};
use ckptlab::audit::{KeyVerdict, Verdict};
use ckptlab::cluster::channel::BarrierInFlight;
use ckptlab::cluster::coordinator::{CheckpointCounts, CheckpointStats, CheckpointStatus};
use ckptlab::cluster::task::{OutputLine, TaskId};
use ckptlab::cluster::view::{ChannelView, ClusterView, JobStatus, PartitionView, PendingCheckpointView, SourceView, TaskManagerView, TaskView, TopicKind};
use ckptlab::cluster::Command;
use ckptlab::config::{Alignment, BackendKind, CheckpointMode, CheckpointingMode, StorageKind};
use ckptlab::scenario::AwaitCondition;
use ckptlab::tui::action::Action;
use ckptlab::tui::app::{App, LogKind, Pane, Request};
use ckptlab::tui::keymap::Keymap;
use ckptlab::tui::theme::Theme;
use ckptlab::tui::panes;

// ---------------------------------------------------------------- fixtures

fn channel(from: &str, to: &str, in_flight: i64, barriers: &[u64], blocked: bool, buffered: i64) -> ChannelView {
    ChannelView {
        from: from.parse().unwrap_or_else(|e| panic!("{e}")),
        to: to.parse().unwrap_or_else(|e| panic!("{e}")),
        delay_ms: 0,
        in_flight,
        // Every record on the wire is ahead of the barriers (sent before them).
        barriers: barriers.iter().map(|b| BarrierInFlight { checkpoint: *b, records_ahead: in_flight as u64, overtook: 0 }).collect(),
        blocked,
        buffered,
        backpressured: false,
        records_sent: 10,
    }
}

fn key(subtask: usize, expected: u64, state: u64, lost: u64, overcounted: u64) -> KeyVerdict {
    KeyVerdict { expected, state, lost, lost_no_checkpoint: lost, overcounted, subtask, ..KeyVerdict::default() }
}

fn stats(id: u64, status: CheckpointStatus, trigger_ms: u64, failure: Option<&str>) -> CheckpointStats {
    CheckpointStats {
        id,
        status,
        mode: CheckpointMode::ExactlyOnce,
        trigger_ms,
        duration_ms: 402,
        start_delay_ms: if id % 2 == 0 { 160 } else { 3 },
        alignment_ms: if id % 2 == 0 { 180 } else { 0 },
        checkpointed_size: 96,
        full_size: 96,
        offsets: vec![(0, id * 3), (1, id * 2)],
        failure: failure.map(str::to_string),
        failure_reason: None,
        persisted_size: 0,
        sync_ms: 0,
        async_ms: 0,
        unaligned: false,
        subtasks: Vec::new(),
    }
}

fn line(text: &str, repeat: bool) -> OutputLine {
    OutputLine { text: text.into(), repeat, partition: 0, offset: 0 }
}

/// Both TMs up, checkpoint 7 aligning on counter[1], records and barriers on the wire.
fn running_view() -> ClusterView {
    let mut keys = BTreeMap::new();
    keys.insert("a".to_string(), key(1, 3, 3, 0, 0));
    keys.insert("b".to_string(), key(0, 2, 2, 0, 0));
    keys.insert("c".to_string(), key(1, 1, 1, 0, 0));
    ClusterView {
        time_ms: 12_300,
        job_id: "0".repeat(32),
        job_name: "CheckpointExample".into(),
        status: JobStatus::Running,
        attempt: 1,
        restarts: 0,
        failure: None,
        missing_slots: 0,
        restart_in_ms: None,
        all_tasks_running: true,
        checkpointing: "EXACTLY_ONCE every 1s".into(),
        mode: CheckpointingMode::ExactlyOnce(Alignment::Aligned),
        interval_ms: Some(1000),
        backend: (BackendKind::HashMap, StorageKind::JobManager),
        hop_delay_ms: 200,
        buffer_timeout_ms: Some(100),
        paused: false,
        task_managers: vec![
            TaskManagerView {
                name: "tm-1".into(),
                alive: true,
                lost: false,
                slots: 1,
                heartbeat_timeout_in_ms: None,
                detection: None,
                process: Default::default(),
                tasks: vec![TaskId::Source(0), TaskId::Counter(0), TaskId::Sink],
            },
            TaskManagerView {
                name: "tm-2".into(),
                alive: true,
                lost: false,
                slots: 1,
                heartbeat_timeout_in_ms: None,
                detection: None,
                process: Default::default(),
                tasks: vec![TaskId::Source(1), TaskId::Counter(1)],
            },
        ],
        tasks: vec![
            TaskView {
                task: TaskId::Source(0),
                name: "source[0]".into(),
                tm: "tm-1".into(),
                running: true,
                aligning: None,
                persisting: None,
            },
            TaskView {
                task: TaskId::Counter(0),
                name: "counter[0]".into(),
                tm: "tm-1".into(),
                running: true,
                aligning: None,
                persisting: None,
            },
            TaskView { task: TaskId::Sink, name: "sink[0]".into(), tm: "tm-1".into(), running: true, aligning: None, persisting: None },
            TaskView {
                task: TaskId::Source(1),
                name: "source[1]".into(),
                tm: "tm-2".into(),
                running: true,
                aligning: None,
                persisting: None,
            },
            TaskView {
                task: TaskId::Counter(1),
                name: "counter[1]".into(),
                tm: "tm-2".into(),
                running: true,
                aligning: Some(7),
                persisting: None,
            },
        ],
        channels: vec![
            channel("counter[0]", "sink[0]", 1, &[], false, 0),
            channel("counter[1]", "sink[0]", 0, &[6], false, 0),
            channel("source[0]", "counter[0]", 2, &[7], false, 0),
            channel("source[0]", "counter[1]", 2, &[], true, 2),
            channel("source[1]", "counter[0]", 12, &[], false, 0),
            channel("source[1]", "counter[1]", 1, &[7], false, 0),
        ],
        partitions: vec![
            PartitionView { partition: 0, end: 4, log_start: 0, position: 4, committed: None },
            PartitionView { partition: 1, end: 3, log_start: 0, position: 2, committed: None },
        ],
        pending_checkpoints: vec![PendingCheckpointView {
            id: 7,
            mode: CheckpointMode::ExactlyOnce,
            acks: 3,
            total: 5,
            missing: vec!["counter[1]".into(), "sink[0]".into()],
            aligning: vec!["counter[1]".into()],
            persisting: Vec::new(),
            elapsed_ms: 140,
        }],
        checkpoint_history: vec![
            stats(4, CheckpointStatus::Completed, 4_000, None),
            stats(5, CheckpointStatus::Failed, 5_000, Some("declined by counter[0]: disk full")),
            stats(6, CheckpointStatus::Completed, 6_000, None),
        ],
        checkpoint_counts: CheckpointCounts { triggered: 7, completed: 5, failed: 1, restored: 0 },
        output: vec![
            line("2017-03-17T08:21:51.249: (a,1)", false),
            line("2017-03-17T08:21:51.545: (b,1)", false),
            line("2017-03-17T08:21:52.363: (a,2)", false),
        ],
        generators_running: 0,
        caught_up: false,
        source: SourceView { topic: TopicKind::Embedded, description: "embedded".into() },
        topic_status: None,
        verdict: Some(Verdict {
            produced: 7,
            expected: 6,
            state: 6,
            lost: 0,
            overcounted: 0,
            in_flight: 1,
            repeated_output: 0,
            output_lines: 3,
            keys,
            consistent: true,
            audited: true,
            ..Verdict::default()
        }),
        output_readers: None,
    }
}

/// tm-1 killed and not noticed yet (heartbeat countdown); a record typed meanwhile; an earlier
/// recovery left an overcount and repeated lines (at-least-once).
fn down_view() -> ClusterView {
    let mut v = running_view();
    v.mode = CheckpointingMode::AtLeastOnce;
    v.all_tasks_running = false;
    v.task_managers[0].alive = false;
    v.task_managers[0].heartbeat_timeout_in_ms = Some(3_200);
    for t in v.tasks.iter_mut().filter(|t| t.tm == "tm-1") {
        t.running = false;
    }
    v.tasks[4].aligning = None;
    v.pending_checkpoints.clear();
    v.channels.iter_mut().for_each(|c| {
        c.in_flight = 0;
        c.barriers.clear();
        c.blocked = false;
        c.buffered = 0;
    });
    v.output.push(line("2017-03-17T08:21:53.001: (a,2)", true));
    v.output.push(line("2017-03-17T08:21:53.002: (a,3)", false));
    if let Some(verdict) = v.verdict.as_mut() {
        verdict.keys.insert("a".into(), key(1, 3, 4, 0, 1));
        verdict.state = 7;
        verdict.overcounted = 1;
        verdict.in_flight = 0;
        verdict.repeated_output = 1;
    }
    v.checkpoint_counts.restored = 1;
    v
}

fn app(view: ClusterView) -> App {
    let mut app = App::new(view, Keymap::default(), Theme::color(), 10);
    app.log(0, "CheckpointExample: EXACTLY_ONCE every 1s | hashmap + jobmanager (MemoryStateBackend)".into(), LogKind::Info);
    app.log(4_402, "checkpoint 4 completed in 402 ms".into(), LogKind::Good);
    app.log(5_900, "checkpoint 5 FAILED: declined by counter[0]: disk full".into(), LogKind::Bad);
    app.log(6_402, "checkpoint 6 completed in 402 ms".into(), LogKind::Good);
    app.log(7_000, "checkpoint 7 triggered (EXACTLY_ONCE)".into(), LogKind::Info);
    app
}

fn down_app() -> App {
    let mut a = app(down_view());
    a.log(9_000, "TM tm-1 killed, with source[0], counter[0], sink[0]".into(), LogKind::Bad);
    a.produced("d".into(), 1, 3);
    a
}

// ---------------------------------------------------------------- drawing helpers

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

// ---------------------------------------------------------------- whole-screen snapshots

#[test]
fn screen_running_80x24() {
    insta::assert_snapshot!(screen(&app(running_view()), 80, 24));
}

#[test]
fn screen_running_160x48() {
    insta::assert_snapshot!(screen(&app(running_view()), 160, 48));
}

#[test]
fn screen_tm_down_80x24() {
    insta::assert_snapshot!(screen(&down_app(), 80, 24));
}

#[test]
fn screen_tm_down_160x48() {
    insta::assert_snapshot!(screen(&down_app(), 160, 48));
}

#[test]
fn screen_typing_in_input_mode_80x24() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('i'));
    type_text(&mut a, "hello");
    insta::assert_snapshot!(screen(&a, 80, 24));
}

#[test]
fn screen_help_overlay_80x24() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('?'));
    insta::assert_snapshot!(screen(&a, 80, 24));
}

#[test]
fn screen_help_overlay_160x48() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('?'));
    insta::assert_snapshot!(screen(&a, 160, 48));
}

#[test]
fn screen_too_small_says_so() {
    let s = screen(&app(running_view()), 60, 16);
    assert!(s.contains("The terminal is 60x16; ckptlab needs at least 80x24."), "{s}");
    insta::assert_snapshot!(s);
}

#[test]
fn screen_waiting_for_slots_and_failed_status() {
    let mut v = down_view();
    v.status = JobStatus::Running;
    v.missing_slots = 1;
    v.task_managers[0].heartbeat_timeout_in_ms = None;
    v.task_managers[0].lost = true;
    v.channels.clear();
    let s = screen(&app(v.clone()), 80, 24);
    assert!(s.contains("◌ RUNNING (tasks SCHEDULED: 1 slot missing, s starts a TM)"), "{s}");
    assert!(s.contains("no tasks deployed"), "{s}");
    v.status = JobStatus::Failed;
    let s = screen(&app(v), 80, 24);
    assert!(s.contains("✗ FAILED (R resubmits)"), "{s}");
}

// ---------------------------------------------------------------- pane snapshots

#[test]
fn pane_graph() {
    let a = app(running_view());
    insta::assert_snapshot!("graph_narrow", pane(42, 10, |f, r| panes::graph::render(&a, f, r)));
    insta::assert_snapshot!("graph_wide", pane(80, 10, |f, r| panes::graph::render(&a, f, r)));
    let d = down_app();
    insta::assert_snapshot!("graph_tm_down", pane(42, 10, |f, r| panes::graph::render(&d, f, r)));
}

#[test]
fn pane_state() {
    let a = app(running_view());
    insta::assert_snapshot!("state_running", pane(42, 8, |f, r| panes::state::render(&a, f, r)));
    let d = down_app();
    insta::assert_snapshot!("state_overcounted", pane(42, 8, |f, r| panes::state::render(&d, f, r)));
}

#[test]
fn pane_checkpoints() {
    let a = app(running_view());
    insta::assert_snapshot!("checkpoints_narrow", pane(40, 8, |f, r| panes::checkpoints::render(&a, f, r)));
    insta::assert_snapshot!("checkpoints_wide", pane(90, 8, |f, r| panes::checkpoints::render(&a, f, r)));
}

#[test]
fn pane_output_marks_repeats() {
    let d = down_app();
    let s = pane(44, 7, |f, r| panes::output::render(&d, f, r));
    assert!(s.contains("↻ 2017-03-17T08:21:53.001: (a,2)") && s.contains("↻ 1 repeated"), "{s}");
    insta::assert_snapshot!("output_with_repeat", s);
}

#[test]
fn pane_events() {
    let d = down_app();
    insta::assert_snapshot!("events", pane(60, 7, |f, r| panes::events::render(&d, f, r)));
}

#[test]
fn pane_input_lists_records_produced_while_down() {
    let d = down_app();
    let s = pane(80, 2, |f, r| panes::input::render(&d, f, r));
    assert!(s.contains("produced while down, not read yet: d"), "{s}");
    insta::assert_snapshot!("input_while_down", s);
}

#[test]
fn status_line_fits_one_line_when_wide_and_two_when_narrow() {
    let a = app(running_view());
    assert_eq!(panes::status_line::height(&a, 160), 1);
    assert_eq!(panes::status_line::height(&a, 80), 2);
    let d = down_app();
    let s = pane(80, 2, |f, r| panes::status_line::render(&d, f, r));
    assert!(s.contains("♥ tm-1 silent: lost in 3.2 s"), "the heartbeat countdown is shown: {s}");
    assert!(s.contains("AT_LEAST_ONCE every 1s"), "{s}");
    insta::assert_snapshot!("status_tm_down", s);
}

#[test]
fn footer_keeps_help_and_quit_at_80_columns() {
    let a = app(running_view());
    let s = pane(80, 1, |f, r| panes::footer::render(&a, f, r));
    assert!(s.contains("? help") && s.contains("q quit") && s.contains("k kill"), "{s}");
    let mut a = a;
    press(&mut a, KeyCode::Char('i'));
    let s = pane(80, 1, |f, r| panes::footer::render(&a, f, r));
    assert!(s.contains("Enter produce") && s.contains("Esc back") && s.contains("F5 kill TM"), "input mode hints: {s}");
}

#[test]
fn no_color_theme_marks_meaning_with_symbols() {
    let mut a = App::new(down_view(), Keymap::default(), Theme::mono(), 10);
    a.produced("d".into(), 1, 3);
    let s = screen(&a, 80, 24);
    // verdicts, repeats, killed TMs and barriers read without colour
    for mark in ["✗ overcounted 1", "✓ ok", "↻ ", "✗ tm-1"] {
        assert!(s.contains(mark), "missing {mark:?} in\n{s}");
    }
}

// ---------------------------------------------------------------- update: key -> action -> state

#[test]
fn typing_a_record_in_input_mode_produces_it() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('i'));
    assert!(a.input_mode());
    type_text(&mut a, "kq c");
    assert_eq!(a.input, "kq c", "command keys type in input mode");
    assert!(a.requests.is_empty() && !a.quit);
    press(&mut a, KeyCode::Backspace);
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.requests, vec![Request::Produce("kq".into())]);
    assert_eq!(a.input, "");
    assert!(a.input_mode(), "stays in input mode for the next record");
    press(&mut a, KeyCode::Esc);
    assert_eq!(a.focus, Pane::Graph);
}

#[test]
fn enter_on_an_empty_record_produces_nothing_and_says_why() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('/'));
    press(&mut a, KeyCode::Enter);
    assert!(a.requests.is_empty());
    assert!(a.log.back().is_some_and(|l| l.text.contains("type a record first")));
}

#[test]
fn k_kills_the_selected_task_manager_and_digits_select() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('k'));
    assert_eq!(a.requests, vec![Request::Engine(Command::KillTaskManager("tm-1".into()))]);
    a.requests.clear();
    press(&mut a, KeyCode::Char('2'));
    assert_eq!(a.selected_tm, 1);
    press(&mut a, KeyCode::Char('k'));
    assert_eq!(a.requests, vec![Request::Engine(Command::KillTaskManager("tm-2".into()))]);
    a.requests.clear();
    press(&mut a, KeyCode::Char('7'));
    assert_eq!(a.selected_tm, 1, "no tm-7: the selection stays");
    assert!(a.log.back().is_some_and(|l| l.text.contains("no tm-7")));
}

#[test]
fn s_starts_the_selected_killed_tm_else_a_new_one() {
    let mut a = app(down_view());
    press(&mut a, KeyCode::Char('k'));
    assert!(a.requests.is_empty(), "a dead TM is not killed again");
    press(&mut a, KeyCode::Char('s'));
    assert_eq!(a.requests, vec![Request::Engine(Command::StartTaskManager(Some("tm-1".into())))]);
    a.requests.clear();
    // k after s acts on the TM s started (the picture may not show it yet).
    press(&mut a, KeyCode::Char('k'));
    assert_eq!(a.requests, vec![Request::Engine(Command::KillTaskManager("tm-1".into()))]);
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('s'));
    assert_eq!(a.requests, vec![Request::Engine(Command::StartTaskManager(None))]);
}

#[test]
fn function_keys_work_in_input_mode() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('i'));
    press(&mut a, KeyCode::F(5));
    press(&mut a, KeyCode::F(6));
    press(&mut a, KeyCode::F(7));
    assert_eq!(
        a.requests,
        vec![
            Request::Engine(Command::KillTaskManager("tm-1".into())),
            // F6 right after F5 starts the TM F5 killed (the press, not the stale picture).
            Request::Engine(Command::StartTaskManager(Some("tm-1".into()))),
            Request::Engine(Command::TriggerCheckpoint),
        ]
    );
    assert!(a.input_mode());
    press_mod(&mut a, KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(a.quit, "Ctrl-C quits from input mode");
}

fn sets(a: &App) -> Vec<(String, String)> {
    a.requests
        .iter()
        .filter_map(|r| match r {
            Request::Engine(Command::Set { key, value }) => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn m_cycles_aligned_unaligned_at_least_once_off() {
    let set = |k: &str, v: &str| (k.to_string(), v.to_string());
    // EXACTLY_ONCE aligned -> unaligned
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('m'));
    assert_eq!(sets(&a), vec![set("execution.checkpointing.unaligned.enabled", "true")]);
    // unaligned -> AT_LEAST_ONCE (unaligned off first: it is exactly-once only)
    let mut v = running_view();
    v.mode = CheckpointingMode::ExactlyOnce(Alignment::Unaligned);
    let mut a = app(v);
    press(&mut a, KeyCode::Char('m'));
    assert_eq!(
        sets(&a),
        vec![set("execution.checkpointing.unaligned.enabled", "false"), set("execution.checkpointing.mode", "AT_LEAST_ONCE")]
    );
    let mut v = running_view();
    v.mode = CheckpointingMode::AtLeastOnce;
    let mut a = app(v.clone());
    press(&mut a, KeyCode::Char('m'));
    assert_eq!(sets(&a), vec![set("execution.checkpointing.interval", "off")]);
    // off -> EXACTLY_ONCE aligned at the interval it had before
    a.requests.clear();
    v.interval_ms = None;
    v.mode = CheckpointingMode::Off;
    a.refresh(v);
    press(&mut a, KeyCode::Char('m'));
    assert_eq!(
        sets(&a),
        vec![
            set("execution.checkpointing.unaligned.enabled", "false"),
            set("execution.checkpointing.mode", "EXACTLY_ONCE"),
            set("execution.checkpointing.interval", "1s")
        ]
    );
}

/// Unaligned as a learner sees it: the status line says so, a barrier on the priority lane is
/// drawn ahead of the records it overtook, the pending checkpoint says who persists, and the
/// history shows the persisted in-flight data.
#[test]
fn unaligned_checkpoints_on_screen() {
    let mut v = running_view();
    v.mode = CheckpointingMode::ExactlyOnce(Alignment::Unaligned);
    v.channels[0].barriers = vec![BarrierInFlight { checkpoint: 9, records_ahead: 0, overtook: 5 }];
    v.channels[0].in_flight = 5;
    v.pending_checkpoints[0].aligning.clear();
    v.pending_checkpoints[0].persisting = vec!["counter[1]".into()];
    let mut done = stats(8, CheckpointStatus::Completed, 8_000, None);
    done.unaligned = true;
    done.persisted_size = 2_048;
    v.checkpoint_history.push(done);
    let a = app(v);
    insta::assert_snapshot!("screen_unaligned_160x48", screen(&a, 160, 48));
    insta::assert_snapshot!("checkpoints_unaligned_narrow", pane(40, 8, |f, r| panes::checkpoints::render(&a, f, r)));
}

#[test]
fn plus_and_minus_step_the_interval() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('+'));
    press(&mut a, KeyCode::Char('-'));
    // The second press applies to the 2 s the first asked for, not to the 1 s still drawn.
    assert_eq!(
        sets(&a),
        vec![("execution.checkpointing.interval".into(), "2s".into()), ("execution.checkpointing.interval".into(), "1s".into())]
    );
    let mut v = running_view();
    v.interval_ms = Some(100);
    let mut a = app(v);
    press(&mut a, KeyCode::Char('-'));
    assert!(sets(&a).is_empty(), "100ms is the shortest step");
}

#[test]
fn g_toggles_the_generator_and_capital_g_cycles_its_rate() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('g'));
    assert!(a.generator_on);
    assert!(matches!(&a.requests[..], [Request::StartGenerator(spec)] if spec.rate == 10 && spec.duration.is_none()));
    a.requests.clear();
    press_mod(&mut a, KeyCode::Char('G'), KeyModifiers::SHIFT);
    assert_eq!(a.rate(), 50);
    assert!(matches!(&a.requests[..], [Request::StopGenerator, Request::StartGenerator(spec)] if spec.rate == 50));
    a.requests.clear();
    press(&mut a, KeyCode::Char('g'));
    assert!(!a.generator_on);
    assert_eq!(a.requests, vec![Request::StopGenerator]);
}

#[test]
fn brackets_change_speed_and_space_pauses() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('['));
    press(&mut a, KeyCode::Char(']'));
    assert_eq!(sets(&a), vec![("ckptlab.hop-delay".into(), "500ms".into()), ("ckptlab.hop-delay".into(), "200ms".into())]);
    a.requests.clear();
    press(&mut a, KeyCode::Char(' '));
    assert_eq!(a.requests, vec![Request::Pause(true)]);
}

#[test]
fn tab_moves_focus_and_arrows_scroll_the_focused_pane() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Tab);
    assert_eq!(a.focus, Pane::State);
    press(&mut a, KeyCode::Down);
    assert_eq!(a.scroll_of(Pane::State), 1);
    press(&mut a, KeyCode::BackTab);
    press(&mut a, KeyCode::BackTab);
    assert_eq!(a.focus, Pane::Events);
    press(&mut a, KeyCode::Up);
    assert_eq!(a.scroll_of(Pane::Events), 1, "up in a log goes back in time");
    press(&mut a, KeyCode::Char('j'));
    assert_eq!(a.scroll_of(Pane::Events), 0);
}

#[test]
fn help_opens_with_question_mark_and_any_key_closes_it() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('?'));
    assert!(a.help);
    press(&mut a, KeyCode::Char('k'));
    assert!(!a.help);
    assert!(a.requests.is_empty(), "the key that closes help does nothing else");
    press(&mut a, KeyCode::Char('?'));
    press(&mut a, KeyCode::Char('q'));
    assert!(a.quit);
}

#[test]
fn rebinding_a_key_changes_handling_footer_and_help_alike() {
    let mut keymap = Keymap::default();
    keymap.apply("[command]\nkill = \"x\"\n", "conf/keys.toml").expect("valid keys.toml");
    let mut a = App::new(running_view(), keymap, Theme::color(), 10);
    press(&mut a, KeyCode::Char('x'));
    assert_eq!(a.requests, vec![Request::Engine(Command::KillTaskManager("tm-1".into()))]);
    let foot = pane(80, 1, |f, r| panes::footer::render(&a, f, r));
    assert!(foot.contains("x kill"), "{foot}");
    press(&mut a, KeyCode::Char('?'));
    let help = screen(&a, 80, 24);
    assert!(help.contains(" x 1-9    kill TM; 1-9 select TM N"), "{help}");
    assert_eq!(
        Action::Kill,
        a.keymap.lookup(&KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE), ckptlab::tui::keymap::Context::Command).unwrap()
    );
}

#[test]
fn q_quits() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('q'));
    assert!(a.quit);
}

// ---------------------------------------------------------------- a real engine, drawn

/// The seed's experiment on the real engine (paused clock), then the screen: the output pane shows
/// the records and the state pane's verdict is ok under exactly-once.
#[test]
fn real_engine_recovery_is_drawn_with_an_ok_verdict() {
    common::paused(async {
        let engine = common::start(&[("execution.checkpointing.interval", "1s"), ("heartbeat.timeout", "1s")]);
        let mut a = App::new(engine.view(true), Keymap::default(), Theme::color(), 10);
        common::until(&engine, AwaitCondition::Running, 10).await;
        for r in ["a", "b"] {
            let (p, o) = engine.produce(r, None).expect("produce");
            a.produced(r.into(), p, o);
        }
        common::until(&engine, AwaitCondition::CaughtUp, 10).await;
        common::until(&engine, AwaitCondition::CheckpointCompleted, 10).await;
        engine.command(Command::KillTaskManager("tm-1".into()));
        common::sleep_ms(100).await;
        a.refresh(engine.view(true));
        let (p, o) = engine.produce("c", None).expect("produce while down");
        a.produced("c".into(), p, o);
        assert_eq!(a.waiting().count(), 1, "c is marked as produced while down");
        common::sleep_ms(2_000).await;
        engine.command(Command::StartTaskManager(Some("tm-1".into())));
        common::until(&engine, AwaitCondition::CaughtUp, 30).await;
        a.refresh(engine.view(true));
        assert_eq!(a.waiting().count(), 0, "c was read after the restart");
        let s = screen(&a, 100, 30);
        for text in ["(a,1)", "(b,1)", "(c,1)", "caught up"] {
            assert!(s.contains(text), "missing {text:?} in\n{s}");
        }
        let total = s.lines().find(|l| l.contains("TOTAL")).unwrap_or_else(|| panic!("no TOTAL row in\n{s}"));
        assert!(total.contains("3") && total.contains("✓ ok"), "TOTAL row: {total}");
        engine.shutdown().await;
    });
}

// ---------------------------------------------------------------- issue 12: the workbench in front of a class

#[test]
fn fast_presses_apply_to_what_the_previous_press_asked_for() {
    let mut v = running_view();
    v.interval_ms = Some(5_000);
    let mut a = app(v);
    for _ in 0..3 {
        press(&mut a, KeyCode::Char('-'));
    }
    let intervals: Vec<String> = sets(&a).into_iter().map(|(_, v)| v).collect();
    assert_eq!(intervals, ["2s", "1s", "500ms"], "- - - from 5 s steps three times");
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('m'));
    press(&mut a, KeyCode::Char('m'));
    assert_eq!(
        sets(&a).last(),
        Some(&("execution.checkpointing.mode".to_string(), "AT_LEAST_ONCE".to_string())),
        "m m goes aligned -> unaligned -> AT_LEAST_ONCE"
    );
    let mut a = app(running_view());
    for _ in 0..4 {
        press(&mut a, KeyCode::Char('b'));
    }
    let backends: Vec<String> = a
        .requests
        .iter()
        .filter_map(|r| match r {
            Request::Engine(Command::SwitchBackend(b)) => Some(b.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(backends, ["fs", "rocksdb", "memory", "fs"], "each b switches once more");
    // k s k s on the selected TM act on the state the previous press asked for.
    let mut a = app(running_view());
    for c in ['k', 's', 'k', 's'] {
        press(&mut a, KeyCode::Char(c));
    }
    assert_eq!(
        a.requests,
        vec![
            Request::Engine(Command::KillTaskManager("tm-1".into())),
            Request::Engine(Command::StartTaskManager(Some("tm-1".into()))),
            Request::Engine(Command::KillTaskManager("tm-1".into())),
            Request::Engine(Command::StartTaskManager(Some("tm-1".into()))),
        ],
        "no new task manager from a stale 'alive'"
    );
}

#[test]
fn a_refused_change_is_forgotten_and_the_next_press_starts_from_the_view() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('+'));
    a.on_event(&ckptlab::events::Stamped {
        t_ms: 1,
        event: ckptlab::events::Event::ConfigRejected { key: "execution.checkpointing.interval".into(), reason: "test".into() },
    });
    a.requests.clear();
    press(&mut a, KeyCode::Char('+'));
    assert_eq!(sets(&a), vec![("execution.checkpointing.interval".into(), "2s".into())]);
}

#[test]
fn slow_channel_and_buffer_timeout_keys_change_the_options_live() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('d'));
    press(&mut a, KeyCode::Char('d'));
    press(&mut a, KeyCode::Char('d'));
    let key = "ckptlab.delays.source[1]->counter[*]".to_string();
    assert_eq!(sets(&a), vec![(key.clone(), "300ms".into()), (key.clone(), "1s".into()), (key, "0ms".into())]);
    a.requests.clear();
    for _ in 0..4 {
        press(&mut a, KeyCode::Char('t'));
    }
    let b = "execution.buffer-timeout.interval".to_string();
    assert_eq!(sets(&a), vec![(b.clone(), "10ms".into()), (b.clone(), "1ms".into()), (b.clone(), "0ms".into()), (b, "100ms".into())]);
    // On screen: the slow channel in the status line and the graph, the buffer timeout in both.
    let mut v = running_view();
    for c in v.channels.iter_mut().filter(|c| c.from == ckptlab::types::TaskId::Source(1)) {
        c.delay_ms = 300;
    }
    v.buffer_timeout_ms = Some(1);
    let a = app(v);
    let s = screen(&a, 120, 40);
    assert!(s.contains("slow src1→cnt* +300 ms"), "status line:\n{s}");
    assert!(s.contains("slow +300 ms"), "graph:\n{s}");
    assert!(s.contains("buffer 1ms") && s.contains("flush 1 ms"), "buffer timeout:\n{s}");
    insta::assert_snapshot!("screen_slow_channel_120x40", s);
}

fn big_counts(state: u64, expected: u64, overcounted: u64) -> App {
    let mut v = running_view();
    let verdict = v.verdict.as_mut().expect("verdict");
    verdict.keys.clear();
    verdict.keys.insert("x".into(), key(0, expected, state, 0, overcounted));
    verdict.keys.insert("y".into(), key(1, expected - 1, expected - 1, 0, 0));
    verdict.state = state + expected - 1;
    verdict.expected = 2 * expected - 1;
    verdict.overcounted = overcounted;
    app(v)
}

#[test]
fn state_pane_shows_7_and_10_digit_counts_whole_at_80x24() {
    for (name, (state, expected, over)) in
        [("state_7_digits_80x24", (1_520_003u64, 1_520_000u64, 3u64)), ("state_10_digits_80x24", (4_294_967_396, 4_294_967_296, 100))]
    {
        let a = big_counts(state, expected, over);
        let s = screen(&a, 80, 24);
        for n in [state, expected, state + expected - 1, 2 * expected - 1] {
            assert!(s.contains(&n.to_string()), "{n} shown whole in\n{s}");
        }
        assert!(s.contains("│TOTAL "), "the TOTAL label whole:\n{s}");
        assert!(s.contains(&format!("overcounted {over} ")) || s.contains(&format!("+{over} ")), "the overcount whole:\n{s}");
        insta::assert_snapshot!(name, s);
    }
}

#[test]
fn long_keys_stay_distinguishable() {
    let mut v = running_view();
    let verdict = v.verdict.as_mut().expect("verdict");
    verdict.keys.insert("customer-0000000000000000000000-eu-west-1".into(), key(0, 1, 1, 0, 0));
    verdict.keys.insert("customer-0000000000000000000000-us-east-2".into(), key(1, 1, 1, 0, 0));
    let s = pane(40, 10, |f, r| panes::state::render(&app(v), f, r));
    assert!(s.contains("west-1") && s.contains("east-2"), "the ends of long keys show:\n{s}");
}

#[test]
fn enter_on_a_key_opens_its_figures_and_any_key_closes() {
    let mut a = app(down_view());
    press(&mut a, KeyCode::Tab);
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.detail.as_deref(), Some("a"));
    assert_eq!(a.requests, vec![Request::Explain("a".into())], "the auditor is asked, off the loop");
    let s = screen(&a, 100, 30);
    assert!(s.contains("overcounted 1") && s.contains("expected  3") && s.contains("asking the auditor"), "{s}");
    let why = "p0@2522..2530 applied more than once: counted again after the restore of checkpoint 25, which rewound p0 to 2521";
    a.explained("b", vec!["not this key".into()]);
    assert!(a.explanation.is_none(), "an answer for another key is dropped");
    a.explained("a", vec![why.into()]);
    let s = screen(&a, 100, 30);
    assert!(s.contains("p0@2522..2530") && s.contains("checkpoint 25"), "{s}");
    press(&mut a, KeyCode::Char('x'));
    assert!(a.detail.is_none());
}

#[test]
fn scrolling_is_bounded_at_both_ends() {
    let mut a = app(running_view());
    for pane in 0..5 {
        for _ in 0..300 {
            press(&mut a, KeyCode::Char('j'));
        }
        for _ in 0..300 {
            press(&mut a, KeyCode::Char('K'));
        }
        let _ = pane;
        press(&mut a, KeyCode::Tab);
    }
    press(&mut a, KeyCode::Tab); // Events
    while a.focus != Pane::Events {
        press(&mut a, KeyCode::Tab);
    }
    for _ in 0..300 {
        press(&mut a, KeyCode::Up);
    }
    assert_eq!(a.scroll_of(Pane::Events) as usize, a.log.len() - 1, "the oldest line, not past it");
    press(&mut a, KeyCode::End);
    assert_eq!(a.scroll_of(Pane::Events), 0);
    while a.focus != Pane::State {
        press(&mut a, KeyCode::Tab);
    }
    for _ in 0..300 {
        press(&mut a, KeyCode::Char('j'));
    }
    assert_eq!(a.scroll_of(Pane::State), 2, "the last of three keys");
    let s = pane(40, 10, |f, r| panes::state::render(&a, f, r));
    assert!(s.contains("c "), "the pane is not blank after 300 x j:\n{s}");
    press(&mut a, KeyCode::Home);
    assert_eq!(a.scroll_of(Pane::State), 0);
}

fn completed(id: u64, ms: u64) -> ckptlab::events::Stamped {
    ckptlab::events::Stamped {
        t_ms: id * 100,
        event: ckptlab::events::Event::CheckpointCompleted { checkpoint: id, duration_ms: ms, bytes: 10, offsets: vec![] },
    }
}

#[test]
fn checkpoints_in_a_row_share_one_event_line_and_the_filter_picks() {
    let mut a = app(running_view());
    let before = a.log.len();
    for id in 20..=60 {
        a.on_event(&ckptlab::events::Stamped {
            t_ms: id * 100,
            event: ckptlab::events::Event::CheckpointTriggered { checkpoint: id, mode: "EXACTLY_ONCE".into() },
        });
        a.on_event(&completed(id, 52));
    }
    assert_eq!(a.log.len(), before + 1, "one line for 41 checkpoints");
    assert_eq!(a.log.back().map(|l| l.text.as_str()), Some("checkpoints 20-60 completed, 52 ms avg"));
    press(&mut a, KeyCode::Char('f'));
    assert!(a.visible_log().all(|l| l.kind == LogKind::Bad), "failures only");
    press(&mut a, KeyCode::Char('f'));
    assert!(a.visible_log().all(|l| l.checkpoint) && a.visible_log().count() >= 1, "checkpoints only");
    let s = pane(40, 8, |f, r| panes::events::render(&a, f, r));
    assert!(s.contains("checkpoints only") && s.contains("52 ms avg"), "{s}");
}

#[test]
fn event_lines_wrap_instead_of_being_cut() {
    let mut a = app(running_view());
    a.log(9_000, "checkpoint 9 FAILED: declined by counter[1]: the snapshot is larger than jobmanager-max-state-size".into(), LogKind::Bad);
    let s = pane(40, 8, |f, r| panes::events::render(&a, f, r));
    assert!(s.contains("jobmanager-max-state-size") || s.contains("max-state-size"), "the end of the line shows:\n{s}");
    assert!(!s.contains('…'), "{s}");
}

#[test]
fn a_paste_in_input_mode_produces_one_record_per_line() {
    let mut a = app(running_view());
    a.paste("a\nb");
    assert!(a.requests.is_empty(), "not in command mode");
    press(&mut a, KeyCode::Char('i'));
    a.paste("a\n\n  b \nc\n");
    assert_eq!(a.requests, vec![Request::Produce("a".into()), Request::Produce("b".into()), Request::Produce("c".into())]);
    a.requests.clear();
    // Terminals and tmux paste line ends as carriage returns.
    a.paste("d\re\r\nf");
    assert_eq!(a.requests, vec![Request::Produce("d".into()), Request::Produce("e".into()), Request::Produce("f".into())]);
}

#[test]
fn the_typing_cap_is_shown() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('i'));
    type_text(&mut a, &"x".repeat(250));
    assert_eq!(a.input.chars().count(), ckptlab::tui::app::INPUT_MAX);
    assert!(a.log.back().is_some_and(|l| l.text.contains("at most 200 characters")));
    let s = screen(&a, 100, 30);
    assert!(s.contains("200/200"), "{s}");
}

#[test]
fn at_80x24_the_generator_and_its_hints_stay_visible() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('g'));
    let s = screen(&a, 80, 24);
    assert!(s.contains("gen 10/s"), "generator state:\n{s}");
    let foot = s.lines().last().unwrap_or_default();
    assert!(foot.contains(" g ") && foot.contains("1-9") && foot.contains("? help") && foot.contains("q quit"), "footer: {foot}");
    insta::assert_snapshot!("screen_generator_80x24", s);
}

#[test]
fn a_restart_without_a_checkpoint_says_so_in_a_banner_until_one_completes() {
    let mut a = app(down_view());
    a.on_event(&ckptlab::events::Stamped {
        t_ms: 10_000,
        event: ckptlab::events::Event::StateRestored {
            checkpoint: None,
            offsets: vec![(0, 4), (1, 3)],
            note: "auto.offset.reset = latest: records produced meanwhile are skipped".into(),
            offset_reset: Some(ckptlab::config::OffsetReset::Latest),
        },
    });
    let s = screen(&a, 120, 40);
    assert!(s.contains("no checkpoint had completed") && s.contains("Flink does the same"), "{s}");
    a.on_event(&completed(1, 10));
    assert!(a.banner.is_none());
}

#[test]
fn help_has_the_legend_and_the_overcount_recipe_at_80x24() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('?'));
    let first = screen(&a, 80, 24);
    press(&mut a, KeyCode::Char(' '));
    assert!(a.help, "space turns the page");
    let second = screen(&a, 80, 24);
    let both = format!("{first}{second}");
    for text in ["‖7", "barrier", "⏸", "≈7", "⧗", "slow channel", "buffer timeout", "m m"] {
        assert!(both.contains(text), "{text:?} in help:\n{first}\n{second}");
    }
    insta::assert_snapshot!("screen_help_page2_80x24", second);
}

/// Catches: a help column taller than the screen whose last lines are cut off (at 80x24 the
/// command keys once lost `scroll` and `help, quit`): every command key's line is on some page.
#[test]
fn every_command_key_is_on_a_help_page_at_80x24() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('?'));
    let mut pages = vec![screen(&a, 80, 24)];
    for _ in 0..3 {
        press(&mut a, KeyCode::Char(' '));
        if !a.help {
            break;
        }
        pages.push(screen(&a, 80, 24));
    }
    let all = pages.concat();
    for text in ["kill TM", "hang TM", "events filter", "next / previous pane", "scroll the focused pane", "help, quit"] {
        assert!(all.contains(text), "{text:?} on no help page:\n{all}");
    }
}

#[test]
fn x_resets_and_o_picks_a_scenario() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('X'));
    assert_eq!(a.requests, vec![Request::Reset]);
    a.requests.clear();
    press(&mut a, KeyCode::Char('o'));
    assert_eq!(a.picker, Some(0));
    press(&mut a, KeyCode::Down);
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.requests, vec![Request::PlayScenario(1)]);
    assert!(a.picker.is_none());
}

#[test]
fn output_says_print_repeats_under_exactly_once_are_the_sinks() {
    let mut v = down_view();
    v.mode = CheckpointingMode::ExactlyOnce(Alignment::Aligned);
    let s = pane(70, 8, |f, r| panes::output::render(&app(v), f, r));
    assert!(s.contains("the state is exact"), "{s}");
}

// ---------------------------------------------------------------- lessons

fn lesson_app(name: &str) -> App {
    use ckptlab::tui::app::LessonPlay;
    let mut a = app(running_view());
    let lesson = ckptlab::lesson::Lesson::find(name).expect("shipped lesson");
    a.lesson = Some(LessonPlay::new(&lesson));
    a
}

fn enter(a: &mut App, step: usize, phase: ckptlab::tui::app::LessonPhase) {
    a.lesson.as_mut().expect("lesson").on_msg(ckptlab::tui::app::LessonMsg::Entered(step, phase));
}

#[test]
fn screen_lesson_waiting_for_the_learner_80x24() {
    let mut a = lesson_app("checkpoints-disabled");
    enter(&mut a, 5, ckptlab::tui::app::LessonPhase::AwaitingUser);
    let s = screen(&a, 80, 24);
    assert!(s.contains("Lesson: Checkpoints disabled") && s.contains("step 6/14"), "{s}");
    assert!(s.contains("your turn") && s.contains("n next"), "{s}");
    insta::assert_snapshot!(s);
}

/// Issue 25 §7: at 80x24 a lesson's band left the state pane without key rows and the
/// checkpoints pane without rows while the step pointed at them. The marked pane takes its
/// column. Catches: the fixed split (no `a` row in the state pane, no checkpoint row).
#[test]
fn at_80x24_the_pane_a_lesson_step_points_at_gets_its_column() {
    use ckptlab::lesson::Pane;
    let at = |lesson: &str, only: Pane| {
        let mut a = lesson_app(lesson);
        let steps = &ckptlab::lesson::Lesson::find(lesson).expect("shipped lesson").steps;
        let i = steps.iter().position(|s| s.highlight == [only]).unwrap_or_else(|| panic!("{lesson} has a step marking {only:?} alone"));
        enter(&mut a, i, ckptlab::tui::app::LessonPhase::AwaitingUser);
        screen(&a, 80, 24)
    };
    let s = at("checkpoints-disabled", Pane::State);
    let row = |s: &str, first: &str| s.lines().any(|l| l.split('│').nth(1).is_some_and(|c| c.trim_start().starts_with(first)));
    assert!(row(&s, "a ") && row(&s, "b ") && row(&s, "TOTAL"), "key rows in the state pane:\n{s}");
    assert!(!s.contains("Job graph"), "the graph gives the state its column:\n{s}");
    assert!(s.contains("Checkpoints") && s.contains("Output"), "the other column keeps its split:\n{s}");
    insta::assert_snapshot!(s);
    let s = at("exactly-once", Pane::Checkpoints);
    assert!(!s.contains("┌ Output"), "the output gives the checkpoints its column:\n{s}");
    assert!(s.contains("Job graph") && s.contains("State"), "{s}");
    let header = s.lines().position(|l| l.contains("id  status")).expect("the checkpoints header");
    assert!(s.lines().nth(header + 1).is_some_and(|l| l.contains("COMPLETED") || l.contains("FAILED") || l.contains("ms")), "a checkpoint row:\n{s}");
}

#[test]
fn screen_lesson_waiting_for_the_learner_160x48() {
    let mut a = lesson_app("checkpoints-disabled");
    enter(&mut a, 5, ckptlab::tui::app::LessonPhase::AwaitingUser);
    insta::assert_snapshot!(screen(&a, 160, 48));
}

#[test]
fn a_prediction_is_answered_with_a_digit_before_n_goes_on() {
    use ckptlab::tui::app::LessonPhase;
    let mut a = lesson_app("checkpoints-disabled");
    enter(&mut a, 4, LessonPhase::Reading);
    let before = screen(&a, 80, 24);
    assert!(before.contains("Predict (press 1 to 3): What will the counter print for g?"), "{before}");
    // n before answering is refused, with what to do instead.
    press(&mut a, KeyCode::Char('n'));
    assert!(!a.requests.contains(&Request::LessonNext));
    assert!(a.log.back().is_some_and(|l| l.text.contains("predict first: press 1 to 3")), "{:?}", a.log.back());
    // A wrong answer: the right one and the explanation are revealed.
    press(&mut a, KeyCode::Char('1'));
    assert_eq!(a.lesson.as_ref().and_then(|l| l.answers[4]), Some(0));
    let after = screen(&a, 80, 24);
    assert!(after.contains("✗ You said 1. Not quite: it is 3: (g,1)"), "{after}");
    insta::assert_snapshot!("screen_lesson_prediction_answered_wrong_80x24", after);
    // A second digit does not change the answer; n now goes on.
    press(&mut a, KeyCode::Char('3'));
    assert_eq!(a.lesson.as_ref().and_then(|l| l.answers[4]), Some(0));
    press(&mut a, KeyCode::Char('n'));
    assert!(a.requests.contains(&Request::LessonNext));
}

#[test]
fn lesson_keys_look_back_and_leave_without_touching_the_cluster() {
    use ckptlab::tui::app::LessonPhase;
    let mut a = lesson_app("exactly-once");
    enter(&mut a, 3, LessonPhase::Doing);
    // n while the lesson is doing the step is refused, not queued.
    press(&mut a, KeyCode::Char('n'));
    assert!(a.requests.is_empty(), "{:?}", a.requests);
    press(&mut a, KeyCode::Char('p'));
    assert_eq!(a.lesson.as_ref().map(|l| l.viewing), Some(2));
    assert!(screen(&a, 80, 24).contains("an earlier step"));
    press(&mut a, KeyCode::Char('n'));
    assert_eq!(a.lesson.as_ref().map(|l| l.viewing), Some(3));
    // The step highlights the checkpoints pane: a marker, not colour alone.
    assert!(screen(&a, 160, 48).contains("★ Checkpoints"));
    press(&mut a, KeyCode::Char('L'));
    assert!(a.lesson.is_none());
    assert_eq!(a.requests, vec![Request::LessonLeave]);
    // Digits select task managers again once the lesson is gone.
    press(&mut a, KeyCode::Char('2'));
    assert_eq!(a.selected_tm, 1);
}

/// Issue 21 §1: lessons named the status line (`highlight = ["status"]`) and nothing drew it.
/// One pane enum for lessons and the screen: the status line gets the lesson's marker, and a
/// failure the step reports is drawn as one, apart from what the step narrated.
#[test]
fn a_step_that_highlights_the_status_line_marks_it() {
    use ckptlab::lesson::Pane as LessonPane;
    use ckptlab::tui::app::{LessonMsg, LessonPhase};
    let mut a = lesson_app("checkpoints-disabled");
    enter(&mut a, 5, LessonPhase::AwaitingUser);
    let step = &a.lesson.as_ref().expect("lesson").steps[5];
    assert!(step.highlight.contains(&LessonPane::Status), "step 6 points at the status line: {:?}", step.highlight);
    let s = screen(&a, 80, 24);
    assert!(s.lines().any(|l| l.contains("★ CheckpointExample ● RUNNING")), "the status line is marked:\n{s}");
    // A step that does not point there leaves it as it is.
    enter(&mut a, 1, LessonPhase::AwaitingUser);
    let s = screen(&a, 80, 24);
    assert!(!s.contains("★ CheckpointExample"), "{s}");
    let l = a.lesson.as_mut().expect("lesson");
    l.on_msg(LessonMsg::Line(1, "produced a".into()));
    l.on_msg(LessonMsg::Failure(1, "line 30: expected a = 1, got 0".into()));
    assert_eq!((l.lines[1].len(), l.failures[1].len()), (1, 1));
    let s = screen(&a, 160, 48);
    assert!(s.contains("produced a") && s.contains("line 30: expected a = 1, got 0"), "{s}");
}

// Catches `S` taking a savepoint the other backend cannot restore, or `N` not asking for the
// native format: S is Flink's default (canonical), N the backend's own.
#[test]
fn s_takes_a_canonical_savepoint_and_n_a_native_one() {
    use ckptlab::state::SavepointFormat;
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('S'));
    press(&mut a, KeyCode::Char('N'));
    let asked: Vec<(bool, SavepointFormat)> = a
        .requests
        .iter()
        .filter_map(|r| match r {
            Request::Engine(Command::TriggerSavepoint { stop, format }) => Some((*stop, *format)),
            _ => None,
        })
        .collect();
    assert_eq!(asked, [(false, SavepointFormat::Canonical), (false, SavepointFormat::Native)]);
}

// ---------------------------------------------------------------- the Kafka sink's two readers

fn reader_line(offset: u64, text: &str, mark: LineMark) -> ReaderLine {
    ReaderLine { offset, text: text.into(), mark, seen_ms: 0 }
}

/// `job.sink = kafka`, exactly-once, after a kill: the killed attempt's transaction aborted (✗
/// at read_uncommitted), the replay's lines committed once, the newest transaction still open.
fn kafka_view() -> ClusterView {
    let mut v = running_view();
    v.output.clear();
    v.output_readers = Some(ReadersView {
        topic: "output-topic".into(),
        committed: vec![
            reader_line(0, "(a,1)", LineMark::Visible),
            reader_line(1, "(b,1)", LineMark::Visible),
            reader_line(6, "(a,2)", LineMark::Visible),
            reader_line(7, "(c,1)", LineMark::Visible),
        ],
        uncommitted: vec![
            reader_line(0, "(a,1)", LineMark::Visible),
            reader_line(1, "(b,1)", LineMark::Visible),
            reader_line(3, "(a,2)", LineMark::Aborted),
            reader_line(4, "(c,1)", LineMark::Aborted),
            reader_line(6, "(a,2)", LineMark::Visible),
            reader_line(7, "(c,1)", LineMark::Visible),
            reader_line(9, "(b,2)", LineMark::Open),
        ],
        committed_total: 4,
        uncommitted_total: 7,
        aborted: 2,
        open: 1,
        lag_ms: Some(1_040),
        mean_lag_ms: Some(600),
    });
    v
}

#[test]
fn screen_kafka_readers_80x24() {
    insta::assert_snapshot!(screen(&app(kafka_view()), 80, 24));
}

#[test]
fn screen_kafka_readers_160x48() {
    insta::assert_snapshot!(screen(&app(kafka_view()), 160, 48));
}

/// Where the pane is narrow, `r` shows the other reader. Catches: a switch key that does
/// nothing, or one not in the keymap (the pane's hint names it).
#[test]
fn r_switches_the_narrow_output_pane_to_read_uncommitted() {
    let mut a = app(kafka_view());
    let before = screen(&a, 80, 24);
    assert!(before.contains("read_committed 4") && !before.contains("read_uncommitted"), "{before}");
    press(&mut a, KeyCode::Char('r'));
    let after = screen(&a, 80, 24);
    assert!(after.contains("read_uncommitted 7") && after.contains("✗ (c,1)") && after.contains("… (b,2)"), "{after}");
    insta::assert_snapshot!(after);
}

/// The before-commit kill key asks the engine for it on the selected task manager, and the help
/// says what it does. Catches: a key that kills at once.
#[test]
fn capital_c_arms_a_kill_before_the_commit_of_the_selected_tm() {
    let mut a = app(running_view());
    press(&mut a, KeyCode::Char('2'));
    press(&mut a, KeyCode::Char('C'));
    assert_eq!(a.requests, vec![Request::Engine(Command::KillBeforeCommit("tm-2".into()))]);
    let keys = Keymap::default();
    assert!(keys.bindings.iter().any(|b| b.action == Action::KillBeforeCommit && b.help.contains("before its commit")));
}
