//! Task managers' names: `tm-1` .. `tm-64` ([`MAX_TASK_MANAGERS`]), the only names a scenario
//! step, a key or a command can give. A name also names the TM's local directory, so nothing else
//! may pass: `kill = "/tmp/victim"` is refused before it gets near a path.
//!
//! And what a hang does to a task manager's tasks ([`freezable`]): they stop where they are,
//! holding their channels open, so that nothing breaks and nothing moves.

use std::future::Future;

use tokio::sync::watch;

use crate::config::MAX_TASK_MANAGERS;

/// A name that is not `tm-1` .. `tm-64`: refused before it names a directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a task manager: they are named tm-1 .. tm-{MAX_TASK_MANAGERS}")]
pub struct NotATaskManager {
    pub text: String,
}

/// The number in `tm-N`, or why the text is not a task manager's name.
///
/// ```
/// use ckptlab::cluster::taskmanager::parse_name;
/// assert_eq!(parse_name("tm-2"), Ok(2));
/// assert!(parse_name("/tmp/victim").is_err());
/// assert!(parse_name("tm-0").is_err());
/// ```
pub fn parse_name(text: &str) -> Result<usize, NotATaskManager> {
    let n = text
        .strip_prefix("tm-")
        .filter(|d| !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0'))
        .and_then(|d| d.parse::<usize>().ok());
    match n {
        Some(n) if (1..=MAX_TASK_MANAGERS).contains(&n) => Ok(n),
        _ => Err(NotATaskManager { text: text.to_string() }),
    }
}

/// `tm-N`.
pub fn name(n: usize) -> String {
    format!("tm-{n}")
}

/// "tm-1, tm-2": the names of task managers 1..=count, for messages.
pub fn list(count: usize) -> String {
    (1..=count).map(name).collect::<Vec<_>>().join(", ")
}

/// Runs `task` until it ends, except while `hung` says true: then it is not polled at all, so
/// it reads nothing, sends nothing, answers nothing, and keeps every channel end it owns open (a
/// hung JVM's TCP connections stay up: its peers wait, they do not fail). If the sender of `hung`
/// goes away the task simply runs on.
pub async fn freezable<F: Future<Output = ()>>(task: F, mut hung: watch::Receiver<bool>) {
    tokio::pin!(task);
    loop {
        while *hung.borrow_and_update() {
            if hung.changed().await.is_err() {
                return task.await;
            }
        }
        tokio::select! {
            biased;
            changed = hung.changed() => if changed.is_err() {
                return task.await;
            },
            () = &mut task => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Catches: a hang that aborts the task (its channels would close and its peers fail) or that
    /// lets it go on working.
    #[tokio::test(start_paused = true)]
    async fn a_frozen_task_makes_no_progress_and_keeps_what_it_owns() {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let ticks = Arc::new(AtomicU64::new(0));
        let (hang, hung) = watch::channel(false);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let t = ticks.clone();
        let task = tokio::spawn(freezable(
            async move {
                let _held = tx;
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    t.fetch_add(1, Ordering::Relaxed);
                }
            },
            hung,
        ));
        tokio::time::sleep(std::time::Duration::from_millis(105)).await;
        let before = ticks.load(Ordering::Relaxed);
        assert!(before >= 9, "runs while not hung: {before}");
        hang.send_replace(true);
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        assert!(ticks.load(Ordering::Relaxed) <= before + 1, "no progress while hung");
        assert!(rx.try_recv().is_err_and(|e| e == tokio::sync::mpsc::error::TryRecvError::Empty), "its channel stays open");
        hang.send_replace(false);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(ticks.load(Ordering::Relaxed) >= before + 5, "runs again once answered");
        task.abort();
    }

    #[test]
    fn only_tm_n_names_pass() {
        assert_eq!(parse_name("tm-64"), Ok(64));
        for bad in ["tm-65", "tm-01", "tm-", "tm-1/..", "../tm-1", "filesystem", "/", "", "tm--1", "TM-1", "tm-1 "] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }
}
