//! The JVM that runs the Flink side: the Java harness (assets/flink), compiled with `javac`
//! against Flink's jars on first use (cached by a hash of its sources and the Flink version), and
//! driven over a line protocol: commands down its stdin (`kill tm-N`, `start tm-N`, `checkpoint`,
//! and, tab-separated because they carry paths, `savepoint FORMAT DIR`, `stop-with-savepoint
//! FORMAT DIR`, `submit PROPS [SAVEPOINT]`; `quit`), JSON lines up its stdout (events, and a state line every 50 ms). Its stderr (Flink's
//! print sink, stack traces) goes to a file in the run directory, Flink's log to flink.log there.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::install::{FlinkJars, Java};

/// The harness's sources, embedded so that the binary alone can build them: (path, text).
pub const SOURCES: &[(&str, &str)] = &[
    ("src/ckptlab/flink/CheckpointJob.java", include_str!("../../assets/flink/src/ckptlab/flink/CheckpointJob.java")),
    ("src/ckptlab/flink/FileLogSource.java", include_str!("../../assets/flink/src/ckptlab/flink/FileLogSource.java")),
    ("src/ckptlab/flink/ChannelDelay.java", include_str!("../../assets/flink/src/ckptlab/flink/ChannelDelay.java")),
    ("src/ckptlab/flink/CountPerKey.java", include_str!("../../assets/flink/src/ckptlab/flink/CountPerKey.java")),
    ("src/ckptlab/flink/ObservedSink.java", include_str!("../../assets/flink/src/ckptlab/flink/ObservedSink.java")),
    ("src/ckptlab/flink/TransactionalSink.java", include_str!("../../assets/flink/src/ckptlab/flink/TransactionalSink.java")),
    ("src/ckptlab/flink/Observed.java", include_str!("../../assets/flink/src/ckptlab/flink/Observed.java")),
    ("src/ckptlab/flink/Harness.java", include_str!("../../assets/flink/src/ckptlab/flink/Harness.java")),
    ("src/ckptlab/flink/RestartCounter.java", include_str!("../../assets/flink/src/ckptlab/flink/RestartCounter.java")),
    ("src/ckptlab/flink/Bench.java", include_str!("../../assets/flink/src/ckptlab/flink/Bench.java")),
];
/// Sources only the bridge's JVM needs (it drives a MiniCluster; `ckptlab bench --flink` runs
/// Bench on one): not part of an export.
pub const HARNESS_ONLY: &[&str] = &["Harness.java", "RestartCounter.java", "Bench.java"];
/// Where a ServiceLoader finds [`RESTART_COUNTER`] among the classes (Flink loads metric
/// reporter factories with one), and what it names.
const REPORTER_SERVICE: &str = "META-INF/services/org.apache.flink.metrics.reporter.MetricReporterFactory";
const RESTART_COUNTER: &str = "ckptlab.flink.RestartCounter";
/// Flink's log configuration for the harness (the log goes to `-Dckptlab.log.file`).
pub const LOG4J: &str = include_str!("../../assets/flink/log4j2.properties");

/// The JVM's stdout and stderr apart from the protocol: Flink's print sink writes its lines here.
pub const OUTPUT_FILE: &str = "flink-stdout-stderr.txt";

#[derive(Debug, Error)]
pub enum HarnessError {
    #[error("cannot compile the Flink harness in {dir}: {problem}")]
    Compile { dir: String, problem: String },
    #[error("cannot start the Flink JVM ({java}): {problem}")]
    Spawn { java: String, problem: String },
    #[error("the Flink JVM stopped talking: {0}")]
    Gone(String),
}

