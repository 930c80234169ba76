//! The terminal's output, written from a thread of its own. A terminal that takes no output (a
//! stopped tmux server, a frozen SSH session, a pty nobody reads) blocks a write for as long as
//! it likes; the screen's loop never makes that write itself, so it still hears SIGTERM, quits
//! and stops the cluster. Frames go to the writer thread whole; while one is not written yet the
//! loop draws no other ([`Output::behind`]), so nothing piles up and no frame is lost half-way.
//! Restoring the terminal waits for its bytes at most [`WRITE_DEADLINE`], then the process goes
//! on to exit however the terminal is.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::CrosstermBackend;

/// The longest restoring the terminal waits for it to take its last bytes (leave the alternate
/// screen, show the cursor). A terminal that reads does so in microseconds.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(1);

/// The screen's terminal: ratatui over the writer thread.
pub type Terminal = ratatui::Terminal<CrosstermBackend<Writer>>;

#[derive(Default)]
struct State {
    /// Flushed bytes the thread has not taken yet.
    pending: Vec<u8>,
    /// The thread is writing bytes it took.
    writing: bool,
    /// The last write failed (the terminal is gone): later writes report it.
    failed: Option<io::ErrorKind>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handle on the writer thread: whether it is behind, and waiting for it.
#[derive(Clone)]
pub struct Output {
    shared: Arc<Shared>,
}

/// What ratatui writes to: bytes gather here and go to the thread on `flush` (once per frame).
pub struct Writer {
    buf: Vec<u8>,
    shared: Arc<Shared>,
}

impl Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut s = self.shared.lock();
        if let Some(kind) = s.failed {
            self.buf.clear();
            return Err(io::Error::new(kind, "the terminal took no more output"));
        }
        s.pending.append(&mut self.buf);
        self.shared.changed.notify_all();
        Ok(())
    }
}

impl Output {
    /// Starts the writer thread on a copy of stdout's descriptor (so that nothing else waits on
    /// the standard library's stdout lock while a write blocks).
    fn start() -> io::Result<Output> {
        let mut out = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new() });
        let thread_shared = shared.clone();
        std::thread::Builder::new().name("terminal-writer".into()).spawn(move || loop {
            let chunk = {
                let mut s = thread_shared.lock();
                while s.pending.is_empty() {
                    s = thread_shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                s.writing = true;
                std::mem::take(&mut s.pending)
            };
            let result = out.write_all(&chunk).and_then(|()| out.flush());
            let mut s = thread_shared.lock();
            s.writing = false;
            if let Err(e) = result {
                s.failed.get_or_insert(e.kind());
            }
            thread_shared.changed.notify_all();
        })?;
        Ok(Output { shared })
    }

    fn writer(&self) -> Writer {
        Writer { buf: Vec::new(), shared: self.shared.clone() }
    }

    /// The thread has bytes it has not written yet: the terminal is slow, or takes nothing.
    pub fn behind(&self) -> bool {
        let s = self.shared.lock();
        !s.pending.is_empty() || s.writing
    }

    /// Waits until every flushed byte is written, at most `deadline`; whether they were.
    pub fn wait_written(&self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        let mut s = self.shared.lock();
        while (!s.pending.is_empty() || s.writing) && s.failed.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self.shared.changed.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

/// Takes the terminal as `ratatui::init` does (raw mode, the alternate screen; bracketed paste
/// when asked), with output through the writer thread, and a panic hook that restores it.
pub fn init(bracketed_paste: bool) -> io::Result<(Terminal, Output)> {
    let output = Output::start()?;
    crossterm::terminal::enable_raw_mode()?;
    let mut w = output.writer();
    crossterm::queue!(w, EnterAlternateScreen)?;
    if bracketed_paste {
        // A paste arrives as one event (records, one per line) instead of thousands of key presses.
        crossterm::queue!(w, EnableBracketedPaste)?;
    }
    w.flush()?;
    let hook_output = output.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        leave(&hook_output, bracketed_paste);
        previous(info);
    }));
    let terminal = ratatui::Terminal::new(CrosstermBackend::new(output.writer()))?;
    Ok((terminal, output))
}

/// Gives the terminal back (raw mode off, the alternate screen left, the cursor shown), waiting
/// for it at most [`WRITE_DEADLINE`]: a terminal that takes nothing is left as it is.
pub fn restore(terminal: Terminal, output: &Output, bracketed_paste: bool) {
    // Its drop shows the cursor (through the writer).
    drop(terminal);
    leave(output, bracketed_paste);
}

fn leave(output: &Output, bracketed_paste: bool) {
    // Raw mode first (tcsetattr does not wait for output): the shell gets a sane line discipline
    // even if the bytes below never reach the terminal.
    let _ = crossterm::terminal::disable_raw_mode();
    let mut w = output.writer();
    if bracketed_paste {
        let _ = crossterm::queue!(w, DisableBracketedPaste);
    }
    let _ = crossterm::queue!(w, LeaveAlternateScreen, crossterm::cursor::Show);
    let _ = w.flush();
    if !output.wait_written(WRITE_DEADLINE) {
        tracing::warn!(deadline_ms = WRITE_DEADLINE.as_millis() as u64, "the terminal took no output: it is left as it is");
    }
}
