//! `ckptlab compare`'s loop: owns the terminal as [`crate::tui::frontend`] does (output from the
//! writer thread of [`crate::tui::terminal`], a reader thread for keys, SIGTERM and SIGHUP heard
//! whatever the terminal does), takes a picture of every cluster on a blocking thread each
//! [`VIEW_TICK`], and draws only when a key was pressed or a picture changed.

pub mod app;
pub mod screen;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::Event as TermEvent;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::app::{CompareApp, CompareRequest, SideView};
use self::screen::render;
use crate::cluster::view::ClusterView;
use crate::compare::Lineup;
use crate::tui::frontend::FRAME;
use crate::tui::keymap::Keymap;
use crate::tui::terminal::{self, Output, Terminal};
use crate::tui::theme::Theme;
use crate::tui::Quit;

/// How often every cluster's picture (with its verdict) is taken.
pub const VIEW_TICK: Duration = Duration::from_millis(250);
/// How long the key reader waits for input before it looks whether the loop still runs.
const TERMINAL_POLL: Duration = Duration::from_millis(50);

/// Runs the compare screen until the user quits, then stops every cluster.
pub async fn run(lineup: Lineup) -> anyhow::Result<Quit> {
    let keymap = Keymap::load().map_err(anyhow::Error::msg)?;
    let theme = Theme::from_env();
    if theme == Theme::mono() {
        crossterm::style::force_color_output(true);
    }
    let sides = lineup.sides.iter().map(|s| SideView { name: s.name, label: s.label.clone(), mode: s.mode, view: s.engine.view(true) }).collect();
    let mut app = CompareApp::new(sides, keymap, theme);
    let (mut terminal, output) = terminal::init(false).context("taking the terminal")?;
    let result = event_loop(&mut terminal, &output, &mut app, &lineup).await;
    terminal::restore(terminal, &output, false);
    lineup.shutdown().await;
    result
}

async fn event_loop(terminal: &mut Terminal, output: &Output, app: &mut CompareApp, lineup: &Lineup) -> anyhow::Result<Quit> {
    let (key_tx, mut keys) = mpsc::unbounded_channel::<std::io::Result<TermEvent>>();
    let reading = Arc::new(AtomicBool::new(true));
    let still = reading.clone();
    std::thread::spawn(move || {
        while still.load(Ordering::Relaxed) {
            match crossterm::event::poll(TERMINAL_POLL) {
                Ok(false) => {}
                Ok(true) => {
                    let read = crossterm::event::read();
                    let failed = read.is_err();
                    if key_tx.send(read).is_err() || failed {
                        return;
                    }
                }
                Err(e) => {
                    let _ = key_tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let (views_tx, mut views) = watch::channel(Vec::<ClusterView>::new());
    let engines: Vec<_> = lineup.sides.iter().map(|s| s.engine.clone()).collect();
    let viewer = tokio::spawn(async move {
        loop {
            let e = engines.clone();
            let Ok(pictures) = tokio::task::spawn_blocking(move || e.iter().map(|e| e.view(true)).collect::<Vec<_>>()).await else {
                return;
            };
            if views_tx.send(pictures).is_err() {
                return;
            }
            tokio::time::sleep(VIEW_TICK).await;
        }
    });
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut generator: Option<JoinHandle<()>> = None;
    let mut dirty = true;
    let mut quit = Quit::User;
    let result = loop {
        if app.quit {
            break Ok(quit);
        }
        // While the terminal has not taken the last frame the next waits (a picture comes each
        // VIEW_TICK and looks again).
        if dirty && !output.behind() {
            if let Err(e) = terminal.draw(|f| render(app, f)).context("drawing") {
                break Err(e);
            }
            dirty = false;
        }
        tokio::select! {
            key = keys.recv() => match key {
                Some(Ok(TermEvent::Key(_))) | Some(Ok(TermEvent::Resize(..))) => {
                    if let Some(Ok(ev)) = &key {
                        if let Some(k) = ev.as_key_press_event() {
                            if let Some(action) = app.on_key(&k) {
                                app.update(action);
                            }
                        }
                    }
                    dirty = true;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(e).context("reading the terminal"),
                None => break Ok(quit),
            },
            _ = sigterm.recv() => { quit = Quit::Signal(15); app.quit = true; }
            _ = sighup.recv() => { quit = Quit::Signal(1); app.quit = true; }
            changed = views.changed() => {
                if changed.is_err() {
                    break Ok(quit);
                }
                let pictures = views.borrow_and_update().clone();
                for (i, v) in pictures.into_iter().enumerate() {
                    let mut old = app.sides[i].view.clone();
                    old.time_ms = v.time_ms;
                    dirty |= old != v;
                    app.refresh(i, v);
                }
                // At most one frame per FRAME, however fast pictures come.
                tokio::time::sleep(FRAME).await;
            }
        }
        for request in std::mem::take(&mut app.requests) {
            match request {
                CompareRequest::Produce(value) => {
                    if let Err(e) = lineup.topic().produce(&value, None) {
                        app.message = format!("could not produce {value:?}: {e}");
                    }
                }
                CompareRequest::Every(command) => lineup.command(command),
                CompareRequest::Side(i, command) => {
                    if let Some(side) = lineup.sides.get(i) {
                        side.engine.command(command);
                    }
                }
                CompareRequest::StartGenerator(spec) => {
                    if let Some(g) = generator.take() {
                        g.abort();
                    }
                    generator = Some(lineup.sides[0].engine.generate(spec));
                }
                CompareRequest::StopGenerator => {
                    if let Some(g) = generator.take() {
                        g.abort();
                    }
                }
            }
        }
    };
    reading.store(false, Ordering::Relaxed);
    viewer.abort();
    let _ = viewer.await;
    if let Some(g) = generator {
        g.abort();
    }
    result
}