/// FNV-1a, 64 bits: a content hash that stays the same across builds and Rust versions.
pub fn content_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The harness's compiled classes, in `cache/harness-<hash>/classes`: compiled now if absent.
pub fn compiled(java: &Java, flink: &FlinkJars, cache: &Path) -> Result<PathBuf, HarnessError> {
    let mut parts: Vec<&str> = SOURCES.iter().flat_map(|(p, t)| [*p, *t]).collect();
    parts.push(LOG4J);
    parts.push(REPORTER_SERVICE);
    parts.push(RESTART_COUNTER);
    parts.push(&flink.version);
    let dir = cache.join(format!("harness-{:016x}", content_hash(&parts)));
    let classes = dir.join("classes");
    if classes.join("ckptlab/flink/Harness.class").is_file() {
        return Ok(dir);
    }
    let err = |problem: String| HarnessError::Compile { dir: dir.display().to_string(), problem };
    let scratch = cache.join(format!("harness-build-{}", std::process::id()));
    let _ = crate::workdir::remove_tree_under(cache, &scratch);
    for (path, text) in SOURCES {
        let p = scratch.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&p, text).map_err(|e| err(format!("{}: {e}", p.display())))?;
    }
    std::fs::write(scratch.join("log4j2.properties"), LOG4J).map_err(|e| err(e.to_string()))?;
    let out = Command::new(&java.javac)
        .arg("-nowarn")
        .arg("-d")
        .arg(scratch.join("classes"))
        .arg("-cp")
        .arg(format!("{}/*", flink.lib.display()))
        .args(SOURCES.iter().map(|(p, _)| scratch.join(p)))
        .output()
        .map_err(|e| err(format!("`{}` cannot run: {e}", java.javac.display())))?;
    if !out.status.success() {
        let _ = crate::workdir::remove_tree_under(cache, &scratch);
        return Err(err(format!("javac failed:\n{}", String::from_utf8_lossy(&out.stderr))));
    }
    let service = scratch.join("classes").join(REPORTER_SERVICE);
    if let Some(parent) = service.parent() {
        std::fs::create_dir_all(parent).map_err(|e| err(format!("{}: {e}", parent.display())))?;
    }
    std::fs::write(&service, format!("{RESTART_COUNTER}\n")).map_err(|e| err(format!("{}: {e}", service.display())))?;
    // Another run may have compiled the same sources meanwhile (and its JVM may be loading those
    // classes): keep its copy, never replace a directory in use.
    if classes.join("ckptlab/flink/Harness.class").is_file() {
        let _ = crate::workdir::remove_tree_under(cache, &scratch);
        return Ok(dir);
    }
    if let Err(e) = std::fs::rename(&scratch, &dir) {
        let _ = crate::workdir::remove_tree_under(cache, &scratch);
        if !classes.join("ckptlab/flink/Harness.class").is_file() {
            return Err(err(format!("cannot move the classes into place: {e}")));
        }
    }
    Ok(dir)
}

/// `java` on the compiled classes and Flink's jars, running `main` (a class of [`SOURCES`]),
/// with Flink's log in `run_dir/flink.log`; the caller adds the arguments and the pipes.
pub fn java_main(java: &Java, flink: &FlinkJars, harness_dir: &Path, run_dir: &Path, main: &str) -> Command {
    let mut c = Command::new(&java.java);
    c.arg(format!("-Dckptlab.log.file={}", run_dir.join("flink.log").display()))
        .arg(format!("-Dlog4j2.configurationFile={}", harness_dir.join("log4j2.properties").display()))
        .arg("-cp")
        .arg(format!("{}:{}/*", harness_dir.join("classes").display(), flink.lib.display()))
        .arg(main);
    c
}

/// A command's first word, as the harness (in the JVM, or [`super::session`] on the local
/// cluster) takes it, and as a [`FlinkEvent::Refused`] names the command again in its `what`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Verb {
    Kill,
    Hang,
    Start,
    Checkpoint,
    Savepoint,
    StopWithSavepoint,
    Submit,
}

impl Verb {
    /// The verb a refused command's `what` begins with (the command, its tabs as blanks).
    pub fn of(what: &str) -> Option<Verb> {
        what.split([' ', '\t']).next().and_then(|w| w.parse().ok())
    }

    /// The word as the command line spells it.
    pub fn word(self) -> &'static str {
        self.into()
    }
}

