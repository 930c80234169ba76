//! Owns the terminal and runs the loop: terminal events and engine events in, actions through
//! `update`, requests out to the engine, a frame drawn only when something changed (at most one
//! per [`FRAME`]) and an animation tick only while something moves, so an idle screen costs
//! nothing. The terminal is restored on quit, Ctrl-C, SIGTERM, SIGHUP and panic; its output is
//! written from a thread of its own ([`super::terminal`]), so a terminal that takes no output
//! never keeps the loop from hearing SIGTERM: the workbench then exits with 143 all the same.
//!
//! The cluster's picture (and the verdict, which walks the auditor's records) is computed by a
//! viewer task off the loop, on a blocking thread, and handed over through a `watch` channel: the
//! loop draws the latest picture it has and never waits for one, so a key is answered at once
//! however long a verdict takes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::Event as TermEvent;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::app::{App, LessonMsg, LessonPhase, LessonPlay, LogKind, Request, ScenarioPlay};
use super::keymap::Keymap;
use super::panes::scenario::step_text;
use super::render::render;
use super::terminal::{self, Output, Terminal};
use super::theme::Theme;
use crate::cluster::view::ClusterView;
use crate::cluster::{Command, Engine};
use crate::config::{parse_loose_value, ConfigLayers};
use crate::events::{EventBus, Stamped};
use crate::lesson::Lesson;
use crate::scenario::Scenario;

/// Shortest time between two frames (at most ~30 frames per second, whatever the event rate).
pub const FRAME: Duration = Duration::from_millis(33);
/// Redraw period while records, barriers or countdowns move and nothing else asks for a frame.
pub const ANIMATION_TICK: Duration = Duration::from_millis(100);
/// Engine events taken per turn of the loop, so a flood never starves the keyboard.
const EVENT_BATCH: usize = 4096;
/// Terminal events taken per turn once one arrived (keys typed or pasted faster than frames).
const KEY_BATCH: usize = 1024;
/// The verdict walks the auditor's records: on a long topic it is recomputed only after a pause
/// of this many times its cost (so it takes at most 1/20 of a core); a short topic's costs
/// microseconds, so it is fresh on every frame. It never runs on the loop either way.
const VERDICT_COST_FACTOR: u32 = 20;

/// How long the terminal reader waits for input before it looks whether the loop still runs.
const TERMINAL_POLL: Duration = Duration::from_millis(50);

/// Tells the terminal reader to stop when the loop ends, however it ends.
struct StopOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How the workbench ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quit {
    /// `q`, Ctrl-C, or the terminal closed its input.
    User,
    /// A signal ended it (SIGTERM 15, SIGHUP 1): the process exits with 128 + it, as a shell expects.
    Signal(u8),
}

/// The configuration layers for a fresh cluster: the command line's, with a scenario's `[config]`
/// in its place among them when one is played (main.rs knows the order).
pub type LayersFor = Box<dyn Fn(Option<&Scenario>) -> Result<ConfigLayers, LayersError> + Send>;

/// Why [`LayersFor`] gave no layers: the command line's own error (its type lives in the binary),
/// shown as its text.
pub type LayersError = Box<dyn std::error::Error + Send + Sync>;

/// Why a scenario cannot be played on a fresh cluster (shown as "cannot play FILE: ...").
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    #[error("{0}")]
    Layers(LayersError),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The steps do not fit the cluster (a `kill` of a task manager it does not have).
    #[error("{0}")]
    Check(#[from] crate::scenario::ScenarioError),
}

/// What the workbench opens at once.
pub enum Opening {
    Nothing,
    /// `--scenario FILE`: played at once.
    Scenario(Scenario),
    /// `ckptlab lesson NAME`: the lesson pane, on a cluster with the lesson's `[config]`.
    Lesson(Box<Lesson>),
}

impl Opening {
    /// The scenario whose `[config]` the first cluster takes.
    pub fn scenario(&self) -> Option<&Scenario> {
        match self {
            Opening::Nothing => None,
            Opening::Scenario(s) => Some(s),
            Opening::Lesson(l) => Some(&l.scenario),
        }
    }
}

