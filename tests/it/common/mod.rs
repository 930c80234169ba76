//! Helpers shared by the integration tests: engines under tokio's paused clock, so heartbeat
//! timeouts, delays and intervals cost no wall time.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use std::sync::Arc;

use ckptlab::cluster::{Engine, EngineError};
use ckptlab::config::{parse_loose_value, ConfigLayers};
use ckptlab::connectors::{EmbeddedTopic, Topic};
use ckptlab::events::{Event, EventBus, Stamped};
use ckptlab::scenario::{self, await_condition, AwaitCondition, RunReport, Scenario};

/// Runs a future on a current-thread runtime whose clock is paused (auto-advancing when idle).
pub fn paused<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("runtime").block_on(f)
}

/// Runs a future on a multi-threaded runtime with two workers (as the binary has), in real time.
pub fn threaded<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime").block_on(f)
}

/// Built-in defaults plus `pairs` (dotted keys, values parsed as in --set).
pub fn layers(pairs: &[(&str, &str)]) -> ConfigLayers {
    let mut l = ConfigLayers::builtin();
    for (k, v) in pairs {
        l.set_value(k, parse_loose_value(v), "test").unwrap_or_else(|e| panic!("{e}"));
    }
    l
}

pub fn start(pairs: &[(&str, &str)]) -> Engine {
    Engine::start(layers(pairs), EventBus::new(tokio::time::Instant::now())).expect("engine starts")
}

pub async fn until(engine: &Engine, c: AwaitCondition, secs: u64) {
    until_or(engine, c, secs, |engine| format!("{:#?}", engine.view(false).status)).await;
}

/// [`until`], with `why` saying what the engine was at when the wait timed out.
pub async fn until_or(engine: &Engine, c: AwaitCondition, secs: u64, why: impl FnOnce(&Engine) -> String) {
    if !await_condition(engine, c, Duration::from_secs(secs)).await {
        panic!("timed out awaiting {c:?}: {}", why(engine));
    }
}

/// Receives events until one that `done` matches (it included), for at most `secs` of engine
/// time; Err: those seen when the time ran out. With `DEBUG_EVENTS` set, each is printed as it comes.
pub async fn events_until(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Stamped>,
    secs: u64,
    done: impl Fn(&Event) -> bool,
) -> Result<Vec<Stamped>, Vec<Stamped>> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            let e = rx.recv().await.expect("event stream open");
            if std::env::var_os("DEBUG_EVENTS").is_some() {
                eprintln!("{}", e.event.describe());
            }
            let end = done(&e.event);
            seen.push(e);
            if end {
                return;
            }
        }
    })
    .await;
    match found {
        Ok(()) => Ok(seen),
        Err(_) => Err(seen),
    }
}

/// Events as the log describes them, for a failed assertion's message.
pub fn described(seen: &[Stamped]) -> Vec<String> {
    seen.iter().map(|e| e.event.describe()).collect()
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// A scratch directory for checkpoints and RocksDB instances: on tmpfs (/dev/shm) where there is
/// one, because the engine fsyncs every checkpoint file and on a real disk the tests would spend
/// their time waiting for it; elsewhere the system temp dir.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("ckptlab-test-").tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("a temp dir")
}

/// Retained checkpoints on disk (those with `_metadata`) in a job directory, by id.
pub fn retained(job: &std::path::Path) -> Vec<ckptlab::state::storage::CheckpointMetadata> {
    let mut out: Vec<ckptlab::state::storage::CheckpointMetadata> = std::fs::read_dir(job)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("_metadata").is_file()).collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .map(|p| ckptlab::state::storage::CheckpointStorage::read_metadata(p).expect("readable metadata"))
        .collect();
    out.sort_by_key(|m| m.checkpoint);
    out
}

/// The files in a job directory's `shared/`.
pub fn shared_on_disk(job: &std::path::Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    std::fs::read_dir(job.join("shared")).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default()
}

/// The shared files retained checkpoints reference.
pub fn referenced(metas: &[ckptlab::state::storage::CheckpointMetadata]) -> std::collections::BTreeSet<std::path::PathBuf> {
    metas.iter().flat_map(|m| m.keyed.iter().flat_map(|h| h.shared_files().cloned().collect::<Vec<_>>())).collect()
}

/// A test that cannot run here says so and passes, except on CI (`CI` set: .ci/run installs
/// everything the tests need), where it fails with the reason: CI never passes a test it skipped.
pub fn skip(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "cannot run on CI: {why}");
    println!("SKIPPED: {why}");
}

/// Starts an engine on `pairs` (as [`layers`]) with a subscription to every event it publishes.
pub fn start_with_events(pairs: &[(&str, &str)]) -> (Engine, tokio::sync::mpsc::UnboundedReceiver<Stamped>) {
    let bus = EventBus::new(tokio::time::Instant::now());
    let rx = bus.subscribe();
    (start_on(pairs, bus), rx)
}

/// The path of the ckptlab binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_ckptlab");

/// The ckptlab binary of this build, to run as a user does.
pub fn binary() -> std::process::Command {
    std::process::Command::new(BIN)
}