/// A line the harness sends up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum FlinkEvent {
    /// A job was submitted: the first, or a resubmission (`from`: the savepoint it restores).
    Submitted {
        job: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    /// A savepoint completed (`stop`: a stop-with-savepoint, the job is FINISHED); `id` is its
    /// checkpoint id when Flink's statistics still held it.
    SavepointCompleted {
        stop: bool,
        format: String,
        path: String,
        #[serde(default)]
        id: Option<u64>,
    },
    Status { status: String, all_running: bool },
    CheckpointCompleted { completed: u64 },
    CheckpointFailed { failed: u64 },
    /// One checkpoint that ended, from Flink's checkpoint statistics (its history).
    Checkpoint(FlinkCheckpoint),
    Restart { attempt: u64 },
    TmTerminated { tm: String },
    TmStarted { tm: String },
    CheckpointTriggered { path: String },
    Refused { what: String, reason: String },
    Error { message: String },
    Closed,
    /// On the local cluster ([`super::session`]): SIGKILL sent to a TaskManager's JVM.
    TmKilled { tm: String, pid: u32 },
    /// SIGSTOP sent to a TaskManager's JVM (a hang: its connections stay open).
    TmHung { tm: String, pid: u32 },
    /// A new TaskManager process started (it registers later: [`FlinkEvent::TmRegistered`]).
    TmProcessStarted { tm: String, pid: u32 },
    /// REST /taskmanagers lists it: the ResourceManager registered it.
    TmRegistered { tm: String, resource_id: String },
    /// REST /taskmanagers no longer lists it: the ResourceManager lost it (heartbeat or RPCs).
    TmLost { tm: String, resource_id: String },
    /// The job entered `status` (REST /jobs/:id `timestamps`), at Flink's timestamp.
    StateEntered { status: String },
    /// A failure the job's failover handled (REST /jobs/:id/exceptions), at Flink's timestamp.
    Failure { exception: String, message: String, task: Option<String>, tm: Option<String> },
    State(FlinkState),
}

/// A checkpoint that completed or failed on Flink (its `AbstractCheckpointStats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlinkCheckpoint {
    pub id: u64,
    /// `COMPLETED` or `FAILED` (Flink's `CheckpointStatsStatus`).
    pub status: String,
    /// End to end: from the trigger to the last acknowledgement, or to the failure.
    pub duration_ms: u64,
    /// The `CheckpointFailureReason` whose message the failure carries (None: none matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// In-flight data the checkpoint persisted (Flink's `persisted_data`: the channel state of
    /// an unaligned checkpoint, 0 for an aligned one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persisted_bytes: Option<u64>,
    /// The longest alignment of any subtask (Flink's per-task `alignment` duration summary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment_ms: Option<u64>,
    /// Flink took it unaligned (`is_unaligned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unaligned: Option<bool>,
    /// The job it belongs to (a resubmission is a new job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

impl FlinkCheckpoint {
    pub fn completed(&self) -> bool {
        self.status == "COMPLETED"
    }
}

/// The Flink side now (the harness's periodic state line).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlinkState {
    pub status: String,
    /// The job is RUNNING and so is every task.
    pub all_running: bool,
    /// Flink's `numRestarts` of the job (its ExecutionFailureHandler's count).
    pub restarts: u64,
    /// The highest execution attempt of any task.
    #[serde(default)]
    pub attempts: u64,
    pub checkpoints_completed: u64,
    pub checkpoints_failed: u64,
    pub output_lines: u64,
    /// Milliseconds since a record was last read or written by the sink.
    pub quiet_ms: u64,
    /// Records the sources emitted since their readers started (this attempt of the job).
    #[serde(default)]
    pub emitted: u64,
    /// Records the sink received since its writer started: every emitted record reaches it once,
    /// so `received >= emitted` (more after an unaligned restore replays in-flight records)
    /// when nothing is on its way.
    #[serde(default)]
    pub received: u64,
    /// The sink's last count per key.
    pub counts: BTreeMap<String, u64>,
    /// The next offset each partition's reader will emit.
    pub positions: BTreeMap<String, u64>,
}

/// An event with when it came, in ms since the harness started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    pub at_ms: u64,
    pub event: FlinkEvent,
}

#[derive(Default)]
struct Shared {
    state: FlinkState,
    /// Bumped with every state line: an await waits for a line newer than its start.
    state_seq: u64,
    history: Vec<Timed>,
    gone: Option<String>,
}

