//! Owns the terminal and runs the loop: terminal events and engine events in, actions through
//! `update`, requests out to the engine, a frame drawn only when something changed (at most one
//! per [`FRAME`]) and an animation tick only while something moves, so an idle screen costs
//! nothing. The terminal is restored on quit, Ctrl-C, SIGTERM, SIGHUP and panic (ratatui's hook).

use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{Event as TermEvent, EventStream};
use futures::StreamExt;
use ratatui::DefaultTerminal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::app::{App, LogKind, Request};
use super::keymap::Keymap;
use super::render::render;
use super::theme::Theme;
use crate::cluster::Engine;
use crate::config::ConfigLayers;
use crate::events::{EventBus, Stamped};

/// Shortest time between two frames (at most ~30 frames per second, whatever the event rate).
pub const FRAME: Duration = Duration::from_millis(33);
/// Redraw period while records, barriers or countdowns move and nothing else asks for a frame.
pub const ANIMATION_TICK: Duration = Duration::from_millis(100);
/// Engine events taken per turn of the loop, so a flood never starves the keyboard.
const EVENT_BATCH: usize = 4096;
/// The verdict walks every record of the topic: on a long topic it is recomputed only after a
/// pause of this many times its cost (so it takes at most 1/20 of the time); a short topic's costs
/// microseconds, so it is fresh on every frame.
const VERDICT_COST_FACTOR: u32 = 20;

/// Runs the workbench until the user quits. `launched` is when the process started (for the
/// first-frame figure in the log).
pub async fn run(layers: ConfigLayers, bus: EventBus, launched: std::time::Instant) -> anyhow::Result<()> {
    let keymap = Keymap::load().map_err(anyhow::Error::msg)?;
    let cfg = layers.build()?;
    let theme = Theme::from_env();
    if theme == Theme::mono() {
        // NO_COLOR: crossterm would also drop bold/reverse; the mono theme uses no colour anyway.
        crossterm::style::force_color_output(true);
    }
    let mut events = bus.subscribe();
    let engine = Engine::start(layers, bus).context("starting the cluster")?;
    let mut app = App::new(engine.view(true), keymap, theme, cfg.lab.generator_rate);
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
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, &mut app, &engine, &mut events, launched).await;
    ratatui::restore();
    engine.shutdown().await;
    tracing::info!("workbench closed");
    result
}

/// When the verdict may next be recomputed, from how long the last one took.
struct VerdictPacing {
    next: Instant,
}

impl VerdictPacing {
    fn refresh(&mut self, app: &mut App, engine: &Engine) {
        let now = Instant::now();
        if now >= self.next {
            let t0 = std::time::Instant::now();
            let view = engine.view(true);
            let cost = t0.elapsed();
            self.next = now + cost * VERDICT_COST_FACTOR;
            app.refresh(view);
        } else {
            let mut view = engine.view(false);
            view.verdict = app.view.verdict.take();
            app.refresh(view);
        }
    }
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    engine: &Engine,
    events: &mut UnboundedReceiver<Stamped>,
    launched: std::time::Instant,
) -> anyhow::Result<()> {
    let mut keys = EventStream::new();
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut generator: Option<JoinHandle<()>> = None;
    // Produce calls that wait on a broker (Kafka) report back here instead of freezing the screen.
    let (produced_tx, mut produced_rx) = tokio::sync::mpsc::unbounded_channel::<Produced>();
    let mut pacing = VerdictPacing { next: Instant::now() };
    let mut dirty = true;
    let mut events_open = true;
    let mut last_frame: Option<Instant> = None;
    while !app.quit {
        let frame_due = last_frame.map_or_else(Instant::now, |t| t + FRAME);
        if dirty && Instant::now() >= frame_due {
            pacing.refresh(app, engine);
            terminal.draw(|f| render(app, f)).context("drawing")?;
            if last_frame.is_none() {
                tracing::info!(ms = launched.elapsed().as_millis() as u64, "first frame drawn");
            }
            last_frame = Some(Instant::now());
            dirty = false;
        }
        let animating = app.animating();
        tokio::select! {
            biased;
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(k))) => {
                    if let Some(k) = TermEvent::Key(k).as_key_press_event() {
                        if let Some(action) = app.on_key(&k) {
                            tracing::debug!(?action, "key");
                            app.update(action);
                        }
                    }
                    dirty = true;
                }
                Some(Ok(_)) => dirty = true, // resize, focus, paste: redraw
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => break,
            },
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
            e = events.recv(), if events_open => match e {
                Some(e) => {
                    app.on_event(&e);
                    for _ in 0..EVENT_BATCH {
                        match events.try_recv() {
                            Ok(e) => app.on_event(&e),
                            Err(_) => break,
                        }
                    }
                    dirty = true;
                }
                None => events_open = false,
            },
            Some((value, result)) = produced_rx.recv() => {
                on_produced(app, value, result);
                dirty = true;
            }
            _ = tokio::time::sleep_until(frame_due), if dirty => {}
            _ = tokio::time::sleep(ANIMATION_TICK), if animating && !dirty => dirty = true,
        }
        carry_out(app, engine, &mut generator, &produced_tx);
    }
    if let Some(g) = generator.take() {
        g.abort();
    }
    Ok(())
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

/// Does what the last update asked of the engine.
fn carry_out(
    app: &mut App,
    engine: &Engine,
    generator: &mut Option<JoinHandle<()>>,
    produced: &tokio::sync::mpsc::UnboundedSender<Produced>,
) {
    for request in std::mem::take(&mut app.requests) {
        tracing::debug!(?request, "request");
        match request {
            Request::Produce(value) => {
                let topic = engine.topic();
                if topic.produce_may_block() {
                    let tx = produced.clone();
                    tokio::task::spawn_blocking(move || {
                        let result = topic.produce(&value, None);
                        let _ = tx.send((value, result));
                    });
                } else {
                    let result = topic.produce(&value, None);
                    on_produced(app, value, result);
                }
            }
            Request::Engine(command) => engine.command(command),
            Request::StartGenerator(spec) => {
                if let Some(g) = generator.take() {
                    g.abort();
                }
                *generator = Some(engine.generate(spec));
            }
            Request::StopGenerator => {
                if let Some(g) = generator.take() {
                    g.abort();
                }
            }
            Request::Pause(paused) => engine.set_paused(paused),
        }
    }
}