/// Runs the workbench until the user quits. `launched` is when the process started (for the
/// first-frame figure in the log); `opening` is played at once.
pub async fn run(layers_for: LayersFor, bus: EventBus, launched: std::time::Instant, opening: Opening) -> anyhow::Result<Quit> {
    let keymap = Keymap::load().map_err(anyhow::Error::msg)?;
    let layers = layers_for(opening.scenario()).map_err(anyhow::Error::msg)?;
    let cfg = layers.build()?;
    if let Some(s) = opening.scenario() {
        s.check(&cfg)?;
    }
    let theme = Theme::from_env();
    if theme == Theme::mono() {
        // NO_COLOR: crossterm would also drop bold/reverse; the mono theme uses no colour anyway.
        crossterm::style::force_color_output(true);
    }
    let mut events = bus.subscribe();
    let session = Session::start(layers.clone(), bus.clone())?;
    let mut app = App::new(session.engine.view(true), keymap, theme, cfg.lab.generator_rate);
    app.log(
        0,
        format!(
            "{}: {} | {} | kill a TM with k, start it with s, ? for help",
            cfg.job.name,
            cfg.checkpointing_label(),
            cfg.backend_label()
        ),
        LogKind::Info,
    );
    let (mut terminal, output) = terminal::init(true).context("taking the terminal")?;
    let (scenario_tx, mut scenario_rx) = mpsc::unbounded_channel::<ScenarioMsg>();
    let (explain_tx, mut explain_rx) = mpsc::unbounded_channel::<(String, Vec<String>)>();
    let (lesson_tx, mut lesson_rx) = mpsc::unbounded_channel::<LessonMsg>();
    let mut lp =
        Loop { app: &mut app, session, layers, layers_for, bus, scenario_tx: Some(scenario_tx), explain_tx, lesson_tx, lesson_next: None };
    match opening {
        Opening::Nothing => {}
        Opening::Scenario(s) => lp.play(s).await,
        Opening::Lesson(l) => lp.teach(*l),
    }
    let result = lp.run(&mut terminal, &output, &mut events, &mut scenario_rx, &mut explain_rx, &mut lesson_rx, launched).await;
    terminal::restore(terminal, &output, true);
    lp.session.shutdown().await;
    tracing::info!("workbench closed");
    result
}

/// One cluster and what runs beside it: the viewer, the generator, a scenario being played.
struct Session {
    engine: Arc<Engine>,
    views: watch::Receiver<ClusterView>,
    /// Asks the viewer for a fresh picture (a permit is kept if it is busy).
    want_view: Arc<Notify>,
    stop_viewer: watch::Sender<bool>,
    viewer: JoinHandle<()>,
    generator: Option<JoinHandle<()>>,
    scenario: Option<JoinHandle<()>>,
    lesson: Option<JoinHandle<()>>,
}

impl Session {
    fn start(layers: ConfigLayers, bus: EventBus) -> anyhow::Result<Session> {
        let engine = Arc::new(Engine::start(layers, bus).context("starting the cluster")?);
        let (tx, views) = watch::channel(engine.view(false));
        let want_view = Arc::new(Notify::new());
        let (stop_viewer, stop) = watch::channel(false);
        let viewer = tokio::spawn(viewer(engine.clone(), tx, want_view.clone(), stop));
        Ok(Session { engine, views, want_view, stop_viewer, viewer, generator: None, scenario: None, lesson: None })
    }

    /// Stops what runs beside the engine, then the engine.
    async fn shutdown(self) {
        if let Some(g) = self.generator {
            g.abort();
        }
        for task in [self.scenario, self.lesson].into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
        let _ = self.stop_viewer.send(true);
        let _ = self.viewer.await;
        match Arc::try_unwrap(self.engine) {
            Ok(engine) => engine.shutdown().await,
            Err(_) => tracing::warn!("the engine is still shared at shutdown; its tasks end with the runtime"),
        }
    }
}