/// The running JVM.
pub struct Harness {
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Arc<Mutex<Shared>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Harness {
    /// How often the harness sends its state line (Harness.REPORT_MS).
    pub const REPORT_EVERY: Duration = Duration::from_millis(50);

    /// Starts the JVM on `job.properties` in `run_dir`.
    pub fn spawn(java: &Java, flink: &FlinkJars, harness_dir: &Path, run_dir: &Path) -> Result<Harness, HarnessError> {
        let err = |problem: String| HarnessError::Spawn { java: java.java.display().to_string(), problem };
        let stderr = std::fs::File::create(run_dir.join(OUTPUT_FILE)).map_err(|e| err(e.to_string()))?;
        let mut child = java_main(java, flink, harness_dir, run_dir, "ckptlab.flink.Harness")
            .arg(run_dir.join("job.properties"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| err(e.to_string()))?;
        let stdout = child.stdout.take().ok_or_else(|| err("no stdout".into()))?;
        let stdin = child.stdin.take();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let s = shared.clone();
        let started = Instant::now();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(event) = serde_json::from_str::<FlinkEvent>(&line) else {
                    tracing::warn!("flink harness: not a protocol line: {line}");
                    continue;
                };
                let mut g = lock(&s);
                match event {
                    FlinkEvent::State(st) => {
                        g.state = st;
                        g.state_seq += 1;
                    }
                    FlinkEvent::Error { ref message } => {
                        g.gone = Some(message.clone());
                        g.history.push(Timed { at_ms: started.elapsed().as_millis() as u64, event });
                    }
                    other => g.history.push(Timed { at_ms: started.elapsed().as_millis() as u64, event: other }),
                }
            }
            let mut g = lock(&s);
            if g.gone.is_none() {
                g.gone = Some("its output ended".into());
            }
        });
        Ok(Harness { child, stdin, shared, reader: Some(reader) })
    }

    /// Sends one command line.
    pub fn send(&mut self, command: &str) -> Result<(), HarnessError> {
        let stdin = self.stdin.as_mut().ok_or_else(|| HarnessError::Gone("its input is closed".into()))?;
        writeln!(stdin, "{command}").and_then(|()| stdin.flush()).map_err(|e| HarnessError::Gone(format!("cannot send `{command}`: {e}")))
    }

    /// The latest state line and its sequence number.
    pub fn state(&self) -> (FlinkState, u64) {
        let g = lock(&self.shared);
        (g.state.clone(), g.state_seq)
    }

    /// Every event so far (not the state lines).
    pub fn history(&self) -> Vec<Timed> {
        lock(&self.shared).history.clone()
    }

    /// Why the JVM stopped, if it did.
    pub fn gone(&self) -> Option<String> {
        lock(&self.shared).gone.clone()
    }

    /// Asks the JVM to cancel the job and stop; kills it if it does not within `grace`.
    pub fn shutdown(mut self, grace: Duration) {
        let _ = self.send("quit");
        self.stdin = None;
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Never leave a JVM behind (a panic, an early return).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_its_commands_verb() {
        assert_eq!(Verb::of("submit /x/job-2.properties /x/sp"), Some(Verb::Submit));
        assert_eq!(Verb::of("stop-with-savepoint CANONICAL file:///x"), Some(Verb::StopWithSavepoint));
        assert_eq!(Verb::of("kill tm-1"), Some(Verb::Kill));
        assert_eq!(Verb::of("submitted"), None);
        assert_eq!(Verb::Savepoint.word(), "savepoint");
    }

    #[test]
    fn protocol_lines_parse() {
        let e: FlinkEvent = serde_json::from_str(r#"{"event":"tm-terminated","tm":"tm-1"}"#).unwrap();
        assert_eq!(e, FlinkEvent::TmTerminated { tm: "tm-1".into() });
        let s: FlinkEvent = serde_json::from_str(
            r#"{"event":"state","status":"RUNNING","all_running":true,"restarts":1,"checkpoints_completed":11,"checkpoints_failed":2,"output_lines":6,"quiet_ms":7615,"counts":{"1":6},"positions":{"0":3,"1":3}}"#,
        )
        .unwrap();
        let FlinkEvent::State(s) = s else { panic!("{s:?}") };
        assert_eq!((s.restarts, s.counts["1"], s.positions["1"]), (1, 6, 3));
    }

    #[test]
    fn the_hash_follows_the_content() {
        assert_eq!(content_hash(&["a", "b"]), content_hash(&["a", "b"]));
        assert_ne!(content_hash(&["ab", ""]), content_hash(&["a", "b"]));
    }
}