/// What a run of the binary left.
pub struct Ran {
    /// The exit code; -1 when a signal ended it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Everything it said, for a failed assertion's message.
    pub fn text(&self) -> String {
        format!("exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs `command` to its end and keeps what it said.
pub fn ran(command: &mut std::process::Command) -> Ran {
    let out = command.output().expect("binary runs");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// Starts an engine on `pairs` reading `topic` (one the test fills, or that jobs one after
/// another share); Err: why the engine refused to start (a restore it cannot do ...).
pub fn try_start_on_topic(pairs: &[(String, String)], topic: &Arc<EmbeddedTopic>) -> Result<Engine, EngineError> {
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let l = layers(&refs);
    let cfg = l.build().expect("valid test config");
    Engine::start_with_topic(l, cfg, EventBus::new(tokio::time::Instant::now()), Some(topic.clone() as Arc<dyn Topic>))
}

/// [`try_start_on_topic`], which must start.
pub fn start_on_topic(pairs: &[(String, String)], topic: &Arc<EmbeddedTopic>) -> Engine {
    try_start_on_topic(pairs, topic).unwrap_or_else(|e| panic!("engine starts: {e}"))
}

/// Plays `steps` (the `[[steps]]` of a scenario file) on `engine`, narration unheard.
pub async fn run_steps(engine: &Engine, steps: &str) -> RunReport {
    let s = Scenario::parse(&format!("name = \"test\"\n{steps}"), "test.toml").expect("valid steps");
    scenario::run(&s, engine, |_| {}).await
}

/// Starts an engine on `pairs` (as [`layers`]) publishing on `bus`: subscribe first to see every event.
pub fn start_on(pairs: &[(&str, &str)], bus: EventBus) -> Engine {
    Engine::start(layers(pairs), bus).expect("engine starts")
}

/// Starts an engine whose checkpoints are files under `dir/checkpoints` (its TM directories under
/// `dir/tm`), taken only when the test triggers them, with fast channels and restarts without end
/// (a snapshot is then files a test can look at); `extra` comes last, publishing on `bus`.
pub fn start_on_files(dir: &std::path::Path, extra: &[(&str, &str)], bus: EventBus) -> Engine {
    let chk = dir.join("checkpoints").display().to_string();
    let tmp = dir.join("tm").display().to_string();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("execution.checkpointing.storage", "filesystem"),
        ("execution.checkpointing.dir", &chk),
        ("taskmanager.tmp-dirs", &tmp),
        // checkpoints only when the test asks
        ("execution.checkpointing.interval", "1h"),
        ("ckptlab.hop-delay", "0ms"),
        ("execution.buffer-timeout.interval", "1ms"),
        ("heartbeat.timeout", "500ms"),
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "100"),
        ("restart-strategy.fixed-delay.delay", "100ms"),
        ("source.auto-offset-reset", "earliest"),
    ];
    pairs.extend_from_slice(extra);
    start_on(&pairs, bus)
}

/// Triggers a checkpoint and waits (model time) until `completed` checkpoints exist in all; a
/// failed checkpoint fails the test with its reason.
pub async fn checkpoint(engine: &Engine, completed: u64) {
    engine.command(ckptlab::cluster::Command::TriggerCheckpoint);
    for _ in 0..60_000 {
        let v = engine.view(false);
        if v.checkpoint_counts.completed >= completed {
            return;
        }
        if let Some(f) = v.checkpoint_history.iter().rev().find_map(|c| c.failure.clone()) {
            panic!("checkpoint failed: {f}");
        }
        sleep_ms(10).await;
    }
    panic!("checkpoint {completed} did not complete: {:#?}", engine.view(false).checkpoint_history);
}

/// Draws `f` into a `width` x `height` TestBackend and returns the screen as text (what the insta
/// snapshots hold).
pub fn draw(width: u16, height: u16, f: impl FnOnce(&mut ratatui::Frame)) -> String {
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(f).expect("draw");
    terminal.backend().to_string()
}

/// Draws `f` on the whole of a `width` x `height` screen (one pane or popup, as the snapshots hold it).
pub fn pane(width: u16, height: u16, f: impl FnOnce(&mut ratatui::Frame, ratatui::layout::Rect)) -> String {
    draw(width, height, |frame| {
        let area = frame.area();
        f(frame, area)
    })
}

/// A whole screen the tests draw: the workbench or the compare screen.
pub trait Drawn {
    fn render(&self, f: &mut ratatui::Frame);
}

impl Drawn for ckptlab::tui::app::App {
    fn render(&self, f: &mut ratatui::Frame) {
        ckptlab::tui::render::render(self, f)
    }
}

impl Drawn for ckptlab::tui::compare::app::CompareApp {
    fn render(&self, f: &mut ratatui::Frame) {
        ckptlab::tui::compare::screen::render(self, f)
    }
}

/// The whole screen of `app` at `width` x `height`, as text.
pub fn screen(app: &impl Drawn, width: u16, height: u16) -> String {
    draw(width, height, |f| app.render(f))
}

/// A screen's state that takes keys as the loop gives them: the key's action, if any, applied.
pub trait Keyed {
    fn key(&mut self, ev: &KeyEvent);
}

impl Keyed for ckptlab::tui::app::App {
    fn key(&mut self, ev: &KeyEvent) {
        if let Some(action) = self.on_key(ev) {
            self.update(action);
        }
    }
}

impl Keyed for ckptlab::tui::compare::app::CompareApp {
    fn key(&mut self, ev: &KeyEvent) {
        if let Some(action) = self.on_key(ev) {
            self.update(action);
        }
    }
}

pub fn press(app: &mut impl Keyed, code: KeyCode) {
    press_mod(app, code, KeyModifiers::NONE);
}

pub fn press_mod(app: &mut impl Keyed, code: KeyCode, mods: KeyModifiers) {
    app.key(&KeyEvent::new(code, mods));
}