/// Computes pictures of the cluster when asked, on a blocking thread, at most one per frame; the
/// verdict is recomputed when its pacing allows and carried over in between.
async fn viewer(engine: Arc<Engine>, tx: watch::Sender<ClusterView>, want: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut next_verdict = Instant::now();
    let mut verdict = None;
    loop {
        tokio::select! {
            _ = want.notified() => {}
            _ = stop.changed() => return,
        }
        let with_verdict = Instant::now() >= next_verdict;
        let e = engine.clone();
        let started = Instant::now();
        let Ok(mut view) = tokio::task::spawn_blocking(move || e.view(with_verdict)).await else { return };
        if with_verdict {
            next_verdict = Instant::now() + started.elapsed() * VERDICT_COST_FACTOR;
            verdict = view.verdict.clone();
        } else {
            view.verdict = verdict.clone();
        }
        if tx.send(view).is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(FRAME) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A picture worth a new frame: anything but the clock differs.
fn differs(old: &ClusterView, new: &ClusterView) -> bool {
    old.time_ms != new.time_ms && {
        let mut n = new.clone();
        n.time_ms = old.time_ms;
        &n != old
    }
}

/// What a played scenario reports to the loop.
enum ScenarioMsg {
    Line(String),
    Done(bool, Vec<String>),
}

struct Loop<'a> {
    app: &'a mut App,
    session: Session,
    /// The settings in force: the start-up layers plus every change the keys made (a reset keeps them).
    layers: ConfigLayers,
    layers_for: LayersFor,
    bus: EventBus,
    scenario_tx: Option<mpsc::UnboundedSender<ScenarioMsg>>,
    /// Explanations computed off the loop: (key, lines).
    explain_tx: mpsc::UnboundedSender<(String, Vec<String>)>,
    /// What the lesson's driver reports.
    lesson_tx: mpsc::UnboundedSender<LessonMsg>,
    /// Tells the lesson's driver to go on (`n`).
    lesson_next: Option<mpsc::UnboundedSender<()>>,
}

impl Loop<'_> {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &mut self,
        terminal: &mut Terminal,
        output: &Output,
        events: &mut mpsc::UnboundedReceiver<Stamped>,
        scenario_rx: &mut mpsc::UnboundedReceiver<ScenarioMsg>,
        explain_rx: &mut mpsc::UnboundedReceiver<(String, Vec<String>)>,
        lesson_rx: &mut mpsc::UnboundedReceiver<LessonMsg>,
        launched: std::time::Instant,
    ) -> anyhow::Result<Quit> {
        // The terminal is read on a thread of its own and its events queued here, so that every
        // event already typed or pasted is taken at once (a stream polled without a waker can
        // leave keys unseen until another event wakes the loop).
        let (term_tx, mut keys) = mpsc::unbounded_channel::<std::io::Result<TermEvent>>();
        let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let still_reading = reading.clone();
        std::thread::spawn(move || {
            while still_reading.load(std::sync::atomic::Ordering::Relaxed) {
                match crossterm::event::poll(TERMINAL_POLL) {
                    Ok(false) => {}
                    Ok(true) => {
                        let read = crossterm::event::read();
                        // A terminal that is gone (its pty closed) reports errors forever: stop
                        // here instead of spinning; the loop ends the workbench on the error.
                        let failed = read.is_err();
                        if term_tx.send(read).is_err() || failed {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = term_tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let _stop_reading = StopOnDrop(reading);
        let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        // Produce calls that wait on a broker (Kafka) report back here instead of freezing the screen.
        let (produced_tx, mut produced_rx) = mpsc::unbounded_channel::<Produced>();
        let mut dirty = true;
        let mut events_open = true;
        let mut last_frame: Option<Instant> = None;
        let mut quit = Quit::User;
        while !self.app.quit {
            let mut frame_due = last_frame.map_or_else(Instant::now, |t| t + FRAME);
            if dirty && output.behind() {
                // The terminal has not taken the last frame: the next waits (a frame later).
                frame_due = frame_due.max(Instant::now() + FRAME);
            } else if dirty && Instant::now() >= frame_due {
                // Draw what we have now; a fresher picture comes through `views` when it is ready.
                self.session.want_view.notify_one();
                let app = &*self.app;
                terminal.draw(|f| render(app, f)).context("drawing")?;
                if last_frame.is_none() {
                    tracing::info!(ms = launched.elapsed().as_millis() as u64, "first frame drawn");
                }
                last_frame = Some(Instant::now());
                dirty = false;
            }
            let animating = self.app.animating();
            tokio::select! {
                biased;
                key = keys.recv() => match key {
                    Some(Ok(ev)) => {
                        self.on_terminal(ev);
                        // Take what the terminal already sent (a fast typist, a paste without
                        // bracketed paste) now, not one event per turn.
                        for _ in 0..KEY_BATCH {
                            match keys.try_recv() {
                                Ok(Ok(ev)) => self.on_terminal(ev),
                                _ => break,
                            }
                        }
                        dirty = true;
                    }
                    Some(Err(e)) => return Err(e).context("reading the terminal"),
                    None => break,
                },
                _ = sigterm.recv() => { quit = Quit::Signal(15); break }
                _ = sighup.recv() => { quit = Quit::Signal(1); break }
                e = events.recv(), if events_open => match e {
                    Some(e) => {
                        self.app.on_event(&e);
                        for _ in 0..EVENT_BATCH {
                            match events.try_recv() {
                                Ok(e) => self.app.on_event(&e),
                                Err(_) => break,
                            }
                        }
                        dirty = true;
                    }
                    None => events_open = false,
                },
                changed = self.session.views.changed() => {
                    if changed.is_ok() {
                        let view = self.session.views.borrow_and_update().clone();
                        dirty |= differs(&self.app.view, &view);
                        self.app.refresh(view);
                    }
                }
                Some(msg) = scenario_rx.recv() => {
                    match msg {
                        ScenarioMsg::Line(line) => self.app.scenario_line(line),
                        ScenarioMsg::Done(passed, failures) => {
                            if let Some(s) = self.app.scenario.as_mut() {
                                s.result = Some((passed, failures));
                            }
                        }
                    }
                    dirty = true;
                }
                Some(msg) = lesson_rx.recv() => {
                    if let Some(l) = self.app.lesson.as_mut() {
                        l.on_msg(msg);
                    }
                    dirty = true;
                }
                Some((key, lines)) = explain_rx.recv() => {
                    self.app.explained(&key, lines);
                    dirty = true;
                }
                Some((value, result)) = produced_rx.recv() => {
                    on_produced(self.app, value, result);
                    dirty = true;
                }
                _ = tokio::time::sleep_until(frame_due), if dirty => {}
                _ = tokio::time::sleep(ANIMATION_TICK), if animating && !dirty => dirty = true,
            }
            self.carry_out(&produced_tx).await;
        }
        Ok(quit)
    }

    fn on_terminal(&mut self, ev: TermEvent) {
        match ev {
            TermEvent::Key(_) => {
                if let Some(k) = ev.as_key_press_event() {
                    if let Some(action) = self.app.on_key(&k) {
                        tracing::debug!(?action, "key");
                        self.app.update(action);
                    }
                }
            }
            TermEvent::Paste(text) => self.app.paste(&text),
            _ => {} // resize, focus: the caller redraws
        }
    }

    /// Does what the last update asked of the engine.
    async fn carry_out(&mut self, produced: &mpsc::UnboundedSender<Produced>) {
        for request in std::mem::take(&mut self.app.requests) {
            tracing::debug!(?request, "request");
            match request {
                Request::Produce(value) => {
                    let topic = self.session.engine.topic();
                    if topic.produce_may_block() {
                        let tx = produced.clone();
                        tokio::task::spawn_blocking(move || {
                            let result = topic.produce(&value, None);
                            let _ = tx.send((value, result));
                        });
                    } else {
                        let result = topic.produce(&value, None);
                        on_produced(self.app, value, result);
                    }
                }
                Request::Engine(command) => {
                    // Remembered for a reset, which keeps the settings the keys made.
                    match &command {
                        Command::Set { key, value } => {
                            let mut next = self.layers.clone();
                            if next.set_value(key, parse_loose_value(value), "a key in the workbench").is_ok() && next.build().is_ok() {
                                self.layers = next;
                            }
                        }
                        Command::SwitchBackend(name) => {
                            let mut next = self.layers.clone();
                            if next.set_backend(name.into(), "the backend key").is_ok() && next.build().is_ok() {
                                self.layers = next;
                            }
                        }
                        _ => {}
                    }
                    self.session.engine.command(command);
                }
                Request::StartGenerator(spec) => {
                    if let Some(g) = self.session.generator.take() {
                        g.abort();
                    }
                    self.session.generator = Some(self.session.engine.generate(spec));
                }
                Request::StopGenerator => {
                    if let Some(g) = self.session.generator.take() {
                        g.abort();
                    }
                }
                Request::Pause(paused) => self.session.engine.set_paused(paused),
                Request::LessonNext => {
                    if let Some(tx) = &self.lesson_next {
                        let _ = tx.send(());
                    }
                }
                Request::LessonLeave => {
                    self.lesson_next = None;
                    if let Some(task) = self.session.lesson.take() {
                        task.abort();
                    }
                }
                Request::Reset => {
                    self.app.scenario = None;
                    self.app.lesson = None;
                    self.lesson_next = None;
                    let layers = self.layers.clone();
                    self.fresh(layers, "reset: a fresh cluster (empty topic, empty state, restart back-off reset), same settings").await;
                }
                Request::Explain(key) => {
                    // The auditor walks the key's records: off the loop, like the verdict.
                    let engine = self.session.engine.clone();
                    let tx = self.explain_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let lines = engine.explain(&key).lines();
                        let _ = tx.send((key, lines));
                    });
                }
                Request::PlayScenario(i) => {
                    let Some((file, text)) = super::SCENARIOS.get(i) else { continue };
                    match Scenario::parse(text, file) {
                        Ok(s) => self.play(s).await,
                        Err(e) => {
                            let t = self.app.view.time_ms;
                            self.app.log(t, e.to_string(), LogKind::Bad);
                        }
                    }
                }
            }
        }
    }

    /// Replaces the cluster with a fresh one on `layers`.
    async fn fresh(&mut self, layers: ConfigLayers, why: &str) -> bool {
        let next = match Session::start(layers.clone(), self.bus.clone()) {
            Ok(s) => s,
            Err(e) => {
                let t = self.app.view.time_ms;
                self.app.log(t, format!("could not start a fresh cluster: {e:#}"), LogKind::Bad);
                return false;
            }
        };
        let old = std::mem::replace(&mut self.session, next);
        old.shutdown().await;
        self.layers = layers;
        let view = self.session.engine.view(true);
        self.app.reset(view, why);
        true
    }

    /// Opens a lesson on the cluster running now (started with the lesson's `[config]`): its
    /// driver does the steps and reports to the lesson pane.
    fn teach(&mut self, lesson: Lesson) {
        self.app.lesson = Some(LessonPlay::new(&lesson));
        let (next_tx, next_rx) = mpsc::unbounded_channel();
        self.lesson_next = Some(next_tx);
        let t = self.app.view.time_ms;
        self.app.log(t, format!("lesson {}: {} (n next, p back, L leave)", lesson.name, lesson.title), LogKind::Info);
        self.session.lesson = Some(tokio::spawn(drive_lesson(lesson, self.session.engine.clone(), next_rx, self.lesson_tx.clone())));
    }

    /// A fresh cluster with the scenario's `[config]`, then its steps, narrated into its pane.
    async fn play(&mut self, scenario: Scenario) {
        let layers = match (self.layers_for)(Some(&scenario)).map_err(PlayError::Layers).and_then(|l| {
            let cfg = l.build()?;
            scenario.check(&cfg)?;
            Ok(l)
        }) {
            Ok(l) => l,
            Err(e) => {
                let t = self.app.view.time_ms;
                return self.app.log(t, format!("cannot play {}: {e}", scenario.file), LogKind::Bad);
            }
        };
        if !self.fresh(layers, &format!("playing {} ({})", scenario.name, scenario.file)).await {
            return;
        }
        let tx = self.scenario_tx.clone();
        let play = ScenarioPlay {
            name: scenario.name.clone(),
            file: scenario.file.clone(),
            description: scenario.description.clone(),
            steps: scenario.steps.iter().map(step_text).collect(),
            narrated: Vec::new(),
            result: None,
        };
        self.app.scenario = Some(play);
        let engine = self.session.engine.clone();
        self.session.scenario = Some(tokio::spawn(async move {
            let send = |m: ScenarioMsg| {
                if let Some(tx) = &tx {
                    let _ = tx.send(m);
                }
            };
            let report = crate::scenario::run(&scenario, &engine, |line| send(ScenarioMsg::Line(line))).await;
            send(ScenarioMsg::Done(report.passed, report.failures.iter().map(ToString::to_string).collect()));
        }));
    }
}

/// Plays a lesson step by step as the learner goes: a step that waits for the learner ends when
/// the engine reports what they did, or when `n` asks the lesson to do it; every other step is
/// done at once; then it waits for `n`.
async fn drive_lesson(lesson: Lesson, engine: Arc<Engine>, mut next: mpsc::UnboundedReceiver<()>, tx: mpsc::UnboundedSender<LessonMsg>) {
    let send = |m: LessonMsg| {
        let _ = tx.send(m);
    };
    // One subscription for the whole lesson: what the learner does ahead of a step (typing d e f
    // while the lesson still shows the wait before it) counts when that step comes.
    let mut events = engine.events().subscribe();
    let mut player = crate::scenario::Player::start(&engine, &mut |_| {}).await;
    for (i, step) in lesson.steps.iter().enumerate() {
        let outcome = if step.action.is_none() {
            send(LessonMsg::Entered(i, LessonPhase::Reading));
            None
        } else if let Some(want) = &step.await_user {
            send(LessonMsg::Entered(i, LessonPhase::AwaitingUser));
            let mut seen = 0;
            let by_learner = tokio::select! {
                e = crate::lesson::await_event(&mut events, want, &mut seen, None) => e.is_some(),
                n = next.recv() => {
                    if n.is_none() {
                        return;
                    }
                    false
                }
            };
            if by_learner {
                Some(crate::lesson::StepOutcome {
                    step: step.line,
                    passed: true,
                    lines: vec![format!("you did it: {}", want.describe())],
                    failures: Vec::new(),
                })
            } else {
                send(LessonMsg::Entered(i, LessonPhase::Doing));
                Some(crate::lesson::do_step(&engine, &mut player, step, Some(&mut events), &mut seen).await)
            }
        } else {
            send(LessonMsg::Entered(i, LessonPhase::Doing));
            Some(crate::lesson::do_step(&engine, &mut player, step, None, &mut 0).await)
        };
        if let Some(o) = outcome {
            for l in o.lines {
                send(LessonMsg::Line(i, l));
            }
            for f in o.failures {
                send(LessonMsg::Failure(i, f));
            }
            send(LessonMsg::Done(i, o.passed));
        }
        // An n pressed while the lesson was busy is not a skip of the next step.
        while next.try_recv().is_ok() {}
        if next.recv().await.is_none() {
            return;
        }
    }
    send(LessonMsg::Finished);
}

/// A typed record and where it landed (or why not).
type Produced = (String, Result<(u32, u64), crate::connectors::TopicError>);

fn on_produced(app: &mut App, value: String, result: Result<(u32, u64), crate::connectors::TopicError>) {
    match result {
        Ok((partition, offset)) => app.produced(value, partition, offset),
        Err(e) => {
            let t = app.view.time_ms;
            app.log(t, format!("could not produce {value:?}: {e}"), LogKind::Bad);
        }
    }
}
