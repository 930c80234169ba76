//! End to end, as a person uses it: the real binary in tmux (send-keys to type, capture-pane to
//! read the screen), or on a pty nobody reads (a terminal that takes no output). The seed's
//! exactly-once experiment: two records, kill the TM, a record while it is down, start the TM,
//! and the output and verdict read right; then quit and the terminal is back. Waits poll the
//! screen with generous deadlines; the bounds on time are the write deadline plus the cluster's
//! shutdown (SIGTERM with a stopped terminal) and a busy UI's ([`BUSY_UI`], keys with 2 M records:
//! the figure itself is `benches/key_latency.sh`'s).

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
    target: String,
}

impl Tmux {
    /// A detached session `name` of `width`x`height` running a plain bash, on a private server.
    fn start(name: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux { socket: format!("ckptlab-{name}-{}", std::process::id()), target: name.into() };
        let (w, h) = (width.to_string(), height.to_string());
        let started = tmux.run(&["new-session", "-d", "-s", name, "-x", &w, "-y", &h, "bash --norc --noprofile"]);
        assert!(started.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&started.stderr));
        tmux
    }

    /// Waits for the shell's `EXIT:0` and checks the workbench left nothing behind on the terminal.
    fn assert_back_at_the_shell(&self, after: &str) {
        self.assert_exit(after, 0);
    }

    /// Waits for the shell's `EXIT:<code>` and checks the workbench left nothing behind.
    fn assert_exit(&self, after: &str, code: i32) {
        let s =
            self.wait_for(&format!("the shell back after {after} with exit status {code}"), 10, |s| s.contains(&format!("EXIT:{code}")));
        assert!(!s.contains("Job graph"), "the workbench is gone from the screen:\n{s}");
        let alt = self.run(&["display-message", "-p", "-t", &self.target, "#{alternate_on}"]);
        assert_eq!(String::from_utf8_lossy(&alt.stdout).trim(), "0", "the terminal left the alternate screen");
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux runs")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.target];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "send-keys {keys:?}");
        // Let the app read each batch on its own: an Esc followed at once by a key reads as Alt-key.
        std::thread::sleep(Duration::from_millis(250));
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", &self.target]).stdout).into_owned()
    }

    /// Polls the screen until `ok` holds; panics with the last screen after `secs`.
    fn wait_for(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out after {secs}s waiting for {what}; the screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The state pane's TOTAL row, words joined by one space: `TOTAL <state> <truth> <verdict>`.
fn total_row(screen: &str) -> Option<String> {
    let line = screen.lines().find(|l| l.contains("TOTAL"))?;
    let cell = line.split('│').find(|c| c.contains("TOTAL"))?;
    Some(cell.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Whether tmux is here; on CI it must be (.ci/run installs it), elsewhere the test says it skips.
fn tmux_available() -> bool {
    if Command::new("tmux").arg("-V").output().is_ok() {
        return true;
    }
    common::skip("tmux is not installed (apt-get install tmux; .ci/run installs it)");
    false
}

fn completed(screen: &str) -> u64 {
    screen
        .split("completed ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn workbench_in_tmux_recovers_a_killed_tm_exactly_once() {
    if !tmux_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = Path::new(common::BIN);
    let tmux = Tmux::start("e2e", 100, 30);
    // An empty working directory: no conf/ckptlab.toml or conf/keys.toml of the checkout applies.
    let cmd = format!(
        "cd {} && CKPTLAB_LOG={}/ckptlab.log {} --set execution.checkpointing.interval=500ms --set heartbeat.timeout=1s \
         --set ckptlab.hop-delay=20ms; echo EXIT:$?",
        dir.path().display(),
        dir.path().display(),
        bin.display()
    );
    tmux.keys(&[&cmd, "Enter"]);
    tmux.wait_for("the workbench running", 20, |s| s.contains("● RUNNING") && s.contains("Job graph"));

    tmux.keys(&["i"]);
    tmux.keys(&["a", "Enter", "b", "Enter"]);
    tmux.keys(&["Escape"]);
    let s = tmux.wait_for("a and b in the output", 20, |s| s.contains(": (a,1)") && s.contains(": (b,1)"));
    // A checkpoint that completes after both were counted, so that the restore keeps them.
    let before = completed(&s);
    tmux.wait_for("a checkpoint after a and b", 20, |s| completed(s) >= before + 2);

    tmux.keys(&["k"]);
    tmux.wait_for("tm-1 killed", 10, |s| s.contains("✗ tm-1"));
    tmux.keys(&["i"]);
    tmux.keys(&["c", "Enter"]);
    tmux.keys(&["Escape"]);
    tmux.wait_for("the job waiting for a slot", 20, |s| s.contains("tasks SCHEDULED"));
    tmux.keys(&["s"]);
    let s = tmux.wait_for("c counted and the job caught up", 30, |s| {
        s.contains(": (c,1)") && s.contains("caught up") && total_row(s).is_some_and(|t| t.split_whitespace().nth(2) == Some("3"))
    });

    for line in [": (a,1)", ": (b,1)", ": (c,1)"] {
        assert!(s.contains(line), "the output pane shows {line}:\n{s}");
    }
    let total = total_row(&s).unwrap_or_else(|| panic!("no TOTAL row:\n{s}"));
    assert!(total.starts_with("TOTAL 3 3 ✓ ok"), "TOTAL: state 3, truth 3, ok under exactly-once: {total}\n{s}");

    tmux.keys(&["q"]);
    tmux.assert_back_at_the_shell("q");
    let log = std::fs::read_to_string(dir.path().join("ckptlab.log")).unwrap_or_default();
    assert!(log.contains("first frame drawn") && log.contains("workbench closed"), "logs went to the file:\n{log}");
}

#[test]
fn sigterm_quits_and_restores_the_terminal() {
    if !tmux_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = Path::new(common::BIN);
    let tmux = Tmux::start("term", 90, 26);
    let cmd = format!("cd {} && CKPTLAB_LOG={}/ckptlab.log {}; echo EXIT:$?", dir.path().display(), dir.path().display(), bin.display());
    tmux.keys(&[&cmd, "Enter"]);
    tmux.wait_for("the workbench running", 20, |s| s.contains("● RUNNING"));
    let shell = String::from_utf8_lossy(&tmux.run(&["display-message", "-p", "-t", "term", "#{pane_pid}"]).stdout).trim().to_string();
    let child = Command::new("pgrep").args(["-P", &shell]).output().expect("pgrep");
    let pid = String::from_utf8_lossy(&child.stdout).trim().to_string();
    assert!(!pid.is_empty(), "the workbench's pid under the shell {shell}");
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    // 128 + 15, as a shell reports a process SIGTERM ended.
    tmux.assert_exit("SIGTERM", 143);
}

#[test]
fn sighup_quits_with_129_and_restores_the_terminal() {
    if !tmux_available() {
        return;
    }
    let (tmux, _dir) = workbench("hup", 90, 26, "");
    let shell = String::from_utf8_lossy(&tmux.run(&["display-message", "-p", "-t", "hup", "#{pane_pid}"]).stdout).trim().to_string();
    let child = Command::new("pgrep").args(["-P", &shell]).output().expect("pgrep");
    let pid = String::from_utf8_lossy(&child.stdout).trim().to_string();
    assert!(!pid.is_empty(), "the workbench's pid under the shell {shell}");
    assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    tmux.assert_exit("SIGHUP", 129);
}

/// The workbench at the path of tmux: started in an empty directory with `extra` arguments.
fn workbench(name: &str, width: u16, height: u16, extra: &str) -> (Tmux, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = Path::new(common::BIN);
    let tmux = Tmux::start(name, width, height);
    let cmd =
        format!("cd {} && CKPTLAB_LOG={}/ckptlab.log {} {extra}; echo EXIT:$?", dir.path().display(), dir.path().display(), bin.display());
    tmux.keys(&[&cmd, "Enter"]);
    tmux.wait_for("the workbench running", 30, |s| s.contains("● RUNNING"));
    (tmux, dir)
}

/// Issue 12, item 1: an at-least-once overcount from the keys alone, from the default screen:
/// m m (AT_LEAST_ONCE), d (slow channel), g (generator), two checkpoints, k, s.
#[test]
fn at_least_once_overcounts_from_the_keys_alone() {
    if !tmux_available() {
        return;
    }
    let (tmux, _dir) = workbench("overcount", 100, 30, "");
    for k in ["m", "m", "d", "g"] {
        tmux.keys(&[k]);
    }
    let s =
        tmux.wait_for("AT_LEAST_ONCE with the slow channel", 10, |s| s.contains("AT_LEAST_ONCE") && s.contains("slow src1→cnt* +300 ms"));
    let before = completed(&s);
    tmux.wait_for("two checkpoints with the slow channel", 30, |s| completed(s) >= before + 2);
    tmux.keys(&["k"]);
    tmux.keys(&["s"]);
    let s = tmux.wait_for("an overcount in the state pane", 60, |s| total_row(s).is_some_and(|t| t.contains("overcounted")));
    assert!(s.contains("restored checkpoint") || s.contains("restored 1"), "the restore replayed records:\n{s}");
    tmux.keys(&["q"]);
    tmux.assert_back_at_the_shell("q");
}

/// Issue 12, item 3: a scenario plays live in the workbench, its steps on screen, with its result.
#[test]
fn a_scenario_plays_in_the_workbench() {
    if !tmux_available() {
        return;
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/scenarios/seed-exactly-once.toml");
    let (tmux, _dir) = workbench("scenario", 120, 40, &format!("--scenario {}", file.display()));
    let s = tmux.wait_for("the scenario pane", 10, |s| s.contains("Scenario"));
    assert!(s.contains("produce") || s.contains("await"), "the steps are listed:\n{s}");
    let s = tmux.wait_for("the scenario's result", 90, |s| s.contains("PASSED") || s.contains("FAILED"));
    assert!(s.contains("PASSED"), "seed-exactly-once passes:\n{s}");
    tmux.keys(&["q"]);
    tmux.assert_back_at_the_shell("q");
}

/// Issue 12, item 10: a pasted block is records, one per line, and the next key is handled at
/// once (after a 4,000-character paste the keys used to wait for more input).
#[test]
fn a_paste_is_records_and_the_next_key_is_handled() {
    if !tmux_available() {
        return;
    }
    let (tmux, _dir) = workbench("paste", 100, 30, "--set ckptlab.hop-delay=0ms");
    tmux.keys(&["i"]);
    let block: String = (0..400).map(|i| format!("k{:03}x\n", i % 4)).collect::<String>() + &"long".repeat(400);
    assert!(block.len() >= 4000);
    assert!(tmux.run(&["set-buffer", "-b", "p", &block]).status.success());
    // -p: as a terminal pastes, in bracketed-paste markers when the application asked for them.
    assert!(tmux.run(&["paste-buffer", "-p", "-b", "p", "-t", &tmux.target]).status.success());
    let s = tmux.wait_for("the pasted records counted", 30, |s| s.contains("k000x") && s.contains("k003x") && s.contains("pasted 401"));
    assert!(s.contains("k001x"), "{s}");
    tmux.keys(&["Escape"]);
    tmux.keys(&["?"]);
    tmux.wait_for("the key after the paste handled", 5, |s| s.contains("Help"));
    tmux.keys(&["q"]);
    tmux.keys(&["q"]);
    tmux.assert_back_at_the_shell("q");
}

/// Issue 12, item 8: with 2 M records in the topic the verdict takes seconds, and the screen
/// still answers a key (the freeze seen before was 2.1 s). The figure, keypress to screen through
/// tmux, is `benches/key_latency.sh`'s (median 78 ms and 101 ms in two runs at load 8 on 2 cores,
/// p90 under 250 ms). This test holds only [`BUSY_UI`]: a bound on time through tmux on a shared
/// machine is a measurement, and 100 ms here failed at 101 ms while nothing was wrong.
#[test]
fn keys_answer_at_once_with_two_million_records() {
    if !tmux_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let fill = dir.path().join("fill.toml");
    std::fs::write(
        &fill,
        "name = \"fill\"\n[config.ckptlab]\nhop-delay = \"0ms\"\n[[steps]]\ngenerate = { rate = 1000000, duration = \"2s\", keys = [\"a\", \"b\", \"c\", \"d\"] }\n[[steps]]\nawait = \"caught-up\"\ntimeout = \"5min\"\n",
    )
    .expect("write the scenario");
    let (tmux, _wd) = workbench("latency", 120, 40, &format!("--scenario {}", fill.display()));
    let s = tmux.wait_for("2 M records in the topic", 120, |s| topic_end(s) >= 2_000_000);
    let mut took = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        tmux.run(&["send-keys", "-t", &tmux.target, "?"]);
        // Polled as fast as tmux answers (wait_for's 100 ms step would be the figure).
        while !tmux.screen().contains(" Help ") {
            assert!(t.elapsed() < Duration::from_secs(10), "help never opened:\n{}", tmux.screen());
        }
        took.push(t.elapsed());
        tmux.run(&["send-keys", "-t", &tmux.target, "Escape"]);
        tmux.wait_for("help closed", 10, |s| !s.contains(" Help "));
        std::thread::sleep(Duration::from_millis(300));
    }
    took.sort();
    let median = took[took.len() / 2];
    eprintln!("keypress to screen at {} records: median {median:?}, max {:?}", topic_end(&s), took.last());
    assert!(median < BUSY_UI, "median {median:?} (all: {took:?}): the screen waits for the engine");
    tmux.keys(&["q"]);
    tmux.assert_back_at_the_shell("q");
}

/// A median keypress-to-screen time that means a busy UI, not a slow machine: ten times the
/// figure measured under load (101 ms), half the freeze it guards against (2.1 s).
const BUSY_UI: Duration = Duration::from_secs(1);

/// The topic's records (sum of every partition's end) as the input line shows them.
fn topic_end(screen: &str) -> u64 {
    let Some(line) = screen.lines().find(|l| l.contains("Input → topic")) else { return 0 };
    line.split_whitespace()
        .filter_map(|w| w.split('/').nth(1).or_else(|| w.parse::<u64>().ok().map(|_| w)))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// Issue 13: a lesson as a student plays it, by keys: read, type the records the step asks for,
/// predict wrong, read the explanation, go on, kill the TM by hand, then leave the lesson.
#[test]
fn a_lesson_in_tmux_predict_wrong_read_why_go_on() {
    if !tmux_available() {
        return;
    }
    let (tmux, _dir) = workbench("lesson", 100, 30, "lesson checkpoints-disabled");
    tmux.wait_for("the lesson's first step", 10, |s| s.contains("Lesson: Checkpoints disabled") && s.contains("step 1/14"));
    tmux.keys(&["n"]);
    tmux.wait_for("step 2 waits for the learner", 10, |s| s.contains("step 2/14") && s.contains("your turn"));
    // The learner types the three records by hand: the lesson sees them in the engine's events.
    tmux.keys(&["i"]);
    tmux.keys(&["a", "Enter", "b", "Enter", "c", "Enter"]);
    tmux.keys(&["Escape"]);
    tmux.wait_for("the lesson saw the records", 10, |s| s.contains("you did it: record produced"));
    tmux.keys(&["n"]);
    tmux.wait_for("step 3 done (caught up)", 20, |s| s.contains("step 3/14") && s.contains("✓ done"));
    tmux.keys(&["n"]);
    tmux.wait_for("step 4's expect held", 20, |s| s.contains("step 4/14") && s.contains("✓ done"));
    tmux.keys(&["n"]);
    tmux.wait_for("the prediction", 10, |s| s.contains("Predict (press 1 to 3): What will the counter print for g?"));
    // n before answering is refused; a wrong answer shows the right one and why.
    tmux.keys(&["n"]);
    tmux.wait_for("predict first", 10, |s| s.contains("predict first"));
    tmux.keys(&["1"]);
    let s = tmux.wait_for("the explanation", 10, |s| s.contains("You said 1. Not quite: it is 3:"));
    assert!(s.contains("step 5/14"), "{s}");
    tmux.keys(&["n"]);
    tmux.wait_for("step 6 asks for the kill", 10, |s| s.contains("step 6/14") && s.contains("your turn"));
    tmux.keys(&["k"]);
    tmux.wait_for("the lesson saw the kill", 10, |s| s.contains("you did it: task manager killed") && s.contains("✗ tm-1"));
    tmux.keys(&["L"]);
    let s = tmux.wait_for("the lesson left, the cluster kept", 10, |s| !s.contains("Lesson:") && s.contains("left the lesson"));
    assert!(s.contains("Job graph"), "{s}");
    tmux.keys(&["q"]);
    tmux.assert_back_at_the_shell("q");
}

/// Issue 13 §2: `ckptlab compare` as a person uses it: two clusters on one topic, a record typed
/// once reaches both, one key kills tm-1 in both, one starts it again, and the verdicts stand
/// side by side; q leaves the terminal as it was.
#[test]
fn compare_in_tmux_kills_in_every_cluster_and_shows_both_verdicts() {
    if !tmux_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = Path::new(common::BIN);
    let tmux = Tmux::start("compare", 100, 30);
    let cmd = format!(
        "cd {} && CKPTLAB_LOG={}/ckptlab.log {} compare --modes EXACTLY_ONCE,AT_LEAST_ONCE --set execution.checkpointing.interval=500ms \
         --set heartbeat.timeout=1s --set ckptlab.hop-delay=20ms; echo EXIT:$?",
        dir.path().display(),
        dir.path().display(),
        bin.display()
    );
    tmux.keys(&[&cmd, "Enter"]);
    tmux.wait_for("both clusters running", 30, |s| {
        s.matches("RUNNING").count() >= 2 && s.contains("EXACTLY_ONCE") && s.contains("AT_LEAST_ONCE")
    });
    tmux.keys(&["i"]);
    tmux.keys(&["a", "Enter", "b", "Enter"]);
    tmux.keys(&["Escape"]);
    tmux.wait_for("the two records counted on both sides", 20, |s| {
        s.lines().any(|l| l.contains("TOTAL") && l.split_whitespace().filter(|w| *w == "2").count() >= 3)
    });
    tmux.keys(&["k"]);
    tmux.wait_for("tm-1 killed in both clusters", 20, |s| s.matches("tm-1 ✗").count() >= 2);
    tmux.keys(&["s"]);
    let s = tmux.wait_for("both clusters back, restarted once", 40, |s| {
        s.matches("RUNNING").count() >= 2 && s.matches("tm-1 ●").count() >= 2 && s.matches("restarts 1").count() >= 2
    });
    assert!(s.contains("one topic"), "{s}");
    tmux.keys(&["q"]);
    tmux.assert_exit("q", 0);
}

/// Issue 23: `ckptlab compare --vary job.sink=print,kafka`: two clusters that differ only in their
/// sink, each headed by its sink's name (not by the mode both run), both running.
#[test]
fn compare_vary_heads_each_side_by_its_sink() {
    if !tmux_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = Path::new(common::BIN);
    let tmux = Tmux::start("compare-vary", 100, 30);
    let cmd = format!(
        "cd {} && CKPTLAB_LOG={}/ckptlab.log {} compare --vary job.sink=print,kafka --set sink.transactional-id-prefix=ck \
         --set ckptlab.hop-delay=20ms; echo EXIT:$?",
        dir.path().display(),
        dir.path().display(),
        bin.display()
    );
    tmux.keys(&[&cmd, "Enter"]);
    let s = tmux.wait_for("both clusters running under their sinks' names", 30, |s| {
        s.matches("RUNNING").count() >= 2 && s.contains(" print ") && s.contains(" kafka ")
    });
    assert!(s.contains("one topic"), "{s}");
    tmux.keys(&["q"]);
    tmux.assert_exit("q", 0);
}

/// Issue 20 §4: a terminal that takes no output (a stopped tmux server, a frozen SSH session):
/// the real binary on a pty whose master nobody reads, so its writes block once the pty's buffer
/// is full. SIGTERM must still end it with 143, within the terminal write deadline plus the
/// cluster's shutdown, and stop the cluster (the process is gone).
struct StoppedTerminal {
    master: std::os::fd::OwnedFd,
    slave_path: std::path::PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

/// How long the cluster's shutdown after the restore may take: it stops a job of a few tasks
/// (8 ms measured here; the rest is slack for a loaded 2-core machine).
const SHUTDOWN_SLACK: Duration = Duration::from_secs(2);

impl StoppedTerminal {
    /// `args` on a 400x200 pty (a big screen: the first frames already fill the pty's buffer).
    fn start(args: &[&str]) -> StoppedTerminal {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize { ws_row: 200, ws_col: 400, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: openpty writes two descriptors into the ints; the name and termios are unused.
        let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are open and owned by nothing else.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&slave))).expect("the pty's name");
        let io = || std::process::Stdio::from(slave.try_clone().expect("dup the pty"));
        let mut cmd = common::binary();
        cmd.args(args)
            .current_dir(dir.path())
            .env("CKPTLAB_LOG", dir.path().join("ckptlab.log"))
            .env("CKPTLAB_HOME", dir.path())
            .env_remove("NO_COLOR")
            .stdin(io())
            .stdout(io())
            .stderr(io());
        // SAFETY: only async-signal-safe calls between fork and exec: a session of its own with
        // the pty as its controlling terminal, as a terminal emulator starts a shell.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("ckptlab starts");
        drop(slave);
        StoppedTerminal { master, slave_path, child, _dir: dir }
    }

    /// Bytes written to the pty that nobody read.
    fn unread(&self) -> i32 {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD stores one int.
        unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&self.master), libc::FIONREAD, &mut n) };
        n
    }

    /// Types into the terminal (the pty's input side is not full: only its output is unread).
    fn keys(&self, keys: &str) {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.master);
        // SAFETY: writes from a live buffer of its length.
        let n = unsafe { libc::write(fd, keys.as_ptr().cast(), keys.len()) };
        assert_eq!(n, keys.len() as isize, "typing {keys:?}");
    }

    /// A thread of the process sits in write(2) on the pty (as /proc shows a blocked syscall).
    fn blocked_in_a_terminal_write(&self) -> bool {
        let pid = self.child.id();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
        tasks.flatten().any(|t| {
            let Ok(line) = std::fs::read_to_string(t.path().join("syscall")) else { return false };
            let mut f = line.split_whitespace();
            let (Some(nr), Some(fd)) = (f.next(), f.next()) else { return false };
            let fd = i64::from_str_radix(fd.trim_start_matches("0x"), 16).unwrap_or(-1);
            nr.parse::<i64>() == Ok(libc::SYS_write)
                && std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|p| p == self.slave_path)
        })
    }

    /// Waits until the screen has filled the pty's buffer and a write blocks (seen twice, a
    /// moment apart: a write that is merely under way is not blocked).
    fn wait_until_blocked(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.unread() == 0 {
            assert!(Instant::now() < deadline, "no first frame within 60 s");
            assert!(self.child.try_wait().expect("wait").is_none(), "ckptlab ended before its first frame");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The generator keeps the screen changing, so frames keep coming until the buffer is full.
        self.keys("g");
        loop {
            if self.blocked_in_a_terminal_write() {
                std::thread::sleep(Duration::from_millis(300));
                if self.blocked_in_a_terminal_write() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "no terminal write blocked within 60 s ({} bytes unread)", self.unread());
            assert!(self.child.try_wait().expect("wait").is_none(), "ckptlab ended before its terminal blocked");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the exit status and how long it took (`None`: still running at `bound`).
    fn terminate(&mut self, bound: Duration) -> (Option<std::process::ExitStatus>, Duration) {
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
        let sent = Instant::now();
        while sent.elapsed() < bound {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (Some(status), sent.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (None, sent.elapsed())
    }
}

impl Drop for StoppedTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sigterm_exits_143_with_a_stopped_terminal(args: &[&str]) {
    let mut t = StoppedTerminal::start(args);
    t.wait_until_blocked();
    let bound = ckptlab::tui::terminal::WRITE_DEADLINE + SHUTDOWN_SLACK;
    let (status, took) = t.terminate(bound);
    let status =
        status.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM, its terminal blocked ({} bytes unread)", t.unread()));
    assert_eq!(status.code(), Some(143), "128 + SIGTERM, after {took:?}: {status:?}");
    println!("exited with 143 {} ms after SIGTERM (bound {} ms)", took.as_millis(), bound.as_millis());
}

#[test]
fn sigterm_ends_the_workbench_with_143_while_its_terminal_takes_no_output() {
    sigterm_exits_143_with_a_stopped_terminal(&["--set", "ckptlab.hop-delay=5ms"]);
}

#[test]
fn sigterm_ends_compare_with_143_while_its_terminal_takes_no_output() {
    sigterm_exits_143_with_a_stopped_terminal(&["compare", "--modes", "EXACTLY_ONCE,AT_LEAST_ONCE", "--set", "ckptlab.hop-delay=5ms"]);
}

/// Issue 25 §7: README's `cargo run --release` runs in the checkout, whose `conf/ckptlab.toml`
/// is the shipped file (interval 5 s for `ckptlab run`); the workbench still checkpoints every
/// 1 s there, as from any other directory. A file that sets another interval decides.
/// Broken engine caught: the workbench default skipped whenever `./conf/ckptlab.toml` exists.
#[test]
fn the_checkouts_own_conf_keeps_the_workbench_default_and_an_edited_one_decides() {
    if !tmux_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("conf")).expect("conf dir");
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/ckptlab.toml")).expect("shipped conf");
    assert!(shipped.lines().any(|l| l.starts_with("interval = \"5s\"")), "the shipped conf keeps 5 s for run");
    let conf = dir.path().join("conf/ckptlab.toml");
    let bin = Path::new(common::BIN);
    let tmux = Tmux::start("checkout-conf", 120, 30);
    let cmd = format!("cd {} && {}; echo EXIT:$?", dir.path().display(), bin.display());
    for (text, shown) in [(shipped.clone(), "every 1s"), (shipped.replacen("interval = \"5s\"", "interval = \"2s\"", 1), "every 2s")] {
        std::fs::write(&conf, text).expect("write conf");
        tmux.keys(&[&cmd, "Enter"]);
        let s = tmux.wait_for("the workbench running", 30, |s| s.contains("● RUNNING"));
        let status = s.lines().find(|l| l.contains("● RUNNING")).unwrap_or_default();
        assert!(status.contains(shown), "expected `{shown}` in the status line: {status}");
        tmux.keys(&["q"]);
        tmux.assert_back_at_the_shell("q");
        tmux.keys(&["clear", "Enter"]);
    }
}
